"""Per-chunk shared statistics behind :func:`geoemb.pooling.functional.pool_training_free_many`.

:class:`_Chunk` lazily computes, once per chunk of the batch, every statistic the requested pooling
methods need (moments, extremes, centre-weighted mean, covariance, sorted values); see the
implementation notes of :mod:`geoemb.pooling.functional`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_NO_MASK = np.zeros((0, 0), np.bool_)
#: methods whose statistics come from the fused CPU moments pass
_FUSED = frozenset({"std", "gem", "mean_std", "stats", "flattened_cov"})
_NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


def _moments_kernel():
    """The fused CPU moments module (numba), or None when numba is not installed."""
    try:
        from geoemb.pooling import _moments
    except ImportError:  # pragma: no cover - numba is a core dependency
        return None
    return _moments


def center_weights(
    h: int, w: int, device: torch.device | str = "cpu", dtype=torch.float32
) -> Tensor:
    """Gaussian centre weights of the reference, shape (H, W), summing to 1.

    ``w[y, x] = exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2))`` with ``cx = (W-1)/2``,
    ``cy = (H-1)/2`` and ``sigma = min(H, W) / 4``; computed in float64 then cast.
    """
    sigma = min(h, w) / 4.0
    yy = torch.arange(h, dtype=torch.float64)[:, None] - (h - 1) / 2.0
    xx = torch.arange(w, dtype=torch.float64)[None, :] - (w - 1) / 2.0
    wt = torch.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
    wt = wt / wt.sum()
    return wt.to(device=device, dtype=dtype)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``torch.matmul``; on CPU without autograd it runs numpy's matmul (OpenBLAS), which is
    1.5-5x faster than torch's MKL GEMM on AMD CPUs for these shapes.  Results are equal up to
    float rounding."""
    if a.device.type == "cpu" and not (a.requires_grad or b.requires_grad):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return torch.matmul(a, b)


# ----------------------------------------------------------------------------------------------
# shared per-chunk statistics
# ----------------------------------------------------------------------------------------------
class _Chunk:
    """Lazily computed statistics of one chunk ``x`` (b, D, N) with optional mask (b, N)."""

    def __init__(
        self, x: Tensor, mask: Tensor | None, h: int, w: int, methods: Sequence[str] = ()
    ) -> None:
        self.x = x
        self.mask = mask
        self.h, self.w = h, w
        self._cache: dict[str, object] = {}
        n_pix = x.shape[-1]
        if mask is None:
            self.counts = torch.full((x.shape[0],), n_pix, device=x.device, dtype=torch.long)
        else:
            self.counts = mask.sum(-1)
        # CPU without autograd, when a 2nd/3rd moment is wanted: one fused numba pass gives the
        # float64 mean, centred sum of squares and sum of cubes (mean alone stays a torch sum)
        self.kernel = None
        if x.device.type == "cpu" and not x.requires_grad and _FUSED.intersection(methods):
            self.kernel = _moments_kernel()

    def _np_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(b*D, N) numpy view of x and the (b, N) numpy mask (or a (0, 0) placeholder)."""
        b, d, n = self.x.shape
        xr = np.ascontiguousarray(self.x.reshape(b * d, n).numpy())
        mr = _NO_MASK if self.mask is None else np.ascontiguousarray(self.mask.numpy())
        return xr, mr

    def moments64(self) -> dict[str, np.ndarray]:
        """float64 ``mean``, ``m2`` (centred sum of squares), ``s3`` (sum of cubes) per (sample,
        band), shape (b, D), from one fused pass (:func:`geoemb.pooling._moments.row_moments`)."""

        def f():
            b, d, _ = self.x.shape
            xr, mr = self._np_rows()
            vals = self.kernel.row_moments(xr, mr, d, self.counts.numpy())
            return {k: v.reshape(b, d) for k, v in zip(("mean", "m2", "s3"), vals)}

        return self._get("moments64", f)

    def _from_moments(self, fn) -> Tensor:
        return torch.from_numpy(fn(self.moments64()).astype(_NP_DTYPE[self.x.dtype], copy=False))

    def _get(self, key: str, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    # masked helpers ---------------------------------------------------------------------------
    @property
    def m3(self) -> Tensor:  # (b, 1, N) bool
        return self.mask[:, None, :]

    @property
    def xz(self) -> Tensor:
        """x with invalid pixels set to 0 (so NaN nodata cannot leak)."""
        if self.mask is None:
            return self.x
        return self._get("xz", lambda: torch.where(self.m3, self.x, self.x.new_zeros(())))

    @property
    def n(self) -> Tensor:  # (b, 1) float counts, clamped >= 1
        return self._get("n", lambda: self.counts.clamp_min(1).to(self.x.dtype)[:, None])

    # moments -----------------------------------------------------------------------------------
    def mean(self) -> Tensor:
        if self.kernel is not None:
            return self._get("mean", lambda: self._from_moments(lambda m: m["mean"]))
        return self._get("mean", lambda: self.xz.sum(-1) / self.n)

    def max(self) -> Tensor:
        def f():
            if self.mask is None:
                return self.x.amax(-1)
            return torch.where(self.m3, self.x, self.x.new_full((), -math.inf)).amax(-1)

        return self._get("max", f)

    def min(self) -> Tensor:
        def f():
            if self.mask is None:
                return self.x.amin(-1)
            return torch.where(self.m3, self.x, self.x.new_full((), math.inf)).amin(-1)

        return self._get("min", f)

    def centered(self) -> Tensor:
        def f():
            c = self.x - self.mean()[..., None]
            if self.mask is not None:
                c = torch.where(self.m3, c, c.new_zeros(()))
            return c

        return self._get("centered", f)

    def _n64(self) -> np.ndarray:
        return self.counts.clamp_min(1).numpy().astype(np.float64)[:, None]

    def std(self) -> Tensor:
        if self.kernel is not None:
            return self._get(
                "std", lambda: self._from_moments(lambda m: np.sqrt(m["m2"] / self._n64()))
            )

        def f():
            c = self.centered()
            ss = torch.linalg.vector_norm(c, dim=-1) ** 2
            return torch.sqrt(ss / self.n)

        return self._get("std", f)

    def gem(self) -> Tensor:
        if self.kernel is not None:

            def g(m):
                mean3 = m["s3"] / self._n64()  # sum x^3 == sum sign(x)|x|^3
                return np.sign(mean3) * np.abs(mean3) ** (1.0 / 3.0)

            return self._get("gem", lambda: self._from_moments(g))

        def f():
            xz = self.xz
            s3 = torch.linalg.vecdot(xz * xz, xz)
            m = s3 / self.n
            return torch.sign(m) * m.abs().pow(1.0 / 3.0)

        return self._get("gem", f)

    def center_weighted_mean(self) -> Tensor:
        def f():
            wt = center_weights(self.h, self.w, self.x.device, self.x.dtype).reshape(-1)
            if self.mask is None:
                return torch.matmul(self.x, wt)
            wm = wt[None, :] * self.mask.to(self.x.dtype)  # (b, N)
            num = torch.matmul(self.xz, wm[:, :, None])[..., 0]
            return num / wm.sum(-1, keepdim=True)

        return self._get("cwm", f)

    def cov_triu(self) -> Tensor:
        """Covariance upper triangle, centred and accumulated in float64 (as the reference's
        ``np.cov``), cast to the input dtype at the end."""

        def f():
            b, d, n = self.x.shape
            iu = torch.triu_indices(d, d, device=self.x.device)
            flat = iu[0] * d + iu[1]
            if self.kernel is not None:  # CPU: per-sample float64 centring + BLAS dsyrk
                xr, mr = self._np_rows()
                mask = None if self.mask is None else mr
                cov = self.kernel.cov64(xr.reshape(b, d, n), mask, self.moments64()["mean"])
                denom = np.maximum(self.counts.numpy() - 1, 1).astype(np.float64)[:, None]
                out = cov.reshape(b, d * d)[:, flat.numpy()] / denom
                return torch.from_numpy(out.astype(_NP_DTYPE[self.x.dtype]))
            x64 = self.x.double()
            if self.mask is not None:
                x64 = torch.where(self.m3, x64, x64.new_zeros(()))
            n64 = self.counts.clamp_min(1).double()[:, None, None]
            c = x64 - x64.sum(-1, keepdim=True) / n64
            if self.mask is not None:
                c = torch.where(self.m3, c, c.new_zeros(()))
            cov = matmul(c, c.transpose(1, 2))
            denom = (self.counts - 1).clamp_min(1).to(torch.float64)[:, None]
            return (cov.reshape(b, d * d)[:, flat] / denom).to(self.x.dtype)

        return self._get("cov", f)

    # quantiles ---------------------------------------------------------------------------------
    def sorted(self) -> Tensor:
        """Values sorted ascending along pixels; invalid pixels (+inf) at the end."""

        def f():
            xs = self.x
            if self.mask is not None:
                xs = torch.where(self.m3, xs, xs.new_full((), math.inf))
            if xs.device.type == "cpu" and not xs.requires_grad:
                # numpy's SIMD sort is several times faster than torch.sort on CPU
                return torch.from_numpy(np.sort(xs.numpy(), axis=-1))
            return torch.sort(xs, dim=-1).values

        return self._get("sorted", f)

    def quantile(self, q_percent: float) -> Tensor:
        """Linear-interpolation percentile (numpy ``method="linear"``) of the valid pixels."""

        def f():
            s = self.sorted()
            q = q_percent / 100.0
            nm1 = (self.counts - 1).clamp_min(0).to(torch.float64)
            virt = q * nm1  # (b,)
            lo = torch.floor(virt)
            gamma = (virt - lo).to(s.dtype)[:, None]
            lo_i = lo.to(torch.long)
            hi_i = torch.minimum(lo_i + 1, nm1.to(torch.long))
            d = s.shape[1]
            a = torch.gather(s, -1, lo_i[:, None, None].expand(-1, d, 1))[..., 0]
            b = torch.gather(s, -1, hi_i[:, None, None].expand(-1, d, 1))[..., 0]
            diff = b - a
            # numpy's _lerp: a + diff*t, or b - diff*(1-t) for t >= 0.5
            return torch.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)

        return self._get(f"q{q_percent}", f)
