"""The `python -m gato_min` command line: one sub-command per job, each a thin wrapper.

The training flags are built from the settings dataclasses (`gato_min.settings.add_arguments`),
so each is described once, where it is defined. Every sub-command takes `--task-file` to
register a user's own tasks (`gato_min.envs.load_task_file`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from gato_min.config import GatoConfig
from gato_min.data.collect import POLICY_DIR, cache_dir, collect, collect_to_file, policy_file
from gato_min.data.formats import read_d4rl
from gato_min.data.policies import load_policy
from gato_min.data.reference import markdown_table, measure, update_reference_file
from gato_min.data.training_set import DataSettings
from gato_min.envs import TASKS, get_task, load_task_file, resolve_task
from gato_min.evaluate import evaluate_run
from gato_min.launch import train_processes
from gato_min.optim import TrainSettings
from gato_min.plotting import media_dir
from gato_min.settings import add_arguments, from_arguments
from gato_min.tokenize import CORPUS_FILE
from gato_min.tools.benchmarks import bench_act, bench_batches, bench_processes, bench_train
from gato_min.tools.demo import run_demo
from gato_min.tools.experts import export_tiers, plot_training_curve, save_portable_state, train_expert
from gato_min.tools.text_model import refresh_corpus, train_text_model
from gato_min.tools.tokenize_demo import tokenize_demo
from gato_min.train import train


def _cache(args) -> Path:
    return cache_dir(args.cache)


def _train_expert(args) -> int:
    out = args.out or _cache(args) / "experts" / args.task
    train_expert(args.task, out, total_steps=args.steps, seed=args.seed, threads=args.threads,
                 progress=not args.no_progress, resume_from=args.resume_from)
    return 0


def _tokenize(args) -> int:
    report, figure = tokenize_demo(GatoConfig.from_preset(args.preset), args.out, seed=args.seed)
    print(report)
    print(f"\nfigure written to {figure}")
    return 0


def _train_text_model(args) -> int:
    if args.refresh_corpus:
        print(f"collected prose into {refresh_corpus(args.repo)}")
    path = train_text_model(CORPUS_FILE, vocab_size=args.vocab_size)
    print(f"trained {args.vocab_size}-piece SentencePiece model on {CORPUS_FILE} -> {path}")
    return 0


def _save_expert_state(args) -> int:
    run = args.out or _cache(args) / "experts" / args.task
    dest = save_portable_state(run, args.to or Path("experts") / args.task)
    print(f"saved the portable training state of {run} to {dest}")
    return 0


def _collect(args) -> int:
    path = collect_to_file(args.task, args.tier, args.episodes, args.seed, args.num_envs, out=args.out,
                           cache=args.cache, progress=not args.no_progress, action_noise=args.action_noise,
                           record=args.record)
    data = read_d4rl(path)
    returns = data.returns
    print(f"{path}: {len(data)} episodes, {data.num_steps} steps, return {returns.mean():.1f} ± {returns.std():.1f}")
    return 0


def _reference_returns(args) -> int:
    table = measure(args.tasks, args.episodes, args.num_envs, progress=not args.no_progress)
    print(markdown_table(table))
    if not args.dry_run:
        print(f"\nstored in {update_reference_file(table)}")
    return 0


def _bench_collect(args) -> int:
    print(f"collection speed, {args.task}/{args.tier}, {args.episodes} episodes per run")
    print(f"{'envs':>5s} {'steps':>8s} {'seconds':>8s} {'steps/s':>8s}")
    for num_envs in args.num_envs:
        data = collect(args.task, args.tier, args.episodes, seed=0, num_envs=num_envs, progress=False)
        steps, seconds = data.attrs["steps"], data.attrs["seconds"]
        print(f"{num_envs:5d} {steps:8d} {seconds:8.2f} {steps / seconds:8.0f}")
    return 0


def _export_experts(args) -> int:
    for task in args.tasks:
        run = _cache(args) / "experts" / task
        steps = {"medium": args.medium_step} if args.medium_step is not None else None
        for tier, path in export_tiers(run, task, POLICY_DIR, args.tiers, steps).items():
            print(f"{task}/{tier} -> {path}")
        marks = {tier: int(load_policy(policy_file(task, tier))[1]["training_step"])
                 for tier in ("medium", "expert") if policy_file(task, tier).is_file()}
        print(f"curve -> {plot_training_curve(run, task, media_dir() / f'experts_{task}.png', marks)}")
    return 0


def _bench_batches(args) -> int:
    config = GatoConfig.from_preset(args.preset)
    print(f"batch assembly (1 thread) vs a training step of {args.preset} ({args.batch_size} x "
          f"{config.context_length} tokens)")
    print(f"{'task':12s} {'assembly tok/s':>15s} {'training tok/s':>15s} {'threads':>8s} {'ratio':>7s}")
    for row in bench_batches(config, args.batch_size, args.repeats, args.threads):
        print(f"{row['task']:12s} {row['assembly_tokens_per_s']:15,.0f} {row['train_tokens_per_s']:15,.0f} "
              f"{row['threads']:8d} {row['ratio']:6.1f}x")
    return 0


def _train(args) -> int:
    overrides = {"context_length": args.context_length, "action_positions": args.action_positions,
                 "value_init": args.value_init}
    config = GatoConfig.from_preset(args.preset, **{k: v for k, v in overrides.items() if v is not None})
    if args.tasks:
        args.tasks = [resolve_task(name).name if name != "text" else name for name in args.tasks]
    data, settings = from_arguments(DataSettings, args), from_arguments(TrainSettings, args)
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1:
        if args.device not in ("auto", "cpu"):
            raise ValueError("--processes starts CPU workers; on GPUs use torchrun --nproc_per_node=N -m gato_min train")
        summary = train_processes(config, data, settings, args.out, args.processes, cache=args.cache,
                                  threads=args.threads or 1, progress=not args.no_progress, stop_after=args.stop_after)
    else:
        summary = train(config, data, settings, args.out, cache=args.cache, device=args.device, threads=args.threads,
                        progress=not args.no_progress, stop_after=args.stop_after).summary
    if summary:
        print(json.dumps({k: summary[k] for k in ("step", "final_loss", "heldout", "baseline")}))
    return 0


def _bench_train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = GatoConfig.from_preset(args.preset)
    result = bench_train(config, args.batch_size, args.repeats, args.task)
    print(f"training step, {args.preset}, {args.batch_size} x {config.context_length} tokens of {args.task}, "
          f"{result['threads']} threads; float32 matmul peak {result['peak_flops'] / 1e9:.1f} GFLOP/s")
    print(f"{'model':10s} {'parameters':>11s} {'s/step':>8s} {'tokens/s':>10s} {'GFLOP/step':>11s} {'MFU':>6s}")
    for name, row in result["rows"].items():
        print(f"{name:10s} {result['parameters'][name]:11,d} {row['step_s']:8.3f} {row['tokens_per_s']:10,.0f} "
              f"{row['flops_per_step'] / 1e9:11.1f} {row['mfu']:6.1%}")
    print(f"gato_min / GPT-2 throughput: {result['speedup']:.2f}x")
    return 0


def _bench_processes(args) -> int:
    config = GatoConfig.from_preset(args.preset, **({"context_length": args.context_length} if args.context_length else {}))
    result = bench_processes(config, args.batch_size, args.steps, args.processes, args.rounds, args.task)
    p = result["processes"]
    print(f"training step, {args.preset}, {args.batch_size} x {config.context_length} tokens of {args.task}, "
          f"{args.steps} steps x {args.rounds} rounds each, alternately")
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
    print(f"acting, {args.preset}, {args.task}, full context of {result['context_length']} tokens, "
          f"{result['threads']} threads")
    print(f"per action token: cached {result['cached_s'] * 1e3:.2f} ms, recomputing the context "
          f"{result['recomputed_s'] * 1e3:.2f} ms: {result['speedup']:.1f}x faster with the cache "
          f"({result['action_tokens']} action tokens per step)")
    for row in result["rollouts"]:
        print(f"batched rollout, {row['envs']:3d} envs: {row['env_steps_per_s']:8,.0f} env-steps/s "
              f"({row['env_steps']} steps in {row['seconds']:.1f} s)")
    return 0


def _evaluate(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    report = evaluate_run(args.run, args.tasks, args.episodes, args.envs, args.seed,
                          0 if args.no_prompt else args.prompt_tokens, args.temperature, args.out, args.gif_steps,
                          args.max_steps, args.cache, args.device, not args.no_progress, args.memory)
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    print(f"{'task':12s} {'return':>20s} {'score':>16s} {'D4RL score':>16s} {'env-steps/s':>12s}")
    for row in report["tasks"]:
        d4rl = f"{row['d4rl_score_mean']:.1f} ± {row['d4rl_score_ci95']:.1f}" if "d4rl_score_mean" in row else "-"
        print(f"{row['task']:12s} {row['return_mean']:>11.1f} ± {row['return_ci95']:<7.1f} "
              f"{row['score_mean']:>7.1f} ± {row['score_ci95']:<6.1f} {d4rl:>16s} {row['env_steps_per_s']:12.0f}")
    print(f"report -> {out / 'report.md'}")
    return 0


def _demo(args) -> int:
    run_demo(args.out, args.steps, args.episodes, args.eval_episodes, threads=args.threads, processes=args.processes,
             cache=args.cache, progress=not args.no_progress, temperature=args.temperature)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gato_min", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--task-file", action="append", default=[], metavar="JSON",
                        help="register your own tasks from a JSON task file (see gato_min.envs; repeatable)")

    p = sub.add_parser("demo", parents=[common], help="the whole job: collect expert data, train a small Gato, play and score it (~10 min)")
    p.add_argument("--out", default="runs/demo", help="folder for the run, the report and demo.json")
    p.add_argument("--steps", type=int, default=1800, help="training steps")
    p.add_argument("--episodes", type=int, default=500, help="expert episodes to collect")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes played to score the agent")
    p.add_argument("--processes", type=int, default=2, help="data-parallel training processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature of the evaluation (default 0: the most likely bin)")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_demo)

    p = sub.add_parser("tokenize", parents=[common], help="show how one MuJoCo timestep and one Atari frame become tokens")
    p.add_argument("--preset", default="cpu-small", help="config preset whose vocabulary to use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/tokenize-demo", help="folder for the figure")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("train-text-model", parents=[common], help="retrain the shipped SentencePiece model from its committed corpus")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--refresh-corpus", action="store_true", help="first re-collect the prose of the chapters and README")
    p.add_argument("--repo", default=".", help="repository root to collect prose from (with --refresh-corpus)")
    p.set_defaults(func=_train_text_model)


    p = sub.add_parser("collect", parents=[common], help="collect episodes from a shipped policy into a D4RL-format HDF5 file")
    p.add_argument("--task", required=True, help="a task: shipped (" + ", ".join(TASKS) + ") or from --task-file")
    p.add_argument("--tier", required=True, help="a tier of the task (see the task registry) or 'random'")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=seed+i)")
    p.add_argument("--num-envs", type=int, default=4, help="environments played at once")
    p.add_argument("--action-noise", type=float, default=0.0,
                   help="Gaussian noise on a MuJoCo actor's torques, played and recorded (TD3 explored with 0.1)")
    p.add_argument("--record", choices=("played", "intended"), default="played",
                   help="with --action-noise: write down the noisy torque played, or the expert's own (DART labels)")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--out", default=None,
                   help="output file (default <cache>/datasets/<task>-<tier>[-noise<s>]-<N>ep-seed<S>.hdf5)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_collect)

    p = sub.add_parser("reference-returns", parents=[common], help="measure random and shipped-policy returns; store and print them")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (default: the shipped ones)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--dry-run", action="store_true", help="print the table without storing it")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reference_returns)

    p = sub.add_parser("bench-collect", parents=[common], help="measure collection speed (steps/s) for several numbers of envs")
    p.add_argument("--task", default="hopper", help="a task")
    p.add_argument("--tier", default="expert")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 8])
    p.set_defaults(func=_bench_collect)

    p = sub.add_parser("bench-batches", parents=[common], help="batch assembly tokens/s (1 core) vs what a training step consumes")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads for the training step (default: all)")
    p.set_defaults(func=_bench_batches)

    p = sub.add_parser("bench-train", parents=[common], help="training tokens/s and MFU of gato_min vs a same-shape Hugging Face GPT-2")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--task", default="halfcheetah")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=_bench_train)

    p = sub.add_parser("bench-processes", parents=[common], help="training tokens/s: one process with P threads vs P one-thread DDP workers")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--context-length", type=int, default=None, help="override the preset's context length")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--task", default="halfcheetah")
    p.set_defaults(func=_bench_processes)

    p = sub.add_parser("train-expert", parents=[common], help="train (or resume) a TD3 expert for a MuJoCo task (needs the [experts] extra)")
    p.add_argument("--task", required=True, help="halfcheetah, hopper or walker2d")
    p.add_argument("--steps", type=int, default=None, help="total environment steps (default: the stored or 1,000,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--out", default=None, help="run folder (default <cache>/experts/<task>)")
    p.add_argument("--no-progress", action="store_true", help="print one JSON line per evaluation instead of a bar")
    p.add_argument("--resume-from", default=None,
                   help="portable state (model.zip, curve.jsonl, settings.json) to start from if the run folder has no checkpoint")
    p.set_defaults(func=_train_expert)

    p = sub.add_parser("export-experts", parents=[common], help="ship the chosen snapshots of expert runs as tier policies; plot their curves")
    p.add_argument("--tasks", nargs="+", default=["halfcheetah", "hopper", "walker2d"])
    p.add_argument("--tiers", nargs="+", default=["medium", "expert"], choices=["medium", "expert"])
    p.add_argument("--cache", default=None, help="cache root holding experts/<task> (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--medium-step", type=int, default=None, help="ship the snapshot of this step as the medium tier")
    p.set_defaults(func=_export_experts)

    p = sub.add_parser("save-expert-state", parents=[common], help="copy an expert run's weights, optimizer and curve (no replay buffer) into the repo")
    p.add_argument("--task", required=True)
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--out", default=None, help="run folder (default <cache>/experts/<task>)")
    p.add_argument("--to", default=None, help="destination (default experts/<task>)")
    p.set_defaults(func=_save_expert_state)


    p = sub.add_parser("train", parents=[common], help="train (or resume) a Gato on behaviour data and text; works under torchrun")
    p.add_argument("--out", required=True, help="run folder: created, or resumed if it holds this run")
    p.add_argument("--preset", default="cpu-small", help="model preset (gato_min.config.PRESETS)")
    p.add_argument("--context-length", type=int, default=None, help="override the preset's context length")
    p.add_argument("--action-positions", choices=["none", "local"], default=None,
                   help="override the preset's local positions of action tokens (see gato_min.positions)")
    p.add_argument("--value-init", choices=("normal", "smooth"), default=None,
                   help="override the preset's init of the continuous-bin embeddings (see gato_min.model)")
    data_flags = p.add_argument_group("data (gato_min.data.training_set.DataSettings; --tasks also takes env ids)")
    add_arguments(data_flags, DataSettings)
    add_arguments(p.add_argument_group("optimization (gato_min.optim.TrainSettings)"), TrainSettings)
    p.add_argument("--stop-after", type=int, default=None, help="end this call after N steps (resumable)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice; 1 per worker with --processes)")
    p.add_argument("--processes", type=int, default=1,
                   help="data-parallel CPU worker processes (DDP over gloo; the batch is split between them). "
                        "On a small model 2 single-threaded workers beat 1 process with 2 threads")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", parents=[common], help="play a trained run's tasks with demonstration prompts; report scores")
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to play (default: the run's control tasks)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--envs", type=int, default=10, help="environments played at once")
    p.add_argument("--seed", type=int, default=0, help="episode i starts from seed + i; also seeds sampling")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="prompt length in tokens, cut to whole timesteps (default: the context length with "
                        "--memory ring, the training prompt share of it with --memory window)")
    p.add_argument("--memory", choices=("window", "ring"), default="window",
                   help="window: rebuild the context from timestep boundaries as in training (default); "
                        "ring: Transformer-XL style token ring")
    p.add_argument("--no-prompt", action="store_true", help="act without a demonstration prompt")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: most likely token)")
    p.add_argument("--gif-steps", type=int, default=200, help="frames of episode 0 in the rollout GIF (0: none)")
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes after this many steps")
    p.add_argument("--out", default=None, help="report folder (default RUN/eval)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--cache", default=None, help="cache root of the demonstrations' data")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("bench-act", parents=[common], help="per-action latency with vs without the key/value cache; env-steps/s")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--task", default="halfcheetah")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--envs", nargs="+", type=int, default=[1, 8], help="batch sizes of the rollouts")
    p.add_argument("--episode-steps", type=int, default=200, help="steps per rollout episode")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_bench_act)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for path in args.task_file:
            load_task_file(path)
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"python -m gato_min {args.command}: error: {message}", file=sys.stderr)
        return 2
