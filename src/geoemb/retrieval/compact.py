"""Compaction: each geohash cell ends as few, well-sized files instead of input parts × cells.

With compaction on, each input part is written as ONE uncompressed Arrow IPC spill file
``_spill/part-PPPPP.arrow`` (rows sorted by the finer geohash, then id, so each cell is one
contiguous slice; the finer geohash code rides along as column :data:`FINE`). After every input
part is complete, each group of consecutive cells is read as one slice per spill file
(memory-mapped), sorted once, and every cell ``c`` written as ``ceil(rows / compact_rows)`` files
of nearly equal size, ``geohash=c/cell-JJJ.parquet``, rows sorted by a finer geohash
(``precision + 2``) then id, so
Parquet row groups (``row_group_rows``) are spatially compact and their ``bbox`` statistics prune
reads. The order depends only on the rows, not on how the input was batched or which process wrote
which part — a Dask build and a single-process build write identical files.

Crash safety: a group's cell files are renamed into place, then ``_compact/<first cell>.ids.npy``
(the ids of its files in row order: the id index is built from them, not by re-reading the
shards; removed once the manifest is written) and ``_compact/<first cell>.json`` (its shards,
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
import pyarrow.parquet as pq

from geoemb.errors import GeoembError, InputError
from geoemb.retrieval import geohash
from geoemb.retrieval.shards import bbox_columns, write_shard
from geoemb.utils.geoparquet import geometry_types
from geoemb.utils.io import atomic_path, atomic_write_text

COMPACT_DIR = "_compact"
SPILL_DIR = "_spill"
#: Compaction records; not ``.<name>.json.<writer>.tmp.json``, the temporary file of a record
#: another Dask task is writing at that moment (pathlib's ``*`` matches dot files).
RECORDS = "[!.]*.json"
#: Spill column holding each row's geohash code at ``precision + 2`` (dropped from cell files).
FINE = "__geoemb_fine__"
#: Rows compacted per task (bounds a task's memory: ~200 B per 1024-bit row).
GROUP_ROWS = 1_000_000
#: Rows per Parquet row group of a cell file (rows spatially sorted: bbox statistics prune reads).
ROW_GROUP_ROWS = 16384


def write_spill(root: Path, part: int, table: pa.Table, cells: np.ndarray,
                bounds: list[int], types: list[list[str]] | None = None) -> list[dict]:  # fmt: skip
    """Write part ``part`` (rows sorted by the :data:`FINE` geohash code, then id) as one
    uncompressed Arrow IPC spill file; return one record per cell (``path``, ``offset``,
    ``rows``, ``cell``, ``part`` and its geometry ``types``)."""
    rel = f"{SPILL_DIR}/part-{part:05d}.arrow"
    with atomic_path(root / rel) as tmp, pa.ipc.new_file(str(tmp), table.schema) as w:
        w.write_table(table)
    return [{"path": rel, "offset": int(bounds[c]), "rows": int(bounds[c + 1] - bounds[c]),
             "cell": str(cell), "part": int(part),
             **({"types": list(types[c])} if types is not None else {})}
            for c, cell in enumerate(cells)]  # fmt: skip


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


def compact_cells(root: str | Path, cells: list[tuple[str, list[dict]]], compact_rows: int,
                  precision: int, meta: dict[str, Any]) -> None:  # fmt: skip
    """Compact several cells (memory-mapping each spill file once) and write ONE record for
    them, ``_compact/<first cell>.json`` (cells that already have a record are skipped)."""
    root = Path(root)
    done = _done_cells(root)
    todo = [(c, s) for c, s in cells if c not in done]
    if not todo:
        return
    files: dict[str, pa.Table] = {}
    ids: list[np.ndarray] = []
    if all("offset" in s for _, shards in todo for s in shards):  # spill files: one sort
        table, spans = _group_sorted(root, todo, precision, files)
        recs = {}
        for cell, shards in todo:
            a, b = spans.get(cell, (0, 0))
            sub = table.slice(a, b - a)
            types = ({t for s in shards for t in s["types"]}
                     if all("types" in s for s in shards) else geometry_types(sub["geometry"]))  # fmt: skip
            recs[cell] = _write_cell(root, cell, sub, types, sum(s["rows"] for s in shards),
                                     compact_rows, meta, None, ids)  # fmt: skip
    else:
        recs = {cell: compact_cell(root, cell, shards, compact_rows, precision, meta,
                                   files=files, ids_out=ids)
                for cell, shards in todo}  # fmt: skip
    name = f"{todo[0][0]}.ids.npy"  # the id index is built from these, not by re-reading shards
    with atomic_path(root / COMPACT_DIR / name) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.concatenate(ids) if ids else np.zeros(0, np.int64), allow_pickle=False)
    atomic_write_text(root / COMPACT_DIR / f"{todo[0][0]}.json",
                      json.dumps({"cells": recs, "ids": name,
                                  "rows": {c: sum(r["rows"] for r in v)
                                           for c, v in recs.items()}}))  # fmt: skip


def _done_cells(root: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in sorted((root / COMPACT_DIR).glob(RECORDS)):
        out.update(json.loads(f.read_text())["cells"])
    return out


def _spill(root: Path, rel: str, files: dict, cell: str) -> pa.Table:
    if rel not in files:
        try:
            files[rel] = pa.ipc.open_file(pa.memory_map(str(root / rel))).read_all()
        except (OSError, pa.ArrowException) as e:
            raise InputError(
                f"compaction of cell {cell}: cannot read shard {root / rel}: {e}"
            ) from e
    return files[rel]


def _sorted(table: pa.Table, precision: int) -> tuple[pa.Table, np.ndarray]:
    """``table`` ordered by the finer geohash (``precision + 2``), then id; and that code."""
    table = table.replace_schema_metadata(None)
    if FINE in table.column_names:  # computed once per part by the builder
        fine = table[FINE].to_numpy()
        table = table.drop_columns([FINE])
    else:  # part shards / spill files of an older build
        fine = geohash.encode_int(table["lat"].to_numpy(), table["lon"].to_numpy(),
                                  min(12, precision + 2))  # fmt: skip
    order = np.lexsort((table["id"].to_numpy(), fine))
    if table["id"].num_chunks > 1 or (order != np.arange(len(order))).any():
        table = table.take(pa.array(order))
    return table, fine[order]


def _concat(tables: list[pa.Table], what: str) -> pa.Table:
    try:
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as e:
        raise InputError(f"compaction of {what}: its input parts have different columns ({e}); "
                         "every batch of one corpus must have the same fields") from e  # fmt: skip


def _group_sorted(root: Path, todo: list[tuple[str, list[dict]]], precision: int,
                  files: dict) -> tuple[pa.Table, dict[str, tuple[int, int]]]:  # fmt: skip
    """The rows of several cells from their spill files — one slice per file (each file is
    sorted by cell), one sort — and each cell's row span in the result."""
    ranges: dict[str, tuple[int, int]] = {}
    for _, shards in todo:
        for s in shards:
            lo, hi = ranges.get(s["path"], (s["offset"], s["offset"]))
            ranges[s["path"]] = (min(lo, s["offset"]), max(hi, s["offset"] + s["rows"]))
    tables = [_spill(root, rel, files, todo[0][0]).slice(lo, hi - lo)
              for rel, (lo, hi) in sorted(ranges.items())]  # fmt: skip
    table, fine = _sorted(_concat(tables, f"cells {todo[0][0]}..{todo[-1][0]}"), precision)
    cell = fine >> (5 * (min(12, precision + 2) - precision))
    starts = np.r_[0, np.flatnonzero(np.diff(cell)) + 1] if len(cell) else np.zeros(0, int)
    names = geohash.int_to_str(cell[starts], precision) if len(cell) else []
    ends = [*starts[1:].tolist(), len(cell)]
    return table, {str(c): (int(a), int(b)) for c, a, b in zip(names, starts, ends)}


def _write_cell(root: Path, cell: str, table: pa.Table, types: set, want: int,
                compact_rows: int, meta: dict[str, Any], row_group_rows: int | None,
                ids_out: list | None) -> list[dict]:  # fmt: skip
    """Write one cell's sorted rows as ``ceil(rows / compact_rows)`` files of nearly equal size."""
    n = table.num_rows
    if n != want:
        raise CompactionError(f"compacted cell {cell} of {root} holds {n} rows but its input "
                              f"parts give it {want}; remove {root} and rebuild")  # fmt: skip
    nfiles = max(1, math.ceil(n / compact_rows))
    bounds = np.linspace(0, n, nfiles + 1).round().astype(int)
    infos = []
    (root / f"geohash={cell}").mkdir(exist_ok=True)
    bb = bbox_columns(table) if n else None
    for j in range(nfiles):
        s, e = int(bounds[j]), int(bounds[j + 1])
        sub = table.slice(s, e - s)
        infos.append(write_shard(root, f"geohash={cell}/cell-{j:03d}.parquet", sub, types, meta,
                                 atomic=False, row_group_size=row_group_rows or ROW_GROUP_ROWS,
                                 bbox=None if bb is None else [c[s:e] for c in bb],
                                 cell=cell, part=-1))  # fmt: skip
        if ids_out is not None:
            ids_out.append(sub["id"].to_numpy())
    return infos


def compact_cell(root: str | Path, cell: str, shards: list[dict], compact_rows: int,
                 precision: int, meta: dict[str, Any], row_group_rows: int | None = None,
                 files: dict | None = None, ids_out: list | None = None) -> list[dict]:  # fmt: skip
    """Merge one cell's spill row groups (or part shards) into its ``cell-JJJ.parquet`` files;
    return their records (and append each file's ids to ``ids_out``).

    Rows are ordered by the finer geohash (``precision + 2``), then id. Cell files are renamed
    into place (atomic against a killed process) without a per-file fsync; their SHA-256 is in
    the record and the manifest.
    """
    root = Path(root)
    files = {} if files is None else files
    tables, types = [], set()
    for s in shards:
        if "offset" in s:
            tables.append(_spill(root, s["path"], files, cell).slice(s["offset"], s["rows"]))
        else:
            try:
                tables.append(pq.read_table(root / s["path"]))
            except (OSError, pa.ArrowException) as e:
                raise InputError(f"compaction of cell {cell}: cannot read shard "
                                 f"{root / s['path']}: {e}") from e  # fmt: skip
        types |= set(s["types"]) if "types" in s else set(geometry_types(tables[-1]["geometry"]))
    table, _ = _sorted(_concat(tables, f"cell {cell}"), precision)
    return _write_cell(root, cell, table, types, int(sum(s["rows"] for s in shards)),
                       compact_rows, meta, row_group_rows, ids_out)  # fmt: skip


def compacted_ids(root: Path) -> dict[str, np.ndarray] | None:
    """The ids of every compacted shard (``path -> ids`` in file row order) from the compaction
    records, or ``None`` when a record has no ids file (then the id index reads the shards)."""
    out: dict[str, np.ndarray] = {}
    for f in sorted((root / COMPACT_DIR).glob(RECORDS)):
        rec = json.loads(f.read_text())
        p = root / COMPACT_DIR / str(rec.get("ids", ""))
        if "ids" not in rec or not p.is_file():
            return None
        ids = np.load(p, allow_pickle=False)
        shards = [r for v in rec["cells"].values() for r in v]
        if len(ids) != sum(r["rows"] for r in shards):
            return None
        bounds = np.cumsum([0] + [r["rows"] for r in shards])
        out.update({r["path"]: ids[a:b] for r, a, b in zip(shards, bounds[:-1], bounds[1:])})
    return out


def compacted_shards(root: Path) -> list[dict]:
    """Every compacted shard record (manifest rows) of ``root``, in path order."""
    return sorted((r for v in _done_cells(root).values() for r in v), key=lambda r: r["path"])


def compact(root: str | Path, compact_rows: int, precision: int, meta: dict[str, Any],
            client: Any = None) -> list[dict]:  # fmt: skip
    """Compact every cell of ``root`` (in this process, or one Dask task per cell on ``client``)."""
    root = Path(root)
    (root / COMPACT_DIR).mkdir(exist_ok=True)
    for tmp in root.glob("geohash=*/cell-*.tmp"):  # left by a killed compaction
        tmp.unlink()
    cells = part_shards_by_cell(root)
    items = list(cells.items())
    workers = 1 if client is None else len(client.scheduler_info()["workers"])
    total = sum(s["rows"] for _, v in items for s in v)
    # groups of consecutive cells of <= group_rows rows (>= 4 groups per worker on Dask)
    group_rows = max(1, min(GROUP_ROWS, -(-total // (4 * workers)) if client else GROUP_ROWS))
    groups, cur, acc = [], [], 0
    for it in items:
        cur.append(it)
        acc += sum(s["rows"] for s in it[1])
        if acc >= group_rows:
            groups.append(cur)
            cur, acc = [], 0
    groups += [cur] if cur else []
    if client is None:
        for g in groups:
            compact_cells(root, g, compact_rows, precision, meta)
    else:
        futs = [client.submit(compact_cells, str(root), g, compact_rows, precision, meta,
                              key=f"geoemb-compact-{g[0][0]}-{root.name}", pure=False)
                for g in groups]  # fmt: skip
        from distributed.scheduler import KilledWorker

        for g, f in zip(groups, futs):
            try:
                f.result()
            except KilledWorker as e:
                for other in futs:
                    other.cancel()
                raise CompactionError(
                    f"{root}: the Dask workers compacting cells {g[0][0]}..{g[-1][0]} died too "
                    f"often ({e}); no manifest was written. Rerun: compacted cells are kept"
                ) from e
    done = _done_cells(root)
    wrong = [c for c, v in cells.items()
             if c in done and sum(r["rows"] for r in done[c]) != sum(s["rows"] for s in v)]  # fmt: skip
    if wrong or set(cells) - set(done):
        raise CompactionError(f"{root}: compacted cells {wrong[:5]} hold other rows than their "
                              f"input parts, or cells {sorted(set(cells) - set(done))[:5]} were "
                              "not compacted; remove the root and rebuild")  # fmt: skip
    stale = set(done) - set(cells)
    if stale:
        raise CompactionError(f"{root}/{COMPACT_DIR}: records of cells {sorted(stale)[:5]} that "
                              "no input part has; the root holds another build — use a new root")  # fmt: skip
    for f in (root / SPILL_DIR).glob("*.arrow"):  # every cell is compacted
        f.unlink()
    return compacted_shards(root)
