"""Which pixels of a window a polygon covers: pixel-centre masks and exact coverage fractions.

Both work in the window's *pixel space* (column, row; the window's top-left corner at 0, 0), where
the polygon was mapped with :func:`to_pixel_space`.

- :func:`centre_mask` — the pixels whose centre lies inside the polygon (even-odd over all rings),
  by a vectorised scanline with GDAL's rule (``rasterio.features.geometry_mask``, pixel-centre
  mode): a scanline at a pixel-centre row crosses an edge when ``y0 <= y < y1``; a pixel is in when
  its centre ``x`` satisfies ``xa < x <= xb`` for a crossing pair ``(xa, xb)``. It is ~10× faster
  than a GDAL call per polygon, which dominated the zonal pipeline.
- :func:`coverage_fractions` — the exact fraction of every pixel's area inside the polygon (what
  exactextract calls coverage fraction), by accumulating the signed area of each ring piece inside
  each pixel plus the fill right of it (:mod:`geoemb.zonal._coverage`, numba; no GEOS per pixel).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from geoemb.zonal._coverage import accumulate_edges

__all__ = ["centre_mask", "coverage_fractions", "to_pixel_space"]


def to_pixel_space(geom: Any, transform: Any, col0: int, row0: int) -> Any:
    """``geom`` (tile CRS) in pixel coordinates of the window whose top-left pixel is
    ``(row0, col0)`` of a tile with the axis-aligned ``transform``."""
    a, c, e, f = transform.a, transform.c, transform.e, transform.f

    def f_xy(xy: np.ndarray) -> np.ndarray:
        return np.column_stack([(xy[:, 0] - c) / a - col0, (xy[:, 1] - f) / e - row0])

    return shapely.transform(geom, f_xy)


def _ring_edges(geom_px: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All edges (x0, y0, x1, y1) of all rings of a Polygon/MultiPolygon."""
    rings = shapely.get_rings(shapely.get_parts(geom_px))
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    same = idx[1:] == idx[:-1]  # consecutive vertices of one ring form an edge
    return xy[:-1, 0][same], xy[:-1, 1][same], xy[1:, 0][same], xy[1:, 1][same]


def centre_mask(geom_px: Any, height: int, width: int) -> np.ndarray:
    """Pixel-centre mask of ``geom_px`` (pixel space) on a ``height × width`` window.

    Returns
    -------
    bool array (height, width), True where the pixel centre is inside.
    """
    out = np.zeros((height, width + 1), dtype=np.int32)
    if height == 0 or width == 0 or geom_px is None or shapely.is_empty(geom_px):
        return out[:, :width].astype(bool)
    x0, y0, x1, y1 = _ring_edges(geom_px)
    flat = (y0 == y1) & (np.floor(y0) + 0.5 == y0) & (y0 > 0) & (y0 < height)
    if flat.any():  # a horizontal edge lying exactly on a centre row (a tie): GDAL fills it when
        # it runs right to left with the interior on the left (exterior counter-clockwise in
        # pixel space), i.e. when the polygon lies above it (smaller rows)
        x0, y0, x1, y1 = _ring_edges(shapely.orient_polygons(geom_px, exterior_cw=False))
        flat = (y0 == y1) & (x0 > x1) & (np.floor(y0) + 0.5 == y0) & (y0 > 0) & (y0 < height)
        f_row = np.floor(y0[flat]).astype(np.int64)
        f_start = np.clip(np.floor(x1[flat] + 0.5), 0, width).astype(np.int64)
        f_stop = np.clip(np.floor(x0[flat] + 0.5), 0, width).astype(np.int64)
        ok = f_stop > f_start
        np.add.at(out, (f_row[ok], f_start[ok]), 1)
        np.add.at(out, (f_row[ok], f_stop[ok]), -1)
    flip = y0 > y1
    ylo, yhi = np.where(flip, y1, y0), np.where(flip, y0, y1)
    xlo, xhi = np.where(flip, x1, x0), np.where(flip, x0, x1)
    keep = (ylo < yhi) & (yhi > 0) & (ylo < height)  # horizontal edges never cross
    ylo, yhi, xlo, xhi = ylo[keep], yhi[keep], xlo[keep], xhi[keep]
    rows = np.arange(height) + 0.5
    hit = (rows[None, :] >= ylo[:, None]) & (rows[None, :] < yhi[:, None])  # (E, H)
    e_i, r_i = np.nonzero(hit)
    if not len(e_i):
        return np.cumsum(out, axis=1)[:, :width] > 0
    yc = rows[r_i]
    xs = (yc - ylo[e_i]) * (xhi[e_i] - xlo[e_i]) / (yhi[e_i] - ylo[e_i]) + xlo[e_i]
    order = np.lexsort((xs, r_i))
    r_s, x_s = r_i[order], xs[order]
    # crossings come in pairs per row (closed rings): (xa, xb) -> columns floor(xa+.5)..floor(xb+.5)-1
    start = np.clip(np.floor(x_s[0::2] + 0.5), 0, width).astype(np.int64)
    stop = np.clip(np.floor(x_s[1::2] + 0.5), 0, width).astype(np.int64)
    row = r_s[0::2]
    ok = stop > start
    np.add.at(out, (row[ok], start[ok]), 1)
    np.add.at(out, (row[ok], stop[ok]), -1)
    return np.cumsum(out, axis=1)[:, :width] > 0


#: Accumulated areas within this of 0 or 1 are rounding noise of the row sums (float64 over a
#: few thousand pieces) and are snapped; a real sliver of a pixel is far larger.
_SNAP = 1e-12


def coverage_fractions(geom_px: Any, height: int, width: int) -> np.ndarray:
    """Exact fraction of each pixel's area covered by ``geom_px`` (pixel space).

    Computed by signed-area accumulation of the oriented rings (:mod:`geoemb.zonal._coverage`);
    the parts of a valid (Multi)Polygon do not overlap, so their areas add up.

    Returns
    -------
    float64 array (height, width) in [0, 1].
    """
    if not height or not width or geom_px is None or shapely.is_empty(geom_px):
        return np.zeros((height, width), dtype=np.float64)
    x0, y0, x1, y1 = _ring_edges(shapely.orient_polygons(geom_px, exterior_cw=False))
    frac = -accumulate_edges(x0, y0, x1, y1, height, width)
    np.clip(frac, 0.0, 1.0, out=frac)
    frac[frac < _SNAP] = 0.0
    frac[frac > 1.0 - _SNAP] = 1.0
    return frac
