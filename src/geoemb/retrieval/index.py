"""The search-index interface every backend implements (see :mod:`geoemb.retrieval.search`)."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

__all__ = ["FLOAT_METRICS", "ArrayLike", "SearchIndex"]

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
