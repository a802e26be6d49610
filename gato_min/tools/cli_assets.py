"""The commands of `python -m gato_min` that remake shipped files: the MuJoCo experts
(`gato_min.tools.experts`) and the SentencePiece text model (`gato_min.tools.text_model`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gato_min.data.collect import POLICY_DIR, cache_dir, policy_file
from gato_min.data.policies import load_policy
from gato_min.plotting import media_dir
from gato_min.tokenize import CORPUS_FILE
from gato_min.tools.experts import export_tiers, plot_training_curve, save_portable_state, train_expert
from gato_min.tools.text_model import refresh_corpus, train_text_model


def _cache(args) -> Path:
    return cache_dir(args.cache)


def _train_expert(args) -> int:
    out = args.out or _cache(args) / "experts" / args.task
    train_expert(
        args.task,
        out,
        total_steps=args.steps,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
        resume_from=args.resume_from,
    )
    return 0


def _export_experts(args) -> int:
    for task in args.tasks:
        run = _cache(args) / "experts" / task
        steps = {"medium": args.medium_step} if args.medium_step is not None else None
        for tier, path in export_tiers(run, task, POLICY_DIR, args.tiers, steps).items():
            print(f"{task}/{tier} -> {path}")
        marks = {
            tier: int(load_policy(policy_file(task, tier))[1]["training_step"])
            for tier in ("medium", "expert")
            if policy_file(task, tier).is_file()
        }
        print(f"curve -> {plot_training_curve(run, task, media_dir() / f'experts_{task}.png', marks)}")
    return 0


def _save_expert_state(args) -> int:
    run = args.out or _cache(args) / "experts" / args.task
    dest = save_portable_state(run, args.to or Path("experts") / args.task)
    print(f"saved the portable training state of {run} to {dest}")
    return 0


def _train_text_model(args) -> int:
    if args.refresh_corpus:
        print(f"collected prose into {refresh_corpus(args.repo)}")
    path = train_text_model(CORPUS_FILE, vocab_size=args.vocab_size)
    print(f"trained {args.vocab_size}-piece SentencePiece model on {CORPUS_FILE} -> {path}")
    return 0


def add_asset_commands(sub, common: argparse.ArgumentParser) -> None:
    """Add train-expert, export-experts, save-expert-state and train-text-model to `sub`."""
    p = sub.add_parser(
        "train-expert",
        parents=[common],
        help="train (or resume) a TD3 expert for a MuJoCo task (needs the [experts] extra)",
    )
    p.add_argument("--task", required=True, help="halfcheetah, hopper or walker2d")
    p.add_argument("--steps", type=int, default=None, help="total environment steps (default: the stored or 1,000,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--out", default=None, help="run folder (default <cache>/experts/<task>)")
    p.add_argument("--no-progress", action="store_true", help="print one JSON line per evaluation instead of a bar")
    p.add_argument(
        "--resume-from",
        default=None,
        help="portable state (model.zip, curve.jsonl, settings.json) to start from if the run folder has no checkpoint",
    )
    p.set_defaults(func=_train_expert)

    p = sub.add_parser(
        "export-experts",
        parents=[common],
        help="ship the chosen snapshots of expert runs as tier policies; plot their curves",
    )
    p.add_argument("--tasks", nargs="+", default=["halfcheetah", "hopper", "walker2d"])
    p.add_argument("--tiers", nargs="+", default=["medium", "expert"], choices=["medium", "expert"])
    p.add_argument(
        "--cache", default=None, help="cache root holding experts/<task> (default $GATO_MIN_CACHE or ~/.cache/gato_min)"
    )
    p.add_argument("--medium-step", type=int, default=None, help="ship the snapshot of this step as the medium tier")
    p.set_defaults(func=_export_experts)

    p = sub.add_parser(
        "save-expert-state",
        parents=[common],
        help="copy an expert run's weights, optimizer and curve (no replay buffer) into the repo",
    )
    p.add_argument("--task", required=True)
    p.add_argument("--cache", default=None, help="cache root (default $GATO_MIN_CACHE or ~/.cache/gato_min)")
    p.add_argument("--out", default=None, help="run folder (default <cache>/experts/<task>)")
    p.add_argument("--to", default=None, help="destination (default experts/<task>)")
    p.set_defaults(func=_save_expert_state)

    p = sub.add_parser(
        "train-text-model", parents=[common], help="retrain the shipped SentencePiece model from its committed corpus"
    )
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument(
        "--refresh-corpus", action="store_true", help="first re-collect the prose of the chapters and README"
    )
    p.add_argument("--repo", default=".", help="repository root to collect prose from (with --refresh-corpus)")
    p.set_defaults(func=_train_text_model)
