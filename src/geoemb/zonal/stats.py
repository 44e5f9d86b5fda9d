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
from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch

from geoemb.errors import InputError
from geoemb.pooling import output_dim, pool
from geoemb.utils.dask import parse_dask_spec
from geoemb.zonal.checks import (
    check_output,
    check_polygon_coordinates,
    nodata_code,
    to_crs_checked,
    transformer,
    warn,
)
from geoemb.zonal.distributed import plan_partitions, run_partitions
from geoemb.zonal.engine import (
    WEIGHTED_METHODS,
    Job,
    PartResult,
    _tile_pixels,
    pool_pixels,
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
from geoemb.zonal.partitioned import is_partitioned, zonal_stats_partitioned
from geoemb.zonal.sources import (
    PathLike,
    TileMeta,
    any_band_count,
    catalog_from_index,
    check_decode,
    check_tiles,
    data_source,
    read_polygons,
    tile_metas,
)

__all__ = [  # re-exported
    "FEATURE_PREFIX",
    "META_KEY",
    "apply_filters",
    "default_workers",
    "pool_pixels",
    "read_features",
    "write_geoparquet",
]

#: Column holding the number of valid pixels pooled per polygon.
PIXEL_COUNT = "pixel_count"
#: Column holding the number of tiles that contributed pixels.
TILE_COUNT = "tile_count"

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


def polygon_pixels(
    parts: Iterable[tuple[TileMeta, Any]],
    decode: str = "raw",
    nodata: float | None = None,
    all_touched: bool = False,
    weighting: str = "centre",
) -> tuple[np.ndarray, int]:
    """Gather the valid pixel vectors of one polygon over its tiles (a convenience around the
    partition engine, :mod:`geoemb.zonal.engine`).

    Parameters
    ----------
    parts:
        ``(tile, geometry)`` pairs; each geometry is the polygon in that tile's CRS.

    Returns
    -------
    pixels : float32 array (N, D) and the number of tiles that contributed pixels.
    """
    chunks: list[np.ndarray] = []
    job = Job({}, "mean", 0, decode, nodata, all_touched, weighting)
    for meta, geom in parts:
        got = _tile_pixels(job, meta, {0: geom}, {})
        if 0 in got:
            chunks.append(got[0][0])
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.concatenate(chunks, axis=0), len(chunks)


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
    dask: Any = None,
    **knobs: Any,
) -> gpd.GeoDataFrame:
    """Pool embedding-raster pixels inside every polygon.

    Parameters
    ----------
    polygons:
        Polygon layer (path or GeoDataFrame) in any Earth CRS. Null/empty geometries get no
        pixels; invalid ones are repaired for rasterisation (with a warning). A *directory* is a
        partitioned layer (GeoParquet/GeoPackage parts, e.g. ``dask_geopandas.to_parquet``'s
        output), read lazily with dask-geopandas and partitioned spatially
        (:mod:`geoemb.zonal.partitioned`); rows are numbered across the parts in file-name order
        and the output equals the single-process run on the parts concatenated.
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
    dask:
        Where the pixel work runs (:mod:`geoemb.utils.dask`): ``None``/``"none"`` in this process
        (``pooling.num_workers`` threads), ``"local:N"`` on a local Dask cluster, a scheduler
        address, or an existing ``distributed.Client``. The output is identical row by row.
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
    if isinstance(polygons, str | os.PathLike) and is_partitioned(polygons):
        return zonal_stats_partitioned(
            polygons, rasters, filters, pooling, state=state, layer=layer, output=output,
            feature_prefix=feature_prefix, dask=dask,
        )  # fmt: skip
    return _zonal_stats(polygons, rasters, filters, pooling, state, layer, output,
                        feature_prefix, dask)  # fmt: skip


def _zonal_stats(
    polygons: PathLike | gpd.GeoDataFrame,
    rasters: RasterInputs,
    filters: ZonalFilters,
    pooling: PoolingSpec,
    state: Any,
    layer: str | None,
    output: PathLike | None,
    feature_prefix: str,
    dask: Any,
    tiles_used: set[str] | None = None,
) -> gpd.GeoDataFrame:
    """:func:`zonal_stats` on one polygon layer (a file or a GeoDataFrame); the paths of the tiles
    that gave valid pixels are added to ``tiles_used`` when given."""
    if not hasattr(dask, "submit"):  # a spec (a distributed.Client is used as given)
        dask = parse_dask_spec(dask)  # a bad spec fails before any work
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
    if pooling.weighting == "coverage" and method not in WEIGHTED_METHODS:
        raise InputError(
            f"weighting='coverage' supports the methods {list(WEIGHTED_METHODS)}, not {method!r}"
        )
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

    pairs: dict[int, list[int]] = {}
    for i, j in zip(poly_idx.tolist(), tile_idx.tolist(), strict=True):
        pairs.setdefault(i, []).append(j)
    parts = plan_partitions(np.asarray(geoms_cat), pairs, metas, chunk_size)
    job = Job({j: metas[j] for j in needed}, method, out_dim, decode, nodata, all_touched,
              pooling.weighting, state)  # fmt: skip

    feats = np.full((n, out_dim), np.nan, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    ntiles = np.zeros(n, dtype=np.int64)
    tally: dict[str, np.ndarray] = {}

    def take(res: PartResult) -> None:
        feats[res.rows], counts[res.rows], ntiles[res.rows] = res.feats, res.counts, res.ntiles
        for path, acc in res.tally.items():
            tally.setdefault(path, np.zeros(2, np.int64))[:] += acc

    run_partitions(work.reset_index(drop=True), pairs, parts, job, dask=dask,
                   threads=num_workers, progress=pooling.progress, on_result=take)  # fmt: skip
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
        "weighting": pooling.weighting,
        "filters": filter_counts,
        "n_tiles_used": len({p for p, (_, v) in tally.items() if v}),
        "n_empty": int((counts == 0).sum()),
        "data_source": data_source([metas[j] for j in needed]),
    }
    if tiles_used is not None:
        tiles_used.update(p for p, (_, v) in tally.items() if v)
    if output is not None:
        write_geoparquet(out, output)
    return out
