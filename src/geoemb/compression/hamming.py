"""Hamming distances and kNN on packed sign bits (``np.packbits`` layout).

Distances use ``np.bitwise_count`` (numpy >= 2) on the XOR of the packed rows, viewed as uint64
words when the row width is a multiple of 8 bytes. Padding bits are zero in valid codes, so they
never contribute. Ties are broken deterministically by (distance, database index).
"""

from __future__ import annotations

import numpy as np


def _check_codes(a: np.ndarray, field: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"{field} must be (N, B) uint8 packed bits, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def hamming_distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances ``(Nq, Ndb)`` int32 between packed codes ``(Nq, B)``, ``(Ndb, B)``."""
    q = _check_codes(q, "queries")
    db = _check_codes(db, "database")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bytes/row, database {db.shape[1]}")
    if q.shape[1] % 8 == 0:
        q, db = q.view(np.uint64), db.view(np.uint64)
    out = np.zeros((q.shape[0], db.shape[0]), np.int32)
    qt, dbt = np.ascontiguousarray(q.T), np.ascontiguousarray(db.T)
    for w in range(qt.shape[0]):  # one word column at a time: large vectorised outer ops
        out += np.bitwise_count(np.bitwise_xor.outer(qt[w], dbt[w]))
    return out


def hamming_knn(
    q: np.ndarray,
    db: np.ndarray,
    k: int,
    query_batch: int = 256,
    db_batch: int = 8192,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hamming top-``k``: returns ``(dist (Nq, k) int32, idx (Nq, k) int64)`` sorted by
    (distance, index). ``exclude`` (``(Nq,)`` database ids, -1 = none) drops one id per query."""
    q = _check_codes(q, "queries")
    db = _check_codes(db, "database")
    n = db.shape[0]
    if not 1 <= k <= n - (exclude is not None):
        raise ValueError(f"k={k} must be in [1, {n - (exclude is not None)}] for {n} database rows")
    out_d = np.empty((q.shape[0], k), np.int32)
    out_i = np.empty((q.shape[0], k), np.int64)
    big = np.int64(n + 1)
    for s in range(0, q.shape[0], query_batch):
        qb = q[s : s + query_batch]
        keys = []
        for t in range(0, n, db_batch):
            d = hamming_distances(qb, db[t : t + db_batch]).astype(np.int64)
            key = d * big + np.arange(t, t + d.shape[1], dtype=np.int64)[None, :]
            if exclude is not None:
                ex = np.asarray(exclude[s : s + query_batch])[:, None]
                key = np.where(key % big == ex, np.iinfo(np.int64).max, key)
            kk = min(k, key.shape[1])
            part = np.partition(key, kk - 1, axis=1)[:, :kk]
            keys.append(part)
        key = np.concatenate(keys, axis=1)
        key = np.sort(np.partition(key, k - 1, axis=1)[:, :k], axis=1)
        out_d[s : s + len(qb)] = key // big
        out_i[s : s + len(qb)] = key % big
    return out_d, out_i


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
