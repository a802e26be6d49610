"""What a run trains on: its tasks, where their episodes come from, which are kept and held out.

Gato (Reed et al., 2022, Sec. 3.1) trains only on episodes whose return reaches 80 % of the
expert's, mixing tasks with per-task sampling weights. `DataSettings` records every choice that
decides the episodes of a run (a run folder stores it as `data.json`, and evaluation reads it
back to find the same held-out demonstrations); `task_episodes` turns it into episodes:

* collected from a task's tier policy (cached, see `gato_min.data.collect`), or read from a
  user's dataset file (`datasets`: a D4RL HDF5 file or a Minari dataset folder per task);
* filtered by return: random + f * (expert - random), f = `min_return_fraction` (0 keeps all);
* split: the last `heldout_fraction` of the kept episodes never enter training; the agent takes
  its demonstration prompts from them.

It also holds how long each task's training windows are (`window_timesteps`, beyond the paper:
Gato fills its whole context), since evaluation must keep the same number of timesteps in view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gato_min.data.collect import collect_to_file, dataset_path, is_current, load_or_collect
from gato_min.data.episodes import EpisodeSet, filter_by_return
from gato_min.data.formats import read_d4rl, read_minari
from gato_min.data.reference import reference_returns
from gato_min.envs import check_tier, get_task
from gato_min.observations import flatten_observations
from gato_min.settings import check_finite, check_number, setting

TEXT_TASK = "text"  # the pseudo-task of the shipped prose corpus (text tokens only)


@dataclass(frozen=True)
class DataSettings:
    tasks: tuple[str, ...] = setting(("halfcheetah",), "tasks (registry names), or 'text' for the shipped prose")
    weights: tuple[float, ...] | None = setting(None, "sampling weight per task (None: equal)")
    tier: str = setting("expert", "behaviour-policy tier collected for the control tasks")
    episodes: tuple[int, ...] | int = setting(
        100, "episodes collected per control task: one number for all, or one per task (in the order of tasks)"
    )
    data_seed: int = setting(0, "seed of the collected episodes")
    action_noise: tuple[float, ...] | float = setting(
        0.0,
        "collecting: std of Gaussian noise on continuous actions (0.1: TD3's own), or the chance of a random "
        "button (Atari: replaces the expert's epsilon); see collect. One number for all, or one per task",
    )
    record: str = setting(
        "played",
        "with noise: write down the action played, or the policy's 'intended' one (DART)",
        ("played", "intended"),
    )
    min_return_fraction: float = setting(0.8, "keep episodes >= random + f (expert - random) (Sec. 3.1); 0 keeps all")
    heldout_fraction: float = setting(0.1, "share of each task's episodes (or text) kept out of training")
    datasets: tuple[str, ...] | None = setting(
        None, "per task, a D4RL HDF5 file or Minari dataset folder to train on instead of collecting"
    )
    window_timesteps: tuple[int, ...] | int = setting(
        0,
        "timesteps per training window (text: tokens); the agent keeps as many of its episode in view. "
        "0: as many as fit the context (the paper). One number for all, or one per task",
    )

    def __post_init__(self) -> None:
        check_finite(self)
        if not self.tasks:
            raise ValueError("DataSettings.tasks is empty; name at least one task")
        if self.weights is not None:
            if len(self.weights) != len(self.tasks):
                raise ValueError(f"DataSettings.weights has {len(self.weights)} entries for {len(self.tasks)} tasks")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"DataSettings.weights must be >= 0 with a positive sum, got {self.weights}")
        if self.datasets is not None and len(self.datasets) != len(self.tasks):
            raise ValueError(
                f"DataSettings.datasets has {len(self.datasets)} entries for {len(self.tasks)} tasks "
                "(one file or folder per task, in the order of tasks)"
            )
        if self.record not in ("played", "intended"):
            raise ValueError(f"DataSettings.record must be 'played' or 'intended', got {self.record!r}")
        per_task = (("episodes", True, 1), ("action_noise", False, 0), ("window_timesteps", True, 0))
        for name, integer, minimum in per_task:
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) == 1:  # one number for every task
                object.__setattr__(self, name, value := value[0])
            values = value if isinstance(value, tuple) else (value,)
            if isinstance(value, tuple) and len(value) != len(self.tasks):
                raise ValueError(
                    f"DataSettings.{name} has {len(value)} entries for {len(self.tasks)} tasks (give one number "
                    "for all tasks, or one per task in the order of tasks)"
                )
            for v in values:
                check_number(f"DataSettings.{name}", v, minimum=minimum, integer=integer)
        if not 0 <= self.min_return_fraction <= 1 or not 0 < self.heldout_fraction < 1:
            raise ValueError("DataSettings.min_return_fraction must lie in [0, 1] and heldout_fraction in (0, 1)")

    @property
    def task_weights(self) -> np.ndarray:
        weights = np.ones(len(self.tasks)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        return weights / weights.sum()

    def of(self, name: str, task: str):
        """The per-task setting `name` ('episodes', 'action_noise' or 'window_timesteps') of `task`."""
        value = getattr(self, name)
        return value[self.tasks.index(task)] if isinstance(value, tuple) else value

    def dataset_of(self, task: str) -> str | None:
        """The user's dataset for `task`, if the run trains on one."""
        return None if self.datasets is None else self.datasets[self.tasks.index(task)]


def heldout_split(count: int, fraction: float) -> int:
    """How many of `count` items go to the held-out side (at least one, never all)."""
    if count < 2:
        raise ValueError(f"need at least 2 episodes to keep some out of training, got {count}")
    return min(count - 1, max(1, round(count * fraction)))


def read_dataset(path: str | Path) -> EpisodeSet:
    """A user's dataset: a D4RL-format HDF5 file, or a Minari dataset folder."""
    path = Path(path)
    if path.is_dir():
        return read_minari(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {path} does not exist (expected a D4RL .hdf5 file or a Minari dataset folder)"
        )
    return read_d4rl(path)


def task_episodes(task: str, settings: DataSettings, cache=None, progress: bool = True):
    """A task's episodes as a run uses them: collected (or read from the cache or the user's
    dataset), filtered to those reaching `min_return_fraction` of the expert return, split into
    (train, held-out) lists; also the number there were."""
    spec = get_task(task)
    dataset = settings.dataset_of(task)
    if dataset is not None:
        data = read_dataset(dataset)
        for episode in data:  # a dict observation (a Minari dict space): its values in key order (Sec. 2.1)
            if not isinstance(episode.observations, np.ndarray):
                episode.observations = flatten_observations(episode.observations, f"dataset {dataset}")[0]
        shape = data[0].observations.shape[1:] if len(data) else None
        if shape is not None and int(np.prod(shape)) != int(np.prod(spec.observation_shape)):
            raise ValueError(
                f"dataset {dataset} has observations of shape {shape}; task {task!r} ({spec.env_id}) "
                f"sees {spec.observation_shape}: is it the dataset of another environment?"
            )
        for episode in data:
            episode.observations = episode.observations.reshape(len(episode), *spec.observation_shape)
    else:
        data = load_or_collect(task, **_collection(task, settings), cache=cache, progress=progress)
    episodes = list(data)
    if settings.min_return_fraction > 0:
        ref = reference_returns(task)
        if "expert" not in ref or "random" not in ref:
            raise KeyError(
                f"the stored reference returns of {task!r} lack the random or expert return, which the "
                f"{settings.min_return_fraction:.0%} filter needs; run python -m gato_min reference-returns "
                f"--tasks {task} (or set min_return_fraction to 0)"
            )
        episodes = filter_by_return(episodes, ref["expert"], settings.min_return_fraction, ref["random"])
        if len(episodes) < 2:
            raise ValueError(
                f"{task}/{settings.tier}: {len(episodes)} of {len(data)} episodes reach "
                f"{settings.min_return_fraction:.0%} of the expert return (random {ref['random']:.1f}, expert "
                f"{ref['expert']:.1f}); collect more episodes, use a better tier, or lower min_return_fraction "
                "(0 keeps everything)"
            )
    held = heldout_split(len(episodes), settings.heldout_fraction)
    return episodes[:-held], episodes[-held:], len(data)


def _collection(task: str, settings: DataSettings) -> dict:
    """The arguments of `gato_min.data.collect` that give `task`'s episodes under `settings`."""
    if settings.tier != "random":
        check_tier(task, settings.tier)
    noise = 0.0 if settings.tier == "random" else settings.of("action_noise", task)
    return dict(
        tier=settings.tier,
        episodes=settings.of("episodes", task),
        seed=settings.data_seed,
        action_noise=noise,
        record=settings.record if noise else "played",
    )


def prepare(settings: DataSettings, cache=None, progress: bool = True) -> None:
    """Collect into the cache every dataset the run will read (nothing for user datasets or text)."""
    for task in settings.tasks:
        if task == TEXT_TASK or settings.dataset_of(task) is not None:
            continue
        arguments = _collection(task, settings)
        if not is_current(dataset_path(task, **arguments, cache=cache), task, arguments["tier"]):
            collect_to_file(task, **arguments, cache=cache, progress=progress)
