"""Position encodings: where a patch sits in its image, where a token sits in its timestep.

Gato adds two learned position encodings and no other (Reed et al., 2022, Sec. 2.2, App. C.3):

* **Patch positions.** Each patch covers an interval of pixel rows and one of pixel columns.
  Normalized by the image size to [0, 1] and quantized to 128 bins, each interval becomes a
  range of bin indices [from, to). During training an index is drawn uniformly from that range
  on every forward pass; at evaluation the rounded mean of the range is used. The row index and
  the column index look up two learned tables whose vectors are added to the patch embedding.
* **Local observation positions.** Each observation token's index within its timestep's
  observation tokens looks up a learned table (512 entries). Per App. C.3, as reimplementations
  quote it, no position encoding is added to action tokens; the separator is not an observation
  token and gets none either. `GatoConfig(action_positions="local")` instead lets action tokens
  continue the observation indices, for experiments.

Decision (the paper is silent): the intervals are measured on the padded image (see
`gato_min.tokenize`), so the padded bottom row of an Atari frame still lies inside [0, 1]; the
evaluation index is round((from + to - 1) / 2), the mean of the integer indices in the range,
which always lies inside it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def patch_intervals(rows: int, cols: int, bins: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Quantized [from, to) ranges of every patch of a rows x cols grid, in raster order.

    Returns two (rows * cols, 2) int64 arrays: the row range and the column range of each patch.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"a patch grid needs at least one row and column, got {rows} x {cols}")
    if rows > bins or cols > bins:
        raise ValueError(f"a {rows} x {cols} patch grid has more rows or columns than position bins ({bins})")

    def ranges(n: int) -> np.ndarray:
        # interval edges, normalized to [0, 1] and quantized to bins: floor(i / n * bins), in integers so
        # that no edge lands a bin low by rounding (in floats, 100 bins over 50 rows start row 29 at bin 57, not 58)
        edges = np.arange(n + 1, dtype=np.int64) * bins // n
        return np.stack([edges[:-1], edges[1:]], axis=1)  # n <= bins: every range holds at least one bin

    row_ranges, col_ranges = ranges(rows), ranges(cols)
    grid_rows, grid_cols = np.divmod(np.arange(rows * cols), cols)
    return row_ranges[grid_rows], col_ranges[grid_cols]


def sample_positions(ranges: torch.Tensor, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per [from, to) range: uniform in training, the rounded mean at evaluation."""
    low, high = ranges[..., 0], ranges[..., 1]
    if training:
        uniform = torch.rand(low.shape, generator=generator, device=ranges.device)
        return low + torch.floor(uniform * (high - low)).long()
    return torch.round((low + high - 1).float() / 2).long()


class PatchPositionEncoding(nn.Module):
    """Learned row and column tables indexed by each patch's quantized interval (App. C.3)."""

    def __init__(self, d_model: int, bins: int = 128):
        super().__init__()
        self.bins = bins
        self.row_table = nn.Embedding(bins, d_model)
        self.col_table = nn.Embedding(bins, d_model)

    def indices(
        self, row_ranges: torch.Tensor, col_ranges: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The row and column indices this forward pass uses (train: sampled; eval: mean)."""
        return (
            sample_positions(row_ranges, self.training, generator),
            sample_positions(col_ranges, self.training, generator),
        )

    def forward(self, row_ranges: torch.Tensor, col_ranges: torch.Tensor) -> torch.Tensor:
        rows, cols = self.indices(row_ranges, col_ranges)
        return self.row_table(rows) + self.col_table(cols)


class LocalPositionEncoding(nn.Module):
    """A learned table indexed by a token's position among its timestep's observation tokens.

    Positions of -1 mark tokens that get no local encoding (by default: separator and actions).
    """

    def __init__(self, d_model: int, max_positions: int = 512):
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, local_positions: torch.Tensor) -> torch.Tensor:
        has_position = local_positions >= 0
        vectors = self.table(local_positions.clamp(min=0))
        return vectors * has_position.unsqueeze(-1).to(vectors.dtype)
