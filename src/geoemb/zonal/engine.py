"""The pixel work of the zonal pipeline, one *partition* of polygons at a time.

A partition is a set of polygons that share their first tile (:func:`plan_partitions`); its task
reprojects them to their tiles' CRSs, reads each tile once per *group* of nearby polygons (the
union window of the group, at most :data:`GROUP_PIXELS` pixels), masks every polygon on its own
window inside it (:mod:`geoemb.zonal.masks`), keeps the valid pixels and pools them. A polygon's
result never depends on the other polygons of its partition or group, so the in-process path and
any Dask layout give identical rows.

Simple statistics (``mean``, ``std``, ``min``, ``max``, ``mean_std``, ``mean_max``, ``stats``) are
computed with numpy in float64 (the per-polygon float64 torch call dominated the run time); every
other :mod:`geoemb.pooling` method goes through :func:`geoemb.pooling.pool`. With
``weighting="coverage"`` each pixel is weighted by the fraction of its area inside the polygon
(exactextract's coverage fraction) and the statistics are weighted (population std).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
import torch
from rasterio.errors import RasterioError

from geoemb.errors import InputError
from geoemb.pooling import pool
from geoemb.zonal.checks import nodata_code
from geoemb.zonal.masks import centre_mask, coverage_fractions, to_pixel_space
from geoemb.zonal.sources import TileMeta, decode_values

__all__ = [
    "FAST_METHODS",
    "GROUP_PIXELS",
    "WEIGHTED_METHODS",
    "Job",
    "PartResult",
    "pool_pixels",
    "run_partition",
]

#: Pixel budget of one group's union window (per tile read).
GROUP_PIXELS = 1 << 20
#: Methods computed with numpy (float64) instead of a torch call per polygon.
FAST_METHODS = ("mean", "std", "min", "max", "mean_std", "mean_max", "stats")
#: Methods available with ``weighting="coverage"``.
WEIGHTED_METHODS = FAST_METHODS
WEIGHTINGS = ("centre", "coverage")

_RASTERIZE_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a partition task needs besides its polygons (picklable, sent once per worker)."""

    metas: dict[int, TileMeta]
    method: str
    out_dim: int
    decode: str = "raw"
    nodata: float | None = None
    all_touched: bool = False
    weighting: str = "centre"
    state: Any = None


@dataclasses.dataclass
class PartResult:
    """Rows computed by one partition: global row ids (n,), features (n, F) float32, valid pixel
    counts (n,) int64, contributing tiles (n,) int64, and ``{tile: [pixels inside, valid]}``."""

    rows: np.ndarray
    feats: np.ndarray
    counts: np.ndarray
    ntiles: np.ndarray
    tally: dict[str, np.ndarray]


def _weighted(x: np.ndarray, w: np.ndarray | None, part: str) -> np.ndarray:
    if part == "min":
        return x.min(axis=0)
    if part == "max":
        return x.max(axis=0)
    if w is None:
        mean = x.mean(axis=0)
        if part == "mean":
            return mean
        c = x - mean
        return np.sqrt(np.einsum("nd,nd->d", c, c) / x.shape[0])
    sw = w.sum()
    mean = (w @ x) / sw
    if part == "mean":
        return mean
    c = x - mean
    return np.sqrt((w @ (c * c)) / sw)


_FAST_PARTS = {
    "mean": ("mean",), "std": ("std",), "min": ("min",), "max": ("max",),
    "mean_std": ("mean", "std"), "mean_max": ("mean", "max"),
    "stats": ("min", "max", "mean", "std"),
}  # fmt: skip


def pool_pixels(
    pixels: np.ndarray,
    method: str,
    out_dim: int,
    state: Any = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Pool ``pixels`` (N, D) into one (F,) float32 vector (NaNs when ``N == 0``).

    ``FAST_METHODS`` are computed with numpy in float64; others with :func:`geoemb.pooling.pool`
    on a 1×N strip ``(1, D, 1, N)`` in float64 (spatial-layout methods such as
    ``center_weighted_mean`` are not meaningful for polygons). ``weights`` (N,) > 0: coverage
    weights (``FAST_METHODS`` only; min/max ignore them).
    """
    if pixels.shape[0] == 0:
        return np.full(out_dim, np.nan, dtype=np.float32)
    if method in _FAST_PARTS:
        x = pixels.astype(np.float64)
        parts = [_weighted(x, weights, p) for p in _FAST_PARTS[method]]
        return np.concatenate(parts).astype(np.float32)
    if weights is not None:
        raise InputError(f"weighting='coverage' supports {list(WEIGHTED_METHODS)}, not {method!r}")
    x = torch.from_numpy(pixels.T.copy()).to(torch.float64)
    out = pool(x.reshape(1, pixels.shape[1], 1, pixels.shape[0]), method, mask=None, state=state)
    return out.reshape(-1).detach().cpu().numpy().astype(np.float32)


def _window(meta: TileMeta, geom: Any) -> tuple[int, int, int, int]:
    """``(r0, c0, r1, c1)`` of the pixels the polygon's bounds touch, clipped to the tile."""
    minx, miny, maxx, maxy = geom.bounds
    t = meta.transform
    cols = ((minx - t.c) / t.a, (maxx - t.c) / t.a)
    rows = ((miny - t.f) / t.e, (maxy - t.f) / t.e)
    c0 = max(int(np.floor(min(cols))), 0)
    r0 = max(int(np.floor(min(rows))), 0)
    c1 = min(int(np.ceil(max(cols))), meta.width)
    r1 = min(int(np.ceil(max(rows))), meta.height)
    return r0, c0, r1, c1


def _groups(wins: list[tuple[int, int, int, int]], budget: int) -> list[list[int]]:
    """Consecutive groups of windows (in raster order of their corner) whose union stays within
    ``budget`` pixels; indices into ``wins``."""
    order = sorted(range(len(wins)), key=lambda k: (wins[k][0] // 256, wins[k][1], wins[k][0]))
    out: list[list[int]] = []
    cur: list[int] = []
    box = None
    for k in order:
        r0, c0, r1, c1 = wins[k]
        nb = (r0, c0, r1, c1) if box is None else (
            min(box[0], r0), min(box[1], c0), max(box[2], r1), max(box[3], c1))  # fmt: skip
        if cur and (nb[2] - nb[0]) * (nb[3] - nb[1]) > budget:
            out.append(cur)
            cur, nb = [], (r0, c0, r1, c1)
        cur.append(k)
        box = nb
    if cur:
        out.append(cur)
    return out


def _mask(job: Job, geom: Any, meta: TileMeta, win: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) weights of the polygon on its window: bool centre/all-touched mask, or coverage."""
    r0, c0, r1, c1 = win
    if job.all_touched:
        wt = rasterio.Affine(meta.transform.a, 0.0, meta.transform.c + c0 * meta.transform.a,
                             0.0, meta.transform.e, meta.transform.f + r0 * meta.transform.e)  # fmt: skip
        with _RASTERIZE_LOCK:  # rasterio's in-memory rasterize is not reliably thread-safe
            return rasterio.features.geometry_mask(
                [geom], out_shape=(r1 - r0, c1 - c0), transform=wt, all_touched=True, invert=True
            )
    px = to_pixel_space(geom, meta.transform, c0, r0)
    if job.weighting == "coverage":
        return coverage_fractions(px, r1 - r0, c1 - c0)
    return centre_mask(px, r1 - r0, c1 - c0)


def _tile_pixels(
    job: Job, meta: TileMeta, geoms: dict[int, Any], tally: dict[str, np.ndarray]
) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """Valid pixel vectors (n, D) float32 and weights of every polygon of ``geoms`` on one tile."""
    out: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    ids = list(geoms)
    wins = [_window(meta, geoms[i]) for i in ids]
    live = [k for k, (r0, c0, r1, c1) in enumerate(wins) if r1 > r0 and c1 > c0]
    nd = nodata_code(meta.nodata if job.nodata is None else job.nodata, meta.dtype, meta.path,
                     job.nodata is not None)  # fmt: skip
    acc = tally.setdefault(meta.path, np.zeros(2, np.int64))
    with rasterio.open(meta.path) as ds:
        for grp in _groups([wins[k] for k in live], GROUP_PIXELS):
            sel = [live[g] for g in grp]
            R0 = min(wins[k][0] for k in sel)
            C0 = min(wins[k][1] for k in sel)
            R1 = max(wins[k][2] for k in sel)
            C1 = max(wins[k][3] for k in sel)
            masks = {k: _mask(job, geoms[ids[k]], meta, wins[k]) for k in sel}
            if not any(m.any() for m in masks.values()):
                continue
            win = rasterio.windows.Window(C0, R0, C1 - C0, R1 - R0)
            try:
                arr = ds.read(window=win).transpose(1, 2, 0).copy()  # (H, W, D) pixel-major
                valid_band = ds.read_masks(1, window=win) > 0 if meta.masked else None
            except RasterioError as e:
                raise InputError(
                    f"cannot read embedding tile {meta.path} (rows {R0}:{R1}, cols {C0}:{C1}): "
                    f"{e}; expected a complete GeoTIFF (truncated or damaged? re-download it)"
                ) from e
            for k in sel:
                m = masks[k]
                inside = m > 0
                if not inside.any():
                    continue
                r0, c0, r1, c1 = wins[k]
                sl = (slice(r0 - R0, r1 - R0), slice(c0 - C0, c1 - C0))
                vals = arr[sl][inside]  # (n, D)
                ok = np.ones(len(vals), bool) if valid_band is None else valid_band[sl][inside]
                if nd is not None:
                    ok &= ~(vals == np.asarray(nd, dtype=vals.dtype)).any(axis=1)
                w = m[inside].astype(np.float64)[ok] if job.weighting == "coverage" else None
                x = decode_values(vals[ok], job.decode, meta.dtype)
                if x.dtype.kind == "f":
                    fin = np.isfinite(x).all(axis=1)
                    x = x[fin]
                    w = None if w is None else w[fin]
                acc += (len(vals), len(x))
                if len(x):
                    out[ids[k]] = (np.ascontiguousarray(x, dtype=np.float32), w)
    return out


def run_partition(polygons: gpd.GeoSeries, pairs: dict[int, list[int]], job: Job) -> PartResult:
    """Pool the pixels of one partition of polygons.

    Parameters
    ----------
    polygons:
        The partition's (repaired) polygons in their source CRS, indexed by global row id.
    pairs:
        Global row id -> candidate tile ids (keys of ``job.metas``), in ascending order.
    job:
        The shared settings (:class:`Job`).

    Returns
    -------
    :class:`PartResult` with one row per polygon of ``polygons``, in their order.
    """
    rows = np.asarray(polygons.index, dtype=np.int64)
    n = len(rows)
    feats = np.full((n, job.out_dim), np.nan, dtype=np.float32)
    counts = np.zeros(n, np.int64)
    ntiles = np.zeros(n, np.int64)
    tally: dict[str, np.ndarray] = {}
    by_tile: dict[int, list[int]] = {}
    for i in rows.tolist():
        for j in pairs.get(i, []):
            by_tile.setdefault(j, []).append(i)
    reproj: dict[str, dict[int, Any]] = {}
    for j in sorted(by_tile):
        wkt = job.metas[j].crs.to_wkt()
        have = reproj.setdefault(wkt, {})
        need = [i for i in by_tile[j] if i not in have]
        if need:
            have.update(zip(need, polygons.loc[need].to_crs(wkt).to_numpy(), strict=True))
    chunks: dict[int, list[tuple[np.ndarray, np.ndarray | None]]] = {}
    for j in sorted(by_tile):
        meta = job.metas[j]
        have = reproj[meta.crs.to_wkt()]
        px = _tile_pixels(job, meta, {i: have[i] for i in by_tile[j]}, tally)
        for i, xw in px.items():
            chunks.setdefault(i, []).append(xw)
    pos = {int(i): k for k, i in enumerate(rows.tolist())}
    for i, parts in chunks.items():
        x = np.concatenate([p[0] for p in parts], axis=0)
        w = None if job.weighting != "coverage" else np.concatenate([p[1] for p in parts])
        k = pos[i]
        feats[k] = pool_pixels(x, job.method, job.out_dim, job.state, w)
        counts[k], ntiles[k] = x.shape[0], len(parts)
    return PartResult(rows, feats, counts, ntiles, tally)
