"""Exact Hamming search backends on packed codes (``hamming_numpy``, ``hamming_torch``,
``hamming_gemm``, ``hamming_numba``, ``hamming_faiss``); registered in
:data:`geoemb.retrieval.search.BACKENDS`.

Every backend returns rows sorted by (distance, id) and walks the database in chunks with a
running top-k merge (see :mod:`geoemb.retrieval.search` for the contract).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

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
from geoemb.retrieval.index import ArrayLike, SearchIndex, _to_numpy

__all__ = [
    "FP16_EXACT_BITS",
    "HammingFaissIndex",
    "HammingGemmIndex",
    "HammingNumbaIndex",
    "HammingNumpyIndex",
    "HammingTorchIndex",
    "gemm_dtype",
]


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
