"""Fused one-pass CPU moments for training-free pooling (numba; imported lazily by ``functional``).

:func:`row_moments` reads each ``(sample, band)`` row of pixels once and returns, in float64, the
mean, the centred sum of squares and the sum of cubes over the valid pixels: what ``std``,
``mean_std``, ``stats`` and ``gem`` need (``mean`` comes with them), for the cost of one read of the
data instead of numpy's mean + subtract + square + sum. Accumulation is in float64 around a per-row
shift (the row's first valid value), so the variance ``(S2 - S1^2 / n) / n`` of shifted values
loses no precision to cancellation even for data far from zero (AEF codes sit around 127). A NaN in
a valid pixel propagates into every sum of its row (as numpy and torch propagate it); a row without
valid pixel gives NaN.

:func:`center64` writes the float64 centred pixels (0 at invalid pixels) for the float64 covariance.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# reassociation lets LLVM vectorise the float64 sums (several partial sums: if anything more
# accurate than one running sum); no NaN/inf assumptions, so NaN still propagates
_FM = {"reassoc", "contract"}


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def _sums(row, shift):  # pragma: no cover - jitted
    s1 = 0.0
    s2 = 0.0
    c3 = 0.0
    for k in range(row.shape[0]):
        v = np.float64(row[k])
        u = v - shift
        s1 += u
        s2 += u * u
        c3 += v * v * v
    return s1, s2, c3


@nb.njit(cache=True, nogil=True, fastmath=_FM)
def _sums_masked(row, valid, shift):  # pragma: no cover - jitted
    s1 = 0.0
    s2 = 0.0
    c3 = 0.0
    for k in range(row.shape[0]):
        ok = valid[k]
        v = np.float64(row[k]) if ok else shift  # invalid pixels (NaN nodata too) add 0
        u = v - shift
        s1 += u
        s2 += u * u
        c3 += v * v * v if ok else 0.0
    return s1, s2, c3


@nb.njit(cache=True, nogil=True)
def row_moments(x, mask, d, counts):  # pragma: no cover - jitted
    """x: (R, N) float32/float64 rows (R = b * d); mask: (b, N) bool, or (0, 0) for none;
    counts: (b,) valid pixels per sample.

    Returns float64 (R,) arrays ``mean``, ``m2`` (centred sum of squares, >= 0) and ``s3`` (sum of
    cubes) over the valid pixels; NaN for a row without valid pixel.
    """
    r_n, n_pix = x.shape
    mean = np.empty(r_n)
    m2 = np.empty(r_n)
    s3 = np.empty(r_n)
    masked = mask.shape[0] > 0
    for r in range(r_n):
        n = counts[r // d]
        if n == 0:
            mean[r] = m2[r] = s3[r] = np.nan
            continue
        row = x[r]
        if masked:
            valid = mask[r // d]
            first = 0
            while not valid[first]:
                first += 1
            shift = np.float64(row[first])
            s1, s2, c3 = _sums_masked(row, valid, shift)
        else:
            shift = np.float64(row[0])
            s1, s2, c3 = _sums(row, shift)
        mean[r] = shift + s1 / n
        m2[r] = max(s2 - s1 * s1 / n, 0.0) if s2 == s2 else s2  # keep NaN
        s3[r] = c3
    return mean, m2, s3


@nb.njit(cache=True, nogil=True)
def center64_into(x, valid, mean, out):  # pragma: no cover - jitted
    """out[j, k] = float64(x[j, k]) - mean[j] at valid pixels, 0 elsewhere.

    x: (D, N) float32/float64 (one sample); valid: (N,) bool or (0,) for all valid; mean: (D,)
    float64; out: (D, N) float64 (reused across samples so it stays in cache).
    """
    d, n_pix = x.shape
    masked = valid.shape[0] > 0
    for j in range(d):
        m = mean[j]
        row = x[j]
        o = out[j]
        if masked:
            for k in range(n_pix):
                o[k] = np.float64(row[k]) - m if valid[k] else 0.0
        else:
            for k in range(n_pix):
                o[k] = np.float64(row[k]) - m


def cov64(x: np.ndarray, mask: np.ndarray | None, mean: np.ndarray) -> np.ndarray:
    """Float64 ``sum_k c[:, k] c[:, k]^T`` per sample with ``c = x - mean`` (0 at invalid pixels).

    x: (b, D, N) float32/float64; mask: (b, N) bool or None; mean: (b, D) float64.
    Returns (b, D, D) float64. One sample at a time through a reused (D, N) float64 buffer, so the
    centred pixels never leave the cache before BLAS (``dsyrk`` via numpy's ``a @ a.T``) reads them.
    """
    b, d, n = x.shape
    buf = np.empty((d, n))
    out = np.empty((b, d, d))
    none = np.zeros(0, np.bool_)
    for i in range(b):
        center64_into(x[i], none if mask is None else mask[i], mean[i], buf)
        np.matmul(buf, buf.T, out=out[i])
    return out
