"""Reference returns and normalized scores: a random policy and each tier of a task.

    python -m gato_min reference-returns --episodes 20

Scores are normalized as in Gato (Reed et al., 2022, Sec. 4.1): 0 = a uniformly random policy,
100 = the task's expert. The command plays every tier of every task (and uniformly random
actions) for `episodes` episodes from seeds that no dataset uses, prints a markdown table with
the D4RL references beside ours, and stores mean and std per tier: for the shipped tasks in the
package's `assets/reference_returns.json`, for a task registered by a user in that task's
`reference_file` (by default beside the user's data in the cache folder), never in the package.

D4RL's reference returns (d4rl/infos.py) give an approximate D4RL-normalized score; they were
measured on older gym versions, so they are only approximate on the v5 environments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gato_min.data.collect import collect, policy_file
from gato_min.envs import TASKS, get_task
from gato_min.files import atomic_write_text

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "assets" / "reference_returns.json"  # the shipped tasks'
EVALUATION_SEED = 1_000_000  # episodes i = 0.. start from reset(seed=EVALUATION_SEED + i)


def reference_file(task: str) -> Path:
    """Where the reference returns of `task` are stored: the package's file for shipped tasks,
    the task's own `reference_file` for registered ones."""
    spec = get_task(task)
    return Path(spec.reference_file) if spec.reference_file else REFERENCE_FILE


def reference_returns(task: str, path: str | Path | None = None) -> dict[str, float]:
    """The measured returns of `task`: {'random': ..., 'expert': ...} (and the other tiers)."""
    path = Path(path) if path is not None else reference_file(task)
    get_task(task)
    if not path.is_file():
        raise FileNotFoundError(
            f"reference returns file {path} does not exist; run python -m gato_min reference-returns --tasks {task}"
        )
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"reference returns file {path} is not valid JSON: {error}") from None
    if task not in table:
        raise KeyError(
            f"{path} has no reference returns for task {task!r}; run python -m gato_min reference-returns "
            f"--tasks {task}"
        )
    return {tier: row["mean"] for tier, row in table[task].items()}


def normalized_score(task: str, returns, path: str | Path | None = None) -> np.ndarray:
    """100 * (return - random) / (expert - random): 0 = random policy, 100 = expert (Sec. 4.1).
    A task without an 'expert' tier is normalized by its best tier (its last)."""
    ref = reference_returns(task, path)
    top = "expert" if "expert" in ref else next((t for t in reversed(get_task(task).tiers) if t in ref), None)
    if "random" not in ref or top is None:
        raise KeyError(
            f"reference returns of {task!r} lack the random return or a tier's; run python -m gato_min "
            f"reference-returns --tasks {task}"
        )
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref["random"]) / (ref[top] - ref["random"])


def d4rl_normalized_score(task: str, returns) -> np.ndarray:
    """D4RL's normalization, 100 * (return - REF_MIN) / (REF_MAX - REF_MIN); approximate on v5 envs."""
    spec = get_task(task)
    if spec.d4rl_expert_return is None:
        raise ValueError(f"task {task!r} has no D4RL reference returns")
    low, high = spec.d4rl_random_return, spec.d4rl_expert_return
    return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)


def tier_available(task: str, tier: str) -> bool:
    spec = get_task(task)
    return tier == "random" or spec.family != "mujoco" or policy_file(task, tier).is_file()


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
            table[task][tier] = {
                "mean": float(returns.mean()),
                "std": float(returns.std()),
                "episodes": episodes,
                "mean_length": float(np.mean([len(e) for e in data])),
            }
    return table


def markdown_table(table: dict) -> str:
    lines = [
        "| task | tier | episodes | return (mean ± std) | normalized (ours) | D4RL-normalized (approx.) |",
        "|---|---|---|---|---|---|",
    ]
    for task, rows in table.items():
        spec = get_task(task)
        random_mean = rows.get("random", {}).get("mean")
        expert_mean = rows.get("expert", {}).get("mean")
        for tier, row in rows.items():
            ours = (
                f"{100 * (row['mean'] - random_mean) / (expert_mean - random_mean):.1f}"
                if random_mean is not None and expert_mean is not None and expert_mean != random_mean
                else "–"
            )
            d4rl = f"{float(d4rl_normalized_score(task, row['mean'])):.1f}" if spec.d4rl_expert_return else "–"
            lines.append(
                f"| {task} | {tier} | {row['episodes']} | {row['mean']:.1f} ± {row['std']:.1f} | {ours} | {d4rl} |"
            )
        if spec.d4rl_expert_return:
            lines.append(
                f"| {task} | D4RL random / expert | – | {spec.d4rl_random_return:.1f} / "
                f"{spec.d4rl_expert_return:.1f} | – | 0 / 100 |"
            )
    return "\n".join(lines)


def update_reference_file(table: dict, path: str | Path | None = None) -> list[Path]:
    """Merge `table` into each task's reference file (other tasks are kept), atomically;
    `path` overrides the file of every task. Returns the files written."""
    by_file: dict[Path, dict] = {}
    for task, rows in table.items():
        by_file.setdefault(Path(path) if path is not None else reference_file(task), {})[task] = rows
    for file, rows_by_task in by_file.items():
        stored = json.loads(file.read_text()) if file.is_file() else {}
        for task, rows in rows_by_task.items():
            stored.setdefault(task, {}).update(rows)
        ordered = {task: stored[task] for task in TASKS if task in stored}
        ordered.update({task: rows for task, rows in stored.items() if task not in TASKS})
        atomic_write_text(file, json.dumps(ordered, indent=1) + "\n")
    return list(by_file)
