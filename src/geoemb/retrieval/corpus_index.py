"""Indexes beside a built corpus: the id index (query by id without a scan) and saved ANN indexes.

Files (``root/``)::

    id_index.parquet          id (int64, sorted), shard (int32: row of manifest.parquet sorted by
                              path), row (int32: row within the shard); row groups of 65,536 ids,
                              so a lookup reads only the row groups whose id statistics cover it
    _ann/<backend>.faiss      a saved ANN index over the corpus codes in id order (+ .json key,
    _ann/<backend>.ids.npy    + the corpus ids of its rows)

Both are keyed by the **manifest digest** (SHA-256 over every shard's path and SHA-256): an index
of other shards is refused (:class:`~geoemb.errors.ResumeMismatchError` naming what differs), never
silently used. :func:`write_id_index` runs whenever the manifest is (re)written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from geoemb.errors import InputError, ResumeMismatchError
from geoemb.utils.io import atomic_path

ID_INDEX = "id_index.parquet"
ID_ROW_GROUP = 65536
ANN_DIR = "_ann"


def manifest_digest(manifest: pa.Table) -> str:
    """SHA-256 over the manifest's (path, sha256) rows in path order (the corpus content key)."""
    t = manifest.select(["path", "sha256"]).sort_by("path")
    h = hashlib.sha256()
    for p, s in zip(t["path"].to_pylist(), t["sha256"].to_pylist()):
        h.update(f"{p}\0{s}\n".encode())
    return h.hexdigest()


def write_id_index(root: str | os.PathLike, manifest: pa.Table,
                   ids: Mapping[str, np.ndarray] | None = None) -> Path:  # fmt: skip
    """Write ``root/id_index.parquet`` for the shards of ``manifest``.

    ``ids`` (shard path → its ids in row order, e.g. kept by the compaction) spares reading the
    shards; without it (or when it lacks a shard or a count differs) only their id column is read.

    Raises
    ------
    InputError
        An id appears in two rows of the corpus.
    """
    root = Path(root)
    man = manifest.sort_by("path")
    counts = man["rows"].to_numpy().astype(np.int64)
    paths = [str(root / rel) for rel in man["path"].to_pylist()]
    rels = man["path"].to_pylist()
    if ids is not None and all(r in ids and len(ids[r]) == c for r, c in zip(rels, counts)):
        ids_a = np.concatenate([ids[r] for r in rels]) if rels else np.zeros(0, np.int64)
    else:  # one threaded scan of the id column, in file order (a dataset keeps fragment order)
        ids_a = (ds.dataset(paths, format="parquet").to_table(columns=["id"])["id"].to_numpy()
                 if paths else np.zeros(0, np.int64))  # fmt: skip
    if len(ids_a) != counts.sum():
        raise InputError(f"{root}: the shards hold {len(ids_a)} rows, the manifest {counts.sum()}")
    shard_a = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    row_a = (np.arange(len(ids_a), dtype=np.int64) - starts).astype(np.int32)
    order = np.argsort(ids_a, kind="stable")
    ids_a, shard_a, row_a = ids_a[order], shard_a[order], row_a[order]
    dup = np.flatnonzero(ids_a[1:] == ids_a[:-1])
    if len(dup):
        raise InputError(f"{root}: id {ids_a[dup[0]]} appears in more than one corpus row "
                         f"({len(dup)} duplicate(s)); ids must be unique")  # fmt: skip
    table = pa.table({"id": ids_a, "shard": shard_a, "row": row_a})
    table = table.replace_schema_metadata({b"geoemb:manifest_digest": manifest_digest(man)})
    with atomic_path(root / ID_INDEX) as tmp:
        pq.write_table(table, tmp, row_group_size=ID_ROW_GROUP, compression="zstd",
                       write_statistics=True)  # fmt: skip
    return root / ID_INDEX


def locate_ids(root: str | os.PathLike, manifest: pa.Table, ids: Sequence[int]) -> pa.Table | None:
    """``(id, path, row)`` of the requested ids through the id index (``None`` if there is none).

    Only the row groups whose id statistics cover a requested id are read.

    Raises
    ------
    ResumeMismatchError
        The id index belongs to other shards (manifest digest differs).
    """
    path = Path(root) / ID_INDEX
    if not path.exists():
        return None
    f = pq.ParquetFile(path)
    saved = (f.schema_arrow.metadata or {}).get(b"geoemb:manifest_digest", b"").decode()
    man = manifest.sort_by("path")
    if saved != manifest_digest(man):
        raise ResumeMismatchError(f"{path} indexes other shards than {Path(root) / 'manifest.parquet'}"
                                  " (manifest digest differs); rebuild it with "
                                  "geoemb.retrieval.corpus_index.write_id_index")  # fmt: skip
    want = np.unique(np.asarray(list(ids), dtype=np.int64))
    md = f.metadata
    groups = []
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(0).statistics
        lo, hi = (st.min, st.max) if st is not None and st.has_min_max else (None, None)
        if lo is None or np.any((want >= lo) & (want <= hi)):
            groups.append(g)
    t = f.read_row_groups(groups) if groups else f.schema_arrow.empty_table()
    t = t.filter(pc.is_in(t["id"], pa.array(want)))
    paths = pc.take(man["path"], t["shard"])
    return pa.table({"id": t["id"], "path": paths, "row": t["row"]})


# --------------------------------------------------------------------------- ANN beside a corpus


def _ann_paths(root: Path, backend: str) -> tuple[Path, Path]:
    return root / ANN_DIR / f"{backend}.faiss", root / ANN_DIR / f"{backend}.ids.npy"


def corpus_ann(
    store: Any, backend: str, rebuild: bool = False, **params: Any
) -> tuple[Any, np.ndarray]:
    """Load (or build once and save) the ANN index ``backend`` over the whole corpus of ``store``.

    Returns ``(index, ids)``: index row ``j`` is corpus id ``ids[j]``. Build parameters (``nlist``,
    ``M``…) given here must equal the saved ones; query knobs (``nprobe``, ``ef_search``) are
    applied. ``rebuild=True`` replaces a saved index built with other parameters.

    Raises
    ------
    ResumeMismatchError
        The saved index was built for another corpus content (manifest digest) or other parameters.
    """
    from geoemb.retrieval.ann import ANN_CLASSES, load_ann
    from geoemb.retrieval.search import build_index

    if backend not in ANN_CLASSES or not ANN_CLASSES[backend].binary:
        raise InputError(f"corpus ANN: backend must be one of the binary ANN backends "
                         f"{[n for n, c in ANN_CLASSES.items() if c.binary]}, got {backend!r}")  # fmt: skip
    root = Path(store.root)
    digest = manifest_digest(store.manifest)
    idx_path, ids_path = _ann_paths(root, backend)
    knobs = {k: params.pop(k) for k in list(params) if k in ANN_CLASSES[backend]._query_knobs}
    if idx_path.exists() and not rebuild:
        rec = json.loads(Path(f"{idx_path}.json").read_text())
        if rec.get("corpus") != digest:
            raise ResumeMismatchError(f"{idx_path}: built for another corpus content (manifest "
                                      f"digest {str(rec.get('corpus'))[:12]}… vs this corpus "
                                      f"{digest[:12]}…); pass rebuild=True (--rebuild-ann)")  # fmt: skip
        ids = np.load(ids_path, allow_pickle=False)
        index = load_ann(idx_path, None, content=rec["content_sha256"], **params, **knobs)
        if len(ids) != index.ntotal:
            raise ResumeMismatchError(f"{ids_path}: {len(ids)} ids for {index.ntotal} index rows")
        return index, ids
    table = store.read(columns=["id", "code"])
    ids = table["id"].to_numpy()
    index = build_index(backend, store.codes(table), dim=store.dim, **params, **knobs)
    with atomic_path(ids_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, ids, allow_pickle=False)
    index.save(idx_path, extra={"corpus": digest})
    return index, ids
