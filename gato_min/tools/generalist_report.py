"""The generalist's published figures: scores pooled over training seeds, per-domain IQMs, curves.

    python -m gato_min generalist-report --runs results/generalist results/generalist-seed1 \\
        --out results/generalist-summary

Every number the chapter and the READMEs show comes out of `summarize` and is stored as JSON next
to its figure. A task's score is the normalized return (0 = random, 100 = the shipped expert) of
every evaluation episode of every training seed, pooled: mean and Student-t 95 % interval
(`gato_min.statistics.mean_ci`). A domain (MuJoCo, Atari) is summarized as the field does since
Agarwal et al. (2021): the interquartile mean of its tasks' scores with a stratified-bootstrap
95 % interval (`gato_min.statistics.iqm_ci`; rliable does not install with the project's pins,
see README).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gato_min.plotting import PALETTE, use_style, write_figure
from gato_min.statistics import iqm_ci, mean_ci
from gato_min.tools.generalist import CONTROL_TASKS, DOMAINS

EVALUATIONS = ("no-prompt", "prompted")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `python -m gato_min generalist` for that folder first")
    return json.loads(path.read_text())


def episode_scores(report_dir: str | Path) -> dict[str, np.ndarray]:
    """Per task, the normalized score of every episode of one evaluation report."""
    report = _read(Path(report_dir) / "report.json")
    scores = {}
    for row in report["tasks"]:
        returns = np.asarray(row["returns"], dtype=np.float64)
        scores[row["task"]] = 100 * (returns - row["random_return"]) / (row["expert_return"] - row["random_return"])
    return scores


def run_scores(folder: str | Path, evaluation: str = "no-prompt") -> dict[str, np.ndarray]:
    """A generalist folder's episode scores per task for one of `EVALUATIONS`."""
    folder = Path(folder)
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
    result = _read(folder / "generalist.json")
    return episode_scores(folder / "run" / result["evaluations"][evaluation]["report"])


def pooled(scores_per_run: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every run's episodes of each task, one array per task."""
    tasks = [t for t in CONTROL_TASKS if all(t in s for s in scores_per_run)]
    return {t: np.concatenate([s[t] for s in scores_per_run]) for t in tasks}


def score_table(scores: dict[str, np.ndarray], seed: int = 0) -> dict:
    """Per task mean ± 95 % CI and episode count; per domain IQM with its bootstrap interval."""
    tasks = {}
    for task, values in scores.items():
        mean, ci = mean_ci(values)
        tasks[task] = {"mean": round(mean, 2), "ci95": round(ci, 2), "episodes": len(values)}
    domains = {}
    for domain, members in DOMAINS.items():
        present = {t: scores[t] for t in members if t in scores}
        if present:
            value, low, high = iqm_ci(present, seed=seed)
            domains[domain] = {"iqm": round(value, 2), "low": round(low, 2), "high": round(high, 2)}
    return {"tasks": tasks, "domains": domains}


def summarize(folders: list[str | Path]) -> dict:
    """The figures of a set of generalist folders (training seeds of one recipe): scores per
    evaluation, held-out losses at the last step, training time and size."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise ValueError("give at least one generalist folder")
    results = [_read(f / "generalist.json") for f in folders]
    summary = {
        "runs": [str(f) for f in folders],
        "seeds": [r["seed"] for r in results],
        "size": results[0]["size"],
        "text": results[0]["text"],
        "parameters": results[0]["parameters"],
        "steps": results[0]["steps"],
        "train_s": [r["times"]["train_s"] for r in results],
        "heldout": {t: [r["heldout"][t] for r in results] for t in results[0]["heldout"]},
        "baseline": results[0]["baseline"],
    }
    for evaluation in EVALUATIONS:  # the reports each generalist.json names, read once
        reports = [f / "run" / r["evaluations"][evaluation]["report"] for f, r in zip(folders, results)]
        summary[evaluation] = score_table(pooled([episode_scores(report) for report in reports]))
    return summary


def specialist_scores(report_dirs: list[str | Path], episodes: int | None = None) -> dict[str, np.ndarray]:
    """Episode scores of stored specialists' evaluation reports, pooled per task; `episodes` keeps
    the first that many of each report (the episode seeds a generalist was played on)."""
    per_report = [episode_scores(d) for d in report_dirs]
    tasks = sorted({t for s in per_report for t in s}, key=CONTROL_TASKS.index)
    return {t: np.concatenate([s[t][:episodes] for s in per_report if t in s]) for t in tasks}


def plot_score_bars(tables: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Grouped bars: each control task's mean score (95 % CI) under each labelled table."""
    use_style()
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(tables)), 3.6))  # wider as the bars get thinner
    width = 0.8 / len(tables)
    for i, (label, table) in enumerate(tables.items()):
        tasks = [t for t in CONTROL_TASKS if t in table["tasks"]]
        x = np.array([CONTROL_TASKS.index(t) for t in tasks]) + (i - (len(tables) - 1) / 2) * width
        means = [table["tasks"][t]["mean"] for t in tasks]
        errors = [table["tasks"][t]["ci95"] for t in tasks]
        ax.bar(x, means, width, yerr=errors, color=PALETTE[i % len(PALETTE)], label=label, capsize=2)
        for xi, mean, error in zip(x, means, errors):
            ax.annotate(
                f"{round(mean)}",
                (xi, max(mean + error, 0)),
                textcoords="offset points",
                xytext=(0, 2),
                ha="center",
                va="bottom",
                fontsize=7 if len(tables) <= 4 else 6,
            )
    ax.set_xticks(range(len(CONTROL_TASKS)), CONTROL_TASKS)
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("normalized score (100 = expert)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_figure(fig, path)


def plot_domain_curves(folders: list[str | Path], path: str | Path) -> Path:
    """Held-out loss over the marginal baseline against training minutes, one panel per domain
    (and text), one line per task and training seed."""
    use_style()
    panels = {**DOMAINS, "text": ("text",)}
    fig, axes = plt.subplots(1, len(panels), figsize=(10, 3.2), sharey=False)
    for ax, (domain, tasks) in zip(axes, panels.items()):
        for k, folder in enumerate(folders):
            rows = [json.loads(line) for line in (Path(folder) / "run" / "metrics.jsonl").read_text().splitlines()]
            rows = [r for r in rows if "heldout" in r]
            for j, task in enumerate(tasks):
                if not rows or task not in rows[0]["heldout"]:
                    continue
                minutes = [r["elapsed_s"] / 60 for r in rows]
                ratio = [r["heldout"][task] / r["baseline"][task] for r in rows]
                ax.plot(
                    minutes,
                    ratio,
                    "o-" if k == 0 else "s--",
                    ms=2.5,
                    lw=1,
                    color=PALETTE[j % len(PALETTE)],
                    label=task if k == 0 else None,
                )
        ax.axhline(1, color="grey", lw=0.8, ls=":")
        ax.set_title(domain)
        ax.set_xlabel("training minutes (2 CPU cores)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("held-out loss / marginal baseline")
    fig.tight_layout()
    return write_figure(fig, path)


def write_summary(
    folders: list[str | Path], out: str | Path, specialists: dict | None = None, ablations: dict | None = None
) -> dict:
    """`summarize` the folders into `<out>/summary.json` with its two figures: scores (with the
    specialists' where given: {label: [evaluation report folders]}, each cut to the episodes the
    generalists played per task and seed; and the ablations': {label: [generalist folders]}, their
    unprompted scores) and learning curves."""
    from gato_min.files import atomic_write_json

    out = Path(out)
    summary = summarize(folders)
    tables = {"generalist, no prompt": summary["no-prompt"], "generalist, prompted": summary["prompted"]}
    for label, ablation in (ablations or {}).items():
        figures = summarize(ablation)
        kept = ("runs", "seeds", "size", "text", "parameters", "steps", "train_s", "heldout", "baseline")
        summary.setdefault("ablations", {})[label] = {k: figures[k] for k in kept} | figures["no-prompt"]
        tables[label] = summary["ablations"][label]
    episodes = min(row["episodes"] for row in summary["no-prompt"]["tasks"].values()) // len(folders)
    for label, reports in (specialists or {}).items():
        summary.setdefault("specialists", {})[label] = score_table(specialist_scores(reports, episodes)) | {
            "reports": [str(r) for r in reports],
            "episodes_per_report": episodes,
        }
        tables[label] = summary["specialists"][label]
    plot_score_bars(tables, out / "scores.png", "one set of weights vs one network per task")
    plot_domain_curves(folders, out / "curves.png")
    atomic_write_json(out / "summary.json", summary)
    return summary


def _one_decimal(value: float) -> str:
    """`value` to one decimal, without the sign of a negative that rounds to zero ("-0.0")."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _cell(row: dict | None) -> str:
    return "-" if row is None else f"{_one_decimal(row['mean'])} ± {row['ci95']:.1f}"


def _interval(row: dict | None) -> str:
    if row is None:
        return "-"
    iqm, low, high = (_one_decimal(row[key]) for key in ("iqm", "low", "high"))
    return f"{iqm} [{low}, {high}]"


def markdown_table(summary: dict) -> str:
    """The results table of the READMEs and the chapter, from a stored summary: one row per task
    (mean ± 95 % CI of the normalized score) and per domain (IQM [95 % bootstrap interval]), one
    column per evaluation, per ablation (unprompted) and per specialist set. tests/test_generalist.py
    checks that both READMEs hold exactly this table for the stored summary."""
    columns = {"generalist, no prompt": summary["no-prompt"], "generalist, prompted": summary["prompted"]}
    columns |= summary.get("ablations", {}) | summary.get("specialists", {})
    lines = [
        "| task | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for task in CONTROL_TASKS:
        lines.append(f"| {task} | " + " | ".join(_cell(c["tasks"].get(task)) for c in columns.values()) + " |")
    for domain in DOMAINS:
        cells = [_interval(table["domains"].get(domain)) for table in columns.values()]
        lines.append(f"| **{domain} IQM** | " + " | ".join(cells) + " |")
    return "\n".join(lines)
