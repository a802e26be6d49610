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
# # 00 · Gato in one page
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/00_overview.ipynb)
#
# *A Generalist Agent* (Reed et al., 2022, arXiv 2205.06175) trains **one transformer with one set
# of weights** that plays Atari from pixels, controls simulated and real robots, captions images
# and chats. Its recipe has three ideas, and this book builds each of them in a small Python
# package, `gato_min`, that you can read in an afternoon and train on a laptop CPU.
#
# 1. **Everything is a token** (Sec. 2.1). Text, image patches, button presses and joint
#    torques are all turned into integers (or, for images, patch vectors) in one shared
#    vocabulary, and one control episode becomes one flat sequence.
# 2. **One sequence model** (Sec. 2.2–2.3). A decoder-only transformer reads that sequence and
#    is trained to predict the next token — but the loss only counts text and action tokens:
#    Gato imitates experts, it does not predict what it will see.
# 3. **Prompting tells it which task** (Sec. 2.3–2.4). In training, a quarter of the sequences
#    are preceded by a piece of another episode of the same task; at deployment the agent is
#    prompted with a demonstration, then samples each action one token at a time.
#
# Everything else — the 604 tasks, the 1.18B parameters, the 16x16 TPU slice — is scale. This
# book keeps the design and shrinks the scale: a few MuJoCo bodies and Atari games, data made by
# experts trained here, and models that train in minutes.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "gato_min @ git+https://github.com/gato-min/gato_min"], check=True)

# %%
import importlib

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

import gato_min
from gato_min.config import PRESETS, GatoConfig
from gato_min.plotting import PALETTE, save_figure, use_style

use_style()
print("gato_min", gato_min.__version__)

# %% [markdown]
# ## The plan of the book
#
# Data flows one way through the package, and each chapter builds one stage of it:
#
# | chapter | what you build | module |
# |---|---|---|
# | 00 overview | this page: the map | `gato_min` |
# | 01 tokenization | text, patches, discrete and continuous values → ids | `tokenize.py` |
# | 02 embedding | one lookup table; a ResNet block per image patch | `embed.py` |
# | 03 position encodings | where a patch sits in its image, where a token sits in its timestep | `positions.py` |
# | 04 sequence layout | timesteps → training windows, loss mask, prompts | `sequence.py`, `sampling.py`, `batch.py` |
# | 05 transformer | the decoder, the paper's three sizes, the masked loss | `model.py`, `config.py` |
# | 06 training | behaviour data and the training loop | `data/`, `task_data.py`, `optim.py`, `train.py`, `runs.py` |
# | 07 prompted evaluation | demonstration prompts, token-by-token sampling with a cache | `codec.py`, `agent.py` |
# | 08 scores | playing the real environments: scores, prompting, how episodes fail | `evaluate.py` |
# | 09 learning speed | smoothed targets, the mean readout, return conditioning; a DT and an MLP as peers | `peers.py` |
# | 10 Atari from pixels | frames as patches, buttons, scripted experts and their DART data | `data/atari_policies.py` |
# | 11 the generalist | one set of weights for MuJoCo, Atari and text; results against the paper | `tools/` |
#
# Underneath all of them sits `envs.py`: the tasks (the shipped ones, and any gymnasium
# environment you register) and their environments. What a maintainer runs — the command line,
# the demo, expert training, benchmarks — lives apart, in `gato_min.tools`.
#
# The picture below is the same plan as a pipeline. Modules drawn solid exist in the package you
# have installed; dashed ones are built by later chapters.

# %%
STAGES = [  # (label, module that implements it)
    ("environments\n& behaviour data", "gato_min.envs"),
    ("tokenize", "gato_min.tokenize"),
    ("embed +\npositions", "gato_min.embed"),
    ("sequence\nlayout", "gato_min.sequence"),
    ("transformer", "gato_min.model"),
    ("train", "gato_min.train"),
    ("act in\nenvironments", "gato_min.agent"),
]


def module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


fig, ax = plt.subplots(figsize=(9, 1.9))
for i, (label, module) in enumerate(STAGES):
    built = module_exists(module)
    ax.add_patch(FancyBboxPatch((i * 1.5, 0), 1.15, 1, boxstyle="round,pad=0.05",
                                facecolor=PALETTE[2] if built else "white", edgecolor=PALETTE[5],
                                linestyle="-" if built else "--", lw=1.2))
    ax.text(i * 1.5 + 0.575, 0.5, label, ha="center", va="center", fontsize=9)
    if i:
        ax.add_patch(FancyArrowPatch(((i - 1) * 1.5 + 1.2, 0.5), (i * 1.5 - 0.05, 0.5),
                                     arrowstyle="-|>", mutation_scale=12, color=PALETTE[0]))
ax.set_xlim(-0.1, len(STAGES) * 1.5 - 0.2)
ax.set_ylim(-0.15, 1.15)
ax.axis("off")
ax.set_title("gato_min: one pipeline from environment to action (solid = built so far)")
save_figure(fig, "00_pipeline")
plt.show();

# %% [markdown]
# ## A tour of the package
#
# Every module starts with a docstring that names the part of the paper it implements. Here they
# are, read from the installed package, so this list can never drift from the code:

# %%
import pkgutil

for info in pkgutil.walk_packages(gato_min.__path__, prefix="gato_min."):
    if info.name.endswith("__main__"):
        continue
    module = importlib.import_module(info.name)
    print(f"{info.name:28s} {module.__doc__.strip().splitlines()[0]}")

# %% [markdown]
# ## The paper's three sizes
#
# Sec. 5.1 trains three models — 79M, 364M and 1.18B parameters — whose shapes App. C.1 lists
# (we confirmed the table through reimplementations that quote it; see `shared/REFERENCE.md`).
# They are presets of the one configuration class, next to the small presets this book trains
# on a CPU. Chapter 05 counts their parameters.

# %%
columns = ("blocks", "heads", "width", "ff")
print(f"{'preset':12s} " + " ".join(f"{c:>6s}" for c in columns) + f" {'kv':>4s} {'context':>8s} {'text vocab':>11s}")
for name, cfg in PRESETS.items():
    print(f"{name:12s} {cfg.n_layer:6d} {cfg.n_head:6d} {cfg.d_model:6d} {cfg.d_ff:6d} {cfg.d_head:4d} "
          f"{cfg.context_length:8d} {cfg.text_vocab_size:11d}")

# %% [markdown]
# ## A check: the sizes match the paper
#
# The paper's Gato has 24 blocks of width 2048 with a 8192-wide feed-forward layer and a context
# of 1024 tokens (Sec. 2.3, App. C.1). The preset must say the same:

# %%
gato = GatoConfig.from_preset("gato-1.18b")
assert (gato.n_layer, gato.d_model, gato.d_ff, gato.context_length) == (24, 2048, 8192, 1024)
assert (gato.vocab.continuous_offset, gato.vocab.continuous_offset + gato.vocab.num_bins) == (32000, 33024)
print("gato-1.18b matches Sec. 2.3: 24 blocks, width 2048, feed-forward 8192, context 1024;")
print("continuous values live in ids [32000, 33024) as in Sec. 2.1")

# %% [markdown]
# ## Try it
#
# A configuration is a frozen dataclass; `replace` makes a variant. Change the text vocabulary
# and watch every other range move with it — nothing in the package hard-codes an id. (A text
# vocabulary smaller than 1024 is refused: discrete values share ids `[0, 1024)` with text.)

# %%
text_vocab_size = 4096  # try 1024, 8000, 32000
layout = GatoConfig.from_preset("cpu-small", text_vocab_size=text_vocab_size).vocab
print(f"text [0, {layout.text_size}), continuous [{layout.continuous_offset}, "
      f"{layout.continuous_offset + layout.num_bins}), separator {layout.separator_id}, "
      f"padding {layout.pad_id}: {layout.size} ids")
