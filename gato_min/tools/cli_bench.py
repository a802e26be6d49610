"""The benchmark commands of `python -m gato_min`: each prints figures measured side by side in
one run (`gato_min.tools.benchmarks`), never a timed assertion."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.files import atomic_write_json
from gato_min.tools.bench_busy import bench_busy
from gato_min.tools.bench_learn import CONTENDERS, bench_learn
from gato_min.tools.bench_pixels import bench_pixel_acting, bench_pixels
from gato_min.tools.bench_scale import bench_scale, worker_memory_gib
from gato_min.tools.benchmarks import bench_act, bench_batches, bench_processes, bench_train


def _bench_collect(args) -> int:
    print(f"collection speed, {args.task}/{args.tier}, {args.episodes} episodes per run")
    print(f"{'envs':>5s} {'steps':>8s} {'seconds':>8s} {'steps/s':>8s}")
    for num_envs in args.num_envs:
        data = collect(args.task, args.tier, args.episodes, seed=0, num_envs=num_envs, progress=False)
        steps, seconds = data.attrs["steps"], data.attrs["seconds"]
        print(f"{num_envs:5d} {steps:8d} {seconds:8.2f} {steps / seconds:8.0f}")
    return 0


def _bench_batches(args) -> int:
    config = GatoConfig.from_preset(args.preset)
    print(
        f"batch assembly (1 thread) vs a training step of {args.preset} ({args.batch_size} x "
        f"{config.context_length} tokens)"
    )
    print(f"{'task':12s} {'assembly tok/s':>15s} {'training tok/s':>15s} {'threads':>8s} {'ratio':>7s}")
    for row in bench_batches(config, args.batch_size, args.repeats, args.threads):
        print(
            f"{row['task']:12s} {row['assembly_tokens_per_s']:15,.0f} {row['train_tokens_per_s']:15,.0f} "
            f"{row['threads']:8d} {row['ratio']:6.1f}x"
        )
    return 0


def _bench_train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = GatoConfig.from_preset(args.preset)
    result = bench_train(config, args.batch_size, args.repeats, args.task)
    print(
        f"training step, {args.preset}, {args.batch_size} x {config.context_length} tokens of {args.task}, "
        f"{result['threads']} threads, the three timed alternately; "
        f"float32 matmul peak {result['peak_flops'] / 1e9:.1f} GFLOP/s"
    )
    print(f"{'model':13s} {'parameters':>11s} {'s/step':>8s} {'tokens/s':>10s} {'GFLOP/step':>11s} {'MFU':>6s}")
    for name, row in result["rows"].items():
        print(
            f"{name:13s} {result['parameters'][name]:11,d} {row['step_s']:8.3f} {row['tokens_per_s']:10,.0f} "
            f"{row['flops_per_step'] / 1e9:11.1f} {row['mfu']:6.1%}"
        )
    print("(gpt2: the LM head at every position; gato_min and gpt2-counted: only where the next token is counted)")
    print(f"gato_min / gpt2 (headline, GPT-2 with its full head):       {result['speedup']:.2f}x")
    print(f"gato_min / gpt2-counted (the same work, head where counted): {result['same_work_speedup']:.2f}x")
    return 0


def _bench_processes(args) -> int:
    config = GatoConfig.from_preset(
        args.preset, **({"context_length": args.context_length} if args.context_length else {})
    )
    result = bench_processes(config, args.batch_size, args.steps, args.processes, args.rounds, args.task)
    p = result["processes"]
    print(
        f"training step, {args.preset}, {args.batch_size} x {config.context_length} tokens of {args.task}, "
        f"{args.steps} steps x {args.rounds} rounds each, alternately"
    )
    print(f"{'':26s} {'s/step':>8s} {'tokens/s':>10s}")
    for name, label in (("threads", f"1 process x {p} threads"), ("processes", f"{p} processes x 1 thread")):
        row = result["rows"][name]
        print(f"{label:26s} {row['step_s']:8.3f} {row['tokens_per_s']:10,.0f}")
    print(f"processes / threads throughput: {result['ratio']:.2f}x")
    return 0


def _bench_act(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = GatoConfig.from_preset(args.preset)
    result = bench_act(config, args.task, args.repeats, tuple(args.envs), args.episode_steps)
    print(
        f"acting, {args.preset}, {args.task}, full context of {result['context_length']} tokens, "
        f"{result['threads']} threads"
    )
    print(
        f"per action token: cached {result['cached_s'] * 1e3:.2f} ms, recomputing the context "
        f"{result['recomputed_s'] * 1e3:.2f} ms: {result['speedup']:.1f}x faster with the cache "
        f"({result['action_tokens']} action tokens per step)"
    )
    for row in result["rollouts"]:
        print(
            f"batched rollout, {row['envs']:3d} envs: {row['env_steps_per_s']:8,.0f} env-steps/s "
            f"({row['env_steps']} steps in {row['seconds']:.1f} s)"
        )
    return 0


def _bench_pixels(args) -> int:
    from gato_min.tools.demo import demo_config

    torch.set_num_threads(args.threads)
    config = demo_config(args.task) if args.preset is None else GatoConfig.from_preset(args.preset)
    name = f"the demo's {args.task} recipe" if args.preset is None else args.preset
    if args.patch_channels:
        config = config.replace(patch_channels=args.patch_channels, patch_groups=min(8, args.patch_channels))
        name += f" with a {args.patch_channels}-channel patch block"
    train = bench_pixels(config, args.task, args.batch_size, args.repeats)
    print(
        f"one training step of {name}: {train['batch_size']} windows x {train['context_length']} tokens "
        f"({train['patches']:,} patches), {train['threads']} thread(s); each stage alone, forward + backward"
    )
    whole = train["seconds"]["whole step"]
    for stage, seconds in train["seconds"].items():
        share = "" if stage == "whole step" else f"{seconds / whole:7.0%}"
        print(f"  {stage:36s} {seconds * 1e3:9.1f} ms {share}")
    print(f"  training tokens/s: {train['tokens_per_s']:,.0f}")
    act = bench_pixel_acting(config, args.task, args.envs, args.episode_steps)
    print(
        f"acting: {act['envs']} games in lockstep, {act['env_steps']} env-steps in {act['seconds']:.1f} s = "
        f"{act['env_steps_per_s']:,.0f} env-steps/s; time by stage"
    )
    spent = act["spent"] | {
        "the rest (making the envs, the loop in Python)": act["seconds"] - sum(act["spent"].values())
    }
    for stage, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {stage:36s} {seconds:7.2f} s {seconds / act['seconds']:7.0%}")
    return 0


def _state_copy(args) -> int:
    from gato_min.data.state_copy import state_copy_experiment

    if args.last_moment and args.task != "breakout":
        raise ValueError(f"--last-moment picks Breakout's former player; the {args.task} player has one version")
    player = {"early": False} if args.last_moment else None
    rows = state_copy_experiment(
        args.task, args.games, args.dagger, args.eval_games, args.epsilon, args.fit_steps, args.max_steps, player=player
    )
    who = "the last-moment scripted expert" if args.last_moment else "the scripted expert"
    print(f"{args.task}: an MLP copy of {who} from the true state (RAM), temperature 1")
    print(f"{'fit':>4s} {'states':>8s} {'loss':>7s} {'marginal':>9s}  returns of games from seed 1000")
    for row in rows:
        label = "DART" if row["round"] == 0 else f"DAgger {row['round']}"
        print(
            f"{label:>9s} {row['labelled_states']:8,d} {row['probe_loss']:7.3f} {row['marginal_loss']:9.3f}  "
            + " ".join(f"{r:+.0f}" for r in row["returns"])
        )
    if args.out:
        atomic_write_json(Path(args.out), {"settings": vars(args) | {"func": None}, "rows": rows})
        print(f"-> {args.out}")
    return 0


def _bench_busy(args) -> int:
    rows = bench_busy(GatoConfig.from_preset(args.preset, context_length=96), args.rounds, args.load_threads)
    print(
        f"acting (10 envs x 100 steps, {args.preset}) and expert collection (4 envs x 300 steps), "
        f"alone and beside a {args.load_threads}-thread load, alternately"
    )
    print(f"{'':24s} {'threads':>7s} {'act env-steps/s':>16s} {'collect steps/s':>16s}")
    for row in rows:
        label = f"beside a {args.load_threads}-thread load" if row["busy"] else "alone"
        print(f"{label:24s} {row['threads']:7d} {row['act_steps_per_s']:16,.0f} {row['collect_steps_per_s']:16,.0f}")
    return 0


def _bench_learn(args) -> int:
    bench_learn(
        args.task,
        tuple(args.minutes),
        tuple(args.contenders),
        args.out,
        args.episodes,
        args.seed,
        args.processes,
        args.cache,
        not args.no_progress,
    )
    return 0


def _bench_scale(args) -> int:
    result = bench_scale(args.preset, args.batch_sizes, args.task, args.repeats, args.threads)
    print(
        f"one training step of {args.preset} ({result['parameters']:,} parameters, {result['context_length']}-token "
        f"windows of {args.task}), {args.threads} threads, each batch size in a fresh process"
    )
    print(f"{'batch':>5s} {'s/step':>8s} {'tokens/s':>9s} {'GFLOP/step':>11s} {'peak memory':>12s}")
    for row in result["rows"]:
        print(
            f"{row['batch_size']:5d} {row['step_s']:8.2f} {row['tokens_per_s']:9,.0f} "
            f"{row['flops_per_step'] / 1e9:11,.0f} {row['peak_rss_bytes'] / 2**30:9.2f} GiB"
        )
    print(
        f"state (weights, gradients, AdamW moments): {result['state_bytes'] / 2**30:.2f} GiB; each further "
        f"sequence: {result['activation_bytes_per_sequence'] / 2**30:.2f} GiB"
    )
    for per_worker in (8, 32, 64):
        print(f"  a worker with {per_worker} sequences: about {worker_memory_gib(result, per_worker):.0f} GiB")
    if args.out:
        atomic_write_json(Path(args.out) / "scale.json", result)
        print(f"-> {args.out}/scale.json")
    return 0


def add_bench_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add bench-collect, bench-batches, bench-train, bench-processes, bench-act, bench-pixels,
    state-copy, bench-busy, bench-learn and bench-scale to `sub`."""
    p = sub.add_parser(
        "bench-scale", parents=[common], help="cost and memory of one training step of a paper-size preset"
    )
    p.add_argument("--preset", default="gato-79m")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2], help="sequences per step, one process each")
    p.add_argument("--task", default="pong", help="whose windows fill the context")
    p.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for scale.json")
    p.set_defaults(func=_bench_scale)

    p = sub.add_parser(
        "bench-collect", parents=[common], help="measure collection speed (steps/s) for several numbers of envs"
    )
    p.add_argument("--task", default="hopper", help="a task")
    p.add_argument("--tier", default="expert")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 8])
    p.set_defaults(func=_bench_collect)

    p = sub.add_parser(
        "bench-batches", parents=[common], help="batch assembly tokens/s (1 core) vs what a training step consumes"
    )
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the training step (default: all)")
    p.set_defaults(func=_bench_batches)

    p = sub.add_parser(
        "bench-train",
        parents=[common],
        help="training tokens/s and MFU of gato_min vs a same-shape Hugging Face GPT-2, full and counted head",
    )
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--task", default="halfcheetah")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=_bench_train)

    p = sub.add_parser(
        "bench-processes",
        parents=[common],
        help="training tokens/s: one process with P threads vs P one-thread DDP workers",
    )
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--context-length", type=int, default=None, help="override the preset's context length")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--task", default="halfcheetah")
    p.set_defaults(func=_bench_processes)

    p = sub.add_parser(
        "bench-act", parents=[common], help="per-action latency with vs without the key/value cache; env-steps/s"
    )
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--task", default="halfcheetah")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--envs", nargs="+", type=int, default=[1, 8], help="batch sizes of the rollouts")
    p.add_argument("--episode-steps", type=int, default=200, help="steps per rollout episode")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_bench_act)

    p = sub.add_parser(
        "bench-pixels",
        parents=[common],
        help="where an Atari training step and an acting step spend their time, stage by stage",
    )
    p.add_argument("--task", default="pong", help="an Atari task")
    p.add_argument("--preset", default=None, help="a model preset (default: the demo's recipe for --task)")
    p.add_argument("--patch-channels", type=int, default=None, help="override the patch block's channels")
    p.add_argument("--batch-size", type=int, default=32, help="windows per step (the recipe's per process: 32)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--envs", type=int, default=8, help="games played at once")
    p.add_argument("--episode-steps", type=int, default=200, help="steps per game")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as one training worker)")
    p.set_defaults(func=_bench_pixels)

    p = sub.add_parser(
        "state-copy",
        parents=[common],
        help="can the scripted Atari expert be copied? an MLP from the true (RAM) state, DART then DAgger",
    )
    p.add_argument("--task", default="pong", help="pong or breakout")
    p.add_argument("--games", type=int, default=3, help="games collected per round")
    p.add_argument("--dagger", type=int, default=0, help="DAgger rounds after the DART fit")
    p.add_argument("--eval-games", type=int, default=3, help="games the copy plays after each fit")
    p.add_argument("--epsilon", type=float, default=0.2, help="chance of a random button in the DART games")
    p.add_argument("--fit-steps", type=int, default=3000, help="optimizer steps of each fit")
    p.add_argument("--max-steps", type=int, default=6000, help="steps at most per game")
    p.add_argument(
        "--last-moment", action="store_true", help="Breakout: copy the former player, which pushes at the last moment"
    )
    p.add_argument("--out", default=None, help="write the rows to this JSON file")
    p.set_defaults(func=_state_copy)

    p = sub.add_parser(
        "bench-busy",
        parents=[common],
        help="acting and collection speed at 1 and 2 threads, alone and beside another busy process",
    )
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--load-threads", type=int, default=2, help="threads the other process keeps busy")
    p.set_defaults(func=_bench_busy)

    p = sub.add_parser(
        "bench-learn",
        parents=[common],
        help="score in the real environment against minutes of training: gato_min's settings, a Decision "
        "Transformer and an MLP on the same data",
    )
    p.add_argument("--task", default="halfcheetah", help="a MuJoCo task")
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10, 15], help="training budgets")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    p.add_argument("--out", default="runs/bench-learn", help="folder for the runs, bench_learn.json and the plot")
    p.add_argument("--episodes", type=int, default=10, help="episodes scored per contender and budget")
    p.add_argument("--seed", type=int, default=1000, help="episode i starts from seed + i")
    p.add_argument("--processes", type=int, default=2, help="gato_min's training processes (and threads of peers)")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_bench_learn)
