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
# # 07 · Prompted evaluation
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/gato-min/gato_min/blob/main/chapters/07_prompted_evaluation.ipynb)
#
# What the paper says about acting:
#
# * **Deployment** (Sec. 2.4): the model reads a prompt, then at every step the tokens of the
#   observation and the separator, and samples the action tokens one at a time, each
#   conditioned on the ones before it; the decoded action goes to the environment.
# * **Prompts** (Sec. 2.3, 4.1): for control tasks the prompt is a successful demonstration of
#   the task, by default its first 1024 tokens.
# * **Memory** (App. C.1): at deployment Gato keeps Transformer-XL-style memory: the keys and
#   values of earlier tokens stay, so the model sees beyond its 1024-token window.
#
# `gato_min.codec` turns observations into tokens and tokens into actions; `gato_min.agent`
# runs a batch of environments with a key/value cache. This chapter takes the stored HalfCheetah
# run (`results/halfcheetah-30min`: the small preset with a 96-token context, trained for 29
# minutes on 2 cores on 500 expert episodes played with noise on the torques and labelled with
# the expert's own torques), follows one action from the prompt to the torque, checks that a
# cached prompt acts as if it had been fed, shows why the agent rebuilds its window instead of
# sliding it token by token, and plays a short episode. Chapter 08 reads the run's scores over
# full episodes, with and without the prompt.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab: install gato_min; Colab's own torch is kept
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "gato_min @ git+https://github.com/gato-min/gato_min"],
        check=True,
    )

# %%
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering, before MuJoCo is imported

import matplotlib.pyplot as plt
import numpy as np
import torch

from gato_min.agent import GatoAgent
from gato_min.data.collect import collect, policy_file
from gato_min.data.policies import load_policy
from gato_min.envs import make_env, model_observation, start_episode
from gato_min.model import KVCache
from gato_min.plotting import PALETTE, TOKEN_COLORS, save_figure, use_style
from gato_min.runs import load_model
from gato_min.sequence import KIND_NAMES
from gato_min.stored import stored_run

use_style()
torch.manual_seed(0)
torch.set_num_threads(2)
STORED = stored_run("halfcheetah-30min")  # python -m gato_min train ... (its command.txt)
model = load_model(STORED, task="halfcheetah")
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, context {model.config.context_length} tokens")

# %% [markdown]
# ## The prompt: the start of a successful demonstration
#
# A demonstration is an episode of the expert policy. The prompt is its first tokens cut to
# whole timesteps; HalfCheetah has 24 tokens a step (17 readings, '|', 6 torques). The paper
# prompts with 1024 tokens, its whole context, and relies on its memory for the rest. This
# model's context is 96 tokens (4 timesteps), and in training a prompt took half of a window
# (`prompt_share`, chapter 04), so by default the agent's prompt is 48 tokens: 2 timesteps.
# The run's evaluation takes held-out episodes; here one expert episode is played fresh.

# %%
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
).episodes[0]  # the kind of episode the run trained on
agent = GatoAgent(model, "halfcheetah", [demo])
prompt = agent.prompt_batch(demo)
print(f"prompt: {agent.prompt_steps} timesteps, {prompt.shape[1]} tokens; memory: {agent.memory}")

# the calls the agent makes: one for the prompt, then per step [last torque, readings, '|'] and 5 single torques
kinds = prompt.token_kinds[0].numpy()
fig, ax = plt.subplots(figsize=(9, 1.4))
for i, kind in enumerate(kinds):
    ax.add_patch(plt.Rectangle((i, 0), 1, 1, facecolor=TOKEN_COLORS[KIND_NAMES[kind]], edgecolor="white", lw=0.3))
ax.set_xlim(0, len(kinds))
ax.set_ylim(0, 1)
ax.set_yticks([])
ax.set_xlabel(f"token index (the prompt's {agent.prompt_steps} timesteps)")
handles = [plt.Rectangle((0, 0), 1, 1, color=TOKEN_COLORS[name]) for name in ("continuous", "separator", "action")]
ax.legend(handles, ["readings", "'|'", "torques"], loc="upper center", bbox_to_anchor=(0.5, -0.9), ncol=3)
ax.set_title("the prompt: whole timesteps of a demonstration, the tokens training saw")
save_figure(fig, "07_prompt")
plt.show();

# %% [markdown]
# ## One action, token by token
#
# The cache starts with the prompt's keys and values. The first observation of a new episode
# goes in with its separator; the logits at '|' give the distribution of the first torque,
# restricted to the 1024 action bins. A torque is sampled, fed back, and the next one is
# predicted from everything before it — six calls for six torques. Below: each torque's
# distribution over its bins, the sampled value, and what the expert policy would do here.

# %%
spec = agent.codec.spec
env = make_env("halfcheetah")
observation = model_observation(spec, start_episode(env, spec, seed=0))
cache = KVCache(model.config, batch_size=1)
cache.install_prefix([0], agent.prefixes()[0])
generator = torch.Generator().manual_seed(0)
low, high = agent.codec.action_ids
centres = agent.codec.decode_actions(np.arange(low, high)[:, None].repeat(6, 1))[:, 0]

distributions, sampled = [], []
with torch.no_grad():
    logits = model.extend(agent.codec.observation_batch(observation[None]), cache, last_only=True)
    for j in range(agent.codec.action_tokens):
        distributions.append(torch.softmax(logits[0, low:high], 0).numpy())
        token = agent.sample(logits, generator)
        sampled.append(int(token))
        if j + 1 < agent.codec.action_tokens:
            logits = model.extend(agent.codec.action_batch(token, j), cache, last_only=True)
action = agent.codec.decode_actions(np.array([sampled]))[0]
expert, _ = load_policy(policy_file("halfcheetah", "expert"))
expert_action = expert.act(observation[None])[0]

fig, axes = plt.subplots(1, 6, figsize=(10, 2.2), sharey=True)
for j, ax in enumerate(axes):
    ax.plot(centres, distributions[j], color=PALETTE[5], lw=1)
    ax.axvline(action[j], color=PALETTE[6], lw=1.2, label="sampled")
    ax.axvline(expert_action[j], color=PALETTE[3], lw=1.2, ls="--", label="expert")
    ax.set_title(f"torque {j}")
    ax.set_xlabel("value")
axes[0].set_ylabel("probability")
axes[-1].legend(fontsize=7)
fig.suptitle(
    "the first step of an episode: each torque's distribution, given the prompt and the torques before it", y=1.08
)
save_figure(fig, "07_action_tokens")
plt.show();
print("sampled:", np.round(action, 2))
print("expert: ", np.round(expert_action, 2))

# %% [markdown]
# ## Check: an installed prompt acts as if it had been fed
#
# Above, the prompt's keys and values were computed once and copied into the cache. Feeding the
# prompt itself, then this step's tokens, into a fresh cache must give the same distribution
# for the last torque — and a decoded action must lie in the action space. (Chapter 05 and the
# tests check that cached calls equal one forward pass over the whole context.)

# %%
step_tokens = torch.cat([agent.codec.observation_batch(observation[None]).token_ids, torch.tensor([sampled[:-1]])], 1)
full_ids = torch.cat([prompt.token_ids, step_tokens], 1)
with torch.no_grad():
    cached_again = KVCache(model.config, batch_size=1)
    model.extend(prompt, cached_again)
    model.extend(agent.codec.observation_batch(observation[None]), cached_again)
    for j in range(5):
        last = model.extend(agent.codec.action_batch(torch.tensor([sampled[j]]), j), cached_again, last_only=True)
difference = np.abs(torch.softmax(last[0, low:high], 0).numpy() - distributions[-1]).max()
assert difference < 1e-5, difference
assert env.action_space.contains(action.astype(env.action_space.dtype))
print(f"installed prompt vs fed prompt, last torque's distribution: max difference {difference:.1e}")
print(f"{full_ids.shape[1]} tokens in view, {cache.length} in the cache; the action lies in {env.action_space}")

# %% [markdown]
# ## Memory: slide the cache, or rebuild the window?
#
# Once an episode outgrows the context, something has to give. Transformer-XL memory (the
# paper's deployment) keeps the keys and values of the last 96 tokens in a ring and lets the
# oldest go, token by token. But this model never saw such a context in training: every
# training window starts at a timestep boundary with nothing before it, and each cached key
# was computed from exactly the tokens inside its window. In the ring, the oldest visible
# token can sit mid-timestep, and every cached key still carries what its token saw before it
# entered the window (through the layers below). With no positional term to tell the model
# where it is, that changes its predictions.
#
# The agent's default memory, `"window"`, rebuilds instead: when the next timestep would not
# fit, the cache starts again from the prompt and the latest whole timesteps, fed afresh in one
# call (`GatoAgent._rebuild`), so every prediction is made from a context shaped like a
# training window. Below, the demonstration is fed step by step, the expert's torques in the
# context; at each step the logits of the first torque are compared with one forward pass over
# the aligned window of the last 4 timesteps: the ring drifts away, the rebuilt window does not.

# %%
codec = agent.codec
steps = np.arange(4, 60)
ids = codec.encode_actions(demo.actions)
ring = KVCache(model.config, batch_size=1)
ring_gap, window_gap = [], []
with torch.no_grad():
    for t in range(60):
        previous = None if t == 0 else torch.from_numpy(ids[t - 1 : t, -1:])
        ring_logits = model.extend(
            codec.observation_batch(demo.observations[t : t + 1], previous), ring, last_only=True
        )
        if t >= 4:  # the aligned window [t-3, t], one forward pass, as in training
            window = codec.timesteps_batch([demo.observations[t - 3 : t + 1]], [ids[t - 3 : t + 1]])
            reference = model(window)[0, 3 * 24 + 17]
            rebuilt = KVCache(model.config, batch_size=1)  # what a rebuild leaves: 3 timesteps, then step t
            model.extend(codec.timesteps_batch([demo.observations[t - 3 : t]], [ids[t - 3 : t]]), rebuilt)
            rebuilt_logits = model.extend(
                codec.observation_batch(demo.observations[t : t + 1]), rebuilt, last_only=True
            )
            ring_gap.append(float((ring_logits[0] - reference).abs().max()))
            window_gap.append(float((rebuilt_logits[0] - reference).abs().max()))
        for j in range(5):
            model.extend(codec.action_batch(torch.from_numpy(ids[t : t + 1, j]), j), ring)

fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot(steps, ring_gap, color=PALETTE[6], label="ring (Transformer-XL memory)")
ax.plot(steps, window_gap, color=PALETTE[5], label="rebuilt window")
ax.set_xlabel("episode step")
ax.set_ylabel("max |logit difference|")
ax.set_yscale("symlog", linthresh=1e-4)
ax.legend(fontsize=8)
ax.set_title("first-torque logits vs a fresh pass over the aligned 4-step window")
save_figure(fig, "07_memory")
plt.show();
assert max(window_gap) < 1e-3, max(window_gap)
print(
    f"ring: up to {max(ring_gap):.1f} apart once it wraps (step {steps[int(np.argmax(ring_gap))]}); "
    f"rebuilt window: at most {max(window_gap):.0e}"
)

# %% [markdown]
# ## A short rollout
#
# The agent plays 150 steps of one episode from the same start, with its default prompt and
# window memory (MuJoCo renders offscreen). Frames from the rollout:

# %%
# NBVAL_IGNORE_OUTPUT
rollout = agent.rollout(1, num_envs=1, seed=0, max_steps=150, record_frames=150, progress=False)
print(
    f"return over {rollout.lengths[0]} steps: {rollout.returns[0]:.0f} "
    f"(the expert gains about {8366 / 1000 * 150:.0f} in 150 steps)"
)
if rollout.frames:
    picks = np.linspace(0, len(rollout.frames) - 1, 6).round().astype(int)
    fig, axes = plt.subplots(1, 6, figsize=(10, 1.9))
    for ax, index in zip(axes, picks):
        ax.imshow(rollout.frames[index])
        ax.set_title(f"step {index}")
        ax.axis("off")
    plt.show()

# %% [markdown]
# ## Try it: prompt, memory and temperature
#
# Play two short episodes with and without the demonstration, in either memory, at a
# temperature of your choice (0 takes the most likely bin); `prompt_tokens` sets the prompt's
# length (whole timesteps of 24 tokens, at most 72 in window memory). Two short episodes are
# noisy: chapter 08 reads what full evaluations of these settings score.

# %%
# NBVAL_IGNORE_OUTPUT
temperature, steps, prompt_tokens = 1.0, 200, None  # try 0.0 or 0.5, longer episodes, or 24 or 72 prompt tokens
for name, demos, memory in (
    ("with prompt", [demo], "window"),
    ("no prompt", None, "window"),
    ("ring memory", [demo], "ring"),
):
    trial = GatoAgent(
        model, "halfcheetah", demos, prompt_tokens=prompt_tokens if demos else 0, temperature=temperature, memory=memory
    )
    result = trial.rollout(2, num_envs=2, seed=1, max_steps=steps, progress=False)
    print(
        f"{name:12s} ({trial.prompt_steps}-step prompt) returns over {steps} steps: {np.round(result.returns, 1)}, "
        f"{result.steps_per_second:.0f} env-steps/s"
    )
