"""Hamming kNN on packed sign codes, on the retrieval search backends (the one Hamming top-k).

:func:`hamming_knn` runs the fastest exact Hamming backend available
(:func:`~geoemb.retrieval.search.default_hamming_backend`: the fused numba scan, else numpy), so
the compression study's Hamming kNN and the corpus search share one implementation: rows sorted
by (distance, database index). Codes are ``np.packbits`` rows ``(N, B)`` uint8 whose padding bits
are zero.
"""

from __future__ import annotations

import numpy as np

from geoemb.retrieval.hamming import check_codes, hamming_numpy, to_words
from geoemb.retrieval.recall import drop_ids
from geoemb.retrieval.search import build_index, default_hamming_backend

__all__ = ["hamming_distances", "hamming_knn", "hamming_knn_classify", "majority_vote"]


def hamming_distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances ``(Nq, Ndb)`` int32 between packed codes ``(Nq, B)``, ``(Ndb, B)``."""
    q = check_codes(q, name="queries")
    db = check_codes(db, q.shape[1], name="database")
    return hamming_numpy(to_words(q), np.ascontiguousarray(to_words(db).T)).astype(np.int32)


def hamming_knn(
    q: np.ndarray,
    db: np.ndarray,
    k: int,
    query_batch: int = 4096,
    db_batch: int = 1 << 30,
    exclude: np.ndarray | None = None,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-``k``: ``(dist (Nq, k) int32, idx (Nq, k) int64)`` sorted by
    (distance, index).

    Parameters
    ----------
    q, db : (Nq, B), (Ndb, B) uint8 packed codes
    k : int
        Neighbours per query, ``1 <= k <= Ndb`` (``Ndb - 1`` with ``exclude``).
    query_batch, db_batch : int
        Queries per batch and database rows per chunk (memory bound of the scan).
    exclude : (Nq,) int, optional
        One database id to drop per query (its own row; ``-1`` = none).
    backend : str, optional
        A Hamming backend of :data:`~geoemb.retrieval.search.BACKENDS` (default: the fastest).
    """
    q = check_codes(q, name="queries")
    db = check_codes(db, q.shape[1], name="database")
    n = db.shape[0]
    if not 1 <= k <= n - (exclude is not None):
        raise ValueError(f"k={k} must be in [1, {n - (exclude is not None)}] for {n} database rows")
    index = build_index(backend or default_hamming_backend(), db, dim=db.shape[1] * 8,
                        chunk_size=db_batch, query_batch=query_batch)  # fmt: skip
    if exclude is None:
        d, i = index.search(q, k)
    else:
        d, i = drop_ids(*index.search(q, k + 1), np.asarray(exclude), k)
    return np.asarray(d).astype(np.int32), np.asarray(i).astype(np.int64)


def majority_vote(neighbor_labels: np.ndarray) -> np.ndarray:
    """Uniform vote over ``(N, k)`` labels; ties go to the smallest label (sklearn's rule)."""
    neighbor_labels = np.asarray(neighbor_labels, dtype=np.int64)
    n_cls = int(neighbor_labels.max(initial=0)) + 1
    counts = np.zeros((neighbor_labels.shape[0], n_cls), np.int64)
    np.add.at(counts, (np.arange(neighbor_labels.shape[0])[:, None], neighbor_labels), 1)
    return counts.argmax(axis=1)


def hamming_knn_classify(
    codes_train: np.ndarray, y_train: np.ndarray, codes_test: np.ndarray, k: int = 5
) -> np.ndarray:
    """kNN classification with Hamming distance on raw packed bits: ``(N_test,)`` int64 labels."""
    y_train = np.asarray(y_train)
    if len(y_train) != np.asarray(codes_train).shape[0]:
        raise ValueError(
            f"y_train has {len(y_train)} labels for {np.asarray(codes_train).shape[0]} codes"
        )
    _, idx = hamming_knn(codes_test, codes_train, k)
    return majority_vote(y_train[idx])
