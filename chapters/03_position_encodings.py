# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Position encodings: where a patch sits, where a token sits
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/03_position_encodings.ipynb)
#
# A transformer sees a set of vectors; order must be given to it. Gato gives two kinds of
# order and, unusually, no global position encoding at all:
#
# > "we also add a learnable within-image position encoding vector" to each patch, and
# > "Learnable position encodings are added for all tokens based on their local token position
# > within their corresponding time-step." (Sec. 2.2)
#
# App. C.3 gives the details, which we know through reimplementations that quote it: a patch's
# pixel rows and columns are normalized to [0, 1] and quantized to 128 bins; **in training an
# index is drawn at random from the patch's range on every forward pass; in evaluation the
# rounded mean is used**. The randomness makes the model robust to small shifts in where a patch
# falls. And, in the quoted appendix, action tokens get no local position encoding.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "gato_min @ git+https://github.com/gato-min/gato_min"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from gato_min.config import GatoConfig
from gato_min.plotting import save_figure, use_style
from gato_min.positions import LocalPositionEncoding, PatchPositionEncoding, patch_intervals
from gato_min.sequence import TimestepLayout
from gato_min.tools.tokenize_demo import plot_token_strip, token_legend

use_style()
torch.manual_seed(0)
config = GatoConfig.from_preset("cpu-small")

# %% [markdown]
# ## 1. From pixel intervals to bin ranges
#
# A full Atari frame (210 x 160, padded to 224 x 160) is a 14 x 10 grid of patches. Patch row
# `r` covers pixel rows `[16 r, 16 r + 16)` of 224, i.e. `[r / 14, (r + 1) / 14)` of the image;
# times 128 bins and rounded down, that is a range of about nine bin indices. Let us compute the
# ranges by hand and compare with the package:

# %%
rows, cols, bins = 14, 10, config.position_bins
by_hand_rows = [(int(np.floor(r / rows * bins)), int(np.floor((r + 1) / rows * bins))) for r in range(rows)]
row_ranges, col_ranges = patch_intervals(rows, cols, bins)
assert [tuple(row_ranges[r * cols]) for r in range(rows)] == by_hand_rows
print("row ranges of the 14 patch rows:", by_hand_rows)
print("column ranges of the 10 patch columns:", [(int(a), int(b)) for a, b in col_ranges[:cols]])

# %% [markdown]
# ## 2. Training draws, evaluation averages
#
# Below, the row index each patch of the grid uses: two training forward passes (different
# draws, always inside the patch's range) and evaluation (the rounded mean, the same every time).

# %%
encoding = PatchPositionEncoding(config.d_model, bins)
row_t, col_t = torch.from_numpy(row_ranges), torch.from_numpy(col_ranges)
encoding.train()
draws = [encoding.indices(row_t, col_t) for _ in range(2)]
encoding.eval()
mean_rows, mean_cols = encoding.indices(row_t, col_t)

fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
for ax, (title, (r_idx, _)) in zip(axes, [("training pass 1", draws[0]), ("training pass 2", draws[1]),
                                               ("evaluation", (mean_rows, mean_cols))]):
    grid = r_idx.reshape(rows, cols).numpy()
    ax.imshow(grid, cmap="viridis", vmin=0, vmax=bins - 1)
    for (r, c), value in np.ndenumerate(grid):
        ax.text(c, r, str(value), ha="center", va="center", fontsize=6, color="white" if value < 80 else "black")
    ax.set_title(f"row index, {title}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
save_figure(fig, "03_patch_positions")
plt.show();

# %%
for _ in range(1000):
    encoding.train()
    r_idx, c_idx = encoding.indices(row_t, col_t)
    assert torch.all((r_idx >= row_t[:, 0]) & (r_idx < row_t[:, 1]))
    assert torch.all((c_idx >= col_t[:, 0]) & (c_idx < col_t[:, 1]))
encoding.eval()
assert torch.equal(encoding.indices(row_t, col_t)[0], mean_rows)
assert not torch.equal(draws[0][0], draws[1][0])
print("1000 training draws all inside their ranges; evaluation is deterministic; two training passes differ")

# %% [markdown]
# The switch is the module's own `train()` / `eval()`, so `model.eval()` before acting is all
# an agent needs. The mean is taken over the integer indices of the range,
# `round((from + to - 1) / 2)`: a mean of the endpoints `(from + to) / 2` can round to `to`,
# just outside the range.

# %% [markdown]
# ## 3. Local positions: where a token sits in its timestep
#
# Every observation token gets its index among the timestep's observation tokens; a learned
# table of 512 rows turns it into a vector. For a HalfCheetah timestep that is 0..16 for the
# 17 joint readings; the separator and the 6 action tokens get none (`-1` below), following
# the appendix as quoted. Whether action tokens should get positions is the least certain detail
# of the paper — `GatoConfig(action_positions="local")` lets you try the other choice.

# %%
layout = TimestepLayout(image_shape=None, num_values=17, action_dim=6, discrete_actions=False)
local = layout.local_positions(config.action_positions)
kind_names = ["continuous"] * 17 + ["separator"] + ["continuous action"] * 6
fig, ax = plt.subplots(figsize=(9, 1.6), gridspec_kw=dict(bottom=0.45))
plot_token_strip(ax, kind_names, labels=local)
for i, value in enumerate(local):
    if value < 0:
        ax.text(i + 0.5, 0.5, "-", ha="center", va="center", color="white")
ax.set_title("local position of each token of a HalfCheetah timestep (- : none)")
token_legend(fig, kind_names)
save_figure(fig, "03_local_positions")
plt.show();

# %%
table = LocalPositionEncoding(config.d_model, config.max_local_positions)
vectors = table(torch.from_numpy(local))
assert torch.all(vectors[17:] == 0) and torch.equal(vectors[3], table.table.weight[3])
print("observation tokens 0..16 get table rows 0..16; separator and actions get nothing added")
print("local positions:", local.tolist())

# %% [markdown]
# ## Try it: how much does a patch move?
#
# With 128 bins, each patch of a 14-row grid can take about nine row indices in training. Fewer
# bins mean coarser positions and less jitter; a 5 x 5 grid (our 80 x 80 Atari frames) has
# ranges of about 25. Vary `bins` and the grid and see how many indices a patch can take.

# %%
for bins_trial in [16, 64, 128, 256]:  # try others
    for grid in [(14, 10), (5, 5)]:
        ranges, _ = patch_intervals(*grid, bins_trial)
        widths = ranges[:, 1] - ranges[:, 0]
        print(f"bins {bins_trial:4d}, grid {grid[0]:2d}x{grid[1]:2d}: each patch row can take "
              f"{widths.min()}-{widths.max()} indices")
