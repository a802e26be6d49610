"""Score summaries: Student's t intervals, the interquartile mean and its stratified bootstrap."""

import numpy as np
import pytest

from gato_min.statistics import iqm, iqm_ci, mean_ci


def test_student_t_intervals_match_the_tables():
    # t quantiles at 0.975 from printed tables: dof 1 -> 12.706205, dof 3 -> 3.182446, dof 9 -> 2.262157
    for n, quantile in [(2, 12.706205), (4, 3.182446), (10, 2.262157)]:
        values = np.arange(n, dtype=float) ** 2
        mean, half = mean_ci(values)
        assert mean == pytest.approx(values.mean())
        assert half == pytest.approx(quantile * values.std(ddof=1) / np.sqrt(n), rel=1e-6)
    assert mean_ci([1.0, 2.0, 3.0], level=0.5)[1] < mean_ci([1.0, 2.0, 3.0])[1]
    assert np.isnan(mean_ci([3.0])[1])
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)


def test_iqm_is_the_mean_of_the_middle_half():
    values = [100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]  # 8 values: cut 2 from each end
    assert iqm(values) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    assert iqm(np.arange(10.0)) == pytest.approx(np.mean(np.arange(2.0, 8.0)))  # 10 // 4 = 2 cut per end
    with pytest.raises(ValueError, match="finite"):
        iqm([1.0, float("nan")])


def test_stratified_bootstrap_keeps_each_tasks_share_and_repeats():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(80, 5, 20), "b": rng.normal(20, 5, 40)}
    point, low, high = iqm_ci(scores, reps=500, seed=1)
    assert point == pytest.approx(iqm(np.concatenate(list(scores.values()))))
    assert low < point < high and high - low < 20
    assert iqm_ci(scores, reps=500, seed=1) == (point, low, high)
    constant = iqm_ci({"a": [5.0] * 4, "b": [7.0] * 4}, reps=50)  # resampling within tasks changes nothing
    assert constant[1] == constant[2] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="scores_by_task"):
        iqm_ci({})
    with pytest.raises(ValueError, match="'b'"):
        iqm_ci({"a": [1.0], "b": []})
