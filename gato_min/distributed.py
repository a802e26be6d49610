"""The few collective steps of data-parallel training (PyTorch DDP), and no-ops on one process.

Gato trained on many TPU cores (Sec. 2.3); gato_min scales out with torchrun and
DistributedDataParallel, the existing engine (gloo on CPU, nccl on GPU). On one process every
helper here does nothing, so the training loop reads the same either way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

import torch
import torch.distributed as dist

INIT_METHOD = "GATO_MIN_INIT_METHOD"  # the file:// rendezvous of workers started by gato_min itself


def join() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when torchrun (its environment
    variables) or `gato_min.launch` (a file rendezvous, `INIT_METHOD`) started us."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if os.environ.get(INIT_METHOD):
                rank = int(os.environ["RANK"])
                dist.init_process_group(backend, init_method=os.environ[INIT_METHOD], rank=rank, world_size=world)
            else:
                dist.init_process_group(backend)
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto`: cuda if present, else cpu; a process of a GPU run takes its local rank's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def mean_over_processes(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def on_rank0(function, rank: int, world: int):
    """Run `function` on rank 0 and hand its result, or its error, to every process."""
    if world == 1:
        return function()
    result = [None]
    if rank == 0:
        try:
            result = [function()]
        except Exception as error:  # every process must hear of it, not only rank 0
            result = [error]
    dist.broadcast_object_list(result, src=0)
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def gather(value, world: int) -> list:
    """Every process's `value`, in rank order."""
    if world == 1:
        return [value]
    values = [None] * world
    dist.all_gather_object(values, value)
    return values


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def torch_threads(count: int | None):
    """Run the body with `count` torch intra-op threads (None: as they are), then give the old
    count back. Acting and collection use 1: their batches of a few rows gain little from more,
    and beside another busy job more threads wait on each other (README, "Acting and evaluation")."""
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError(f"threads must be a positive int or None, got {count!r}")
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def local_rendezvous():
    """The init method for workers this process starts: a file in a new temporary folder. Two
    launches never share it, unlike a free TCP port picked here, which another program can take
    between the pick and rank 0's bind (EADDRINUSE on a busy machine). Removed afterwards."""
    folder = tempfile.mkdtemp(prefix="gato_min-rendezvous-")
    try:
        yield f"file://{folder}/store"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
