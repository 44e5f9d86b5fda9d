"""Certified nearest-centroid assignment for BoVW on CPU (numba; imported lazily by ``parametric``).

The labels are those of exact arithmetic: ``argmin_k ||x - c_k||^2`` with ties to the lowest ``k``
(the rule of ``np.argmin`` and of sklearn's ``KMeans.predict``, whose Cython scan keeps the first
minimum). They are computed at BLAS speed:

1. ``G = C @ X`` in the data's precision by BLAS (``X`` is one image's ``(D, m)`` band-major
   block, read in place: no transpose copy), ``v_k = ||c_k||^2 - 2 G_k`` (the ``||x||^2`` term is
   common to all ``k``);
2. one vectorised pass over ``k`` keeps, per pixel, the smallest ``v``, its index and the second
   smallest ``v``;
3. the rounding error of every ``v_k`` is bounded a priori (Higham's ``gamma_D`` for the dot
   product, the rounding of ``||c_k||^2`` and of the subtraction, underflow), per pixel from
   ``||x||_2 * max_k ||c_k||_2``. When the second smallest exceeds the smallest by more than twice
   the bound, the smallest is certainly the exact nearest centroid. Otherwise (a near or exact tie,
   about 0.3 % of the pixels of offset uint8 codes, none of well-separated data) the candidates
   within the window are compared by their float64 distances ``sum_d (x_d - c_kd)^2`` (each
   ``x_d - c_kd`` of float32 inputs is exact in float64), lowest index first.

A pixel that is valid but not finite (NaN/inf in any band) is flagged: its sample's histogram
becomes NaN, as a NaN propagates through every other pooling method.

This is what a float32 GEMM + ``argmin`` (the seed's ``kmeans.predict``, the numpy reference in
``benchmarks/pooling.py``) computes up to its own rounding: where two centroids lie within that
rounding of each other (distance gaps below ~1e-6 relative), such a reference may pick either, and
this kernel picks the exact one.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch
from torch import Tensor

_SAFETY = 1.01  # slack on the a-priori error bound (covers the float64 rounding of the bound)


def error_coefficients(u: float, d: int, tiny: float) -> tuple[float, float, float]:
    """Coefficients ``(a, b, eta)`` of the per-pixel bound ``a * Cmax * ||x|| + b * Cmax^2 + eta``.

    It bounds ``|fl(fl(||c||^2) - 2 fl(c . x)) - (||c||^2 - 2 c . x)|`` for a dot product of
    length ``d`` computed with unit roundoff ``u`` (any summation order, FMA or not; Higham's
    ``gamma_d``), the rounding of ``||c||^2`` and of the subtraction, and underflow (``tiny``:
    the smallest subnormal). ``|c . x| <= ||c|| ||x||`` (Cauchy-Schwarz).
    """
    gam = d * u / (1.0 - d * u)
    a = (2.0 * gam + 2.0 * u * (1.0 + gam)) * _SAFETY
    b = (2.0 * u + u * u) * _SAFETY
    eta = (4.0 * d + 8.0) * tiny
    return a, b, eta


def _dtype_coefficients(dtype: np.dtype, d: int) -> tuple[float, float, float]:
    fi = np.finfo(dtype)
    return error_coefficients(float(fi.eps) / 2.0, d, float(fi.smallest_subnormal))


@nb.njit(cache=True, nogil=True, inline="always")
def _update(v, kq, o1, o2, oa):  # pragma: no cover - jitted
    """One step of the (smallest, its index, second smallest) scan; ties keep the lower index."""
    lt = v < o1
    n2 = o1 if lt else (v if v < o2 else o2)
    na = kq if lt else oa
    n1 = v if lt else o1
    return n1, n2, na


@nb.njit(cache=True, nogil=True)
def _sq_norms(xi, xn):  # pragma: no cover - jitted
    """xn[j] = sum_d xi[d, j]^2 in float64 (four bands per pass over xn)."""
    d_, m = xi.shape
    xn[:] = 0.0
    dd = 0
    while dd + 4 <= d_:
        r0, r1, r2, r3 = xi[dd], xi[dd + 1], xi[dd + 2], xi[dd + 3]
        for j in range(m):
            v0, v1 = np.float64(r0[j]), np.float64(r1[j])
            v2, v3 = np.float64(r2[j]), np.float64(r3[j])
            xn[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
        dd += 4
    while dd < d_:
        r0 = xi[dd]
        for j in range(m):
            v0 = np.float64(r0[j])
            xn[j] += v0 * v0
        dd += 1


@nb.njit(cache=True, nogil=True)
def _scan(gi, const, b1, b2, a1):  # pragma: no cover - jitted
    """Per column j of gi (K, m): smallest ``const[k] - 2 gi[k, j]``, its first index, and the
    second smallest. Four rows per pass over the state (vectorised over j, state in registers)."""
    k_, m = gi.shape
    two = gi.dtype.type(2.0)
    c0 = const[0]
    g0 = gi[0]
    for j in range(m):
        b1[j] = c0 - two * g0[j]
        b2[j] = np.inf
        a1[j] = 0
    kk = 1
    while kk + 4 <= k_:
        ca, cb, cc, cd = const[kk], const[kk + 1], const[kk + 2], const[kk + 3]
        ga, gb, gc, gd = gi[kk], gi[kk + 1], gi[kk + 2], gi[kk + 3]
        ka = np.int32(kk)
        for j in range(m):
            o1, o2, oa = b1[j], b2[j], a1[j]
            o1, o2, oa = _update(ca - two * ga[j], ka, o1, o2, oa)
            o1, o2, oa = _update(cb - two * gb[j], ka + 1, o1, o2, oa)
            o1, o2, oa = _update(cc - two * gc[j], ka + 2, o1, o2, oa)
            o1, o2, oa = _update(cd - two * gd[j], ka + 3, o1, o2, oa)
            b1[j], b2[j], a1[j] = o1, o2, oa
        kk += 4
    while kk < k_:
        ca = const[kk]
        ga = gi[kk]
        ka = np.int32(kk)
        for j in range(m):
            o1, o2, oa = _update(ca - two * ga[j], ka, b1[j], b2[j], a1[j])
            b1[j], b2[j], a1[j] = o1, o2, oa
        kk += 1


@nb.njit(cache=True, nogil=True)
def assign_block(
    g, x, c64, const, cmax, coef_x, coef_c, eta, vmax, valid, labels, counts, bad
):  # pragma: no cover - jitted
    """Certified nearest centroids of a block of pixels; accumulates histograms.

    Parameters
    ----------
    g : (b, K, m) float32/float64, ``C @ X`` per image as computed by BLAS
    x : (b, D, m) same dtype, the pixels (any strides)
    c64 : (K, D) float64 centroids (exact copy of the centroids ``g`` was computed with)
    const : (K,) dtype of ``g``, ``||c_k||^2`` rounded to that dtype
    cmax : float, ``max_k ||c_k||_2``
    coef_x, coef_c, eta : floats from :func:`error_coefficients`
    vmax : float, a pixel with ``cmax * (cmax + 2 ||x||) > vmax`` may overflow ``g``'s dtype: its
        candidates are all centroids
    valid : (b, m) bool, or shape (0, 0) for all pixels valid
    labels : (b, m) int64 output; -1 for invalid (masked out or non-finite) pixels
    counts : (b, K) float64, incremented by 1 at each valid pixel's label
    bad : (b,) bool, set for a sample with a valid non-finite pixel

    Returns
    -------
    int : pixels resolved by the float64 comparison (near or exact ties)
    """
    nb_, k_, m = g.shape
    d_ = x.shape[1]
    has_mask = valid.shape[0] > 0
    two = g.dtype.type(2.0)
    b1 = np.empty(m, g.dtype)
    b2 = np.empty(m, g.dtype)
    a1 = np.empty(m, np.int32)
    xn = np.empty(m, np.float64)
    n_resolved = 0
    for i in range(nb_):
        gi = g[i]
        xi = x[i]
        _sq_norms(xi, xn)
        _scan(gi, const, b1, b2, a1)
        for j in range(m):
            if has_mask and not valid[i, j]:
                labels[i, j] = -1
                continue
            xnorm = math.sqrt(xn[j])
            if not math.isfinite(xnorm):
                labels[i, j] = -1
                bad[i] = True
                continue
            err = coef_x * cmax * xnorm + coef_c * cmax * cmax + eta
            lo = np.float64(b1[j])
            lab = np.int64(a1[j])
            fits = cmax * (cmax + 2.0 * xnorm) <= vmax and math.isfinite(lo)
            if not (fits and np.float64(b2[j]) - lo > 2.0 * err):
                # near or exact tie (or overflow): compare the candidates in float64
                n_resolved += 1
                thr = lo + 2.0 * err if fits else np.inf
                best = np.inf
                lab = -1
                for kk in range(k_):
                    vk = np.float64(const[kk] - two * gi[kk, j])
                    if vk <= thr or thr == np.inf:
                        s = 0.0
                        for dd in range(d_):
                            t = np.float64(xi[dd, j]) - c64[kk, dd]
                            s += t * t
                        if s < best:
                            best = s
                            lab = kk
                if lab < 0:  # every distance overflowed float64
                    labels[i, j] = -1
                    bad[i] = True
                    continue
            labels[i, j] = lab
            counts[i, lab] += 1.0
    return n_resolved


#: elements of ``G`` per BLAS call (``K x m`` columns x images): 1 MiB of float32, cache-sized
_BLOCK = 1 << 18


def assign_pixels(
    x: np.ndarray, centroids: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Certified nearest centroids and per-sample label counts.

    Parameters
    ----------
    x : ndarray (B, D, N) float32 or float64, the pixels of each sample band-major (any strides;
        a C-contiguous ``(B, D, H, W)`` raster reshaped, or a transposed ``(N, D)`` pixel matrix)
    centroids : ndarray (K, D), cast to x's dtype (the reference compares in the data's dtype)
    valid : bool ndarray (B, N), optional; invalid pixels get label -1 and are not counted

    Returns
    -------
    labels : int64 (B, N)
    counts : float64 (B, K) valid pixels per label
    bad : bool (B,) samples with a valid non-finite pixel
    n_resolved : int, pixels settled by the float64 comparison (near or exact ties)
    """
    b, d, n = x.shape
    c = np.ascontiguousarray(centroids, dtype=x.dtype)
    k = c.shape[0]
    c64 = c.astype(np.float64)
    sq = (c64 * c64).sum(1)
    with np.errstate(over="ignore"):
        const = sq.astype(x.dtype)  # inf where |c|^2 overflows: such pixels go to float64
    cmax = float(np.sqrt(sq.max())) if k else 0.0
    coef_x, coef_c, eta = _dtype_coefficients(x.dtype, d)
    vmax = float(np.finfo(x.dtype).max) / 8.0
    valid = np.zeros((0, 0), np.bool_) if valid is None else valid
    labels = np.empty((b, n), np.int64)
    counts = np.zeros((b, k), np.float64)
    bad = np.zeros(b, np.bool_)
    m = max(1, min(n, _BLOCK // max(k, 1)))
    bi = max(1, _BLOCK // max(k * m, 1))
    gbuf = np.empty((bi, k, m), x.dtype)
    resolved = 0
    for s in range(0, b, bi):
        e = min(b, s + bi)
        for n0 in range(0, n, m):
            n1 = min(n, n0 + m)
            xb = x[s:e, :, n0:n1]
            gb = gbuf[: e - s, :, : n1 - n0]
            with np.errstate(over="ignore", invalid="ignore"):
                np.matmul(c, xb, out=gb)
            resolved += assign_block(
                gb,
                xb,
                c64,
                const,
                cmax,
                coef_x,
                coef_c,
                eta,
                vmax,
                valid[s:e, n0:n1] if valid.shape[0] else valid,
                labels[s:e, n0:n1],
                counts[s:e],
                bad[s:e],
            )
    return labels, counts, bad, resolved


# ----------------------------------------------------------------------------------------------
# torch (GPU) path: the same certificate with torch ops
# ----------------------------------------------------------------------------------------------
def _unit_roundoff(x: Tensor) -> float:
    """Unit roundoff of a matmul on x's device and dtype, per product.

    TF32 (``allow_tf32`` or matmul precision "high") rounds both factors to 11 bits, bf16
    ("medium") to 8: each product is then off by up to ``2**-10`` / ``2**-7`` relative.
    """
    if x.dtype == torch.float64:
        return 2.0**-53
    precision = torch.get_float32_matmul_precision()
    if x.device.type == "cuda" and (
        torch.backends.cuda.matmul.allow_tf32 or precision != "highest"
    ):
        return 2.0**-7 if precision == "medium" else 2.0**-10
    return 2.0**-24


def assign_torch(x: Tensor, cen: Tensor) -> tuple[Tensor, Tensor]:
    """Certified nearest centroids with torch ops (GPU path; same rule as ``_bovw``).

    x (b, D, N), cen (K, D) -> labels (b, N) long, non-finite pixels (b, N) bool. A matmul gives
    ``v = |c|^2 - 2 c.x``; pixels whose two smallest ``v`` are closer than twice the a-priori
    rounding bound are settled by float64 distances over the candidates, lowest index first.
    """
    b, d, n = x.shape
    k = cen.shape[0]
    fi = torch.finfo(x.dtype)
    coef_x, coef_c, eta = error_coefficients(_unit_roundoff(x), d, fi.smallest_normal * fi.eps)
    sq = (cen.to(torch.float64) ** 2).sum(1)
    v = torch.matmul(cen, x).mul_(-2.0).add_(sq.to(x.dtype)[:, None])  # (b, K, N)
    xnorm = x.to(torch.float64).norm(dim=1)  # (b, N)
    finite = torch.isfinite(xnorm)
    cmax = float(sq.max().sqrt())
    err = coef_x * cmax * xnorm + (coef_c * cmax**2 + eta)
    if k > 1:
        top, idx = v.topk(2, dim=1, largest=False)  # (b, 2, N)
        lo = top[:, 0].to(torch.float64)
        fits = (cmax * (cmax + 2 * xnorm) <= fi.max / 8) & torch.isfinite(lo)
        lo = torch.where(fits, lo, math.inf)  # overflow possible: every centroid is a candidate
        amb = ~((top[:, 1].to(torch.float64) - lo) > 2 * err) & finite
        labels = idx[:, 0]
    else:
        lo = torch.full_like(xnorm, math.inf)
        amb = torch.zeros_like(finite)
        labels = torch.zeros((b, n), dtype=torch.long, device=x.device)
    if bool(amb.any()):
        ii, jj = torch.nonzero(amb, as_tuple=True)
        xa = x[ii, :, jj].to(torch.float64)  # (A, D)
        dist = ((xa[:, None, :] - cen.to(torch.float64)[None]) ** 2).sum(-1)  # (A, K)
        lo_a = lo[ii, jj]
        thr = torch.where(torch.isfinite(lo_a), lo_a + 2 * err[ii, jj], math.inf)
        cand = (v[ii, :, jj].to(torch.float64) <= thr[:, None]) | torch.isinf(thr)[:, None]
        labels = labels.clone()
        labels[ii, jj] = torch.where(cand, dist, math.inf).argmin(1)  # first minimum
    return labels, ~finite
