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
# # 08 · Scores in the real environments
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/08_scores.ipynb)
#
# What the paper says about scoring an agent:
#
# * **Scores** (Sec. 4.1): a task's return is normalized so that 0 is a uniformly random policy
#   and 100 the task's expert.
# * **Prompts** (Sec. 2.3): in training a quarter of the sequences get a prompt, a piece of
#   another episode of the same task, half of the time from its end (a form of goal
#   conditioning); at evaluation the agent is prompted with a successful demonstration, which
#   the paper does by default in all its control results.
#
# **What we measured, up front: in these measurements the agent does better without a prompt
# than with one.** The stored HalfCheetah run of chapter 07 scores 83.1 ± 5.5 without a prompt
# and 41.9 ± 12.1 with a 2-timestep demonstration prompt (10 episodes each, the same seeds; the
# reports are read below). The paper's claim that a demonstration prompt helps is not
# reproduced at this scale. Why we think so (the first two points are measured or read below):
#
# * the context is 96 tokens, and the prompt takes half of it: with the prompt the episode has
#   one or two of its own timesteps in view, without it three or four once under way;
# * the prompt is the start of a demonstration, a cheetah standing still, while training put
#   prompts in front of only a quarter of its windows, taken from an episode's end or from a
#   random place in it;
# * with one task there is no task for the prompt to name. The paper's 1024-token prompts
#   come with a 1024-token context, memory beyond it, and hundreds of tasks to tell apart.
#
# `gato_min.evaluate` (`python -m gato_min evaluate`) plays full episodes and writes the reports.
# This chapter reads them, checks the claim above against them, measures how much of the window
# the episode gets with and without the prompt, replays ten episodes to see how the bad ones go
# wrong, and trains a plain regressor on the same kind of data to see what the data allows.

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

import gymnasium
import matplotlib.pyplot as plt
import numpy as np
import torch

from gato_min.agent import GatoAgent
from gato_min.data.collect import collect
from gato_min.envs import get_task, make_env, start_episode
from gato_min.plotting import PALETTE, save_figure, use_style
from gato_min.runs import load_model
from gato_min.stored import stored_run

use_style()
torch.manual_seed(0)
torch.set_num_threads(2)
STORED = stored_run("halfcheetah-30min")  # python -m gato_min train ... and evaluate ... (its command.txt)
CHAPTER_06 = stored_run("halfcheetah-cpu-small")  # chapter 06's first run
model = load_model(STORED, task="halfcheetah")
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, context {model.config.context_length} tokens")

# %% [markdown]
# ## The scores
#
# `python -m gato_min evaluate` played 10 full episodes (1000 steps each, seeds 0–9) for each
# setting; the reports are stored beside the run (their commands are in its `command.txt`).
# "Sampled" draws each torque's bin from the model's distribution (temperature 1, as the paper
# samples); "most likely" takes the top bin (temperature 0). Chapter 06's first run (1024-token
# context, clean expert data, ring memory) is shown for comparison.

# %%
settings = {
    "no prompt,\nsampled": STORED / "eval-no-prompt",
    "no prompt,\nmost likely": STORED / "eval-no-prompt-t0",
    "2-step prompt,\nsampled": STORED / "eval",
    "ring + prompt,\nsampled": STORED / "eval-ring",
    "chapter 06 run": CHAPTER_06 / "eval",
}
full_reports = {name: json.loads((folder / "report.json").read_text()) for name, folder in settings.items()}
reports = {name: report["tasks"][0] for name, report in full_reports.items()}
fig, ax = plt.subplots(figsize=(7.5, 3))
names = list(reports)
ax.bar(
    names,
    [r["score_mean"] for r in reports.values()],
    yerr=[r["score_ci95"] for r in reports.values()],
    capsize=4,
    color=[PALETTE[5], PALETTE[4], PALETTE[2], PALETTE[6], PALETTE[0]],
)
ax.axhline(100, color=PALETTE[3], ls="--", lw=1, label="expert")
ax.axhline(80, color=PALETTE[1], ls=":", lw=1, label="80: the aim")
ax.axhline(0, color=PALETTE[0], lw=0.8, label="random")
ax.set_ylabel("normalized score")
ax.set_ylim(-10, 110)
ax.tick_params(axis="x", labelsize=8)
ax.legend(fontsize=7, loc="center right")
ax.set_title("HalfCheetah, 10 episodes each, 95 % intervals")
save_figure(fig, "08_scores")
plt.show();
for name, row in reports.items():
    print(
        f"{name.replace(chr(10), ' '):24s} return {row['return_mean']:7.1f} ± {row['return_ci95']:6.1f}   "
        f"score {row['score_mean']:5.1f} ± {row['score_ci95']:.1f}"
    )
for name, folder in (("sampled", "eval-no-prompt-seed100"), ("most likely", "eval-no-prompt-t0-seed100")):
    row = json.loads((STORED / folder / "report.json").read_text())["tasks"][0]
    print(
        f"30 more episodes (seeds 100-129), no prompt, {name:11s}: score {row['score_mean']:5.1f} ± "
        f"{row['score_ci95']:.1f}"
    )

# %% [markdown]
# ## Check: without the prompt it scores higher
#
# The claim at the top, against the reports: the two settings played the same ten seeds with
# the same weights and window memory, one with a 2-timestep prompt and one without, and their
# 95 % intervals do not overlap.

# %%
prompted, unprompted = full_reports["2-step prompt,\nsampled"], full_reports["no prompt,\nsampled"]
for report in (prompted, unprompted):
    assert (report["seed"], report["episodes"], report["memory"], report["temperature"]) == (0, 10, "window", 1.0)
assert prompted["tasks"][0]["prompt_steps"] == 2 and unprompted["tasks"][0]["prompt_steps"] == 0
with_prompt, without_prompt = prompted["tasks"][0], unprompted["tasks"][0]
lowest_without = without_prompt["score_mean"] - without_prompt["score_ci95"]
assert lowest_without > with_prompt["score_mean"] + with_prompt["score_ci95"]
print(
    f"no prompt {without_prompt['score_mean']:.1f} ± {without_prompt['score_ci95']:.1f}, "
    f"2-step prompt {with_prompt['score_mean']:.1f} ± {with_prompt['score_ci95']:.1f}: "
    f"{without_prompt['score_mean'] - with_prompt['score_mean']:.1f} points apart"
)

# %% [markdown]
# ## Why the prompt costs more than it gives here
#
# The agent keeps its window memory (chapter 07): whatever it sees when it predicts a torque
# must fit in the 96-token context, and it rebuilds the cache from the prompt and the episode's
# latest whole timesteps when the next one would not fit. The prompt stays in the window the
# whole episode. Below, an agent that notes how many tokens are in view when it predicts each
# step's first torque plays the first 12 steps of an episode, with the 2-timestep prompt and
# without one (the same kind of demonstration as in chapter 07).


# %%
class WatchedAgent(GatoAgent):
    """A GatoAgent that notes, at every step, the tokens in view (row 0) when it predicts the first torque."""

    in_view: list[int]

    def act(self, observations, cache, generator, previous=None, fresh=None, returns_to_go=None):
        actions, ids = super().act(observations, cache, generator, previous, fresh, returns_to_go)
        self.in_view.append(int(cache.keep[0].sum()) - (self.codec.action_tokens - 1))  # less the 5 torques fed after
        return actions, ids


demo = collect(
    "halfcheetah",
    "expert",
    1,
    seed=10_000,
    num_envs=1,
    progress=False,
    max_episode_steps=60,
    action_noise=0.3,
    record="intended",
).episodes[0]
views = {}
for name, demos in (("2-step prompt", [demo]), ("no prompt", None)):
    watched = WatchedAgent(model, "halfcheetah", demos)
    watched.in_view = []
    watched.rollout(1, num_envs=1, seed=0, max_steps=12, progress=False)
    views[name] = (sum(p.length for p in watched.prefixes()), np.array(watched.in_view))

per_step, current = 24, 18  # tokens of a timestep; of this step before its first torque (17 readings, '|')
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6), sharey=True)
for ax, (name, (prompt_tokens, in_view)) in zip(axes, views.items()):
    step = np.arange(len(in_view))
    earlier = in_view - prompt_tokens - current
    ax.bar(step, prompt_tokens, color=PALETTE[7], label="prompt")
    ax.bar(step, earlier, bottom=prompt_tokens, color=PALETTE[5], label="earlier steps of the episode")
    ax.bar(step, current, bottom=prompt_tokens + earlier, color=PALETTE[6], label="this step (readings, '|')")
    ax.axhline(model.config.context_length, color=PALETTE[0], ls="--", lw=1)
    ax.set_title(name)
    ax.set_xlabel("episode step")
axes[0].set_ylabel("tokens in view")
fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8)
fig.suptitle("what the model sees when it predicts the first torque (dashed: the 96-token context)", y=1.03)
save_figure(fig, "08_context")
plt.show();

own_steps = {}
for name, (prompt_tokens, in_view) in views.items():
    earlier, rest = np.divmod(in_view - prompt_tokens - current, per_step)
    assert (rest == 0).all()  # whole timesteps before this one
    own_steps[name] = earlier + 1
assert views["2-step prompt"][0] == 2 * per_step and views["no prompt"][0] == 0
assert set(own_steps["2-step prompt"][1:]) == {2} and set(own_steps["no prompt"][3:]) == {3, 4}
for name, steps in own_steps.items():
    print(f"{name:13s}: timesteps of the episode in view (this one included), steps 0-11: {steps.tolist()}")
config = model.config
print(
    f"training: {config.prompt_fraction:.0%} of the windows prompted, {config.prompt_end_fraction:.0%} of those "
    f"from an episode's end and the rest from a random place; a prompt took {config.prompt_share:.0%} of its window"
)

# %% [markdown]
# With the prompt the model reads each torque from the current step and one step before it;
# without, from three or four. A prompt in training was drawn from the start of an episode only
# when its random place happened to fall there, so the 2-step prompt of a cheetah standing
# still, kept in front of every step of the episode, is a context the model rarely saw. What
# the bars say (the numbers printed above):
#
# * **Without a prompt the agent reaches the aim on these ten episodes**, and it sits close to it
#   on others: the 30 more episodes printed under the bars score a few points either side of 80. With ten
#   episodes a 95 % interval is 5 to 15 points wide, so one evaluation decides little at this
#   level; the README lists a second training run with other seeds.
# * **Sampling or the most likely bin** come out about even on average, in different ways. Taking
#   the top bin, the episodes that go well run fastest (about 7,600, nine tenths of the expert);
#   sampling wobbles every torque a little and its good episodes are slower (about 7,000). Both
#   lose a few episodes badly — the next section shows how.
# * **The prompt costs more than it gives** at this size, as measured above.
# * **Memory matters most.** The same weights, prompted from the same demonstrations, score near
#   zero in the ring: chapter 07 measured how far the ring's logits drift from a freshly fed
#   window.
# * **The recipe** — many noisy demonstrations labelled with the expert's own torques, a short
#   context, smooth starting embeddings, chapter 06's local action positions and two worker
#   processes — lifts the chapter-06 run from random to this, in the same 30 minutes.

# %% [markdown]
# ## How an episode goes wrong
#
# The episodes' returns (in the reports) are not spread evenly: most land near one value and a
# few far below it. Replaying the ten no-prompt episodes taking the most likely bin (the
# `eval-no-prompt-t0` setting, deterministic) with a wrapper that records the torso's pitch shows
# why: in the low ones the cheetah has gone over onto its back (pitch past ±π/2, the shaded
# band) and carries on running upside down, slowly. The demonstrations that went over (the
# noisy play flips now and then) never came back either, so the agent does not right itself.


# %%
# NBVAL_IGNORE_OUTPUT
class PitchLog(gymnasium.Wrapper):
    """Keeps the torso's pitch (radians; 0 = upright) after every step of the episode."""

    def reset(self, **kwargs):
        self.pitch = []
        return self.env.reset(**kwargs)

    def step(self, action):
        result = self.env.step(action)
        self.pitch.append(float(self.unwrapped.data.qpos[2]))
        return result


def logged_env(task, render):
    logged.append(PitchLog(make_env(task, render=render)))
    return logged[-1]


greedy = GatoAgent(model, "halfcheetah", temperature=0.0)
logged = []
replay = greedy.rollout(10, num_envs=10, seed=0, progress=False, env_fn=logged_env)
flipped = np.array([np.abs(env.pitch).max() > np.pi / 2 for env in logged])
fig, ax = plt.subplots(figsize=(7.5, 2.8))
ax.axhspan(np.pi / 2, 3 * np.pi, color=PALETTE[6], alpha=0.08)
ax.axhspan(-3 * np.pi, -np.pi / 2, color=PALETTE[6], alpha=0.08)
labelled = set()
for env, over in zip(logged, flipped):
    kind = "went over" if over else "stayed upright"
    ax.plot(env.pitch, color=PALETTE[6] if over else PALETTE[5], lw=0.8, label=None if kind in labelled else kind)
    labelled.add(kind)
ax.set_ylim(-2 * np.pi, 2 * np.pi)
ax.set_xlabel("episode step")
ax.set_ylabel("torso pitch (rad)")
ax.legend(fontsize=8, loc="lower left")
ax.set_title("ten episodes, most likely bins: the low returns are the ones that flip")
save_figure(fig, "08_flips")
plt.show();
print(
    f"upright: {(~flipped).sum()} episodes, mean return {replay.returns[~flipped].mean():.0f}; "
    f"flipped: {flipped.sum()}, mean return {replay.returns[flipped].mean() if flipped.any() else float('nan'):.0f}"
)

# %% [markdown]
# ## What the data allows: a plain regressor on the same episodes
#
# Is the data too thin, or the model too slow to learn from it? A two-layer MLP trained by mean
# squared error on 20 noisy expert episodes — no tokens, no bins — is trained and played below
# for two episodes.

# %%
# NBVAL_IGNORE_OUTPUT
SPEC = get_task("halfcheetah")


def fit_regressor(episodes, steps=3000, batch=256, seed=0):
    """A 17 -> 256 -> 256 -> 6 MLP fitted by mean squared error to the episodes' (observation, action) pairs."""
    torch.manual_seed(seed)
    observations = torch.tensor(np.concatenate([e.observations for e in episodes]), dtype=torch.float32)
    actions = torch.tensor(np.concatenate([e.actions for e in episodes]), dtype=torch.float32)
    mean, scale = observations.mean(0), observations.std(0) + 1e-3
    mlp = torch.nn.Sequential(
        torch.nn.Linear(17, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 6),
        torch.nn.Tanh(),
    )
    optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    for _ in range(steps):
        pick = torch.randint(len(observations), (batch,))
        loss = ((mlp((observations[pick] - mean) / scale) - actions[pick]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lambda observation: mlp((torch.as_tensor(observation, dtype=torch.float32) - mean) / scale).numpy()


@torch.no_grad()
def play(policy, seeds):
    """The return of one 1000-step HalfCheetah episode per seed."""
    returns = []
    for seed in seeds:
        env = make_env("halfcheetah")
        observation, total = start_episode(env, SPEC, seed=seed), 0.0
        for _ in range(1000):
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total += reward
            if terminated or truncated:
                break
        returns.append(total)
    return np.round(returns, 0)


episodes = collect("halfcheetah", "expert", 20, seed=20_000, num_envs=4, progress=False, action_noise=0.1).episodes
regressor = fit_regressor(episodes)
print(
    f"MLP on {sum(len(e.actions) for e in episodes):,} timesteps, 3000 steps of 256: returns "
    f"{play(regressor, range(2))} (expert 8366, random -327)"
)

# %% [markdown]
# The plain regressor plays like the expert (its returns are printed above; the expert's is
# 8366) after seconds of training on 768,000 samples from 20 episodes, a twenty-fifth as many as
# the stored run's. So the data is not what holds the agent back. The MLP reads the 17 readings
# as numbers and outputs 6 numbers. Gato reads each reading as one of 1024 tokens whose
# embeddings must each be learned (smooth starting embeddings help a little), and predicts each
# torque as a 1024-way choice; from the same kind of episodes it learns far more slowly: its 30
# minutes on two cores saw about 1.5 million timestep samples and reach about 80, where the MLP
# reaches 100. One tokenizer for every modality is the paper's bet, and the paper pays for it
# with scale.
#
# ## Try it: how little data is enough?
#
# Fit the regressor to fewer episodes, noisier ones, or for fewer steps, and play it for two
# episodes. (To vary the Gato agent itself, chapter 07's "Try it" plays it with and without the
# prompt, in either memory, at any temperature.)

# %%
# NBVAL_IGNORE_OUTPUT
count, noise, steps = 2, 0.1, 1000  # try 1 episode, noise 0.0 or 0.3, 300 or 3000 steps
few = collect(
    "halfcheetah", "expert", count, seed=30_000, num_envs=min(count, 4), progress=False, action_noise=noise
).episodes
print(
    f"MLP on {count} episode(s) with noise {noise}, {steps} steps of 256: returns "
    f"{play(fit_regressor(few, steps), range(2))}"
)
