"""The retrieval study: recall@k vs exact float32 ground truth and QPS of the search backends.

recall@k of each *method* is measured against exact float32 ground truth (cosine and L2) with the
query rows excluded from their own neighbour lists; QPS is measured with warm-up, index build
excluded. Methods (:data:`METHODS`, one :class:`~geoemb.utils.registry.Registry`):

- ``binary``: sign codes (``x > 0``), exact Hamming (TerraBit);
- ``binary_rerank`` / ``binary_rerank_int8``: Hamming shortlist of ``k·m`` then exact rerank with
  the float (or int8-dequantized) vectors;
- ``<compression config>``: a :func:`geoemb.compression.build` compressor fitted on a train sample,
  codes decoded and searched exactly (``int8``, ``int4``, ``rotate_affine_int4``,
  ``turboquant_mse_4``…).

A method infeasible by construction on this data (its compressor's ``check_feasible`` raises
:class:`~geoemb.compression.InfeasibleConfigError`, e.g. ``pq_8x8`` with fewer than 256 train rows)
is skipped with its reason in the ``skipped`` column; any other failure propagates, so no table
with error cells is ever written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from geoemb.compression import Compressor, InfeasibleConfigError, build
from geoemb.compression.bitpack import pack_bits
from geoemb.errors import InputError
from geoemb.retrieval.bench import measure_qps
from geoemb.retrieval.inputs import check_embeddings
from geoemb.retrieval.recall import exact_knn, recall_at_k, search_excluding, tie_aware_recall
from geoemb.retrieval.search import BACKENDS, SearchIndex, build_index, default_hamming_backend
from geoemb.utils.registry import Registry, UnknownNameError

log = logging.getLogger(__name__)

__all__ = ["GT_METRICS", "METHODS", "MethodIndex", "check_method", "method_index", "qps_table",
           "recall_table"]  # fmt: skip

#: Ground-truth metrics of the recall table.
GT_METRICS = ("cosine", "l2", "ip")


@dataclass
class MethodIndex:
    """A method's index over the corpus: ``index.search(query_transform(q), k)``."""

    index: SearchIndex
    query_transform: Callable[[np.ndarray], Any]
    bytes_per_vector: float


def _binary(x: np.ndarray, x_train: np.ndarray, metric: str, m: int, device: str) -> MethodIndex:
    dim = x.shape[1]
    codes = build_index(default_hamming_backend(), pack_bits(x > 0), dim=dim)
    return MethodIndex(codes, lambda q: pack_bits(q > 0), dim / 8)


def _rerank(x: np.ndarray, x_train: np.ndarray, metric: str, m: int, device: str,
            rerank: str | None = None) -> MethodIndex:  # fmt: skip
    dim, codes = x.shape[1], pack_bits(x > 0)
    if rerank is None:
        idx = build_index("binary_rerank", codes, rerank_vectors=x, dim=dim, metric=metric, m=m)
        return MethodIndex(idx, lambda q: q, dim / 8 + 4 * dim)
    comp = build(rerank).fit(x_train)
    idx = build_index("binary_rerank", codes, rerank_vectors=comp.encode(x), dim=dim,
                      metric=metric, m=m, rerank_compressor=comp)  # fmt: skip
    return MethodIndex(idx, lambda q: q, dim / 8 + comp.bytes_per_vector)


def _dequantized(comp: Compressor, x: np.ndarray, x_train: np.ndarray, metric: str, m: int,
                 device: str) -> MethodIndex:  # fmt: skip
    comp.check_feasible(*x_train.shape)  # InfeasibleConfigError: skipped by the caller
    comp.fit(x_train)
    idx = build_index("dequantized", comp.encode(x), compressor=comp, metric=metric,
                      device=torch.device(device))  # fmt: skip
    return MethodIndex(idx, lambda q: q, comp.bytes_per_vector)


def _compressor_method(match: Any) -> dict[str, Any]:
    name = match.group("config")
    try:
        return {"comp": build(name)}
    except UnknownNameError as e:  # neither a named method nor a compression config
        raise UnknownNameError(f"{METHODS.unknown_message(name)}; {e}") from None


#: Recall methods: name -> ``builder(x, x_train, metric, m, device) -> MethodIndex``.
METHODS = Registry("retrieval method")
METHODS.add("binary", lambda: _binary, description="sign codes (x > 0), exact Hamming")
METHODS.add("binary_rerank", lambda: _rerank,
            description="Hamming shortlist of k·m, exact float rerank")  # fmt: skip
METHODS.add("binary_rerank_int8", lambda: lambda *a: _rerank(*a, rerank="int8"),
            description="Hamming shortlist of k·m, rerank with int8-dequantized vectors")  # fmt: skip
METHODS.add("<compression_config>", lambda comp: lambda *a: _dequantized(comp, *a),
            pattern=r"(?P<config>.+)", parse=_compressor_method,
            description="a geoemb.compression config, codes decoded and searched exactly")  # fmt: skip


def check_method(name: str) -> None:
    """Raise ``ValueError`` (an ``UnknownNameError`` naming the compression grammar) for a recall
    method that is neither binary nor a compression config."""
    METHODS.resolve(name)


def method_index(name: str, x: np.ndarray, x_train: np.ndarray, metric: str, m: int = 10,
                 device: str = "cpu") -> MethodIndex:  # fmt: skip
    """Build method ``name``'s index over ``x`` (compressors fitted on ``x_train``)."""
    return METHODS.build(name)(x, x_train, metric, m, device)


def recall_table(
    x: np.ndarray,
    query_ids: np.ndarray,
    methods: Sequence[str],
    ks: Sequence[int] = (1, 10, 100),
    metrics: Sequence[str] = ("cosine", "l2"),
    m: int = 10,
    train_rows: int = 50000,
    device: str = "cpu",
) -> pd.DataFrame:
    """recall@k (standard and tie-aware) of each method vs exact float32 GT, per metric.

    Parameters
    ----------
    x:
        ``(N, D)`` float32 corpus; queries are ``x[query_ids]`` (excluded from their own results).
    query_ids:
        ``(nq,)`` row ids of the queries.
    methods:
        :data:`METHODS` names.
    train_rows:
        Compressors are fitted on ``x[:train_rows]``.

    Returns
    -------
    DataFrame with one row per (metric, method): ``bytes/vec``, ``search_s``, ``QPS``,
    ``recall@<k>``, ``tie_recall@10`` — or ``skipped`` (the reason) for infeasible methods.
    """
    x = check_embeddings(x, "recall_table x")
    for name in methods:
        check_method(name)
    q = x[query_ids]
    kmax = max(ks)
    if len(x) - 1 < kmax:
        raise InputError(f"recall@{kmax} needs more than {kmax} corpus rows, got {len(x)}")
    rows = []
    x_train = x[:train_rows]
    for metric in metrics:
        gt_d, gt_i = exact_knn(torch.from_numpy(x).to(device), torch.from_numpy(q).to(device),
                               kmax, metric=metric, query_ids=query_ids)  # fmt: skip
        gt_d, gt_i = np.asarray(gt_d), np.asarray(gt_i)
        for name in methods:
            try:
                mi = method_index(name, x, x_train, metric, m=m, device=device)
            except InfeasibleConfigError as e:  # by construction only; anything else fails
                log.warning("retrieval: skipping %s (%s): %s", name, metric, e)
                rows.append({"method": name, "metric": metric, "skipped": str(e)})
                continue
            t0 = time.perf_counter()
            _, pred = search_excluding(mi.index, mi.query_transform(q), kmax, query_ids)
            dt = time.perf_counter() - t0
            row: dict[str, Any] = {"method": name, "metric": metric,
                                   "bytes/vec": mi.bytes_per_vector, "search_s": dt,
                                   "QPS": len(q) / dt}  # fmt: skip
            for k in ks:
                row[f"recall@{k}"] = recall_at_k(gt_i, pred, k)
            k10 = 10 if 10 in ks else kmax
            row[f"tie_recall@{k10}"] = tie_aware_recall(gt_d, pred, x, q, k10, metric=metric)
            rows.append(row)
    return pd.DataFrame(rows)


def qps_table(
    x: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    backends: Sequence[str] = ("hamming_numba", "hamming_numpy", "hamming_faiss", "float_torch",
                               "float_faiss"),
    metric: str = "cosine",
    device: str = "cpu",
    warmup: int = 1,
    batch_size: int | None = None,
) -> pd.DataFrame:  # fmt: skip
    """QPS of each search backend (:data:`~geoemb.retrieval.search.BACKENDS`) on the same data:
    ``hamming`` backends get sign codes, ``rerank`` codes plus the float vectors, ``float`` ones the
    float vectors (with the backend's own metric where it has one, e.g. ``float_cdist``: l2)."""
    dim = x.shape[1]
    codes, qcodes = pack_bits(x > 0), pack_bits(queries > 0)
    rows = []
    for name in backends:
        meta = BACKENDS.get(name).meta
        kw: dict[str, Any] = {"device": device} if meta.get("device") else {}
        if meta["kind"] == "hamming":
            index, qin = build_index(name, codes, dim=dim, **kw), qcodes
        elif meta["kind"] == "rerank":
            index, qin = build_index(name, codes, rerank_vectors=x, dim=dim, metric=metric), queries
        elif meta["kind"] == "float":
            index = build_index(name, x, metric=meta.get("metric", metric), **kw)
            qin = queries
        else:
            raise InputError(f"qps_table: backend {name!r} ({meta['kind']}) has no QPS protocol; "
                             f"use one of {BACKENDS.names(kind='hamming') + BACKENDS.names(kind='float')}"
                             " or binary_rerank")  # fmt: skip
        t = measure_qps(index.search, qin, k, batch_size=batch_size, warmup=warmup)
        rows.append({"backend": name, "N": len(x), "nq": len(queries), "QPS": t.qps,
                     "seconds": t.seconds})  # fmt: skip
    return pd.DataFrame(rows)
