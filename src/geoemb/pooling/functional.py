"""Training-free pooling of embedding rasters, batched in torch.

All functions take an embedding raster batch ``x`` of shape ``(B, D, H, W)`` (band-first, as
rasterio reads) and an optional validity mask of shape ``(B, H, W)`` (bool, True = valid pixel),
and return pooled features of shape ``(B, F)``.  Definitions follow the GeoPool reference
(``isaaccorley/geopool`` ``src/geopool/pool.py``, see ``reference/geopool.md`` section 5):

==========================  =============  ====================================================
key                         F              definition (over the valid pixels of each sample)
==========================  =============  ====================================================
``mean``                    D              mean
``max``                     D              max
``std``                     D              population std (ddof=0)
``gem``                     D              ``m = mean(sign(x)|x|^3)``, out ``sign(m)|m|^(1/3)``
``center_weighted_mean``    D              Gaussian weights, ``sigma = min(H, W) / 4``,
                                           centre ``((W-1)/2, (H-1)/2)``, normalised to sum 1
``mean_std``                2D             ``[mean, std]``
``mean_max``                2D             ``[mean, max]``
``median_iqr``              2D             ``[median, q75 - q25]`` (linear interpolation)
``stats``                   4D             ``[min, max, mean, std]``
``percentiles``             5D             percentile-major ``[p10, p25, p50, p75, p90]``
``flattened_cov``           D(D+1)/2       covariance (ddof=1), row-major upper triangle incl.
                                           the diagonal
==========================  =============  ====================================================

Masked semantics: every statistic equals the reference computed on only the valid pixels of the
sample.  For ``center_weighted_mean`` the Gaussian weights keep their positions on the full
``H x W`` grid and are renormalised over the valid pixels.  For ``flattened_cov`` with a single
valid pixel the denominator is ``max(n - 1, 1)`` (the README formula), i.e. a zero matrix.

Implementation notes: statistics are computed per chunk of the batch over a ``(b, D, H*W)`` view
and shared between methods by :func:`pool_many`.  On CPU without autograd, whenever a second or
third moment is wanted (``std``, ``mean_std``, ``stats``, ``gem``, ``flattened_cov``), the mean,
centred sum of squares and sum of cubes come from ONE fused pass (:mod:`geoemb.pooling._moments`,
numba) accumulating in float64 around a per-row shift; otherwise (GPU, autograd, ``mean`` alone)
they are torch reductions (float32, two-pass centring for the variance).  ``max``/``min`` are torch
reductions.  Covariance is centred and accumulated in float64 like the reference's ``np.cov`` (on
CPU per sample through a cached float64 buffer and BLAS ``dsyrk``) and cast back, so a float32
cache of the reference and ours agree to float32 rounding.  All quantiles come from one sort
(numpy's SIMD sort on CPU, ``torch.sort`` on other devices or when gradients are needed).  Results
are float32 (float64 if the input is float64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from geoemb.pooling._chunk import _Chunk, center_weights, matmul  # noqa: F401 (re-exported)

TRAINING_FREE: list[str] = [
    "mean",
    "max",
    "std",
    "gem",
    "center_weighted_mean",
    "mean_std",
    "mean_max",
    "median_iqr",
    "stats",
    "percentiles",
    "flattened_cov",
]

PERCENTILES: tuple[float, ...] = (10.0, 25.0, 50.0, 75.0, 90.0)

_EMPTY_POLICIES = ("raise", "nan")


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def as_raster(x: Tensor | np.ndarray, name: str = "x") -> Tensor:
    """Validate an embedding raster batch and return it as a floating tensor.

    Parameters
    ----------
    x : Tensor or ndarray, shape (B, D, H, W)
        Integer inputs (e.g. uint8 AEF codes) are converted to float32, as the reference reads
        them with ``out_dtype="float32"``.

    Returns
    -------
    Tensor, shape (B, D, H, W), float32 or float64 (float16/bfloat16 are promoted to float32).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"pooling: {name} must be a torch.Tensor of shape (B, D, H, W), got {type(x)}"
        )
    if x.ndim != 4:
        raise ValueError(
            f"pooling: {name} must have shape (B, D, H, W) (4 dims), got ndim={x.ndim} "
            f"shape={tuple(x.shape)}; add a batch dim with x[None] for a single raster"
        )
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    return x


def check_mask(mask: Tensor | np.ndarray | None, x: Tensor, name: str = "mask") -> Tensor | None:
    """Validate a validity mask against ``x``; returns a bool tensor (B, H, W) on x's device."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"pooling: {name} must be a bool tensor of shape (B, H, W), got {type(mask)}"
        )
    b, _, h, w = x.shape
    if tuple(mask.shape) != (b, h, w):
        raise ValueError(
            f"pooling: {name} must have shape (B, H, W) = {(b, h, w)} to match x "
            f"{tuple(x.shape)}, got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"pooling: {name} must be a bool tensor (True = valid), got {mask.dtype}")
    if mask.device != x.device:
        raise ValueError(f"pooling: {name} is on {mask.device} but x is on {x.device}")
    return mask


def check_empty(counts: Tensor, empty: str, offset: int = 0) -> Tensor | None:
    """Handle samples with no valid pixel.

    Returns a bool (b,) tensor of empty samples (None if there are none); raises for
    ``empty="raise"``.
    """
    if empty not in _EMPTY_POLICIES:
        raise ValueError(f"pooling: empty must be one of {_EMPTY_POLICIES}, got {empty!r}")
    is_empty = counts == 0
    if not bool(is_empty.any()):
        return None
    if empty == "raise":
        idx = (torch.nonzero(is_empty).flatten() + offset).tolist()
        shown = ", ".join(map(str, idx[:10])) + (" ..." if len(idx) > 10 else "")
        raise ValueError(
            f"pooling: sample(s) at batch index {shown} have no valid pixel (mask all False); "
            "pass empty='nan' to get NaN rows instead"
        )
    return is_empty


def _method_from_chunk(ch: _Chunk, method: str) -> Tensor:
    if method == "mean":
        return ch.mean()
    if method == "max":
        return ch.max()
    if method == "std":
        return ch.std()
    if method == "gem":
        return ch.gem()
    if method == "center_weighted_mean":
        return ch.center_weighted_mean()
    if method == "mean_std":
        return torch.cat([ch.mean(), ch.std()], dim=-1)
    if method == "mean_max":
        return torch.cat([ch.mean(), ch.max()], dim=-1)
    if method == "median_iqr":
        return torch.cat([ch.quantile(50.0), ch.quantile(75.0) - ch.quantile(25.0)], dim=-1)
    if method == "stats":
        return torch.cat([ch.min(), ch.max(), ch.mean(), ch.std()], dim=-1)
    if method == "percentiles":
        return torch.cat([ch.quantile(p) for p in PERCENTILES], dim=-1)
    if method == "flattened_cov":
        return ch.cov_triu()
    raise ValueError(unknown_method_message(method))


def unknown_method_message(method: str) -> str:
    return f"pooling: unknown training-free method {method!r}; valid: {', '.join(TRAINING_FREE)}"


def _default_chunk(x: Tensor) -> int:
    _, d, h, w = x.shape
    per = max(d * h * w, 1)
    target = 2**23 if x.device.type == "cpu" else 2**27  # elements per chunk
    return max(1, target // per)


def pool_training_free_many(
    x: Tensor,
    methods: Sequence[str],
    mask: Tensor | None = None,
    empty: str = "raise",
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Compute several training-free poolings at once, sharing intermediate statistics.

    Parameters
    ----------
    x : Tensor, shape (B, D, H, W)
    methods : sequence of training-free method keys
    mask : bool Tensor, shape (B, H, W), optional (True = valid)
    empty : {"raise", "nan"}
        What to do with a sample that has no valid pixel.
    chunk_size : int, optional
        Samples per internal chunk (bounds temporary memory); default from the tensor size.

    Returns
    -------
    dict method -> Tensor (B, F_method)
    """
    x = as_raster(x)
    mask = check_mask(mask, x)
    for m in methods:
        if m not in TRAINING_FREE:
            raise ValueError(unknown_method_message(m))
    if empty not in _EMPTY_POLICIES:
        raise ValueError(f"pooling: empty must be one of {_EMPTY_POLICIES}, got {empty!r}")
    bsz, d, h, w = x.shape
    xf = x.reshape(bsz, d, h * w)
    mf = None if mask is None else mask.reshape(bsz, h * w)
    step = chunk_size or _default_chunk(x)
    outs: dict[str, list[Tensor]] = {m: [] for m in methods}
    for s in range(0, bsz, step):
        mc = None if mf is None else mf[s : s + step]
        ch = _Chunk(xf[s : s + step], mc, h, w, methods)
        empty_rows = check_empty(ch.counts, empty, offset=s) if mc is not None else None
        for m in methods:
            out = _method_from_chunk(ch, m)
            if empty_rows is not None:
                out = torch.where(empty_rows[:, None], out.new_full((), math.nan), out)
            outs[m].append(out)
    if bsz == 0:
        return {m: x.new_zeros((0, training_free_dim(m, d))) for m in methods}
    return {m: torch.cat(v, dim=0) for m, v in outs.items()}


def training_free_dim(method: str, d: int) -> int:
    """Output feature dimension of a training-free method for input dimension ``d``."""
    mult = {
        "mean": 1,
        "max": 1,
        "std": 1,
        "gem": 1,
        "center_weighted_mean": 1,
        "mean_std": 2,
        "mean_max": 2,
        "median_iqr": 2,
        "stats": 4,
        "percentiles": 5,
    }
    if method == "flattened_cov":
        return d * (d + 1) // 2
    if method in mult:
        return mult[method] * d
    raise ValueError(unknown_method_message(method))


def _single(method: str):
    def fn(x: Tensor, mask: Tensor | None = None, empty: str = "raise") -> Tensor:
        return pool_training_free_many(x, [method], mask=mask, empty=empty)[method]

    fn.__name__ = f"pool_{method}"
    fn.__doc__ = (
        f"``{method}`` pooling: x (B, D, H, W), mask (B, H, W) bool or None -> (B, F) with "
        f"F = output_dim({method!r}, D)."
    )
    return fn


pool_mean = _single("mean")
pool_max = _single("max")
pool_std = _single("std")
pool_gem = _single("gem")
pool_center_weighted_mean = _single("center_weighted_mean")
pool_mean_std = _single("mean_std")
pool_mean_max = _single("mean_max")
pool_median_iqr = _single("median_iqr")
pool_stats = _single("stats")
pool_percentiles = _single("percentiles")
pool_flattened_cov = _single("flattened_cov")
