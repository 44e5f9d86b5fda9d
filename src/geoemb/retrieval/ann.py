"""Approximate search past the exhaustive scan: FAISS binary IVF / HNSW and float IVF-PQ backends.

Registered in :data:`geoemb.retrieval.search.BACKENDS` with ``meta(exact=False)``:

``binary_ivf``
    FAISS ``IndexBinaryIVF`` over packed codes: a binary k-means coarse quantizer (``nlist``
    cells, trained on a seeded sample of ``train_size`` codes), ``nprobe`` cells scanned per query.
``binary_hnsw``
    FAISS ``IndexBinaryHNSW`` (``M`` links per node, ``ef_construction`` at build, ``ef_search``
    at query); needs no training.
``float_ivfpq``
    FAISS ``IndexIVFPQ`` over float vectors (``l2``, ``ip`` or ``cosine``; ``m`` sub-quantizers of
    ``nbits`` bits, ``nlist`` cells, ``nprobe``), trained on a sample.

Results follow the exact backends' contract where an ANN can: rows sorted by (distance, id) (which
of several rows tied at the k-th distance is kept is FAISS's choice, not always the smaller id);
a slot the index could not fill (fewer than ``k`` candidates in the probed cells) has id ``-1``
and the largest distance (``int64`` max for Hamming, ``inf``/``-inf`` for float), sorted last.

Persistence: :meth:`AnnIndex.save` writes ``<path>`` (the FAISS index) and ``<path>.json`` (its
key: backend, parameters, dim, row count, SHA-256 of the data it was built from and of the index
file). :func:`load_ann` reads it back only for the same data and parameters; otherwise it raises
:class:`~geoemb.errors.ResumeMismatchError` naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.errors import InputError, ResumeMismatchError
from geoemb.retrieval.hamming import check_codes
from geoemb.retrieval.index import (
    ArrayLike,
    SearchIndex,
    _check_metric,
    _l2_normalize_np,
    _to_numpy,
)
from geoemb.utils.io import atomic_path, atomic_write_text

__all__ = [
    "AnnIndex",
    "BinaryHNSWIndex",
    "BinaryIVFIndex",
    "FloatIVFPQIndex",
    "content_sha256",
    "load_ann",
]

INT_MISSING = np.iinfo(np.int64).max


def content_sha256(data: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (the key of an index built from it)."""
    a = np.ascontiguousarray(data)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    flat = a.reshape(-1).view(np.uint8) if a.size else np.zeros(0, np.uint8)
    for s in range(0, len(flat), 1 << 26):
        h.update(memoryview(flat[s : s + (1 << 26)]))
    return h.hexdigest()


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of ``min(n, size)`` row positions (all rows when ``size >= n``)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class AnnIndex(SearchIndex):
    """Common part of the FAISS ANN backends: parameters, key, sorting, save/load."""

    binary: bool = True
    _index: Any

    def params(self) -> dict:
        """The build parameters that define the index (part of its key)."""
        raise NotImplementedError

    def key(self) -> dict:
        """What identifies this index: backend, parameters, data shape and content hash."""
        return {"backend": self.name, "params": self.params(), "dim": int(self.dim),
                "metric": self.metric, "ntotal": int(self.ntotal),
                "content_sha256": self.content}  # fmt: skip

    def set_search_params(self, **kw: Any) -> None:
        """Change query-time knobs (``nprobe`` / ``ef_search``) without rebuilding."""
        for k, v in kw.items():
            if k not in self._query_knobs:
                raise ValueError(f"{self.name}: unknown search parameter {k!r}; "
                                 f"expected {sorted(self._query_knobs)}")  # fmt: skip
            if int(v) < 1:
                raise ValueError(f"{self.name}: {k} must be >= 1, got {v}")
            setattr(self, k, int(v))
        self._apply_search_params()

    _query_knobs: tuple[str, ...] = ()

    def _apply_search_params(self) -> None: ...

    def _sorted(self, d: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        missing = i < 0
        if self.binary:
            d = d.astype(np.int64)
            d[missing] = INT_MISSING
            key = d
        else:
            d = d.astype(np.float32)
            d[missing] = -np.inf if self.largest else np.inf
            key = -d if self.largest else d
        order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, i), key), axis=1)
        return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1).astype(np.int64)

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = self._index.search(q, k)
        return self._sorted(d, i)

    # -- persistence
    def save(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the index to ``path`` and its key (plus ``extra``) to ``path + '.json'``
        (both atomic; the key is written last and names the index file's SHA-256)."""
        import faiss

        path = Path(path)
        with atomic_path(path) as tmp:
            (faiss.write_index_binary if self.binary else faiss.write_index)(self._index, str(tmp))
        rec = {
            **(extra or {}),
            **self.key(),
            "index_sha256": _file_sha(path),
            "faiss": faiss.__version__,
        }
        atomic_write_text(Path(f"{path}.json"), json.dumps(rec, sort_keys=True, indent=1))
        return path


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} (saved index) vs {b!r} (this data)")
    return out


class _BinaryAnn(AnnIndex):
    metric = "hamming"
    binary = True

    def _init_codes(self, codes: ArrayLike, dim: int | None) -> np.ndarray:
        codes_np = check_codes(_to_numpy(codes), name="database codes")
        self.nbytes = codes_np.shape[1]
        self.dim = int(dim) if dim is not None else self.nbytes * 8
        if (self.dim + 7) // 8 != self.nbytes:
            raise ValueError(f"dim={self.dim} bits needs {(self.dim + 7) // 8} bytes per code, "
                             f"database codes have {self.nbytes}")  # fmt: skip
        self.ntotal = len(codes_np)
        self.content = content_sha256(codes_np)
        return np.ascontiguousarray(codes_np)

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        return np.ascontiguousarray(check_codes(_to_numpy(queries), self.nbytes, "query codes"))


def _add_assigned(index: Any, quant: Any, x: np.ndarray, nbytes: int, chunk: int = 1 << 20) -> None:
    """Add ``x`` to a trained ``IndexBinaryIVF``, each code in its nearest cell.

    The assignment (nearest centroid, ties to the smaller cell id) runs on geoemb's numba popcount
    scan, ~7× faster than FAISS's generic path for codes of more than 64 bytes; FAISS's own
    ``add`` is the fallback without numba. Same cells either way up to the choice among tied ones.
    """
    import faiss

    try:
        from geoemb.retrieval.hamming_index import HammingNumbaIndex

        cents = faiss.vector_to_array(quant.xb).reshape(-1, nbytes)
        assign = HammingNumbaIndex(cents, dim=nbytes * 8)
    except ImportError:  # pragma: no cover - numba is a dependency
        index.add(x)
        return
    for s in range(0, len(x), chunk):
        part = np.ascontiguousarray(x[s : s + chunk])
        cell = np.ascontiguousarray(np.asarray(assign.search(part, 1)[1])[:, 0], dtype=np.int64)
        ids = np.arange(s, s + len(part), dtype=np.int64)
        index.add_core(len(part), faiss.swig_ptr(part), faiss.swig_ptr(ids), faiss.swig_ptr(cell))


class BinaryIVFIndex(_BinaryAnn):
    """FAISS ``IndexBinaryIVF``: binary k-means cells (trained on a sample), ``nprobe`` scanned.

    Parameters
    ----------
    codes:
        ``(N, B)`` packed uint8 codes.
    dim:
        Code bits (default ``8·B``).
    nlist:
        Number of cells (default ``round(sqrt(N))``, at least 1, at most ``N``).
    nprobe:
        Cells scanned per query (query-time; :meth:`set_search_params`).
    train_size:
        Codes sampled (seeded) to train the cells (default ``min(N, 40·nlist)``).
    niter, seed:
        k-means iterations and the seed of the sample and k-means.
    """

    name = "binary_ivf"
    _query_knobs = ("nprobe",)

    def __init__(self, codes: ArrayLike, dim: int | None = None, nlist: int | None = None,
                 nprobe: int = 16, train_size: int | None = None, niter: int = 10,
                 seed: int = 0, query_batch: int = 4096, _index: Any = None) -> None:  # fmt: skip
        import faiss

        super().__init__(chunk_size=1 << 30, query_batch=query_batch)
        x = self._init_codes(codes, dim)
        n = len(x)
        if n == 0:
            raise InputError("binary_ivf: the database has no codes")
        self.nlist = int(nlist) if nlist is not None else max(1, round(math.sqrt(n)))
        if not 1 <= self.nlist <= n:
            raise ValueError(f"binary_ivf: nlist must be in 1..{n} (rows), got {self.nlist}")
        self.train_size = int(train_size) if train_size else min(n, 40 * self.nlist)
        self.train_size = max(self.train_size, self.nlist)
        self.niter, self.seed, self.nprobe = int(niter), int(seed), int(nprobe)
        if _index is None:
            quant = faiss.IndexBinaryFlat(self.nbytes * 8)
            index = faiss.IndexBinaryIVF(quant, self.nbytes * 8, self.nlist)
            index.own_fields = True
            quant.this.disown()
            index.cp.niter = self.niter
            index.cp.seed = self.seed
            index.cp.max_points_per_centroid = 1 << 30  # our sample is the training set
            index.train(x[_sample(n, self.train_size, self.seed)])
            _add_assigned(index, quant, x, self.nbytes)
        else:
            index = _index
        self._index = index
        self._apply_search_params()

    def params(self) -> dict:
        return {"nlist": self.nlist, "train_size": self.train_size, "niter": self.niter,
                "seed": self.seed}  # fmt: skip

    def _apply_search_params(self) -> None:
        self._index.nprobe = min(self.nprobe, self.nlist)


class BinaryHNSWIndex(_BinaryAnn):
    """FAISS ``IndexBinaryHNSW`` (graph search; ``ef_search`` is the query-time knob).

    Parameters
    ----------
    M:
        Links per node.
    ef_construction:
        Candidate list size while building.
    ef_search:
        Candidate list size per query (at least ``k`` is used).
    """

    name = "binary_hnsw"
    _query_knobs = ("ef_search",)

    def __init__(self, codes: ArrayLike, dim: int | None = None, M: int = 16,
                 ef_construction: int = 64, ef_search: int = 64, query_batch: int = 4096,
                 _index: Any = None) -> None:  # fmt: skip
        import faiss

        super().__init__(chunk_size=1 << 30, query_batch=query_batch)
        x = self._init_codes(codes, dim)
        if len(x) == 0:
            raise InputError("binary_hnsw: the database has no codes")
        self.M, self.ef_construction, self.ef_search = int(M), int(ef_construction), int(ef_search)
        if _index is None:
            index = faiss.IndexBinaryHNSW(self.nbytes * 8, self.M)
            index.hnsw.efConstruction = self.ef_construction
            index.add(x)
        else:
            index = _index
        self._index = index
        self._apply_search_params()

    def params(self) -> dict:
        return {"M": self.M, "ef_construction": self.ef_construction}

    def _apply_search_params(self) -> None:
        self._index.hnsw.efSearch = self.ef_search

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._index.hnsw.efSearch = max(self.ef_search, k)
        return super()._search_batch(q, k)


class FloatIVFPQIndex(AnnIndex):
    """FAISS ``IndexIVFPQ`` over float vectors (``l2``; ``ip``; ``cosine`` = normalised + ip).

    Parameters
    ----------
    vectors:
        ``(N, D)`` float database.
    nlist, nprobe, train_size, niter, seed:
        As :class:`BinaryIVFIndex` (default ``train_size``: ``min(N, max(40·nlist, 256·2**nbits/…)``
        — enough rows for both the cells and the PQ codebooks).
    m, nbits:
        ``m`` sub-quantizers (``D % m == 0``) of ``nbits`` bits: ``m·nbits/8`` bytes per vector.
    """

    name = "float_ivfpq"
    binary = False
    _query_knobs = ("nprobe",)

    def __init__(self, vectors: ArrayLike, metric: str = "l2", nlist: int | None = None,
                 m: int = 16, nbits: int = 8, nprobe: int = 16, train_size: int | None = None,
                 niter: int = 10, seed: int = 0, query_batch: int = 4096,
                 _index: Any = None) -> None:  # fmt: skip
        import faiss

        super().__init__(chunk_size=1 << 30, query_batch=query_batch)
        self.metric = _check_metric(metric)
        x = np.asarray(_to_numpy(vectors))
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
            raise InputError(f"float_ivfpq: expected a non-empty (N, D) float database, got "
                             f"{x.dtype} {x.shape}")  # fmt: skip
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise InputError("float_ivfpq: the database has NaN/inf values (invalid data)")
        if self.metric == "cosine":
            x = np.ascontiguousarray(_l2_normalize_np(x), dtype=np.float32)
        n, self.dim = x.shape
        self.ntotal = n
        self.m, self.nbits = int(m), int(nbits)
        if self.dim % self.m:
            raise ValueError(f"float_ivfpq: m={self.m} must divide the dimension {self.dim}")
        self.nlist = int(nlist) if nlist is not None else max(1, round(math.sqrt(n)))
        if not 1 <= self.nlist <= n:
            raise ValueError(f"float_ivfpq: nlist must be in 1..{n} (rows), got {self.nlist}")
        self.train_size = int(train_size) if train_size else min(
            n, max(40 * self.nlist, 64 * (1 << self.nbits))
        )  # fmt: skip
        self.niter, self.seed, self.nprobe = int(niter), int(seed), int(nprobe)
        self.content = content_sha256(np.asarray(_to_numpy(vectors), dtype=np.float32))
        if _index is None:
            ip = faiss.METRIC_INNER_PRODUCT if self.metric in ("ip", "cosine") else faiss.METRIC_L2
            quant = (faiss.IndexFlatIP if ip == faiss.METRIC_INNER_PRODUCT
                     else faiss.IndexFlatL2)(self.dim)  # fmt: skip
            index = faiss.IndexIVFPQ(quant, self.dim, self.nlist, self.m, self.nbits, ip)
            index.own_fields = True
            quant.this.disown()
            index.cp.niter = self.niter
            index.cp.seed = self.seed
            index.cp.max_points_per_centroid = 1 << 30
            index.pq.cp.seed = self.seed
            index.train(x[_sample(n, self.train_size, self.seed)])
            index.add(x)
        else:
            index = _index
        self._index = index
        self._apply_search_params()

    def params(self) -> dict:
        return {"nlist": self.nlist, "m": self.m, "nbits": self.nbits,
                "train_size": self.train_size, "niter": self.niter, "seed": self.seed}  # fmt: skip

    def _apply_search_params(self) -> None:
        self._index.nprobe = min(self.nprobe, self.nlist)

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        q = np.ascontiguousarray(_to_numpy(queries), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"query vectors: dimension mismatch, expected (nq, {self.dim}), got {q.shape}"
            )
        return (
            np.ascontiguousarray(_l2_normalize_np(q), np.float32) if self.metric == "cosine" else q
        )


ANN_CLASSES: dict[str, type[AnnIndex]] = {
    c.name: c for c in (BinaryIVFIndex, BinaryHNSWIndex, FloatIVFPQIndex)
}


def load_ann(path: str | os.PathLike, data: ArrayLike | None, metric: str | None = None,
             content: str | None = None, **params: Any) -> AnnIndex:  # fmt: skip
    """Load an index saved by :meth:`AnnIndex.save` for ``data`` (codes or float vectors).

    ``data=None`` with ``content`` (the expected :func:`content_sha256`, e.g. kept by a caller that
    keys the data another way) skips hashing the data.

    ``params`` (build parameters such as ``nlist``; query knobs such as ``nprobe`` are applied,
    not compared) must equal the saved ones when given.

    Raises
    ------
    FileNotFoundError
        No saved index at ``path``.
    ResumeMismatchError
        The saved index was built from other data (content hash, row count, dim), with other
        parameters or metric, or its file does not match its key; the message names what differs.
    """
    import faiss

    path = Path(path)
    meta_path = Path(f"{path}.json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"{path}: no saved ANN index (or its key {meta_path.name})")
    try:
        rec = json.loads(meta_path.read_text())
        cls = ANN_CLASSES[rec["backend"]]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{meta_path}: unreadable ANN index key ({e!r})") from e
    if _file_sha(path) != rec.get("index_sha256"):
        raise ResumeMismatchError(f"{path}: the index file does not match its key {meta_path} "
                                  "(index_sha256 differs); rebuild it")  # fmt: skip
    query_knobs = {k: params.pop(k) for k in list(params) if k in cls._query_knobs}
    if data is None:
        if content is None:
            raise ValueError("load_ann: give the data or its content hash")
        now = {"content_sha256": content, "metric": metric or rec["metric"]}
    elif cls.binary:
        arr = np.asarray(_to_numpy(data))
        codes = check_codes(arr, name="database codes")
        now = {"dim": int(params.pop("dim", rec["dim"])), "ntotal": len(codes),
               "metric": "hamming", "content_sha256": content_sha256(codes)}  # fmt: skip
    else:
        vec = np.asarray(_to_numpy(data), dtype=np.float32)
        now = {"dim": int(vec.shape[1]) if vec.ndim == 2 else -1, "ntotal": len(vec),
               "metric": metric or rec["metric"], "content_sha256": content_sha256(vec)}  # fmt: skip
    saved = {k: rec[k] for k in now}
    diff = _differences(saved, now)
    diff += _differences({k: rec["params"].get(k) for k in params}, params, "params.")
    if diff:
        raise ResumeMismatchError(f"{path}: saved {rec['backend']} index was built for other data "
                                  "or parameters; refusing to load it. Differences:\n  "
                                  + "\n  ".join(diff))  # fmt: skip
    index = (faiss.read_index_binary if cls.binary else faiss.read_index)(str(path))
    obj = cls.__new__(cls)
    SearchIndex.__init__(obj, chunk_size=1 << 30, query_batch=4096)
    for k, v in rec["params"].items():
        setattr(obj, k, v)
    obj.dim, obj.ntotal, obj.content, obj._index = (
        rec["dim"],
        rec["ntotal"],
        now["content_sha256"],
        index,
    )
    if cls.binary:
        obj.nbytes = (obj.dim + 7) // 8
    else:
        obj.metric = rec["metric"]
    defaults = {"nprobe": 16, "ef_search": 64}
    for knob in cls._query_knobs:
        setattr(obj, knob, int(query_knobs.get(knob, defaults[knob])))
    obj._apply_search_params()
    return obj
