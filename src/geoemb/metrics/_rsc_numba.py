"""Fused CPU kernel for the RSC distance metrics (numba; imported lazily by ``geoemb.metrics.rsc``).

One call validates a batch of 3-class masks and binary predictions, computes the exact L1 distance
of every canopy-over-road (TC) pixel to the nearest visible-road pixel of its patch, and returns the
distances and hits of the TC pixels in row-major order: the reference notebook's ``d[m == 2]`` and
``pred[m == 2]`` from ``cv2.distanceTransform((m != 1), cv2.DIST_L1, 3)``, without materialising a
full distance map per patch.

Algorithm per patch (exact, integers only): the L1 transform is separable,
``d(i, j) = min_j' (|j - j'| + v(i, j'))`` with ``v`` the vertical distance to the nearest road pixel
of the same column. A forward pass over the rows reads the inputs once (validating them, counting TC
and road pixels, and writing ``v`` from above); a backward pass finishes ``v`` (``v[i] = min(v[i],
v[i+1] + 1)``, vectorised across the row); then only the rows that contain TC get the two 1-D
horizontal scans and are read out. Patches without TC are skipped (the reference transforms only
patches with TC), patches without visible road give no kept pixel (the reference's huge cv2 value
is dropped by its ``d < 8192`` filter).

The forward pass also writes a uint8 copy of the batch (labels and predictions), the key of the
content-keyed cache in :func:`tc_distances_cpu`: DWR and the distance curve updated with the same
batch share one computation, and :func:`same_batch` proves the match element by element (it stops at
the first difference, so a new batch costs almost nothing to reject).
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

_INF = 1 << 30


@nb.njit(cache=True, nogil=True)
def _tc_kernel(t, p, max_distance, key_t, key_p):  # pragma: no cover - jitted
    """t: (B, H, W) integer labels; p: (B, H, W) integer/uint8 predictions; key_t/key_p: (B, H, W)
    uint8 outputs (copies of t and p). Returns (d int64[n], hit bool[n], n_tc, bad) where ``bad`` is
    -1 or the index of the first patch holding a label outside {0, 1, 2} or a prediction outside
    {0, 1}."""
    b_n, h, w = t.shape
    g = np.empty((h, w), np.int32)
    rowb = np.empty(w, np.int32)
    rowtc = np.empty(h, np.bool_)
    cap = 1024
    out_d = np.empty(cap, np.int64)
    out_h = np.empty(cap, np.bool_)
    n = 0
    n_tc = 0
    for b in range(b_n):
        cnt = 0
        nroad = 0
        bad = False
        for i in range(h):
            ti = t[b, i]
            pi = p[b, i]
            kt = key_t[b, i]
            kp = key_p[b, i]
            gi = g[i]
            rc = 0
            if i == 0:
                for j in range(w):
                    v = ti[j]
                    q = pi[j]
                    bad |= (v < 0) | (v > 2) | (q < 0) | (q > 1)
                    kt[j] = v
                    kp[j] = q
                    gi[j] = 0 if v == 1 else _INF
                    rc += v == 2
                    nroad += v == 1
            else:
                gp = g[i - 1]
                for j in range(w):
                    v = ti[j]
                    q = pi[j]
                    bad |= (v < 0) | (v > 2) | (q < 0) | (q > 1)
                    kt[j] = v
                    kp[j] = q
                    gi[j] = 0 if v == 1 else min(gp[j] + 1, _INF)
                    rc += v == 2
                    nroad += v == 1
            rowtc[i] = rc > 0
            cnt += rc
        if bad:
            return out_d[:0], out_h[:0], n_tc, b
        n_tc += cnt
        if cnt == 0 or nroad == 0:
            continue
        for i in range(h - 2, -1, -1):
            gi = g[i]
            gn = g[i + 1]
            for j in range(w):
                gi[j] = min(gi[j], gn[j] + 1)
        if n + cnt > cap:
            while n + cnt > cap:
                cap *= 2
            nd = np.empty(cap, np.int64)
            nh = np.empty(cap, np.bool_)
            nd[:n] = out_d[:n]
            nh[:n] = out_h[:n]
            out_d, out_h = nd, nh
        for i in range(h):
            if not rowtc[i]:
                continue
            gi = g[i]
            r = gi[0]
            rowb[0] = r
            for j in range(1, w):
                r = min(gi[j], r + 1)
                rowb[j] = r
            for j in range(w - 2, -1, -1):
                r = min(rowb[j], r + 1)
                rowb[j] = r
            ti = t[b, i]
            pi = p[b, i]
            for j in range(w):
                if ti[j] == 2:
                    d = rowb[j]
                    if d < max_distance:
                        out_d[n] = d
                        out_h[n] = pi[j] != 0
                        n += 1
    return out_d[:n].copy(), out_h[:n].copy(), n_tc, -1


@nb.njit(cache=True, nogil=True)
def same_batch(t, p, key_t, key_p):  # pragma: no cover - jitted
    """True iff ``t == key_t`` and ``p == key_p`` element by element (stops after the first row
    holding a difference; branch-free within a row so it vectorises)."""
    b_n, h, w = t.shape
    for b in range(b_n):
        for i in range(h):
            ti = t[b, i]
            pi = p[b, i]
            kt = key_t[b, i]
            kp = key_p[b, i]
            diff = False
            for j in range(w):
                diff |= (ti[j] != kt[j]) | (pi[j] != kp[j])
            if diff:
                return False
    return True


class _Cache(threading.local):
    key: tuple | None = None  # (key_t, key_p, max_distance)
    value: tuple | None = None  # (d, hit, n_tc)


_CACHE = _Cache()


def clear_cache() -> None:
    """Drop the cached batch (its uint8 copy and TC distances)."""
    _CACHE.key = _CACHE.value = None


def tc_distances_cpu(
    target: np.ndarray, preds: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Distances and hits of the TC pixels with ``d < max_distance``, through the one-entry cache.

    Parameters
    ----------
    target : (B, H, W) integer array of labels; preds : (B, H, W) integer or bool array.

    Returns
    -------
    (d, hit, n_tc, bad): int64 (n,), bool (n,), the number of TC pixels before the filter, and -1
    or the index of the first patch with an invalid label/prediction (then nothing is cached).
    The arrays are shared with later cache hits: treat them as read-only.
    """
    # few dtype combinations, few JIT compilations: labels int64 (or uint8), predictions uint8
    # (bool viewed) or int64; anything else is widened to int64 (exact, rare)
    t = np.ascontiguousarray(
        target if target.dtype in (np.int64, np.uint8) else target.astype(np.int64)
    )
    if preds.dtype == np.bool_:
        p = np.ascontiguousarray(preds).view(np.uint8)
    else:
        p = np.ascontiguousarray(
            preds if preds.dtype in (np.int64, np.uint8) else preds.astype(np.int64)
        )
    key = _CACHE.key
    if (
        key is not None
        and key[2] == max_distance
        and key[0].shape == t.shape
        and same_batch(t, p, key[0], key[1])
    ):
        d, hit, n_tc = _CACHE.value
        return d, hit, n_tc, -1
    key_t = np.empty(t.shape, np.uint8)
    key_p = np.empty(t.shape, np.uint8)
    d, hit, n_tc, bad = _tc_kernel(t, p, max_distance, key_t, key_p)
    if bad >= 0:
        clear_cache()
        return d, hit, n_tc, int(bad)
    _CACHE.key, _CACHE.value = (key_t, key_p, max_distance), (d, hit, n_tc)
    return d, hit, n_tc, -1
