"""In-memory read side of a built corpus for the explorer: manifest pruning over loaded shards.

The library's :class:`~geoemb.retrieval.store.CorpusStore` reads Parquet on every call; an
interactive map asks for the same rows again and again (every click re-scores the same viewport),
so this module decodes each shard once (ids, centroids, row bboxes, packed codes) into contiguous
arrays laid out in manifest order and answers viewport and point queries from numpy views.
Shards are read lazily, the first time a query's pruned set touches them; nothing is evicted, so
the decoded corpus must fit in ``max_bytes`` (checked from the manifest at start-up).

Semantics are the library's, so results can be compared with it:

- pruning is :meth:`CorpusStore.prune`'s manifest test on the data extent (antimeridian split);
- the row filter is :meth:`CorpusStore.read`'s bbox overlap
  ``xmax >= W & xmin <= E & ymax >= S & ymin <= N`` over the (split) query boxes;
- a point resolves like :meth:`CorpusStore.lookup_point` (rows whose bbox contains it, nearest
  centroid, then smallest id).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from geoemb.errors import GeoembError, InputError
from geoemb.retrieval.store import MANIFEST, CorpusStore, fsl_to_numpy, split_antimeridian

COLUMNS = ["id", "code", "lon", "lat", "bbox"]


class CorpusChangedError(GeoembError, RuntimeError):
    """The corpus manifest changed on disk after the explorer loaded it."""


class CorpusReadError(InputError):
    """A shard listed in the manifest is missing, unreadable or disagrees with the manifest."""


class ViewTooLargeError(InputError):
    """A viewport touches more rows than the configured limit."""


@dataclass
class Rows:
    """Rows of a query: ``bbox`` is ``(n, 4)`` ``xmin, ymin, xmax, ymax``; ``codes`` ``(n, B)``."""

    ids: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    bbox: np.ndarray
    codes: np.ndarray
    rgb: np.ndarray | None = None
    n_shards: int = 0
    n_pruned_rows: int = 0
    timing: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # per-view derived data (pixel layouts), shared

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Rows:
        rgb = None if self.rgb is None else self.rgb[idx]
        return Rows(self.ids[idx], self.lon[idx], self.lat[idx], self.bbox[idx], self.codes[idx],
                    rgb, self.n_shards, self.n_pruned_rows, dict(self.timing))  # fmt: skip


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def box_mask(bbox: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows whose ``(n, 4)`` bbox overlaps any of ``boxes`` (the library's row filter)."""
    keep = np.zeros(len(bbox), dtype=bool)
    for w, s, e, n in boxes:
        keep |= (bbox[:, 2] >= w) & (bbox[:, 0] <= e) & (bbox[:, 3] >= s) & (bbox[:, 1] <= n)
    return keep


def runs(sel: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indices → maximal runs ``[a, b)`` of consecutive values."""
    if len(sel) == 0:
        return []
    breaks = np.nonzero(np.diff(sel) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(sel)]])
    return [(int(sel[a]), int(sel[b - 1]) + 1) for a, b in zip(starts, ends)]


BYTES_PER_ROW_FIXED = 8 + 8 + 8 + 32 + 3  # id, lon, lat, bbox, rgb


class CorpusIndex:
    """Manifest + lazily decoded shards of a corpus root.

    Parameters
    ----------
    root:
        Corpus directory with ``manifest.parquet`` (``python -m geoemb.retrieval build-corpus``).
    max_bytes:
        Refuse corpora whose decoded arrays (``(B + 59)`` bytes per row) would exceed this.
    threads:
        Parallel shard reads.
    """

    def __init__(self, root: str | Path, max_bytes: int = 8 << 30, threads: int = 4) -> None:
        self.root = Path(root)
        if not (self.root / MANIFEST).is_file():
            raise InputError(
                f"{self.root}: not a geoemb corpus (no {MANIFEST}); build one with "
                "`python -m geoemb.retrieval build-corpus --input <parquet dir> --out <corpus>`"
            )
        self._stat = self._manifest_stat()
        try:
            self.store = CorpusStore(self.root)
        except ValueError as e:
            raise InputError(str(e)) from e
        self.manifest_sha256 = file_sha256(self.root / MANIFEST)
        if self._manifest_stat() != self._stat:
            raise CorpusChangedError(f"{self.root / MANIFEST} changed while it was being read")
        m = self.store.manifest
        self.paths: list[str] = m["path"].to_pylist()
        self.shard_rows = np.asarray(m["rows"].to_numpy(), dtype=np.int64)
        self.ext = np.stack([np.asarray(m[c].to_numpy(), np.float64)
                             for c in ("xmin", "ymin", "xmax", "ymax")], 1).reshape(-1, 4)  # fmt: skip
        self.offsets = np.concatenate([[0], np.cumsum(self.shard_rows)]).astype(np.int64)
        self.dim = self.store.dim
        self.code_bytes = self.store.code_bytes
        self.n_rows = int(self.offsets[-1])
        need = self.n_rows * (self.code_bytes + BYTES_PER_ROW_FIXED)
        if need > max_bytes:
            raise InputError(
                f"{self.root}: {self.n_rows} rows need {need / 2**30:.1f} GiB decoded, more than "
                f"the explorer's memory limit of {max_bytes / 2**30:.1f} GiB (--max-memory-gb)"
            )
        if len(self.paths):
            self.extent = (float(self.ext[:, 0].min()), float(self.ext[:, 1].min()),
                           float(self.ext[:, 2].max()), float(self.ext[:, 3].max()))  # fmt: skip
        else:
            self.extent = (-180.0, -90.0, 180.0, 90.0)
        n, b = self.n_rows, self.code_bytes
        # np.empty: pages are committed only when a shard is written into them
        self.ids = np.empty(n, np.int64)
        self.lon = np.empty(n, np.float64)
        self.lat = np.empty(n, np.float64)
        self.bbox = np.empty((n, 4), np.float64)
        self.codes = np.empty((n, b), np.uint8)
        self.rgb = np.empty((n, 3), np.uint8)
        self.loaded = np.zeros(len(self.paths), bool)
        self.colored = np.zeros(len(self.paths), bool)
        self._load_lock = threading.Lock()
        self._color_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads))
        self.colorize: Callable[[np.ndarray], np.ndarray] | None = None
        self._last_view: tuple | None = None  # (key, Rows) of the latest viewport query

    # ------------------------------------------------------------------ freshness
    def _manifest_stat(self) -> tuple[int, int]:
        st = (self.root / MANIFEST).stat()
        return st.st_mtime_ns, st.st_size

    def check_fresh(self) -> None:
        """Raise :class:`CorpusChangedError` if ``manifest.parquet`` changed since loading."""
        try:
            now = self._manifest_stat()
        except FileNotFoundError as e:
            raise CorpusChangedError(f"{self.root / MANIFEST} disappeared; restart") from e
        if now != self._stat:
            raise CorpusChangedError(
                f"{self.root / MANIFEST} changed on disk since the explorer started (the corpus "
                "was rebuilt?); restart `geoemb explore` to serve the new corpus"
            )

    # ------------------------------------------------------------------ shards
    def prune(self, bbox: Sequence[float]) -> np.ndarray:
        """Sorted indices of shards whose manifest data extent intersects ``bbox`` (W, S, E, N).

        The same test as ``CorpusStore.prune`` (``xmax >= W AND xmin <= E AND ymax >= S AND
        ymin <= N`` per antimeridian-split box), on numpy columns instead of an Arrow filter.
        """
        return np.nonzero(box_mask(self.ext, split_antimeridian(bbox)))[0]

    def _read(self, i: int) -> None:
        path = self.root / self.paths[i]
        try:
            t = pq.ParquetFile(path).read(columns=COLUMNS, use_threads=False)
        except (OSError, ValueError) as e:  # missing, truncated, wrong schema
            raise CorpusReadError(
                f"{path}: cannot read corpus shard listed in the manifest ({e})"
            ) from e
        if t.num_rows != self.shard_rows[i]:
            raise CorpusReadError(
                f"{path}: {t.num_rows} rows but the manifest says {self.shard_rows[i]}; the corpus "
                "is inconsistent (rebuild it or rerun write_manifest)"
            )
        codes = fsl_to_numpy(t["code"], np.uint8)
        if codes.shape[1] != self.code_bytes:
            raise CorpusReadError(
                f"{path}: codes are {codes.shape[1]} bytes wide, manifest says {self.code_bytes}"
            )
        a, z = self.offsets[i], self.offsets[i + 1]
        b = t["bbox"].combine_chunks()
        for j, f in enumerate(("xmin", "ymin", "xmax", "ymax")):
            self.bbox[a:z, j] = b.field(f).to_numpy(zero_copy_only=False)
        self.ids[a:z] = t["id"].to_numpy()
        self.lon[a:z] = t["lon"].to_numpy()
        self.lat[a:z] = t["lat"].to_numpy()
        self.codes[a:z] = codes

    def load(self, sel: np.ndarray, rgb: bool = False) -> None:
        """Make sure shards ``sel`` are decoded (and coloured when ``rgb``)."""
        sel = np.asarray(sel, dtype=np.int64)
        if not self.loaded[sel].all():
            with self._load_lock:
                missing = sel[~self.loaded[sel]]
                for _ in self._pool.map(self._read, missing.tolist()):
                    pass
                self.loaded[missing] = True
        if rgb and not self.colored[sel].all():
            if self.colorize is None:
                raise RuntimeError("CorpusIndex.colorize is not set (no basemap model)")
            with self._color_lock:
                for a, b in runs(sel[~self.colored[sel]]):
                    lo, hi = self.offsets[a], self.offsets[b]
                    self.rgb[lo:hi] = self.colorize(self.codes[lo:hi])
                    self.colored[a:b] = True

    def preload(self) -> None:
        """Decode every shard (then id lookups need no disk scan)."""
        self.load(np.arange(len(self.paths)))

    # ------------------------------------------------------------------ rows
    def rows(self, bbox: Sequence[float], max_rows: int | None = None, rgb: bool = False) -> Rows:
        """Rows whose bbox overlaps ``bbox`` (exactly as ``CorpusStore.read``), in manifest order.

        Raises :class:`ViewTooLargeError` when the pruned shards hold more than ``max_rows`` rows
        (checked from the manifest, before any shard is read).
        """
        t0 = time.perf_counter()
        key = (tuple(float(v) for v in bbox), max_rows, rgb)
        last = self._last_view
        if last is not None and last[0] == key:  # a click on an unchanged view: same rows
            r = last[1]
            return Rows(r.ids, r.lon, r.lat, r.bbox, r.codes, r.rgb, r.n_shards, r.n_pruned_rows,
                        {"prune_ms": 0.0, "load_ms": 0.0,
                         "filter_ms": 1e3 * (time.perf_counter() - t0)}, r.cache)  # fmt: skip
        boxes = split_antimeridian(bbox)
        sel = self.prune(bbox)
        pruned = int(self.shard_rows[sel].sum())
        if max_rows is not None and pruned > max_rows:
            raise ViewTooLargeError(
                f"bbox {list(bbox)} touches {pruned} corpus rows in {len(sel)} shards, more than "
                f"the explorer's limit of {max_rows} rows per view (--max-view-rows); zoom in"
            )
        t1 = time.perf_counter()
        self.load(sel, rgb=rgb)
        t2 = time.perf_counter()
        spans = [(int(self.offsets[a]), int(self.offsets[b])) for a, b in runs(sel)]
        if len(spans) == 1:
            idx = slice(*spans[0])
            keep = box_mask(self.bbox[idx], boxes)
            pos = np.arange(*spans[0])[keep] if not keep.all() else idx
        else:
            pos = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, int)
            pos = pos[box_mask(self.bbox[pos], boxes)]
        out = Rows(self.ids[pos], self.lon[pos], self.lat[pos], self.bbox[pos], self.codes[pos],
                   self.rgb[pos] if rgb else None, len(sel), pruned)  # fmt: skip
        out.timing = {"prune_ms": 1e3 * (t1 - t0), "load_ms": 1e3 * (t2 - t1),
                      "filter_ms": 1e3 * (time.perf_counter() - t2)}  # fmt: skip
        if max_rows is not None and not rgb and len(out) > 1:  # viewport queries, not tiles
            self._last_view = (key, out)
        return out

    def lookup_point(self, lon: float, lat: float, tolerance: float = 0.0) -> Rows:
        """The row covering ``(lon, lat)`` (library semantics), else with ``tolerance`` > 0 the
        row with the nearest centroid within ``tolerance`` degrees (then smallest id). 0 or 1 rows."""
        rows = self.rows((lon, lat, lon, lat))
        if len(rows) == 0 and tolerance > 0:
            w, e = max(-180.0, lon - tolerance), min(180.0, lon + tolerance)
            s, n = max(-90.0, lat - tolerance), min(90.0, lat + tolerance)
            rows = self.rows((w, s, e, n))
            near = (np.abs(rows.lon - lon) <= tolerance) & (np.abs(rows.lat - lat) <= tolerance)
            rows = rows.take(np.nonzero(near)[0])
        if len(rows) <= 1:
            return rows
        d2 = (rows.lon - lon) ** 2 + (rows.lat - lat) ** 2
        return rows.take(np.lexsort((rows.ids, d2))[:1])

    def lookup_id(self, row_id: int, hint: tuple[float, float] | None = None) -> Rows:
        """The row with ``row_id`` (0 or 1 rows). ``hint`` (its lon, lat) avoids a full scan."""
        if hint is not None:
            rows = self.rows((hint[0], hint[1], hint[0], hint[1]))
            hit = np.nonzero(rows.ids == row_id)[0]
            if len(hit):
                return rows.take(hit[:1])
        if self.loaded.all():
            hit = np.nonzero(self.ids == row_id)[0][:1]
            return Rows(self.ids[hit], self.lon[hit], self.lat[hit], self.bbox[hit],
                        self.codes[hit])  # fmt: skip
        try:  # the library's scan (id statistics prune row groups)
            t = self.store.lookup_ids([int(row_id)])
        except (OSError, ValueError) as e:  # a shard listed in the manifest is missing/corrupt
            raise CorpusReadError(f"{self.root}: id lookup scan failed: {e}") from e
        b = t["bbox"].combine_chunks()
        bbox = np.stack([np.asarray(b.field(f).to_numpy(zero_copy_only=False), np.float64)
                         for f in ("xmin", "ymin", "xmax", "ymax")], axis=1).reshape(-1, 4)  # fmt: skip
        return Rows(np.asarray(t["id"].to_numpy(), np.int64)[:1],
                    np.asarray(t["lon"].to_numpy(), np.float64)[:1],
                    np.asarray(t["lat"].to_numpy(), np.float64)[:1], bbox[:1],
                    self.store.codes(t)[:1])  # fmt: skip
