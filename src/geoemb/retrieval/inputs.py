"""Corpus inputs: Parquet streaming, row validation and input identity for resumable builds.

- :func:`iter_parquet_parts` streams input files as numbered parts (optionally with their origin:
  file + row range) and refuses NaN/inf embeddings or coordinates, naming file and row;
- :func:`input_identity` identifies an input file for resume (path, size, mtime, rows, footer
  hash) and turns an unreadable/truncated file into an :class:`~geoemb.errors.InputError`;
- :func:`check_rows` is the row validation the builder applies to every batch;
- :func:`check_embeddings` / :func:`read_embeddings` validate / read an ``(N, D)`` embedding matrix
  (``.npy``, or a Parquet file or folder of parts with an embedding column) for the recall study.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
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
        with np.errstate(over="ignore", invalid="ignore"):  # a row sum is finite iff its values
            fast_ok = np.isfinite(emb.sum(axis=1)).all()  # are (or it overflowed: checked below)
        bad = [] if fast_ok else np.flatnonzero(~np.isfinite(emb).all(axis=1))
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


def check_schemas(paths: Sequence[str | os.PathLike], embedding_column: str = "embedding") -> None:
    """Every input file has the corpus columns with the types the builder reads, and the same
    schema (names and types of the columns read) as the first file: one :class:`InputError` naming the first file
    (partition) that differs and how, from the footers only (before any work)."""
    ref = ref_path = None
    for path in sorted(map(str, paths)):
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"cannot read input Parquet file {path}: {e}") from e
        names = schema.names
        missing = [c for c in ("id", "lon", "lat") if c not in names]
        if missing or (embedding_column not in names and "code" not in names):
            raise InputError(
                f"{path}: needs columns id, lon, lat and {embedding_column!r} or 'code'; has {names}"
            )
        vec = "code" if "code" in names else embedding_column
        want = {"id": pa.types.is_integer, "lon": pa.types.is_floating, "lat": pa.types.is_floating}
        for c, ok in want.items():
            if not ok(schema.field(c).type):
                raise InputError(f"{path}: column {c!r} has type {schema.field(c).type}; expected "
                                 f"{'an integer' if c == 'id' else 'a float'} column")  # fmt: skip
        t = schema.field(vec).type
        elem = pa.types.is_unsigned_integer if vec == "code" else pa.types.is_floating
        if not pa.types.is_fixed_size_list(t) or not elem(t.value_type):
            raise InputError(f"{path}: column {vec!r} must be a FixedSizeList of "
                             f"{'uint8' if vec == 'code' else 'floats'}, got {t}")  # fmt: skip
        used = ("id", "lon", "lat", "code", embedding_column, "bbox")  # what the reader reads
        fields = {f.name: f.type for f in schema if f.name in used}
        if ref is None:
            ref, ref_path = fields, path
            continue
        diff = [f"column {k!r} only in {ref_path}" for k in ref if k not in fields]
        diff += [f"column {k!r} not in {ref_path}" for k in fields if k not in ref]
        diff += [f"column {k!r} is {fields[k]} here, {ref[k]} in {ref_path}"
                 for k in fields if k in ref and fields[k] != ref[k]]  # fmt: skip
        if diff:
            raise InputError(f"input partition {path} has another schema than the first input "
                             f"file: {'; '.join(diff)}. All partitions of one corpus must share "
                             "one schema")  # fmt: skip


def iter_parquet_parts(paths: Sequence[str | os.PathLike], batch_rows: int = 65536,
                       embedding_column: str = "embedding", with_input: bool = False,
                       validate: bool = True) -> Iterator[tuple]:  # fmt: skip
    """Stream input Parquet files as numbered parts (deterministic order) for :class:`CorpusBuilder`.

    Reads columns ``id, lon, lat`` and ``embedding`` (FixedSizeList<float>) or ``code``
    (FixedSizeList<uint8>), plus ``bbox`` struct when present. Yields ``(part, batch)``, or
    ``(part, batch, input)`` with ``input = {"file", "start", "stop"}`` when ``with_input``.
    Rows with NaN/inf embeddings or coordinates raise :class:`InputError` naming file and row;
    ``validate=False`` leaves that to the consumer (:meth:`CorpusBuilder.write_part` checks every
    batch, naming file and row from the ``input`` record), so rows are checked once. Files whose
    schema differs from the first file's raise first (:func:`check_schemas`).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    check_schemas(paths, embedding_column)
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
            if validate:
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


# --------------------------------------------------------------------------- embedding matrices


def check_embeddings(
    x: np.ndarray, source: str = "embeddings", allow_integer: bool = False
) -> np.ndarray:
    """Validate an ``(N, D)`` float embedding matrix; return it as C-contiguous float32.

    ``allow_integer`` also accepts integer matrices (e.g. pooled codes in a feature cache).

    Raises
    ------
    InputError
        Not 2-D, empty, not a float dtype, or any NaN/inf value (naming ``source`` and the first
        bad row; float64 values beyond float32 range count as inf).
    """
    a = np.asarray(x)
    if a.ndim != 2 or 0 in a.shape:
        raise InputError(f"{source}: expected a non-empty (N, D) embedding matrix, got {a.shape}")
    ok = np.issubdtype(a.dtype, np.floating) or (
        allow_integer and np.issubdtype(a.dtype, np.integer)
    )
    if not ok:
        kind = "float (or integer)" if allow_integer else "float"
        raise InputError(f"{source}: expected {kind} embeddings, got dtype {a.dtype}")
    with np.errstate(over="ignore"):  # overflow -> inf, reported just below
        x = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            f"{source}: {len(rows)} row(s) contain NaN/inf (first: row {rows[0]}); non-finite "
            "embeddings are invalid data"
            + (" (values beyond float32 range became inf)" if a.dtype != np.float32 else "")
        )
    return x


def _parquet_embeddings(path: Path, column: str, source: str) -> np.ndarray:
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{source}: folder {path} holds no *.parquet files")
    parts = []
    for f in files:
        try:
            schema = pq.read_schema(f)
            if column not in schema.names:
                raise InputError(
                    f"{source}: {f} has no column {column!r} (columns: {schema.names}); expected "
                    "one (N, D) embedding column (FixedSizeList or list of floats)"
                )
            col = pq.read_table(f, columns=[column])[column]
        except (OSError, pa.ArrowException) as e:
            raise InputError(
                f"{source}: cannot read Parquet file {f} ({type(e).__name__}: {e})"
            ) from e
        t = col.type
        if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise InputError(f"{source}: {f} column {column!r} must be a list of floats, got {t}")
        if not pa.types.is_floating(t.value_type):
            raise InputError(f"{source}: {f} column {column!r} holds {t.value_type}, not floats")
        if col.null_count:
            raise InputError(f"{source}: {f} column {column!r} has {col.null_count} null rows")
        if pa.types.is_fixed_size_list(t):
            parts.append(
                fsl_to_numpy(col, np.float64 if t.value_type == pa.float64() else np.float32)
            )
            continue
        arr = col.combine_chunks() if col.num_chunks else pa.array([], type=t)
        lens = np.asarray(arr.value_lengths())
        if len(lens) and (lens != lens[0]).any():
            bad = int(np.flatnonzero(lens != lens[0])[0])
            raise InputError(
                f"{source}: {f} row {bad} has {lens[bad]} values, row 0 has {lens[0]}; embeddings "
                "must all have the same width"
            )
        width = int(lens[0]) if len(lens) else 0
        parts.append(
            np.asarray(arr.flatten().to_numpy(zero_copy_only=False)).reshape(len(arr), width)
        )
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def read_embeddings(path: str | os.PathLike, column: str = "embedding",
                    source: str | None = None) -> np.ndarray:  # fmt: skip
    """Read an ``(N, D)`` float embedding matrix from ``path``; return it validated as float32.

    Parameters
    ----------
    path:
        A ``.npy`` file (one array saved with ``numpy.save``; pickled arrays are refused), or a
        Parquet file / folder of ``*.parquet`` parts (read in name order) with ``column`` holding
        one embedding per row (``FixedSizeList<float>`` as ``python -m geoemb.retrieval synth``
        writes it, or a list of floats).
    column:
        The embedding column of Parquet inputs.
    source:
        How error messages name the input (default: the path).

    Raises
    ------
    InputError
        Unreadable/truncated file, an ``.npz`` archive, a missing column, ragged or non-float
        embeddings, or non-finite values (naming the file and first bad row).
    """
    p = Path(path)
    source = source or str(p)
    if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
        x = _parquet_embeddings(p, column, source)
    else:
        try:
            x = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(
                f"{source}: cannot read it as a .npy array ({type(e).__name__}: {e}); expected an "
                "(N, D) float .npy file or a Parquet file/folder with an embedding column"
            ) from e
        if not isinstance(x, np.ndarray):  # an .npz archive
            x.close()
            raise InputError(
                f"{source}: is an .npz archive; expected one (N, D) float array saved with "
                "numpy.save (.npy)"
            )
    return check_embeddings(x, source)


# --------------------------------------------------------------------------- embedding tables


_TABLE_SUFFIXES = (".parquet", ".gpq", ".geoparquet", ".pq")  # = geoemb.sources.tables.SUFFIXES


def _first_table_file(p: Path) -> Path | None:
    """``EmbeddingTable(..., p).files[0]`` (same listing and order), or ``None`` if it has none."""
    if p.is_file():
        return p
    out = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _TABLE_SUFFIXES
           and not any(s.startswith((".", "_")) for s in f.relative_to(p).parts)]  # fmt: skip
    return min(out, key=lambda f: f.relative_to(p).as_posix()) if out else None


def _corpus_schema(names: set, schema: pa.Schema, col: str) -> bool:
    return {"id", "lon", "lat"} <= names and (
        ("code" in names and pa.types.is_fixed_size_list(schema.field("code").type))
        or (col in names and pa.types.is_fixed_size_list(schema.field(col).type))
    )


def _is_corpus_layout(p: Path, embedding_column: str | None) -> bool:
    if not p.exists():
        return False
    first = _first_table_file(p)
    if first is None or not (p.is_file() or first.parent == p):
        return False
    try:
        schema = pq.read_schema(first)
    except (OSError, pa.ArrowException):
        return False  # the table reader reports it
    return _corpus_schema(set(schema.names), schema, embedding_column or "embedding")


def table_input(spec: str, source: str = "auto", embedding_column: str | None = None):
    """The :class:`~geoemb.sources.tables.EmbeddingTable` behind ``build-corpus --input`` when it
    is an embedding-table product (Clay, Major TOM, any GeoParquet), or ``None`` for the corpus
    layout (``id, lon, lat`` + ``embedding``/``code`` FixedSizeList) that
    :func:`iter_parquet_parts` reads.

    ``source="auto"`` looks at the first file: ``id, lon, lat`` + a FixedSizeList embedding/code
    column ⇒ corpus layout; ``unique_id`` + ``centre_lon/centre_lat`` ⇒ ``majortom``; an
    ``embedding``/``embeddings`` column with a ``geometry`` ⇒ ``clay``; else ``geoparquet``.
    """
    if source == "corpus":
        return None
    if source == "auto" and _is_corpus_layout(Path(spec), embedding_column):
        return None  # decided from one footer, without importing the table readers
    from geoemb.sources import TABLES, table_source
    from geoemb.sources.table_products import GEOPARQUET
    from geoemb.sources.tables import EmbeddingTable

    if source != "auto":
        if source not in TABLES:
            TABLES.get(source)  # raises, listing the valid names
        return table_source(source, path=spec, embedding_column=embedding_column)
    p = Path(spec)
    if not p.exists():
        return None  # a glob or a missing path: the corpus-layout reader reports it
    first = _first_table_file(p) or EmbeddingTable(GEOPARQUET, p).files[0]
    try:
        schema = pq.read_schema(first)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"cannot read input Parquet file {first}: {e}") from e
    names = set(schema.names)
    col = embedding_column or "embedding"
    if _corpus_schema(names, schema, col) and (p.is_file() or first.parent == p):
        return None
    if {"unique_id", "centre_lon", "centre_lat"} <= names:
        product = "majortom"
    elif (
        names & {"embedding", "embeddings"} and "geometry" in names and not {"lon", "lat"} <= names
    ):
        product = "clay"
    else:
        product = "geoparquet"
    return table_source(product, path=spec, embedding_column=embedding_column)


def table_parts(table, batch_rows: int = 65536, with_input: bool = False) -> Iterator[tuple]:
    """:func:`iter_parquet_parts` for an embedding table: numbered parts with ``id, lon, lat,
    bbox, embedding`` (and the WKB footprint as ``geometry`` when it is lon/lat)."""
    for part, (batch, origin) in enumerate(table.iter_batches(batch_rows)):
        yield (part, batch, origin) if with_input else (part, batch)


def table_width(table) -> int:
    """The embedding width of a table (from the footer, or its first row)."""
    width = table.check()["width"]
    return int(width) if width is not None else int(table.sample(1).shape[1])
