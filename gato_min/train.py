"""The training loop: behaviour data (and text) -> a trained Gato, resumable, on one CPU or many GPUs.

Gato (Reed et al., 2022, Sec. 2.3) trains one transformer on sequences of every task, mixed in
each batch with per-task weights, with a masked next-token loss (text and logged actions
only). This module is that loop and nothing else: the data a run trains on comes from
`gato_min.task_data` (settings: `gato_min.data.training_set.DataSettings`), the optimizer and
schedule from `gato_min.optim`, the folder it writes from `gato_min.runs`.

    python -m gato_min train --tasks halfcheetah --preset cpu-small --steps 2000 --out runs/halfcheetah
    torchrun --nproc_per_node=2 -m gato_min train ...      # the same code, DDP (gloo on CPU, nccl on GPU)
    python -m gato_min train ... --processes 2 --threads 1 # the same as torchrun, started by gato_min (CPU)

Starting a run in a folder that holds one resumes it exactly (same data order, same losses):
the checkpoint holds the model, the optimizer, the step and every random state.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from gato_min import distributed
from gato_min.batch import batches_by_length
from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings
from gato_min.files import atomic_save_safetensors, atomic_torch_save, atomic_write_json
from gato_min.model import GatoModel, LossModule
from gato_min.optim import TrainSettings, learning_rate, make_optimizer
from gato_min.plotting import plot_learning_curve
from gato_min.runs import RunFolder, fingerprint, load_weights, read_checkpoint
from gato_min.task_data import heldout_losses, load_task_data


@dataclass
class TrainResult:
    model: GatoModel  # this process's model (identical on every process under DDP)
    summary: dict  # what summary.json holds (empty on processes other than rank 0)
    rank: int = 0
    world_size: int = 1


def _random_state(samplers: dict, mixer: np.random.Generator) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(
            {"mixer": mixer.bit_generator.state} | {task: s.rng.bit_generator.state for task, s in samplers.items()}
        ),
    }


def _restore_random_state(state: dict, samplers: dict, mixer: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy_states = json.loads(state["numpy"])
    mixer.bit_generator.state = numpy_states["mixer"]
    for task, sampler in samplers.items():
        sampler.rng.bit_generator.state = numpy_states[task]


def _save_checkpoint(
    run: RunFolder, model, optimizer, step: int, elapsed: float, world: int, rank: int, random_state: dict, stamp: dict
) -> None:
    states = distributed.gather(random_state, world)
    if rank == 0:
        model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save(
            {
                "model": model_state,
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "world_size": world,
                "random": states,
                "fingerprint": stamp,
            },
            run.checkpoint,
        )
        atomic_save_safetensors(
            model_state, run.weights, {"step": str(step), "elapsed_s": f"{elapsed:.1f}", "format": "gato_min"} | stamp
        )


def accumulate_gradients(step_fn, parts: list, device, world: int) -> torch.Tensor:
    """Gradients of the mean loss over every counted token of `parts` (batches of different window
    lengths, one forward each), accumulated in the parameters' .grad (cleared first); under DDP
    only the last backward synchronizes. Returns the loss (detached). A single part is exactly
    the plain step: its loss, weighted by 1."""
    counted = [part.counted_tokens for part in parts]
    total = sum(counted)
    step_fn.zero_grad(set_to_none=True)
    loss = torch.zeros((), device=device)
    for index, (part, count) in enumerate(zip(parts, counted)):
        last = index == len(parts) - 1
        with nullcontext() if last or world == 1 else step_fn.no_sync():
            part_loss = step_fn(part.to(device)) * (count / total)
            part_loss.backward()
        loss += part_loss.detach()
    return loss


def train(
    config: GatoConfig,
    data: DataSettings,
    settings: TrainSettings,
    out: str | Path,
    cache=None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run in folder `out` on `data` with `settings`. Works as is under
    torchrun. `threads` sets torch's thread count for the call (given back afterwards);
    `stop_after` ends this call after that many optimizer steps (the run stays resumable)."""
    rank, world, local_rank = distributed.join()
    if settings.batch_size % world:
        raise ValueError(f"batch_size {settings.batch_size} does not split over {world} processes")
    caller_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(
            config,
            data,
            settings,
            RunFolder(out),
            cache,
            distributed.pick_device(device, local_rank),
            progress,
            stop_after,
            rank,
            world,
            local_rank,
        )
    finally:
        torch.set_num_threads(caller_threads)


def _train(config, data, settings, run, cache, device, progress, stop_after, rank, world, local_rank) -> TrainResult:
    resume = distributed.on_rank0(lambda: run.check(config, data, settings), rank, world)

    # data: rank 0 collects what the cache lacks, then every rank reads it
    tasks = {}
    for turn in ((0,), range(1, world)) if world > 1 else ((0,),):
        if rank in turn:
            tasks = {t: load_task_data(t, data, config, cache, progress and rank == 0) for t in data.tasks}
        distributed.barrier(world)
    # only now, with every input checked and the data loaded, is the folder taken: a start that
    # fails on its inputs leaves nothing that would refuse the corrected command
    distributed.on_rank0(lambda: run.write(config, data, settings), rank, world)
    heldout = {t: d.heldout_batches(config, settings.batch_size, settings.eval_batches) for t, d in tasks.items()}
    baselines = {t: d.baseline_losses(heldout[t], config) for t, d in tasks.items()}

    torch.manual_seed(settings.seed)
    model = GatoModel(config).to(device)
    optimizer = make_optimizer(model, settings)
    step_fn = LossModule(model, settings.bin_smoothing)
    if world > 1:
        step_fn = DistributedDataParallel(
            step_fn, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )
    local_batch = settings.batch_size // world
    samplers = {t: d.sampler(config, [settings.seed, rank, i]) for i, (t, d) in enumerate(tasks.items())}
    mixer = np.random.default_rng([settings.seed, rank, 104729])
    torch.manual_seed(settings.seed * 1000 + rank + 1)  # patch-position sampling differs per process

    step, elapsed = 0, 0.0  # elapsed: wall seconds of training over every call that worked on this run
    if resume:
        state = read_checkpoint(run.path, config, data.tasks)
        if state["world_size"] != world:
            raise ValueError(
                f"{run.checkpoint} was written by {state['world_size']} processes; resume it with "
                f"the same number (got {world})"
            )
        load_weights(model, state["model"], run.checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        _restore_random_state(state["random"][rank], samplers, mixer)
        step, elapsed = state["step"], state.get("elapsed_s", 0.0)
    if rank == 0:
        run.truncate_metrics(step)  # rows past the checkpoint (all of them without one) are redone
        info = {t: d.info | {"baseline_loss": round(d.baseline_loss, 4)} for t, d in tasks.items()}
        print(
            f"gato_min train: {model.num_parameters():,} parameters, {world} process(es) on {device}, "
            + ("resuming at step " + str(step) if step else "new run")
            + f" -> {run.path}\n  data: {json.dumps(info)}"
        )

    weights = data.task_weights
    stamp = fingerprint(config, data.tasks)
    last = settings.steps if stop_after is None else min(settings.steps, step + stop_after)
    bar = tqdm(total=settings.steps, initial=step, desc="train", disable=not progress or rank != 0, unit="step")
    window_loss, window_tokens, window_steps, window_start = torch.zeros((), device=device), 0, 0, time.perf_counter()
    model.train()
    while step < last:
        step += 1
        lr = learning_rate(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        counts = mixer.multinomial(local_batch, weights)
        parts = batches_by_length([samplers[t].sample(int(n)) for t, n in zip(tasks, counts) if n])
        loss = accumulate_gradients(step_fn, parts, device, world)
        window_tokens += sum(int(part.attention_mask.sum()) for part in parts)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        window_loss += loss
        window_steps += 1
        bar.update(1)

        if step % settings.log_every == 0 or step == last:
            mean_loss = distributed.mean_over_processes(window_loss / window_steps, world)
            window_s = time.perf_counter() - window_start
            elapsed += window_s
            row = {
                "step": step,
                "loss": round(mean_loss, 6),
                "lr": lr,
                "grad_norm": round(float(grad_norm), 4),
                "tokens_per_s": round(window_tokens * world / window_s, 1),
                "elapsed_s": round(elapsed, 1),
            }
            window_loss, window_tokens, window_steps, window_start = (
                torch.zeros((), device=device),
                0,
                0,
                time.perf_counter(),
            )
            if rank == 0:
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.1e}")
                if step % settings.eval_every == 0 or step == settings.steps:
                    row["heldout"] = {t: round(v, 6) for t, v in heldout_losses(model, heldout, device).items()}
                    row["baseline"] = {t: round(v, 6) for t, v in baselines.items()}
                with open(run.metrics, "a") as file:
                    file.write(json.dumps(row) + "\n")
            if step % settings.checkpoint_every == 0 or step == last:
                _save_checkpoint(
                    run, model, optimizer, step, elapsed, world, rank, _random_state(samplers, mixer), stamp
                )
    bar.close()

    summary = {}
    if rank == 0:
        rows = run.rows()
        plot_learning_curve(rows, run.curve)
        evaluations = [r for r in rows if "heldout" in r]
        summary = {
            "step": step,
            "steps": settings.steps,
            "parameters": model.num_parameters(),
            "final_loss": rows[-1]["loss"] if rows else None,
            "heldout": evaluations[-1]["heldout"] if evaluations else None,
            "baseline": baselines,
            "data": {t: d.info for t, d in tasks.items()},
        }
        atomic_write_json(run.summary, summary)
    distributed.barrier(world)
    return TrainResult(model, summary, rank, world)
