"""Chips cut from embedding rasters at points: ``read_chips(source, points, size)``.

For each point, the tile that holds it (the most interior one where tiles overlap, e.g. at a UTM
zone edge) defines the chip's grid: ``size × size`` pixels of that tile's CRS and resolution,
north-up, the point's pixel at row/column ``size // 2``. Pixels beyond the tile are read from
the neighbouring tiles of the same CRS on the same pixel grid (AEF's COGs of one zone; Tessera's
per-zone mosaics), so chips across tile edges are whole; pixels no tile of that CRS covers, nodata
pixels, masked pixels and non-finite decoded values are invalid (``mask`` False, value NaN).
Bottom-up rasters are read the right way up.

Tile headers are read once per file (:class:`~geoemb.sources.remote.RasterCache`); each chip
reads only the windows it needs (HTTP range reads for URLs). Neighbours are found among the
tiles whose index footprint, grown by 10 % of its size, holds the point: chips up to ~10 % of a
tile's side (820 px for AEF) see all their neighbours.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.windows
import shapely
from affine import Affine
from shapely import STRtree

from geoemb.errors import InputError
from geoemb.sources.rasters import EmbeddingRasters
from geoemb.sources.remote import RasterCache, remote_env
from geoemb.zonal.checks import nodata_code
from geoemb.zonal.footprints import (
    COARSE_GROWTH,
    MISSING_GROWTH,
    catalog_from_tiles,
    grown_envelopes,
    transformer,
)
from geoemb.zonal.params import RasterInputs
from geoemb.zonal.sources import (
    PARQUET_SUFFIXES,
    TileMeta,
    TileNotFoundError,
    catalog_from_index,
    check_decode,
    decode_values,
    read_tile_meta,
    tile_metas,
)

__all__ = ["Chips", "read_chips"]

INDEX_SUFFIXES = (*PARQUET_SUFFIXES, ".gpkg", ".shp", ".geojson", ".fgb")


@dataclasses.dataclass
class Chips:
    """Chips at N points.

    Attributes
    ----------
    values : float32 array (N, D, size, size)
        Decoded embeddings; NaN where invalid.
    mask : bool array (N, size, size)
        True = valid pixel.
    tiles : list of str or None
        The tile that holds each point (``None``: no tile does; the chip is all invalid).
    transforms : list of Affine or None
        Each chip's pixel -> CRS transform (north-up), in ``crs``.
    crs : list of str or None
        Each chip's CRS (WKT).
    """

    values: np.ndarray
    mask: np.ndarray
    tiles: list[str | None]
    transforms: list[Affine | None]
    crs: list[str | None]


def _inputs(source: Any) -> RasterInputs:
    if isinstance(source, EmbeddingRasters):
        return source.resolve()
    if isinstance(source, RasterInputs):
        source.check()
        return source
    if isinstance(source, gpd.GeoDataFrame):
        return RasterInputs(tile_index=source)
    if isinstance(source, str | os.PathLike):
        suffix = Path(str(source).split("?")[0]).suffix.lower()
        if suffix in INDEX_SUFFIXES:
            return RasterInputs(tile_index=source)
        return RasterInputs(tiles=[source])
    if isinstance(source, Sequence):
        return RasterInputs(tiles=list(source))
    raise InputError(f"read_chips: expected an embedding source, a tile index or tiles, got "
                     f"{type(source).__name__}")  # fmt: skip


def _lonlat(points: Any) -> np.ndarray:
    """(N, 2) lon/lat of points given as a GeoDataFrame/GeoSeries (any CRS) or an array."""
    if isinstance(points, gpd.GeoDataFrame):
        points = points.geometry
    if isinstance(points, gpd.GeoSeries):
        if points.crs is None:
            raise InputError("read_chips: the points have no CRS; expected e.g. EPSG:4326")
        geoms = points.to_crs("EPSG:4326").to_numpy()
        kinds = set(shapely.get_type_id(geoms).tolist())
        if kinds - {0}:
            raise InputError("read_chips: expected Point geometries (use centroids of polygons)")
        xy = shapely.get_coordinates(geoms)
        if len(xy) != len(geoms):
            raise InputError("read_chips: some points are empty or missing")
    else:
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        rows = np.flatnonzero(~np.isfinite(xy).all(axis=1))[:10].tolist()
        raise InputError(f"read_chips: points {rows} have NaN/inf coordinates")
    if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise InputError("read_chips: array points must be lon/lat in degrees (EPSG:4326)")
    return xy


def _pixel_index(values: np.ndarray, origin: float, step: float, what: str) -> np.ndarray:
    idx = (values - origin) / step - 0.5
    r = np.round(idx)
    if np.abs(idx - r).max(initial=0.0) > 1e-6:
        raise InputError(f"{what} is not on the chip's pixel grid; geoemb does not resample")
    return r.astype(np.int64)


def read_chips(
    source: Any,
    points: Any,
    size: int,
    *,
    cache: RasterCache | None = None,
) -> Chips:
    """Windows of ``size × size`` pixels centred on ``points``, decoded, with validity masks.

    Parameters
    ----------
    source : EmbeddingRasters, RasterInputs, tile index path/URL/GeoDataFrame, or tile paths
        Where the embeddings are (an :class:`EmbeddingRasters` is resolved: real data checked,
        stand-in generated once) and how to decode them (``RasterInputs.decode``/``nodata``).
    points : GeoDataFrame / GeoSeries of points (any CRS) or array (N, 2) of lon/lat
        Chip centres.
    size : int
        Chip side in pixels (even sizes: the point's pixel is at ``size // 2``).
    cache : RasterCache, optional
        Open datasets to reuse across calls (default: one for this call).

    Returns
    -------
    Chips with ``values`` (N, D, size, size) float32 and ``mask`` (N, size, size).

    Raises
    ------
    InputError
        Bad points, tiles that disagree on D, a decode the tiles' dtype does not fit, tiles of
        one CRS off each other's grid; :class:`TileNotFoundError` when a point lies in the
        footprint of an index entry whose file is missing (404 for URLs).
    """
    if int(size) < 1:
        raise InputError(f"read_chips: size must be >= 1, got {size}")
    size = int(size)
    rasters = _inputs(source)
    xy = _lonlat(points)
    if rasters.tile_index is not None:
        cat = catalog_from_index(rasters.tile_index, path_column=rasters.path_column,
                                 filters=rasters.index_filter)  # fmt: skip
        metas: dict[int, TileMeta] = {}
    else:
        listed = tile_metas(rasters.tiles)
        cat = catalog_from_tiles(rasters.tiles, listed)
        metas = dict(enumerate(listed))
    pts = shapely.points(xy)
    if cat.crs is not None and not cat.crs.equals("EPSG:4326"):
        pts = gpd.GeoSeries(pts, crs="EPSG:4326").to_crs(cat.crs).to_numpy()
    env = grown_envelopes(cat.geometry.to_numpy(), cat.crs, COARSE_GROWTH)
    p_idx, t_idx = STRtree(env).query(pts, predicate="intersects")
    own = cache is None
    cache = cache or RasterCache()
    n = len(xy)
    values: np.ndarray | None = None
    mask = np.zeros((n, size, size), bool)
    out_tiles: list[str | None] = [None] * n
    out_tr: list[Affine | None] = [None] * n
    out_crs: list[str | None] = [None] * n
    missing: dict[int, Exception] = {}
    try:
        with remote_env():
            for i in range(n):
                cands = sorted(t_idx[p_idx == i].tolist())
                for j in cands:
                    if j not in metas and j not in missing:
                        try:
                            metas[j] = read_tile_meta(cat.path.iloc[j])
                        except TileNotFoundError as e:
                            missing[j] = e
                found = [j for j in cands if j in metas]
                best, depth, local = None, -1.0, {}
                for j in found:
                    m = metas[j]
                    x, y = transformer("EPSG:4326", m.crs, f"tile {m.path}").transform(*xy[i])
                    local[j] = (x, y)
                    minx, miny, maxx, maxy = m.rect
                    if minx <= x < maxx and miny <= y < maxy:
                        d = min(x - minx, maxx - x, y - miny, maxy - y)
                        if d > depth:
                            best, depth = j, d
                if best is None:
                    _check_missing(i, xy[i], cat, missing)
                    continue
                values = _chip(i, best, found, local, metas, rasters, size, cache, values, mask, n)
                m = metas[best]
                out_tiles[i], out_crs[i] = m.path, m.crs.to_wkt()
                out_tr[i] = _chip_transform(m, local[best], size)
    finally:
        if own:
            cache.close()
    if values is None:  # no point in any tile: D from any readable tile
        d = next(iter(metas.values())).count if metas else 0
        values = np.full((n, d, size, size), np.nan, np.float32)
    return Chips(values, mask, out_tiles, out_tr, out_crs)


def _check_missing(i: int, lonlat: np.ndarray, cat: gpd.GeoDataFrame, missing: dict) -> None:
    if not missing:
        return
    rows = sorted(missing)
    env = grown_envelopes(cat.geometry.to_numpy()[rows], cat.crs, MISSING_GROWTH)
    pt = shapely.points(*lonlat)
    if cat.crs is not None and not cat.crs.equals("EPSG:4326"):
        pt = gpd.GeoSeries([pt], crs="EPSG:4326").to_crs(cat.crs).iloc[0]
    hit = [rows[k] for k in np.flatnonzero(shapely.intersects(env, pt))]
    if hit:
        raise TileNotFoundError(
            f"{cat.attrs.get('source', 'tile catalogue')}: point {i} ({lonlat[0]:.5f}, "
            f"{lonlat[1]:.5f}) lies in the footprint of entry {hit[0]}, whose tile "
            f"{cat.path.iloc[hit[0]]} does not exist; expected the downloaded tile there"
        )


def _chip_transform(m: TileMeta, xy: tuple[float, float], size: int) -> Affine:
    t = m.transform
    col = np.floor((xy[0] - t.c) / t.a)
    row = np.floor((xy[1] - t.f) / t.e)
    rx, ry = abs(t.a), abs(t.e)
    cx, cy = t.c + (col + 0.5) * t.a, t.f + (row + 0.5) * t.e
    h = size // 2
    return Affine(rx, 0.0, cx - (h + 0.5) * rx, 0.0, -ry, cy + (h + 0.5) * ry)


def _chip(i, best, found, local, metas, rasters, size, cache, values, mask, n):
    """Fill chip ``i`` from tile ``best`` and its same-grid neighbours among ``found``."""
    m0 = metas[best]
    ct = _chip_transform(m0, local[best], size)
    xs = ct.c + (np.arange(size) + 0.5) * ct.a  # pixel-centre x, west -> east
    ys = ct.f + (np.arange(size) + 0.5) * ct.e  # pixel-centre y, north -> south
    wkt = m0.crs.to_wkt()
    order = [best] + [j for j in found if j != best and metas[j].crs.to_wkt() == wkt]
    for j in order:
        m = metas[j]
        t = m.transform
        if (abs(t.a), abs(t.e)) != (ct.a, -ct.e):
            continue  # another resolution: not the same pixel grid
        minx, miny, maxx, maxy = m.rect
        if maxx <= xs[0] - ct.a or minx >= xs[-1] + ct.a or maxy <= ys[-1] or miny >= ys[0]:
            continue
        cols = _pixel_index(xs, t.c, t.a, f"tile {m.path}")
        rows = _pixel_index(ys, t.f, t.e, f"tile {m.path}")
        sc = np.flatnonzero((cols >= 0) & (cols < m.width))
        sr = np.flatnonzero((rows >= 0) & (rows < m.height))
        if not len(sc) or not len(sr):
            continue
        todo = ~mask[i][np.ix_(sr, sc)]
        if not todo.any() and j != best:
            continue
        check_decode(rasters.decode, m)
        if values is None:
            values = np.full((n, m.count, size, size), np.nan, np.float32)
        elif values.shape[1] != m.count:
            raise InputError(f"tile {m.path} has {m.count} bands; the other tiles have "
                             f"{values.shape[1]}: expected one band count D")  # fmt: skip
        r0, r1 = rows[sr].min(), rows[sr].max() + 1
        c0, c1 = cols[sc].min(), cols[sc].max() + 1
        win = rasterio.windows.Window(int(c0), int(r0), int(c1 - c0), int(r1 - r0))
        ds = cache.get(m.path)
        try:
            arr = ds.read(window=win)[:, rows[sr] - r0][:, :, cols[sc] - c0]  # (D, |sr|, |sc|)
            valid = np.ones(arr.shape[1:], bool)
            if m.masked:
                valid &= ds.read_masks(1, window=win)[rows[sr] - r0][:, cols[sc] - c0] > 0
        except rasterio.errors.RasterioError as e:
            raise InputError(f"cannot read embedding tile {m.path} (window {win}): {e}") from e
        nd = nodata_code(m.nodata if rasters.nodata is None else rasters.nodata, m.dtype,
                         m.path, rasters.nodata is not None)  # fmt: skip
        if nd is not None:
            valid &= ~(arr == np.asarray(nd, dtype=arr.dtype)).any(axis=0)
        x = decode_values(arr, rasters.decode, m.dtype)
        valid &= np.isfinite(x).all(axis=0)
        take = valid & todo
        block = values[i][:, sr][:, :, sc]
        block[:, take] = x[:, take]
        values[i][np.ix_(np.arange(values.shape[1]), sr, sc)] = block
        sub = mask[i][np.ix_(sr, sc)]
        mask[i][np.ix_(sr, sc)] = sub | take
    return values
