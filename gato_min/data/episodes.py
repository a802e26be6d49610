"""Episodes: the one structure every reader returns and the rest of the package consumes.

An episode holds T aligned steps: observation t, the action taken on it, the reward that
followed. `terminated` says the environment ended it (a fall, a lost game); an episode that was
cut by a time limit, or that a file leaves unfinished, has `terminated=False`.

Gato trains only on episodes whose return is at least 80 % of the expert's (Sec. 3.1);
`filter_by_return` applies that rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gato_min.observations import flatten_nested


@dataclass
class Episode:
    observations: np.ndarray | dict  # (T, *obs_shape) readings or uint8 frames; or nested dicts of such
    actions: np.ndarray  # (T, action_dim) float32 torques, or (T,) int64 buttons
    rewards: np.ndarray  # (T,) float32
    terminated: bool  # True: the environment ended the episode; False: time limit or unfinished
    task: str = ""  # registry name, when known
    source: str = ""  # where it came from: a policy tier or a file

    def __post_init__(self) -> None:
        lengths = {key: len(value) for key, value in flatten_nested(self.observations, "observations")}
        lengths.update(actions=len(self.actions), rewards=len(self.rewards))
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode arrays must have equal lengths, got {lengths}")
        if lengths["actions"] == 0:
            raise ValueError("an episode must have at least one step")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))


def episode_returns(episodes: list[Episode]) -> np.ndarray:
    return np.array([e.episode_return for e in episodes], dtype=np.float64)


def filter_by_return(
    episodes: list[Episode], expert_return: float, fraction: float = 0.8, random_return: float | None = None
) -> list[Episode]:
    """Keep episodes whose return is at least `fraction` of the expert return (Sec. 3.1).

    With `random_return` given the threshold is measured from it, random + fraction * (expert -
    random), which stays meaningful for tasks whose returns are negative (Pong starts at -21).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    base = 0.0 if random_return is None else random_return
    threshold = base + fraction * (expert_return - base)
    return [e for e in episodes if e.episode_return >= threshold]


@dataclass
class EpisodeSet:
    """Episodes of one task and source, with the attributes of the file they came from."""

    episodes: list[Episode]
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self):
        return iter(self.episodes)

    def __getitem__(self, index: int) -> Episode:
        return self.episodes[index]

    @property
    def returns(self) -> np.ndarray:
        return episode_returns(self.episodes)

    @property
    def num_steps(self) -> int:
        return sum(len(e) for e in self.episodes)
