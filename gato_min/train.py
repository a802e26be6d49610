"""The training loop: behaviour data (and text) -> a trained Gato, resumable, on one CPU or many GPUs.

Gato (Reed et al., 2022, Sec. 2.3 and App. C.1) trains with AdamW (beta1 0.9, beta2 0.95,
weight decay 0.1), a linear learning-rate warm-up (15,000 steps) followed by cosine decay to a
tenth of the peak, gradient-norm clipping at 1.0, batches of 512 sequences of 1024 tokens, for
1M steps. Sequences of every task are mixed in each batch with per-task weights, and only
episodes whose return reaches 80 % of the expert's are trained on (Sec. 3.1). The betas, decay
and clipping are the defaults of `TrainSettings`; peak rate, warm-up and batch are scaled down
for a CPU (comments per field).

    python -m gato_min train --tasks halfcheetah --preset cpu-small --steps 2000 --out runs/halfcheetah
    torchrun --nproc_per_node=2 -m gato_min train ...      # the same code, DDP (gloo on CPU, nccl on GPU)
    python -m gato_min train ... --processes 2 --threads 1 # the same as torchrun, started by gato_min (CPU)

A run folder holds `config.json` (the model), `settings.json` (this loop), `metrics.jsonl` (one
JSON object per logged step or evaluation), `checkpoint.pt` (model, optimizer, step and every
random state; loadable with `weights_only=True`), `model.safetensors` (the weights alone, for
acting) and `learning_curve.png`. Every file is written atomically. Starting a run in a folder
that holds one resumes it exactly (same data order, same losses), and refuses when the
settings or config differ; it never overwrites.

Held-out loss: a tenth of each task's episodes (after the 80 % filter) never enter training;
the loss on their action tokens is measured every `eval_every` steps beside a baseline, the
cross-entropy of the same tokens under the training data's marginal distribution of each action
dimension: what a model that ignores the observations would reach.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gato_min.config import GatoConfig
from gato_min.files import atomic_save_safetensors, atomic_torch_save, atomic_write_json, atomic_write_text
from gato_min.model import GatoModel
from gato_min.sequence import ACTION, Batch, SequenceSampler, TokenizedEpisodes, concat_batches, text_batch
from gato_min.tokenize import Tokenizer

TEXT_TASK = "text"  # the pseudo-task of the shipped prose corpus (text tokens only)


@dataclass(frozen=True)
class TrainSettings:
    # --- data ---
    tasks: tuple[str, ...] = ("halfcheetah",)  # registry tasks, or "text" for the shipped prose corpus
    weights: tuple[float, ...] | None = None  # sampling weight per task (None: equal)
    tier: str = "expert"  # behaviour-data tier collected for the control tasks
    episodes: int = 100  # episodes collected per control task
    data_seed: int = 0  # seed of the collected episodes
    action_noise: float = 0.0  # Gaussian noise on the MuJoCo actors' torques while collecting (0.1: TD3's own)
    record: str = "played"  # with noise: write down the torque played, or the expert's "intended" one (DART)
    min_return_fraction: float = 0.8  # keep episodes >= random + f (expert - random) (Sec. 3.1); 0: keep all
    heldout_fraction: float = 0.1  # share of each task's episodes (or text) kept out of training
    # --- optimization (App. C.1: AdamW b1 0.9, b2 0.95, wd 0.1, warm-up, cosine to 1/10, clip 1.0) ---
    steps: int = 2000  # optimizer steps (paper: 1M)
    batch_size: int = 8  # sequences per step, over all processes (paper: 512)
    lr: float = 1e-3  # peak learning rate (paper: 1e-4 at 1.18B with batch 512)
    warmup_steps: int = 100  # linear warm-up (paper: 15,000)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio (paper: 10x decay)
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1  # on matrices only; biases, norms and tables are not decayed
    grad_clip: float = 1.0  # global gradient-norm clip
    seed: int = 0  # model initialization and batch sampling
    # --- bookkeeping ---
    log_every: int = 10  # steps between metrics rows (loss averaged over them)
    eval_every: int = 100  # steps between held-out evaluations (a multiple of log_every)
    eval_batches: int = 4  # held-out batches per task (fixed once, so evaluations compare)
    checkpoint_every: int = 100  # steps between checkpoints (a multiple of log_every)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("TrainSettings.tasks is empty; name at least one task")
        if self.weights is not None:
            if len(self.weights) != len(self.tasks):
                raise ValueError(f"TrainSettings.weights has {len(self.weights)} entries for {len(self.tasks)} tasks")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"TrainSettings.weights must be >= 0 with a positive sum, got {self.weights}")
        if self.record not in ("played", "intended"):
            raise ValueError(f"TrainSettings.record must be 'played' or 'intended', got {self.record!r}")
        for name in ("steps", "batch_size", "episodes", "log_every", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainSettings.{name} must be a positive int, got {value!r}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) % self.log_every:
                raise ValueError(f"TrainSettings.{name} ({getattr(self, name)}) must be a multiple of log_every "
                                 f"({self.log_every})")
        if not 0 <= self.min_return_fraction <= 1 or not 0 < self.heldout_fraction < 1:
            raise ValueError("TrainSettings.min_return_fraction must lie in [0, 1] and heldout_fraction in (0, 1)")
        if self.warmup_steps < 0 or not 0 < self.min_lr_ratio <= 1 or self.lr <= 0:
            raise ValueError("TrainSettings needs lr > 0, warmup_steps >= 0 and min_lr_ratio in (0, 1]")

    @property
    def task_weights(self) -> np.ndarray:
        weights = np.ones(len(self.tasks)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        return weights / weights.sum()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"settings have unknown keys {unknown}; known keys: {sorted(known)}")
        data = dict(data)
        for key in ("tasks", "weights"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def learning_rate(step: int, settings: TrainSettings) -> float:
    """The rate of optimizer step `step` (1-based): linear warm-up, then cosine to lr * min_lr_ratio."""
    if step <= settings.warmup_steps:
        return settings.lr * step / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps))
    low = settings.lr * settings.min_lr_ratio
    return low + 0.5 * (settings.lr - low) * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------- data


class TextSampler:
    """Random windows of a stream of text ids (the shipped corpus), the same interface as SequenceSampler."""

    def __init__(self, stream: np.ndarray, config: GatoConfig, seed=0):
        self.stream, self.config = stream, config
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> Batch:
        return text_batch(self.stream, self.config.context_length, batch_size, self.config.vocab.pad_id, self.rng)


@dataclass
class TaskData:
    """One task's training and held-out data, and the baseline loss of its counted tokens."""

    name: str
    train: TokenizedEpisodes | np.ndarray  # (a token stream for the text task)
    heldout: TokenizedEpisodes | np.ndarray
    baseline_loss: float  # cross-entropy of held-out counted tokens under the training marginals
    info: dict = field(default_factory=dict)

    def sampler(self, config: GatoConfig, seed, heldout: bool = False):
        data = self.heldout if heldout else self.train
        if isinstance(data, np.ndarray):
            return TextSampler(data, config, seed)
        return SequenceSampler(data, config, seed)

    def heldout_batches(self, config: GatoConfig, batch_size: int, count: int) -> list[Batch]:
        """`count` batches of prompt-free held-out windows spread evenly over the held-out data
        (the same ones at every evaluation, so that evaluations compare)."""
        windows = count * batch_size
        if isinstance(self.heldout, np.ndarray):
            L = config.context_length
            starts = np.arange(0, max(1, len(self.heldout) - 1), L)
            starts = starts[np.unique(np.linspace(0, len(starts) - 1, min(windows, len(starts))).round().astype(int))]
            return [text_batch(self.heldout, L, len(chunk), config.vocab.pad_id, starts=chunk)
                    for chunk in np.array_split(starts, -(-len(starts) // batch_size))]
        sampler = SequenceSampler(self.heldout, config)
        steps, valid, prompted, from_end = sampler.tiled_windows(windows)
        chunks = np.array_split(np.arange(len(steps)), -(-len(steps) // batch_size))
        return [sampler.batch(steps[c], valid[c], prompted[c], from_end[c]) for c in chunks]

    def baseline_losses(self, batches: list[Batch], config: GatoConfig) -> float:
        """The cross-entropy of the counted tokens of `batches` under the training data's
        frequencies: per action dimension (add-one smoothed), or of text pieces for text."""
        vocab = config.vocab.size
        if isinstance(self.train, np.ndarray):
            columns, tokens_per_timestep, first = self.train[:, None], 1, 0
        else:
            layout = self.train.layout
            columns, tokens_per_timestep = self.train.action_ids, layout.tokens_per_timestep
            first = tokens_per_timestep - layout.action_dim
        log_p = _log_frequencies(columns, vocab)
        total, count = 0.0, 0
        for batch in batches:
            counted = (batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]).numpy()
            targets = np.nonzero(counted)[1] + 1
            ids = batch.token_ids[:, 1:].numpy()[counted]
            dims = targets % tokens_per_timestep - first if tokens_per_timestep > 1 else np.zeros_like(targets)
            total, count = total - log_p[dims, ids].sum(), count + len(ids)
        return total / count


def marginal_losses(train_ids: np.ndarray, heldout_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Per column (action dimension, or the one column of text): mean -log p(id) of the held-out
    ids under the training frequencies of that column, add-one smoothed."""
    log_p = _log_frequencies(train_ids, vocab_size)
    heldout_ids = heldout_ids.reshape(len(heldout_ids), -1)
    return -np.take_along_axis(log_p, heldout_ids.T, axis=1).mean(axis=1)


def _log_frequencies(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """log p(id) per column of `ids` (rows: samples), from add-one smoothed counts: (columns, vocab)."""
    ids = ids.reshape(len(ids), -1)
    counts = np.stack([np.bincount(column, minlength=vocab_size) for column in ids.T]).astype(np.float64) + 1.0
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def _marginal_loss(train_ids: np.ndarray, heldout_ids: np.ndarray, vocab_size: int) -> float:
    """The baseline of a task: the mean of `marginal_losses` (every column has as many ids)."""
    return float(marginal_losses(train_ids, heldout_ids, vocab_size).mean())


def _split(count: int, fraction: float) -> int:
    """How many of `count` items go to the held-out side (at least one, never all)."""
    if count < 2:
        raise ValueError(f"need at least 2 episodes to keep some out of training, got {count}")
    return min(count - 1, max(1, round(count * fraction)))


def task_episodes(task: str, settings: TrainSettings, cache=None, progress: bool = True):
    """A task's episodes as a run uses them: collected (or read from the cache), filtered to
    those reaching `min_return_fraction` of the expert return, split into (train, held-out)
    lists; also the number collected. The agent takes its demonstrations from the held-out side."""
    from gato_min.data.collect import load_or_collect
    from gato_min.data.episodes import filter_by_return
    from gato_min.data.tasks import check_tier, get_task, reference_returns

    if settings.tier != "random":
        check_tier(task, settings.tier)
    noise = settings.action_noise if get_task(task).family == "mujoco" else 0.0
    data = load_or_collect(task, settings.tier, settings.episodes, settings.data_seed, cache=cache, progress=progress,
                           action_noise=noise, record=settings.record if noise else "played")
    episodes = list(data)
    if settings.min_return_fraction > 0:
        ref = reference_returns(task)
        if "expert" not in ref or "random" not in ref:
            raise KeyError(f"the stored reference returns of {task!r} lack the random or expert return, which the "
                           f"{settings.min_return_fraction:.0%} filter needs; run python -m gato_min reference-returns "
                           f"--tasks {task} (or set min_return_fraction to 0)")
        episodes = filter_by_return(episodes, ref["expert"], settings.min_return_fraction, ref["random"])
        if len(episodes) < 2:
            raise ValueError(
                f"{task}/{settings.tier}: {len(episodes)} of {len(data)} episodes reach {settings.min_return_fraction:.0%} "
                f"of the expert return (random {ref['random']:.1f}, expert {ref['expert']:.1f}); collect more episodes, "
                "use a better tier, or lower min_return_fraction (0 keeps everything)")
    held = _split(len(episodes), settings.heldout_fraction)
    return episodes[:-held], episodes[-held:], len(data)


def load_task_data(task: str, settings: TrainSettings, config: GatoConfig, cache=None, progress: bool = True) -> TaskData:
    """Collect (or read from the cache) a task's episodes, filter, split and tokenize them."""
    tokenizer = Tokenizer(config)
    if task == TEXT_TASK:
        from gato_min.text_model import CORPUS_FILE

        stream = tokenizer.encode_text(Path(CORPUS_FILE).read_text())
        cut = len(stream) - _split(len(stream), settings.heldout_fraction)
        train, heldout = stream[:cut], stream[cut:]
        baseline = _marginal_loss(train[:, None], heldout[:, None], config.vocab.size)
        return TaskData(task, train, heldout, baseline, {"tokens": len(stream), "heldout_tokens": len(heldout)})

    train_episodes, heldout_episodes, collected = task_episodes(task, settings, cache, progress)
    train = TokenizedEpisodes(train_episodes, tokenizer, task)
    heldout = TokenizedEpisodes(heldout_episodes, tokenizer, f"{task} (held out)")
    baseline = _marginal_loss(train.action_ids, heldout.action_ids, config.vocab.size)
    info = {"episodes_collected": collected, "episodes_kept": len(train_episodes) + len(heldout_episodes),
            "train_episodes": len(train_episodes), "heldout_episodes": len(heldout_episodes),
            "train_timesteps": int(train.lengths.sum()),
            "tokens_per_timestep": train.layout.tokens_per_timestep}
    return TaskData(task, train, heldout, baseline, info)


# ---------------------------------------------------------------------------- the run folder


class RunFolder:
    """The files of one run, and the rules for reusing a folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.settings = self.path / "settings.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint.pt"
        self.weights = self.path / "model.safetensors"
        self.curve = self.path / "learning_curve.png"
        self.summary = self.path / "summary.json"

    def claim(self, config: GatoConfig, settings: TrainSettings) -> bool:
        """Write config and settings into a new folder, or check them against an existing run.

        Returns True when a checkpoint is there to resume. Raises when the folder holds something
        else, or a run with other settings (only `steps` may grow)."""
        if self.config.exists() or self.settings.exists():
            stored_config = read_config(self.path)
            stored = TrainSettings.from_dict(json.loads(self.settings.read_text()))
            differences = _differences(dataclasses.asdict(stored_config), dataclasses.asdict(config), "config")
            differences += _differences(stored.to_dict() | {"steps": 0}, settings.to_dict() | {"steps": 0}, "settings")
            if differences:
                raise ValueError(f"{self.path} holds a run with other settings ({'; '.join(differences)}); "
                                 "resume it with the same ones or choose another --out")
            if settings.steps != stored.steps:
                atomic_write_json(self.settings, settings.to_dict())
            return self.checkpoint.exists()
        if self.path.exists() and any(self.path.iterdir()):
            raise ValueError(f"{self.path} is not empty and holds no gato_min run (no config.json); "
                             "choose an empty or new --out")
        atomic_write_text(self.config, config.to_json() + "\n")
        atomic_write_json(self.settings, settings.to_dict())
        return False

    def rows(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop rows logged after `step` (they belong to work the checkpoint does not hold)."""
        kept = [row for row in self.rows() if row["step"] <= step]
        atomic_write_text(self.metrics, "".join(json.dumps(row) + "\n" for row in kept))


def _differences(stored: dict, given: dict, label: str) -> list[str]:
    return [f"{label}.{key}: stored {stored.get(key)!r}, given {given.get(key)!r}"
            for key in sorted(set(stored) | set(given)) if stored.get(key) != given.get(key)]


def read_config(run_dir: str | Path) -> GatoConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a gato_min run folder")
    return GatoConfig.from_json(path.read_text())


def read_settings(run_dir: str | Path) -> TrainSettings:
    path = Path(run_dir) / "settings.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a gato_min run folder")
    return TrainSettings.from_dict(json.loads(path.read_text()))


def load_model(run_dir: str | Path, config: GatoConfig | None = None, task: str | None = None,
               device="cpu") -> GatoModel:
    """The trained model of a run folder (its `model.safetensors`), in eval mode.

    `config`, when given, must equal the run's; `task`, when given, must be one it trained on."""
    from safetensors.torch import load_file

    run = RunFolder(run_dir)
    stored = read_config(run_dir)
    if config is not None and config != stored:
        raise ValueError(f"{run.config} does not match the given config: "
                         + "; ".join(_differences(dataclasses.asdict(stored), dataclasses.asdict(config), "config")))
    if task is not None:
        trained = read_settings(run_dir).tasks
        if task not in trained:
            raise ValueError(f"{run_dir} was trained on {', '.join(trained)}, not on {task!r}")
    if not run.weights.is_file():
        raise FileNotFoundError(f"{run.weights} does not exist: the run has not written a checkpoint yet")
    model = GatoModel(stored)
    tensors = load_file(str(run.weights))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{run.weights} does not fit the model of {run.config}: missing {missing}, "
                         f"unexpected {unexpected}")
    return model.to(device).eval()


# ------------------------------------------------------------------------------- the loop


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices of linear and convolution layers; not biases, norms or lookup tables."""
    decay, keep = [], []
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for param in model.parameters():
        (decay if param.dim() >= 2 and id(param) not in tables else keep).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


class _LossModule(torch.nn.Module):
    """Makes the loss the module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: GatoModel):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


@torch.no_grad()
def heldout_losses(model: GatoModel, batches: dict[str, list[Batch]], device) -> dict[str, float]:
    """Mean loss of the counted tokens (actions, or text for the text task) of each task's held-out batches."""
    was_training = model.training
    model.eval()
    out = {}
    for task, task_batches in batches.items():
        total, count = 0.0, 0
        for batch in task_batches:
            losses, _ = model.token_losses(batch.to(device))
            total, count = total + float(losses.sum()), count + losses.numel()
        out[task] = total / count
    model.train(was_training)
    return out


@torch.no_grad()
def action_dimension_losses(model: GatoModel, batches: list[Batch], layout) -> np.ndarray:
    """Mean loss of each action dimension's tokens over `batches` of one task (`layout`: its
    TimestepLayout). Windows start at timestep boundaries, so a token's place in its timestep
    is its position modulo the timestep length."""
    was_training = model.training
    model.eval()
    first_action = layout.tokens_per_timestep - layout.action_dim
    sums, counts = np.zeros(layout.action_dim), np.zeros(layout.action_dim)
    for batch in batches:
        losses, counted = model.token_losses(batch)
        targets = torch.nonzero(counted)[:, 1] + 1  # (row-major, the order of `losses`)
        kinds = batch.token_kinds[:, 1:][counted]
        dims = (targets % layout.tokens_per_timestep - first_action).numpy()
        is_action = (kinds == ACTION).numpy()
        np.add.at(sums, dims[is_action], losses.numpy()[is_action])
        np.add.at(counts, dims[is_action], 1)
    model.train(was_training)
    return sums / np.maximum(counts, 1)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when torchrun started us."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def _random_state(samplers: dict, mixer: np.random.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "numpy": json.dumps(
        {"mixer": mixer.bit_generator.state} | {task: s.rng.bit_generator.state for task, s in samplers.items()})}


def _restore_random_state(state: dict, samplers: dict, mixer: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy_states = json.loads(state["numpy"])
    mixer.bit_generator.state = numpy_states["mixer"]
    for task, sampler in samplers.items():
        sampler.rng.bit_generator.state = numpy_states[task]


@dataclass
class TrainResult:
    model: GatoModel  # this process's model (identical on every process under DDP)
    summary: dict  # what summary.json holds (empty on processes other than rank 0)
    rank: int = 0
    world_size: int = 1


def train(config: GatoConfig, settings: TrainSettings, out: str | Path, cache=None, device: str = "auto",
          threads: int | None = None, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train (or resume) the run in folder `out`. Works as is under torchrun.

    `stop_after` ends this call after that many optimizer steps (the run stays resumable)."""
    from tqdm.auto import tqdm

    rank, world, local_rank = _distributed()
    if settings.batch_size % world:
        raise ValueError(f"batch_size {settings.batch_size} does not split over {world} processes")
    if threads:
        torch.set_num_threads(threads)
    device = _pick_device(device, local_rank)
    run = RunFolder(out)
    resume = _claim_on_rank0(run, config, settings, rank, world)

    # data: rank 0 collects what the cache lacks, then every rank reads it
    tasks = {}
    for turn in ((0,), range(1, world)) if world > 1 else ((0,),):
        if rank in turn:
            tasks = {t: load_task_data(t, settings, config, cache, progress and rank == 0) for t in settings.tasks}
        _barrier(world)
    heldout = {t: d.heldout_batches(config, settings.batch_size, settings.eval_batches) for t, d in tasks.items()}
    baselines = {t: d.baseline_losses(heldout[t], config) for t, d in tasks.items()}

    torch.manual_seed(settings.seed)
    model = GatoModel(config).to(device)
    optimizer = torch.optim.AdamW(_parameter_groups(model, settings.weight_decay), lr=settings.lr,
                                  betas=(settings.beta1, settings.beta2))
    step_fn = _LossModule(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(step_fn, device_ids=[local_rank] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    local_batch = settings.batch_size // world
    samplers = {t: d.sampler(config, [settings.seed, rank, i]) for i, (t, d) in enumerate(tasks.items())}
    mixer = np.random.default_rng([settings.seed, rank, 104729])
    torch.manual_seed(settings.seed * 1000 + rank + 1)  # patch-position sampling differs per process

    step, elapsed = 0, 0.0  # elapsed: wall seconds of training over every call that worked on this run
    if resume:
        state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
        if state["world_size"] != world:
            raise ValueError(f"{run.checkpoint} was written by {state['world_size']} processes; resume it with "
                             f"the same number (got {world})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_random_state(state["random"][rank], samplers, mixer)
        step, elapsed = state["step"], state.get("elapsed_s", 0.0)
        if rank == 0:
            run.truncate_metrics(step)
    if rank == 0:
        info = {t: d.info | {"baseline_loss": round(d.baseline_loss, 4)} for t, d in tasks.items()}
        print(f"gato_min train: {model.num_parameters():,} parameters, {world} process(es) on {device}, "
              + ("resuming at step " + str(step) if step else "new run") + f" -> {run.path}\n  data: {json.dumps(info)}")

    weights = settings.task_weights
    last = settings.steps if stop_after is None else min(settings.steps, step + stop_after)
    bar = tqdm(total=settings.steps, initial=step, desc="train", disable=not progress or rank != 0, unit="step")
    window_loss, window_tokens, window_steps, window_start = torch.zeros((), device=device), 0, 0, time.perf_counter()
    model.train()
    while step < last:
        step += 1
        lr = learning_rate(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        counts = mixer.multinomial(local_batch, weights)
        batch = concat_batches([samplers[t].sample(int(n)) for t, n in zip(tasks, counts) if n]).to(device)
        loss = step_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        window_loss += loss.detach()
        window_tokens += int(batch.attention_mask.sum())
        window_steps += 1
        bar.update(1)

        if step % settings.log_every == 0 or step == last:
            mean_loss = _mean_over_processes(window_loss / window_steps, world)
            window_s = time.perf_counter() - window_start
            elapsed += window_s
            row = {"step": step, "loss": round(mean_loss, 6), "lr": lr, "grad_norm": round(float(grad_norm), 4),
                   "tokens_per_s": round(window_tokens * world / window_s, 1), "elapsed_s": round(elapsed, 1)}
            window_loss, window_tokens, window_steps, window_start = torch.zeros((), device=device), 0, 0, time.perf_counter()
            if rank == 0:
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.1e}")
                if step % settings.eval_every == 0 or step == settings.steps:
                    row["heldout"] = {t: round(v, 6) for t, v in heldout_losses(model, heldout, device).items()}
                    row["baseline"] = {t: round(v, 6) for t, v in baselines.items()}
                with open(run.metrics, "a") as file:
                    file.write(json.dumps(row) + "\n")
            if step % settings.checkpoint_every == 0 or step == last:
                _save_checkpoint(run, model, optimizer, step, elapsed, world, rank, _random_state(samplers, mixer))
    bar.close()

    summary = {}
    if rank == 0:
        plot_learning_curve(run.path)
        rows = run.rows()
        evaluations = [r for r in rows if "heldout" in r]
        summary = {"step": step, "steps": settings.steps, "parameters": model.num_parameters(),
                   "final_loss": rows[-1]["loss"] if rows else None,
                   "heldout": evaluations[-1]["heldout"] if evaluations else None, "baseline": baselines,
                   "data": {t: d.info for t, d in tasks.items()}}
        atomic_write_json(run.summary, summary)
    _barrier(world)
    return TrainResult(model, summary, rank, world)


def train_processes(config: GatoConfig, settings: TrainSettings, out: str | Path, processes: int = 2, cache=None,
                    threads: int = 1, progress: bool = True, stop_after: int | None = None) -> dict:
    """`train` on this machine's CPU as `processes` data-parallel workers (DDP over gloo), each
    with `threads` torch threads; returns the run's summary (its summary.json). The batch is
    split over the workers, so the run is the one `torchrun --nproc_per_node=<processes>` makes,
    and it resumes under either.

    Why: a model this small keeps two threads of one process only partly busy (every operation
    is short), while two single-threaded processes each run flat out and exchange ~5 MB of
    gradients per step. On 2 cores, `python -m gato_min bench-processes` measures the cheetah
    recipe's steps 1.1-1.2x faster this way than in one process with 2 threads (README)."""
    import torch.multiprocessing as mp

    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("train_processes starts its own workers; under torchrun, call train instead")
    if processes == 1:
        train(config, settings, out, cache=cache, device="cpu", threads=threads, progress=progress, stop_after=stop_after)
    else:
        if settings.batch_size % processes:
            raise ValueError(f"batch_size {settings.batch_size} does not split over {processes} processes")
        try:
            mp.start_processes(_worker, args=(processes, free_port(), config, settings, str(out), cache, threads, progress,
                                              stop_after), nprocs=processes, start_method="spawn")
        except mp.ProcessRaisedException as error:  # a worker's own error, e.g. a run folder that holds another run
            kind, _, message = str(error).strip().splitlines()[-1].partition(": ")
            known = {"ValueError": ValueError, "KeyError": KeyError, "FileNotFoundError": FileNotFoundError}
            if kind in known:
                raise known[kind](message) from None
            raise RuntimeError(f"a training worker failed:\n{error}") from None
    return json.loads(RunFolder(out).summary.read_text())


def free_port() -> int:
    """A TCP port of this machine that nothing listens on now, for local workers' rendezvous."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world: int, port: int, config, settings, out, cache, threads, progress, stop_after) -> None:
    """One process of `train_processes`: joins the group as torchrun would have it, trains, leaves."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    try:
        train(config, settings, out, cache=cache, device="cpu", threads=threads, progress=progress,
              stop_after=stop_after)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _claim_on_rank0(run: RunFolder, config, settings, rank: int, world: int) -> bool:
    if world == 1:
        return run.claim(config, settings)
    import torch.distributed as dist

    result = [None]
    if rank == 0:
        try:
            result = [run.claim(config, settings)]
        except Exception as error:  # every process must hear of it, not only rank 0
            result = [error]
    dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _mean_over_processes(value: torch.Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def _save_checkpoint(run: RunFolder, model, optimizer, step: int, elapsed: float, world: int, rank: int,
                     random_state: dict) -> None:
    states = [random_state]
    if world > 1:
        import torch.distributed as dist

        states = [None] * world
        dist.all_gather_object(states, random_state)
    if rank == 0:
        model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save({"model": model_state, "optimizer": optimizer.state_dict(), "step": step,
                           "elapsed_s": elapsed, "world_size": world, "random": states}, run.checkpoint)
        atomic_save_safetensors(model_state, run.weights, {"step": str(step), "format": "gato_min"})


# ------------------------------------------------------------------------------------ plots


def plot_learning_curve(run_dir: str | Path, out_file: str | Path | None = None) -> Path:
    """Training loss and held-out loss per task against steps, with each task's marginal baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gato_min.plotting import PALETTE, save_figure, use_style

    run = RunFolder(run_dir)
    rows = run.rows()
    if not rows:
        raise ValueError(f"{run.metrics} holds no rows to plot")
    use_style()
    fig, ax = plt.subplots()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=PALETTE[0], lw=1.2, label="training loss")
    evaluations = [r for r in rows if "heldout" in r]
    for i, task in enumerate(evaluations[0]["heldout"] if evaluations else []):
        color = PALETTE[(i + 1) % len(PALETTE)] if i + 1 != 4 else PALETTE[5]  # (skip the pale yellow)
        kind = "text" if task == TEXT_TASK else "action"
        ax.plot([r["step"] for r in evaluations], [r["heldout"][task] for r in evaluations], "o-", ms=3,
                color=color, label=f"{task}: held-out {kind} loss")
        ax.axhline(evaluations[-1]["baseline"][task], color=color, ls="--", lw=1,
                   label=f"{task}: marginal-bins baseline")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_file = Path(out_file) if out_file is not None else run.curve
    path = save_figure(fig, out_file.stem, out_file.parent)
    plt.close(fig)
    return path
