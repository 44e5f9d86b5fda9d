"""Deterministic top-k selection and running merges (ties broken by smaller id), numpy and torch.

Conventions: ``key`` is "smaller is better" (Hamming or squared L2; negated inner products), rows
are queries and columns are database rows ``offset + j``. Results are sorted by ``(key, id)``.
"""

from __future__ import annotations

import numpy as np
import torch

# --------------------------------------------------------------------------- numpy


def np_topk_int(d: np.ndarray, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(key, id)`` top-k of a non-negative integer block ``(nq, n)`` via a composite key."""
    nq, n = d.shape
    k = min(k, n)
    key = d.astype(np.int64) * n + np.arange(n, dtype=np.int64)[None, :]
    if k < n:
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
        kk = np.take_along_axis(key, part, 1)
    else:
        kk = key
    kk.sort(axis=1)
    return kk // n, kk % n + offset


def np_topk_float(key: np.ndarray, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(key, id)`` top-k of a float block ``(nq, n)`` (ties at the k-th value → smaller ids)."""
    nq, n = key.shape
    k = min(k, n)
    if k < n:
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(key, part, 1).max(axis=1)
        counts = (key <= kth[:, None]).sum(axis=1)
        for r in np.nonzero(counts > k)[0]:
            cand = np.nonzero(key[r] <= kth[r])[0]
            part[r] = cand[np.argsort(key[r, cand], kind="stable")[:k]]
    else:
        part = np.broadcast_to(np.arange(n), (nq, n)).copy()
    vals = np.take_along_axis(key, part, 1)
    order = np.lexsort((part, vals), axis=1)
    return np.take_along_axis(vals, order, 1), np.take_along_axis(part, order, 1) + offset


def np_merge(
    d1: np.ndarray | None, i1: np.ndarray | None, d2: np.ndarray, i2: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted candidate lists per row into the ``(key, id)`` top-k."""
    if d1 is None:
        return d2, i2
    d = np.concatenate([d1, d2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


# --------------------------------------------------------------------------- torch


def torch_topk_int(d: torch.Tensor, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``(key, id)`` top-k of a non-negative integer block via a composite int64 key."""
    nq, n = d.shape
    k = min(k, n)
    key = d.to(torch.int64) * n + torch.arange(n, device=d.device, dtype=torch.int64)
    kk = torch.topk(key, k, dim=1, largest=False, sorted=True).values
    return kk // n, kk % n + offset


def torch_topk_float(
    key: torch.Tensor, k: int, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``(key, id)`` top-k of a float block (ties at the k-th value → smaller ids)."""
    nq, n = key.shape
    k = min(k, n)
    # one extra element tells whether a tie crosses the k boundary (then ids must decide), which
    # avoids a full pass over the block counting elements <= the k-th value
    k1 = min(k + 1, n)
    vals, idx = torch.topk(key, k1, dim=1, largest=False, sorted=True)
    if k1 > k:
        bad = torch.nonzero(vals[:, k] <= vals[:, k - 1]).flatten().tolist()
        vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    else:
        bad = []
    kth = vals[:, -1:]
    for r in bad:
        cand = torch.nonzero(key[r] <= kth[r, 0]).flatten()
        order = torch.sort(key[r, cand], stable=True).indices[:k]
        idx[r] = cand[order]
        vals[r] = key[r, idx[r]]
    return torch_sort_pairs(vals, idx + offset)


def torch_sort_pairs(d: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by ``(d, i)`` lexicographically."""
    i_sorted, perm = torch.sort(i, dim=1)
    d_sorted = torch.gather(d, 1, perm)
    d_final, perm2 = torch.sort(d_sorted, dim=1, stable=True)
    return d_final, torch.gather(i_sorted, 1, perm2)


def torch_merge(
    d1: torch.Tensor | None, i1: torch.Tensor | None, d2: torch.Tensor, i2: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two candidate lists per row into the ``(key, id)`` top-k."""
    if d1 is None:
        return d2, i2
    d, i = torch_sort_pairs(torch.cat([d1, d2], 1), torch.cat([i1, i2], 1))
    return d[:, :k], i[:, :k]
