"""Acting and collection beside another busy job: `python -m gato_min bench-busy`.

Acting feeds a few rows at a time (10 environments, one token or one observation per call) and
collection runs a small MLP on a few observations: operations too short to split well over
threads. Beside another job that keeps the cores busy, torch's threads then wait on each other
and the work slows down several times over (`make demo` beside a 2-thread job: collection 818 s
against 52 s alone). This benchmark times both at 1 and 2 torch threads, alone and beside a
process that keeps 2 threads busy, alternately; its figures chose `threads=1` as the default of
`GatoAgent.rollout`, `collect` and `evaluate` (README, "Acting and evaluation").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from gato_min.agent import GatoAgent
from gato_min.data.collect import collect
from gato_min.model import GatoModel

# the other job: matrix products on OMP_NUM_THREADS threads, until it is killed
_LOAD = "import torch\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a)"


def bench_busy(
    config,
    rounds: int = 2,
    load_threads: int = 2,
    task: str = "halfcheetah",
    act_steps: int = 100,
    collect_steps: int = 300,
) -> list[dict]:
    """Acting (10 environments x `act_steps` steps of an untrained `config` model) and expert
    collection (4 environments x `collect_steps` steps) at 1 and 2 torch threads, alone and
    beside a process that keeps `load_threads` threads busy with matrix products; `rounds`
    alternations of each."""
    torch.manual_seed(0)
    agent = GatoAgent(GatoModel(config).eval(), task, [], prompt_tokens=0, temperature=0.0)
    rows = []
    for busy in (False, True):
        load = None
        if busy:  # (spawned as a plain interpreter: nothing of this process is shared with it)
            env = {**os.environ, "OMP_NUM_THREADS": str(load_threads)}
            load = subprocess.Popen([sys.executable, "-c", _LOAD], env=env)
            time.sleep(1.0)
        try:
            for _ in range(rounds):
                for threads in (1, 2):
                    start = time.perf_counter()
                    rollout = agent.rollout(10, num_envs=10, max_steps=act_steps, progress=False, threads=threads)
                    acting = rollout.env_steps / (time.perf_counter() - start)
                    start = time.perf_counter()
                    data = collect(
                        task, "expert", 4, num_envs=4, progress=False, max_episode_steps=collect_steps, threads=threads
                    )
                    collecting = data.attrs["steps"] / (time.perf_counter() - start)
                    rows.append(
                        {"busy": busy, "threads": threads, "act_steps_per_s": acting, "collect_steps_per_s": collecting}
                    )
        finally:
            if load is not None:
                load.kill()
                load.wait()
    return rows
