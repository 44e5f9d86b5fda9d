"""Per-polygon pooling of embedding rasters (the census-block statistics workflow, generalised).

For every polygon: find its tiles exactly (:mod:`geoemb.zonal.footprints`), reproject it to each
tile's CRS, read only the window it covers, rasterise the polygon mask on that window (pixel
centres, or ``all_touched``), keep the valid pixels (not nodata, finite, not masked), gather the
pixel vectors of *all* its tiles and pool them with any registered :mod:`geoemb.pooling` method. The
default ``mean_std`` gives the blog's 128-d features for 64-d AEF. Polygons without valid pixels get
a NaN feature row and ``pixel_count = 0``. Bad inputs and output paths are refused before any pixel
is read (:mod:`geoemb.zonal.checks`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import rasterio.windows
import torch
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from geoemb.errors import InputError
from geoemb.pooling import output_dim, pool
from geoemb.zonal.checks import (
    check_output,
    check_polygon_coordinates,
    nodata_code,
    to_crs_checked,
    transformer,
    warn,
)
from geoemb.zonal.filters import apply_filters, repaired
from geoemb.zonal.footprints import candidate_pairs, catalog_from_tiles, check_overlaps
from geoemb.zonal.output import (
    FEATURE_PREFIX,
    META_KEY,
    PARQUET_SUFFIXES,
    read_features,
    write_geoparquet,
)
from geoemb.zonal.params import (
    PoolingSpec,
    RasterInputs,
    ZonalFilters,
    default_workers,
    split_knobs,
)
from geoemb.zonal.sources import (
    PathLike,
    TileMeta,
    any_band_count,
    catalog_from_index,
    check_decode,
    check_tiles,
    data_source,
    decode_values,
    read_polygons,
    tile_metas,
)

__all__ = [  # re-exported
    "FEATURE_PREFIX",
    "META_KEY",
    "apply_filters",
    "default_workers",
    "read_features",
    "write_geoparquet",
]

#: Column holding the number of valid pixels pooled per polygon.
PIXEL_COUNT = "pixel_count"
#: Column holding the number of tiles that contributed pixels.
TILE_COUNT = "tile_count"

_RASTERIZE_LOCK = threading.Lock()
_TALLY_LOCK = threading.Lock()

_PARTS = {
    "mean_std": ("mean", "std"),
    "mean_max": ("mean", "max"),
    "median_iqr": ("median", "iqr"),
    "stats": ("min", "max", "mean", "std"),
    "percentiles": ("p10", "p25", "p50", "p75", "p90"),
    "signed_non_cancelling_gem": ("gempos", "gemneg"),
}


def feature_names(method: str, dim: int, out_dim: int, prefix: str = FEATURE_PREFIX) -> list[str]:
    """Column names of the pooled features, e.g. ``emb_mean_00 … emb_std_63`` for ``mean_std``.

    Multi-part methods (``mean_std``, ``stats``, ``percentiles``, …) name each part; other methods
    use ``<prefix><method>_<i>``.
    """
    parts = _PARTS.get(method)
    if method in ("mean", "max", "min", "std", "gem", "median") and out_dim == dim:
        parts = (method,)
    if parts and len(parts) * dim == out_dim:
        width = max(2, len(str(dim - 1)))
        return [f"{prefix}{p}_{i:0{width}d}" for p in parts for i in range(dim)]
    width = max(2, len(str(out_dim - 1)))
    return [f"{prefix}{method}_{i:0{width}d}" for i in range(out_dim)]


class _Reader:
    """One rasterio handle per (thread, tile); all handles are closed by :meth:`close`."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self, path: str) -> Any:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        ds = cache.get(path)
        if ds is None:
            ds = cache[path] = rasterio.open(path)
            with self._lock:
                self._all.append(ds)
        return ds

    def close(self) -> None:
        with self._lock:
            for ds in self._all:
                ds.close()
            self._all.clear()


def polygon_pixels(
    parts: Iterable[tuple[TileMeta, Any]],
    reader: _Reader | None = None,
    decode: str = "raw",
    nodata: float | None = None,
    all_touched: bool = False,
    tally: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Gather the valid pixel vectors of one polygon over its tiles.

    Parameters
    ----------
    parts:
        ``(tile, geometry)`` pairs; each geometry is the polygon in that tile's CRS. A polygon
        outside a tile (a candidate pair that is not an exact one) contributes nothing.
    nodata:
        Overrides the tiles' declared nodata value. A pixel is invalid if any band equals nodata,
        any band is not finite (NaN/±inf), or the tile's mask band marks it invalid.
    tally:
        Optional ``{tile path: [pixels inside polygons, valid ones]}`` accumulator.

    Returns
    -------
    pixels : float32 array (N, D) and the number of tiles that contributed pixels.

    Raises
    ------
    InputError
        A tile cannot be read (truncated/damaged), naming the tile and the window.
    """
    own = reader is None
    reader = reader or _Reader()
    chunks: list[np.ndarray] = []
    try:
        for meta, geom in parts:
            minx, miny, maxx, maxy = geom.bounds
            t = meta.transform  # axis-aligned (checked in read_tile_meta)
            cols = ((minx - t.c) / t.a, (maxx - t.c) / t.a)
            rows = ((miny - t.f) / t.e, (maxy - t.f) / t.e)
            c0 = max(int(np.floor(min(cols))), 0)
            r0 = max(int(np.floor(min(rows))), 0)
            c1 = min(int(np.ceil(max(cols))), meta.width)
            r1 = min(int(np.ceil(max(rows))), meta.height)
            if c1 <= c0 or r1 <= r0:
                continue
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            wt = rasterio.Affine(t.a, 0.0, t.c + c0 * t.a, 0.0, t.e, t.f + r0 * t.e)
            with _RASTERIZE_LOCK:  # rasterio's in-memory rasterize is not reliably thread-safe
                inside = rasterio.features.geometry_mask(
                    [geom],
                    out_shape=(r1 - r0, c1 - c0),
                    transform=wt,
                    all_touched=all_touched,
                    invert=True,
                )
            if not inside.any():
                continue
            try:
                ds = reader.get(meta.path)
                arr = ds.read(window=win)  # (D, h, w)
                mask = ds.read_masks(1, window=win)[inside] > 0 if meta.masked else None
            except RasterioError as e:
                raise InputError(
                    f"cannot read embedding tile {meta.path} (rows {r0}:{r1}, cols {c0}:{c1}): "
                    f"{e}; expected a complete GeoTIFF (truncated or damaged? re-download it)"
                ) from e
            vals = arr[:, inside]  # (D, n)
            valid = np.ones(vals.shape[1], dtype=bool) if mask is None else mask
            nd = nodata_code(
                meta.nodata if nodata is None else nodata, meta.dtype, meta.path, nodata is not None
            )
            if nd is not None:
                valid &= ~(vals == np.asarray(nd, dtype=vals.dtype)).any(axis=0)
            x = decode_values(vals[:, valid], decode, meta.dtype)
            if x.dtype.kind == "f":
                x = x[:, np.isfinite(x).all(axis=0)]
            if tally is not None:
                with _TALLY_LOCK:
                    acc = tally.setdefault(meta.path, np.zeros(2, np.int64))
                    acc += (vals.shape[1], x.shape[1])
            if x.shape[1]:
                chunks.append(x.T)
    finally:
        if own:
            reader.close()
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32), len(chunks)


def pool_pixels(
    pixels: np.ndarray,
    method: str,
    out_dim: int,
    state: Any = None,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Pool ``pixels`` (N, D) into one (F,) vector with :func:`geoemb.pooling.pool`.

    The pixel set is laid out as a 1×N strip ``(1, D, 1, N)``; methods that use the spatial layout
    (``center_weighted_mean``) are therefore not meaningful for polygons. ``N == 0`` gives NaNs.
    """
    if pixels.shape[0] == 0:
        return np.full(out_dim, np.nan, dtype=np.float32)
    x = torch.from_numpy(pixels.T.copy()).to(dtype).reshape(1, pixels.shape[1], 1, pixels.shape[0])
    out = pool(x, method, mask=None, state=state)
    return out.reshape(-1).detach().cpu().numpy().astype(np.float32)


def _build_catalog(rasters: RasterInputs) -> tuple[gpd.GeoDataFrame, dict[int, TileMeta] | None]:
    """The tile catalogue and, for explicit tiles, their headers by catalogue row."""
    rasters.check()
    if rasters.tile_index is not None:
        catalog = catalog_from_index(
            rasters.tile_index, path_column=rasters.path_column, filters=rasters.index_filter
        )
        return catalog, None
    metas = tile_metas(rasters.tiles)
    catalog = catalog_from_tiles(rasters.tiles, metas)
    catalog.attrs["source"] = f"{len(metas)} tile(s)"
    return catalog, dict(enumerate(metas))


def zonal_stats(
    polygons: PathLike | gpd.GeoDataFrame,
    rasters: RasterInputs | None = None,
    filters: ZonalFilters | None = None,
    pooling: PoolingSpec | None = None,
    *,
    state: Any = None,
    layer: str | None = None,
    output: PathLike | None = None,
    feature_prefix: str = FEATURE_PREFIX,
    **knobs: Any,
) -> gpd.GeoDataFrame:
    """Pool embedding-raster pixels inside every polygon.

    Parameters
    ----------
    polygons:
        Polygon layer (path or GeoDataFrame) in any Earth CRS. Null/empty geometries get no
        pixels; invalid ones are repaired for rasterisation (with a warning).
    rasters:
        :class:`~geoemb.zonal.params.RasterInputs`: GeoTIFF paths/folders/globs or a tile index
        (optionally filtered, e.g. ``{"year": 2020}``), the value ``decode`` and a ``nodata``
        override. Tiles may use different CRSs; the band count D must agree; tiles of one CRS
        must not overlap. Membership is exact (decided in each tile's own CRS,
        :mod:`geoemb.zonal.footprints`). Non-finite values and masked pixels are always invalid.
    filters:
        :class:`~geoemb.zonal.params.ZonalFilters` (see :func:`apply_filters`).
    pooling:
        :class:`~geoemb.zonal.params.PoolingSpec`: a :mod:`geoemb.pooling` ``method``,
        ``all_touched``, threads for windowed reads (one rasterio handle per thread and tile) and
        polygons per chunk (only one chunk's reprojected geometries are live).
    state:
        Fitted state of a parametric pooling method.
    layer:
        Layer of a multi-layer polygon file.
    output:
        Optional ``.parquet`` path, checked before any work and written atomically at the end.
    **knobs:
        Any field of the three parameter objects as a flat keyword (``tiles=…``,
        ``tile_index=…``, ``method=…``, ``land_column=None``, ``num_workers=2``…), applied over
        them (:func:`geoemb.zonal.params.split_knobs`).

    Returns
    -------
    GeoDataFrame in the polygons' CRS: kept polygons' attributes + F feature columns
    (``feature_names``) + ``pixel_count`` + ``tile_count``; ``attrs["zonal"]`` describes the run
    (``data_source`` is ``synthetic`` when a tile used carries geoemb's stand-in tag).

    Raises
    ------
    InputError, OutputError
        Bad inputs or output path, naming the file and what was expected — before pixel work.
    """
    rasters, filters, pooling = split_knobs(knobs, rasters, filters, pooling)
    tile_index, decode, nodata = rasters.tile_index, rasters.decode, rasters.nodata
    method, all_touched, num_workers = pooling.method, pooling.all_touched, pooling.workers
    chunk_size = pooling.chunk_size
    in_paths = [p for p in (polygons, tile_index) if isinstance(p, str | os.PathLike)]
    if output is not None:
        check_output(output, in_paths, suffixes=PARQUET_SUFFIXES)
    name = str(polygons) if isinstance(polygons, str | os.PathLike) else "<GeoDataFrame>"
    gdf = read_polygons(polygons, layer=layer)
    transformer(gdf.crs, "EPSG:4326", f"polygons {name}")
    check_polygon_coordinates(gdf, name)
    catalog, metas = _build_catalog(rasters)
    if output is not None:
        check_output(output, list(catalog.path), suffixes=PARQUET_SUFFIXES)
    gdf, filter_counts = apply_filters(gdf, **dataclasses.asdict(filters))
    work = repaired(gdf.geometry, name)
    n = len(gdf)
    if n == 0:
        warn(f"polygons {name}: no polygon left after the filters {filter_counts}")

    # Candidate (polygon, tile) pairs: exact rectangles densified into the catalogue CRS.
    geoms_cat = to_crs_checked(work, catalog.crs, name)
    poly_idx, tile_idx, metas = candidate_pairs(geoms_cat, catalog, metas, num_workers)
    needed = sorted(set(tile_idx.tolist()))
    check_overlaps([metas[j] for j in needed])
    dim = check_tiles([metas[j] for j in needed])
    if dim == 0:  # nothing intersects: D from any tile
        dim = any_band_count(catalog, metas)
    for j in needed:
        m = metas[j]
        check_decode(decode, m)
        nodata_code(m.nodata if nodata is None else nodata, m.dtype, m.path, nodata is not None)
    try:  # fail early: method and state
        out_dim = output_dim(method, dim)
        pool(torch.zeros(1, dim, 1, 2, dtype=torch.float64), method, state=state)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"pooling method {method!r} cannot run on D={dim}: {e}") from e
    names = feature_names(method, dim, out_dim, feature_prefix)
    clash = set(names + [PIXEL_COUNT, TILE_COUNT, "bbox"]) & set(gdf.columns)
    if clash:  # "bbox" is GeoParquet 1.1's covering column
        raise InputError(
            f"polygons {name}: attributes {sorted(clash)} clash with output columns; rename them"
        )
    if n and not len(poly_idx):
        warn(
            f"no polygon of {name} intersects any tile of the {catalog.attrs.get('source')}: all "
            f"{n} rows get NaN features (check the polygons' CRS, the tiles, the --year filter)"
        )

    wkts = {j: metas[j].crs.to_wkt() for j in needed}
    pairs: dict[int, list[int]] = {}
    for i, j in zip(poly_idx.tolist(), tile_idx.tolist(), strict=True):
        pairs.setdefault(i, []).append(j)

    feats = np.full((n, out_dim), np.nan, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    ntiles = np.zeros(n, dtype=np.int64)
    tally: dict[str, np.ndarray] = {}
    reader = _Reader()

    def work_one(item: tuple[int, list[tuple[TileMeta, Any]]]) -> tuple[int, np.ndarray, int, int]:
        i, parts = item
        px, k = polygon_pixels(
            parts, reader, decode=decode, nodata=nodata, all_touched=all_touched, tally=tally
        )
        return i, pool_pixels(px, method, out_dim, state), px.shape[0], k

    bar = tqdm(total=n, desc=f"zonal {method}", unit="poly", disable=not pooling.progress)
    try:
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as ex:
            for start in range(0, n, max(1, chunk_size)):
                stop = min(n, start + chunk_size)
                by_crs: dict[str, set[int]] = {}
                for i in range(start, stop):
                    for j in pairs.get(i, []):
                        by_crs.setdefault(wkts[j], set()).add(i)
                local: dict[tuple[int, str], Any] = {}
                for wkt, rows in by_crs.items():
                    idx = sorted(rows)
                    reproj = work.iloc[idx].to_crs(wkt).to_numpy()
                    local.update({(i, wkt): g for i, g in zip(idx, reproj, strict=True)})
                items = [
                    (i, [(metas[j], local[(i, wkts[j])]) for j in pairs.get(i, [])])
                    for i in range(start, stop)
                ]
                for i, f, c, k in ex.map(work_one, items):
                    feats[i], counts[i], ntiles[i] = f, c, k
                    bar.update(1)
    finally:
        bar.close()
        reader.close()
    for path, (inside, valid) in sorted(tally.items()):
        if inside and not valid:
            warn(f"embedding tile {path}: all {inside} pixels under the polygons are nodata")
    if n and len(poly_idx) and not counts.any():
        warn(f"no polygon of {name} has a valid pixel in any tile: all {n} rows are NaN")

    out = pd.concat(
        [gdf.reset_index(drop=True), pd.DataFrame(feats, columns=names)], axis=1
    ).set_index(gdf.index)
    out[PIXEL_COUNT] = counts
    out[TILE_COUNT] = ntiles
    out = gpd.GeoDataFrame(out, geometry=gdf.geometry.name, crs=gdf.crs)
    out.attrs["zonal"] = {
        "method": method,
        "input_dim": int(dim),
        "feature_columns": names,
        "decode": decode,
        "all_touched": bool(all_touched),
        "filters": filter_counts,
        "n_tiles_used": len({p for p, (_, v) in tally.items() if v}),
        "n_empty": int((counts == 0).sum()),
        "data_source": data_source([metas[j] for j in needed]),
    }
    if output is not None:
        write_geoparquet(out, output)
    return out
