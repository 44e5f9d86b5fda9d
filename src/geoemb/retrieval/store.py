"""Geohash-partitioned Parquet corpus of packed codes + manifest; streaming, resumable builder; ROI query.

On-disk layout (``root/``)::

    geohash=<cell>/part-<PPPPP>-<JJJ>.parquet   one shard = rows of input part P in cell, chunk J
    _parts/part-<PPPPP>.json                    completion record of input part P (written last)
    _build.json                                 builder configuration (checked on resume)
    manifest.parquet                            path, rows, xmin, ymin, xmax, ymax, cell, part, bytes, sha256

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

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import shapely

from geoemb.compression.bitpack import pack_bits
from geoemb.retrieval import geohash
from geoemb.utils.geoparquet import bbox_struct, boxes_wkb, points_wkb, with_geo_metadata
from geoemb.utils.io import atomic_path, atomic_write_text

MANIFEST = "manifest.parquet"
MANIFEST_VERSION = 1
Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- helpers


def split_antimeridian(box: Sequence[float]) -> list[Box]:
    """``(W, S, E, N)`` → one box, or two when it crosses the antimeridian (``W > E``)."""
    if len(box) != 4:
        raise ValueError(f"bbox must be (west, south, east, north), got {box!r}")
    w, s, e, n = (float(v) for v in box)
    if s > n:
        raise ValueError(f"bbox south={s} > north={n}")
    if w > e:
        return [(w, s, 180.0, n), (-180.0, s, e, n)]
    return [(w, s, e, n)]


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


# --------------------------------------------------------------------------- builder


@dataclass
class BuildConfig:
    """What must stay identical across a (resumed) build."""

    geohash_precision: int
    code_bytes: int
    dim: int
    max_rows_per_shard: int
    quantization: dict
    model: dict

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


class CorpusBuilder:
    """Stream batches of rows into geohash shards, atomically per shard, resumable per input part.

    Parameters
    ----------
    root:
        Output directory.
    dim:
        Number of code bits ``L``; codes are ``ceil(L/8)`` bytes.
    geohash_precision:
        Cell precision (1..12) of the ``geohash=<cell>`` partitions.
    max_rows_per_shard:
        Rows per shard file (TerraBit: 5,000).
    quantization, model:
        Metadata dicts written to every shard footer and the manifest.
    encoder:
        Optional ``embeddings (n, D) float -> codes (n, B) uint8`` (e.g. ``compressor.encode``) used
        when a batch has ``embedding`` instead of ``code``. Default: sign binary (``x > 0``).

    Batches are mappings with ``id`` (int64, unique), ``lon``, ``lat`` (centroids), ``code`` (packed
    uint8) or ``embedding`` (float), optional ``bbox`` ``(n, 4)`` (xmin, ymin, xmax, ymax; default
    the point) and ``geometry`` (WKB; default point or bbox polygon), and any extra columns.
    """

    def __init__(self, root: str | os.PathLike, dim: int, geohash_precision: int = 3,
                 max_rows_per_shard: int = 5000, quantization: Mapping | None = None,
                 model: Mapping | None = None,
                 encoder: Callable[[np.ndarray], np.ndarray] | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        geohash._check_precision(geohash_precision)
        if max_rows_per_shard < 1:
            raise ValueError("max_rows_per_shard must be >= 1")
        quant = dict(quantization or {"method": "binary", "threshold": 0.0, "bits": 1})
        self.config = BuildConfig(int(geohash_precision), (int(dim) + 7) // 8, int(dim),
                                  int(max_rows_per_shard), quant, dict(model or {}))  # fmt: skip
        self.encoder = encoder or (lambda x: pack_bits(np.asarray(x) > 0))
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "_parts").mkdir(exist_ok=True)
        cfg_path = self.root / "_build.json"
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if old != json.loads(self.config.to_json()):
                raise ValueError(
                    f"{cfg_path}: existing build has a different configuration {old}; "
                    f"refusing to resume with {self.config.to_json()} (use a new root)"
                )
        else:
            atomic_write_text(cfg_path, self.config.to_json())
        for stale in self.root.glob("geohash=*/.*tmp*"):  # temp files of a killed writer
            stale.unlink(missing_ok=True)

    def _marker(self, part: int) -> Path:
        return self.root / "_parts" / f"part-{part:05d}.json"

    def is_done(self, part: int) -> bool:
        """Whether input part ``part`` has been completely written."""
        return self._marker(part).exists()

    def _table(self, batch: Mapping[str, Any]) -> pa.Table:
        for key in ("id", "lon", "lat"):
            if key not in batch:
                raise ValueError(f"corpus batch lacks required field {key!r}")
        ids = np.asarray(batch["id"], dtype=np.int64)
        n = len(ids)
        lon = np.asarray(batch["lon"], dtype=np.float64)
        lat = np.asarray(batch["lat"], dtype=np.float64)
        if "code" in batch:
            codes = np.asarray(batch["code"])
        elif "embedding" in batch:
            codes = np.asarray(self.encoder(np.asarray(batch["embedding"], dtype=np.float32)))
        else:
            raise ValueError("corpus batch needs 'code' (packed uint8) or 'embedding' (float)")
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.config.code_bytes:
            raise ValueError(
                f"corpus batch field 'code': expected (n, {self.config.code_bytes}) uint8 for "
                f"dim={self.config.dim} bits, got {codes.dtype} {codes.shape}"
            )
        if len(lon) != n or len(lat) != n or len(codes) != n:
            raise ValueError("corpus batch fields id/lon/lat/code have different lengths")
        if "bbox" in batch:
            bb = np.asarray(batch["bbox"], dtype=np.float64).reshape(n, 4)
        else:
            bb = np.stack([lon, lat, lon, lat], axis=1)
        if "geometry" in batch:
            geom = pa.array(list(batch["geometry"]), type=pa.binary())
        elif "bbox" in batch:
            geom = boxes_wkb(*bb.T)
        else:
            geom = points_wkb(lon, lat)
        cols = {"id": pa.array(ids), "code": _fsl(codes), "lon": pa.array(lon),
                "lat": pa.array(lat), "bbox": bbox_struct(*bb.T), "geometry": geom}  # fmt: skip
        for key, value in batch.items():
            if key in cols or key == "embedding":
                continue
            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            cols[key] = _fsl(arr) if arr.ndim == 2 else pa.array(arr)
        return pa.table(cols)

    def write_part(self, part: int, batch: Mapping[str, Any]) -> list[dict]:
        """Write the shards of input part ``part`` (skipped when already complete)."""
        marker = self._marker(part)
        if marker.exists():
            return json.loads(marker.read_text())
        table = self._table(batch)
        cells = geohash.encode(table["lat"].to_numpy(), table["lon"].to_numpy(),
                               self.config.geohash_precision)  # fmt: skip
        order = np.lexsort((table["id"].to_numpy(), cells))
        table, cells = table.take(pa.array(order)), np.asarray(cells)[order]
        meta = {"geoemb:quantization": self.config.quantization, "geoemb:model": self.config.model}
        infos = []
        uniq, starts = np.unique(cells, return_index=True)
        bounds = list(starts) + [len(cells)]
        for c, cell in enumerate(uniq):
            for j, s in enumerate(range(bounds[c], bounds[c + 1], self.config.max_rows_per_shard)):
                e = min(s + self.config.max_rows_per_shard, bounds[c + 1])
                sub = with_geo_metadata(table.slice(s, e - s), extra_metadata=meta)
                rel = f"geohash={cell}/part-{part:05d}-{j:03d}.parquet"
                path = self.root / rel
                with atomic_path(path) as tmp:
                    pq.write_table(sub, tmp, compression="zstd")
                b = sub["bbox"].combine_chunks()
                infos.append({
                    "path": rel, "rows": int(e - s), "cell": str(cell), "part": int(part),
                    "xmin": float(pc.min(b.field("xmin")).as_py()),
                    "ymin": float(pc.min(b.field("ymin")).as_py()),
                    "xmax": float(pc.max(b.field("xmax")).as_py()),
                    "ymax": float(pc.max(b.field("ymax")).as_py()),
                    "bytes": path.stat().st_size, "sha256": _sha256(path),
                })  # fmt: skip
        atomic_write_text(marker, json.dumps(infos))
        return infos

    def build(self, batches: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, Any]]],
              total: int | None = None, progress: bool = True) -> Path:  # fmt: skip
        """Write all parts (``(part_id, batch)`` pairs or batches numbered 0, 1, …) and the manifest."""
        from tqdm.auto import tqdm

        it = tqdm(batches, total=total, disable=not progress, desc="corpus parts", unit="part")
        for n, item in enumerate(it):
            part, batch = item if isinstance(item, tuple) else (n, item)
            self.write_part(int(part), batch)
        return self.finalize()

    def finalize(self) -> Path:
        """Write ``manifest.parquet`` from the completed parts (atomic)."""
        return write_manifest(self.root)


def write_manifest(root: str | os.PathLike) -> Path:
    """(Re)build ``root/manifest.parquet`` from ``_parts/*.json`` and ``_build.json``."""
    root = Path(root)
    cfg = json.loads((root / "_build.json").read_text())
    rows: list[dict] = []
    for marker in sorted((root / "_parts").glob("part-*.json")):
        rows.extend(json.loads(marker.read_text()))
    rows.sort(key=lambda r: r["path"])
    schema = pa.schema([("path", pa.string()), ("rows", pa.int64()), ("xmin", pa.float64()),
                        ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64()),
                        ("cell", pa.string()), ("part", pa.int64()), ("bytes", pa.int64()),
                        ("sha256", pa.string())])  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=schema)
    info = {"manifest_version": MANIFEST_VERSION, "partitioning": "geohash",
            "geohash_precision": cfg["geohash_precision"], "code_column": "code",
            "code_bytes": cfg["code_bytes"], "dim": cfg["dim"],
            "max_rows_per_shard": cfg["max_rows_per_shard"],
            "n_rows": int(sum(r["rows"] for r in rows)), "n_shards": len(rows)}  # fmt: skip
    meta = {b"geoemb:manifest": json.dumps(info).encode(),
            b"geoemb:quantization": json.dumps(cfg["quantization"]).encode(),
            b"geoemb:model": json.dumps(cfg["model"]).encode()}  # fmt: skip
    table = table.replace_schema_metadata(meta)
    with atomic_path(root / MANIFEST) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return root / MANIFEST


def iter_parquet_parts(paths: Sequence[str | os.PathLike], batch_rows: int = 65536,
                       embedding_column: str = "embedding") -> Iterator[tuple[int, dict]]:  # fmt: skip
    """Stream input Parquet files as numbered parts (deterministic order) for :class:`CorpusBuilder`.

    Reads columns ``id, lon, lat`` and ``embedding`` (FixedSizeList<float>) or ``code``
    (FixedSizeList<uint8>), plus ``bbox`` struct when present.
    """
    part = 0
    for path in sorted(map(str, paths)):
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        if embedding_column not in names and "code" not in names:
            raise ValueError(f"{path}: needs an {embedding_column!r} or 'code' column, has {names}")
        for rb in f.iter_batches(batch_size=batch_rows):
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
            yield part, batch
            part += 1


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
        self.manifest = pq.read_table(path)
        meta = self.manifest.schema.metadata or {}
        try:
            self.info = json.loads(meta[b"geoemb:manifest"])
        except KeyError as e:
            raise ValueError(f"{path}: footer lacks 'geoemb:manifest' metadata") from e
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
            geom = shapely.from_wkt(polygon) if isinstance(polygon, str) else polygon
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
                geom = shapely.from_wkt(polygon) if isinstance(polygon, str) else polygon
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
        t = self.read(bbox=(lon, lat, lon, lat))
        if t.num_rows <= 1:
            return t
        d2 = (t["lon"].to_numpy() - lon) ** 2 + (t["lat"].to_numpy() - lat) ** 2
        order = np.lexsort((t["id"].to_numpy(), d2))
        return t.take(pa.array(order[:1]))

    def lookup_ids(self, ids: Sequence[int]) -> pa.Table:
        """Rows by id (full scan of the shards; use for a handful of exemplars)."""
        paths = self._paths(self.manifest)
        if not paths:
            return self._schema().empty_table()
        return ds.dataset(paths, format="parquet", schema=self._schema()).to_table(
            filter=pc.field("id").isin(pa.array(list(ids), pa.int64()))
        ).sort_by("id")  # fmt: skip

    def search(self, query_codes: np.ndarray, k: int, bbox: Sequence[float] | None = None,
               polygon: Any = None, backend: str | None = None) -> pa.Table:  # fmt: skip
        """Exact Hamming top-k of each query within the ROI.

        Returns a table ``query, rank, id, distance, lon, lat, bbox, geometry`` (empty if the ROI
        holds no rows).
        """
        from geoemb.retrieval.search import build_index, default_hamming_backend

        q = np.asarray(query_codes)
        if q.ndim != 2 or q.dtype != np.uint8 or q.shape[1] != self.code_bytes:
            raise ValueError(
                f"query codes: expected (nq, {self.code_bytes}) uint8 for this corpus "
                f"(dim={self.dim} bits), got {q.dtype} {q.shape}"
            )
        roi = self.read(bbox, polygon)
        if roi.num_rows == 0:
            return _empty_results()
        index = build_index(backend or default_hamming_backend(), self.codes(roi), dim=self.dim)
        d, i = index.search(q, k)
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
