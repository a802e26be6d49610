"""The `python -m gato_min` command line: one sub-command per job, each a thin wrapper.

The training flags are built from the settings dataclasses (`gato_min.settings.add_arguments`),
so each is described once, where it is defined. Every sub-command takes `--task-file` to
register a user's own tasks (`gato_min.envs.load_task_file`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gato_min.agent import READOUTS
from gato_min.config import GatoConfig
from gato_min.data.collect import collect_to_file
from gato_min.data.formats import read_d4rl
from gato_min.data.reference import markdown_table, measure, update_reference_file
from gato_min.data.training_set import DataSettings
from gato_min.envs import TASKS, load_task_file, resolve_task
from gato_min.evaluate import evaluate_run
from gato_min.launch import train_processes
from gato_min.optim import TrainSettings
from gato_min.settings import add_arguments, from_arguments
from gato_min.tools.cli_assets import add_asset_commands
from gato_min.tools.cli_bench import add_bench_commands
from gato_min.tools.cli_generalist import add_generalist_commands
from gato_min.tools.demo import DEMO_STEPS, DEMO_TASK, run_demo, task_recipe
from gato_min.tools.tokenize_demo import tokenize_demo
from gato_min.train import train


def _tokenize(args) -> int:
    report, figure = tokenize_demo(GatoConfig.from_preset(args.preset), args.out, seed=args.seed)
    print(report)
    print(f"\nfigure written to {figure}")
    return 0


def _collect(args) -> int:
    path = collect_to_file(
        args.task,
        args.tier,
        args.episodes,
        args.seed,
        args.num_envs,
        out=args.out,
        cache=args.cache,
        progress=not args.no_progress,
        action_noise=args.action_noise,
        record=args.record,
    )
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


# --n-layer ... override the preset
MODEL_SHAPE_FLAGS = ("n_layer", "n_head", "d_model", "d_ff", "d_head", "patch_channels", "patch_groups")


def train_config(args) -> GatoConfig:
    """The model config `train` builds: the preset, with every override flag that was given."""
    overrides = {name: getattr(args, name) for name in MODEL_SHAPE_FLAGS} | {
        "context_length": args.context_length,
        "action_positions": args.action_positions,
        "value_init": args.value_init,
        "return_conditioning": args.return_conditioning or None,
        "tie_head": False if args.untie_head else None,
        "return_scale": args.return_scale,
    }
    return GatoConfig.from_preset(args.preset, **{k: v for k, v in overrides.items() if v is not None})


def _train(args) -> int:
    config = train_config(args)
    if args.tasks:
        args.tasks = [resolve_task(name).name if name != "text" else name for name in args.tasks]
    data, settings = from_arguments(DataSettings, args), from_arguments(TrainSettings, args)
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    if args.processes > 1:
        if args.device not in ("auto", "cpu"):
            raise ValueError(
                "--processes starts CPU workers; on GPUs use torchrun --nproc_per_node=N -m gato_min train"
            )
        summary = train_processes(
            config,
            data,
            settings,
            args.out,
            args.processes,
            cache=args.cache,
            threads=args.threads or 1,
            progress=not args.no_progress,
            stop_after=args.stop_after,
        )
    else:
        summary = train(
            config,
            data,
            settings,
            args.out,
            cache=args.cache,
            device=args.device,
            threads=args.threads,
            progress=not args.no_progress,
            stop_after=args.stop_after,
        ).summary
    if summary:
        print(json.dumps({k: summary[k] for k in ("step", "final_loss", "heldout", "baseline")}))
    return 0


def _evaluate(args) -> int:
    report = evaluate_run(
        args.run,
        args.tasks,
        args.episodes,
        args.envs,
        args.seed,
        0 if args.no_prompt else args.prompt_tokens,
        args.temperature,
        args.out,
        args.gif_steps,
        args.max_steps,
        args.cache,
        args.device,
        not args.no_progress,
        args.memory,
        overwrite=args.overwrite,
        readout=args.readout,
        target_return=args.target_return,
        threads=args.threads,
        history=args.history,
    )
    out = Path(report["out"])
    print(f"{'task':12s} {'return':>20s} {'score':>16s} {'D4RL score':>16s} {'env-steps/s':>12s}")
    for row in report["tasks"]:
        d4rl = f"{row['d4rl_score_mean']:.1f} ± {row['d4rl_score_ci95']:.1f}" if "d4rl_score_mean" in row else "-"
        print(
            f"{row['task']:12s} {row['return_mean']:>11.1f} ± {row['return_ci95']:<7.1f} "
            f"{row['score_mean']:>7.1f} ± {row['score_ci95']:<6.1f} {d4rl:>16s} {row['env_steps_per_s']:12.0f}"
        )
    print(f"report -> {out / 'report.md'}")
    return 0


def _demo(args) -> int:
    run_demo(
        args.out,
        args.steps,
        args.episodes,
        args.eval_episodes,
        threads=args.threads,
        processes=args.processes,
        cache=args.cache,
        progress=not args.no_progress,
        temperature=args.temperature,
        readout=args.readout,
        task=args.task,
        seed=args.seed,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gato_min", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--task-file",
        action="append",
        default=[],
        metavar="JSON",
        help="register your own tasks from a JSON task file (see gato_min.envs; repeatable)",
    )

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="the whole job: collect expert data, train a small Gato, play and score it (~8 min)",
    )
    p.add_argument("--out", default="runs/demo", help="folder for the run, the report and demo.json")
    p.add_argument("--task", default=DEMO_TASK, help=f"a shipped MuJoCo or Atari task (default {DEMO_TASK})")
    atari = task_recipe("pong")
    p.add_argument("--steps", type=int, help=f"training steps (default {DEMO_STEPS}; Atari {atari['steps']})")
    p.add_argument("--seed", type=int, default=0, help="training seed (model initialization, batch sampling)")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"expert episodes to collect (default: the task's recipe, 500; walker2d 1000; Atari {atari['episodes']})",
    )
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes played to score the agent")
    p.add_argument("--processes", type=int, default=2, help="data-parallel training processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="sampling temperature of the evaluation's buttons, and of torques with --readout token "
        "(0: the most likely token)",
    )
    p.add_argument(
        "--readout",
        choices=READOUTS,
        default="mean",
        help="mean: each torque is the mean of the model's distribution over the bins (default, chapter 09); "
        "token: one bin, sampled at --temperature (the paper)",
    )
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "tokenize", parents=[common], help="show how one MuJoCo timestep and one Atari frame become tokens"
    )
    p.add_argument("--preset", default="cpu-small", help="config preset whose vocabulary to use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/tokenize-demo", help="folder for the figure")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser(
        "collect", parents=[common], help="collect episodes from a shipped policy into a D4RL-format HDF5 file"
    )
    p.add_argument("--task", required=True, help="a task: shipped (" + ", ".join(TASKS) + ") or from --task-file")
    p.add_argument("--tier", required=True, help="a tier of the task (see the task registry) or 'random'")
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--seed", type=int, default=0, help="episode i starts from reset(seed=seed+i)")
    p.add_argument("--num-envs", type=int, default=4, help="environments played at once")
    p.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="Gaussian noise on a continuous policy's actions, in [-1, 1] units (TD3 explored with 0.1)",
    )
    p.add_argument(
        "--record",
        choices=("played", "intended"),
        default="played",
        help="with --action-noise: write down the noisy torque played, or the expert's own (DART labels)",
    )
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument(
        "--out", default=None, help="output file (default <cache>/datasets/<task>-<tier>[-noise<s>]-<N>ep-seed<S>.hdf5)"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_collect)

    p = sub.add_parser(
        "reference-returns", parents=[common], help="measure random and shipped-policy returns; store and print them"
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks (default: the shipped ones)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--dry-run", action="store_true", help="print the table without storing it")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reference_returns)

    p = sub.add_parser(
        "train", parents=[common], help="train (or resume) a Gato on behaviour data and text; works under torchrun"
    )
    p.add_argument("--out", required=True, help="run folder: created, or resumed if it holds this run")
    p.add_argument("--preset", default="cpu-small", help="model preset (gato_min.config.PRESETS)")
    p.add_argument("--context-length", type=int, default=None, help="override the preset's context length")
    for name in MODEL_SHAPE_FLAGS:
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=int, default=None, help=f"override the preset's {name} (gato_min.config.GatoConfig)")
    p.add_argument(
        "--action-positions",
        choices=["none", "local"],
        default=None,
        help="override the preset's local positions of action tokens (see gato_min.positions)",
    )
    p.add_argument(
        "--value-init",
        choices=("normal", "smooth"),
        default=None,
        help="override the preset's init of the continuous-bin embeddings (see gato_min.model)",
    )
    p.add_argument(
        "--return-conditioning",
        action="store_true",
        help="open each timestep with a return-to-go token (Decision-Transformer style, chapter 09)",
    )
    p.add_argument(
        "--untie-head",
        action="store_true",
        help="give the output head weights of its own instead of the token table's (README, Learning speed)",
    )
    p.add_argument(
        "--return-scale", type=float, default=None, help="returns-to-go are divided by this before binning (100)"
    )
    data_flags = p.add_argument_group("data (gato_min.data.training_set.DataSettings; --tasks also takes env ids)")
    add_arguments(data_flags, DataSettings)
    add_arguments(p.add_argument_group("optimization (gato_min.optim.TrainSettings)"), TrainSettings)
    p.add_argument("--stop-after", type=int, default=None, help="end this call after N steps (resumable)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice; 1 per worker with --processes)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel CPU worker processes (DDP over gloo; the batch is split between them). "
        "On a small model 2 single-threaded workers beat 1 process with 2 threads",
    )
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate", parents=[common], help="play a trained run's tasks with demonstration prompts; report scores"
    )
    p.add_argument("--run", required=True, help="run folder written by train")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to play (default: the run's control tasks)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--envs", type=int, default=10, help="environments played at once")
    p.add_argument("--seed", type=int, default=0, help="episode i starts from seed + i; also seeds sampling")
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=None,
        help="prompt length in tokens, cut to whole timesteps (default: the context length with "
        "--memory ring, the training prompt share of it with --memory window)",
    )
    p.add_argument(
        "--memory",
        choices=("window", "ring"),
        default="window",
        help="window: rebuild the context from timestep boundaries as in training (default); "
        "ring: Transformer-XL style token ring",
    )
    p.add_argument("--no-prompt", action="store_true", help="act without a demonstration prompt")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: most likely token)")
    p.add_argument(
        "--readout",
        choices=READOUTS,
        default="token",
        help="token: sample each continuous action token at --temperature (the paper); mean: the mean of "
        "the model's distribution over the bins (chapter 09)",
    )
    p.add_argument("--target-return", type=float, help="return asked of a return-conditioned run (default: expert's)")
    p.add_argument("--history", type=int, help="at most this many of the episode's own timesteps in the context")
    p.add_argument("--gif-steps", type=int, default=200, help="frames of episode 0 in the rollout GIF (0: none)")
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes after this many steps")
    p.add_argument(
        "--out",
        default=None,
        help="report folder (default RUN/eval, or RUN/eval-<options that differ from the defaults>, "
        "e.g. eval-no-prompt-t0-seed100)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="write into --out even when it holds a report of other settings"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads while acting (default 1: batches of a few rows gain little from more, and "
        "beside another busy job more threads stall)",
    )
    p.add_argument("--cache", default=None, help="cache root of the demonstrations' data")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_evaluate)

    add_asset_commands(sub, common)
    add_bench_commands(sub, common)
    add_generalist_commands(sub, common)
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
