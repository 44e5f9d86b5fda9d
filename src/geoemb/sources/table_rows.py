"""Row decoding of embedding tables: stable ids, embeddings and footprint locations.

Helpers of :class:`geoemb.sources.tables.EmbeddingTable` (one rule each, see that module): ids of
string id columns (:func:`string_ids`) and of tables without one (:func:`file_row_ids`),
``(n, D)`` float32 embeddings from a list column (:func:`embeddings`), lon/lat centroids and
bounding boxes of WKB footprints (:func:`locate`). Bad rows raise
:class:`~geoemb.errors.InputError` naming the file, row and field.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from geoemb.errors import InputError

__all__ = ["embeddings", "file_key", "file_row_ids", "locate", "string_ids"]


def _digest(text: str, nbits: int) -> int:
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << nbits) - 1)


def string_ids(values: Sequence[str]) -> np.ndarray:
    """Stable int64 ids of string ids: the low 63 bits of BLAKE2b-64 of the UTF-8 string."""
    return np.fromiter((_digest(str(v), 63) for v in values), dtype=np.int64, count=len(values))


def file_key(path: str | os.PathLike) -> str:
    """The part of a file path that names it in a table: its Hive segments and its name
    (``geohash_l2=u0/year=2024/month=06/part-0.parquet``), whatever folder the table is read from."""
    parts = Path(path).parts
    return "/".join([p for p in parts[:-1] if "=" in p] + [parts[-1]])


def file_row_ids(path: str | os.PathLike, start: int, stop: int) -> np.ndarray:
    """Ids of rows ``start..stop-1`` of a table without an id column: ``key31 << 32 | row``."""
    if stop > (1 << 32):
        raise InputError(f"{path}: more than 2**32 rows; give the table an id column")
    return (np.int64(_digest(file_key(path), 31)) << np.int64(32)) + np.arange(
        start, stop, dtype=np.int64
    )


def embeddings(f: Path, name: str, col: pa.Array, start: int, width: int | None) -> np.ndarray:
    """``(n, D)`` float32 from a list column, refusing nulls, ragged rows and NaN/inf."""
    if isinstance(col.type, pa.BaseExtensionType):
        col = col.storage
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{f} row {start + i}: field {name!r} is null; expected an embedding")
    n = len(col)
    if pa.types.is_fixed_size_list(col.type):
        d = col.type.list_size
        values = col.flatten()
    else:
        lens = np.asarray(col.value_lengths().to_numpy(zero_copy_only=False))
        d = int(lens[0]) if width is None and n else width
        bad = np.flatnonzero(lens != d)
        if len(bad):
            i = int(bad[0])
            raise InputError(
                f"{f} row {start + i}: field {name!r} has {lens[i]} values; expected {d} like "
                "the other rows (a ragged list column is not an embedding table)"
            )
        values = col.flatten()
    if width is not None and d != width:
        raise InputError(
            f"{f}: field {name!r} has width {d}; expected {width} like the other files"
        )
    if values.null_count:
        j = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{f} row {start + j // d}: field {name!r} has a null value inside its "
                         "embedding; expected floats")  # fmt: skip
    x = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, d)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise InputError(
            f"{f} row {start + int(bad[0])}: field {name!r} has NaN/inf values; non-finite "
            "embeddings are invalid data"
        )
    return x


def locate(f: Path, name: str, col: pa.Array, start: int, crs: Any) -> tuple:
    """``lon, lat (n,)``, ``bbox (n, 4)`` in lon/lat and the WKB footprints (lon/lat CRSs only)
    of a WKB geometry column: centroids of footprints, unwrapped across the antimeridian."""
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{f} row {start + i}: field {name!r} is null; expected a footprint")
    wkb = col.to_numpy(zero_copy_only=False)
    try:
        geoms = shapely.from_wkb(wkb)
    except shapely.errors.GEOSException as e:
        raise InputError(f"{f}: field {name!r} (rows {start}..) is not valid WKB ({e})") from e
    empty = np.flatnonzero(shapely.is_empty(geoms))
    if len(empty):
        raise InputError(f"{f} row {start + int(empty[0])}: field {name!r} is an empty geometry")
    if crs is not None:
        import pyproj

        tr = pyproj.Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.stack(tr.transform(xy[:, 0], xy[:, 1]), 1))
    b = shapely.bounds(geoms)
    wrap = np.flatnonzero(b[:, 2] - b[:, 0] > 180)  # crosses the antimeridian: unwrap, then wrap
    if len(wrap):
        geoms = geoms.copy()
        geoms[wrap] = shapely.transform(
            geoms[wrap],
            lambda xy: np.stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0]), xy[:, 1]], 1),
        )
    c = shapely.centroid(geoms)
    lon, lat = shapely.get_x(c), shapely.get_y(c)
    lon = np.where(lon > 180, lon - 360, lon)
    bbox = b.copy()
    if len(wrap):  # the lon/lat box of an antimeridian footprint is the whole longitude range
        bbox[wrap, 0], bbox[wrap, 2] = -180.0, 180.0
    return lon, lat, bbox, (wkb if crs is None and not len(wrap) else None)
