"""Measuring the reference returns that normalize scores: a random policy and each shipped tier.

    python -m gato_min reference-returns --episodes 20

plays every tier of every task (and uniformly random actions) for `episodes` episodes from seeds
that no dataset uses, prints a markdown table with the D4RL references beside ours, and stores
mean and std per tier in `assets/reference_returns.json` (0 = random, 100 = expert, Sec. 4.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gato_min.data.collect import collect, policy_file
from gato_min.data.tasks import REFERENCE_FILE, TASKS, d4rl_normalized_score, get_task
from gato_min.files import atomic_write_text

EVALUATION_SEED = 1_000_000  # episodes i = 0.. start from reset(seed=EVALUATION_SEED + i)


def tier_available(task: str, tier: str) -> bool:
    spec = get_task(task)
    return tier == "random" or spec.family == "atari" or policy_file(task, tier).is_file()


def measure(tasks: list[str], episodes: int = 20, num_envs: int = 4, progress: bool = True) -> dict:
    """{task: {tier: {"mean", "std", "episodes", "mean_length"}}} for random and each available tier."""
    table: dict = {}
    for task in tasks:
        table[task] = {}
        for tier in ("random", *get_task(task).tiers):
            if not tier_available(task, tier):
                print(f"{task}/{tier}: no shipped policy yet, skipped")
                continue
            data = collect(task, tier, episodes, EVALUATION_SEED, num_envs, progress)
            returns = data.returns
            table[task][tier] = {"mean": float(returns.mean()), "std": float(returns.std()), "episodes": episodes,
                                 "mean_length": float(np.mean([len(e) for e in data]))}
    return table


def markdown_table(table: dict) -> str:
    lines = ["| task | tier | episodes | return (mean ± std) | normalized (ours) | D4RL-normalized (approx.) |",
             "|---|---|---|---|---|---|"]
    for task, rows in table.items():
        spec = get_task(task)
        random_mean = rows.get("random", {}).get("mean")
        expert_mean = rows.get("expert", {}).get("mean")
        for tier, row in rows.items():
            ours = (f"{100 * (row['mean'] - random_mean) / (expert_mean - random_mean):.1f}"
                    if random_mean is not None and expert_mean is not None and expert_mean != random_mean else "–")
            d4rl = f"{float(d4rl_normalized_score(task, row['mean'])):.1f}" if spec.d4rl_expert_return else "–"
            lines.append(f"| {task} | {tier} | {row['episodes']} | {row['mean']:.1f} ± {row['std']:.1f} | {ours} | {d4rl} |")
        if spec.d4rl_expert_return:
            lines.append(f"| {task} | D4RL random / expert | – | {spec.d4rl_random_return:.1f} / "
                         f"{spec.d4rl_expert_return:.1f} | – | 0 / 100 |")
    return "\n".join(lines)


def update_reference_file(table: dict, path: str | Path = REFERENCE_FILE) -> Path:
    """Merge `table` into the stored references (other tasks are kept), atomically."""
    path = Path(path)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    for task, rows in table.items():
        stored.setdefault(task, {}).update(rows)
    ordered = {task: stored[task] for task in TASKS if task in stored}
    atomic_write_text(path, json.dumps(ordered, indent=1) + "\n")
    return path
