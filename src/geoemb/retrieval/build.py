"""Streaming, resumable corpus builder: batches of rows → geohash Parquet shards + manifest.

On-disk layout (``root/``)::

    geohash=<cell>/part-<PPPPP>-<JJJ>.parquet   one shard = rows of input part P in cell, chunk J
    _parts/part-<PPPPP>.json                    completion record of input part P (written last):
                                                its rows, its input (file + row range) and shards
    _build.json                                 builder configuration + input identity (checked
                                                on resume)
    .build.lock                                 held (flock) by the one process building
    manifest.parquet                            path, rows, xmin, ymin, xmax, ymax, cell, part,
                                                bytes, sha256

Guarantees:

- **Resume = uninterrupted.** A build killed at any point and rerun with the same arguments and
  inputs skips the completed parts and rewrites the others under the same names, ending with the
  same shards (rows, ids, codes). Once a part is complete, a rerun whose configuration, batch size
  or input files (path, size, mtime, Parquet footer hash) differ raises
  :class:`~geoemb.errors.ResumeMismatchError` naming what differs, before any work (with no
  completed part there is nothing to resume: the new configuration starts over).
- **No lost or duplicated row.** The manifest is written only when the completed parts are exactly
  the parts of this input and their row count equals the input's row count; otherwise
  :class:`CorpusIntegrityError` and no manifest.
- **One writer.** A second builder on the same root while one holds ``.build.lock`` raises
  :class:`BuildLockedError` (the lock dies with its process, so ``kill -9`` leaves none behind).
- **Valid rows only.** NaN/inf embeddings or coordinates raise :class:`~geoemb.errors.InputError`
  naming the input file (or part) and row.

(Longer than the ~450-line guideline on purpose: the resume, integrity and lock guarantees above
are one state machine over one folder; split across modules they would be harder to check.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from geoemb.errors import InputError, OutputError, ResumeMismatchError
from geoemb.retrieval import geohash, wkb
from geoemb.retrieval.compact import COMPACT_DIR, FINE, SPILL_DIR, compact, write_spill
from geoemb.retrieval.inputs import (  # noqa: F401  (re-exported)
    _fsl,
    _sha256,
    check_rows,
    fsl_to_numpy,
    input_identity,
    iter_parquet_parts,
)
from geoemb.retrieval.manifest import (  # noqa: F401  (re-exported)
    MANIFEST,
    MANIFEST_VERSION,
    BuildLockedError,
    CorpusIntegrityError,
    _remove_orphans,
    write_manifest,
)
from geoemb.retrieval.shards import write_shard
from geoemb.utils.geoparquet import bbox_struct
from geoemb.utils.io import atomic_write_text

log = logging.getLogger(__name__)

LOCK = ".build.lock"


def _sign_encode(x: np.ndarray) -> np.ndarray:
    """Sign binary codes: ``pack_bits(x > 0)`` (``np.packbits`` of the boolean array directly)."""
    return np.packbits(np.asarray(x) > 0, axis=1)


# --------------------------------------------------------------------------- builder


@dataclass
class BuildConfig:
    """What must stay identical across a (resumed) build (``source``: inputs and batching)."""

    geohash_precision: int
    code_bytes: int
    dim: int
    max_rows_per_shard: int
    quantization: dict
    model: dict
    source: dict = field(default_factory=dict)
    compact_rows: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable list of what differs between two JSON values (recursing into dicts and
    lists of input files)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            key = f"{prefix}.{k}" if prefix else k
            if k not in old or k not in new:
                out.append(f"{key}: {old.get(k, '<absent>')!r} (existing build) vs "
                           f"{new.get(k, '<absent>')!r} (this run)")  # fmt: skip
            else:
                out += _differences(old[k], new[k], key)
        return out
    if isinstance(old, list) and isinstance(new, list) and prefix.endswith("inputs"):
        o = {d.get("path"): d for d in old if isinstance(d, dict)}
        n = {d.get("path"): d for d in new if isinstance(d, dict)}
        out = [f"{prefix}: file {p} only in the existing build" for p in sorted(set(o) - set(n))]
        out += [f"{prefix}: file {p} only in this run" for p in sorted(set(n) - set(o))]
        for p in sorted(set(o) & set(n)):
            out += _differences(o[p], n[p], f"{prefix}[{p}]")
        return out
    return [] if old == new else [f"{prefix}: {old!r} (existing build) vs {new!r} (this run)"]


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
    source:
        JSON description of the input (files with :func:`input_identity`, batch size…), checked on
        resume like the rest of the configuration.
    lock:
        Hold ``root/.build.lock`` until :meth:`finalize`/:meth:`close` (refuse a second builder).
        Only the extra ranks of one distributed job pass ``False``.

    Batches are mappings with ``id`` (int64, unique), ``lon``, ``lat`` (centroids), ``code`` (packed
    uint8) or ``embedding`` (float), optional ``bbox`` ``(n, 4)`` (xmin, ymin, xmax, ymax; default
    the point) and ``geometry`` (WKB; default point or bbox polygon), and any extra columns.
    """

    def __init__(self, root: str | os.PathLike, dim: int, geohash_precision: int = 3,
                 max_rows_per_shard: int = 5000, quantization: Mapping | None = None,
                 model: Mapping | None = None,
                 encoder: Callable[[np.ndarray], np.ndarray] | None = None,
                 source: Mapping | None = None, lock: bool = True,
                 compact_rows: int | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        geohash._check_precision(geohash_precision)
        if max_rows_per_shard < 1:
            raise ValueError("max_rows_per_shard must be >= 1")
        quant = dict(quantization or {"method": "binary", "threshold": 0.0, "bits": 1})
        self.config = BuildConfig(int(geohash_precision), (int(dim) + 7) // 8, int(dim),
                                  int(max_rows_per_shard), quant, dict(model or {}),
                                  json.loads(json.dumps(dict(source or {}))),
                                  int(compact_rows or 0))  # fmt: skip
        if self.config.compact_rows < 0:
            raise ValueError("compact_rows must be >= 0 (0: no compaction)")
        self._custom_encoder = encoder is not None
        self.encoder = encoder or _sign_encode
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"corpus root {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fh = self._acquire_lock() if lock else None
        try:
            (self.root / "_parts").mkdir(exist_ok=True)
            self._check_config()
            if self._lock_fh is not None:  # other ranks' in-flight temp files are not stale
                for stale in self.root.glob("geohash=*/.*tmp*"):  # temp files of a killed writer
                    stale.unlink(missing_ok=True)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lock / config
    def _acquire_lock(self):
        import fcntl

        fh = open(self.root / LOCK, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise BuildLockedError(
                f"another build is writing to {self.root} (lock {self.root / LOCK} held by pid "
                f"{holder}); wait for it to finish or build into another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        return fh

    def close(self) -> None:
        """Release the build lock (idempotent; also at :meth:`finalize` and garbage collection)."""
        fh, self._lock_fh = getattr(self, "_lock_fh", None), None
        if fh is not None:
            fh.close()  # closing the descriptor releases the flock

    def __enter__(self) -> CorpusBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _check_config(self) -> None:
        cfg_path = self.root / "_build.json"
        new = json.loads(self.config.to_json())
        if not cfg_path.exists():
            atomic_write_text(cfg_path, self.config.to_json())
            return
        try:
            old = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{cfg_path}: unreadable build record ({e}); use a new root") from e
        old.setdefault("source", {})  # records of builds made before inputs were recorded
        old.setdefault("compact_rows", 0)  # ... and before compaction existed
        diff = _differences(old, new)
        started = any((self.root / "_parts").glob("part-*.json"))
        if diff and not started and self._lock_fh is not None:
            # nothing was completed (e.g. the first try stopped at a bad input): not a resume
            log.warning("%s: no completed part; starting over with the new configuration (%s)",
                        self.root, "; ".join(diff))  # fmt: skip
            for f in [*self.root.glob("geohash=*/part-*.parquet"), self.root / MANIFEST,
                      *self.root.glob("geohash=*/cell-*.parquet"),
                      *self.root.glob(f"{COMPACT_DIR}/*.json"),
                      *self.root.glob(f"{COMPACT_DIR}/*.ids.npy"),
                      *self.root.glob(f"{SPILL_DIR}/*.arrow")]:  # fmt: skip
                f.unlink(missing_ok=True)
            atomic_write_text(cfg_path, self.config.to_json())
            return
        if diff:
            raise ResumeMismatchError(
                f"{self.root} holds a build with a different configuration; refusing to resume "
                "(rerun with the original arguments and inputs, or use a new --out). "
                "Differences:\n  " + "\n  ".join(diff)
            )

    # ------------------------------------------------------------------ parts
    def _marker(self, part: int) -> Path:
        return self.root / "_parts" / f"part-{part:05d}.json"

    def is_done(self, part: int) -> bool:
        """Whether input part ``part`` has been completely written."""
        return self._marker(part).exists()

    def _read_marker(self, part: int) -> dict:
        rec = json.loads(self._marker(part).read_text())
        if isinstance(rec, list):  # written before part records held rows/input
            rec = {"part": part, "rows": sum(r["rows"] for r in rec), "input": None, "shards": rec}
        return rec

    def _table(self, batch: Mapping[str, Any], part: int,
               origin: Mapping | None = None) -> tuple[pa.Table, str | np.ndarray]:  # fmt: skip
        """The shard table of a batch (validated once, here) and its geometry type names (one
        name for generated points/boxes, else one per row)."""
        for key in ("id", "lon", "lat"):
            if key not in batch:
                raise ValueError(f"corpus batch lacks required field {key!r}")
        ids = np.asarray(batch["id"], dtype=np.int64)
        n = len(ids)
        if origin is not None and "file" in origin and "start" in origin:
            f, s0 = origin["file"], int(origin["start"])
            where = lambda i: f"{f} row {s0 + i} (id {ids[i] if i < n else '?'})"  # noqa: E731
        else:
            where = lambda i: f"corpus part {part} row {i} (id {ids[i] if i < n else '?'})"  # noqa: E731
        check_rows(batch, where)
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
        if len(np.unique(ids)) != n:
            raise InputError(f"corpus part {part}: duplicate ids in the batch")
        if "bbox" in batch:
            bb = np.asarray(batch["bbox"], dtype=np.float64).reshape(n, 4)
            if not np.isfinite(bb).all():
                raise InputError(f"corpus part {part}: bbox has NaN/inf values")
        else:
            bb = np.stack([lon, lat, lon, lat], axis=1)
        types: str | np.ndarray
        if "geometry" in batch:
            g = batch["geometry"]
            geom = g if isinstance(g, pa.Array) and g.type == pa.binary() else pa.array(
                list(g), type=pa.binary())  # fmt: skip
            try:
                types = wkb.type_names(geom)
            except Exception as e:  # shapely.errors.GEOSException: not WKB
                raise InputError(f"{where(0)}..: 'geometry' is not valid WKB ({e})") from e
        elif "bbox" in batch:
            geom, types = wkb.boxes_wkb(bb), "Polygon"
        else:
            geom, types = wkb.points_wkb(lon, lat), "Point"
        cols = {"id": pa.array(ids), "code": _fsl(codes), "lon": pa.array(lon),
                "lat": pa.array(lat), "bbox": bbox_struct(*bb.T), "geometry": geom}  # fmt: skip
        for key, value in batch.items():
            if key in cols or key == "embedding":
                continue
            if key == FINE:
                raise InputError(f"corpus part {part}: field {FINE!r} is reserved for the builder")
            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            cols[key] = _fsl(arr) if arr.ndim == 2 else pa.array(arr)
        return pa.table(cols), types

    def write_part(
        self, part: int, batch: Mapping[str, Any], origin: Mapping | None = None
    ) -> list[dict]:
        """Write the shards of input part ``part`` (skipped when already complete).

        ``origin`` (e.g. ``{"file", "start", "stop"}``) is recorded with the part; a completed
        part whose recorded origin or row count differs from this batch raises
        :class:`ResumeMismatchError`.
        """
        ids = np.asarray(batch["id"]).astype(np.int64) if "id" in batch else None
        n = None if ids is None else len(ids)
        ids_sha = None if ids is None else hashlib.sha256(ids.tobytes()).hexdigest()[:16]
        inp = None if origin is None else json.loads(json.dumps(dict(origin)))
        if self.is_done(part):
            rec = self._read_marker(part)
            old_sha = rec.get("ids_sha256")
            if (
                (n is not None and rec["rows"] != n)
                or (inp is not None and rec["input"] is not None and rec["input"] != inp)
                or (ids_sha is not None and old_sha is not None and old_sha != ids_sha)
            ):
                raise ResumeMismatchError(
                    f"{self._marker(part)}: part {part} was built from {rec['input']} "
                    f"({rec['rows']} rows, ids {old_sha}); this run gives it {inp} ({n} rows, "
                    f"ids {ids_sha}). The input or its batching (or the number of processes) "
                    "changed: rerun with the original arguments or use a new root"
                )
            return rec["shards"]
        table, types = self._table(batch, part, inp)
        p = self.config.geohash_precision
        fine_p = min(12, p + 2)  # the compaction order: finer geohash, then id
        fine = geohash.encode_int(table["lat"].to_numpy(), table["lon"].to_numpy(), fine_p)
        cell = fine >> (5 * (fine_p - p))  # a geohash's cell is its prefix
        ids = table["id"].to_numpy()
        order = np.lexsort((ids, fine if self.config.compact_rows else cell))
        if (order != np.arange(len(order))).any():
            table = table.take(pa.array(order))
        fine, cell = fine[order], cell[order]
        if not isinstance(types, str):
            types = types[order]
        starts = np.r_[0, np.flatnonzero(np.diff(cell)) + 1] if len(cell) else np.zeros(0, int)
        uniq = geohash.int_to_str(cell[starts], p) if len(cell) else []
        bounds = [*starts.tolist(), len(cell)]
        cell_types = [[types] if isinstance(types, str) else sorted(set(types[a:b]))
                      for a, b in zip(bounds[:-1], bounds[1:])]  # fmt: skip
        meta = {"geoemb:quantization": self.config.quantization, "geoemb:model": self.config.model}
        if self.config.compact_rows:  # one spill file per part, rows sorted by (fine cell, id)
            table = table.append_column(FINE, pa.array(fine))
            infos = write_spill(self.root, part, table, uniq, bounds, cell_types)
            uniq = []
        else:
            infos = []
        for c, cell_name in enumerate(uniq):
            (self.root / f"geohash={cell_name}").mkdir(exist_ok=True)
            for j, s in enumerate(range(bounds[c], bounds[c + 1], self.config.max_rows_per_shard)):
                e = min(s + self.config.max_rows_per_shard, bounds[c + 1])
                rel = f"geohash={cell_name}/part-{part:05d}-{j:03d}.parquet"
                infos.append(write_shard(self.root, rel, table.slice(s, e - s), cell_types[c],
                                         meta, cell=str(cell_name), part=int(part)))  # fmt: skip
        rec = {"part": int(part), "rows": int(table.num_rows), "input": inp,
               "ids_sha256": ids_sha, "shards": infos}  # fmt: skip
        atomic_write_text(self._marker(part), json.dumps(rec))
        return infos

    def build(self, batches: Iterable[Mapping[str, Any] | tuple], total: int | None = None,
              progress: bool = True, expected_rows: int | None = None) -> Path:  # fmt: skip
        """Write all parts and the manifest.

        ``batches`` yields batches (numbered 0, 1, …), ``(part, batch)`` or
        ``(part, batch, input)`` items. The manifest is written only if the completed parts are
        exactly the parts seen here and hold ``expected_rows`` rows (default: the rows seen).
        """
        from tqdm.auto import tqdm

        seen: set[int] = set()
        rows = 0
        try:
            it = tqdm(batches, total=total, disable=not progress, desc="corpus parts", unit="part")
            for n, item in enumerate(it):
                part, batch, inp = (
                    (*item, None)[:3] if isinstance(item, tuple) else (n, item, None)
                )  # fmt: skip
                if int(part) in seen:
                    raise InputError(f"corpus part {part} appears twice in the input")
                seen.add(int(part))
                rows += len(np.asarray(batch["id"]))
                self.write_part(int(part), batch, inp)
            return self.finalize(rows if expected_rows is None else expected_rows, seen)
        finally:
            self.close()

    def finalize(
        self,
        expected_rows: int | None = None,
        parts: Iterable[int] | None = None,
        client: Any = None,
    ) -> Path:
        """Check the completed parts and write ``manifest.parquet`` (atomic); release the lock.

        Raises :class:`CorpusIntegrityError` (and writes no manifest) if ``parts`` is given and the
        completed parts differ from it, or if ``expected_rows`` differs from their row count.
        """
        try:
            recs = {
                int(m.stem.split("-")[1]): m for m in (self.root / "_parts").glob("part-*.json")
            }
            if parts is not None:
                parts = set(map(int, parts))
                extra, missing = sorted(set(recs) - parts), sorted(parts - set(recs))
                if extra or missing:
                    raise CorpusIntegrityError(
                        f"{self.root}: completed parts do not match this input (parts not "
                        f"produced by it: {extra[:10]}, parts not completed: {missing[:10]}); "
                        "the root holds a build of other inputs — use a new root"
                    )
            total = sum(self._read_marker(p)["rows"] for p in recs)
            if expected_rows is not None and total != int(expected_rows):
                raise CorpusIntegrityError(
                    f"{self.root}: the completed parts hold {total} rows but the input has "
                    f"{expected_rows}; refusing to write a manifest of a partial or duplicated "
                    "corpus"
                )
            if self._lock_fh is not None:  # only the lock holder may delete files
                _remove_orphans(self.root)
            if self.config.compact_rows:
                meta = {"geoemb:quantization": self.config.quantization,
                        "geoemb:model": self.config.model}  # fmt: skip
                compact(self.root, self.config.compact_rows, self.config.geohash_precision, meta,
                        client=client)  # fmt: skip
            return write_manifest(self.root, expected_rows=expected_rows)
        finally:
            self.close()
