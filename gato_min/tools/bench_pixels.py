"""Where a training step and an acting step on Atari pixels spend their time, stage by stage.

    python -m gato_min bench-pixels --task pong [--patch-channels 32]

`bench_pixels` times each stage of one training step alone (forward and backward) on the same
batch; `bench_pixel_acting` puts a stopwatch on each stage of a batched rollout. Figures are
printed, never asserted (see `gato_min.tools.benchmarks`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from gato_min.agent import GatoAgent
from gato_min.data.collect import collect
from gato_min.envs import get_task
from gato_min.model import GatoModel
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
from gato_min.tokenize import Tokenizer, cut_patches, normalize_pixels
from gato_min.tools.benchmarks import _timed


def _forward_backward(fn, *inputs) -> None:
    """Run `fn` on `inputs` and back-propagate from the sum of its output (a stage in isolation)."""
    out = fn(*inputs)
    out.float().sum().backward()


def bench_pixels(config, task: str = "pong", batch_size: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """One training step on `task`'s windows taken apart, stage by stage, each stage timed alone
    (forward and backward) on the same batch: cutting frames into patches (done once per frame,
    when the episodes are tokenized), assembling the windows, scaling the pixels, the patch
    block, the position lookups, the transformer, the head with the loss, the optimizer; then
    the whole step. Episodes from the random policy (timing does not depend on the pixels)."""
    torch.manual_seed(seed)
    spec = get_task(task)
    episodes = collect(task, "random", 2, seed=seed, progress=False, max_episode_steps=200)
    frames = np.concatenate([e.observations for e in episodes])
    data = TokenizedEpisodes(episodes, Tokenizer(config), task, spec)
    sampler = SequenceSampler(data, config, seed=seed)
    model = GatoModel(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = sampler.sample(batch_size)
    embedding = model.embedding
    scaled = normalize_pixels(batch.patches, config.patch_size)
    counted = F.pad(batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:], (0, 1))

    embedded = embedding(batch).detach()

    def transformer() -> None:  # the blocks as training runs them: the last one only where the loss reads
        model.ln_f(model._last_block_at(embedded.clone().requires_grad_(True), counted)).sum().backward()

    hidden = model.hidden_states(batch, only=counted).detach()

    def head_and_loss() -> None:
        h = hidden.clone().requires_grad_(True)
        targets = batch.token_ids[:, 1:][counted[:, :-1]]
        F.cross_entropy(model.logits(h).float(), targets).backward()

    def whole_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        optimizer.step()

    whole_step()  # every parameter now has a gradient for the optimizer stage
    batch_frames = frames[np.arange(len(batch.patches) // data.layout.num_patches) % len(frames)]
    stages = {
        "cut frames into patches (at load)": lambda: cut_patches(batch_frames, config.patch_size),
        "assemble windows": lambda: sampler.sample(batch_size),
        "scale pixels": lambda: normalize_pixels(batch.patches, config.patch_size),
        "patch block": lambda: _forward_backward(embedding.patch_block, scaled),
        "patch positions": lambda: _forward_backward(
            embedding.patch_positions, batch.patch_row_ranges, batch.patch_col_ranges
        ),
        "token table + local positions": lambda: _forward_backward(
            lambda: embedding.token_table(batch.token_ids) + embedding.local_positions(batch.local_positions)
        ),
        "transformer": transformer,
        "head + loss": head_and_loss,
        "optimizer": lambda: optimizer.step(),
    }
    times = {name: _timed(fn, repeats) for name, fn in stages.items()}
    times["whole step"] = _timed(whole_step, repeats)
    tokens = int(batch.attention_mask.sum())
    return {
        "task": task,
        "batch_size": batch_size,
        "context_length": config.context_length,
        "patches": len(batch.patches),
        "tokens": tokens,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "tokens_per_s": tokens / times["whole step"],
    }


def bench_pixel_acting(config, task: str = "pong", num_envs: int = 8, steps: int = 200, seed: int = 0) -> dict:
    """Where an acting step of `num_envs` Atari games in lockstep spends its time: the rollout of
    `GatoAgent` (window memory, no prompt, an untrained model) with a stopwatch on each stage:
    the emulator step with the frame shrunk to 80 x 80, the observation's tokens (patches cut),
    the model on them (patch block and transformer, with the cache), the window rebuilds, and
    the button sampling."""
    from gato_min import agent as agent_module

    torch.manual_seed(seed)
    model = GatoModel(config).eval()
    agent = GatoAgent(model, task, None, temperature=1.0)
    spent: dict[str, float] = {}
    running: list[str] = []  # the stage being timed: a stage called inside another counts for the outer one

    def stopwatch(name: str, fn):
        def timed(*args, **kwargs):
            if running:
                return fn(*args, **kwargs)
            running.append(name)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
                running.pop()

        return timed

    def env_fn(name: str, render: bool):
        env = agent_module.episode_env(name, render)
        env.step = stopwatch("emulator step", env.step)
        return env

    agent.codec.observation_batch = stopwatch("observation tokens", agent.codec.observation_batch)
    agent.model.extend = stopwatch("model (with the cache)", agent.model.extend)
    agent._rebuild = stopwatch("window rebuilds", agent._rebuild)
    agent.sample = stopwatch("button sampling", agent.sample)
    preprocess = agent_module.model_observation
    agent_module.model_observation = stopwatch("shrink frame to 80 x 80", preprocess)
    try:
        rollout = agent.rollout(num_envs, num_envs=num_envs, seed=seed, max_steps=steps, env_fn=env_fn, progress=False)
    finally:
        agent_module.model_observation = preprocess
    return {
        "task": task,
        "envs": num_envs,
        "env_steps": rollout.env_steps,
        "seconds": rollout.seconds,
        "env_steps_per_s": rollout.steps_per_second,
        "spent": spent,
    }
