"""Benchmarks that print figures measured side by side in one run (never timed assertions).

    python -m gato_min bench-batches --preset cpu-small

compares how many tokens per second batch assembly produces on one core with how many a
training step of the model consumes, for a MuJoCo layout (HalfCheetah) and an Atari layout
(Pong), on episodes collected from the random policy.

    python -m gato_min bench-train --preset cpu-small --threads 2

times training steps of gato_min and of a Hugging Face `transformers` GPT-2 of the same width,
depth, heads, feed-forward size and vocabulary on identical batches, alternately in one run,
and prints tokens/s and MFU against the float32 matmul peak measured in the same run; a third
row, the same GPT-2 with its head only where a token is counted (as gato_min), separates the
head skipped from the rest.

    python -m gato_min bench-processes --preset cpu-small --context-length 96 --batch-size 64

times the same training steps (the same sequences) in one process with P threads and in P
data-parallel worker processes of one thread each (`train --processes P`), alternately.

    python -m gato_min bench-act --preset cpu-small --threads 2

times one sampled action token at a full context with the key/value cache against a forward
pass over the whole context, and the env-steps/s of batched rollouts.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gato_min.agent import GatoAgent
from gato_min.batch import concat_batches
from gato_min.codec import TaskCodec
from gato_min.data.collect import collect
from gato_min.distributed import local_rendezvous
from gato_min.envs import get_task
from gato_min.model import GatoModel, KVCache, LossModule
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
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
        sampler = SequenceSampler(TokenizedEpisodes(episodes, tokenizer, task, get_task(task)), config, seed=0)
        rows.append({"task": task} | _assembly_and_step(sampler, config, batch_size, repeats, train_threads))
    return rows


def _assembly_and_step(sampler, config, batch_size: int, repeats: int, train_threads: int | None) -> dict:
    """Tokens/s of assembling batches on one thread and of training steps on them."""
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
    return {
        "assembly_tokens_per_s": tokens / assembly_s,
        "train_tokens_per_s": tokens / step_s,
        "ratio": step_s / assembly_s,
        "threads": train_threads or threads,
    }


# ------------------------------------------------------------------ training throughput vs GPT-2


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """The FLOP/s of a large float32 matrix product on this machine with the current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = _timed(lambda: torch.mm(a, b), repeats)
    return 2.0 * size**3 / seconds


def train_flops_per_step(config, batch, head_positions: int) -> float:
    """Matrix-multiply FLOPs of one training step (forward + backward = 3x forward).

    Per token and layer: the qkv, output and feed-forward matrices (2 FLOPs per weight) and
    causal attention (scores and weighted sum over t keys for the t-th token); the output head
    at `head_positions` positions; patch embeddings are left out (none for MuJoCo tasks)."""
    batch_size, length = batch.token_ids.shape
    d, inner = config.d_model, config.n_head * config.d_head
    ff_matrices = 3 if config.feedforward == "geglu" else 2
    weights_per_layer = d * 3 * inner + inner * d + ff_matrices * d * config.d_ff
    keys_per_token = (length + 1) / 2  # causal: token t attends to t keys
    per_token = config.n_layer * (2 * weights_per_layer + 2 * 2 * inner * keys_per_token)
    forward = batch_size * length * per_token + head_positions * 2 * d * config.vocab.size
    return 3.0 * forward


def _gpt2_for(config):
    """A Hugging Face GPT-2 of the same width, depth, heads, feed-forward size, vocabulary and context."""
    import transformers  # an optional extra ([bench]), needed only by bench-train
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()  # (it warns about GPT-2's own bos/eos ids, unused here)
    if config.n_head * config.d_head != config.d_model:
        raise ValueError("GPT-2 needs n_head * d_head == d_model to compare like with like")
    hf_config = GPT2Config(
        vocab_size=config.vocab.size,
        n_positions=config.context_length,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.d_ff,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    return GPT2LMHeadModel(hf_config)


def _gpt2_loss(model, batch) -> torch.Tensor:
    """GPT-2's own loss: the head at every position, the same targets as gato_min (the counted
    tokens); padding sits at the end, so (as for gato_min) the causal mask alone keeps real
    tokens from it and no attention mask is passed."""
    labels = torch.where(batch.loss_mask & batch.attention_mask, batch.token_ids, -100)
    return model(input_ids=batch.token_ids, labels=labels).loss


def _gpt2_counted_loss(model, batch) -> torch.Tensor:
    """The same loss with the head only where a counted token comes next, as gato_min does."""
    hidden = model.transformer(input_ids=batch.token_ids).last_hidden_state
    counted = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
    logits = model.lm_head(hidden[:, :-1][counted])
    return F.cross_entropy(logits.float(), batch.token_ids[:, 1:][counted])


def bench_train(config, batch_size: int = 8, repeats: int = 5, task: str = "halfcheetah") -> dict:
    """Training tokens/s and MFU of gato_min, of a same-shape Hugging Face GPT-2 (head at every
    position) and of that GPT-2 with its head only at the counted positions ("gpt2-counted",
    the work gato_min does), on identical batches, timed alternately in one run.
    MFU = model FLOP/s / measured float32 matmul peak."""
    tokenizer = Tokenizer(config)
    episodes = collect(task, "random", 4, seed=0, progress=False)
    sampler = SequenceSampler(TokenizedEpisodes(episodes, tokenizer, task, get_task(task)), config, seed=0)
    batches = [sampler.sample(batch_size) for _ in range(repeats + 1)]
    torch.manual_seed(0)
    gato = GatoModel(config).train()
    gpt2 = _gpt2_for(config).train()
    gpt2_counted = _gpt2_for(config).train()
    gpt2_counted.load_state_dict(gpt2.state_dict())  # the same weights to start from
    contenders = {
        "gato_min": (gato, lambda batch: gato.loss(batch)),
        "gpt2": (gpt2, lambda batch: _gpt2_loss(gpt2, batch)),
        "gpt2-counted": (gpt2_counted, lambda batch: _gpt2_counted_loss(gpt2_counted, batch)),
    }
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in contenders.items()}

    def step(name, batch):
        optimizers[name].zero_grad(set_to_none=True)
        contenders[name][1](batch).backward()
        optimizers[name].step()

    seconds = dict.fromkeys(contenders, 0.0)
    for name in contenders:  # warm-up
        step(name, batches[0])
    for batch in batches[1:]:  # alternate, so that machine noise hits all alike
        for name in contenders:
            start = time.perf_counter()
            step(name, batch)
            seconds[name] += time.perf_counter() - start
    peak = matmul_peak_flops()
    tokens = batch_size * config.context_length
    counted = sum(int((b.loss_mask[:, 1:] & b.attention_mask[:, 1:]).sum()) for b in batches[1:]) / repeats
    head_positions = {"gato_min": counted, "gpt2": tokens, "gpt2-counted": counted}
    rows = {}
    for name in contenders:
        step_s = seconds[name] / repeats
        flops = train_flops_per_step(config, batches[0], head_positions[name])
        rows[name] = {
            "step_s": step_s,
            "tokens_per_s": tokens / step_s,
            "head_positions": head_positions[name],
            "flops_per_step": flops,
            "mfu": flops / step_s / peak,
        }
    return {
        "peak_flops": peak,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "parameters": {name: sum(p.numel() for p in model.parameters()) for name, (model, _) in contenders.items()},
        "rows": rows,
        # the headline: gato_min against GPT-2 as it comes (the head at every position)
        "speedup": rows["gato_min"]["tokens_per_s"] / rows["gpt2"]["tokens_per_s"],
        # the same work: gato_min against GPT-2 with the head only where gato_min computes it
        "same_work_speedup": rows["gato_min"]["tokens_per_s"] / rows["gpt2-counted"]["tokens_per_s"],
    }


def bench_act(
    config, task: str = "halfcheetah", repeats: int = 20, env_counts=(1, 8), episode_steps: int = 200, seed: int = 0
) -> dict:
    """Per-action latency at a full context, with the key/value cache vs recomputing the whole
    context, and env-steps/s of batched rollouts (an untrained model: timing does not depend on
    the weights).

    Cached: one action token fed after `context_length` cached tokens (the ring is full, so
    the new token evicts the oldest). Recomputed: a forward pass over the whole window of
    `context_length` tokens for the logits of its last position, what acting without a cache
    costs per sampled token."""

    torch.manual_seed(seed)
    model = GatoModel(config).eval()
    codec = TaskCodec(task, config)
    episode = collect(
        task,
        "random",
        1,
        seed=seed,
        num_envs=1,
        progress=False,
        max_episode_steps=config.context_length // codec.layout.tokens_per_timestep + 2,
    ).episodes[0]
    data = TokenizedEpisodes([episode], Tokenizer(config), task, get_task(task))
    steps = np.arange(len(episode))[None, :]
    sampler = SequenceSampler(data, config.replace(context_length=len(episode) * codec.layout.tokens_per_timestep))
    full = sampler.batch(steps, np.ones_like(steps, dtype=bool), np.zeros(1, bool), np.zeros(1, bool))
    window = full.window(0, config.context_length)
    new_token = full.window(config.context_length, config.context_length + 1)

    cache = KVCache(config, 1)
    model.extend(window, cache)  # the ring is full
    filled = cache.time

    def cached() -> None:
        cache.time = filled  # the same state every repeat: one token in, the oldest out
        model.extend(new_token, cache, last_only=True)

    def recomputed() -> None:
        with torch.no_grad():
            model.logits(model.hidden_states(window)[:, -1])

    rows = []
    for count in env_counts:
        agent = GatoAgent(model, task, None, temperature=1.0)
        rollout = agent.rollout(count, num_envs=count, seed=seed, max_steps=episode_steps, progress=False)
        rows.append(
            {
                "envs": count,
                "env_steps": rollout.env_steps,
                "seconds": rollout.seconds,
                "env_steps_per_s": rollout.steps_per_second,
            }
        )
    cached_s, recomputed_s = _timed(cached, repeats), _timed(recomputed, repeats)
    return {
        "task": task,
        "context_length": config.context_length,
        "threads": torch.get_num_threads(),
        "cached_s": cached_s,
        "recomputed_s": recomputed_s,
        "speedup": recomputed_s / cached_s,
        "action_tokens": codec.action_tokens,
        "rollouts": rows,
    }


def bench_processes(
    config, batch_size: int = 64, steps: int = 20, processes: int = 2, rounds: int = 2, task: str = "halfcheetah"
) -> dict:
    """Training tokens/s of one process with `processes` threads against `processes` DDP
    workers (gloo) of one thread each, on the same sequences: each worker takes its share of
    every batch. The two are timed alternately, `rounds` times each; starting the workers is
    not timed, only their steps (between two barriers)."""

    if processes < 2 or batch_size % processes:
        raise ValueError(f"processes must be >= 2 and divide batch_size {batch_size}, got {processes}")
    episodes = collect(task, "random", 4, seed=0, progress=False)
    sampler = SequenceSampler(TokenizedEpisodes(episodes, Tokenizer(config), task, get_task(task)), config, seed=0)
    shards = [[sampler.sample(batch_size // processes) for _ in range(processes)] for _ in range(steps + 1)]
    whole = [concat_batches(parts) for parts in shards]
    tokens = batch_size * config.context_length
    seconds = {"threads": 0.0, "processes": 0.0}
    context = mp.get_context("spawn")
    threads_before = torch.get_num_threads()
    for _ in range(rounds):
        torch.set_num_threads(processes)
        torch.manual_seed(0)
        model = LossModule(GatoModel(config).train())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        _loss_step(model, optimizer, whole[0])  # warm-up
        start = time.perf_counter()
        for batch in whole[1:]:
            _loss_step(model, optimizer, batch)
        seconds["threads"] += time.perf_counter() - start

        queue = context.SimpleQueue()
        with local_rendezvous() as rendezvous:
            mp.start_processes(
                _timed_worker,
                args=(processes, rendezvous, config, shards, queue),
                nprocs=processes,
                start_method="spawn",
            )
        seconds["processes"] += queue.get()
    torch.set_num_threads(threads_before)
    rows = {
        name: {"step_s": total / (rounds * steps), "tokens_per_s": tokens * rounds * steps / total}
        for name, total in seconds.items()
    }
    return {
        "processes": processes,
        "tokens_per_step": tokens,
        "rows": rows,
        "ratio": rows["processes"]["tokens_per_s"] / rows["threads"]["tokens_per_s"],
    }


def _loss_step(model, optimizer, batch) -> None:
    """One optimizer step of a module whose forward is the loss (a `LossModule`, maybe under DDP)."""
    optimizer.zero_grad(set_to_none=True)
    model(batch).backward()
    optimizer.step()


def _timed_worker(rank: int, world: int, rendezvous: str, config, shards, queue) -> None:
    """One worker of `bench_processes`: its share of every batch, one thread, DDP over gloo;
    rank 0 reports the seconds of the timed steps."""

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = DistributedDataParallel(LossModule(GatoModel(config).train()), find_unused_parameters=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        _loss_step(model, optimizer, shards[0][rank])  # warm-up
        dist.barrier()
        start = time.perf_counter()
        for parts in shards[1:]:
            _loss_step(model, optimizer, parts[rank])
        dist.barrier()
        if rank == 0:
            queue.put(time.perf_counter() - start)
    finally:
        dist.destroy_process_group()
