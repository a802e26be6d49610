"""Benchmarks that print figures measured side by side in one run (never timed assertions).

    python -m gato_min bench-batches --preset cpu-small

compares how many tokens per second batch assembly produces on one core with how many a
training step of the model consumes, for a MuJoCo layout (HalfCheetah) and an Atari layout
(Pong), on episodes collected from the random policy.
"""

from __future__ import annotations

import time

import torch

from gato_min.data.collect import collect
from gato_min.model import GatoModel
from gato_min.sequence import SequenceSampler, TokenizedEpisodes
from gato_min.tokenize import Tokenizer


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_batches(config, batch_size: int = 8, repeats: int = 5, train_threads: int | None = None) -> list[dict]:
    """Rows of {task, assembly tokens/s (1 thread), training tokens/s, ratio}."""
    tokenizer = Tokenizer(config)
    rows = []
    for task in ("halfcheetah", "pong"):
        episodes = collect(task, "random", 4, seed=0, progress=False, max_episode_steps=400)
        sampler = SequenceSampler(TokenizedEpisodes(episodes, tokenizer, task), config, seed=0)
        tokens = batch_size * config.context_length
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batch assembly is numpy; keep it on one core
        assembly_s = _timed(lambda: sampler.sample(batch_size), repeats * 4)
        torch.set_num_threads(train_threads or threads)
        model = GatoModel(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = sampler.sample(batch_size)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            optimizer.step()

        step_s = _timed(step, repeats)
        torch.set_num_threads(threads)
        rows.append({"task": task, "assembly_tokens_per_s": tokens / assembly_s,
                     "train_tokens_per_s": tokens / step_s, "ratio": step_s / assembly_s,
                     "threads": train_threads or threads})
    return rows
