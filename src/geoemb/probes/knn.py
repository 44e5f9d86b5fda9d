"""Cosine kNN probe with sklearn's brute-force semantics (see :mod:`geoemb.probes`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from geoemb.probes._inputs import _check_same_width, _features, _labels

__all__ = ["knn_classify"]


def _np_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalise like ``sklearn.preprocessing.normalize`` (zero rows stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, np.newaxis]


def _normalize_rows(x: Tensor) -> Tensor:
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norm == 0, torch.ones_like(norm), norm)


def knn_classify(
    x_train,
    y_train,
    x_test,
    k: int = 5,
    batch_size: int = 4096,
    backend: str = "auto",
) -> Tensor:
    """Cosine kNN classification with uniform votes (sklearn brute-force semantics).

    Parameters
    ----------
    x_train : (N_train, F) array/tensor
    y_train : (N_train,) integer labels
    x_test : (N_test, F)
    k : int
        Number of neighbours.
    batch_size : int
        Test rows per similarity block (memory ~ batch_size * N_train).
    backend : {"auto", "numpy", "torch"}
        ``auto``: numpy distances (bit-identical to sklearn) on CPU, torch elsewhere.

    Returns
    -------
    LongTensor (N_test,) predicted labels, on x_train's device.
    """
    xtr = _features(x_train, "x_train")
    dev = xtr.device
    xte = _features(x_test, "x_test", dev).to(xtr.dtype)
    _check_same_width(xtr, xte)
    ytr = _labels(y_train, "y_train", xtr.shape[0], dev)
    if not 1 <= k <= xtr.shape[0]:
        raise ValueError(f"knn_classify: k must be in [1, N_train={xtr.shape[0]}], got {k}")
    classes, y_enc = torch.unique(ytr, sorted=True, return_inverse=True)
    n_cls = classes.numel()
    # non-finite features -> 0, as the reference's sanitize_features
    xtr = torch.nan_to_num(xtr, nan=0.0, posinf=0.0, neginf=0.0)
    xte = torch.nan_to_num(xte, nan=0.0, posinf=0.0, neginf=0.0)
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"knn_classify: backend must be auto|numpy|torch, got {backend!r}")
    if backend == "numpy" and dev.type != "cpu":
        raise ValueError("knn_classify: backend='numpy' needs CPU tensors")
    on_cpu = dev.type == "cpu" and backend != "torch"
    tr_n = _np_normalize(xtr.numpy()) if on_cpu else _normalize_rows(xtr)
    preds = []
    for s in range(0, xte.shape[0], batch_size):
        if on_cpu:
            # the same float32/float64 numpy operations as sklearn's cosine_distances, so that
            # distances (and hence exact ties) are bit-identical to the anchor's
            dn = _np_normalize(xte[s : s + batch_size].numpy()) @ tr_n.T
            dn *= -1
            dn += 1
            np.clip(dn, 0, 2, out=dn)
            dist = torch.from_numpy(dn)
        else:
            q = _normalize_rows(xte[s : s + batch_size])
            dist = torch.mm(q, tr_n.T)
            dist.neg_().add_(1.0).clamp_(0.0, 2.0)  # sklearn cosine_distances
        kth_vals, idx = torch.topk(dist, k, dim=1, largest=False)
        kth = kth_vals[:, -1:]
        n_le = (dist <= kth).sum(1)
        tie_rows = torch.nonzero(n_le > k).flatten()
        if tie_rows.numel():
            if on_cpu:
                # several points at the k-th distance: pick them as sklearn does
                # (np.argpartition on the distance row, row by row independent)
                rows = tie_rows.numpy()
                part = np.argpartition(dn[rows], k - 1, axis=1)[:, :k]
                idx[tie_rows] = torch.from_numpy(part).to(idx.dtype)
            else:
                # keep all strictly closer points, then the lowest training indices among ties
                d = dist[tie_rows]
                t = kth[tie_rows]
                closer = d < t
                ties = d == t
                need = k - closer.sum(1, keepdim=True)
                sel = closer | (ties & (torch.cumsum(ties, dim=1) <= need))
                idx[tie_rows] = torch.nonzero(sel)[:, 1].reshape(-1, k).to(idx.dtype)
        votes = torch.zeros((dist.shape[0], n_cls), dtype=torch.float32, device=dev)
        votes.scatter_add_(1, y_enc[idx], torch.ones_like(idx, dtype=torch.float32))
        preds.append(classes[votes.argmax(dim=1)])  # first max = smallest label
    if not preds:
        return torch.empty(0, dtype=torch.long, device=dev)
    return torch.cat(preds)
