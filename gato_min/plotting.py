"""One figure style for every chapter, README figure and report: same size, font and palette.

The palette is Okabe and Ito's colour-blind-safe set. `save_figure` writes PNGs at a fixed dpi
with no software or time metadata, so regenerating an unchanged figure gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from gato_min.files import temporary_path

# Okabe-Ito: black, orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple
PALETTE = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"]

# one colour per token kind, used by every token-strip figure
TOKEN_COLORS = {
    "text": "#0072B2",
    "image": "#999999",
    "discrete": "#009E73",
    "continuous": "#56B4E9",
    "separator": "#000000",
    "action": "#D55E00",
    "padding": "#FFFFFF",
}

FIGURE_DPI = 110


def use_style() -> None:
    """Set the project's matplotlib defaults (call once at the top of a chapter or script)."""
    matplotlib.rcParams.update(
        {
            "figure.figsize": (7.0, 3.2),
            "figure.dpi": FIGURE_DPI,
            "savefig.dpi": FIGURE_DPI,
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": matplotlib.cycler(color=PALETTE[1:] + PALETTE[:1]),
            "legend.frameon": False,
            "image.cmap": "viridis",
            "svg.hashsalt": "gato_min",
        }
    )


def media_dir() -> Path:
    """The repository's media/ folder when running from a checkout, else ./media."""
    repo_media = Path(__file__).resolve().parents[1] / "media"
    return repo_media if repo_media.is_dir() else Path("media")


def save_figure(fig, name: str, directory: str | Path | None = None) -> Path:
    """Save `fig` as `<directory>/<name>.png` (default: `media_dir()`), atomically."""
    directory = Path(directory) if directory is not None else media_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    tmp = temporary_path(path)
    fig.savefig(tmp, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    os.replace(tmp, path)
    return path


def write_figure(fig, path: str | Path) -> Path:
    """Save `fig` as the PNG file `path` (atomically, `save_figure`) and close it."""
    path = Path(path)
    saved = save_figure(fig, path.stem, path.parent)
    plt.close(fig)
    return saved


def plot_learning_curve(rows: list[dict], out_file: str | Path) -> Path:
    """A run's training loss and held-out loss per task against steps (its metrics.jsonl rows),
    with each task's marginal baseline."""
    if not rows:
        raise ValueError(f"no metrics rows to plot into {out_file}")
    use_style()
    fig, ax = plt.subplots()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=PALETTE[0], lw=1.2, label="training loss")
    evaluations = [r for r in rows if "heldout" in r]
    for i, task in enumerate(evaluations[0]["heldout"] if evaluations else []):
        color = PALETTE[(i + 1) % len(PALETTE)] if i + 1 != 4 else PALETTE[5]  # (skip the pale yellow)
        kind = "text" if task == "text" else "action"
        ax.plot(
            [r["step"] for r in evaluations],
            [r["heldout"][task] for r in evaluations],
            "o-",
            ms=3,
            color=color,
            label=f"{task}: held-out {kind} loss",
        )
        ax.axhline(
            evaluations[-1]["baseline"][task], color=color, ls="--", lw=1, label=f"{task}: marginal-bins baseline"
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return write_figure(fig, out_file)


def label_bars(ax, means, errors, fmt: str = "{:.0f}") -> list:
    """Write each bar's value just beyond the end of its error bar (above for a bar at or above
    zero, below for a negative one), so that a label never sits on its interval; returns the
    annotations. `errors` are the half-widths drawn with the bars (0 for none)."""
    labels = []
    for x, (mean, error) in enumerate(zip(means, errors)):
        up = mean >= 0
        end = mean + error if up else mean - error
        labels.append(
            ax.annotate(
                fmt.format(mean),
                (x, end),
                textcoords="offset points",
                xytext=(0, 3 if up else -3),
                ha="center",
                va="bottom" if up else "top",
            )
        )
    ax.margins(y=0.15)  # room for the labels inside the axes
    return labels
