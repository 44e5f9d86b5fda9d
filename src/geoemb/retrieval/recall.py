"""recall@k against exact float32 ground truth (query excluded), tie-aware recall.

Definitions
-----------
- ``recall@k = (1 / (nq·k)) Σ_q |GT_k(q) ∩ Pred_k(q)|`` (equals
  ``faiss.eval_intersection(I_gt[:, :k], I[:, :k]) / (nq·k)``).
- tie-aware recall (ann-benchmarks style): a returned item counts as correct if its *true* distance
  is within ``eps`` of the k-th true distance (``<=`` for L2, ``>=`` for similarities).
- Queries drawn from the corpus are excluded from both GT and predictions by id (``query_ids``), so
  recall@1 is not inflated by self-matches.
"""

from __future__ import annotations

import numpy as np
import torch

from geoemb.retrieval.search import FloatTorchIndex, SearchIndex


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def drop_ids(
    distances: np.ndarray, ids: np.ndarray, exclude: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove ``exclude[q]`` from row ``q`` of a ``(nq, k+1)`` result and keep the first ``k``.

    Rows that do not contain the excluded id simply keep their first ``k`` entries.
    """
    distances, ids = _np(distances), _np(ids)
    if exclude is None:
        return distances[:, :k], ids[:, :k]
    exclude = np.asarray(exclude).reshape(-1, 1)
    keep = ids != exclude
    # stable: position among kept entries
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)


def search_excluding(
    index: SearchIndex, queries, k: int, query_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` returning ``k`` neighbours with each query's own id removed."""
    extra = 0 if query_ids is None else 1
    d, i = index.search(queries, k + extra)
    return drop_ids(d, i, query_ids, k)


def exact_knn(
    database: np.ndarray | torch.Tensor,
    queries: np.ndarray | torch.Tensor,
    k: int,
    metric: str = "l2",
    query_ids: np.ndarray | None = None,
    chunk_size: int = 65536,
    query_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 ground truth ``(distances, ids)`` of shape ``(nq, k)`` (self excluded).

    Uses :class:`FloatTorchIndex` on the device of ``database``.
    """
    index = FloatTorchIndex(database, metric=metric, chunk_size=chunk_size, query_batch=query_batch)
    return search_excluding(index, queries, k, query_ids)


def recall_at_k(gt_ids: np.ndarray, pred_ids: np.ndarray, k: int) -> float:
    """``(1/(nq·k)) Σ_q |GT_k(q) ∩ Pred_k(q)|``; ids ``< 0`` (padding) never match."""
    gt, pred = _np(gt_ids)[:, :k], _np(pred_ids)[:, :k]
    if gt.shape[0] != pred.shape[0]:
        raise ValueError(f"recall_at_k: {gt.shape[0]} GT rows vs {pred.shape[0]} predicted rows")
    if gt.shape[1] < k:
        raise ValueError(f"recall_at_k: ground truth has {gt.shape[1]} columns, need k={k}")
    hits = 0
    for g, p in zip(gt, pred):
        hits += len(np.intersect1d(g[g >= 0], p[p >= 0]))
    return hits / (gt.shape[0] * k)


def true_distances(
    database: np.ndarray, queries: np.ndarray, ids: np.ndarray, metric: str = "l2"
) -> np.ndarray:
    """Exact float distances (sq. L2) or similarities (ip/cosine) of the given ``(nq, k)`` ids."""
    x = np.asarray(database, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    ids = _np(ids)
    v = x[np.clip(ids, 0, None)]  # (nq, k, D)
    if metric == "l2":
        d = ((v - q[:, None, :]) ** 2).sum(-1)
    elif metric in ("ip", "cosine"):
        if metric == "cosine":
            v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        d = np.einsum("qkd,qd->qk", v, q)
    else:
        raise ValueError(f"metric must be l2, ip or cosine, got {metric!r}")
    return np.where(ids >= 0, d, np.nan)


def tie_aware_recall(
    gt_distances: np.ndarray,
    pred_ids: np.ndarray,
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str = "l2",
    eps: float = 1e-3,
) -> float:
    """Fraction of returned items whose true distance is within ``eps`` of the true k-th distance."""
    gt_d = _np(gt_distances)[:, :k]
    pred = _np(pred_ids)[:, :k]
    d = true_distances(database, queries, pred, metric)
    kth = gt_d[:, k - 1 : k]
    ok = d >= kth - eps if metric in ("ip", "cosine") else d <= kth + eps
    return float(np.nan_to_num(ok.astype(float), nan=0.0).sum() / (pred.shape[0] * k))
