"""Exact search backends behind one interface: ``index.search(queries, k) -> (distances, ids)``.

Every backend
- is exact (brute force) and returns rows sorted by distance, **ties broken by smaller id**;
- batches queries (``query_batch``) and walks the database in chunks (``chunk_size`` rows) with a
  running top-k merge, so memory stays bounded by ``query_batch × chunk_size`` temporaries;
- returns ``min(k, n)`` columns, ids ``int64``;
- returns numpy arrays for numpy queries and torch tensors for torch queries (torch backends keep
  results on the index's device, which is the device of the database they were built from).

Distances: ``hamming`` backends return integer Hamming distances (ascending); float backends with
``metric="l2"`` return squared L2 distances (ascending, like FAISS) and with ``metric="ip"`` /
``"cosine"`` return similarities (descending, like FAISS ``IndexFlatIP``; cosine L2-normalises
database and queries).

Registry: :data:`BACKENDS` (one :class:`~geoemb.utils.registry.Registry`; ``meta(kind="hamming"|
"float"|"dequantized"|"rerank", device=…)``) / :func:`build_index`. The Hamming backends live in
:mod:`geoemb.retrieval.hamming_index`, the common interface in :mod:`geoemb.retrieval.index`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from geoemb.compression.bitpack import pack_bits
from geoemb.errors import InputError
from geoemb.retrieval import topk as tk
from geoemb.retrieval.ann import ANN_CLASSES, BinaryHNSWIndex, BinaryIVFIndex, FloatIVFPQIndex
from geoemb.retrieval.hamming_index import (
    FP16_EXACT_BITS,
    HammingFaissIndex,
    HammingGemmIndex,
    HammingNumbaIndex,
    HammingNumpyIndex,
    HammingTorchIndex,
    gemm_dtype,
)
from geoemb.retrieval.index import (
    FLOAT_METRICS,
    ArrayLike,
    SearchIndex,
    _check_metric,
    _l2_normalize_np,
    _to_numpy,
)
from geoemb.utils.registry import Registry

__all__ = [
    "ANN_BACKENDS", "BACKENDS", "FLOAT_METRICS", "FP16_EXACT_BITS", "HAMMING_BACKENDS", "BinaryRerankIndex",
    "DequantizedIndex", "FloatFaissIndex", "FloatTorchIndex", "HammingFaissIndex",
    "HammingGemmIndex", "HammingNumbaIndex", "HammingNumpyIndex", "HammingTorchIndex",
    "SearchIndex", "build_index", "default_hamming_backend", "gemm_dtype", "sign_encoder",
]  # fmt: skip


def _check_finite(x: torch.Tensor, what: str) -> None:
    """Non-finite vectors are invalid data (they have no distance): one clear error."""
    bad = ~torch.isfinite(x).all(1)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        raise InputError(f"{what}: non-finite value (NaN/inf) in row {row}; expected finite floats")


class FloatTorchIndex(SearchIndex):
    """Exact float search with torch (``matmul`` or ``torch.cdist``) on the database's device.

    On CPU (no autograd, no cdist) each query batch runs one BLAS GEMM per ``cpu_block``
    database rows and a fused numba pass (:mod:`geoemb.retrieval._float_numba`) that forms the
    key and keeps the running top-k while the block is in cache, so it runs at the speed of the
    GEMM, i.e. of FAISS ``IndexFlatIP``/``IndexFlatL2`` (``benchmarks/float_knn.py``); on other
    devices ``matmul`` + ``torch.topk`` per ``chunk_size`` block. Non-finite vectors are rejected.
    """

    name = "float_torch"

    def __init__(self, vectors: ArrayLike, metric: str = "l2", use_cdist: bool = False,
                 chunk_size: int = 65536, query_batch: int = 1024,
                 device: str | torch.device | None = None) -> None:  # fmt: skip
        super().__init__(chunk_size=chunk_size, query_batch=query_batch)
        self.metric = _check_metric(metric)
        self.use_cdist = bool(use_cdist)
        x = vectors if isinstance(vectors, torch.Tensor) else torch.from_numpy(np.asarray(vectors))
        if x.ndim != 2 or not x.is_floating_point():
            raise ValueError(
                f"database vectors: expected (N, D) float, got {x.dtype} {tuple(x.shape)}"
            )
        self.device = torch.device(device) if device is not None else x.device
        x = x.to(self.device, torch.float32)
        _check_finite(x, "database vectors")
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        self.dim = x.shape[1]
        self.ntotal = x.shape[0]
        self._x = x
        self._sqnorm = (x * x).sum(1) if self.metric == "l2" else None

    def _prepare_queries(self, queries: ArrayLike) -> torch.Tensor:
        q = queries if isinstance(queries, torch.Tensor) else torch.from_numpy(np.asarray(queries))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"query vectors: dimension mismatch, expected (nq, {self.dim}), got {tuple(q.shape)}"
            )
        q = q.to(self.device, torch.float32)
        _check_finite(q, "query vectors")
        return torch.nn.functional.normalize(q, dim=1) if self.metric == "cosine" else q

    @staticmethod
    def _mm_t(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``q @ x.T``; on CPU through numpy's BLAS (faster than torch's GEMM on this CPU)."""
        if q.device.type == "cpu" and not (q.requires_grad or x.requires_grad):
            return torch.from_numpy(q.numpy() @ x.numpy().T)
        return q @ x.T

    def _block_key(self, q: torch.Tensor, s: int) -> torch.Tensor:
        x = self._x[s : s + self.chunk_size]
        if self.metric == "l2":
            if self.use_cdist:
                return torch.cdist(q, x).square_()
            d = self._mm_t(q, x)
            d.mul_(-2).add_(self._sqnorm[s : s + self.chunk_size][None, :])
            return d.add_((q * q).sum(1, keepdim=True)).clamp_(min=0)
        return self._mm_t(q, x).neg_()

    def _search_batch(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if q.device.type == "cpu" and not (
            self.use_cdist or q.requires_grad or self._x.requires_grad
        ):
            return self._search_batch_cpu(q, k)
        d_run = i_run = None
        for s in range(0, self.ntotal, self.chunk_size):
            d, i = tk.torch_topk_float(self._block_key(q, s), k, offset=s)
            d_run, i_run = tk.torch_merge(d_run, i_run, d, i, k)
        return (d_run.neg() if self.largest else d_run), i_run

    #: database rows per GEMM block on CPU (the block's keys are selected while in cache)
    cpu_block = 4096

    def _search_batch_cpu(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One BLAS GEMM per database block + a fused numba key/top-k pass (``_float_numba``)."""
        from geoemb.retrieval._float_numba import topk_update  # numba, cached on first use

        qn, x = q.numpy(), self._x.numpy()
        l2 = self.metric == "l2"
        qsq = (q * q).sum(1).numpy() if l2 else np.zeros(len(qn), np.float32)
        xsq = self._sqnorm.numpy() if l2 else np.zeros(0, np.float32)
        out_d = np.full((len(qn), k), np.inf, np.float32)
        out_i = np.full((len(qn), k), -1, np.int64)
        step = max(1, min(self.chunk_size, self.cpu_block))
        for s in range(0, self.ntotal, step):
            g = qn @ x[s : s + step].T
            topk_update(g, xsq[s : s + step] if l2 else xsq, qsq, l2, s, out_d, out_i)
        if self.largest:
            np.negative(out_d, out=out_d)
        return torch.from_numpy(out_d), torch.from_numpy(out_i)


class FloatFaissIndex(SearchIndex):
    """FAISS ``IndexFlatL2`` / ``IndexFlatIP`` (cosine: normalised + IP)."""

    name = "float_faiss"

    def __init__(self, vectors: ArrayLike, metric: str = "l2", query_batch: int = 4096,
                 chunk_size: int = 1 << 30) -> None:  # fmt: skip
        import faiss

        super().__init__(chunk_size=chunk_size, query_batch=query_batch)
        self.metric = _check_metric(metric)
        x = np.ascontiguousarray(_to_numpy(vectors), dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"database vectors: expected (N, D) float, got shape {x.shape}")
        if self.metric == "cosine":
            x = np.ascontiguousarray(_l2_normalize_np(x), dtype=np.float32)
        self.dim = x.shape[1]
        self.ntotal = len(x)
        self._index = (faiss.IndexFlatL2 if self.metric == "l2" else faiss.IndexFlatIP)(self.dim)
        self._index.add(x)

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        q = np.ascontiguousarray(_to_numpy(queries), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"query vectors: dimension mismatch, expected (nq, {self.dim}), got {q.shape}"
            )
        return (
            np.ascontiguousarray(_l2_normalize_np(q), np.float32) if self.metric == "cosine" else q
        )

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = self._index.search(q, k)
        key = -d if self.largest else d
        order = np.lexsort((i, key), axis=1)
        return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


class DequantizedIndex(FloatTorchIndex):
    """Decode compressed codes with a fitted ``geoemb.compression`` Compressor, then exact float search.

    Parameters
    ----------
    codes:
        ``(N, ...)`` codes as produced by ``compressor.encode``.
    compressor:
        Fitted object with ``decode(codes) -> (N, D) float32``.
    decode_batch:
        Rows decoded at a time while building (bounds peak memory of the decoder).
    """

    name = "dequantized"

    def __init__(self, codes: np.ndarray, compressor: Any, metric: str = "l2",
                 decode_batch: int = 65536, **kw: Any) -> None:  # fmt: skip
        if not hasattr(compressor, "decode"):
            raise TypeError("dequantized: `compressor` must have a decode(codes) method")
        parts = [
            np.asarray(compressor.decode(codes[s : s + decode_batch]), dtype=np.float32)
            for s in range(0, len(codes), decode_batch)
        ]
        self.compressor = compressor
        super().__init__(np.concatenate(parts) if parts else np.zeros((0, 1), np.float32),
                         metric=metric, **kw)  # fmt: skip


def sign_encoder(threshold: float | np.ndarray = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``x -> pack_bits(x > threshold)`` (TerraBit's binary quantizer for threshold 0)."""

    def encode(x: np.ndarray) -> np.ndarray:
        return pack_bits(np.asarray(x) > threshold)

    return encode


class BinaryRerankIndex(SearchIndex):
    """Hamming shortlist of ``k·m`` candidates, then exact rerank with float or dequantized vectors.

    Parameters
    ----------
    codes:
        ``(N, B)`` packed binary database codes.
    dim:
        Number of code bits.
    rerank_vectors:
        ``(N, D)`` float vectors **or** codes decodable by ``rerank_compressor`` (e.g. int8 codes).
    metric:
        Rerank metric (``l2``, ``ip`` or ``cosine``).
    m:
        Shortlist multiplier: ``k·m`` Hamming candidates are reranked.
    query_encoder:
        Float queries ``(nq, D)`` → packed codes; default sign (``x > 0``) binary.
    hamming_backend:
        Name of the Hamming backend used for the shortlist.
    """

    name = "binary_rerank"

    def __init__(self, codes: np.ndarray, rerank_vectors: np.ndarray, dim: int | None = None,
                 metric: str = "cosine", m: int = 10, rerank_compressor: Any | None = None,
                 query_encoder: Callable[[np.ndarray], np.ndarray] | None = None,
                 hamming_backend: str | None = None, query_batch: int = 32,
                 **backend_kw: Any) -> None:  # fmt: skip
        # small query batches keep the gathered (batch, k*m, D) candidates cache-sized
        super().__init__(chunk_size=1 << 30, query_batch=query_batch)
        self.metric = _check_metric(metric)
        if m < 1:
            raise ValueError(f"binary_rerank: m must be >= 1, got {m}")
        self.m = int(m)
        hb = hamming_backend or default_hamming_backend()
        self.shortlist = build_index(hb, codes, dim=dim, **backend_kw)
        self.ntotal = self.shortlist.ntotal
        self.rerank_vectors = rerank_vectors
        self.rerank_compressor = rerank_compressor
        if len(rerank_vectors) != self.ntotal:
            raise ValueError(
                f"binary_rerank: {len(rerank_vectors)} rerank vectors for {self.ntotal} codes"
            )
        self.query_encoder = query_encoder or sign_encoder(0.0)

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        q = np.asarray(_to_numpy(queries), dtype=np.float32)
        if q.ndim != 2:
            raise ValueError(f"binary_rerank queries: expected (nq, D) float, got shape {q.shape}")
        return q

    def _gather(self, ids: np.ndarray) -> np.ndarray:
        flat = ids.reshape(-1)
        v = self.rerank_vectors[flat]
        if self.rerank_compressor is not None:
            v = self.rerank_compressor.decode(v)
        v = np.asarray(v, dtype=np.float32)
        return v.reshape(ids.shape[0], ids.shape[1], -1)

    def _inv_norms(self, cand: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``1 / ||v||`` of the candidates: precomputed once for float rerank vectors."""
        if self.rerank_compressor is None:
            if getattr(self, "_inv_norm_cache", None) is None:
                vecs = np.asarray(self.rerank_vectors, dtype=np.float32)
                self._inv_norm_cache = 1.0 / np.maximum(np.linalg.norm(vecs, axis=1), 1e-12)
            return self._inv_norm_cache[cand]
        return 1.0 / np.maximum(np.linalg.norm(v, axis=2), 1e-12)

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        codes = self.query_encoder(q)
        _, cand = self.shortlist.search(codes, min(self.ntotal, k * self.m))
        v = self._gather(cand)
        if v.shape[2] != q.shape[1]:
            raise ValueError(
                f"binary_rerank: dimension mismatch, queries have D={q.shape[1]}, rerank vectors "
                f"D={v.shape[2]}"
            )
        if self.metric == "l2":
            key = ((v - q[:, None, :]) ** 2).sum(-1)
        else:
            qq = _l2_normalize_np(q) if self.metric == "cosine" else q
            # (q, c, D) @ (q, D, 1): batched BLAS instead of a (q, c, D) normalised copy + einsum
            key = -np.matmul(v, qq[:, :, None])[..., 0]
            if self.metric == "cosine":
                key *= self._inv_norms(cand, v)
        order = np.lexsort((cand, key), axis=1)[:, :k]
        d = np.take_along_axis(key, order, 1)
        return (-d if self.largest else d), np.take_along_axis(cand, order, 1)


# --------------------------------------------------------------------------- registry


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401  (optional dependency: probed, not used here)
    except ImportError:
        return False
    return True


def default_hamming_backend() -> str:
    """Fastest CPU Hamming backend available (numba kernel, else numpy)."""
    return "hamming_numba" if _numba_available() else "hamming_numpy"


#: Every search backend: ``meta(kind=…)`` says what it searches (packed ``hamming`` codes,
#: ``float`` vectors, ``dequantized`` compressor codes, ``rerank``: codes + rerank vectors);
#: ``device=True`` backends take a ``device=`` argument; ``metric`` fixes the metric (cdist: l2).
BACKENDS = Registry("search backend")
BACKENDS.add("hamming_numpy", HammingNumpyIndex, kind="hamming", device=False, exact=True,
             description="XOR + np.bitwise_count on uint64 words (numpy)")  # fmt: skip
BACKENDS.add("hamming_torch", HammingTorchIndex, kind="hamming", device=True, exact=True,
             description="XOR + SWAR popcount on int64 words (torch, CPU/GPU)")  # fmt: skip
BACKENDS.add("hamming_gemm", HammingGemmIndex, kind="hamming", device=True, exact=True,
             description="±1 GEMM, H = (L - s·t)/2 (exact; for GPUs)")  # fmt: skip
BACKENDS.add("hamming_numba", HammingNumbaIndex, kind="hamming", device=False, exact=True,
             description="fused blocked popcount scan with running top-k (numba, CPU)")  # fmt: skip
BACKENDS.add("hamming_faiss", HammingFaissIndex, kind="hamming", device=False, exact=True,
             description="FAISS IndexBinaryFlat")  # fmt: skip
BACKENDS.add("float_torch", FloatTorchIndex, kind="float", device=True, exact=True,
             description="exact float search, GEMM + top-k (l2 / ip / cosine; CPU: BLAS blocks "
                         "+ fused numba top-k, ~FAISS IndexFlat speed; GPU: torch)")  # fmt: skip
BACKENDS.add("float_cdist", lambda data, **kw: FloatTorchIndex(data, use_cdist=True, **kw),
             kind="float", device=True, exact=True, metric="l2",
             description="exact float search with torch.cdist (l2)")  # fmt: skip
BACKENDS.add("float_faiss", FloatFaissIndex, kind="float", device=False, exact=True,
             description="FAISS IndexFlatL2 / IndexFlatIP")  # fmt: skip
BACKENDS.add("dequantized", DequantizedIndex, kind="dequantized", device=True, exact=True,
             description="decode geoemb.compression codes, then exact float search")  # fmt: skip
BACKENDS.add("binary_rerank", BinaryRerankIndex, kind="rerank", device=False,
             description="Hamming shortlist of k·m, exact rerank (float or int8 vectors)")  # fmt: skip
BACKENDS.add("binary_ivf", BinaryIVFIndex, kind="hamming", device=False, exact=False,
             description="ANN: FAISS IndexBinaryIVF (k-means cells on a sample; nprobe)")  # fmt: skip
BACKENDS.add("binary_hnsw", BinaryHNSWIndex, kind="hamming", device=False, exact=False,
             description="ANN: FAISS IndexBinaryHNSW (graph; ef_search)")  # fmt: skip
BACKENDS.add("float_ivfpq", FloatIVFPQIndex, kind="float", device=False, exact=False,
             description="ANN: FAISS IndexIVFPQ (l2 / ip / cosine; nlist, m, nbits, nprobe)")  # fmt: skip
#: The exact Hamming backends (every one returns the same rows).
HAMMING_BACKENDS = BACKENDS.names(kind="hamming", exact=True)
#: The approximate (ANN) backends (persistable: :func:`geoemb.retrieval.ann.load_ann`).
ANN_BACKENDS = list(ANN_CLASSES)


def build_index(name: str, data: Any, **kw: Any) -> SearchIndex:
    """Build a search index by registry name (:data:`BACKENDS`).

    Raises
    ------
    UnknownNameError
        ``name`` is not a backend (a ``ValueError``; the message lists the valid names).
    """
    return BACKENDS.get(name).builder(data, **kw)
