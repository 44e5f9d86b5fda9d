"""Writing one corpus shard: GeoParquet 1.1 metadata from what the builder already knows (geometry
types per cell, bbox extent from the covering column), the file encoded in memory once, its
SHA-256 taken from those bytes (no re-read), then written under a temporary name and renamed.

The ``geo`` footer equals :func:`geoemb.utils.geoparquet.with_geo_metadata`'s for the same rows;
only the per-geometry WKB parse it does to find the types is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geoemb.utils.geoparquet import geo_metadata
from geoemb.utils.io import atomic_path


def bbox_columns(table: pa.Table) -> list[np.ndarray]:
    """The ``bbox`` covering column as four float64 arrays (xmin, ymin, xmax, ymax)."""
    b = table["bbox"]
    b = b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b
    return [np.asarray(b.field(f)) for f in ("xmin", "ymin", "xmax", "ymax")]


def extent(table: pa.Table, cols: list[np.ndarray] | None = None) -> list[float]:
    """``[xmin, ymin, xmax, ymax]`` of the ``bbox`` covering column (table not empty; ``cols``:
    its :func:`bbox_columns` when the caller has them)."""
    c = bbox_columns(table) if cols is None else cols
    return [float(c[0].min()), float(c[1].min()), float(c[2].max()), float(c[3].max())]


def shard_metadata(table: pa.Table, types: Iterable[str], extra: Mapping[str, Any],
                   ext: list[float] | None) -> dict[bytes, bytes]:  # fmt: skip
    """Footer metadata of a shard: GeoParquet ``geo`` (types, bbox, covering) + ``extra``."""
    geo = geo_metadata(
        "geometry", sorted(set(types)), ext if table.num_rows else None, None, "bbox"
    )
    meta = {b"geo": json.dumps(geo).encode()}
    for key, value in extra.items():
        meta[key.encode()] = (value if isinstance(value, str) else json.dumps(value)).encode()
    return meta


def write_shard(root: Path, rel: str, table: pa.Table, types: Iterable[str],
                extra: Mapping[str, Any], atomic: bool = True,
                row_group_size: int | None = None, bbox: list[np.ndarray] | None = None,
                **record: Any) -> dict:  # fmt: skip
    """Write ``table`` as the zstd GeoParquet shard ``root/rel``; return its manifest record
    (``path, rows, xmin, ymin, xmax, ymax, bytes, sha256`` + ``record``).

    ``atomic``: fsync + rename through :func:`~geoemb.utils.io.atomic_path` (per-part shards);
    otherwise a rename of ``<rel>.<pid>.tmp`` without fsync (compacted cells, whose record is
    written after all of them and whose hashes the manifest checks).
    """
    ext = extent(table, bbox) if table.num_rows else [float("nan")] * 4
    table = table.replace_schema_metadata(shard_metadata(table, types, extra, ext))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    buf = sink.getvalue()
    path = root / rel
    if atomic:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(buf)
    else:
        tmp = root / f"{rel}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(buf)
        os.replace(tmp, path)
    return {"path": rel, "rows": int(table.num_rows), **record,
            "xmin": ext[0], "ymin": ext[1], "xmax": ext[2], "ymax": ext[3],
            "bytes": int(buf.size), "sha256": hashlib.sha256(buf).hexdigest()}  # fmt: skip
