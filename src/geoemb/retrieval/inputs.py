"""Corpus inputs: Parquet streaming, row validation and input identity for resumable builds.

- :func:`iter_parquet_parts` streams input files as numbered parts (optionally with their origin:
  file + row range) and refuses NaN/inf embeddings or coordinates, naming file and row;
- :func:`input_identity` identifies an input file for resume (path, size, mtime, rows, footer
  hash) and turns an unreadable/truncated file into an :class:`~geoemb.errors.InputError`;
- :func:`check_rows` is the row validation the builder applies to every batch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geoemb.errors import InputError

# --------------------------------------------------------------------------- arrow helpers


def _fsl(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def fsl_to_numpy(col: pa.ChunkedArray | pa.Array, dtype=np.uint8) -> np.ndarray:
    """FixedSizeList column → ``(n, width)`` numpy array."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    width = col.type.list_size
    if len(col) == 0:
        return np.zeros((0, width), dtype=dtype)
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=dtype).reshape(len(col), width)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- validation


def check_rows(batch: Mapping[str, Any], where: Callable[[int], str]) -> None:
    """Raise :class:`InputError` for non-finite embeddings/coordinates or out-of-range lon/lat.

    ``where(i)`` names row ``i`` of the batch (e.g. ``"in.parquet row 1234 (id 77)"``).
    """
    if "embedding" in batch:
        emb = np.asarray(batch["embedding"])
        if emb.ndim != 2:
            raise InputError(f"{where(0)}: 'embedding' must be (n, D), got shape {emb.shape}")
        bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        if len(bad):
            raise InputError(
                f"{where(int(bad[0]))}: embedding has NaN/inf values ({len(bad)} bad row(s) in "
                "this batch); non-finite embeddings are invalid data"
            )
    lon, lat = np.asarray(batch["lon"], np.float64), np.asarray(batch["lat"], np.float64)
    bad = np.flatnonzero(
        ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lon) > 180) | (np.abs(lat) > 90)
    )
    if len(bad):
        i = int(bad[0])
        raise InputError(
            f"{where(i)}: lon/lat ({lon[i]}, {lat[i]}) is not a finite WGS84 coordinate "
            "(|lon| <= 180, |lat| <= 90)"
        )


def input_identity(path: str | os.PathLike) -> dict:
    """What identifies an input Parquet file for resume: absolute path, size, mtime, row count
    and the SHA-256 of its footer (cheap, and changes with the data in practice).

    Raises
    ------
    InputError
        The file is not a readable Parquet file (truncated, not Parquet).
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
        meta = pq.ParquetFile(p).metadata
        with open(p, "rb") as fh:  # footer = metadata + 4-byte length + "PAR1"
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(end - 8)
            n = int.from_bytes(fh.read(4), "little")
            fh.seek(max(0, end - 8 - n))
            footer = hashlib.sha256(fh.read()).hexdigest()[:16]
    except (OSError, pa.ArrowException) as e:
        raise InputError(
            f"cannot read input Parquet file {p} ({type(e).__name__}: {e}); a truncated or "
            "non-Parquet file must be re-created"
        ) from e
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "rows": int(meta.num_rows), "footer_sha256": footer}  # fmt: skip


def iter_parquet_parts(paths: Sequence[str | os.PathLike], batch_rows: int = 65536,
                       embedding_column: str = "embedding",
                       with_input: bool = False) -> Iterator[tuple]:  # fmt: skip
    """Stream input Parquet files as numbered parts (deterministic order) for :class:`CorpusBuilder`.

    Reads columns ``id, lon, lat`` and ``embedding`` (FixedSizeList<float>) or ``code``
    (FixedSizeList<uint8>), plus ``bbox`` struct when present. Yields ``(part, batch)``, or
    ``(part, batch, input)`` with ``input = {"file", "start", "stop"}`` when ``with_input``.
    Rows with NaN/inf embeddings or coordinates raise :class:`InputError` naming file and row.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    part = 0
    for path in sorted(map(str, paths)):
        try:
            f = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"cannot read input Parquet file {path}: {e}") from e
        names = f.schema_arrow.names
        missing = [c for c in ("id", "lon", "lat") if c not in names]
        if missing or (embedding_column not in names and "code" not in names):
            raise InputError(
                f"{path}: needs columns id, lon, lat and {embedding_column!r} or 'code'; has {names}"
            )
        vec = "code" if "code" in names else embedding_column
        vtype = f.schema_arrow.field(vec).type
        if not pa.types.is_fixed_size_list(vtype):
            raise InputError(f"{path}: column {vec!r} must be a FixedSizeList, got {vtype}")
        start = 0
        batches = f.iter_batches(batch_size=batch_rows)
        while True:
            try:
                rb = next(batches)
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as e:
                raise InputError(
                    f"cannot read input Parquet file {path} near row {start}: {e}"
                ) from e
            for c in ("id", "lon", "lat", vec):
                if rb.column(c).null_count:
                    raise InputError(f"{path}: column {c!r} has nulls in rows {start}..")
            batch: dict[str, Any] = {k: rb.column(k).to_numpy() for k in ("id", "lon", "lat")}
            if "code" in names:
                batch["code"] = fsl_to_numpy(rb.column("code"), np.uint8)
            else:
                batch["embedding"] = fsl_to_numpy(rb.column(embedding_column), np.float32)
            if "bbox" in names:
                b = rb.column("bbox")
                batch["bbox"] = np.stack(
                    [b.field(f).to_numpy() for f in ("xmin", "ymin", "xmax", "ymax")], 1
                )
            check_rows(
                batch,
                lambda i, p=path, s0=start, ids=batch["id"]: f"{p} row {s0 + i} (id {ids[i]})",
            )
            stop = start + rb.num_rows
            if with_input:
                yield part, batch, {"file": str(Path(path).resolve()), "start": start, "stop": stop}
            else:
                yield part, batch
            start, part = stop, part + 1
