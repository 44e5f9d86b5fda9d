"""Vectorised geohash encoding/decoding (standard base-32, bits interleaved starting with longitude).

Precision ``p`` has ``5p`` bits: ``ceil(5p/2)`` longitude and ``floor(5p/2)`` latitude bits. A
coordinate in the upper half of an interval (``>=`` midpoint) gets bit 1, as in the bisection
definition; this matches ``pygeohash.encode``.
"""

from __future__ import annotations

import numpy as np

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_DECODE = {c: i for i, c in enumerate(BASE32)}


def _check_precision(precision: int) -> int:
    if not 1 <= int(precision) <= 12:
        raise ValueError(f"geohash precision must be in [1, 12], got {precision}")
    return int(precision)


def _quantize(v: np.ndarray, lo: float, hi: float, nbits: int) -> np.ndarray:
    """Bisection index of ``v`` in ``[lo, hi]`` with ``nbits`` bits (``>=`` midpoint → upper)."""
    idx = np.zeros(v.shape, dtype=np.int64)
    lo_a = np.full(v.shape, lo, dtype=np.float64)
    hi_a = np.full(v.shape, hi, dtype=np.float64)
    for _ in range(nbits):
        mid = (lo_a + hi_a) / 2
        up = v >= mid
        idx = (idx << 1) | up
        lo_a = np.where(up, mid, lo_a)
        hi_a = np.where(up, hi_a, mid)
    return idx


def encode_int(lat: np.ndarray, lon: np.ndarray, precision: int) -> np.ndarray:
    """Geohash cells as ``5·precision``-bit int64 codes, shape of the broadcast inputs."""
    p = _check_precision(precision)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if np.any(~np.isfinite(lat)) or np.any(~np.isfinite(lon)):
        raise ValueError("geohash: latitude/longitude must be finite")
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise ValueError("geohash: latitude must be in [-90, 90] and longitude in [-180, 180]")
    nbits = 5 * p
    nlon, nlat = (nbits + 1) // 2, nbits // 2
    qlon = _quantize(lon, -180.0, 180.0, nlon)
    qlat = _quantize(lat, -90.0, 90.0, nlat)
    code = np.zeros(np.broadcast(lat, lon).shape, dtype=np.int64)
    ilon, ilat = nlon - 1, nlat - 1
    for b in range(nbits):
        if b % 2 == 0:
            bit = (qlon >> ilon) & 1
            ilon -= 1
        else:
            bit = (qlat >> ilat) & 1
            ilat -= 1
        code = (code << 1) | bit
    return code


def int_to_str(codes: np.ndarray, precision: int) -> np.ndarray:
    """int64 geohash codes → array of base-32 strings."""
    p = _check_precision(precision)
    codes = np.asarray(codes, dtype=np.int64)
    chars = np.array(list(BASE32))
    parts = [chars[(codes >> (5 * (p - 1 - j))) & 31] for j in range(p)]
    out = parts[0].astype(object)
    for part in parts[1:]:
        out = out + part.astype(object)
    return np.asarray(out, dtype=str)


def encode(lat, lon, precision: int = 12) -> np.ndarray | str:
    """Geohash strings for (arrays of) latitude/longitude; a scalar input gives a ``str``."""
    scalar = np.ndim(lat) == 0 and np.ndim(lon) == 0
    out = int_to_str(np.atleast_1d(encode_int(lat, lon, precision)), precision)
    return str(out[0]) if scalar else out


def decode_bbox(cell: str) -> tuple[float, float, float, float]:
    """Cell extent ``(xmin, ymin, xmax, ymax)`` of a geohash string."""
    lon = [-180.0, 180.0]
    lat = [-90.0, 90.0]
    even = True
    for ch in cell:
        if ch not in _DECODE:
            raise ValueError(f"geohash {cell!r}: invalid character {ch!r}")
        v = _DECODE[ch]
        for shift in range(4, -1, -1):
            bit = (v >> shift) & 1
            iv = lon if even else lat
            mid = (iv[0] + iv[1]) / 2
            if bit:
                iv[0] = mid
            else:
                iv[1] = mid
            even = not even
    return lon[0], lat[0], lon[1], lat[1]
