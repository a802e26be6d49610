"""Tasks and their environments: the floor every other module stands on.

Gato (Reed et al., 2022, Sec. 3.1) trains on data from many control tasks. A task here is a
name for one gymnasium environment plus what the model sees of it: the observation (a vector
of readings, or an RGB frame at a fixed size), the action (a vector of torques scaled to
[-1, 1], or one button of [0, n)), how an episode starts, and where its reference returns
live. The shipped tasks are HalfCheetah, Hopper, Walker2d (v5) and Pong, Breakout (ale-py).

Any gymnasium environment with a Box or Discrete action space and a vector or RGB-frame
observation becomes a task without editing the package:

    from gato_min.envs import register_task
    register_task("pendulum", "InvertedPendulum-v5", policies={"expert": "pendulum_sac.zip"})

or, from the command line, a JSON task file (`--task-file tasks.json`, a list of such entries;
policies are SB3 model files or "module:function" callables). Continuous actions are scaled
from the action space's [low, high] to [-1, 1] for the tokenizer and back for the environment.

Decisions (the paper does not give them): Atari frames are resized to 80 x 80 RGB with a box
filter (5 x 5 = 25 patches of 16 x 16 instead of 140 at full size), sticky actions are off and
every episode starts with 0-30 seeded no-ops (shared/REFERENCE.md). Measured: the ball survives
80 x 80 (painted out, it changes a pixel by >= 37 of 255 levels in every Pong frame, 34 in
Breakout; `data.atari_policies.ball_contrast`, chapter 10). One frame a timestep, as in the paper.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from PIL import Image

from gato_min.observations import flatten_observation, space_values

ATARI_FRAME_SIZE = (80, 80)  # (height, width) of the Atari frames the model sees
ATARI_NOOP_MAX = 30  # each Atari episode starts with 0..30 unrecorded no-ops (seeded per episode)
RENDER_SIZE = 192  # side of MuJoCo's offscreen frames, in pixels


@dataclass(frozen=True)
class TaskSpec:
    name: str  # short name used on the command line, e.g. "hopper"
    env_id: str  # gymnasium id
    family: str  # "mujoco", "atari" (the shipped tasks) or "user" (registered by a user)
    observation_shape: tuple[int, ...]  # what the model sees: readings (n,), or a frame (H, W, 3)
    action_dim: int  # continuous: number of action values; discrete: number of legal buttons
    discrete_actions: bool  # True: one integer action in [0, action_dim); False: a float vector
    tiers: tuple[str, ...]  # behaviour policies of this task, best last
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    action_low: tuple[float, ...] | None = None  # continuous action range; None: already [-1, 1]
    action_high: tuple[float, ...] | None = None
    frame_size: tuple[int, int] | None = None  # image tasks: (H, W) frames are resized to; None: vectors
    noop_max: int = 0  # episodes start with 0..noop_max seeded no-op actions (button 0)
    policies: dict[str, Any] = field(default_factory=dict)  # user tiers: SB3 zip path, "module:function" or callable
    reference_file: str | None = None  # user tasks: JSON of measured reference returns (None: the shipped one)
    d4rl_random_return: float | None = None  # d4rl/infos.py REF_MIN_SCORE
    d4rl_expert_return: float | None = None  # d4rl/infos.py REF_MAX_SCORE
    discrete_values: tuple[int, ...] = ()  # observation values that are integers, tokenized as they are (Sec. 2.1)

    @property
    def image_observations(self) -> bool:
        return self.frame_size is not None

    def action_to_unit(self, actions: np.ndarray) -> np.ndarray:
        """Environment actions -> [-1, 1] (the range the tokenizer bins without companding)."""
        actions = np.asarray(actions, dtype=np.float64)
        if self.action_low is None:
            return actions
        low, high = np.asarray(self.action_low), np.asarray(self.action_high)
        return 2.0 * (actions - low) / (high - low) - 1.0

    def action_from_unit(self, values: np.ndarray) -> np.ndarray:
        """[-1, 1] -> environment actions (the inverse of `action_to_unit`)."""
        values = np.asarray(values, dtype=np.float64)
        if self.action_low is None:
            return values
        low, high = np.asarray(self.action_low), np.asarray(self.action_high)
        return low + (values + 1.0) * 0.5 * (high - low)

    def to_dict(self) -> dict:
        """The JSON form of the spec (callable policies are left out: they cannot be written)."""
        data = dataclasses.asdict(self)
        data["policies"] = {tier: source for tier, source in self.policies.items() if isinstance(source, str)}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"task spec has unknown keys {unknown}; known keys: {sorted(known)}")
        data = dict(data)
        for key in ("observation_shape", "tiers", "action_low", "action_high", "frame_size", "discrete_values"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


_ATARI = dict(repeat_action_probability=0.0, frameskip=4)  # sticky actions off; v5's frame skip
_ATARI_SPEC = dict(
    family="atari",
    observation_shape=(*ATARI_FRAME_SIZE, 3),
    discrete_actions=True,
    tiers=("noisy", "medium", "expert"),
    env_kwargs=_ATARI,
    frame_size=ATARI_FRAME_SIZE,
    noop_max=ATARI_NOOP_MAX,
)
_SHIPPED = [
    TaskSpec(
        "halfcheetah",
        "HalfCheetah-v5",
        "mujoco",
        (17,),
        6,
        False,
        ("medium", "expert"),
        d4rl_random_return=-280.178953,
        d4rl_expert_return=12135.0,
    ),
    TaskSpec(
        "hopper",
        "Hopper-v5",
        "mujoco",
        (11,),
        3,
        False,
        ("medium", "expert"),
        d4rl_random_return=-20.272305,
        d4rl_expert_return=3234.3,
    ),
    TaskSpec(
        "walker2d",
        "Walker2d-v5",
        "mujoco",
        (17,),
        6,
        False,
        ("medium", "expert"),
        d4rl_random_return=1.629008,
        d4rl_expert_return=4592.3,
    ),
    TaskSpec("pong", "ALE/Pong-v5", action_dim=6, **_ATARI_SPEC),
    TaskSpec("breakout", "ALE/Breakout-v5", action_dim=4, **_ATARI_SPEC),
]
TASKS = MappingProxyType({spec.name: spec for spec in _SHIPPED})  # the shipped tasks (read-only)
_USER_TASKS: dict[str, TaskSpec] = {}  # tasks added by register_task


def task_names() -> list[str]:
    """Every task known now: the shipped ones, then the registered ones."""
    return [*TASKS, *_USER_TASKS]


def user_tasks() -> list[TaskSpec]:
    """The tasks added with `register_task` (what training workers and run folders must carry)."""
    return list(_USER_TASKS.values())


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; an unknown name raises a KeyError listing the known ones."""
    spec = TASKS.get(name) or _USER_TASKS.get(name)
    if spec is None:
        raise KeyError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(task_names()))} "
            "(add your own with gato_min.envs.register_task or --task-file)"
        )
    return spec


def check_tier(task: str, tier: str) -> None:
    """Raise a KeyError naming the task's tiers if `tier` is not one of them."""
    spec = get_task(task)
    if tier not in spec.tiers:
        raise KeyError(f"unknown tier {tier!r} for task {task!r}; tiers: {', '.join(spec.tiers) or 'none'}")


def resolve_task(name: str) -> TaskSpec:
    """A task by registry name, or by gymnasium id (e.g. "HalfCheetah-v5"): the shipped task of
    that id, or the environment registered as a new task under its id."""
    if name in TASKS or name in _USER_TASKS:
        return get_task(name)
    for spec in [*TASKS.values(), *_USER_TASKS.values()]:
        if spec.env_id == name:
            return spec
    if name.startswith("ALE/"):
        import ale_py  # only Atari needs it: importing it registers the ALE environments

        gym.register_envs(ale_py)
    if name in gym.registry:
        return register_task(name, name)
    return get_task(name)  # the KeyError listing the known tasks


# MuJoCo warnings that say nothing to a reader: gymnasium's v5 XML files use an attribute that
# MuJoCo 3.3+ deprecates. Dropped while the package builds an environment; any other MuJoCo
# warning raised then becomes a Python warning, so it is still seen.
QUIET_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    if not message.startswith(QUIET_MUJOCO_WARNINGS):
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def _gym_make(env_id: str, **kwargs):
    if env_id.startswith("ALE/"):
        import ale_py  # only Atari needs it: importing it registers the ALE environments

        gym.register_envs(ale_py)
    caller_handler = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_mujoco_warning)
    try:
        return gym.make(env_id, **kwargs)
    finally:
        mujoco.set_mju_user_warning(caller_handler)


def register_task(
    name: str,
    env_id: str,
    *,
    env_kwargs: dict | None = None,
    policies: dict | None = None,
    frame_size: tuple[int, int] | None = None,
    noop_max: int = 0,
    reference_file: str | Path | None = None,
    replace: bool = False,
) -> TaskSpec:
    """Make gymnasium environment `env_id` the task `name`; its spaces are read from the env.

    `policies` names the behaviour policies to collect data from, best last ({tier: source},
    source an SB3 model file, a "module:function" string or a callable observation -> action).
    Image observations (uint8 H x W x 3) are resized to `frame_size` (default: as they come).
    `reference_file` is where `python -m gato_min reference-returns` stores the task's random
    and tier returns (default: reference_returns.json in the cache folder, beside the data)."""
    if not isinstance(name, str) or not name or name == "text":
        raise ValueError(f"task name must be a non-empty string other than 'text', got {name!r}")
    if name in TASKS or (name in _USER_TASKS and not replace):
        raise ValueError(f"task {name!r} is already registered" + ("" if name in TASKS else "; pass replace=True"))
    env = _gym_make(env_id, **(env_kwargs or {}))
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    discrete_values: tuple[int, ...] = ()
    if not isinstance(observation_space, gym.spaces.Box):
        count, discrete_values = space_values(observation_space, env_id)
        observation_space = gym.spaces.Box(-np.inf, np.inf, (count,))  # what the model sees: the flattened values
    elif observation_space.dtype.kind in "biu" and observation_space.shape[-1:] != (3,):
        discrete_values = tuple(range(int(np.prod(observation_space.shape))))
    image = (
        observation_space.dtype == np.uint8 and len(observation_space.shape) == 3 and observation_space.shape[2] == 3
    )
    if image:
        frame_size = tuple(frame_size or observation_space.shape[:2])
        observation_shape = (*frame_size, 3)
    else:
        if frame_size is not None:
            raise ValueError(f"{env_id}: frame_size applies to RGB-frame observations, not {observation_space}")
        observation_shape = (int(np.prod(observation_space.shape)),)
    low = high = None
    if isinstance(action_space, gym.spaces.Discrete):
        discrete, action_dim = True, int(action_space.n)
    elif isinstance(action_space, gym.spaces.Box):
        discrete, action_dim = False, int(np.prod(action_space.shape))
        lows, highs = action_space.low.reshape(-1).astype(float), action_space.high.reshape(-1).astype(float)
        if not (np.isfinite(lows).all() and np.isfinite(highs).all()):
            raise ValueError(
                f"{env_id}: action space {action_space} is unbounded; gato_min scales actions from "
                "[low, high] to [-1, 1]"
            )
        if not (np.all(lows == -1.0) and np.all(highs == 1.0)):
            low, high = tuple(lows.tolist()), tuple(highs.tolist())
    else:
        raise ValueError(f"{env_id}: action space {action_space} is neither Box nor Discrete")
    policies = dict(policies or {})
    if reference_file is None:
        reference_file = (
            Path(os.environ.get("GATO_MIN_CACHE") or "~/.cache/gato_min").expanduser() / "reference_returns.json"
        )
    spec = TaskSpec(
        name,
        env_id,
        "user",
        observation_shape,
        action_dim,
        discrete,
        tiers=tuple(policies),
        env_kwargs=dict(env_kwargs or {}),
        action_low=low,
        action_high=high,
        frame_size=frame_size if image else None,
        noop_max=int(noop_max),
        policies=policies,
        reference_file=str(reference_file),
        discrete_values=discrete_values,
    )
    _USER_TASKS[name] = spec
    return spec


def add_task(spec: TaskSpec) -> TaskSpec:
    """Register an already built spec (a run folder's or a worker's copy); registering the same
    spec again keeps the first (which may hold callable policies)."""
    known = TASKS.get(spec.name) or _USER_TASKS.get(spec.name)
    if known is None:
        _USER_TASKS[spec.name] = spec
        return spec
    if known.to_dict() != spec.to_dict():
        raise ValueError(
            f"task {spec.name!r} is already registered with another spec: registered "
            f"{known.to_dict()}, given {spec.to_dict()}"
        )
    return known


def unregister_task(name: str) -> None:
    """Forget a registered task (shipped tasks stay)."""
    _USER_TASKS.pop(name, None)


def load_task_file(path: str | Path) -> list[TaskSpec]:
    """Register the tasks of a JSON task file: a list of register_task keyword sets, e.g.
    [{"name": "pendulum", "env_id": "InvertedPendulum-v5", "policies": {"expert": "sac.zip"}}].
    Relative policy paths are read from the file's folder."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"task file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"task file {path} is not valid JSON: {error}") from None
    if isinstance(entries, dict):
        entries = [entries]
    specs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry or "env_id" not in entry:
            raise ValueError(f"task file {path}, entry {index}: expected an object with 'name' and 'env_id'")
        entry = dict(entry)
        policies = {
            tier: (str(path.parent / source) if source.endswith(".zip") and not Path(source).is_absolute() else source)
            for tier, source in entry.pop("policies", {}).items()
        }
        specs.append(register_task(entry.pop("name"), entry.pop("env_id"), policies=policies, replace=True, **entry))
    return specs


# ------------------------------------------------------------------------------ environments


def make_env(name: str, render: bool = False, **overrides: Any):
    """The gymnasium environment of task `name` with the registry's settings; `render=True`
    asks for rgb_array frames. MuJoCo then renders offscreen: MUJOCO_GL defaults to egl here
    (set it to osmesa where only that works), because gymnasium's first choice without it, a
    GLFW window, aborts the process on a machine without a display instead of raising an error."""
    spec = get_task(name)
    if render:
        overrides.setdefault("render_mode", "rgb_array")
        os.environ.setdefault("MUJOCO_GL", "egl")
        if spec.family == "mujoco":
            overrides.setdefault("width", RENDER_SIZE)
            overrides.setdefault("height", RENDER_SIZE)
    return _gym_make(spec.env_id, **{**spec.env_kwargs, **overrides})


def start_episode(env, spec: TaskSpec, seed: int):
    """Reset `env` for the episode of seed `seed`, then play its seeded no-ops (Atari: with
    sticky actions off, Pong would otherwise be one fixed game)."""
    obs, _ = env.reset(seed=seed)
    if spec.noop_max:
        for _ in range(np.random.default_rng([seed, 1]).integers(0, spec.noop_max + 1)):
            obs, *_ = env.step(0)
    return obs


def preprocess_frame(frame: np.ndarray, size: tuple[int, int] = ATARI_FRAME_SIZE) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 -> (h, w, 3) uint8 at `size`, box-filtered."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be an (H, W, 3) uint8 array, got {frame.dtype} {frame.shape}")
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BOX))


def model_observation(spec: TaskSpec, obs) -> np.ndarray:
    """What the model sees of a raw environment observation: a float32 vector (a dict or tuple
    observation flattened in key order, Sec. 2.1), or the preprocessed uint8 frame."""
    if spec.image_observations:
        return preprocess_frame(obs, spec.frame_size)
    return flatten_observation(obs).astype(np.float32)
