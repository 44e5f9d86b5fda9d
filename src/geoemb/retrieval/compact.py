"""Compaction: each geohash cell ends as few, well-sized files instead of input parts × cells.

With compaction on, each input part is written as ONE spill file ``_spill/part-PPPPP.parquet``
(rows sorted by cell, one row group per cell, uncompressed). After every input part is complete,
cell ``c``'s row groups of all spill files are merged into ``ceil(rows / compact_rows)`` files of nearly equal size,
``geohash=c/cell-JJJ.parquet``, rows sorted by a finer geohash (``precision + 2``) then id, so
Parquet row groups (``row_group_rows``) are spatially compact and their ``bbox`` statistics prune
reads. The order depends only on the rows, not on how the input was batched or which process wrote
which part — a Dask build and a single-process build write identical files.

Crash safety: a cell's files are written atomically, then ``_compact/<cell>.json`` (its shards,
rows, extents, hashes); once every cell has its record the spill files are deleted. A killed
compaction resumes at the first cell without a record. The rows of each record must equal the rows
the part records give that cell.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geoemb.errors import GeoembError, InputError
from geoemb.retrieval import geohash
from geoemb.retrieval.inputs import _sha256
from geoemb.utils.geoparquet import with_geo_metadata
from geoemb.utils.io import atomic_path, atomic_write_text

COMPACT_DIR = "_compact"
SPILL_DIR = "_spill"


def write_spill(root: Path, part: int, table: pa.Table, cells: np.ndarray,
                bounds: list[int]) -> list[dict]:  # fmt: skip
    """Write part ``part`` (rows sorted by cell) as one spill file with one row group per cell;
    return one record per cell (``path``, ``row_group``, ``rows``, ``cell``, ``part``)."""
    rel = f"{SPILL_DIR}/part-{part:05d}.parquet"
    infos = []
    with atomic_path(root / rel) as tmp:
        with pq.ParquetWriter(tmp, table.schema, compression="none") as w:
            for c, cell in enumerate(cells):
                n = int(bounds[c + 1] - bounds[c])
                w.write_table(table.slice(int(bounds[c]), n), row_group_size=max(n, 1))
                infos.append({"path": rel, "row_group": c, "rows": n, "cell": str(cell),
                              "part": int(part)})  # fmt: skip
    return infos


class CompactionError(GeoembError, RuntimeError):
    """A compacted cell does not hold exactly the rows its input parts gave it."""


def part_shards_by_cell(root: Path) -> dict[str, list[dict]]:
    """Shard records of the completed parts, grouped by cell (each list sorted by path)."""
    cells: dict[str, list[dict]] = defaultdict(list)
    for marker in sorted((root / "_parts").glob("part-*.json")):
        rec = json.loads(marker.read_text())
        for s in rec if isinstance(rec, list) else rec["shards"]:
            cells[s["cell"]].append(s)
    return {c: sorted(v, key=lambda s: s["path"]) for c, v in sorted(cells.items())}


def _record(root: Path, cell: str) -> Path:
    return root / COMPACT_DIR / f"{cell}.json"


def compact_cells(root: str | Path, cells: list[tuple[str, list[dict]]], compact_rows: int,
                  precision: int, meta: dict[str, Any]) -> None:  # fmt: skip
    """:func:`compact_cell` for several cells, opening each spill file once."""
    files: dict[str, pq.ParquetFile] = {}
    for cell, shards in cells:
        compact_cell(root, cell, shards, compact_rows, precision, meta, files=files)


def compact_cell(root: str | Path, cell: str, shards: list[dict], compact_rows: int,
                 precision: int, meta: dict[str, Any], row_group_rows: int = 16384,
                 files: dict | None = None) -> list[dict]:  # fmt: skip
    """Merge one cell's spill row groups (or part shards) into its ``cell-JJJ.parquet`` files;
    return their records.

    Idempotent: a cell with a record returns it (after deleting leftover part shards).
    """
    root = Path(root)
    files = {} if files is None else files
    rec_path = _record(root, cell)
    want = int(sum(s["rows"] for s in shards))
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
    else:
        tables = []
        for s in shards:
            p = root / s["path"]
            try:
                if "row_group" in s:
                    if s["path"] not in files:
                        files[s["path"]] = pq.ParquetFile(p)
                    tables.append(files[s["path"]].read_row_group(s["row_group"]))
                else:
                    tables.append(pq.read_table(p))
            except (OSError, pa.ArrowException) as e:
                raise InputError(f"compaction of cell {cell}: cannot read shard {p}: {e}") from e
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        table = table.replace_schema_metadata(None)
        fine = geohash.encode(table["lat"].to_numpy(), table["lon"].to_numpy(),
                              min(12, precision + 2))  # fmt: skip
        table = table.take(pa.array(np.lexsort((table["id"].to_numpy(), np.asarray(fine)))))
        n = table.num_rows
        nfiles = max(1, math.ceil(n / compact_rows))
        bounds = np.linspace(0, n, nfiles + 1).round().astype(int)
        infos = []
        for j in range(nfiles):
            s, e = int(bounds[j]), int(bounds[j + 1])
            sub = with_geo_metadata(table.slice(s, e - s).replace_schema_metadata(None),
                                    extra_metadata=meta)  # fmt: skip
            rel = f"geohash={cell}/cell-{j:03d}.parquet"
            with atomic_path(root / rel) as tmp:
                pq.write_table(sub, tmp, compression="zstd", row_group_size=row_group_rows)
            b = sub["bbox"].combine_chunks()
            infos.append({
                "path": rel, "rows": e - s, "cell": cell, "part": -1,
                "xmin": float(pc.min(b.field("xmin")).as_py()),
                "ymin": float(pc.min(b.field("ymin")).as_py()),
                "xmax": float(pc.max(b.field("xmax")).as_py()),
                "ymax": float(pc.max(b.field("ymax")).as_py()),
                "bytes": (root / rel).stat().st_size, "sha256": _sha256(root / rel),
            })  # fmt: skip
        rec = {"cell": cell, "rows": n, "shards": infos}
        atomic_write_text(rec_path, json.dumps(rec))
    if rec["rows"] != want:
        raise CompactionError(f"{rec_path}: compacted cell {cell} holds {rec['rows']} rows but "
                              f"its input parts give it {want}; remove {root} and rebuild")  # fmt: skip
    for s in shards:  # the part shards are now redundant (spill files: once all cells are done)
        if "row_group" not in s:
            (root / s["path"]).unlink(missing_ok=True)
    return rec["shards"]


def compacted_shards(root: Path) -> list[dict]:
    """Every compacted shard record (manifest rows) of ``root``."""
    out = []
    for f in sorted((root / COMPACT_DIR).glob("*.json")):
        out.extend(json.loads(f.read_text())["shards"])
    return out


def compact(root: str | Path, compact_rows: int, precision: int, meta: dict[str, Any],
            client: Any = None) -> list[dict]:  # fmt: skip
    """Compact every cell of ``root`` (in this process, or one Dask task per cell on ``client``)."""
    root = Path(root)
    (root / COMPACT_DIR).mkdir(exist_ok=True)
    cells = part_shards_by_cell(root)
    items = list(cells.items())
    if client is None:
        compact_cells(root, items, compact_rows, precision, meta)
    else:  # ~4 tasks per worker, cells dealt round-robin (each task opens each spill file once)
        n_tasks = max(1, min(len(items), 4 * len(client.scheduler_info()["workers"])))
        futs = [client.submit(compact_cells, str(root), items[t::n_tasks], compact_rows,
                              precision, meta, key=f"geoemb-compact-{t}-{root.name}", pure=False)
                for t in range(n_tasks)]  # fmt: skip
        client.gather(futs)
    stale = set(p.stem for p in (root / COMPACT_DIR).glob("*.json")) - set(cells)
    if stale:
        raise CompactionError(f"{root}/{COMPACT_DIR}: records of cells {sorted(stale)[:5]} that "
                              "no input part has; the root holds another build — use a new root")  # fmt: skip
    for f in (root / SPILL_DIR).glob("*.parquet"):  # every cell is compacted
        f.unlink()
    return compacted_shards(root)
