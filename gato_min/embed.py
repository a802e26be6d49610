"""Embedding: tokens and image patches become vectors of the model's width.

Gato (Reed et al., 2022, Sec. 2.2, App. C.2) embeds every token with one function:

* text, discrete and continuous ids look up **one shared, learned table** (the vocabulary of
  chapter 01 has a row for each id, the separator and padding included);
* each 16 x 16 image patch goes through **a single ResNet block**, "v2" (pre-activation), with
  GroupNorm instead of BatchNorm/LayerNorm and GELU instead of ReLU, to give one vector per
  patch; the patch position encoding (chapter 03) is added to it.

Decisions (the paper gives no channel counts): a 4 x 4, stride-4 convolution first maps a patch
to `patch_channels` channels on a 4 x 4 grid (16 x fewer positions for the block's two 3 x 3
convolutions, which matters on a CPU); the pre-activation block follows
(GroupNorm, GELU, conv, GroupNorm, GELU, conv, plus the identity); a linear layer then projects
the flattened 4 x 4 x channels map to the model width.

`GatoEmbedding` puts the pieces together for a batch of sequences (`gato_min.sequence.Batch`):
token table + local observation positions for every token, patch embedding + patch positions
for image tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gato_min.positions import LocalPositionEncoding, PatchPositionEncoding
from gato_min.tokenize import normalize_pixels


class PatchResNetBlock(nn.Module):
    """(N, C, P, P) normalized patches -> (N, d_model): stem, one pre-activation ResNet block, projection."""

    def __init__(self, image_channels: int, channels: int, groups: int, patch_size: int, d_model: int):
        super().__init__()
        if patch_size % 4:
            raise ValueError(f"patch_size must be a multiple of 4 for the stride-4 stem, got {patch_size}")
        groups = min(groups, channels)
        self.image_channels, self.patch_size = image_channels, patch_size
        self.stem = nn.Conv2d(image_channels, channels, kernel_size=4, stride=4)
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.proj = nn.Linear(channels * (patch_size // 4) ** 2, d_model)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """`patches`: uint8 pixels (scaled here, Sec. 2.1) or already-normalized floats."""
        expected = (self.image_channels, self.patch_size, self.patch_size)
        if patches.ndim != 4 or tuple(patches.shape[1:]) != expected:
            raise ValueError(
                f"patches must have shape (N, {', '.join(map(str, expected))}), got {tuple(patches.shape)}"
            )
        if patches.dtype == torch.uint8:
            patches = normalize_pixels(patches, self.patch_size)
        x = self.stem(patches)
        h = self.conv1(F.gelu(self.norm1(x)))
        h = self.conv2(F.gelu(self.norm2(h)))
        return self.proj((x + h).flatten(1))


class GatoEmbedding(nn.Module):
    """Every token of a batch of sequences -> a vector (B, L, d_model)."""

    def __init__(self, config, image_channels: int = 3):
        super().__init__()
        self.config = config
        self.token_table = nn.Embedding(config.vocab.size, config.d_model)
        self.patch_block = PatchResNetBlock(
            image_channels, config.patch_channels, config.patch_groups, config.patch_size, config.d_model
        )
        self.patch_positions = PatchPositionEncoding(config.d_model, config.position_bins)
        self.local_positions = LocalPositionEncoding(config.d_model, config.max_local_positions)

    def forward(self, batch) -> torch.Tensor:
        vectors = self.token_table(batch.token_ids) + self.local_positions(batch.local_positions)
        if batch.patches.shape[0]:
            patch_vectors = self.patch_block(batch.patches)
            patch_vectors = patch_vectors + self.patch_positions(batch.patch_row_ranges, batch.patch_col_ranges)
            flat = vectors.reshape(-1, vectors.shape[-1])
            # image tokens carry a placeholder id: their table row is replaced, not added to
            flat = flat.index_copy(
                0,
                batch.patch_index,
                patch_vectors + self.local_positions(batch.local_positions.reshape(-1)[batch.patch_index]),
            )
            vectors = flat.reshape(vectors.shape)
        return vectors
