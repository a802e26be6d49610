"""Summaries of scores with their uncertainty: Student's t intervals and the IQM of many tasks.

Two questions are asked of evaluation scores, and each has its customary answer:

* How well does this checkpoint do on one task? The mean over episodes with a 95 % confidence
  interval from Student's t (`mean_ci`), as `gato_min.evaluate` reports it.
* How well does it do on a domain of several tasks (the MuJoCo bodies, the Atari games)? The
  interquartile mean (IQM) of all the scores pooled, the mean of their middle half, with a
  percentile interval from a stratified bootstrap (`iqm_ci`): each task's scores are resampled
  within that task, so every replicate keeps the same number of scores per task. Agarwal et al.
  (2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice"; the rliable
  library) argue for it: the IQM is far less swayed by one outlying task than the mean, and needs
  far fewer runs than the median for the same precision. rliable itself pins an old `arch` that
  has no wheel for this project's Python, so the same computation is written here on numpy and
  scipy.stats.
"""

from __future__ import annotations

import math

import numpy as np


def _flat(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(array) == 0:
        raise ValueError(f"{name}: no values to summarize")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: scores must be finite numbers")
    return array


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its `level` confidence interval (Student's t over the values); the
    half-width is NaN for a single value."""
    from scipy import stats  # imported here: scipy.stats takes a second to load

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) == 0:
        raise ValueError("no values to summarize")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if len(values) == 1:
        return float(values[0]), float("nan")
    quantile = float(stats.t.ppf(0.5 + level / 2, len(values) - 1))
    return float(values.mean()), quantile * float(values.std(ddof=1)) / math.sqrt(len(values))


def iqm(values) -> float:
    """Interquartile mean: the mean of the values left after cutting a quarter of them from each
    end (scipy.stats.trim_mean with 0.25, as rliable computes it; when a quarter of the count is
    not whole, fewer values are cut)."""
    from scipy import stats

    return float(stats.trim_mean(_flat(values, "iqm"), 0.25))


def iqm_ci(scores_by_task: dict, level: float = 0.95, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """IQM of every task's scores pooled, with the `level` percentile interval of a stratified
    bootstrap: `reps` replicates, each drawing every task's scores with replacement from that
    task's own scores. Returns (iqm, low, high)."""
    from scipy import stats

    if not isinstance(scores_by_task, dict) or not scores_by_task:
        raise ValueError("scores_by_task must be a non-empty dict {task: scores}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    tasks = {task: _flat(scores, f"scores of {task!r}") for task, scores in scores_by_task.items()}
    rng = np.random.default_rng(seed)
    replicates = np.concatenate(
        [scores[rng.integers(0, len(scores), (reps, len(scores)))] for scores in tasks.values()], axis=1
    )
    values = stats.trim_mean(replicates, 0.25, axis=1)
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return iqm(np.concatenate(list(tasks.values()))), float(low), float(high)
