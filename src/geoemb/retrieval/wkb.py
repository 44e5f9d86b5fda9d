"""Vectorised WKB for the corpus builder: points and boxes built with numpy, byte-identical to
``shapely.to_wkb(shapely.points(...))`` / ``shapely.to_wkb(shapely.box(..., ccw=True))`` (little
endian, 2-D), without one GEOS object per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from geoemb.utils.geoparquet import _TYPE_NAMES

_POINT_HEAD = np.frombuffer(b"\x01\x01\x00\x00\x00", np.uint8)
_POLY_HEAD = np.frombuffer(b"\x01\x03\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00", np.uint8)


def _binary(buf: np.ndarray) -> pa.Array:
    """``(n, w)`` uint8 rows → Arrow ``binary`` array (one value per row, no Python objects)."""
    n, w = buf.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(np.ascontiguousarray(buf))])  # fmt: skip


def points_wkb(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    """WKB points ``(lon, lat)`` (21 bytes each) as an Arrow ``binary`` array of ``n`` values."""
    n = len(lon)
    buf = np.empty((n, 21), np.uint8)
    buf[:, :5] = _POINT_HEAD
    xy = np.stack([np.asarray(lon, "<f8"), np.asarray(lat, "<f8")], 1)
    buf[:, 5:] = xy.view(np.uint8).reshape(n, 16)
    return _binary(buf)


def boxes_wkb(bbox: np.ndarray) -> pa.Array:
    """WKB rectangles of ``bbox (n, 4)`` = (xmin, ymin, xmax, ymax): counter-clockwise rings
    starting at (xmax, ymin), as :func:`shapely.box` with ``ccw=True`` (93 bytes each)."""
    b = np.asarray(bbox, "<f8").reshape(-1, 4)
    n = len(b)
    x0, y0, x1, y1 = b.T
    ring = np.stack([x1, y0, x1, y1, x0, y1, x0, y0, x1, y0], 1)  # (n, 10) float64
    buf = np.empty((n, 93), np.uint8)
    buf[:, :13] = _POLY_HEAD
    buf[:, 13:] = np.ascontiguousarray(ring).view(np.uint8).reshape(n, 80)
    return _binary(buf)


def type_names(wkb: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per-row geometry type name of a WKB column (parsed once, vectorised; invalid WKB raises
    :class:`shapely.errors.GEOSException`), as ``geoparquet.geometry_types`` names them."""
    import shapely

    values = wkb.to_numpy(zero_copy_only=False)
    ids = shapely.get_type_id(shapely.from_wkb(values)) if len(values) else np.zeros(0, int)
    names = np.array([_TYPE_NAMES.get(i, "") for i in range(-1, 8)], dtype=object)
    return names[np.clip(np.asarray(ids), -1, 7) + 1]
