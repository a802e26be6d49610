"""The task registry: which environment each task name means, its spaces and its reference returns.

Gato (Reed et al., 2022, Sec. 3.1) trains on data from many control tasks; this module names
the ones gato_min makes data for. Each entry fixes the gymnasium environment id and the
settings that matter for reproducible data (for Atari: sticky actions off, see
shared/REFERENCE.md), the observation and action spec the model sees, and the D4RL reference
returns used for an approximate D4RL-normalized score (measured on older gym versions, so only
approximate on the v5 envs).

Scores are normalized as in Sec. 4.1: 0 = a uniformly random policy, 100 = the task's expert.
Both references are measured here by `python -m gato_min reference-returns` and stored in
`assets/reference_returns.json`.

Decision (the paper does not give Atari's resolution): frames are resized to 80 x 80 RGB with
a box filter, so a frame is 5 x 5 = 25 patches of 16 x 16 instead of 140 at full size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "assets" / "reference_returns.json"
ATARI_FRAME_SIZE = (80, 80)  # (height, width) of the frames the model sees


@dataclass(frozen=True)
class TaskSpec:
    name: str  # short name used on the command line, e.g. "hopper"
    env_id: str  # gymnasium id
    family: str  # "mujoco" (continuous joints) or "atari" (pixels, discrete buttons)
    observation_shape: tuple[int, ...]  # what the model sees: joint readings, or a frame (H, W, 3)
    action_dim: int  # continuous: number of torques in [-1, 1]; discrete: number of legal buttons
    discrete_actions: bool  # True: one integer action in [0, action_dim); False: a float vector
    tiers: tuple[str, ...]  # behaviour policies shipped for this task, best last
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    d4rl_random_return: float | None = None  # d4rl/infos.py REF_MIN_SCORE
    d4rl_expert_return: float | None = None  # d4rl/infos.py REF_MAX_SCORE


_ATARI = dict(repeat_action_probability=0.0, frameskip=4)  # sticky actions off; v5's frame skip

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("halfcheetah", "HalfCheetah-v5", "mujoco", (17,), 6, False, ("medium", "expert"),
                 d4rl_random_return=-280.178953, d4rl_expert_return=12135.0),
        TaskSpec("hopper", "Hopper-v5", "mujoco", (11,), 3, False, ("medium", "expert"),
                 d4rl_random_return=-20.272305, d4rl_expert_return=3234.3),
        TaskSpec("walker2d", "Walker2d-v5", "mujoco", (17,), 6, False, ("medium", "expert"),
                 d4rl_random_return=1.629008, d4rl_expert_return=4592.3),
        TaskSpec("pong", "ALE/Pong-v5", "atari", (*ATARI_FRAME_SIZE, 3), 6, True, ("noisy", "medium", "expert"),
                 env_kwargs=_ATARI),
        TaskSpec("breakout", "ALE/Breakout-v5", "atari", (*ATARI_FRAME_SIZE, 3), 4, True, ("noisy", "medium", "expert"),
                 env_kwargs=_ATARI),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; an unknown name raises a KeyError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def check_tier(task: str, tier: str) -> None:
    """Raise a KeyError naming the task's tiers if `tier` is not one of them."""
    spec = get_task(task)
    if tier not in spec.tiers:
        raise KeyError(f"unknown tier {tier!r} for task {task!r}; tiers: {', '.join(spec.tiers)}")


def make_env(name: str, **overrides: Any):
    """Build the gymnasium environment of task `name` with the registry's settings."""
    import gymnasium as gym

    spec = get_task(name)
    if spec.family == "atari":
        import ale_py

        gym.register_envs(ale_py)
    return gym.make(spec.env_id, **{**spec.env_kwargs, **overrides})


def preprocess_frame(frame: np.ndarray, size: tuple[int, int] = ATARI_FRAME_SIZE) -> np.ndarray:
    """An Atari frame (210, 160, 3) uint8 -> (H, W, 3) uint8 at `size`, box-filtered."""
    from PIL import Image

    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be an (H, W, 3) uint8 array, got {frame.dtype} {frame.shape}")
    height, width = size
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BOX))


def reference_returns(task: str, path: str | Path = REFERENCE_FILE) -> dict[str, float]:
    """The measured returns of `task`: {'random': ..., 'expert': ...} (and the other tiers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference returns file {path} does not exist; run python -m gato_min reference-returns")
    table = json.loads(path.read_text())
    get_task(task)
    if task not in table:
        raise KeyError(f"{path} has no reference returns for task {task!r}; run python -m gato_min reference-returns "
                       f"--tasks {task}")
    return {tier: row["mean"] for tier, row in table[task].items()}


def normalized_score(task: str, returns, path: str | Path = REFERENCE_FILE) -> np.ndarray:
    """100 * (return - random) / (expert - random): 0 = random policy, 100 = expert (Sec. 4.1)."""
    ref = reference_returns(task, path)
    for key in ("random", "expert"):
        if key not in ref:
            raise KeyError(f"reference returns of {task!r} lack {key!r}; run python -m gato_min reference-returns")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref["random"]) / (ref["expert"] - ref["random"])


def d4rl_normalized_score(task: str, returns) -> np.ndarray:
    """D4RL's normalization, 100 * (return - REF_MIN) / (REF_MAX - REF_MIN); approximate on v5 envs."""
    spec = get_task(task)
    if spec.d4rl_expert_return is None:
        raise ValueError(f"task {task!r} has no D4RL reference returns")
    low, high = spec.d4rl_random_return, spec.d4rl_expert_return
    return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
