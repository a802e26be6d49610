"""The generalist's commands of `python -m gato_min`: `generalist` (train, then play every task)
and `generalist-report` (the published figures of a set of training seeds)."""

from __future__ import annotations

import argparse
import json

from gato_min.tools.generalist import GENERALIST_SIZE, GENERALIST_SIZES, GENERALIST_STEPS, run_generalist
from gato_min.tools.generalist_report import EVALUATIONS, write_summary


def _generalist(args) -> int:
    result = run_generalist(
        args.out,
        seed=args.seed,
        steps=args.steps,
        size=args.size,
        text=not args.no_text,
        processes=args.processes,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        gif_steps=args.gif_steps,
        cache=args.cache,
        progress=not args.no_progress,
        max_steps=args.max_steps,
    )
    header = " ".join(f"{name:>16s}" for name in EVALUATIONS)
    print(f"\n{'task':12s} {header}   (score: 100 = the shipped expert)")
    for task in result["evaluations"]["no-prompt"]["scores"]:
        cells = [result["evaluations"][name]["scores"][task] for name in EVALUATIONS]
        print(f"{task:12s} " + " ".join(f"{m:8.1f} ± {c:<5.1f}" for m, c in cells))
    print(f"train {result['times']['train_s']:.0f} s -> {args.out}/generalist.json")
    return 0


def _labelled(pairs: list[str] | None, flag: str, what: str) -> dict:
    """--specialists / --ablations LABEL=FOLDER,FOLDER,... into {label: [folders]}."""
    found = {}
    for pair in pairs or []:
        label, _, folders = pair.partition("=")
        if not label or not folders:
            raise ValueError(f"{flag} takes LABEL=FOLDER,FOLDER,... ({what}), got {pair!r}")
        found[label] = folders.split(",")
    return found


def _generalist_report(args) -> int:
    summary = write_summary(
        args.runs,
        args.out,
        _labelled(args.specialists, "--specialists", "evaluation report folders"),
        _labelled(args.ablations, "--ablations", "generalist folders"),
    )
    print(json.dumps({k: summary[k] for k in ("seeds", "train_s", *EVALUATIONS)}, indent=1))
    print(f"-> {args.out}/summary.json, scores.png, curves.png")
    return 0


def add_generalist_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add generalist and generalist-report to `sub`."""
    p = sub.add_parser(
        "generalist",
        parents=[common],
        help="train one Gato on HalfCheetah, Hopper, Walker2d, Pong, Breakout and text, then play every task",
    )
    p.add_argument("--out", default="runs/generalist", help="folder: run/ (the training run) and generalist.json")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--steps", type=int, default=GENERALIST_STEPS, help="optimizer steps")
    p.add_argument(
        "--size", choices=sorted(GENERALIST_SIZES), default=GENERALIST_SIZE, help="model size (GENERALIST_SIZES)"
    )
    p.add_argument("--no-text", action="store_true", help="leave the text task out (an ablation)")
    p.add_argument("--processes", type=int, default=2, help="single-threaded data-parallel training workers")
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per task and evaluation")
    p.add_argument("--eval-seed", type=int, default=1000, help="episode i starts from seed + i")
    p.add_argument("--gif-steps", type=int, default=200, help="frames of each task's first episode in a GIF (0: none)")
    p.add_argument("--max-steps", type=int, default=None, help="cut evaluation episodes after this many steps")
    p.add_argument("--cache", default=None, help="cache root of the behaviour data")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_generalist)

    p = sub.add_parser(
        "generalist-report", parents=[common], help="pool generalist runs (training seeds) into the published figures"
    )
    p.add_argument("--runs", nargs="+", required=True, help="generalist folders (written by `generalist`)")
    p.add_argument("--out", required=True, help="folder for summary.json, scores.png and curves.png")
    p.add_argument(
        "--specialists",
        nargs="*",
        help="LABEL=REPORT,REPORT,... evaluation reports of specialists to compare (each cut to the episodes the "
        "generalists played), e.g. specialists=results/hopper-fast/eval-no-prompt-mean-seed1000,"
        "results/pong-fast/eval-no-prompt-seed1000",
    )
    p.add_argument(
        "--ablations",
        nargs="*",
        help="LABEL=FOLDER,FOLDER,... generalist folders of a changed recipe (training seeds), shown with their "
        "unprompted scores, e.g. 'without text=results/generalist-notext'",
    )
    p.set_defaults(func=_generalist_report)
