"""The task registry: which environment each task name means and how it is built.

Gato (Reed et al., 2022, Sec. 3.1) trains on data from many control tasks; this module names
the ones gato_min makes data for. Each entry fixes the gymnasium environment id and the
settings that matter for reproducible data (for Atari: sticky actions off, see
shared/REFERENCE.md), plus the D4RL reference returns used for an approximate
D4RL-normalized score (measured on older gym versions, so only approximate on v5 envs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    name: str  # short name used on the command line, e.g. "hopper"
    env_id: str  # gymnasium id
    family: str  # "mujoco" (continuous joints) or "atari" (pixels, discrete buttons)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    d4rl_random_return: float | None = None  # d4rl/infos.py REF_MIN_SCORE
    d4rl_expert_return: float | None = None  # d4rl/infos.py REF_MAX_SCORE


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("halfcheetah", "HalfCheetah-v5", "mujoco",
                 d4rl_random_return=-280.178953, d4rl_expert_return=12135.0),
        TaskSpec("hopper", "Hopper-v5", "mujoco",
                 d4rl_random_return=-20.272305, d4rl_expert_return=3234.3),
        TaskSpec("walker2d", "Walker2d-v5", "mujoco",
                 d4rl_random_return=1.629008, d4rl_expert_return=4592.3),
        TaskSpec("pong", "ALE/Pong-v5", "atari",
                 env_kwargs=dict(repeat_action_probability=0.0, frameskip=4)),
        TaskSpec("breakout", "ALE/Breakout-v5", "atari",
                 env_kwargs=dict(repeat_action_probability=0.0, frameskip=4)),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; an unknown name raises a KeyError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def make_env(name: str, **overrides: Any):
    """Build the gymnasium environment of task `name` with the registry's settings."""
    import gymnasium as gym

    spec = get_task(name)
    if spec.family == "atari":
        import ale_py

        gym.register_envs(ale_py)
    return gym.make(spec.env_id, **{**spec.env_kwargs, **overrides})
