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
# # 01 · Tokenization: everything becomes a token
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/01_tokenization.ipynb)
#
# Gato's first move is to make every modality look alike. Sec. 2.1 of the paper gives four rules,
# and this chapter builds each one in `gato_min.tokenize`, draws it, and checks the code against
# the rule:
#
# 1. **text** → SentencePiece subwords, ids `[0, 32000)`;
# 2. **discrete values** (Atari buttons) → the integers themselves, `[0, 1024)`;
# 3. **continuous values** (joint readings, torques) → mu-law, 1024 uniform bins, ids `[32000, 33024)`;
# 4. **images** → 16x16 patches in raster order, pixels scaled to `[-1, 1]` and divided by 4.
#
# At the end, one HalfCheetah timestep and one Pong frame become the token strips the
# transformer will read.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "gato_min @ git+https://github.com/gato-min/gato_min"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np

from gato_min.config import GatoConfig
from gato_min.plotting import PALETTE, TOKEN_COLORS, save_figure, use_style
from gato_min.tokenize import (
    Tokenizer,
    bin_centers,
    bin_edges,
    detokenize_continuous,
    discretize,
    image_to_patches,
    mu_law_decode,
    mu_law_encode,
    tokenize_continuous,
)
from gato_min.tools.tokenize_demo import (
    atari_timestep,
    model_timestep,
    mujoco_timestep,
    plot_patch_grid,
    plot_token_strip,
    timestep_tokens,
    token_legend,
)

use_style()
np.set_printoptions(precision=4, suppress=True)
paper = GatoConfig.from_preset("gato-1.18b")  # the paper's vocabulary: 32000 text pieces
config = GatoConfig.from_preset("cpu-small")  # this book's CPU models: 1024 text pieces
tokenizer = Tokenizer(config)

# %% [markdown]
# ## 1. One vocabulary for everything
#
# > "Text is encoded via SentencePiece with 32000 subwords into the integer range [0, 32000)." …
# > discrete values are "integers in the range of [0, 1024)" … continuous values are
# > "discretized to 1024 uniform bins" and "shifted to the range of [32000, 33024)." (Sec. 2.1)
#
# Discrete values are *not* shifted: button 3 and text piece 3 are the same id. The model tells
# them apart by context — a button only ever follows the separator of an Atari timestep. The
# paper also uses a separator token between observation and action; we place it, and a padding
# token for batches, right after the continuous bins. In `gato_min` all of this is derived from
# the configuration:

# %%
fig, axes = plt.subplots(2, 1, figsize=(8, 2.4))
for ax, (name, cfg) in zip(axes, [("paper (gato-1.18b)", paper), ("this book (cpu-small)", config)]):
    v = cfg.vocab
    spans = [("text", 0, v.text_size, TOKEN_COLORS["text"]),
             ("discrete (shared with text)", 0, v.num_bins, TOKEN_COLORS["discrete"]),
             ("continuous", v.continuous_offset, v.num_bins, TOKEN_COLORS["continuous"]),
             ("| and pad", v.separator_id, 2, TOKEN_COLORS["separator"])]
    for label, start, width, color in spans:
        y = 0.55 if label.startswith("discrete") else 0.0
        ax.barh(y, max(width, v.size * 0.004), left=start, height=0.45, color=color, label=label)
    ax.set_yticks([])
    ax.set_xlim(0, v.size)
    ax.set_title(f"{name}: {v.size} ids", loc="left")
axes[0].legend(loc="center left", bbox_to_anchor=(1.0, -0.3), fontsize=8)
axes[1].set_xlabel("token id")
fig.tight_layout()
save_figure(fig, "01_vocabulary")
plt.show();

# %%
for name, cfg in [("paper", paper), ("cpu-small", config)]:
    v = cfg.vocab
    print(f"{name:9s} text [0, {v.text_size}) | discrete [0, {v.num_bins}) | continuous "
          f"[{v.continuous_offset}, {v.continuous_offset + v.num_bins}) | separator {v.separator_id} | pad {v.pad_id}")
assert (paper.vocab.continuous_offset, paper.vocab.continuous_offset + paper.vocab.num_bins) == (32000, 33024)

# %% [markdown]
# ## 2. Continuous values: mu-law, then 1024 bins
#
# Joint readings can be anything from tiny angles to large velocities. Gato squeezes them into
# `[-1, 1]` with the mu-law compander used for audio (WaveNet), before binning. The paper's body
# points to its App. B for the formula; reimplementations that quote it (listed in
# `shared/REFERENCE.md`) give
#
# $$F(x) = \operatorname{sgn}(x)\,\frac{\log(|x|\,\mu + 1)}{\log(M\mu + 1)},\qquad \mu = 100,\; M = 256.$$
#
# So `|x| = 256` maps to 1 and anything larger is clipped to the last bin. Let us write it
# from the formula and check it against the package:

# %%
mu, M = config.mu, config.mu_law_m


def mu_law_by_hand(x):
    return np.sign(x) * np.log(np.abs(x) * mu + 1) / np.log(M * mu + 1)


x = np.linspace(-300, 300, 20001)
assert np.allclose(mu_law_by_hand(x), mu_law_encode(x, mu, M), atol=1e-12)
assert np.allclose(mu_law_decode(mu_law_encode(x, mu, M), mu, M), x, atol=1e-9)
print("package mu-law == formula; decode(encode(x)) == x on [-300, 300]")
print("F(1) =", round(float(mu_law_encode(1.0)), 4), " F(256) =", float(mu_law_encode(256.0)))

# %% [markdown]
# What the compander buys is resolution where the values are. In companded space the 1024 bins
# are uniform; mapped back to the original scale, a bin near zero is two ten-thousandths wide
# while a bin near ±256 is five units wide:

# %%
edges_x = mu_law_decode(bin_edges(config.num_bins), mu, M)  # the bin edges in the original units
widths = np.diff(edges_x)
centers_x = mu_law_decode(bin_centers(config.num_bins), mu, M)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
xs = np.linspace(-20, 20, 2001)
ax1.plot(xs, mu_law_encode(xs, mu, M), color=PALETTE[5])
ax1.set_xlabel("x")
ax1.set_ylabel("F(x)")
ax1.set_title("mu-law, mu = 100, M = 256")
positive = centers_x > 0
ax2.loglog(centers_x[positive], widths[positive], color=PALETTE[6])
ax2.set_xlabel("x (bin centre, positive half)")
ax2.set_ylabel("bin width in x")
ax2.set_title("1024 uniform bins, seen in x")
fig.tight_layout()
save_figure(fig, "01_mu_law")
plt.show();
print(f"narrowest bin {widths.min():.2e} wide (at 0), widest {widths.max():.3f} (at +-256)")

# %% [markdown]
# The round trip `x → id → bin centre → x̂` is therefore most accurate for small values. The
# package guarantees one thing exactly: in companded space the centre is never more than half a
# bin (1/1024) away. We check that on a million random readings spread over many scales, and plot
# the error in the original units:

# %%
rng = np.random.default_rng(0)
readings = rng.standard_normal(1_000_000) * 10.0 ** rng.uniform(-3, 2.5, 1_000_000)
ids = tokenizer.encode_continuous(readings)
decoded = tokenizer.decode_continuous(ids)
companded_error = np.abs(mu_law_encode(np.clip(readings, -M, M)) - mu_law_encode(decoded))
half_bin = 1.0 / config.num_bins
assert ids.min() >= config.vocab.continuous_offset and ids.max() < config.vocab.separator_id
assert companded_error.max() <= half_bin + 1e-12
print(f"ids in [{ids.min()}, {ids.max()}]; max companded error {companded_error.max():.6f} "
      f"<= half a bin {half_bin:.6f}")

inside = np.abs(readings) <= M
fig, ax = plt.subplots(figsize=(7, 3))
order = np.argsort(np.abs(readings[inside]))
ax.loglog(np.abs(readings[inside])[order][::50], np.abs(readings - decoded)[inside][order][::50], ".",
          ms=1.5, color=PALETTE[5], label="mu-law then bins (observations)")
uniform_error = np.abs(readings - (bin_centers(config.num_bins)[discretize(readings / M)] * M))
ax.loglog(np.abs(readings[inside])[order][::50], uniform_error[inside][order][::50], ".", ms=1.5,
          color=PALETTE[6], label="bins on [-256, 256] without mu-law")
ax.set_xlabel("|x|")
ax.set_ylabel("|x - decoded|")
ax.set_title("reconstruction error of one token")
ax.legend(markerscale=6)
save_figure(fig, "01_reconstruction_error")
plt.show();

# %% [markdown]
# ## 3. Actions are not companded
#
# Sec. 2.1 mu-law encodes continuous values to `[-1, 1]` "if not already there". The actions of
# the MuJoCo bodies already lie in `[-1, 1]`, and reimplementations that quote App. B leave them
# uncompanded. They go straight to the bins, so every decoded torque is within 1/1024 of the
# original, and -1 and +1 land in the first and last bin:

# %%
torques = np.array([-1.0, -0.5, 0.0, 0.3333, 0.999, 1.0])
action_ids = tokenizer.encode_actions(torques)
back = tokenizer.decode_actions(action_ids)
print("torques :", torques)
print("ids     :", action_ids)
print("decoded :", back)
assert np.abs(back - torques).max() <= 1.0 / config.num_bins
assert action_ids[0] == config.vocab.continuous_offset and action_ids[-1] == config.vocab.separator_id - 1

# %% [markdown]
# ## 4. Discrete values stay integers
#
# An Atari button press is one integer; Gato keeps it as it is (Sec. 2.1, "integers in the range
# of [0, 1024)"). Out-of-range values are a bug upstream, so they raise an error instead of
# wrapping around:

# %%
print("Pong buttons [0, 1, 5] ->", tokenizer.encode_discrete([0, 1, 5]))
try:
    tokenizer.encode_discrete([3, 1024])
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ## 5. Images: 16x16 patches in raster order
#
# > images are "transformed into sequences of non-overlapping 16 × 16 patches in raster order",
# > each pixel "normalized between [-1, 1] and divided by the square-root of the patch size
# > (i.e. √16 = 4)". (Sec. 2.1)
#
# An Atari frame is 210 x 160. 160 is ten patches, but 210 is not a multiple of 16; the paper
# does not say what it does there. `gato_min` pads the bottom (and right) edge with black up to
# the next multiple, so every pixel keeps its place and sits in exactly one patch: 14 x 10 = 140
# patches. Here is a Pong frame with its grid and the raster order (patch 0 top left, row by row):

# %%
pong = atari_timestep("pong", seed=0)
frame = pong.observation
patches = tokenizer.encode_image(frame)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 4.6), gridspec_kw=dict(width_ratios=[1, 1.1]))
plot_patch_grid(ax1, frame, config.patch_size)
ax1.set_title(f"Pong {frame.shape[0]}x{frame.shape[1]}: {len(patches)} patches")
gap = 4  # draw the first four rows of patches apart, as the separate inputs they are
mosaic = np.ones((4 * (16 + gap), 10 * (16 + gap), 3))
for k in range(40):
    r, c = divmod(k, 10)
    mosaic[r * (16 + gap):r * (16 + gap) + 16, c * (16 + gap):c * (16 + gap) + 16] = \
        patches[k].transpose(1, 2, 0) * 4 * 0.5 + 0.5  # undo the scaling for display
ax2.imshow(mosaic, interpolation="nearest")
ax2.set_title("patches 0-39: separate inputs, 3x16x16 each")
ax2.set_xticks([])
ax2.set_yticks([])
fig.tight_layout()
save_figure(fig, "01_patches")
plt.show();

# %% [markdown]
# A check against the rule: patch `k` must be the `(k // 10, k % 10)` block of the frame, scaled
# by `(p / 127.5 - 1) / 4`, and the padded rows must be black (-0.25):

# %%
k = 47
row, col = divmod(k, 10)
block = frame[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16]
assert np.allclose(patches[k], ((block / 127.5 - 1) / 4).transpose(2, 0, 1), atol=1e-6)
assert np.all(patches[130:, :, 2:, :] == np.float32(-0.25))  # rows 210-223 are padding
print(f"patches {patches.shape}, pixel range [{patches.min():.3f}, {patches.max():.3f}]; patch {k} checks out")

# %% [markdown]
# ## 6. Text: SentencePiece
#
# The paper's tokenizer has 32000 pieces; a CPU-sized model does not need that many, and this
# project cannot download one. `gato_min` ships a 1024-piece SentencePiece model trained on its
# own prose — the chapters and README — with byte fallback, so any text still encodes. The command
# `python -m gato_min train-text-model` rebuilds it byte for byte.

# %%
sentence = "Gato imitates experts: it predicts actions and text, not observations."
pieces = tokenizer.text.pieces(sentence)
text_ids = tokenizer.encode_text(sentence)
print(pieces)
print(text_ids)
assert tokenizer.decode_text(text_ids) == sentence
assert text_ids.max() < config.vocab.text_size
print(f"{len(sentence)} characters -> {len(text_ids)} tokens, all below {config.vocab.text_size}")

# %% [markdown]
# ## 7. One timestep, as the model will see it
#
# > "Agent timesteps as observation tokens followed by a separator, then action tokens." (Sec. 2.1)
#
# A HalfCheetah timestep is 17 joint readings, the separator and 6 torques: 24 tokens. The model
# does not read Pong at 210 x 160: `gato_min` box-filters the screen to 80 x 80 (the paper gives
# no resolution; a decision of `gato_min.envs`), so a Pong timestep is 5 x 5 = 25 patch tokens,
# the separator and one button: 27 tokens instead of 142. Patches carry pixels, not ids; they
# are drawn grey.

# %%
cheetah = mujoco_timestep("halfcheetah", seed=0)
cheetah_ids, cheetah_kinds = timestep_tokens(cheetah, tokenizer)
pong_seen = model_timestep(pong)  # the 80 x 80 frame the model reads
pong_ids, pong_kinds = timestep_tokens(pong_seen, tokenizer)
assert pong_seen.observation.shape == (80, 80, 3) and len(pong_ids) == 25 + 1 + 1

fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 3.4), gridspec_kw=dict(hspace=0.9, bottom=0.25))
plot_token_strip(ax1, cheetah_kinds, labels=cheetah_ids)
ax1.set_title(f"HalfCheetah timestep: {len(cheetah_ids)} tokens (ids written in)")
plot_token_strip(ax2, pong_kinds)
ax2.set_title(f"Pong timestep at 80x80: {len(pong_ids)} tokens (patches carry pixels, not ids)")
ax2.set_xlabel("token position within the timestep")
token_legend(fig, cheetah_kinds + pong_kinds)
save_figure(fig, "01_timestep_tokens")
plt.show();

# %%
obs_ids = cheetah_ids[:17]
assert np.array_equal(obs_ids, tokenize_continuous(cheetah.observation, config.vocab))
assert cheetah_ids[17] == config.vocab.separator_id
assert np.array_equal(cheetah_ids[18:], tokenize_continuous(cheetah.action, config.vocab, compand=False))
print("readings:", np.round(cheetah.observation[:6], 3), "...")
print("ids     :", obs_ids[:6], "...")
print("decoded :", np.round(detokenize_continuous(obs_ids[:6], config.vocab), 3), "...")

# %% [markdown]
# ## 8. Bad input is refused, loudly
#
# A tokenizer that quietly turns a NaN into bin 0 trains a model on garbage. Every entry point
# checks its input and names what was wrong:

# %%
bad_inputs = [
    ("NaN reading", lambda: tokenizer.encode_continuous([0.1, np.nan])),
    ("string values", lambda: tokenizer.encode_continuous(np.array(["a"]))),
    ("float image", lambda: image_to_patches(frame.astype(np.float32))),
    ("4-channel image", lambda: image_to_patches(np.zeros((32, 32, 4), np.uint8))),
    ("negative button", lambda: tokenizer.encode_discrete([-1])),
    ("id outside the bins", lambda: tokenizer.decode_actions([5])),
]
for label, call in bad_inputs:
    try:
        call()
        raise AssertionError(f"{label} was accepted")
    except (ValueError, TypeError) as error:
        print(f"{label:20s} -> {type(error).__name__}: {error}")

# %% [markdown]
# ## Try it: how much does the compander matter?
#
# Vary `mu` (the paper uses 100) and the scale of the readings. With `mu` near 0 the compander
# is almost linear and small readings lose their precision; with a very large `mu` the bins crowd
# near zero and large readings suffer. The table shows the median error of one token.

# %%
for mu_value in [1.0, 10.0, 100.0, 1000.0]:  # try other values
    variant = Tokenizer(config.replace(mu=mu_value))
    errors = []
    for scale in [0.01, 0.1, 1.0, 10.0, 100.0]:
        values = rng.standard_normal(20_000) * scale
        errors.append(np.median(np.abs(values - variant.decode_continuous(variant.encode_continuous(values)))))
    print(f"mu = {mu_value:6.0f}: median error at scale 0.01 .. 100 =", " ".join(f"{e:.1e}" for e in errors))
