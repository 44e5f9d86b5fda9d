"""Drawing corpus rows into Web-Mercator images: projection, footprint rasterizer, colour maps, PNG.

Leaflet (like every XYZ map) shows EPSG:3857 tiles; an image overlay is stretched linearly in
projected metres between its corners, so both the basemap tiles and the viewport heat map are drawn
on a grid linear in mercator x/y (x is linear in longitude, y in ``ln tan(π/4 + φ/2)``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np

MAX_LAT = 85.0511287798066  # Web-Mercator latitude limit
TILE = 256


def merc_y(lat: np.ndarray | float) -> np.ndarray:
    """Mercator ``y = ln tan(π/4 + φ/2)`` (unitless), latitude clamped to ±:data:`MAX_LAT`."""
    phi = np.radians(np.clip(np.asarray(lat, dtype=np.float64), -MAX_LAT, MAX_LAT))
    return np.log(np.tan(np.pi / 4 + phi / 2))


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(W, S, E, N)`` in degrees of XYZ tile ``z/x/y`` (y = 0 at the north edge)."""
    n = 2**z

    def lat(t: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * t / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


@nb.njit(nogil=True, cache=True)
def _centre_pixels(bbox, w, cross, sx, stretch, ytop, sy, width, height, small, pix
                   ):  # fmt: skip  # pragma: no cover - jitted
    """Flag sub-pixel rows in ``small`` and put their centre pixel (or -1 if outside) in ``pix``."""
    for r in range(bbox.shape[0]):
        x0, y0, x1, y1 = bbox[r, 0], bbox[r, 1], bbox[r, 2], bbox[r, 3]
        sm = (x1 - x0) * sx < 1.0 and (y1 - y0) * stretch < 1.0
        small[r] = sm
        pix[r] = -1
        if not sm:
            continue
        cxd = (x0 + x1) / 2
        if cross and cxd < w:
            cxd += 360.0
        lat = min(max((y0 + y1) / 2, -MAX_LAT), MAX_LAT)
        cx = math.floor((cxd - w) * sx)
        cy = math.floor((ytop - math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))) * sy)
        if 0 <= cx < width and 0 <= cy < height:
            pix[r] = int(cy) * width + int(cx)


def project(bbox: np.ndarray, view: Sequence[float], width: int, height: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Row footprints ``(n, 4)`` (degrees) → float pixel edges ``x0, y0, x1, y1`` in an image of
    ``view`` = ``(W, S, E, N)`` (``W > E``: crosses the antimeridian; rows west of ``W`` are
    shifted by +360°), linear in mercator y."""
    w, s, e, n = (float(v) for v in view)
    x0d, x1d = bbox[:, 0], bbox[:, 2]
    if w > e:
        e += 360.0
        shift = np.where(x1d < w, 360.0, 0.0)
        x0d, x1d = x0d + shift, x1d + shift
    sx = width / (e - w)
    ytop, ybot = float(merc_y(n)), float(merc_y(s))
    sy = height / (ytop - ybot) if ytop > ybot else 0.0
    return ((x0d - w) * sx, (ytop - merc_y(bbox[:, 3])) * sy, (x1d - w) * sx,
            (ytop - merc_y(bbox[:, 1])) * sy)  # fmt: skip


def _reduce(pix: np.ndarray, vals: np.ndarray, npx: int, reduce: str) -> np.ndarray:
    c = vals.shape[1]
    if reduce == "mean":
        cnt = np.bincount(pix, minlength=npx)
        out = np.stack([np.bincount(pix, weights=vals[:, j], minlength=npx) for j in range(c)], 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt[:, None] > 0, out / cnt[:, None], np.nan)
    if reduce == "min":
        out = np.full((npx, c), np.inf)
        for j in range(c):
            np.minimum.at(out[:, j], pix, vals[:, j])
        out[np.isinf(out)] = np.nan
        return out
    raise ValueError(f"reduce must be 'mean' or 'min', got {reduce!r}")


def _dilate(grid: np.ndarray, size: int, reduce: str) -> np.ndarray:
    """Spread each filled pixel over a ``size``×``size`` block around it, combining overlaps."""
    if size <= 1:
        return grid
    h, w, _ = grid.shape
    offs = range(-((size - 1) // 2), size - (size - 1) // 2)  # size 2: {0, 1}; 3: {-1, 0, 1}

    def shifted(dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        dst = (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
        src = (slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
        return dst, src

    if reduce == "min":
        best = grid.copy()
        for dy in offs:
            for dx in offs:
                if dy or dx:
                    dst, src = shifted(dy, dx)
                    np.fmin(best[dst], grid[src], out=best[dst])
        return best
    acc = np.zeros_like(grid)
    cnt = np.zeros(grid.shape[:2] + (1,))
    for dy in offs:
        for dx in offs:
            dst, src = shifted(dy, dx)
            ok = ~np.isnan(grid[src][..., :1])
            acc[dst] += np.where(ok, grid[src], 0.0)
            cnt[dst] += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / cnt, np.nan)


def dot_px(n_rows: int, area_px: float, lo: int = 2, hi: int = 12) -> int:
    """Drawn size of a sub-pixel row so ``n_rows`` spread over ``area_px`` pixels stay visible:
    about half the mean spacing ``sqrt(area / n)``, clamped to ``[lo, hi]``."""
    return int(np.clip(round(0.5 * math.sqrt(area_px / max(n_rows, 1))), lo, hi))


@dataclass
class Layout:
    """Where each row lands in an image: ``(row, pixel)`` pairs of sub-pixel rows (``small_*``,
    spread to ``min_px`` blocks when burnt) and of the pixels covered by larger footprints."""

    width: int
    height: int
    small_rows: np.ndarray
    small_pix: np.ndarray
    big_rows: np.ndarray
    big_pix: np.ndarray


def layout(bbox: np.ndarray, view: Sequence[float], width: int, height: int,
           max_pixels: int = 1 << 24) -> Layout:  # fmt: skip
    """Pixel placement of ``(n, 4)`` footprints (degrees) in a ``view`` image (see :func:`draw`)."""
    w, s, e, n = (float(v) for v in view)
    span = (e if e >= w else e + 360.0) - w
    sx = width / span
    ytop, ybot = float(merc_y(n)), float(merc_y(s))
    sy = height / (ytop - ybot) if ytop > ybot else 0.0
    # conservative sub-pixel test in degrees (mercator stretch bounded by the view's max |lat|)
    maxlat = min(MAX_LAT, max(abs(s), abs(n)))
    stretch = np.pi / 180 / np.cos(np.radians(maxlat)) * sy
    bbox = np.ascontiguousarray(bbox, np.float64)
    small = np.empty(len(bbox), np.bool_)
    pix = np.empty(len(bbox), np.int64)
    _centre_pixels(bbox, w, w > e, sx, stretch, ytop, sy, width, height, small, pix)
    inside = pix >= 0
    small_rows = np.flatnonzero(inside)
    empty = np.zeros(0, np.int64)
    if small.all():
        return Layout(width, height, small_rows, pix[small_rows], empty, empty)
    big = np.flatnonzero(~small)
    fx0, fy0, fx1, fy1 = project(bbox[big], view, width, height)
    lim = 4.0 * max(width, height)  # clip before casting (huge footprints at high zoom)
    x0 = np.floor(np.clip(fx0, -1, lim)).astype(np.int64).clip(0, width)
    y0 = np.floor(np.clip(fy0, -1, lim)).astype(np.int64).clip(0, height)
    x1 = np.ceil(np.clip(fx1, -1, lim)).astype(np.int64).clip(0, width)
    y1 = np.ceil(np.clip(fy1, -1, lim)).astype(np.int64).clip(0, height)
    ok = (x1 > x0) & (y1 > y0)
    big, x0, y0, x1, y1 = big[ok], x0[ok], y0[ok], x1[ok], y1[ok]
    bw, area = x1 - x0, (x1 - x0) * (y1 - y0)
    if area.sum() > max_pixels:
        x0, y0 = (x0 + x1) // 2, (y0 + y1) // 2
        bw = area = np.ones_like(x0)
    total = int(area.sum())
    row = np.repeat(np.arange(len(area)), area)
    off = np.arange(total) - np.repeat(np.cumsum(area) - area, area)
    bpix = (y0[row] + off // bw[row]) * width + (x0[row] + off % bw[row])
    return Layout(width, height, small_rows, pix[small_rows], big[row], bpix)


def burn(lay: Layout, values: np.ndarray, reduce: str = "mean", min_px: int = 2) -> np.ndarray:
    """Values ``(n,)``/``(n, C)`` of the rows of ``lay`` → ``(H, W, C)`` float64 grid (NaN empty)."""
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[:, None] if vals.ndim == 1 else vals
    h, w = lay.height, lay.width
    grid = _reduce(lay.small_pix, vals[lay.small_rows], h * w, reduce).reshape(h, w, -1)
    grid = _dilate(grid, min_px, reduce)
    if len(lay.big_rows) == 0:
        return grid
    rect = _reduce(lay.big_pix, vals[lay.big_rows], h * w, reduce).reshape(h, w, -1)
    if reduce == "min":
        return np.fmin(grid, rect)
    both = ~np.isnan(grid[..., :1]) & ~np.isnan(rect[..., :1])
    return np.where(both, (grid + rect) / 2, np.where(np.isnan(rect), grid, rect))


def draw(bbox: np.ndarray, values: np.ndarray, view: Sequence[float], width: int, height: int,
         reduce: str = "mean", min_px: int = 2, max_pixels: int = 1 << 24,
         cache: dict | None = None) -> np.ndarray:  # fmt: skip
    """Burn per-row values into an ``(height, width, C)`` float64 grid (NaN where no row falls).

    Rows whose footprint covers under one pixel are binned at their centre pixel and spread to
    ``min_px``×``min_px`` blocks (so they stay visible); larger footprints are filled exactly
    (clipped to the image; drawn at their centre pixel if their total area exceeds
    ``max_pixels``). Overlaps combine with ``reduce``: ``"mean"`` or ``"min"``.

    Parameters
    ----------
    bbox:
        ``(n, 4)`` footprints ``xmin, ymin, xmax, ymax`` in degrees.
    values:
        ``(n,)`` or ``(n, C)``.
    view:
        ``(W, S, E, N)`` of the image (see :func:`project`).
    cache:
        Optional dict holding the :class:`Layout` of these rows per (view, size): a new query on
        an unchanged view only re-burns values.
    """
    if reduce not in ("mean", "min"):
        raise ValueError(f"reduce must be 'mean' or 'min', got {reduce!r}")
    key = (tuple(float(v) for v in view), width, height, max_pixels)
    lay = cache.get(key) if cache is not None else None
    if lay is None:
        lay = layout(bbox, view, width, height, max_pixels)
        if cache is not None:
            cache.clear()
            cache[key] = lay
    return burn(lay, values, reduce, min_px)


def rgb_image(grid: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float grid (0..255, NaN = empty) → ``(H, W, 4)`` uint8 RGBA."""
    empty = np.isnan(grid[..., 0])
    rgba = np.zeros(grid.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = np.nan_to_num(np.clip(np.rint(grid), 0, 255)).astype(np.uint8)
    rgba[..., 3] = np.where(empty, 0, 255)
    return rgba


def _palette(name: str = "magma") -> tuple[bytes, bytes]:
    """256-entry PNG palette + alpha: index 0 = empty (transparent), 1..255 = worst..best score."""
    from matplotlib import colormaps

    good = np.linspace(0.0, 1.0, 255)
    rgb = np.zeros((256, 3), np.uint8)
    rgb[1:] = (colormaps[name](good)[:, :3] * 255).round().astype(np.uint8)
    alpha = np.zeros(256, np.uint8)
    alpha[1:] = np.rint(250 * good**0.8).astype(np.uint8)
    return rgb.tobytes(), alpha.tobytes()


_PALETTES: dict[str, tuple[bytes, bytes]] = {}


def heat_indices(grid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Scores ``(H, W)`` (lower = better, NaN = empty) → ``(H, W)`` uint8 palette indices
    (0 = empty, 1 = worst ``hi`` … 255 = best ``lo``)."""
    out = np.zeros(grid.shape, np.uint8)
    flat, where = grid.reshape(-1), np.flatnonzero(~np.isnan(grid))
    span = hi - lo if hi > lo else 1.0
    good = 1.0 - np.clip((flat[where] - lo) / span, 0.0, 1.0)
    out.reshape(-1)[where] = 1 + np.rint(good * 254).astype(np.uint8)
    return out


def heat_png(grid: np.ndarray, lo: float, hi: float, cmap: str = "magma") -> bytes:
    """Heat map PNG (palette + per-entry alpha): ``lo`` bright and opaque, ``hi`` and worse clear."""
    from PIL import Image

    if cmap not in _PALETTES:
        _PALETTES[cmap] = _palette(cmap)
    rgb, alpha = _PALETTES[cmap]
    im = Image.fromarray(heat_indices(grid, lo, hi), mode="P")
    im.putpalette(rgb)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1, transparency=alpha)
    return buf.getvalue()


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an ``(H, W, 4)`` uint8 image as PNG (fast compression)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


EMPTY_TILE = None


def empty_png(size: int = TILE) -> bytes:
    """A fully transparent ``size``×``size`` PNG (cached)."""
    global EMPTY_TILE
    if EMPTY_TILE is None:
        EMPTY_TILE = png_bytes(np.zeros((size, size, 4), np.uint8))
    return EMPTY_TILE
