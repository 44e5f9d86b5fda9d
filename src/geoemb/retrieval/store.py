"""Geohash-partitioned Parquet corpus of packed codes + manifest: the read side (ROI query).

The builder (layout, resume and integrity guarantees) is :mod:`geoemb.retrieval.build`; its names
are re-exported here. On-disk layout (``root/``)::

    geohash=<cell>/part-<PPPPP>-<JJJ>.parquet   one shard = rows of input part P in cell, chunk J
    _parts/part-<PPPPP>.json                    completion record of input part P (written last)
    _build.json                                 builder configuration + inputs (checked on resume)
    manifest.parquet                            path, rows, xmin, ymin, xmax, ymax, cell, part, bytes, sha256
    id_index.parquet                            id → shard, row (query by id; see corpus_index)

With compaction (``compact_rows > 0``; the CLI default) each part is spilled to
``_spill/part-<PPPPP>.arrow`` and every cell ends as ``geohash=<cell>/cell-<JJJ>.parquet`` files
(records in ``_compact/``; see :mod:`geoemb.retrieval.compact`). Saved ANN indexes live in ``_ann/``.

Shard schema: ``id`` int64, ``code`` FixedSizeList<uint8>[B] (np.packbits layout), ``lon``/``lat``
float64 (row centroid, used for the geohash cell), ``bbox`` struct<xmin, ymin, xmax, ymax> (GeoParquet
1.1 covering), ``geometry`` WKB (point or polygon footprint), plus any extra columns (2-D arrays are
stored as FixedSizeList). Every shard is a valid GeoParquet 1.1 file with ``geoemb:quantization`` and
``geoemb:model`` JSON in its footer; the manifest footer carries ``geoemb:manifest`` (precision, code
width, dim, totals) plus the same quantization/model metadata, stored once for the whole corpus.

The manifest extent is the **data extent** (union of row bboxes), not the cell extent, so pruning with
``xmax >= W AND xmin <= E AND ymax >= S AND ymin <= N`` returns a superset of the matching rows; the
row filter then makes it exact. Query boxes crossing the antimeridian (``W > E``) are split in two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import shapely

from geoemb.errors import InputError
from geoemb.retrieval.build import (  # noqa: F401  (re-exported: the builder used to live here)
    MANIFEST,
    MANIFEST_VERSION,
    BuildConfig,
    BuildLockedError,
    CorpusBuilder,
    CorpusIntegrityError,
    fsl_to_numpy,
    input_identity,
    iter_parquet_parts,
    write_manifest,
)
from geoemb.retrieval.corpus_index import corpus_ann, locate_ids
from geoemb.retrieval.search import ANN_BACKENDS, build_index, default_hamming_backend
from geoemb.utils.geoparquet import bbox_struct

Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- helpers


def split_antimeridian(box: Sequence[float]) -> list[Box]:
    """``(W, S, E, N)`` → one box, or two when it crosses the antimeridian (``W > E``)."""
    if len(box) != 4:
        raise ValueError(f"bbox must be (west, south, east, north), got {box!r}")
    w, s, e, n = (float(v) for v in box)
    if not all(np.isfinite([w, s, e, n])):
        raise InputError(f"bbox {tuple(box)!r}: coordinates must be finite")
    if s > n:
        raise ValueError(f"bbox south={s} > north={n}")
    if w > e:
        return [(w, s, 180.0, n), (-180.0, s, e, n)]
    return [(w, s, e, n)]


def _polygon(polygon: Any) -> Any:
    """A shapely geometry from WKT (or as given); unparsable or empty WKT is an InputError."""
    if not isinstance(polygon, str):
        return polygon
    try:
        geom = shapely.from_wkt(polygon)
    except shapely.errors.GEOSException as e:
        raise InputError(f"polygon {polygon[:80]!r}: not valid WKT ({e})") from e
    if geom is None or geom.is_empty or not np.isfinite(geom.bounds).all():
        raise InputError(f"polygon {polygon[:80]!r}: empty or non-finite geometry")
    return geom


def _box_expr(prefix: Callable[[str], pc.Expression], boxes: list[Box]) -> pc.Expression:
    expr = None
    for w, s, e, n in boxes:
        one = (
            (prefix("xmax") >= w)
            & (prefix("xmin") <= e)
            & (prefix("ymax") >= s)
            & (prefix("ymin") <= n)
        )
        expr = one if expr is None else (expr | one)
    return expr


# --------------------------------------------------------------------------- query side


class CorpusStore:
    """Read side of a built corpus: manifest pruning, exact ROI row filter, point lookup, search.

    Parameters
    ----------
    root:
        Corpus directory containing ``manifest.parquet``.
    engine:
        ``"pyarrow"`` (default) or ``"duckdb"`` (optional) for the manifest pruning query.
    verify:
        Check each shard's size against the manifest before reading.
    """

    def __init__(
        self, root: str | os.PathLike, engine: str = "pyarrow", verify: bool = False
    ) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"{path}: no manifest; build the corpus first (build-corpus)")
        if engine not in ("pyarrow", "duckdb"):
            raise ValueError(f"engine must be 'pyarrow' or 'duckdb', got {engine!r}")
        self.engine = engine
        self.verify = verify
        try:
            self.manifest = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f"cannot read corpus manifest {path}: {e}") from e
        meta = self.manifest.schema.metadata or {}
        try:
            self.info = json.loads(meta[b"geoemb:manifest"])
        except KeyError as e:
            raise InputError(f"{path}: footer lacks 'geoemb:manifest' metadata") from e
        self.quantization = json.loads(meta.get(b"geoemb:quantization", b"{}"))
        self.model = json.loads(meta.get(b"geoemb:model", b"{}"))
        self.dim = int(self.info["dim"])
        self.code_bytes = int(self.info["code_bytes"])

    # -- pruning
    def prune(self, bbox: Sequence[float] | None = None, polygon: Any = None) -> pa.Table:
        """Manifest rows whose data extent intersects the ROI (bbox ``(W, S, E, N)`` or polygon)."""
        boxes = self._boxes(bbox, polygon)
        if boxes is None:
            return self.manifest
        if self.engine == "duckdb":
            import duckdb

            where = " OR ".join(
                f"(xmax >= {w!r} AND xmin <= {e!r} AND ymax >= {s!r} AND ymin <= {n!r})"
                for w, s, e, n in boxes
            )
            con = duckdb.connect()
            con.register("manifest", self.manifest)
            rel = con.sql(f"SELECT * FROM manifest WHERE {where} ORDER BY path")
            out = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
            con.close()
            return out.cast(self.manifest.schema)
        expr = _box_expr(pc.field, boxes)
        return self.manifest.filter(expr)

    @staticmethod
    def _boxes(bbox: Sequence[float] | None, polygon: Any) -> list[Box] | None:
        if bbox is not None and polygon is not None:
            raise ValueError("give either bbox or polygon, not both")
        if polygon is not None:
            geom = _polygon(polygon)
            return [tuple(float(v) for v in geom.bounds)]
        return None if bbox is None else split_antimeridian(bbox)

    # -- reading
    def _paths(self, shards: pa.Table) -> list[str]:
        paths = []
        for rel, size in zip(shards["path"].to_pylist(), shards["bytes"].to_pylist()):
            p = self.root / rel
            if self.verify and (not p.exists() or p.stat().st_size != size):
                raise ValueError(f"{p}: missing or size differs from manifest ({size} bytes)")
            paths.append(str(p))
        return paths

    def read(self, bbox: Sequence[float] | None = None, polygon: Any = None,
             columns: Sequence[str] | None = None) -> pa.Table:  # fmt: skip
        """Rows intersecting the ROI (exact: bbox overlap, or geometry ∩ polygon), sorted by id."""
        shards = self.prune(bbox, polygon)
        paths = self._paths(shards)
        schema = self._schema()
        if not paths:
            table = schema.empty_table()
        else:
            boxes = self._boxes(bbox, polygon)
            expr = None if boxes is None else _box_expr(lambda f: pc.field("bbox", f), boxes)
            table = ds.dataset(paths, format="parquet", schema=schema).to_table(filter=expr)
            if polygon is not None and table.num_rows:
                geom = _polygon(polygon)
                rows = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))
                table = table.filter(pa.array(shapely.intersects(rows, geom)))
        table = table.sort_by("id")
        return table.select(list(columns)) if columns is not None else table

    def _schema(self) -> pa.Schema:
        if not hasattr(self, "_schema_cache"):
            if self.manifest.num_rows:
                s = pq.read_schema(self.root / self.manifest["path"][0].as_py())
            else:
                s = pa.schema([("id", pa.int64()),
                               ("code", pa.list_(pa.uint8(), self.code_bytes)),
                               ("lon", pa.float64()), ("lat", pa.float64()),
                               ("bbox", bbox_struct([], [], [], []).type),
                               ("geometry", pa.binary())])  # fmt: skip
            self._schema_cache = s.remove_metadata()
        return self._schema_cache

    def codes(self, table: pa.Table) -> np.ndarray:
        """Packed codes ``(n, B)`` uint8 of a table read from this store."""
        return fsl_to_numpy(table["code"], np.uint8)

    def lookup_point(self, lon: float, lat: float) -> pa.Table:
        """The row whose bbox contains ``(lon, lat)`` (nearest centroid wins); 0 rows if none."""
        if not (np.isfinite(lon) and np.isfinite(lat)):
            raise InputError(f"point ({lon}, {lat}): coordinates must be finite")
        t = self.read(bbox=(lon, lat, lon, lat))
        if t.num_rows <= 1:
            return t
        d2 = (t["lon"].to_numpy() - lon) ** 2 + (t["lat"].to_numpy() - lat) ** 2
        order = np.lexsort((t["id"].to_numpy(), d2))
        return t.take(pa.array(order[:1]))

    def lookup_ids(self, ids: Sequence[int]) -> pa.Table:
        """Rows by id, sorted by id (missing ids are absent).

        Through ``id_index.parquet`` (written with the manifest): only the index row groups whose
        id statistics cover the ids and the shards holding them are read. A corpus built before
        the id index existed falls back to a scan of every shard.
        """
        want = pa.array(list(ids), pa.int64())
        loc = locate_ids(self.root, self.manifest, want.to_pylist())
        if loc is None:
            shards = self.manifest
        else:
            shards = self.manifest.filter(pc.is_in(self.manifest["path"], pc.unique(loc["path"])))
        paths = self._paths(shards)
        if not paths:
            return self._schema().empty_table()
        return ds.dataset(paths, format="parquet", schema=self._schema()).to_table(
            filter=pc.field("id").isin(want)
        ).sort_by("id")  # fmt: skip

    def ann(self, backend: str, rebuild: bool = False, **params: Any) -> tuple[Any, np.ndarray]:
        """The saved ANN index ``backend`` over the whole corpus (built and saved on first use);
        see :func:`geoemb.retrieval.corpus_index.corpus_ann`. Returns ``(index, ids)``."""
        return corpus_ann(self, backend, rebuild=rebuild, **params)

    def search(self, query_codes: np.ndarray, k: int, bbox: Sequence[float] | None = None,
               polygon: Any = None, backend: str | None = None,
               ann_params: dict | None = None) -> pa.Table:  # fmt: skip
        """Hamming top-k of each query within the ROI (exact, or an ANN backend).

        An ANN backend (``binary_ivf``/``binary_hnsw``, parameters ``ann_params``) over the whole
        corpus uses the index saved beside it (:meth:`ann`); within an ROI it is built on the fly.

        Returns a table ``query, rank, id, distance, lon, lat, bbox, geometry`` (empty if the ROI
        holds no rows).
        """
        q = np.asarray(query_codes)
        if q.ndim != 2 or q.dtype != np.uint8 or q.shape[1] != self.code_bytes:
            raise ValueError(
                f"query codes: expected (nq, {self.code_bytes}) uint8 for this corpus "
                f"(dim={self.dim} bits), got {q.dtype} {q.shape}"
            )
        name = backend or default_hamming_backend()
        if name in ANN_BACKENDS and bbox is None and polygon is None:
            # whole corpus: the saved ANN index, rows fetched through the id index
            index, ids = self.ann(name, **(ann_params or {}))
            d, i = index.search(q, k)
            ok = i >= 0
            gid = np.where(ok, ids[np.clip(i, 0, None)], -1)
            rows = self.lookup_ids(np.unique(gid[ok]).tolist())
            pos = np.searchsorted(rows["id"].to_numpy(), gid[ok])
            res = _results_table(rows, pos[None, :], d[ok].astype(np.float64)[None, :])
            qn = np.repeat(np.arange(len(q)), ok.sum(1))
            rank = np.concatenate([np.arange(c) for c in ok.sum(1)]) if len(q) else []
            return res.set_column(0, "query", pa.array(qn, pa.int64())).set_column(
                1, "rank", pa.array(rank, pa.int64()))  # fmt: skip
        roi = self.read(bbox, polygon)
        if roi.num_rows == 0:
            return _empty_results()
        index = build_index(name, self.codes(roi), dim=self.dim, **(ann_params or {}))
        d, i = index.search(q, k)
        if (i < 0).any():  # an ANN could not fill every slot: drop the padding
            keep = i >= 0
            res = _results_table(roi, np.clip(i, 0, None), d.astype(np.float64))
            return res.filter(pa.array(keep.reshape(-1)))
        return _results_table(roi, i, d.astype(np.float64))


def _empty_results() -> pa.Table:
    return pa.table({"query": pa.array([], pa.int64()), "rank": pa.array([], pa.int64()),
                     "id": pa.array([], pa.int64()), "distance": pa.array([], pa.float64()),
                     "lon": pa.array([], pa.float64()), "lat": pa.array([], pa.float64()),
                     "bbox": bbox_struct([], [], [], []),
                     "geometry": pa.array([], pa.binary())})  # fmt: skip


def _results_table(roi: pa.Table, local_ids: np.ndarray, dist: np.ndarray) -> pa.Table:
    nq, k = local_ids.shape
    flat = local_ids.reshape(-1)
    rows = roi.take(pa.array(flat))
    return pa.table({
        "query": pa.array(np.repeat(np.arange(nq), k)), "rank": pa.array(np.tile(np.arange(k), nq)),
        "id": rows["id"], "distance": pa.array(dist.reshape(-1)), "lon": rows["lon"],
        "lat": rows["lat"], "bbox": rows["bbox"], "geometry": rows["geometry"],
    })  # fmt: skip
