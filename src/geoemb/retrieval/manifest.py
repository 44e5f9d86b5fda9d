"""The corpus manifest: ``manifest.parquet`` (one row per shard) written from the completion
records of a :class:`~geoemb.retrieval.build.CorpusBuilder` build, with the id index beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from geoemb.errors import GeoembError, OutputError
from geoemb.retrieval.compact import COMPACT_DIR, compacted_ids, compacted_shards
from geoemb.retrieval.corpus_index import write_id_index
from geoemb.utils.io import atomic_path

MANIFEST = "manifest.parquet"
MANIFEST_VERSION = 1


class CorpusIntegrityError(GeoembError, RuntimeError):
    """The completed parts do not add up to the input (missing/extra parts, row count differs)."""


class BuildLockedError(OutputError):
    """Another process is building into the same corpus root."""


def _remove_orphans(root: Path) -> None:
    """Delete shard files that no completed part lists (left by a killed writer)."""
    listed = set()
    for marker in (root / "_parts").glob("part-*.json"):
        rec = json.loads(marker.read_text())
        listed |= {s["path"] for s in (rec if isinstance(rec, list) else rec["shards"])}
    for shard in root.glob("geohash=*/part-*.parquet"):
        if shard.relative_to(root).as_posix() not in listed:
            shard.unlink()


def write_manifest(root: str | os.PathLike, expected_rows: int | None = None) -> Path:
    """(Re)build ``root/manifest.parquet`` from ``_parts/*.json`` and ``_build.json``.

    Raises :class:`CorpusIntegrityError` if a part's shards do not add up to its rows, or the
    total differs from ``expected_rows``.
    """
    root = Path(root)
    cfg = json.loads((root / "_build.json").read_text())
    rows: list[dict] = []
    for marker in sorted((root / "_parts").glob("part-*.json")):
        rec = json.loads(marker.read_text())
        shards = rec if isinstance(rec, list) else rec["shards"]
        if not isinstance(rec, list) and sum(s["rows"] for s in shards) != rec["rows"]:
            raise CorpusIntegrityError(f"{marker}: shard rows do not add up to the part's rows")
        rows.extend(shards)
    ids = None
    if cfg.get("compact_rows"):
        ids = compacted_ids(root)
        part_rows = sum(r["rows"] for r in rows)
        rows = compacted_shards(root)
        if sum(r["rows"] for r in rows) != part_rows:
            raise CorpusIntegrityError(f"{root}: the compacted cells hold "
                                       f"{sum(r['rows'] for r in rows)} rows, the parts "
                                       f"{part_rows}; remove the root and rebuild")  # fmt: skip
    rows.sort(key=lambda r: r["path"])
    n_rows = int(sum(r["rows"] for r in rows))
    if expected_rows is not None and n_rows != int(expected_rows):
        raise CorpusIntegrityError(f"{root}: {n_rows} rows in the parts, expected {expected_rows}")
    schema = pa.schema([("path", pa.string()), ("rows", pa.int64()), ("xmin", pa.float64()),
                        ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64()),
                        ("cell", pa.string()), ("part", pa.int64()), ("bytes", pa.int64()),
                        ("sha256", pa.string())])  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=schema)
    info = {"manifest_version": MANIFEST_VERSION, "partitioning": "geohash",
            "geohash_precision": cfg["geohash_precision"], "code_column": "code",
            "code_bytes": cfg["code_bytes"], "dim": cfg["dim"],
            "max_rows_per_shard": cfg["max_rows_per_shard"],
            "n_rows": n_rows, "n_shards": len(rows)}  # fmt: skip
    meta = {b"geoemb:manifest": json.dumps(info).encode(),
            b"geoemb:quantization": json.dumps(cfg["quantization"]).encode(),
            b"geoemb:model": json.dumps(cfg["model"]).encode()}  # fmt: skip
    table = table.replace_schema_metadata(meta)
    write_id_index(root, table, ids)  # before the manifest: a manifest never lacks its id index
    with atomic_path(root / MANIFEST) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    for f in (root / COMPACT_DIR).glob("*.ids.npy"):  # in the id index now
        f.unlink()
    return root / MANIFEST
