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
# # 10 · Atari from pixels
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/10_atari_from_pixels.ipynb)
#
# What the paper says about images (Reed et al., 2022):
#
# * **Tokens** (Sec. 2.1): an image becomes non-overlapping 16 x 16 patches in raster order;
#   each pixel is scaled to [-1, 1] and divided by the square root of the patch size. Patches
#   are not turned into ids: each goes through **one ResNet block** (Sec. 2.2) to give one
#   vector of the model's width.
# * **Positions** (App. C.3): each patch's row and column interval, normalized by the image size
#   and quantized to 128 bins, indexes a learned row and a learned column table; in training the
#   index is drawn inside the interval, at evaluation it is the interval's middle.
# * **Atari** (Sec. 3.1): the agent sees one frame per timestep and presses one button; the
#   frames before it are in the context, not stacked into the observation.
#
# So the same model that reads 17 joint readings of a cheetah reads a Pong screen as 25 patch
# tokens, a separator and a button: 27 tokens a timestep at our 80 x 80 frames.
#
# This chapter follows one Pong frame through that path, measures that the ball survives the
# shrinking to 80 x 80, shows how the behaviour data are made (the scripted expert's planned
# button recorded while a noisier copy of it plays), then reads the stored Pong and Breakout
# agents: their learning curves, their button distributions as the ball comes in, their scores.
#
# **What we measured, up front: the stored agents do not play yet.** Trained for 11 to 15
# minutes on 2 cores (2 seeds each, 20 games each), the Pong agents score 5.3 and 2.5 without a
# prompt (returns -18.1 and -19.3; 0 = random, 100 = the scripted expert, which wins 21-0) and
# the Breakout agents 1.2 and 0.6 (returns 6.0 and 3.5, where the expert makes 465). Several
# things were measured on the way: at the MuJoCo recipe's learning rate nothing was learned; the
# ball is not lost at 80 x 80; an MLP that reads the true state from the console's memory cannot
# copy the Pong expert either, so for Pong the limit is the expert; and a copy from the true
# state of a Breakout expert that moves early, instead of at the last moment, makes about nine
# times the points, but a pixel model this small does not copy it better, so for Breakout the
# limit is now the pixel model.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "gato_min @ git+https://github.com/gato-min/gato_min"],
        check=True,
    )

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import torch

from gato_min.data.atari_policies import ATARI_POLICIES, ball_contrast
from gato_min.envs import get_task, make_env, model_observation, start_episode
from gato_min.plotting import PALETTE, save_figure, use_style
from gato_min.positions import patch_intervals, sample_positions
from gato_min.tokenize import cut_patches, normalize_pixels
from gato_min.tools.tokenize_demo import plot_patch_grid

use_style()
torch.manual_seed(0)
torch.set_num_threads(2)

# %% [markdown]
# ## A frame becomes 25 patches
#
# The emulator's screen is 210 x 160 RGB. gato_min shrinks it to 80 x 80 with a box filter (the
# paper does not give a size; `gato_min.envs` says why this one), so a frame is a 5 x 5 grid of
# 16 x 16 patches instead of the 14 x 10 = 140 patches of the full screen: 5.6 times fewer tokens
# per timestep.

# %%
spec = get_task("pong")
env = make_env("pong")
screen = start_episode(env, spec, seed=7)
for _ in range(70):  # a few steps in, so that the ball is in play
    screen, *_ = env.step(0)
env.close()
frame = model_observation(spec, screen)
patches = cut_patches(frame, 16)
print(f"screen {screen.shape} -> frame {frame.shape} -> patches {patches.shape} (patches, channels, 16, 16)")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.25, 1.25]})
axes[0].imshow(screen)
axes[0].set_title("the screen, 210 x 160")
axes[0].axis("off")
plot_patch_grid(axes[1], frame)
axes[1].set_title("80 x 80, cut into 25 patches")
scaled = normalize_pixels(patches, 16)
axes[2].hist(scaled.reshape(-1), bins=40, color=PALETTE[0])
axes[2].set_title("patch values after scaling")
axes[2].set_xlabel("(pixel / 127.5 - 1) / 4")
save_figure(fig, "10_frame_patches")
plt.show();

# %% [markdown]
# The scaling is the paper's: [0, 255] to [-1, 1], then divided by sqrt(16) = 4, so every value
# lies in [-0.25, 0.25]. Re-derived here and checked against the package:

# %%
by_hand = (patches.astype(np.float64) / 255 * 2 - 1) / np.sqrt(16)
assert np.allclose(by_hand, scaled, atol=1e-6) and abs(scaled).max() <= 0.25
print(f"values in [{scaled.min():.3f}, {scaled.max():.3f}]")

# %% [markdown]
# ## Does the ball survive 80 x 80?
#
# Pong's ball is 2 x 4 screen pixels; shrunk 2 times across and 2.6 times down it covers about
# one pixel of the 80 x 80 frame, blended with the background. If the box filter averaged it
# away, no model could play. `ball_contrast` measures it: while the scripted player plays, the
# ball's pixels are painted over with the background in each screen, both versions are shrunk,
# and the largest change of any 80 x 80 pixel is the ball's contrast.

# %%
contrast = {task: ball_contrast(task, steps=1500, seed=5) for task in ("pong", "breakout")}
fig, ax = plt.subplots(figsize=(6, 3))
for colour, (task, values) in zip(PALETTE, contrast.items()):
    ax.hist(values, bins=np.arange(0, 256, 8), alpha=0.7, color=colour, label=f"{task} ({len(values)} frames)")
ax.set_xlabel("ball contrast at 80 x 80 (of 255 levels)")
ax.set_ylabel("frames")
ax.legend()
save_figure(fig, "10_ball_contrast")
plt.show();
for task, values in contrast.items():
    print(f"{task:9s} frames with a ball {len(values):5d}   contrast min {values.min():3d}  "
          f"median {np.median(values):5.1f}")
    assert values.min() >= 30  # the ball never vanishes: the resolution stays

# %% [markdown]
# The ball never vanishes: in the worst frame it still changes a pixel by more than 30 levels,
# in the median frame by 100 or more. Colour stays too: the paper feeds RGB, and it costs
# nothing here (the stem of the patch block sees 3 channels instead of 1). What one frame cannot show is
# where the ball is going; the context can. The Atari recipe's windows hold 4 timesteps, so the
# model sees the ball in the last 4 frames when it picks a button.
#
# ## What the patch positions encode
#
# Each patch carries the rows and columns it covers, as intervals of [0, 1] cut into 128 bins.
# On a 5 x 5 grid each interval spans 25 or 26 bins. In training the model gets a random bin of
# each interval (so it never relies on one exact index, which helps at other image sizes); at
# evaluation the middle one.

# %%
row_ranges, col_ranges = patch_intervals(5, 5, bins=128)
middle = sample_positions(torch.from_numpy(row_ranges), training=False)
drawn = sample_positions(torch.from_numpy(row_ranges), training=True, generator=torch.Generator().manual_seed(0))
print("patch  rows [from, to)  middle  one training draw")
for index in (0, 6, 12, 18, 24):
    low, high = row_ranges[index]
    print(f"{index:5d}  [{low:3d}, {high:3d})        {int(middle[index]):4d}  {int(drawn[index]):6d}")
edges = np.floor(np.arange(6) / 5 * 128).astype(int)  # by hand: the row edges i / 5 of the height, in bins
assert (row_ranges[::5, 0] == edges[:-1]).all() and (row_ranges[::5, 1] == edges[1:]).all()
assert (middle.numpy() == np.round((row_ranges[:, 0] + row_ranges[:, 1] - 1) / 2)).all()
assert ((drawn.numpy() >= row_ranges[:, 0]) & (drawn.numpy() < row_ranges[:, 1])).all()

# %% [markdown]
# ## Behaviour data that teach recovery
#
# gato_min ships a scripted expert per game (`gato_min.data.atari_policies`). It reads the
# console's memory, predicts where the ball will meet its paddle and plans a few button presses
# ahead. It wins Pong 21-0, every game. A copy of a perfect player sees only perfect games: once
# the copy is a little off, it is somewhere the data never went. So the data are collected the
# DART way (Laskey et al., 2017), as chapter 09 did with torques: the expert plans every step,
# but with chance epsilon a random button is played instead; the file keeps the planned button.
# The states come from a clumsier player, the labels stay the expert's.

# %%
player = ATARI_POLICIES["pong"](epsilon=0.2, seed=3)
env = make_env("pong")
start_episode(env, spec, seed=3)
played, planned = [], []
for _ in range(600):
    played.append(player.act(env.unwrapped.ale.getRAM()))
    planned.append(player.intended)
    env.step(played[-1])
env.close()
played, planned = np.array(played), np.array(planned)
differs = played != planned
print(f"600 steps at epsilon 0.2: the played button differs from the planned one at {differs.mean():.1%}")
print(f"(expected 0.2 x 5/6 = {0.2 * 5 / 6:.1%}: a random button is the planned one 1 time in 6)")
assert 0.10 < differs.mean() < 0.24
names = ["NOOP", "FIRE", "UP", "DOWN", "UP+FIRE", "DOWN+FIRE"]
print("planned buttons:", {names[b]: int((planned == b).sum()) for b in np.unique(planned)})

# %% [markdown]
# The planned buttons are mostly NOOP: the paddle moves with inertia, so the planner gives short
# pushes and lets it coast. That makes the labels sparse and precise in time, which is what makes
# this expert hard to copy (see the scores below). The Breakout expert plans the same way but
# moves as soon as it knows where to catch the ball, which the end of the chapter comes back to.
#
# ## Training: the learning rate decides whether anything is learned
#
# The Atari recipe (`python -m gato_min demo --task pong`, `demo.ATARI_RECIPE`) trains the same
# 2-layer, width-64 model as the MuJoCo recipe, on windows of 4 timesteps (108 tokens), with a
# patch block of 16 channels, 64 windows a step. At the MuJoCo recipe's peak rate of 2e-3 the
# held-out loss of the buttons stalled just under the marginal (what always guessing the button
# frequencies costs) for 4,000 steps; at 5e-4 it fell at once. Both screens are stored:

# %%
from gato_min.agent import GatoAgent
from gato_min.data.reference import reference_returns
from gato_min.runs import load_model
from gato_min.stored import stored_run

SCREENS = {rate: stored_run(f"screen-pong-lr/lr{rate}") for rate in ("2e-3", "5e-4")}  # their command.txt
RUNS = {  # python -m gato_min demo --task T --seed S, then evaluate (each run's command.txt)
    (task, seed): stored_run(f"{task}-fast" + ("-seed1" if seed else ""))
    for task in ("pong", "breakout")
    for seed in (0, 1)
}
LAST_MOMENT = [stored_run("breakout-last-moment" + ("-seed1" if seed else "")) for seed in (0, 1)]  # the former expert


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for colour, (rate, run) in zip(PALETTE, SCREENS.items()):
    held = [r for r in rows(run) if "heldout" in r]
    axes[0].plot([r["step"] for r in held], [r["heldout"]["pong"] for r in held], "o-", color=colour,
                 label=f"peak rate {rate}")
marginal = held[-1]["baseline"]["pong"]
axes[0].axhline(marginal, color="grey", ls="--", lw=1, label="marginal (button frequencies)")
axes[0].set(title="Pong: the learning-rate screens", xlabel="step", ylabel="held-out loss (nats per button)")
axes[0].legend(fontsize=8)
for colour, task in zip(PALETTE, ("pong", "breakout")):
    for seed, style in ((0, "-"), (1, "--")):
        held = [r for r in rows(RUNS[task, seed]) if "heldout" in r]
        axes[1].plot(
            [r["step"] for r in held], [r["heldout"][task] / r["baseline"][task] for r in held], style, color=colour,
            label=f"{task}, seed {seed}",
        )
for seed, run in enumerate(LAST_MOMENT):
    held = [r for r in rows(run) if "heldout" in r]
    axes[1].plot([r["step"] for r in held], [r["heldout"]["breakout"] / r["baseline"]["breakout"] for r in held], ":",
                 color="grey", label="breakout, last-moment expert" if seed == 0 else None)
axes[1].set(title="the stored agents", xlabel="step", ylabel="held-out loss / marginal")
axes[1].legend(fontsize=8)
save_figure(fig, "10_learning")
plt.show();

late = [r for r in rows(SCREENS["2e-3"]) if "heldout" in r and r["step"] >= 500]
stall = [r["heldout"]["pong"] for r in late]
fell = [r["heldout"]["pong"] for r in rows(SCREENS["5e-4"]) if "heldout" in r]
print(f"peak rate 2e-3: held-out loss {min(stall):.3f}-{max(stall):.3f} from step 500 to {late[-1]['step']:,}")
print(f"peak rate 5e-4: {fell[0]:.3f} at step 250, {fell[-1]:.3f} at step 2,000; the marginal is {marginal:.3f}")
assert min(stall) > 0.37 and fell[-1] < 0.3 < marginal

# %% [markdown]
# ## Buttons as the ball comes in
#
# The stored Pong agent plays one game here (seed 1000, no prompt). We listen in on its sampler:
# at every step, the probabilities it gives the legal buttons, next to where the ball is
# against the paddle (read from the console's memory, which the agent never sees).

# %%
model = load_model(RUNS["pong", 0], task="pong")
agent = GatoAgent(model, "pong", None, temperature=1.0)
probabilities, offsets, ram_source = [], [], {}
sample = agent.sample


def listening_sample(logits, generator):
    low, high = agent.codec.action_ids
    probabilities.append(torch.softmax(logits[0, low:high].float(), dim=0).numpy())
    ram = ram_source["env"].unwrapped.ale.getRAM()
    offsets.append(np.nan if ram[54] == 0 else int(ram[54]) - int(ram[51]))  # ball y - paddle y, screen pixels
    return sample(logits, generator)


def remembered_env(task, render):
    ram_source["env"] = make_env(task)
    return ram_source["env"]


agent.sample = listening_sample
game = agent.rollout(1, num_envs=1, seed=1000, max_steps=300, env_fn=remembered_env, progress=False)
probabilities, offsets = np.array(probabilities), np.array(offsets, dtype=float)
fig, axes = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
axes[0].plot(offsets, color="black", lw=1)
axes[0].axhline(0, color="grey", lw=0.5)
axes[0].set(ylabel="ball y - paddle y")
for colour, (button, name) in zip(PALETTE, ((0, "NOOP"), (2, "UP"), (3, "DOWN"))):
    axes[1].plot(probabilities[:, button], color=colour, lw=1, label=name)
axes[1].set(xlabel="step", ylabel="P(button)")
axes[1].legend(fontsize=8, ncol=3)
save_figure(fig, "10_buttons")
plt.show();
assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5) and probabilities.shape[1] == spec.action_dim
print(f"{len(probabilities)} steps, return {game.returns[0]:+.0f}; mean P(button):",
      {name: round(float(p), 3) for name, p in zip(names, probabilities.mean(axis=0))})

# %% [markdown]
# ## Scores
#
# Each stored agent played 20 games from seeds 1000-1019 (the same 0-30 no-op starts as the
# data, other games than the data's seeds 0-39), sampling its buttons at temperature 1, once
# without a prompt and once prompted with the first 2 timesteps of a held-out demonstration
# (the share of the window training gave prompts). Scores are normalized as in Sec. 4.1: 0 is a
# random policy, 100 the scripted expert (`python -m gato_min reference-returns`).

# %%
REPORTS = {"no prompt": "eval-no-prompt-seed1000", "prompted": "eval-seed1000"}
table = {}
for (task, seed), run in RUNS.items():
    for label, folder in REPORTS.items():
        report = json.loads((run / folder / "report.json").read_text())
        (row,) = report["tasks"]
        reference = reference_returns(task)
        by_hand = 100 * (np.array(row["returns"]) - reference["random"]) / (reference["expert"] - reference["random"])
        assert np.isclose(by_hand.mean(), row["score_mean"], atol=0.05) and len(row["returns"]) == 20
        table[task, seed, label] = row
print(f"{'task':9s} {'seed':>4s} {'prompt':>10s} {'return':>16s} {'score':>14s}")
for (task, seed, label), row in table.items():
    print(
        f"{task:9s} {seed:4d} {label:>10s} {row['return_mean']:8.1f} ± {row['return_ci95']:<5.1f} "
        f"{row['score_mean']:6.1f} ± {row['score_ci95']:<5.1f}"
    )
pooled = {
    (task, label): np.mean([np.mean(table[task, seed, label]["returns"]) for seed in (0, 1)])
    for task in ("pong", "breakout")
    for label in REPORTS
}
fig, ax = plt.subplots(figsize=(7, 3.2))
for offset, (colour, label) in enumerate(zip(PALETTE, REPORTS)):
    for i, task in enumerate(("pong", "breakout")):
        scores = [table[task, seed, label]["score_mean"] for seed in (0, 1)]
        ax.bar(i + 0.38 * offset - 0.19, np.mean(scores), width=0.36, color=colour, label=label if i == 0 else None)
        ax.plot([i + 0.38 * offset - 0.19] * 2, scores, "k.", ms=6)
ax.axhline(100, color="grey", ls="--", lw=1)
ax.set_xticks([0, 1], ["Pong", "Breakout"])
ax.set_ylabel("normalized score (100 = expert)")
ax.set_title("stored agents, 2 seeds x 20 games (dots: each seed)")
ax.legend(fontsize=8)
save_figure(fig, "10_scores")
plt.show();

# %% [markdown]
# ![Pong, no prompt, game 0](../results/pong-fast/eval-no-prompt-seed1000/pong.gif)
# ![Breakout, no prompt, game 0](../results/breakout-fast/eval-no-prompt-seed1000/breakout.gif)
#
# ## What limits the score: a copy from the true state
#
# Is it the pixels, or the expert? `gato_min.data.state_copy` gives a small MLP what the pixel
# model has to find for itself: the ball's position and velocity, the paddle's position and the
# last three pushes, read from the console's memory (everything the expert's planner reads). It
# is trained on DART games (epsilon 0.2) to predict the expert's planned button, then plays.

# %%
from gato_min.data.state_copy import state_copy_experiment

(dart,) = state_copy_experiment("pong", games=3, dagger_rounds=0, eval_games=2)
print(
    f"{dart['labelled_states']:,} labelled states; loss on a held-out game {dart['probe_loss']:.3f} nats "
    f"(marginal {dart['marginal_loss']:.3f}); returns of 2 games: {dart['returns']}"
)
assert dart["probe_loss"] < 0.8 * dart["marginal_loss"] and max(dart["returns"]) < 0

# %% [markdown]
# The copy predicts the expert's buttons far better than their frequencies do, about as well as
# the pixel models (their held-out losses are in the learning curves above), and still loses. So
# the pixels are not what is missing. Letting it collect its own mistakes does not fix it either
# (DAgger, `python -m gato_min state-copy --task pong --dagger 3`, stored in
# `results/state-copy-pong`):

# %%
STATE_COPY = json.loads((stored_run("state-copy-pong") / "state_copy.json").read_text())["rows"]
for row in STATE_COPY:
    label = "DART" if row["round"] == 0 else f"DAgger round {row['round']}"
    print(f"{label:15s} {row['labelled_states']:7,d} states   returns {row['returns']}")

# %% [markdown]
# ## Breakout: an expert that moves early
#
# The first Breakout expert planned as Pong's does: among plans that catch the ball equally well
# it kept the one that pushes last, so each push had to come at one exact step. Today's takes the
# one whose paddle gets near the catch soonest (`BreakoutPolicy`; `early=False` gives the old
# player), so a late or stray push can still be made good, by the expert under epsilon and by a
# copy. The same copy from the true state, of each player (`python -m gato_min state-copy --task
# breakout`, with `--last-moment` for the old one; stored in `results/state-copy-breakout`):

# %%
COPIES = {
    name: json.loads((stored_run("state-copy-breakout") / f"{file}.json").read_text())["rows"][0]
    for name, file in (("last moment", "last_moment"), ("early", "state_copy"))
}
for name, row in COPIES.items():
    print(f"{name:12s} loss {row['probe_loss']:.3f} (marginal {row['marginal_loss']:.3f})   returns {row['returns']}")
assert np.mean(COPIES["early"]["returns"]) > 3 * np.mean(COPIES["last moment"]["returns"])
def final_ratio(run):
    last = [r for r in rows(run) if "heldout" in r][-1]
    return last["heldout"]["breakout"] / last["baseline"]["breakout"]


pixel = {
    name: np.mean([final_ratio(run) for run in runs])
    for name, runs in (("last moment", LAST_MOMENT), ("early", [RUNS["breakout", 0], RUNS["breakout", 1]]))
}
print("pixel models, held-out loss / marginal at step 5,000:", {k: round(float(v), 2) for k, v in pixel.items()})
assert pixel["early"] > pixel["last moment"]

# %% [markdown]
# From the true state the early mover is far easier to copy. From pixels it is harder: the
# recipe's model gets its held-out loss down to about four fifths of the marginal (the solid
# Breakout curves above) where it got the last-moment player's to about half (dotted), and its
# agents play no better. The last-moment player's buttons hinge on a ball next to the paddle,
# which a 16 x 16 patch shows; the early mover's hinge on where the ball will come down, which
# the model has to work out from the ball's position in four small frames. So for Breakout the
# limit is now the pixel model, not the expert. Not its transformer's size, though: 4 layers of
# width 128 on the same data fit the training games a little faster and the held-out games no
# better (`results/screen-breakout-wide`):

# %%
wide = [r for r in rows(stored_run("screen-breakout-wide")) if "heldout" in r]
recipe = {r["step"]: r["heldout"]["breakout"] for r in rows(RUNS["breakout", 0]) if "heldout" in r}
for r in wide:
    print(f"step {r['step']:5,d}   held-out loss: 4 x 128 {r['heldout']['breakout']:.3f}, "
          f"the recipe's 2 x 64 {recipe[r['step']]:.3f}")
assert wide[-1]["heldout"]["breakout"] > recipe[wide[-1]["step"]] - 0.01

# %% [markdown]
# More games, or a patch block that reads where in its patch the ball is, are the candidates.
#
# ## Try it
#
# Change `TEMPERATURE` (0 takes the most likely button every step) or `TASK`, and see how the
# stored agent's return changes over the first 400 steps of a game.

# %%
TASK, TEMPERATURE = "pong", 0.0
trial = GatoAgent(load_model(RUNS[TASK, 0], task=TASK), TASK, None, temperature=TEMPERATURE)
played_game = trial.rollout(1, num_envs=1, seed=1000, max_steps=400, progress=False)
print(f"{TASK} at temperature {TEMPERATURE:g}: return {played_game.returns[0]:+.0f} in {played_game.lengths[0]} steps")
