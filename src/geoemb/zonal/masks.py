"""Which pixels of a window a polygon covers: pixel-centre masks and exact coverage fractions.

Both work in the window's *pixel space* (column, row; the window's top-left corner at 0, 0), where
the polygon was mapped with :func:`to_pixel_space`.

- :func:`centre_mask` — the pixels whose centre lies inside the polygon (even-odd over all rings),
  by a vectorised scanline with GDAL's rule (``rasterio.features.geometry_mask``, pixel-centre
  mode): a scanline at a pixel-centre row crosses an edge when ``y0 <= y < y1``; a pixel is in when
  its centre ``x`` satisfies ``xa < x <= xb`` for a crossing pair ``(xa, xb)``. It is ~10× faster
  than a GDAL call per polygon, which dominated the zonal pipeline.
- :func:`coverage_fractions` — the exact fraction of every pixel's area inside the polygon (what
  exactextract calls coverage fraction): 1 or 0 for pixels no edge passes through (decided by the
  centre mask), the exact area of ``polygon ∩ pixel`` (GEOS) for the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

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


def _boundary_cells(geom_px: Any, height: int, width: int) -> np.ndarray:
    """A superset of the pixels an edge of ``geom_px`` passes through (bool (height, width)).

    Points are sampled every ≤ 0.25 px along the rings; a piece between two consecutive samples
    ``p``, ``q`` lies in the cells of ``p`` and ``q`` or, passing a corner, in the two cells
    ``(row p, col q)`` and ``(row q, col p)``, which are marked too.
    """
    cells = np.zeros((height + 2, width + 2), dtype=bool)
    for ring in shapely.get_rings(shapely.get_parts(geom_px)):
        xy = shapely.get_coordinates(shapely.segmentize(ring, 0.25))
        c = np.clip(np.floor(xy[:, 0]).astype(np.int64), -1, width) + 1
        r = np.clip(np.floor(xy[:, 1]).astype(np.int64), -1, height) + 1
        cells[r, c] = True
        cells[r[:-1], c[1:]] = True
        cells[r[1:], c[:-1]] = True
    return cells[1:-1, 1:-1]


def coverage_fractions(geom_px: Any, height: int, width: int) -> np.ndarray:
    """Exact fraction of each pixel's area covered by ``geom_px`` (pixel space).

    Returns
    -------
    float64 array (height, width) in [0, 1].
    """
    frac = centre_mask(geom_px, height, width).astype(np.float64)
    if not frac.size or geom_px is None or shapely.is_empty(geom_px):
        return frac
    edge = _boundary_cells(geom_px, height, width)
    r, c = np.nonzero(edge)
    if len(r):
        cells = shapely.box(c, r, c + 1.0, r + 1.0)
        shapely.prepare(geom_px)
        frac[r, c] = np.clip(shapely.area(shapely.intersection(geom_px, cells)), 0.0, 1.0)
    return frac
