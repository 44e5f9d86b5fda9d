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

Registry: :data:`BACKENDS` / :func:`build_index`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from geoemb.compression.bitpack import pack_bits
from geoemb.retrieval import topk as tk
from geoemb.retrieval.hamming import (
    check_codes,
    hamming_numpy,
    hamming_torch_gemm,
    hamming_torch_swar,
    to_words,
    unpack_pm1,
    words_to_torch,
)

ArrayLike = np.ndarray | torch.Tensor
FLOAT_METRICS = ("l2", "ip", "cosine")


def _to_numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_metric(metric: str) -> str:
    if metric not in FLOAT_METRICS:
        raise ValueError(f"metric must be one of {FLOAT_METRICS}, got {metric!r}")
    return metric


def _l2_normalize_np(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class SearchIndex(abc.ABC):
    """Base class: query batching, output typing and the public ``search`` contract."""

    name: str = "base"
    metric: str = "hamming"

    def __init__(self, chunk_size: int = 65536, query_batch: int = 1024) -> None:
        if chunk_size < 1 or query_batch < 1:
            raise ValueError("chunk_size and query_batch must be >= 1")
        self.chunk_size = int(chunk_size)
        self.query_batch = int(query_batch)
        self.ntotal = 0

    @property
    def largest(self) -> bool:
        """True when distances are similarities (sorted descending)."""
        return self.metric in ("ip", "cosine")

    def search(self, queries: ArrayLike, k: int) -> tuple[ArrayLike, ArrayLike]:
        """Exact k-NN search.

        Parameters
        ----------
        queries:
            ``(nq, B)`` uint8 packed codes for Hamming backends, ``(nq, D)`` float for float ones.
        k:
            Number of neighbours (``min(k, n)`` columns are returned).

        Returns
        -------
        distances, ids:
            ``(nq, min(k, n))`` each; ids int64, sorted by distance then id.
        """
        k = _check_k(k)
        as_torch = isinstance(queries, torch.Tensor)
        q = self._prepare_queries(queries)
        nq = len(q)
        kk = min(k, self.ntotal)
        if nq == 0 or kk == 0:
            d = np.zeros((nq, kk), dtype=np.float32 if self.metric != "hamming" else np.int64)
            i = np.zeros((nq, kk), dtype=np.int64)
            return (torch.from_numpy(d), torch.from_numpy(i)) if as_torch else (d, i)
        ds, is_ = [], []
        for s in range(0, nq, self.query_batch):
            d, i = self._search_batch(q[s : s + self.query_batch], kk)
            ds.append(d)
            is_.append(i)
        if isinstance(ds[0], torch.Tensor):
            d, i = torch.cat(ds), torch.cat(is_)
            return (d, i) if as_torch else (d.cpu().numpy(), i.cpu().numpy())
        d, i = np.concatenate(ds), np.concatenate(is_)
        return (torch.from_numpy(d), torch.from_numpy(i)) if as_torch else (d, i)

    @abc.abstractmethod
    def _prepare_queries(self, queries: ArrayLike) -> Any: ...

    @abc.abstractmethod
    def _search_batch(self, q: Any, k: int) -> tuple[ArrayLike, ArrayLike]: ...


# --------------------------------------------------------------------------- Hamming backends


class _HammingBase(SearchIndex):
    metric = "hamming"

    def __init__(self, codes: ArrayLike, dim: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        codes_np = check_codes(_to_numpy(codes), name="database codes")
        self.nbytes = codes_np.shape[1]
        self.dim = int(dim) if dim is not None else self.nbytes * 8
        if (self.dim + 7) // 8 != self.nbytes:
            raise ValueError(
                f"dim={self.dim} bits needs {(self.dim + 7) // 8} bytes per code, "
                f"database codes have {self.nbytes}"
            )
        self.ntotal = len(codes_np)
        self._build(codes_np, codes)

    @abc.abstractmethod
    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None: ...

    def _query_codes(self, queries: ArrayLike) -> np.ndarray:
        return check_codes(_to_numpy(queries), self.nbytes, name="query codes")


class HammingNumpyIndex(_HammingBase):
    """XOR + ``np.bitwise_count`` on uint64 words, chunked, single-threaded numpy."""

    name = "hamming_numpy"

    def __init__(self, codes: ArrayLike, dim: int | None = None, chunk_size: int = 8192,
                 query_batch: int = 256) -> None:  # fmt: skip
        super().__init__(codes, dim, chunk_size=chunk_size, query_batch=query_batch)

    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None:
        words = to_words(codes_np)
        self._chunks = [
            np.ascontiguousarray(words[s : s + self.chunk_size].T)
            for s in range(0, self.ntotal, self.chunk_size)
        ]

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        return to_words(self._query_codes(queries))

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d_run = i_run = None
        for c, chunk in enumerate(self._chunks):
            dist = hamming_numpy(q, chunk)
            d, i = tk.np_topk_int(dist, k, offset=c * self.chunk_size)
            d_run, i_run = tk.np_merge(d_run, i_run, d, i, k)
        return d_run, i_run


class HammingTorchIndex(_HammingBase):
    """XOR + SWAR popcount on int64 words in torch (CPU or GPU), chunked."""

    name = "hamming_torch"

    def __init__(self, codes: ArrayLike, dim: int | None = None, chunk_size: int = 4096,
                 query_batch: int = 128, device: str | torch.device | None = None) -> None:  # fmt: skip
        self.device = torch.device(device) if device is not None else (
            codes.device if isinstance(codes, torch.Tensor) else torch.device("cpu")
        )  # fmt: skip
        super().__init__(codes, dim, chunk_size=chunk_size, query_batch=query_batch)

    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None:
        words = words_to_torch(to_words(codes_np), self.device)
        self._chunks = [
            words[s : s + self.chunk_size].T.contiguous()
            for s in range(0, self.ntotal, self.chunk_size)
        ]

    def _prepare_queries(self, queries: ArrayLike) -> torch.Tensor:
        return words_to_torch(to_words(self._query_codes(queries)), self.device)

    def _search_batch(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        d_run = i_run = None
        for c, chunk in enumerate(self._chunks):
            d, i = tk.torch_topk_int(hamming_torch_swar(q, chunk), k, offset=c * self.chunk_size)
            d_run, i_run = tk.torch_merge(d_run, i_run, d, i, k)
        return d_run, i_run


#: Largest code length whose ±1 dot products (|s·t| <= L) are all exact integers in fp16.
FP16_EXACT_BITS = 2048


def gemm_dtype(device: str | torch.device, dim: int) -> torch.dtype:
    """GEMM dtype :class:`HammingGemmIndex` picks: fp16 on CUDA up to 2048 bits, else fp32."""
    cuda = torch.device(device).type == "cuda"
    return torch.float16 if cuda and dim <= FP16_EXACT_BITS else torch.float32


class HammingGemmIndex(_HammingBase):
    """Unpack to ±1 and use ``H = (L - s·t)/2`` (fp16 on CUDA up to 2048 bits, else fp32), chunked.

    ``cache_unpacked=True`` keeps the unpacked database (``L`` × 2 or 4 bytes per row) resident;
    the default unpacks chunk by chunk (memory bounded) except on CUDA. ``dtype`` overrides
    :func:`gemm_dtype` (fp16 is refused above 2048 bits, where it is no longer exact); database
    and queries always share one dtype.
    """

    name = "hamming_gemm"

    def __init__(self, codes: ArrayLike, dim: int | None = None, chunk_size: int = 65536,
                 query_batch: int = 1024, device: str | torch.device | None = None,
                 cache_unpacked: bool | None = None, dtype: torch.dtype | None = None) -> None:  # fmt: skip
        self.device = torch.device(device) if device is not None else (
            codes.device if isinstance(codes, torch.Tensor) else torch.device("cpu")
        )  # fmt: skip
        self._dtype_arg = dtype
        self.cache_unpacked = (
            self.device.type == "cuda" if cache_unpacked is None else cache_unpacked
        )
        super().__init__(codes, dim, chunk_size=chunk_size, query_batch=query_batch)

    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None:
        # the dtype is fixed here, once self.dim is known, before anything is unpacked with it
        dt = self._dtype_arg
        self.dtype = gemm_dtype(self.device, self.dim) if dt is None else dt
        exact_bits = {torch.float16: FP16_EXACT_BITS, torch.bfloat16: 256,
                      torch.float32: 1 << 24, torch.float64: 1 << 53}  # fmt: skip
        if self.dtype not in exact_bits:
            raise ValueError(f"hamming_gemm: dtype must be a float dtype, got {self.dtype}")
        if self.dim > exact_bits[self.dtype]:
            raise ValueError(
                f"hamming_gemm: {self.dtype} is not exact for {self.dim}-bit codes; use float32"
            )
        packed = torch.from_numpy(codes_np).to(self.device)
        self._chunks = [
            packed[s : s + self.chunk_size] for s in range(0, self.ntotal, self.chunk_size)
        ]
        if self.cache_unpacked:
            self._chunks = [unpack_pm1(c, self.dim, self.dtype) for c in self._chunks]

    def _prepare_queries(self, queries: ArrayLike) -> torch.Tensor:
        q = torch.from_numpy(self._query_codes(queries)).to(self.device)
        return unpack_pm1(q, self.dim, self.dtype)

    def _search_batch(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        d_run = i_run = None
        for c, chunk in enumerate(self._chunks):
            pm1 = chunk if self.cache_unpacked else unpack_pm1(chunk, self.dim, self.dtype)
            d, i = tk.torch_topk_int(hamming_torch_gemm(q, pm1), k, offset=c * self.chunk_size)
            d_run, i_run = tk.torch_merge(d_run, i_run, d, i, k)
        return d_run, i_run


class HammingNumbaIndex(_HammingBase):
    """Fused blocked popcount scan with running top-k (numba, multi-threaded). geoemb's CPU kernel."""

    name = "hamming_numba"

    def __init__(self, codes: ArrayLike, dim: int | None = None, chunk_size: int = 1 << 30,
                 query_batch: int = 4096, block: int = 2048) -> None:  # fmt: skip
        try:
            import numba

            from geoemb.retrieval import _numba
        except ImportError as e:  # pragma: no cover - depends on environment
            raise ImportError(
                "backend 'hamming_numba' needs numba (pip install numba); "
                "use 'hamming_numpy' or 'hamming_torch' instead"
            ) from e
        self._kernel = _numba.hamming_topk_update
        self._numba = numba
        self.block = int(block)
        super().__init__(codes, dim, chunk_size=chunk_size, query_batch=query_batch)

    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None:
        self._words = np.ascontiguousarray(to_words(codes_np))

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        return np.ascontiguousarray(to_words(self._query_codes(queries)))

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_d = np.full((len(q), k), np.iinfo(np.int64).max, dtype=np.int64)
        out_i = np.full((len(q), k), -1, dtype=np.int64)
        nthreads = max(1, min(self._numba.get_num_threads(), len(q)))
        for s in range(0, self.ntotal, self.chunk_size):
            self._kernel(
                q, self._words[s : s + self.chunk_size], s, self.block, nthreads, out_d, out_i
            )
        return out_d, out_i


class HammingFaissIndex(_HammingBase):
    """FAISS ``IndexBinaryFlat`` over the padded byte codes (rows re-sorted by (distance, id))."""

    name = "hamming_faiss"

    def _build(self, codes_np: np.ndarray, codes: ArrayLike) -> None:
        import faiss

        self._index = faiss.IndexBinaryFlat(self.nbytes * 8)
        self._index.add(codes_np)

    def _prepare_queries(self, queries: ArrayLike) -> np.ndarray:
        return self._query_codes(queries)

    def _search_batch(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = self._index.search(q, k)
        order = np.lexsort((i, d), axis=1)
        return (np.take_along_axis(d, order, 1).astype(np.int64), np.take_along_axis(i, order, 1))


# --------------------------------------------------------------------------- float backends


class FloatTorchIndex(SearchIndex):
    """Exact float search with torch (``matmul`` or ``torch.cdist``) on the database's device."""

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
        d_run = i_run = None
        for s in range(0, self.ntotal, self.chunk_size):
            d, i = tk.torch_topk_float(self._block_key(q, s), k, offset=s)
            d_run, i_run = tk.torch_merge(d_run, i_run, d, i, k)
        return (d_run.neg() if self.largest else d_run), i_run


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
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def default_hamming_backend() -> str:
    """Fastest CPU Hamming backend available (numba kernel, else numpy)."""
    return "hamming_numba" if _numba_available() else "hamming_numpy"


BACKENDS: dict[str, type[SearchIndex]] = {
    "hamming_numpy": HammingNumpyIndex,
    "hamming_torch": HammingTorchIndex,
    "hamming_gemm": HammingGemmIndex,
    "hamming_numba": HammingNumbaIndex,
    "hamming_faiss": HammingFaissIndex,
    "float_torch": FloatTorchIndex,
    "float_faiss": FloatFaissIndex,
    "dequantized": DequantizedIndex,
    "binary_rerank": BinaryRerankIndex,
}
HAMMING_BACKENDS = [n for n in BACKENDS if n.startswith("hamming_")]


def build_index(name: str, data: Any, **kw: Any) -> SearchIndex:
    """Build a search index by registry name.

    ``float_cdist`` is an alias for ``float_torch`` with ``use_cdist=True``.
    """
    if name == "float_cdist":
        return FloatTorchIndex(data, use_cdist=True, **kw)
    if name not in BACKENDS:
        raise ValueError(
            f"unknown search backend {name!r}; known: {sorted([*BACKENDS, 'float_cdist'])}"
        )
    return BACKENDS[name](data, **kw)
