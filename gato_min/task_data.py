"""A run's training data, tokenized: per task, training and held-out sequences and a baseline.

Held-out loss (not in the paper; it tells a run's progress apart from memorization): a tenth of
each task's episodes (after the 80 % filter, `gato_min.data.training_set`) never enter
training; the loss on their action tokens is measured every `eval_every` steps beside a
baseline, the cross-entropy of the same tokens under the training data's marginal distribution
of each action dimension: what a model that ignores the observations would reach. The text task
is the shipped prose corpus, cut the same way, with the frequencies of its pieces as baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from gato_min.batch import Batch
from gato_min.config import GatoConfig
from gato_min.data.training_set import TEXT_TASK, DataSettings, heldout_split, task_episodes
from gato_min.envs import get_task
from gato_min.model import GatoModel
from gato_min.sampling import SequenceSampler
from gato_min.sequence import ACTION, TokenizedEpisodes
from gato_min.tokenize import CORPUS_FILE, Tokenizer


@dataclass
class TaskData:
    """One task's training and held-out data, and the baseline loss of its counted tokens."""

    name: str
    train: TokenizedEpisodes
    heldout: TokenizedEpisodes
    baseline_loss: float  # cross-entropy of held-out counted tokens under the training marginals
    info: dict = field(default_factory=dict)
    window_timesteps: int = 0  # timesteps per window (0: as many as fit the context)

    def sampler(self, config: GatoConfig, seed, heldout: bool = False) -> SequenceSampler:
        return SequenceSampler(self.heldout if heldout else self.train, config, seed, self.window_timesteps)

    def heldout_batches(self, config: GatoConfig, batch_size: int, count: int) -> list[Batch]:
        """`count` batches of prompt-free held-out windows spread evenly over the held-out data
        (the same ones at every evaluation, so that evaluations compare)."""
        sampler = SequenceSampler(self.heldout, config, window_timesteps=self.window_timesteps)
        steps, valid, prompted, from_end = sampler.tiled_windows(count * batch_size)
        chunks = np.array_split(np.arange(len(steps)), -(-len(steps) // batch_size))
        return [sampler.batch(steps[c], valid[c], prompted[c], from_end[c]) for c in chunks]

    def baseline_losses(self, batches: list[Batch], config: GatoConfig) -> float:
        """The cross-entropy of the counted tokens of `batches` under the training data's
        frequencies: per action dimension (add-one smoothed), or of text pieces for text."""
        layout = self.train.layout
        log_p = _log_frequencies(self.train.counted_ids, config.vocab.size)
        first, per_step = layout.tokens_per_timestep - log_p.shape[0], layout.tokens_per_timestep
        total, count = 0.0, 0
        for batch in batches:
            counted = (batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]).numpy()
            targets = np.nonzero(counted)[1] + 1
            ids = batch.token_ids[:, 1:].numpy()[counted]
            total, count = total - log_p[targets % per_step - first, ids].sum(), count + len(ids)
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


def marginal_loss(train_ids: np.ndarray, heldout_ids: np.ndarray, vocab_size: int) -> float:
    """The baseline of a task: the mean of `marginal_losses` (every column has as many ids)."""
    return float(marginal_losses(train_ids, heldout_ids, vocab_size).mean())


def load_task_data(
    task: str, settings: DataSettings, config: GatoConfig, cache=None, progress: bool = True
) -> TaskData:
    """Collect (or read) a task's episodes, filter, split and tokenize them; or cut the text corpus."""
    tokenizer = Tokenizer(config)
    window = settings.of("window_timesteps", task)
    if task == TEXT_TASK:
        stream = tokenizer.encode_text(CORPUS_FILE.read_text())
        cut = len(stream) - heldout_split(len(stream), settings.heldout_fraction)
        train = TokenizedEpisodes.from_text(stream[:cut], tokenizer, task)
        heldout = TokenizedEpisodes.from_text(stream[cut:], tokenizer, f"{task} (held out)")
        baseline = marginal_loss(train.counted_ids, heldout.counted_ids, config.vocab.size)
        info = {"tokens": len(stream), "heldout_tokens": len(stream) - cut}
        return TaskData(task, train, heldout, baseline, info, window)
    train_episodes, heldout_episodes, collected = task_episodes(task, settings, cache, progress)
    spec = get_task(task)
    train = TokenizedEpisodes(train_episodes, tokenizer, task, spec)
    heldout = TokenizedEpisodes(heldout_episodes, tokenizer, f"{task} (held out)", spec)
    baseline = marginal_loss(train.action_ids, heldout.action_ids, config.vocab.size)
    info = {
        "episodes_collected": collected,
        "episodes_kept": len(train_episodes) + len(heldout_episodes),
        "train_episodes": len(train_episodes),
        "heldout_episodes": len(heldout_episodes),
        "train_timesteps": int(train.lengths.sum()),
        "tokens_per_timestep": train.layout.tokens_per_timestep,
    }
    return TaskData(task, train, heldout, baseline, info, window)


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
