"""The run folder: what a training run writes, how a folder is reused, and loading a trained model.

A run folder holds
  config.json        the model (`GatoConfig`)
  data.json          what it trains on (`gato_min.data.training_set.DataSettings`)
  settings.json      how it optimizes (`gato_min.optim.TrainSettings`)
  tasks.json         the specs of the tasks it trains on that a user registered (so that
                     evaluation and training workers know them without the user's script)
  metrics.jsonl      one JSON object per logged step or evaluation
  checkpoint.pt      model, optimizer, step and every random state (`weights_only=True` loadable)
  model.safetensors  the weights alone, for acting
Both weight files carry the run's config (JSON) and tasks, their fingerprint: loading one checks
it against config.json and names every difference, so weights of another shape of run (another
context length, other action positions) are never used silently.
  learning_curve.png, summary.json
Every file is written atomically. Starting a run in a folder that holds one resumes it, and is
refused when the config or the settings differ (only the number of steps may grow). Acting
and evaluation read a run through this module, never through the training loop.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from gato_min.config import GatoConfig
from gato_min.data.training_set import TEXT_TASK, DataSettings
from gato_min.envs import TaskSpec, add_task, get_task
from gato_min.files import atomic_write_json, atomic_write_text
from gato_min.model import GatoModel
from gato_min.optim import TrainSettings
from gato_min.settings import from_dict, to_dict


class RunFolder:
    """The files of one run, and the rules for reusing a folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.data = self.path / "data.json"
        self.settings = self.path / "settings.json"
        self.tasks = self.path / "tasks.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint.pt"
        self.weights = self.path / "model.safetensors"
        self.curve = self.path / "learning_curve.png"
        self.summary = self.path / "summary.json"

    def check(self, config: GatoConfig, data: DataSettings, settings: TrainSettings) -> bool:
        """Refuse a folder this run cannot use, writing nothing. True when a checkpoint is there
        to resume. Raises when the folder holds something else, a run with other settings (only
        `steps` may grow), or a checkpoint past `settings.steps`."""
        if self.path.is_file():
            raise ValueError(f"{self.path} is a file; a run needs a folder (choose another --out)")
        if self.config.exists() or self.settings.exists():
            differences = _differences(dataclasses.asdict(read_config(self.path)), dataclasses.asdict(config), "config")
            differences += _differences(to_dict(read_data_settings(self.path)), to_dict(data), "data")
            stored = read_settings(self.path)
            differences += _differences(to_dict(stored) | {"steps": 0}, to_dict(settings) | {"steps": 0}, "settings")
            if differences:
                raise ValueError(
                    f"{self.path} holds a run with other settings ({'; '.join(differences)}); "
                    "resume it with the same ones or choose another --out"
                )
            if not self.checkpoint.exists():
                return False
            reached = checkpoint_step(self.path)
            if reached > settings.steps:
                raise ValueError(
                    f"{self.checkpoint} has reached step {reached}, past the {settings.steps} steps asked for; "
                    f"give --steps {reached} or more (the schedule is fitted to the total) or choose another --out"
                )
            return True
        if self.path.exists() and any(self.path.iterdir()):
            raise ValueError(
                f"{self.path} is not empty and holds no gato_min run (no config.json); choose an empty or new --out"
            )
        return False

    def write(self, config: GatoConfig, data: DataSettings, settings: TrainSettings) -> None:
        """Take the folder for this run once `check` passed and the inputs are loaded: write
        config, data and settings (a resumed run: the grown `steps`), drop the temporary files of
        writes a crash cut short."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        if self.config.exists():
            legacy = not self.data.exists()  # a run from before data.json: its two halves are written apart
            stored_steps = read_settings(self.path).steps  # (read before data.json exists, for a legacy run)
            if legacy:
                atomic_write_json(self.data, to_dict(data))
            if settings.steps != stored_steps or legacy:
                atomic_write_json(self.settings, to_dict(settings))
            return
        user = [get_task(t).to_dict() for t in data.tasks if t != TEXT_TASK and get_task(t).family == "user"]
        if user:
            atomic_write_json(self.tasks, user)
        atomic_write_json(self.data, to_dict(data))
        atomic_write_json(self.settings, to_dict(settings))
        atomic_write_text(self.config, config.to_json() + "\n")  # last: config.json marks a claimed folder

    def claim(self, config: GatoConfig, data: DataSettings, settings: TrainSettings) -> bool:
        """`check`, then `write`: True when a checkpoint is there to resume."""
        resume = self.check(config, data, settings)
        self.write(config, data, settings)
        return resume

    def rows(self) -> list[dict]:
        """The rows of metrics.jsonl; a garbled line is named by file and line number."""
        if not self.metrics.exists():
            return []
        rows = []
        for number, line in enumerate(self.metrics.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.metrics}, line {number}, is not valid JSON: {error}") from None
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError(
                    f"{self.metrics}, line {number}: expected an object with an integer 'step', got {line[:80]!r}"
                )
            rows.append(row)
        return rows

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after `step` (they belong to work the checkpoint does not hold; 0:
        a restart without a checkpoint starts the file anew)."""
        kept = [row for row in self.rows() if row["step"] <= step]
        atomic_write_text(self.metrics, "".join(json.dumps(row) + "\n" for row in kept))


def _differences(stored: dict, given: dict, label: str) -> list[str]:
    return [
        f"{label}.{key}: stored {stored.get(key)!r}, given {given.get(key)!r}"
        for key in sorted(set(stored) | set(given))
        if stored.get(key) != given.get(key)
    ]


def _read_json(path: Path, run_dir) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a gato_min run folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def read_config(run_dir: str | Path) -> GatoConfig:
    path = RunFolder(run_dir).config
    _read_json(path, run_dir)
    return GatoConfig.from_json(path.read_text())


def _split_legacy(run_dir: str | Path) -> tuple[dict, dict] | None:
    """(data, train) halves of a settings.json written before data.json existed (one flat
    object holding both), or None for a run of today's layout."""
    run = RunFolder(run_dir)
    if run.data.exists() or not run.settings.is_file():
        return None
    stored = _read_json(run.settings, run_dir)
    if not isinstance(stored, dict) or "tasks" not in stored:
        return None
    data_keys = {f.name for f in dataclasses.fields(DataSettings)}
    return (
        {k: v for k, v in stored.items() if k in data_keys},
        {k: v for k, v in stored.items() if k not in data_keys},
    )


def read_data_settings(run_dir: str | Path) -> DataSettings:
    """What the run trains on; registers the user tasks it names (its tasks.json) first."""
    register_run_tasks(run_dir)
    path = RunFolder(run_dir).data
    legacy = _split_legacy(run_dir)
    return from_dict(DataSettings, legacy[0] if legacy else _read_json(path, run_dir), str(path))


def read_settings(run_dir: str | Path) -> TrainSettings:
    path = RunFolder(run_dir).settings
    legacy = _split_legacy(run_dir)
    return from_dict(TrainSettings, legacy[1] if legacy else _read_json(path, run_dir), str(path))


def register_run_tasks(run_dir: str | Path) -> list[TaskSpec]:
    """Register the user tasks a run trained on (from its tasks.json), unless known already."""
    path = RunFolder(run_dir).tasks
    if not path.is_file():
        return []
    return [add_task(TaskSpec.from_dict(entry)) for entry in _read_json(path, run_dir)]


def fingerprint(config: GatoConfig, tasks) -> dict[str, str]:
    """What a weight file records about the run that wrote it (safetensors metadata: strings)."""
    return {"config": config.to_json(), "tasks": json.dumps(list(tasks))}


def check_fingerprint(stored: dict, config: GatoConfig, tasks, path) -> None:
    """Refuse weights (`path`) whose recorded fingerprint `stored` differs from this run's,
    naming each difference. Files written before fingerprints existed are taken as they are."""
    differences = []
    try:
        if "config" in stored:
            differences += _differences(json.loads(stored["config"]), dataclasses.asdict(config), "config")
        if "tasks" in stored and json.loads(stored["tasks"]) != list(tasks):
            differences.append(f"tasks: recorded {json.loads(stored['tasks'])}, run {list(tasks)}")
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"{path}: its recorded fingerprint is not valid JSON (a corrupt file?)") from None
    if differences:
        raise ValueError(
            f"{path} was written by another run than the one its folder describes ({'; '.join(differences)}); "
            "put the weights back beside their own config.json, or train this run anew"
        )


def weights_metadata(path: str | Path) -> dict:
    """The metadata of a safetensors file; a truncated or corrupt file is named."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{path} cannot be read as safetensors (truncated or corrupt?): {error}") from None


def checkpoint_step(run_dir: str | Path) -> int:
    """The step a run's checkpoint holds (from the weights' metadata when it is there)."""
    run = RunFolder(run_dir)
    if run.weights.is_file():
        step = weights_metadata(run.weights).get("step", "")
        if step.isdigit():
            return int(step)
    return int(read_checkpoint(run_dir)["step"])


def read_checkpoint(run_dir: str | Path, config: GatoConfig | None = None, tasks=()) -> dict:
    """The training state in a run's `checkpoint.pt`; with `config` given, its fingerprint must
    match `config` and `tasks`."""
    path = RunFolder(run_dir).checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not written a checkpoint yet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, an unpickling error, ...
        raise ValueError(f"{path} cannot be read (truncated or corrupt?): {error}") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise ValueError(f"{path} is not a gato_min checkpoint (expected model, optimizer and step)")
    if config is not None:
        check_fingerprint(state.get("fingerprint", {}), config, tasks, path)
    return state


def load_weights(model: torch.nn.Module, tensors: dict, path) -> None:
    """`model.load_state_dict(tensors)`, with a mismatch named by file and tensor."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")
    wrong = [
        f"{key}: file {tuple(value.shape)}, model {tuple(expected[key].shape)}"
        for key, value in tensors.items()
        if value.shape != expected[key].shape
    ]
    if wrong:
        raise ValueError(f"{path} does not fit the model (tensor shapes differ: {'; '.join(wrong)})")
    model.load_state_dict(tensors)


def load_model(
    run_dir: str | Path, config: GatoConfig | None = None, task: str | None = None, device="cpu"
) -> GatoModel:
    """The trained model of a run folder (its `model.safetensors`), in eval mode.

    `config`, when given, must equal the run's; `task`, when given, must be one it trained on."""
    run = RunFolder(run_dir)
    stored = read_config(run_dir)
    if config is not None and config != stored:
        raise ValueError(
            f"{run.config} does not match the given config: "
            + "; ".join(_differences(dataclasses.asdict(stored), dataclasses.asdict(config), "config"))
        )
    if task is not None:
        trained = read_data_settings(run_dir).tasks
        if task not in trained:
            raise ValueError(f"{run_dir} was trained on {', '.join(trained)}, not on {task!r}")
    if not run.weights.is_file():
        raise FileNotFoundError(f"{run.weights} does not exist: the run has not written a checkpoint yet")
    metadata = weights_metadata(run.weights)
    if "tasks" in metadata or "config" in metadata:
        check_fingerprint(metadata, stored, read_data_settings(run_dir).tasks, run.weights)
    model = GatoModel(stored)
    try:
        tensors = load_file(str(run.weights))
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{run.weights} cannot be read as safetensors (truncated or corrupt?): {error}") from None
    load_weights(model, tensors, run.weights)
    return model.to(device).eval()
