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
# # 05 · The transformer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/05_transformer.ipynb)
#
# Sec. 2.3 of the paper: Gato uses "a 1.2B parameter decoder-only transformer with 24 layers,
# an embedding size of 2048, and a post-attention feedforward hidden size of 8196". App. C.1
# lists three sizes:
#
# | | 1.18B | 364M | 79M |
# |---|---|---|---|
# | transformer blocks | 24 | 12 | 8 |
# | attention heads | 16 | 12 | 24 |
# | layer width | 2048 | 1536 | 768 |
# | feed-forward hidden size | 8192 | 6144 | 3072 |
# | key/value size | 128 | 128 | 32 |
#
# The model reads the embedded tokens of chapters 02–04 and, at every position, scores the
# whole vocabulary for the next token. The loss (Sec. 2.3) is the cross-entropy of the tokens
# the mask keeps: text and logged actions.
#
# Three things the paper leaves open are decided in `gato_min.model`: pre-norm blocks; the
# output head shares the token table; and the feed-forward layer is Linear–GELU–Linear. This
# chapter counts parameters to test the last choice, runs a forward pass with its loss on real
# HalfCheetah data, and checks causality and the key/value cache.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "gato_min @ git+https://github.com/gato-min/gato_min"], check=True)

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.model import GatoModel, KVCache
from gato_min.plotting import PALETTE, save_figure, use_style
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
from gato_min.tokenize import Tokenizer

torch.manual_seed(0)
use_style()  # (last: a cell ending in manual_seed would print the generator, whose address changes)

# %% [markdown]
# ## How many parameters, and which feed-forward form?
#
# Building a 1.18B model on a laptop is no problem if its tensors live on PyTorch's `meta`
# device: shapes without memory. We count each preset's parameters by part, with the GELU
# feed-forward layer (two matrices) and with GEGLU (three: a gate, a value and the output),
# the form some reimplementations assume.

# %%
NOMINAL = {"gato-1.18b": 1.18e9, "gato-364m": 364e6, "gato-79m": 79e6}


def count_parts(config):
    with torch.device("meta"):
        model = GatoModel(config)
    parts = {"token table (shared head)": model.embedding.token_table.weight.numel(),
             "attention": sum(p.numel() for b in model.blocks for p in b.attn.parameters()),
             "feed-forward": sum(p.numel() for b in model.blocks for p in b.mlp.parameters())}
    parts["norms, positions, patch block"] = model.num_parameters() - sum(parts.values())
    return parts


counts = {(name, form): count_parts(GatoConfig.from_preset(name, feedforward=form))
          for name in NOMINAL for form in ("gelu", "geglu")}
print(f"{'preset':11s} {'form':6s} {'total':>9s} {'blocks':>9s} {'nominal':>8s} {'total/nominal':>14s}")
for (name, form), parts in counts.items():
    total = sum(parts.values())
    blocks = parts["attention"] + parts["feed-forward"]
    print(f"{name:11s} {form:6s} {total / 1e6:8.1f}M {blocks / 1e6:8.1f}M {NOMINAL[name] / 1e6:7.0f}M "
          f"{total / NOMINAL[name]:14.2f}")

# %% [markdown]
# The hand count of one block, to check the package: attention has the query/key/value matrix
# (d × 3·h·k, plus bias) and the output matrix (h·k × d, plus bias); the GELU feed-forward layer
# has d × f and f × d (plus biases); two LayerNorms add 2 × 2d.

# %%
def block_parameters(d, heads, k, f, form="gelu"):
    inner = heads * k
    attention = d * 3 * inner + 3 * inner + inner * d + d
    feed_forward = d * (2 if form == "geglu" else 1) * f + (2 if form == "geglu" else 1) * f + f * d + d
    return attention + feed_forward + 4 * d


for name in NOMINAL:
    c = GatoConfig.from_preset(name)
    for form in ("gelu", "geglu"):
        by_hand = c.n_layer * block_parameters(c.d_model, c.n_head, c.d_head, c.d_ff, form)
        parts = counts[(name, form)]
        layer_norms = c.n_layer * 4 * c.d_model
        assert by_hand == parts["attention"] + parts["feed-forward"] + layer_norms, (name, form)
print("hand counts of the blocks equal the package's")

# %%
fig, ax = plt.subplots(figsize=(7.0, 3.0))
labels, bottoms = [], None
names = list(NOMINAL)
x = np.arange(len(names))
for offset, form in ((-0.2, "gelu"), (0.2, "geglu")):
    bottom = np.zeros(len(names))
    for i, part in enumerate(counts[(names[0], form)]):
        values = np.array([counts[(n, form)][part] / NOMINAL[n] for n in names])
        ax.bar(x + offset, values, 0.38, bottom=bottom, color=PALETTE[[5, 1, 6, 0][i]],
               edgecolor="white", hatch="//" if form == "geglu" else None, label=part if form == "gelu" else None)
        bottom += values
ax.axhline(1.0, color="black", lw=1, ls="--")
ax.set_xticks(x, [f"{n}\nGELU | GEGLU" for n in names])
ax.set_ylabel("parameters / nominal size")
ax.set_title("parameter count by part, relative to the paper's nominal size (hatched: GEGLU)")
ax.legend(fontsize=8, loc="upper left", ncol=2)
ax.set_ylim(0, 1.9)
save_figure(fig, "05_parameters")
plt.show();

# %% [markdown]
# With GELU, the transformer blocks alone are 0.72–1.02× the nominal size and blocks plus the
# token table 1.04–1.08×; with GEGLU the blocks alone overshoot by 25–37 % at the two larger
# sizes. So GELU is the form that fits the paper's numbers, and it is the default
# (`GatoConfig(feedforward="geglu")` builds the other). No reading matches all three sizes
# exactly: the nominal sizes seem to be rounded from a count the paper does not spell out.
# The table is large for the 79M model: its 33,026 rows (32,000 text pieces, 1,024 bins, the
# separator and padding) times 768 are 30 % of it.

# %% [markdown]
# ## A forward pass and its loss on real data
#
# The small CPU preset, on windows of HalfCheetah played by the shipped medium policy. Before
# training, the head's scores are near zero, so the predicted distribution is near uniform over
# the vocabulary and the loss must be close to ln V.

# %%
config = GatoConfig.from_preset("cpu-small")
tokenizer = Tokenizer(config)
episodes = collect("halfcheetah", "medium", episodes=3, seed=0, progress=False, max_episode_steps=300)
data = TokenizedEpisodes(episodes, tokenizer, "halfcheetah")
batch = SequenceSampler(data, config, seed=0).sample(4)
model = GatoModel(config)
print(f"cpu-small: {model.num_parameters():,} parameters; batch {tuple(batch.token_ids.shape)}")

model.eval()
with torch.no_grad():
    logits = model(batch)
    loss = model.loss(batch)
counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
print(f"logits {tuple(logits.shape)}; {int(counted.sum())} of {counted.numel()} next tokens are counted")
print(f"loss at initialization {float(loss):.3f} nats; "
      f"ln V = ln {config.vocab.size} = {math.log(config.vocab.size):.3f}")
assert abs(float(loss) - math.log(config.vocab.size)) < 0.05

# %% [markdown]
# The package computes the head only where a counted token comes next. Recomputing the loss
# the plain way — full logits at every position, then cross-entropy where the mask is on —
# gives the same number:

# %%
with torch.no_grad():
    plain = torch.nn.functional.cross_entropy(logits[:, :-1][counted], batch.token_ids[:, 1:][counted])
assert torch.allclose(plain, loss, atol=1e-5)
print(f"plain masked cross-entropy {float(plain):.5f} = package {float(loss):.5f}")

# %% [markdown]
# ## Causality, as a picture
#
# Change token k and look at which outputs move: in a decoder-only model only positions ≥ k
# may. Each row of the picture is one changed token; white cells did not change at all.

# %%
probe = [40, 100, 160, 220]
rows = []
with torch.no_grad():
    reference = model(batch)[0]
    for k in probe:
        changed_ids = batch.token_ids.clone()
        changed_ids[0, k] = (changed_ids[0, k] + 7) % config.vocab.size
        changed = type(batch)(**{**batch.__dict__, "token_ids": changed_ids})
        delta = (model(changed)[0] - reference).abs().amax(-1)
        assert torch.equal(delta[:k], torch.zeros(k)), k  # bit-identical before k
        rows.append(delta[:256].numpy())
fig, ax = plt.subplots(figsize=(7.0, 1.8))
ax.imshow(np.array(rows) > 0, aspect="auto", cmap="Greys", interpolation="nearest")
ax.set_yticks(range(len(probe)), [f"k = {k}" for k in probe])
ax.set_xlabel("output position (first 256)")
ax.set_title("outputs that change when token k changes (black)")
save_figure(fig, "05_causality")
plt.show();

# %% [markdown]
# ## Acting: the key/value cache
#
# When the agent acts it adds a few tokens at a time. Keeping every layer's keys and values
# means each new token attends to the cache instead of re-running the whole context. Fed token
# by token, the cached model must give the same logits as the full forward pass above:

# %%
cache = KVCache(config, batch_size=4)
cuts = [0, 500, *range(501, 520), 1024]  # a long prompt, then 19 single tokens, then the rest
with torch.no_grad():
    pieces = [model.extend(batch.window(a, b), cache) for a, b in zip(cuts, cuts[1:])]
difference = (torch.cat(pieces, 1) - logits).abs().max()
assert difference < 1e-4  # float rounding: the exact figure (about 1e-6) differs from one CPU to another
print("cached vs full logits over 1024 tokens: max difference below 1e-4")

# %% [markdown]
# ## Try it: depth, width and the cost of a step
#
# Vary the shape of the small model and see the parameter count and the time of one forward
# and backward pass on this batch (2 CPU threads). Width costs quadratically, depth linearly.

# %%
# NBVAL_IGNORE_OUTPUT
torch.set_num_threads(2)
for n_layer, d_model in [(2, 128), (4, 128), (4, 256)]:  # try others
    trial = config.replace(n_layer=n_layer, d_model=d_model, d_ff=4 * d_model, d_head=d_model // config.n_head)
    trial_model = GatoModel(trial).train()
    start = time.perf_counter()
    for _ in range(2):
        trial_model.loss(batch).backward()
    seconds = (time.perf_counter() - start) / 2
    print(f"n_layer {n_layer}, d_model {d_model}: {trial_model.num_parameters() / 1e6:5.2f}M parameters, "
          f"{seconds * 1e3:6.0f} ms per step")

# %% [markdown]
# Next, chapter 06 trains this model on HalfCheetah demonstrations.
