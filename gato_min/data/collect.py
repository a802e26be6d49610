"""Collecting behaviour data from the shipped policies, reproducibly, several environments at once.

    python -m gato_min collect --task hopper --tier expert --episodes 100 --seed 0

Episode i is always played from `env.reset(seed=seed + i)` by a policy whose own randomness
(epsilon-random buttons, uniform random actions) is seeded with `seed + i` as well, so the data
does not depend on which of the parallel environments played it: the same seed gives the same
arrays, byte for byte, whatever `num_envs` is. The MuJoCo actor always runs on chunks of
`ACTOR_BATCH` rows (idle rows are zeros): a matrix product's rows can differ in their last bits
with the batch shape, and one flipped bit in an action changes the rest of an episode.

Tiers: MuJoCo `medium` and `expert` are TD3 actors shipped in `assets/policies/` (see
`gato_min.data.policies`); a task registered by a user names its own (`policies` of
`gato_min.envs.register_task`: an SB3 model file, a "module:function" or a callable); Atari
tiers are the RAM-reading scripted policies of `gato_min.data.atari_policies` with
epsilon-random buttons (expert 0, medium 0.1, noisy 0.3), and every Atari episode starts with
0-30 unrecorded no-ops, the usual protocol, because with sticky actions off a deterministic
player would otherwise play the same Pong game every time. The pseudo-tier `random` (uniform
random actions) gives the reference return of a random policy.

`action_noise` > 0 adds Gaussian noise of that scale to a continuous policy's actions (in the
[-1, 1] units the model sees, clipped there, seeded per episode); for a discrete-action task it
is instead the chance of a uniformly random button at each step (Atari: the expert tier's
epsilon). The noisy action is played and, by default, recorded. TD3 explored with 0.1 while it
learned; D4RL's datasets likewise come from stochastic policies. A deterministic expert only
ever shows one narrow tube of states, and a cloned policy that leaves it has never seen what to
do; noise widens the tube (chapter 08 measures the difference). With `record="intended"` the
file keeps the expert's own action instead of the noisy one it played (DART, Laskey et al.,
2017): the states come from the noisy tube, the labels stay clean. The Atari players plan at
every step, random button or not, so the button they intended follows the ball they saw.

Datasets are written in D4RL format (`gato_min.data.formats`) to a cache folder outside the
repository: `$GATO_MIN_CACHE`, else `~/.cache/gato_min`, under `datasets/`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

import gato_min
from gato_min.data.atari_policies import ATARI_POLICIES
from gato_min.data.episodes import Episode, EpisodeSet
from gato_min.data.formats import attr_value, read_d4rl, write_d4rl
from gato_min.data.policies import load_policy, load_user_policy
from gato_min.distributed import torch_threads
from gato_min.envs import check_tier, get_task, make_env, model_observation, start_episode
from gato_min.settings import check_number

POLICY_DIR = Path(__file__).resolve().parents[1] / "assets" / "policies"
ATARI_TIER_EPSILON = {"expert": 0.0, "medium": 0.1, "noisy": 0.3}  # chance of a uniformly random button
ACTOR_BATCH = 32  # the MuJoCo actor always runs on chunks of this many rows (see the module docstring)


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache root: `cache` if given, else $GATO_MIN_CACHE, else ~/.cache/gato_min."""
    return Path(cache or os.environ.get("GATO_MIN_CACHE") or "~/.cache/gato_min").expanduser()


RECORD = ("played", "intended")  # which torque a noisy collection writes down


def dataset_path(
    task: str,
    tier: str,
    episodes: int,
    seed: int,
    cache: str | Path | None = None,
    action_noise: float = 0.0,
    record: str = "played",
) -> Path:
    noise = (f"-noise{action_noise:g}" + ("-intended" if record == "intended" else "")) if action_noise else ""
    return cache_dir(cache) / "datasets" / f"{task}-{tier}{noise}-{episodes}ep-seed{seed}.hdf5"


def policy_file(task: str, tier: str) -> Path:
    return POLICY_DIR / f"{task}_{tier}.safetensors"


def behaviour_id(task: str, tier: str) -> str | None:
    """What plays `tier` of `task`: a collection stores it, and a cached file made by another
    version of the behaviour (an edited scripted player, a retrained actor) is collected again.
    None where this process cannot name it (a training worker does not get a user's callable)."""
    spec = get_task(task)
    if tier == "random":
        return "random"
    if tier in spec.policies:
        source = spec.policies[tier]
        if isinstance(source, str) and source.endswith(".zip") and Path(source).is_file():
            return f"user {source} {_digest(Path(source))}"  # a retrained model at the same path counts
        return f"user {source if isinstance(source, str) else getattr(source, '__qualname__', repr(source))}"
    if spec.family == "atari":
        return f"{ATARI_POLICIES[task].__name__} v{ATARI_POLICIES[task].VERSION}"
    path = policy_file(task, tier)
    return "actor " + _digest(path) if path.is_file() else None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def is_current(path: Path, task: str, tier: str) -> bool:
    """Whether the dataset file at `path` exists and was collected by today's `tier` behaviour
    (a file whose behaviour cannot be named here is taken as it is)."""
    if not path.is_file():
        return False
    expected = behaviour_id(task, tier)
    with h5py.File(path, "r") as f:
        return expected is None or attr_value(f.attrs.get("behaviour", b"")) == expected


# --------------------------------------------------------------------------- behaviours


class _RandomBehaviour:
    """Uniformly random actions, seeded per episode."""

    def __init__(self, spec, num_envs: int):
        self.spec, self.rngs = spec, [None] * num_envs

    def start(self, env_index: int, episode_seed: int) -> None:
        self.rngs[env_index] = np.random.default_rng(episode_seed)

    def act(self, observations, envs, active) -> list:
        if self.spec.discrete_actions:
            return [int(self.rngs[i].integers(self.spec.action_dim)) if active[i] else None for i in range(len(envs))]
        return [
            self.rngs[i].uniform(-1.0, 1.0, self.spec.action_dim).astype(np.float32) if active[i] else None
            for i in range(len(envs))
        ]


class _ActorBehaviour:
    """A shipped TD3 actor, run on a fixed-size batch of all environments."""

    def __init__(self, task: str, tier: str, num_envs: int, action_noise: float = 0.0):
        path = policy_file(task, tier)
        if not path.is_file():
            raise FileNotFoundError(
                f"no shipped policy for task {task!r} tier {tier!r}: {path} does not exist "
                "(train it with python -m gato_min train-expert)"
            )
        self.policy, _ = load_policy(path)
        self.noise, self.rngs = action_noise, [None] * num_envs
        self.intended = None  # (rows, action_dim): the expert's own torques of the last call, before the noise

    def start(self, env_index: int, episode_seed: int) -> None:
        self.rngs[env_index] = np.random.default_rng([episode_seed, 2])

    def act(self, observations, envs, active) -> list:
        shape = observations[active.index(True)].shape
        rows = -(-len(envs) // ACTOR_BATCH) * ACTOR_BATCH
        batch = np.zeros((rows, *shape), np.float32)  # idle and spare rows stay zero
        for i, (obs, a) in enumerate(zip(observations, active)):
            if a:
                batch[i] = obs
        actions = np.concatenate([self.policy.act(batch[i : i + ACTOR_BATCH]) for i in range(0, rows, ACTOR_BATCH)])
        self.intended = actions.copy()
        if self.noise:
            for i, a in enumerate(active):
                if a:
                    noise = self.rngs[i].normal(0.0, self.noise, actions.shape[1])
                    actions[i] = np.clip(actions[i] + noise, -1.0, 1.0)
        return [actions[i] for i in range(len(envs))]


class _ScriptedAtariBehaviour:
    """RAM-reading scripted players with epsilon-random buttons, one per episode. The tier sets
    epsilon; `action_noise` (tier expert only) replaces it, and `intended` holds each player's
    planned button of the last call, the DART label."""

    def __init__(self, task: str, tier: str, num_envs: int, action_noise: float = 0.0):
        self.policy_class = ATARI_POLICIES[task]
        self.epsilon = action_noise if action_noise else ATARI_TIER_EPSILON[tier]
        self.players = [None] * num_envs
        self.intended = [None] * num_envs

    def start(self, env_index: int, episode_seed: int) -> None:
        self.players[env_index] = self.policy_class(epsilon=self.epsilon, seed=episode_seed)

    def act(self, observations, envs, active) -> list:
        actions = [None] * len(envs)
        for i, env in enumerate(envs):
            if active[i]:
                actions[i] = self.players[i].act(env.unwrapped.ale.getRAM())
                self.intended[i] = self.players[i].intended
        return actions


class _UserBehaviour:
    """A user's policy (see `load_user_policy`), one observation at a time, with optional noise."""

    def __init__(self, spec, tier: str, num_envs: int, action_noise: float = 0.0):
        self.spec, self.policy = spec, load_user_policy(spec.policies[tier])
        self.noise, self.rngs = action_noise, [None] * num_envs
        self.intended = [None] * num_envs

    def start(self, env_index: int, episode_seed: int) -> None:
        self.rngs[env_index] = np.random.default_rng([episode_seed, 2])

    def act(self, observations, envs, active) -> list:
        actions = [None] * len(envs)
        for i, obs in enumerate(observations):
            if not active[i]:
                continue
            action = self.policy(obs)
            if self.spec.discrete_actions:  # noise: the chance of a uniformly random button instead
                actions[i] = self.intended[i] = int(np.asarray(action).reshape(()))
                if self.noise and self.rngs[i].random() < self.noise:
                    actions[i] = int(self.rngs[i].integers(self.spec.action_dim))
                continue
            action = np.asarray(action, dtype=np.float32).reshape(self.spec.action_dim)
            self.intended[i] = action
            if self.noise:
                unit = self.spec.action_to_unit(action) + self.rngs[i].normal(0.0, self.noise, len(action))
                action = self.spec.action_from_unit(np.clip(unit, -1.0, 1.0)).astype(np.float32)
            actions[i] = action
        return actions


def _behaviour(task: str, tier: str, num_envs: int, action_noise: float = 0.0, record: str = "played"):
    spec = get_task(task)
    if record not in RECORD:
        raise ValueError(f"record must be one of {RECORD}, got {record!r}")
    if record == "intended" and not action_noise:
        raise ValueError(
            "record='intended' keeps the expert's torque apart from the noise it played; it needs action_noise > 0"
        )
    check_number("action_noise", action_noise, minimum=0)
    if action_noise and tier == "random":
        raise ValueError(f"action_noise applies to a policy's actions; the random tier of {task} has none")
    if action_noise and spec.discrete_actions and not action_noise <= 1:
        raise ValueError(
            f"action_noise of a discrete-action task ({task}) is the chance of a random button, in [0, 1]; "
            f"got {action_noise}"
        )
    if tier == "random":
        return _RandomBehaviour(spec, num_envs)
    check_tier(task, tier)
    if tier in spec.policies:
        return _UserBehaviour(spec, tier, num_envs, action_noise)
    if spec.family == "atari":
        if action_noise and tier != "expert":
            raise ValueError(
                f"action_noise on {task} replaces the expert's epsilon (the {tier} tier is the expert at epsilon "
                f"{ATARI_TIER_EPSILON[tier]:g}); use tier 'expert' with action_noise"
            )
        return _ScriptedAtariBehaviour(task, tier, num_envs, action_noise)
    return _ActorBehaviour(task, tier, num_envs, action_noise)


# --------------------------------------------------------------------------- collection


def collect(
    task: str,
    tier: str,
    episodes: int,
    seed: int = 0,
    num_envs: int = 4,
    progress: bool = True,
    max_episode_steps: int | None = None,
    action_noise: float = 0.0,
    record: str = "played",
    threads: int | None = 1,
) -> EpisodeSet:
    """Play `episodes` episodes of `task` with the `tier` policy (plus `action_noise`, see the
    module docstring); return them in episode order. The policy runs on `threads` torch threads
    (None: as set; see `gato_min.distributed.torch_threads`)."""
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    spec = get_task(task)
    behaviour = _behaviour(task, tier, num_envs, action_noise, record)
    num_envs = min(num_envs, episodes)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    envs = [make_env(task, **kwargs) for _ in range(num_envs)]
    results: list[Episode | None] = [None] * episodes
    buffers = [None] * num_envs  # per env: (episode index, observations, actions, rewards)
    current = [None] * num_envs
    next_episode, steps, start_time = 0, 0, time.perf_counter()

    def begin(i: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            buffers[i] = current[i] = None
            return
        obs = start_episode(envs[i], spec, seed + next_episode)
        behaviour.start(i, seed + next_episode)
        current[i] = model_observation(spec, obs)
        buffers[i] = (next_episode, [], [], [])
        next_episode += 1

    for i in range(num_envs):
        begin(i)
    label = f"{task}/{tier}" + (f" + noise {action_noise:g}" if action_noise else "")
    bar = tqdm(total=episodes, desc=f"collect {label}", unit="episode", disable=not progress)
    while any(b is not None for b in buffers):
        active = [b is not None for b in buffers]
        with torch_threads(threads):
            actions = behaviour.act(current, envs, active)
        for i, env in enumerate(envs):
            if not active[i]:
                continue
            index, obs_list, action_list, reward_list = buffers[i]
            obs_list.append(current[i])
            action_list.append(behaviour.intended[i] if record == "intended" else actions[i])
            obs, reward, terminated, truncated, _ = env.step(actions[i])
            reward_list.append(reward)
            steps += 1
            if terminated or truncated:
                results[index] = Episode(
                    np.stack(obs_list),
                    np.asarray(action_list, dtype=np.int64 if spec.discrete_actions else np.float32),
                    np.asarray(reward_list, dtype=np.float32),
                    bool(terminated),
                    task,
                    tier,
                )
                bar.update(1)
                bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - start_time):.0f}")
                begin(i)
            else:
                current[i] = model_observation(spec, obs)
    bar.close()
    for env in envs:
        env.close()
    elapsed = time.perf_counter() - start_time
    return EpisodeSet(
        results,
        {
            "task": task,
            "env_id": spec.env_id,
            "tier": tier,
            "seed": seed,
            "action_noise": action_noise,
            "record": record,
            "num_envs": num_envs,
            "steps": steps,
            "seconds": round(elapsed, 3),
        },
    )


def collect_to_file(
    task: str,
    tier: str,
    episodes: int,
    seed: int = 0,
    num_envs: int = 4,
    out: str | Path | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
    max_episode_steps: int | None = None,
    action_noise: float = 0.0,
    record: str = "played",
) -> Path:
    """Collect and write a D4RL-format file (default: the cache's `datasets/` folder)."""
    data = collect(task, tier, episodes, seed, num_envs, progress, max_episode_steps, action_noise, record)
    path = Path(out) if out is not None else dataset_path(task, tier, episodes, seed, cache, action_noise, record)
    attrs = {key: data.attrs[key] for key in ("task", "env_id", "tier", "seed", "action_noise", "record")}
    attrs["package_version"] = gato_min.__version__
    attrs["behaviour"] = behaviour_id(task, tier) or "unknown"
    return write_d4rl(path, data.episodes, attrs)


def load_or_collect(
    task: str,
    tier: str,
    episodes: int,
    seed: int = 0,
    cache: str | Path | None = None,
    num_envs: int = 4,
    progress: bool = True,
    action_noise: float = 0.0,
    record: str = "played",
) -> EpisodeSet:
    """The cached dataset for these arguments, collected first if it is not there yet or was
    collected by another version of the behaviour (see `behaviour_id`)."""
    path = dataset_path(task, tier, episodes, seed, cache, action_noise, record)
    if path.exists() and not is_current(path, task, tier):
        print(f"{path} was collected by another {tier} behaviour than {behaviour_id(task, tier)!r}; "
              "collecting it again", file=sys.stderr)  # fmt: skip
    if not is_current(path, task, tier):
        arguments = dict(cache=cache, progress=progress, action_noise=action_noise, record=record)
        collect_to_file(task, tier, episodes, seed, num_envs, **arguments)
    return read_d4rl(path)
