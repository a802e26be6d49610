"""What one training step of a paper-size Gato costs, measured on this machine.

    python -m gato_min bench-scale --preset gato-79m --batch-sizes 1 2 --out results/generalist-scale

The CPU recipes train models of 0.7M parameters; the paper's smallest is 79M (App. C.1). This
measures one full training step (forward, backward, AdamW) of a preset at its own 1,024-token
context on windows of a real task, for a few batch sizes, each in a fresh process so that its
peak resident memory is its own. From those it derives what a GPU user needs to know before
typing the torchrun command: the memory every worker holds whatever its batch (weights, gradients
and AdamW's two moments: 16 bytes a parameter, in float32), the memory each further sequence adds
(the slope of peak memory against batch size: the activations kept for the backward pass), and
the matrix FLOPs of a step (`benchmarks.train_flops_per_step`).
"""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
import torch.multiprocessing as mp

from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.distributed import torch_threads
from gato_min.envs import get_task
from gato_min.model import GatoModel
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
from gato_min.tokenize import Tokenizer
from gato_min.tools.benchmarks import train_flops_per_step

STATE_BYTES_PER_PARAMETER = 16  # float32 weights, gradients and AdamW's two moments


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _measure(preset: str, batch_size: int, task: str, repeats: int, threads: int, queue) -> None:
    with torch_threads(threads):
        queue.put(_step_cost(preset, batch_size, task, repeats))


def _step_cost(preset: str, batch_size: int, task: str, repeats: int) -> dict:
    config = GatoConfig.from_preset(preset)
    episodes = collect(task, "random", 2, seed=0, progress=False)
    sampler = SequenceSampler(TokenizedEpisodes(episodes, Tokenizer(config), task, get_task(task)), config, seed=0)
    batches = [sampler.sample(batch_size) for _ in range(repeats + 1)]
    del episodes
    torch.manual_seed(0)
    model = GatoModel(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = _peak_rss_bytes()
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    counted = int((batches[0].loss_mask[:, 1:] & batches[0].attention_mask[:, 1:]).sum())
    return {
        "batch_size": batch_size,
        "step_s": float(np.mean(seconds[1:])),  # the first step warms up
        "tokens_per_s": batch_size * config.context_length / float(np.mean(seconds[1:])),
        "peak_rss_bytes": _peak_rss_bytes(),
        "rss_before_steps_bytes": before,
        "flops_per_step": train_flops_per_step(config, batches[0], counted),
        "parameters": model.num_parameters(),
    }


def bench_scale(
    preset: str = "gato-79m", batch_sizes=(1, 2), task: str = "pong", repeats: int = 2, threads: int = 2
) -> dict:
    """Measure a training step of `preset` at each of `batch_sizes` (sequences of its context
    length, `task`'s windows), one fresh process each; returns the rows and what they imply."""
    batch_sizes = sorted(set(batch_sizes))
    if len(batch_sizes) < 2 or batch_sizes[0] < 1:
        raise ValueError(f"batch_sizes: give at least two distinct positive sizes, got {batch_sizes}")
    GatoConfig.from_preset(preset)  # an unknown preset fails here, not in a worker
    context = mp.get_context("spawn")
    rows = []
    for batch_size in batch_sizes:
        queue = context.Queue()
        worker = context.Process(target=_measure, args=(preset, batch_size, task, repeats, threads, queue))
        worker.start()
        rows.append(queue.get())
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"the measurement of batch size {batch_size} failed (exit code {worker.exitcode})")
    sizes = np.array([r["batch_size"] for r in rows], dtype=np.float64)
    peaks = np.array([r["peak_rss_bytes"] for r in rows], dtype=np.float64)
    per_sequence = float(np.polyfit(sizes, peaks, 1)[0])
    parameters = rows[0]["parameters"]
    config = GatoConfig.from_preset(preset)
    return {
        "preset": preset,
        "task": task,
        "context_length": config.context_length,
        "threads": threads,
        "parameters": parameters,
        "rows": rows,
        "state_bytes": STATE_BYTES_PER_PARAMETER * parameters,
        "activation_bytes_per_sequence": per_sequence,
        "flops_per_sequence": rows[0]["flops_per_step"] / rows[0]["batch_size"],
    }


def worker_memory_gib(result: dict, sequences_per_worker: int) -> float:
    """Expected memory of one training worker holding `sequences_per_worker` sequences: the state
    plus the measured activations per sequence (float32, no activation checkpointing)."""
    if not isinstance(sequences_per_worker, int) or sequences_per_worker < 1:
        raise ValueError(f"sequences_per_worker must be a positive int, got {sequences_per_worker!r}")
    return (result["state_bytes"] + sequences_per_worker * result["activation_bytes_per_sequence"]) / 2**30
