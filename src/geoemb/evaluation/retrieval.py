"""Retrieval evaluator (``evaluate.py experiment=retrieval``): recall@k and QPS tables.

recall@k of each method is measured against exact float32 ground truth (cosine and L2) with the
query rows excluded from their own neighbour lists; QPS is measured with warm-up, index build
excluded. Methods:

- ``binary``: sign codes (``x > 0``), exact Hamming (TerraBit);
- ``binary_rerank`` / ``binary_rerank_int8``: Hamming shortlist of ``k·m`` then exact rerank with the
  float (or int8-dequantized) vectors;
- any other name: a ``geoemb.compression.build(name)`` compressor fitted on a train sample, codes
  decoded and searched exactly (``int8``, ``int4``, ``rotate_affine_int4``, ``turboquant_mse_4``…).

Inputs are validated before any search (2-D, float, finite — the error names the file and the
first bad row). A method infeasible by construction on this data (its compressor's
``check_feasible`` raises :class:`~geoemb.compression.InfeasibleConfigError`, e.g. ``pq_8x8`` with
fewer than 256 train rows) is skipped with a warning and its reason in the ``skipped`` column; any
other failure propagates and fails the run, so no table with error cells is ever written.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from geoemb.compression import InfeasibleConfigError
from geoemb.compression.bitpack import pack_bits
from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.retrieval.bench import measure_qps
from geoemb.retrieval.recall import exact_knn, recall_at_k, search_excluding, tie_aware_recall
from geoemb.retrieval.search import BACKENDS, build_index, default_hamming_backend
from geoemb.utils.io import atomic_write_text
from geoemb.utils.run_logger import RunLogger

log = logging.getLogger(__name__)
METRICS = ("cosine", "l2", "ip")


def check_embeddings(x: np.ndarray, source: str = "embeddings") -> np.ndarray:
    """Validate an ``(N, D)`` float embedding matrix; return it as C-contiguous float32.

    Raises
    ------
    InputError
        Not 2-D, empty, not a float dtype, or any NaN/inf value (naming ``source`` and the first
        bad row).
    """
    x = np.asarray(x)
    if x.ndim != 2 or 0 in x.shape:
        raise InputError(f"{source}: expected a non-empty (N, D) embedding matrix, got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{source}: expected float embeddings, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            f"{source}: {len(rows)} row(s) contain NaN/inf (first: row {rows[0]}); non-finite "
            "embeddings are invalid data"
        )
    return x


def check_method(name: str) -> None:
    """Raise ``ValueError`` for a recall method name that is neither binary nor a compressor."""
    if name in ("binary", "binary_rerank", "binary_rerank_int8"):
        return
    from geoemb.compression import build

    build(name)  # unknown config -> ValueError listing the accepted patterns


def _compressor(name: str, x_train: np.ndarray) -> Any:
    from geoemb.compression import build

    return build(name).fit(x_train)


def method_index(name: str, x: np.ndarray, x_train: np.ndarray, metric: str, m: int = 10,
                 device: str = "cpu") -> tuple[Any, Any, float]:  # fmt: skip
    """Build the index of a method; return ``(index, query_transform, bytes_per_vector)``."""
    dim = x.shape[1]
    if name == "binary":
        codes = pack_bits(x > 0)
        return (
            build_index(default_hamming_backend(), codes, dim=dim),
            (lambda q: pack_bits(q > 0)),
            dim / 8,
        )
    if name.startswith("binary_rerank"):
        codes = pack_bits(x > 0)
        if name == "binary_rerank_int8":
            comp = _compressor("int8", x_train)
            idx = build_index("binary_rerank", codes, rerank_vectors=comp.encode(x), dim=dim,
                              metric=metric, m=m, rerank_compressor=comp)  # fmt: skip
            return idx, (lambda q: q), dim / 8 + comp.bytes_per_vector
        idx = build_index("binary_rerank", codes, rerank_vectors=x, dim=dim, metric=metric, m=m)
        return idx, (lambda q: q), dim / 8 + 4 * dim
    from geoemb.compression import build

    comp = build(name)
    comp.check_feasible(*x_train.shape)  # InfeasibleConfigError: skipped by the caller
    comp.fit(x_train)
    codes = comp.encode(x)
    idx = build_index("dequantized", codes, compressor=comp, metric=metric,
                      device=torch.device(device))  # fmt: skip
    return idx, (lambda q: q), comp.bytes_per_vector


def recall_table(
    x: np.ndarray,
    query_ids: np.ndarray,
    methods: Sequence[str],
    ks: Sequence[int] = (1, 10, 100),
    metrics: Sequence[str] = ("cosine", "l2"),
    m: int = 10,
    train_rows: int = 50000,
    device: str = "cpu",
    time_queries: int | None = None,
) -> pd.DataFrame:
    """recall@k (standard and tie-aware) of each method vs exact float32 GT, per metric.

    Parameters
    ----------
    x:
        ``(N, D)`` float32 corpus; queries are ``x[query_ids]`` (excluded from their own results).
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
                index, qt, bpv = method_index(name, x, x_train, metric, m=m, device=device)
            except InfeasibleConfigError as e:  # by construction only; anything else fails
                log.warning("retrieval: skipping %s (%s): %s", name, metric, e)
                rows.append({"method": name, "metric": metric, "skipped": str(e)})
                continue
            t0 = time.perf_counter()
            _, pred = search_excluding(index, qt(q), kmax, query_ids)
            dt = time.perf_counter() - t0
            row: dict[str, Any] = {"method": name, "metric": metric, "bytes/vec": bpv,
                                   "search_s": dt, "QPS": len(q) / dt}  # fmt: skip
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
    backends: Sequence[str] = (
        "hamming_numba",
        "hamming_numpy",
        "hamming_faiss",
        "float_torch",
        "float_faiss",
    ),
    metric: str = "cosine",
    device: str = "cpu",
    warmup: int = 1,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """QPS of each search backend on the same data (binary backends get sign codes)."""
    dim = x.shape[1]
    codes, qcodes = pack_bits(x > 0), pack_bits(queries > 0)
    rows = []
    for name in backends:
        if name.startswith("hamming"):
            kw = {"device": device} if name in ("hamming_torch", "hamming_gemm") else {}
            index, qin = build_index(name, codes, dim=dim, **kw), qcodes
        elif name == "binary_rerank":
            index, qin = build_index(name, codes, rerank_vectors=x, dim=dim, metric=metric), queries
        else:
            kw = {"device": device} if name in ("float_torch", "float_cdist") else {}
            index = build_index(name, x, metric="l2" if name == "float_cdist" else metric, **kw)
            qin = queries
        t = measure_qps(index.search, qin, k, batch_size=batch_size, warmup=warmup)
        rows.append({"backend": name, "N": len(x), "nq": len(queries), "QPS": t.qps,
                     "seconds": t.seconds})  # fmt: skip
    return pd.DataFrame(rows)


class RetrievalEvaluator(Evaluator):
    """Recall@k / QPS study on the synthetic (or a user-given ``.npy``) embedding corpus.

    Parameters
    ----------
    n_corpus, n_queries, dim:
        Synthetic corpus size (ignored when ``embeddings_path`` is given).
    embeddings_path:
        Optional ``(N, D)`` float32 ``.npy`` file of real embeddings.
    methods:
        Recall methods (see module doc).
    backends:
        Backends for the QPS table.
    ks, metrics, m:
        recall@k values, GT metrics, rerank multiplier.
    """

    def __init__(self, n_corpus: int = 20000, n_queries: int = 200, dim: int = 256,
                 embeddings_path: str | None = None,
                 methods: Sequence[str] = ("binary", "binary_rerank", "binary_rerank_int8", "int8",
                                           "int4", "rotate_affine_int4", "turboquant_mse_4"),
                 backends: Sequence[str] = ("hamming_numba", "hamming_numpy", "hamming_faiss",
                                            "float_torch", "float_faiss", "binary_rerank"),
                 ks: Sequence[int] = (1, 10, 100), metrics: Sequence[str] = ("cosine", "l2"),
                 m: int = 10, k: int = 10, device: str = "cpu", seed: int = 0) -> None:  # fmt: skip
        self.n_corpus, self.n_queries, self.dim = int(n_corpus), int(n_queries), int(dim)
        self.embeddings_path = embeddings_path
        self.methods, self.backends = list(methods), list(backends)
        self.ks, self.metrics = [int(v) for v in ks], list(metrics)
        self.m, self.k, self.device, self.seed = int(m), int(k), device, int(seed)
        # fail on typos before any data is read or searched
        for name in self.methods:
            check_method(name)
        unknown = [b for b in self.backends if b not in BACKENDS and b != "float_cdist"]
        if unknown:
            raise ValueError(f"evaluation.backends: unknown {unknown}; known {sorted(BACKENDS)}")
        bad = [mt for mt in self.metrics if mt not in METRICS]
        if bad:
            raise ValueError(f"evaluation.metrics: unknown {bad}; expected some of {METRICS}")
        if not self.ks or min(self.ks) < 1 or self.k < 1 or self.n_queries < 1:
            raise ValueError("evaluation.ks, k and n_queries must be positive")

    def _data(self) -> tuple[np.ndarray, str]:
        if self.embeddings_path:
            p = Path(self.embeddings_path)
            if not p.exists():
                raise FileNotFoundError(
                    f"evaluation.embeddings_path={p} does not exist; leave it null to run on the "
                    "synthetic corpus"
                )
            try:
                x = np.load(p, allow_pickle=False)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise InputError(
                    f"evaluation.embeddings_path={p}: cannot read it as a .npy array "
                    f"({type(e).__name__}: {e}); expected an (N, D) float .npy file"
                ) from e
            if not isinstance(x, np.ndarray):  # an .npz archive
                x.close()
                raise InputError(
                    f"evaluation.embeddings_path={p}: is an .npz archive; expected one (N, D) "
                    "float array saved with numpy.save (.npy)"
                )
            x = check_embeddings(x, f"evaluation.embeddings_path={p}")
            if len(x) <= max(self.ks):
                raise InputError(
                    f"evaluation.embeddings_path={p}: {len(x)} rows, recall@{max(self.ks)} needs "
                    f"more than {max(self.ks)}"
                )
            return x, "file"
        from geoemb.data.synthetic.retrieval_corpus import make_embeddings

        x, _, _ = make_embeddings(self.n_corpus, self.dim, seed=self.seed)
        return x, "synthetic"

    def run(self, output_dir: Path, logger: RunLogger) -> dict[str, float]:
        from geoemb.reporting.tables import write_table

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        x, source = self._data()
        rng = np.random.default_rng(self.seed + 1)
        qids = np.sort(rng.choice(len(x), size=min(self.n_queries, len(x)), replace=False))
        rec = recall_table(
            x, qids, self.methods, self.ks, self.metrics, m=self.m, device=self.device
        )
        qps = qps_table(x, x[qids], self.k, self.backends, device=self.device)
        write_table(rec, output_dir / "retrieval_recall", floatfmt=".3f")
        write_table(qps, output_dir / "retrieval_qps", floatfmt=".1f")
        logger.log_table("retrieval/recall", rec)
        logger.log_table("retrieval/qps", qps)
        metrics: dict[str, float] = {}
        for r in rec.to_dict("records"):
            if "recall@10" in r and r["recall@10"] == r["recall@10"]:
                metrics[f"test/recall@10/{r['metric']}/{r['method']}"] = float(r["recall@10"])
        for r in qps.to_dict("records"):
            metrics[f"test/qps/{r['backend']}"] = float(r["QPS"])
        metrics["test/n_corpus"] = float(len(x))
        logger.log_metrics(metrics)
        atomic_write_text(output_dir / "data_source.txt", source + "\n")
        return metrics
