"""Starting data-parallel training workers on this machine's CPU (what torchrun would start).

    python -m gato_min train ... --processes 2 --threads 1

`train_processes` spawns `processes` workers that join one gloo process group as torchrun
would have them, so the run is exactly the one `torchrun --nproc_per_node=<processes>` makes
and resumes under either. Why: a model this small keeps two threads of one process only partly
busy (every operation is short), while two single-threaded processes each run flat out and
exchange ~5 MB of gradients per step. On 2 cores, `python -m gato_min bench-processes`
measures the cheetah recipe's steps 1.1-1.2x faster this way than in one process with 2
threads (README). The GPU path stays torchrun.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import torch.multiprocessing as mp

from gato_min import distributed
from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings, prepare
from gato_min.envs import TaskSpec, add_task, user_tasks
from gato_min.optim import TrainSettings
from gato_min.runs import RunFolder
from gato_min.train import train


def train_processes(
    config: GatoConfig,
    data: DataSettings,
    settings: TrainSettings,
    out: str | Path,
    processes: int = 2,
    cache=None,
    threads: int = 1,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """`train` as `processes` data-parallel CPU workers (DDP over gloo), each with `threads`
    torch threads; returns the run's summary (its summary.json). The batch is split over the
    workers. Behaviour data is collected here first, so workers only read it, and the tasks a
    user registered are registered in every worker."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("train_processes starts its own workers; under torchrun, call train instead")
    run = (config, data, settings, str(out))
    options = dict(cache=cache, device="cpu", threads=threads, progress=progress, stop_after=stop_after)
    if processes == 1:
        train(*run, **options)
    else:
        if settings.batch_size % processes:
            raise ValueError(f"batch_size {settings.batch_size} does not split over {processes} processes")
        prepare(data, cache, progress)
        specs = [spec.to_dict() for spec in user_tasks()]
        try:
            with distributed.local_rendezvous() as rendezvous:
                mp.start_processes(
                    _worker,
                    args=(processes, rendezvous, specs, run, options, os.getpid()),
                    nprocs=processes,
                    start_method="spawn",
                )
        except mp.ProcessRaisedException as error:  # a worker's own error, e.g. a run folder that holds another run
            kind, _, message = str(error).strip().splitlines()[-1].partition(": ")
            known = {"ValueError": ValueError, "KeyError": KeyError, "FileNotFoundError": FileNotFoundError}
            if kind in known:
                raise known[kind](message) from None
            raise RuntimeError(f"a training worker failed:\n{error}") from None
    return json.loads(RunFolder(out).summary.read_text())


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """End this worker as soon as `parent` is gone (killed, say): a daemon thread watches who the
    parent is, because an orphaned worker would go on training and hold a core for nothing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker(rank: int, world: int, rendezvous: str, specs: list[dict], run: tuple, options: dict, parent: int) -> None:
    """One process of `train_processes`: joins the group as torchrun would have it, registers the
    user's tasks, trains `run` (config, data, settings, out) with `options`, leaves; it ends with
    the process that started it."""
    _exit_with_parent(parent)
    os.environ.update(
        {distributed.INIT_METHOD: rendezvous, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
    )
    for spec in specs:
        add_task(TaskSpec.from_dict(spec))
    try:
        train(*run, **options)
    finally:
        distributed.leave()
