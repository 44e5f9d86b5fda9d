"""McNemar vs statsmodels, paired bootstrap vs scipy, per-class F1 vs sklearn."""

import numpy as np
import pytest
from scipy.stats import bootstrap
from statsmodels.stats.contingency_tables import mcnemar

from geoemb.analysis.stats import (
    f1_drop,
    mcnemar_exact,
    mcnemar_from_counts,
    paired_bootstrap_ci,
    per_class_f1,
)


@pytest.mark.parametrize("b,c", [(6, 0), (0, 6), (3, 5), (17, 9), (40, 61), (1, 1), (250, 199)])
def test_mcnemar_equals_statsmodels_exact(b, c):
    table = np.array([[100, b], [c, 50]])
    ref = mcnemar(table, exact=True)
    got = mcnemar_from_counts(b, c)
    assert got.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert got.statistic == ref.statistic


def test_mcnemar_from_predictions_and_degenerate_case():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    pa = np.where(rng.random(300) < 0.85, y, (y + 1) % 5)
    pb = np.where(rng.random(300) < 0.80, y, (y + 2) % 5)
    ca, cb = pa == y, pb == y
    table = np.array([[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]])
    assert mcnemar_exact(y, pa, pb).pvalue == pytest.approx(
        mcnemar(table, exact=True).pvalue, rel=1e-12
    )
    same = mcnemar_exact(y, pa, pa)
    assert (same.b, same.c, same.pvalue) == (0, 0, 1.0)
    assert mcnemar_from_counts(6, 0).pvalue == pytest.approx(0.03125)


@pytest.mark.parametrize("seed,n", [(0, 200), (7, 333), (42, 1000)])
def test_paired_bootstrap_equals_scipy_percentile(seed, n):
    rng = np.random.default_rng(100 + seed)
    a = rng.random(n) < 0.9
    b = np.where(rng.random(n) < 0.1, ~a, a)

    def stat(x, y, axis=-1):
        return x.mean(axis=axis) - y.mean(axis=axis)

    ref = bootstrap(
        (a.astype(float), b.astype(float)), stat, paired=True, vectorized=True,
        n_resamples=2999, method="percentile", confidence_level=0.95,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    got = paired_bootstrap_ci(a, b, n_resamples=2999, seed=seed, chunk=250)
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert got.standard_error == pytest.approx(ref.standard_error, rel=1e-9)
    assert got.diff == pytest.approx(a.mean() - b.mean())


def test_paired_bootstrap_identical_is_zero_interval():
    a = np.random.default_rng(0).random(100) < 0.5
    ci = paired_bootstrap_ci(a, a.copy())
    assert (ci.diff, ci.low, ci.high) == (0.0, 0.0, 0.0)


def test_per_class_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 6, 400), rng.integers(0, 6, 400)
    np.testing.assert_allclose(per_class_f1(y, p, 6), f1_score(y, p, average=None, labels=range(6)))
    q = np.where(rng.random(400) < 0.5, y, p)
    np.testing.assert_allclose(
        f1_drop(y, q, p, 6), f1_score(y, p, average=None) - f1_score(y, q, average=None)
    )
