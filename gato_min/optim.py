"""How a run optimizes: the settings of the loop, the learning-rate schedule, weight decay.

Gato (Reed et al., 2022, Sec. 2.3 and App. C.1) trains with AdamW (beta1 0.9, beta2 0.95,
weight decay 0.1), a linear learning-rate warm-up (15,000 steps) followed by cosine decay to a
tenth of the peak, gradient-norm clipping at 1.0, batches of 512 sequences of 1024 tokens, for
1M steps. The betas, decay and clipping are the defaults of `TrainSettings`; peak rate, warm-up
and batch are scaled down for a CPU (help text per field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gato_min.settings import check_finite, setting


@dataclass(frozen=True)
class TrainSettings:
    # --- optimization (App. C.1: AdamW b1 0.9, b2 0.95, wd 0.1, warm-up, cosine to 1/10, clip 1.0) ---
    steps: int = setting(2000, "optimizer steps (paper: 1M)")
    batch_size: int = setting(8, "sequences per step, over all processes (paper: 512)")
    lr: float = setting(1e-3, "peak learning rate (paper: 1e-4 at 1.18B with batch 512)")
    warmup_steps: int = setting(100, "linear warm-up steps (paper: 15,000)")
    min_lr_ratio: float = setting(0.1, "cosine decay ends at lr * min_lr_ratio (paper: 10x decay)")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.95, "AdamW beta2")
    weight_decay: float = setting(0.1, "on matrices only; biases, norms and tables are not decayed")
    grad_clip: float = setting(1.0, "global gradient-norm clip")
    seed: int = setting(0, "model initialization and batch sampling")
    # --- beyond the paper (chapter 09) ---
    bin_smoothing: float = setting(
        0.0, "width in bins of Gaussian-smoothed targets for continuous tokens (HL-Gauss); 0 = one-hot, the paper"
    )
    # --- bookkeeping ---
    log_every: int = setting(10, "steps between metrics rows (loss averaged over them)")
    eval_every: int = setting(100, "steps between held-out evaluations (a multiple of log_every)")
    eval_batches: int = setting(4, "held-out batches per task (fixed once, so evaluations compare)")
    checkpoint_every: int = setting(100, "steps between checkpoints (a multiple of log_every)")

    def __post_init__(self) -> None:
        check_finite(self)
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainSettings.{name} must be a positive int, got {value!r}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) % self.log_every:
                raise ValueError(
                    f"TrainSettings.{name} ({getattr(self, name)}) must be a multiple of log_every ({self.log_every})"
                )
        if self.bin_smoothing < 0:
            raise ValueError(f"TrainSettings.bin_smoothing must be >= 0 bins, got {self.bin_smoothing!r}")
        if self.warmup_steps < 0 or not 0 < self.min_lr_ratio <= 1 or self.lr <= 0:
            raise ValueError("TrainSettings needs lr > 0, warmup_steps >= 0 and min_lr_ratio in (0, 1]")


def learning_rate(step: int, settings: TrainSettings) -> float:
    """The rate of optimizer step `step` (1-based): linear warm-up, then cosine to lr * min_lr_ratio."""
    if step <= settings.warmup_steps:
        return settings.lr * step / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps))
    low = settings.lr * settings.min_lr_ratio
    return low + 0.5 * (settings.lr - low) * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the matrices of linear and convolution layers; not biases, norms or lookup tables."""
    decay, keep = [], []
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for param in model.parameters():
        (decay if param.dim() >= 2 and id(param) not in tables else keep).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(model, settings.weight_decay), lr=settings.lr, betas=(settings.beta1, settings.beta2)
    )
