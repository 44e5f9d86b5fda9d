"""Paired statistics for comparing two classifiers on the same test set.

- :func:`mcnemar_exact`: exact (binomial) McNemar test, identical to
  ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True)``:
  ``p = min(1, 2·BinomCDF(min(b, c); b + c, 1/2))``; the degenerate ``b + c = 0`` gives ``p = 1``.
- :func:`paired_bootstrap_ci`: percentile bootstrap CI of ``acc_a − acc_b`` over resampled test
  items. It draws exactly the indices ``scipy.stats.bootstrap(..., paired=True, batch=None,
  method='percentile', rng=np.random.default_rng(seed))`` draws (``rng.integers(0, n,
  (n_resamples, n))``) and uses the same linear quantile, so it reproduces scipy's interval for the
  same seed — but in memory-bounded chunks (scipy materialises all ``n_resamples × n`` indices).
- :func:`per_class_f1`: per-class F1 scores, and :func:`f1_drop` (compressed − baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom


@dataclass
class McNemarResult:
    """``b`` = #(A right, B wrong), ``c`` = #(A wrong, B right), exact two-sided p-value."""

    b: int
    c: int
    statistic: float
    pvalue: float


def _correct(y_true, pred) -> np.ndarray:
    y_true = np.asarray(y_true).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    if y_true.shape != pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} items but predictions have {pred.shape[0]}")
    return y_true == pred


def mcnemar_from_counts(b: int, c: int) -> McNemarResult:
    """Exact McNemar from the discordant counts (``b + c = 0`` → ``p = 1``)."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    stat = min(b, c)
    p = 1.0 if b + c == 0 else float(min(1.0, 2.0 * binom.cdf(stat, b + c, 0.5)))
    return McNemarResult(b, c, float(stat), p)


def mcnemar_exact(y_true, pred_a, pred_b) -> McNemarResult:
    """Exact McNemar test of classifiers A and B on the same ``(N,)`` test labels."""
    ca, cb = _correct(y_true, pred_a), _correct(y_true, pred_b)
    return mcnemar_from_counts(np.sum(ca & ~cb), np.sum(~ca & cb))


@dataclass
class BootstrapCI:
    """Observed difference ``acc_a − acc_b`` and its percentile CI ``[low, high]``."""

    diff: float
    low: float
    high: float
    standard_error: float


def paired_bootstrap_ci(
    correct_a,
    correct_b,
    n_resamples: int = 9999,
    confidence_level: float = 0.95,
    seed: int | np.random.Generator = 0,
    chunk: int | None = None,
) -> BootstrapCI:
    """Paired percentile bootstrap CI of ``mean(correct_a) − mean(correct_b)``.

    Parameters
    ----------
    correct_a, correct_b : (N,) bool/0-1 arrays
        Per-item correctness of the two classifiers on the same test items.
    seed : int or Generator
        ``np.random.default_rng(seed)``; with the same seed the interval equals
        ``scipy.stats.bootstrap((a, b), stat, paired=True, method='percentile', rng=...)``.
    chunk : int, optional
        Resamples per chunk (default: bounded to ~32 MB of indices). Chunks are drawn with even
        sizes so numpy's bounded-integer stream is identical to one big draw.

    Identical inputs (all per-item differences 0) return ``[0, 0]`` without resampling.
    """
    a = np.asarray(correct_a, dtype=np.float64).reshape(-1)
    b = np.asarray(correct_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"correct_a has {a.shape[0]} items, correct_b {b.shape[0]}")
    n = a.shape[0]
    if n < 2:
        raise ValueError("paired bootstrap needs at least 2 test items")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    diff = float(a.mean() - b.mean())
    if np.array_equal(a, b):
        return BootstrapCI(diff, 0.0, 0.0, 0.0)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if chunk is None:
        chunk = max(2, (4_000_000 // n) // 2 * 2)
    stats = np.empty(n_resamples, np.float64)
    done = 0
    while done < n_resamples:
        m = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, (m, n))
        stats[done : done + m] = a[idx].mean(axis=1) - b[idx].mean(axis=1)
        done += m
    alpha = (1 - confidence_level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return BootstrapCI(diff, float(low), float(high), float(np.std(stats, ddof=1)))


def per_class_f1(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``(K,)`` per-class F1 (0 where a class has neither support nor predictions)."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    k = int(num_classes or max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    tp = np.bincount(y_true[y_true == y_pred], minlength=k)[:k].astype(np.float64)
    fp = np.bincount(y_pred, minlength=k)[:k] - tp
    fn = np.bincount(y_true, minlength=k)[:k] - tp
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def f1_drop(y_true, pred_base, pred_comp, num_classes: int | None = None) -> np.ndarray:
    """Per-class F1 change ``F1(comp) − F1(base)`` (negative = worse)."""
    y = np.asarray(y_true)
    k = int(num_classes or max(np.max(y), np.max(pred_base), np.max(pred_comp)) + 1)
    return per_class_f1(y, pred_comp, k) - per_class_f1(y, pred_base, k)
