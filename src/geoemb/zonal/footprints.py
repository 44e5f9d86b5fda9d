"""Exact tile membership: which (polygon, tile) pairs can share pixels.

A UTM tile's edges are straight lines in its own CRS but curves in lon/lat: for an AEF tile
(8192 px × 10 m ≈ 82 km) the north edge bulges ~145 m beyond the chord between its corners at
47° N (~750 m at 80° N). Footprints built from 4 corners (AEF's index, or a naive transform)
therefore miss polygons near the edges. Membership is decided in three stages:

1. coarse (index only, no headers yet): the index footprints' envelopes grown by 10 % of their
   size — a superset, used only to pick the tiles whose headers are read;
2. candidates: each tile's exact rectangle, grown by :func:`margin_px` pixels and densified along
   its edges *before* transforming (:func:`tile_footprint`) — still a superset;
3. exact: each polygon is reprojected into the tile's own CRS, where the tile is an exact
   rectangle, and rasterised on it (:func:`geoemb.zonal.stats.polygon_pixels`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import ProjError
from shapely import STRtree

from geoemb.errors import InputError
from geoemb.zonal.sources import (
    PathLike,
    TileMeta,
    TileNotFoundError,
    read_tile_meta,
    tile_metas,
)

#: Stage-1 growth of an index footprint's envelope (fraction of its larger side).
COARSE_GROWTH = 0.10
#: Growth of an index footprint whose tile is missing, to decide whether it is needed.
MISSING_GROWTH = 0.02


@functools.lru_cache(maxsize=256)
def _transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)


def transformer(src: Any, dst: Any, what: str) -> Transformer:
    """A cached ``always_xy`` transformer ``src -> dst``; :class:`InputError` naming ``what``
    (file and CRS) when PROJ cannot build one (engineering/local CRS, another celestial body)."""
    s, d = CRS.from_user_input(src), CRS.from_user_input(dst)
    try:
        return _transformer(s.to_wkt(), d.to_wkt())
    except ProjError as e:
        raise InputError(
            f"{what} is in CRS {s.name!r} ({s.to_string()[:80]}), which cannot be transformed to "
            f"{d.name!r}: {e}; expected an Earth CRS such as EPSG:4269, EPSG:4326 or a UTM zone"
        ) from e


def margin_px(meta: TileMeta) -> float:
    """Candidate-stage growth of a tile in pixels: max(2, 1 % of its larger side).

    It absorbs the densification error of the footprint (< 1 mm) and the difference between a
    polygon edge straight in lon/lat and straight in the tile CRS (≈ 145 m × (L / 82 km)² at
    47° N for an edge of length L), so polygon edges up to ~100 km are decided exactly.
    """
    return max(2.0, 0.01 * max(meta.width, meta.height))


def tile_footprint(
    meta: TileMeta, dst_crs: Any, margin: float = 0.0, max_segment: float | None = None
) -> shapely.Polygon:
    """The tile's rectangle, grown by ``margin`` pixels, densified and transformed to ``dst_crs``.

    Parameters
    ----------
    meta:
        Tile georeferencing (north-up or bottom-up).
    dst_crs:
        Target CRS (anything :class:`pyproj.CRS` accepts).
    margin:
        Growth in pixels on every side before transforming.
    max_segment:
        Densification step in tile-CRS units (default: min(32 px, side / 64)); the chord error
        of a step ``s`` on an 82 km UTM edge is ≈ 145 m × (s / 82 km)².

    Returns
    -------
    Polygon in ``dst_crs``. For a geographic target, a tile across the antimeridian or around a
    pole becomes the whole latitude band it spans (a superset).
    """
    minx, miny, maxx, maxy = meta.rect
    rx, ry = abs(meta.transform.a), abs(meta.transform.e)
    minx, maxx = minx - margin * rx, maxx + margin * rx
    miny, maxy = miny - margin * ry, maxy + margin * ry
    dst = CRS.from_user_input(dst_crs)
    rect = shapely.box(minx, miny, maxx, maxy)
    if dst == CRS.from_user_input(meta.crs):
        return rect
    if max_segment is None:
        max_segment = min(32 * min(rx, ry), max(maxx - minx, maxy - miny) / 64)
    xy = shapely.get_coordinates(shapely.segmentize(rect, max_segment))
    tr = transformer(meta.crs, dst, f"embedding tile {meta.path}")
    x, y = tr.transform(xy[:, 0], xy[:, 1])
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(
            f"embedding tile {meta.path}: its extent {meta.rect} in {meta.crs} does not transform "
            f"to {dst.name}; expected a tile inside its CRS's area of use"
        )
    if dst.is_geographic and max(abs(y.min()), abs(y.max())) > 60.0:  # may hold a pole
        inv = transformer(dst, meta.crs, f"embedding tile {meta.path}")
        for lat in (90.0, -90.0):
            px, py = inv.transform(0.0, lat)
            if np.isfinite(px) and minx <= px <= maxx and miny <= py <= maxy:
                lo, hi = (y.min(), 90.0) if lat > 0 else (-90.0, y.max())
                return shapely.box(-180.0, lo, 180.0, hi)
        if x.max() - x.min() > 180.0:  # across the antimeridian
            return shapely.box(-180.0, y.min(), 180.0, y.max())
    return shapely.Polygon(np.column_stack([x, y]))


def catalog_from_tiles(
    tiles: PathLike | Iterable[PathLike], metas: Sequence[TileMeta] | None = None
) -> gpd.GeoDataFrame:
    """Build a tile catalogue (footprints in EPSG:4326 + ``path``) from GeoTIFF paths/folders/globs.

    Footprints are the tiles' exact rectangles densified along their edges before being
    transformed (:func:`tile_footprint`), not 4-corner quadrilaterals.
    ``metas`` (from :func:`tile_metas`) avoids reading the headers again.
    """
    metas = list(metas) if metas is not None else tile_metas(tiles)
    return gpd.GeoDataFrame(
        {"path": [m.path for m in metas]},
        geometry=[tile_footprint(m, "EPSG:4326") for m in metas],
        crs="EPSG:4326",
    )


def grown_envelopes(geoms: np.ndarray, crs: Any, frac: float) -> np.ndarray:
    """Envelopes of ``geoms`` grown by ``frac`` × their larger side (geographic CRS: an envelope
    wider than 180° — a footprint across the antimeridian — spans all longitudes)."""
    b = shapely.bounds(geoms)
    grow = frac * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    b = b + np.column_stack([-grow, -grow, grow, grow])
    if crs is not None and CRS.from_user_input(crs).is_geographic:
        wide = (b[:, 2] - b[:, 0]) > 180.0
        b[wide, 0], b[wide, 2] = -540.0, 540.0
    return shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])


def _read_metas(paths: dict[int, str], num_workers: int) -> dict[int, TileMeta | Exception]:
    def one(item: tuple[int, str]) -> tuple[int, TileMeta | Exception]:
        try:
            return item[0], read_tile_meta(item[1])
        except TileNotFoundError as e:
            return item[0], e

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as ex:
        return dict(ex.map(one, paths.items()))


def candidate_pairs(
    geoms: np.ndarray,
    catalog: gpd.GeoDataFrame,
    metas: dict[int, TileMeta] | None = None,
    num_workers: int = 4,
) -> tuple[np.ndarray, np.ndarray, dict[int, TileMeta]]:
    """(polygon, tile) pairs whose pixels may overlap (a superset of the exact pairs).

    Parameters
    ----------
    geoms:
        Polygons (shapely array) in ``catalog.crs``.
    catalog:
        Tile catalogue (``path`` + footprint).
    metas:
        Known headers by catalogue row (the tiles path); ``None`` reads the headers of the tiles
        whose coarse footprint a polygon meets (the index path).

    Returns
    -------
    poly_idx, tile_idx : int arrays of equal length (tile_idx = catalogue rows), and the headers.

    Raises
    ------
    TileNotFoundError
        A polygon lies in the footprint of an index entry whose file is missing.
    """
    missing: dict[int, Exception] = {}
    if metas is None:
        coarse = grown_envelopes(catalog.geometry.to_numpy(), catalog.crs, COARSE_GROWTH)
        _, t = STRtree(coarse).query(geoms, predicate="intersects")
        rows = {int(j): str(catalog.path.iloc[j]) for j in np.unique(t)}
        read = _read_metas(rows, num_workers)
        metas = {j: m for j, m in read.items() if isinstance(m, TileMeta)}
        missing = {j: m for j, m in read.items() if not isinstance(m, TileMeta)}
    if missing:
        rows_m = sorted(missing)
        fall = grown_envelopes(catalog.geometry.to_numpy()[rows_m], catalog.crs, MISSING_GROWTH)
        p, t = STRtree(fall).query(geoms, predicate="intersects")
        if len(p):
            j = rows_m[int(t[0])]
            n_poly = len(np.unique(p))
            raise TileNotFoundError(
                f"{catalog.attrs.get('source', 'tile catalogue')}: entry {j} names tile "
                f"{catalog.path.iloc[j]}, which does not exist, and {n_poly} polygon(s) lie in its "
                f"footprint ({len(np.unique(t))} such entries); expected the downloaded tile there "
                "(relative paths resolve beside the index) or a filter such as --year"
            )
    order = sorted(metas)
    if not order:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), metas
    crs = catalog.crs
    fps = [tile_footprint(metas[j], crs, margin_px(metas[j])) for j in order]
    p, t = STRtree(fps).query(geoms, predicate="intersects")
    tile_idx = np.asarray(order, dtype=np.int64)[t]
    keep = np.lexsort((tile_idx, p))
    return p[keep].astype(np.int64), tile_idx[keep], metas


def check_overlaps(metas: Sequence[TileMeta]) -> None:
    """Refuse tiles of one CRS that overlap (a tile twice, or several years of one index): their
    shared pixels would be pooled twice. Touching edges are fine."""
    by_crs: dict[str, list[TileMeta]] = {}
    for m in metas:
        by_crs.setdefault(m.crs.to_wkt(), []).append(m)
    for group in by_crs.values():
        if len(group) < 2:
            continue
        rects = shapely.box(*np.asarray([m.rect for m in group]).T)
        a, b = STRtree(rects).query(rects, predicate="intersects")
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            if i >= j:
                continue
            px = abs(group[i].transform.a * group[i].transform.e)
            area = shapely.area(shapely.intersection(rects[i], rects[j]))
            if area > 0.5 * px:
                raise InputError(
                    f"embedding tiles {group[i].path} and {group[j].path} overlap "
                    f"({area / px:.0f} pixels in {group[i].crs}): the shared pixels would be "
                    "pooled twice; filter the tile index (e.g. --year 2020) or mosaic the tiles "
                    "(gdalbuildvrt) first"
                )
