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
# # 02 · Embedding: from tokens and patches to vectors
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/02_embedding.ipynb)
#
# Chapter 01 turned everything into ids — except image patches, which stay pixels. The
# transformer needs one vector of width `d_model` per token. Gato gets it two ways (Sec. 2.2):
#
# > "Tokens belonging to text, discrete- or continuous-valued observations or actions for any
# > time-step are embedded via a lookup table into a learned vector embedding space."
# > … image patches are "embedded using a single ResNet block to obtain a vector per patch".
#
# App. C.2, as reimplementations quote it, adds that the block is the "v2" (pre-activation)
# ResNet design with GroupNorm instead of LayerNorm and GELU instead of ReLU. The channel counts
# are not given; this chapter states ours and why.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "gato_min @ git+https://github.com/gato-min/gato_min"], check=True)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from gato_min.config import GatoConfig
from gato_min.embed import GatoEmbedding, PatchResNetBlock
from gato_min.envs import preprocess_frame
from gato_min.plotting import save_figure, use_style
from gato_min.tokenize import Tokenizer, cut_patches, normalize_pixels
from gato_min.tools.tokenize_demo import atari_timestep

use_style()
torch.manual_seed(0)
config = GatoConfig.from_preset("cpu-small")
tokenizer = Tokenizer(config)

# %% [markdown]
# ## 1. One table for every id
#
# The vocabulary of chapter 01 — text, discrete values (which share ids with text), continuous
# bins, the separator and padding — is one range of integers, so one `nn.Embedding` with a row
# per id embeds all of it. Button 5 of Pong and text piece 5 get the *same* vector; only their
# place in the sequence tells them apart.

# %%
embedding = GatoEmbedding(config)
table = embedding.token_table
print(f"token table: {table.num_embeddings} rows (= vocabulary size {config.vocab.size}) x {table.embedding_dim}")
button = tokenizer.encode_discrete([5])
text_piece = np.array([5])
assert torch.equal(table(torch.from_numpy(button)), table(torch.from_numpy(text_piece)))
print("button 5 and text id 5 share their row:", button.tolist(), "==", text_piece.tolist())

# %% [markdown]
# ## 2. One ResNet block per patch
#
# A pre-activation ("v2") residual block normalizes and activates *before* each convolution and
# adds its input back unchanged:
#
# $$y = x + \mathrm{conv}_2(\mathrm{GELU}(\mathrm{GN}_2(\mathrm{conv}_1(\mathrm{GELU}(\mathrm{GN}_1(x))))))$$
#
# Our choices, where the paper is silent: a 4 x 4, stride-4 convolution first turns the
# 3 x 16 x 16 patch into `patch_channels` maps of 4 x 4, so the block's two 3 x 3 convolutions
# run on 16 positions instead of 256 (a CPU-sized saving); a linear layer then flattens the
# 4 x 4 x channels result into one vector of the model's width. Here are the shapes, followed
# through the block with a real Pong patch:

# %%
pong = atari_timestep("pong", seed=0)
frame = preprocess_frame(pong.observation)  # 80 x 80, as the model sees Atari (chapter 06's data)
patches = cut_patches(frame, config.patch_size)  # uint8 (25, 3, 16, 16)
block = embedding.patch_block
shapes = []
hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.append((name, tuple(o.shape))))
         for name, m in block.named_children()]
vectors = block(torch.from_numpy(patches))
for h in hooks:
    h.remove()
print(f"{'input (uint8 pixels)':22s} {tuple(patches.shape)}")
for name, shape in shapes:
    print(f"{name:22s} {shape}")
print(f"{'output':22s} {tuple(vectors.shape)}")

# %%
k = int(np.argmax(patches.reshape(len(patches), -1).std(axis=1)))  # the busiest patch
with torch.no_grad():
    stem_maps = block.stem(normalize_pixels(torch.from_numpy(patches[k:k + 1]), config.patch_size))[0]
fig, axes = plt.subplots(1, 11, figsize=(10, 1.6), gridspec_kw=dict(width_ratios=[2] + [1] * 8 + [0.3, 2]))
axes[0].imshow(patches[k].transpose(1, 2, 0), interpolation="nearest")
axes[0].set_title(f"patch {k}", fontsize=8)
for i in range(8):
    axes[1 + i].imshow(stem_maps[i], cmap="viridis", interpolation="nearest")
    axes[1 + i].set_title(f"map {i}", fontsize=7)
axes[9].axis("off")
axes[10].imshow(vectors[k].detach().reshape(8, 16), cmap="coolwarm", interpolation="nearest")
axes[10].set_title(f"vector ({config.d_model})", fontsize=8)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("a 3x16x16 patch -> 32 stem maps of 4x4 (8 shown) -> one residual block -> one vector", fontsize=9, y=1.12)
save_figure(fig, "02_patch_block")
plt.show();

# %% [markdown]
# ## 3. A check: the block is what the formula says
#
# We recompute the block with `torch.nn.functional`, straight from the formula above and the
# pixel scaling of Sec. 2.1, and compare with the package; then we count its parameters by hand.

# %%
def block_by_hand(pixels: torch.Tensor) -> torch.Tensor:
    x = (pixels.float() / 127.5 - 1) / 4  # [-1, 1], then / sqrt(16)
    x = F.conv2d(x, block.stem.weight, block.stem.bias, stride=4)
    h = F.conv2d(F.gelu(F.group_norm(x, block.norm1.num_groups, block.norm1.weight, block.norm1.bias)),
                 block.conv1.weight, block.conv1.bias, padding=1)
    h = F.conv2d(F.gelu(F.group_norm(h, block.norm2.num_groups, block.norm2.weight, block.norm2.bias)),
                 block.conv2.weight, block.conv2.bias, padding=1)
    return F.linear((x + h).flatten(1), block.proj.weight, block.proj.bias)


torch.testing.assert_close(block_by_hand(torch.from_numpy(patches)), vectors)
c, d = config.patch_channels, config.d_model
by_hand = (3 * c * 16 + c) + 2 * (c * c * 9 + c) + 2 * 2 * c + (c * 16 * d + d)
assert by_hand == sum(p.numel() for p in block.parameters())
print(f"package block == formula; {by_hand:,} parameters = stem {3 * c * 16 + c:,} + convs {2 * (c * c * 9 + c):,} "
      f"+ norms {4 * c} + projection {c * 16 * d + d:,}")

# %% [markdown]
# ## 4. The whole input embedding
#
# `GatoEmbedding` puts together what a batch of sequences needs: the table row for every id,
# the patch block for image tokens (whose id is a placeholder), and the position encodings of
# chapter 03. The result is `(batch, length, d_model)`, ready for the transformer.

# %%
n_params = {name: sum(p.numel() for p in module.parameters()) for name, module in embedding.named_children()}
for name, count in n_params.items():
    print(f"{name:16s} {count:9,d} parameters")

# %% [markdown]
# ## Try it: how wide should the patch block be?
#
# The paper leaves the block's width open. Wider blocks see more, cost more. Vary
# `channels` and watch parameters and time per 1000 patches (timings vary by machine).

# %%
# NBVAL_IGNORE_OUTPUT
batch = torch.from_numpy(np.repeat(patches, 40, axis=0))  # 1000 patches
for channels in [16, 32, 64, 128]:  # try others (a multiple of the 8 GroupNorm groups)
    trial = PatchResNetBlock(3, channels, 8, 16, config.d_model)
    start = time.perf_counter()
    with torch.no_grad():
        trial(batch)
    ms = (time.perf_counter() - start) * 1000
    params = sum(p.numel() for p in trial.parameters())
    print(f"channels {channels:4d}: {params:9,d} parameters, {ms:6.1f} ms for 1000 patches")
