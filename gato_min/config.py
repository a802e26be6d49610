"""One configuration dataclass, `GatoConfig`, with named presets.

The paper's three sizes (Reed et al., 2022, Sec. 2.3 and Table 1 of App. C.1) and small presets
that train on a 2-core CPU. Every hyper-parameter of the model and of its tokenizer lives here;
the vocabulary layout is derived from it (`GatoConfig.vocab`), never hard-coded elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from gato_min.tokenize import VocabLayout


@dataclass(frozen=True)
class GatoConfig:
    # --- tokenization (Sec. 2.1) ---
    text_vocab_size: int = 32_000  # SentencePiece pieces; text ids are [0, text_vocab_size)
    num_bins: int = 1024  # discrete values are [0, num_bins); continuous values use num_bins bins
    mu: float = 100.0  # mu-law compression strength
    mu_law_m: float = 256.0  # mu-law input scale M: |x| = M maps to 1
    patch_size: int = 16  # side of the square image patches, in pixels
    text_model: str | None = None  # SentencePiece model file; None = the one shipped for this size
    # --- embedding (Sec. 2.2, App. C.2) ---
    patch_channels: int = 128  # channels inside the per-patch ResNet block (the paper does not say)
    patch_groups: int = 32  # GroupNorm groups in that block (reimplementations use 32)
    value_init: str = "normal"  # init of the continuous-bin rows of the token table: "normal" (like every
    #                             row), or "smooth": neighbouring bins start close (gato_min.model)
    # --- position encodings (App. C.3) ---
    position_bins: int = 128  # quantization of a patch's row/column interval
    max_local_positions: int = 512  # size of the local observation position table
    action_positions: str = "none"  # "none": action tokens get no local position (App. C.3);
    #                                 "local": they continue the observation indices
    return_conditioning: bool = False  # beyond the paper (chapter 09): a return-to-go token opens each
    #                                    timestep, DT-style; the agent is then given a target return
    return_scale: float = 100.0  # returns-to-go are divided by this before mu-law and binning
    # --- sequences and prompts (Sec. 2.3) ---
    prompt_fraction: float = 0.25  # share of training sequences that get a prompt
    prompt_end_fraction: float = 0.5  # share of prompts taken from an episode's end (rest: uniform)
    prompt_share: float = 0.5  # share of a prompted sequence's timesteps given to the prompt
    # --- transformer (Sec. 2.3, App. C.1) ---
    n_layer: int = 24  # transformer blocks
    n_head: int = 16  # attention heads
    d_model: int = 2048  # layer width
    d_ff: int = 8192  # feed-forward hidden size
    feedforward: str = "gelu"  # "gelu": Linear-GELU-Linear; "geglu": GELU-gated, 3 matrices (chapter 05)
    d_head: int = 128  # key/value size of one head
    context_length: int = 1024  # tokens the model attends over
    tie_head: bool = True  # the output head is the token table, transposed; False: a head of its own
    #                        (beyond the paper; README, "Learning speed")

    def __post_init__(self) -> None:
        for name in (
            "text_vocab_size",
            "num_bins",
            "patch_size",
            "n_layer",
            "n_head",
            "d_model",
            "d_ff",
            "d_head",
            "context_length",
            "patch_channels",
            "patch_groups",
            "position_bins",
            "max_local_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GatoConfig.{name} must be a positive int, got {value!r}")
        if self.text_vocab_size < self.num_bins:
            raise ValueError(
                f"GatoConfig.text_vocab_size ({self.text_vocab_size}) must be >= num_bins ({self.num_bins}): "
                "discrete values share ids [0, num_bins) with text (Sec. 2.1), so the continuous bins, which "
                "start at text_vocab_size, would collide with them"
            )
        if self.patch_channels % min(self.patch_groups, self.patch_channels):
            raise ValueError(
                f"GatoConfig.patch_channels ({self.patch_channels}) must be divisible by "
                f"patch_groups ({self.patch_groups})"
            )
        if self.feedforward not in ("gelu", "geglu"):
            raise ValueError(f"GatoConfig.feedforward must be 'gelu' or 'geglu', got {self.feedforward!r}")
        if self.value_init not in ("normal", "smooth"):
            raise ValueError(f"GatoConfig.value_init must be 'normal' or 'smooth', got {self.value_init!r}")
        if self.action_positions not in ("none", "local"):
            raise ValueError(f"GatoConfig.action_positions must be 'none' or 'local', got {self.action_positions!r}")
        for name in ("prompt_fraction", "prompt_end_fraction", "prompt_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"GatoConfig.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if not isinstance(self.tie_head, bool):
            raise ValueError(f"GatoConfig.tie_head must be a bool, got {self.tie_head!r}")
        if not isinstance(self.return_conditioning, bool):
            raise ValueError(f"GatoConfig.return_conditioning must be a bool, got {self.return_conditioning!r}")
        if not (math.isfinite(self.return_scale) and self.return_scale > 0):
            raise ValueError(f"GatoConfig.return_scale must be a positive number, got {self.return_scale!r}")
        if not (self.mu > 0 and self.mu_law_m > 0):
            raise ValueError(f"GatoConfig.mu and mu_law_m must be positive, got {self.mu}, {self.mu_law_m}")

    @property
    def vocab(self) -> VocabLayout:
        """Where each kind of token lives in the one shared vocabulary."""
        return VocabLayout(text_size=self.text_vocab_size, num_bins=self.num_bins)

    def replace(self, **changes) -> GatoConfig:
        """A copy with some fields changed (the config itself is immutable)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GatoConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config JSON has unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_preset(cls, name: str, **changes) -> GatoConfig:
        """A named preset (see `PRESETS`), optionally with some fields changed."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise KeyError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None
        return base.replace(**changes) if changes else base


PRESETS: dict[str, GatoConfig] = {
    # the paper's sizes (App. C.1, Table 6); text needs a 32000-piece SentencePiece model you supply
    "gato-1.18b": GatoConfig(n_layer=24, n_head=16, d_model=2048, d_ff=8192, d_head=128),
    "gato-364m": GatoConfig(n_layer=12, n_head=12, d_model=1536, d_ff=6144, d_head=128),
    "gato-79m": GatoConfig(n_layer=8, n_head=24, d_model=768, d_ff=3072, d_head=32),
    # CPU sizes: the shipped 1024-piece text model, a few layers, a short context
    "cpu-small": GatoConfig(
        text_vocab_size=1024,
        n_layer=4,
        n_head=4,
        d_model=128,
        d_ff=512,
        d_head=32,
        context_length=1024,
        patch_channels=32,
        patch_groups=8,
    ),
    "cpu-tiny": GatoConfig(
        text_vocab_size=1024,
        n_layer=2,
        n_head=2,
        d_model=64,
        d_ff=256,
        d_head=32,
        context_length=256,
        patch_channels=16,
        patch_groups=4,
    ),
}
