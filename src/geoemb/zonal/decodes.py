"""Value decodes: stored embedding-raster values -> float32 embeddings, one :class:`Registry`.

Each entry is ``decode(values, dtype) -> float32`` (any shape) with ``meta["dtypes"]``, the storage
dtypes it accepts (``None``: any). The names, and which one each product uses:

``aef_power``
    AlphaEarth Foundations / Google Satellite Embedding V1 as published (int8 COGs):
    ``x = sign(q) * (|q| / 127.5) ** 2``. Source: Google's bucket README ("AlphaEarth Foundations GCS
    data", section *De-quantization*: "divide by 127.5, square, multiply by the sign of the original
    value"); the same constants in ``aef-loader`` (``AEF_DEQUANT_DIVISOR = 127.5``). The code
    ``-128`` is reserved for "no data" (README: "-128 is reserved", COG NoData = -128) and decodes to
    NaN here, so a file whose nodata tag was lost still yields no wrong numbers.
``linear_127``
    ``x = q / 127``, what some third-party readers do (rasteret's AEF how-to:
    ``raw.astype(float32) / 127.0``). Not the product's mapping: kept so results can be compared.
``aef_uint8``
    EuroSAT-Embed's AEF chips (GeoPool): uint8 codes with a +127 offset, ``q = code - 127``, then
    the power mapping (255 is unused).
``aef``
    Backwards-compatible automatic choice by storage dtype: ``aef_uint8`` for uint8, ``aef_power``
    for int8.
``raw``
    The stored values as float32 (already de-quantised products, e.g. Tessera GeoTIFF exports).

Tessera's scaled/unscaled reading (int8 x per-pixel scale) needs a second array: it is realised by
:mod:`geoemb.sources.tessera` as GDAL VRTs read with ``raw``.
"""

from __future__ import annotations

import numpy as np

from geoemb.errors import InputError
from geoemb.utils.registry import Registry

__all__ = ["DECODES", "DECODINGS", "check_decode", "decode_values"]

#: The int8 code AEF reserves for "no data".
AEF_NODATA = -128


def _decode_raw(arr: np.ndarray, dtype: str) -> np.ndarray:
    return arr.astype(np.float32, copy=False)


def _power(q: np.ndarray) -> np.ndarray:
    return (np.sign(q) * (np.abs(q) / np.float32(127.5)) ** 2).astype(np.float32, copy=False)


def _int8_codes(arr: np.ndarray) -> np.ndarray:
    """int8 codes as float32 with the reserved -128 turned into NaN (invalid, never a number)."""
    q = arr.astype(np.float32)
    q[arr == AEF_NODATA] = np.nan
    return q


def _decode_aef_power(arr: np.ndarray, dtype: str) -> np.ndarray:
    return _power(_int8_codes(arr))


def _decode_linear_127(arr: np.ndarray, dtype: str) -> np.ndarray:
    return (_int8_codes(arr) / np.float32(127.0)).astype(np.float32, copy=False)


def _decode_aef_uint8(arr: np.ndarray, dtype: str) -> np.ndarray:
    return _power(arr.astype(np.float32) - np.float32(127.0))


def _decode_aef(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return _decode_aef_uint8(arr, dtype)
    if dtype == "int8":
        return _decode_aef_power(arr, dtype)
    raise InputError(f"decode='aef' expects uint8 or int8 AEF codes, got dtype {dtype}")


#: Value decodes: name -> ``decode(values, dtype) -> float32`` (``DECODES.build(name)``).
DECODES = Registry("value decode")
DECODES.add("raw", lambda: _decode_raw, description="stored values cast to float32", dtypes=None)
DECODES.add(
    "aef",
    lambda: _decode_aef,
    description="AEF by storage dtype: int8 -> aef_power, uint8 -> aef_uint8",
    dtypes=("uint8", "int8"),
)
DECODES.add(
    "aef_power",
    lambda: _decode_aef_power,
    description="AlphaEarth (AEF) as published, the product's mapping: x = sign(q)(|q|/127.5)², int8, -128 = no data",
    dtypes=("int8",),
    product="aef",
)
DECODES.add(
    "linear_127",
    lambda: _decode_linear_127,
    description="x = q/127 (some third-party AEF readers; not the product's mapping), int8",
    dtypes=("int8",),
)
DECODES.add(
    "aef_uint8",
    lambda: _decode_aef_uint8,
    description="EuroSAT-Embed AEF chips: uint8 code - 127, then sign(q)(|q|/127.5)²",
    dtypes=("uint8",),
)
#: The decode names (for ``--help`` and choices).
DECODINGS = tuple(DECODES.names())


def decode_values(arr: np.ndarray, decode: str, dtype: str) -> np.ndarray:
    """Turn stored raster values ``arr`` (any shape, storage ``dtype``) into float32 embeddings
    with the :data:`DECODES` entry ``decode`` (see the module docstring for each name)."""
    return DECODES.build(decode)(arr, dtype)


def check_decode(decode: str, meta: object) -> None:
    """Refuse a tile whose storage dtype the decode cannot read (before any pixel is read).

    ``meta`` is anything with ``dtype`` and ``path`` attributes (a ``TileMeta``).
    """
    dtypes = DECODES.get(decode).meta.get("dtypes")
    dtype = meta.dtype
    if dtypes is not None and dtype not in dtypes:
        raise InputError(
            f"decode={decode!r} expects {'/'.join(dtypes)} codes; tile {meta.path} is {dtype}"
        )
