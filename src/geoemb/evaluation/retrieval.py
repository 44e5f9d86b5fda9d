"""``evaluate.py experiment=retrieval``: recall@k and QPS tables of the binary retrieval study.

Thin wiring: the ``(N, D)`` corpus comes from ``data`` (an
:class:`~geoemb.data.embedding_corpus.EmbeddingCorpusSource`, ``conf/data/embedding_corpus.yaml``),
the measurements are :func:`geoemb.retrieval.study.recall_table` / :func:`~geoemb.retrieval.study.
qps_table` (see that module for the methods and the skip/fail policy), and the tables are
:func:`geoemb.reporting.retrieval.write_report`. Queries are ``n_queries`` corpus rows drawn with
the run's seed and excluded from their own neighbour lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from geoemb.data.embedding_corpus import EmbeddingCorpusSource
from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.reporting.retrieval import write_report
from geoemb.retrieval.search import BACKENDS
from geoemb.retrieval.study import GT_METRICS, check_method, qps_table, recall_table
from geoemb.run.context import RunContext
from geoemb.utils.io import atomic_write_text

__all__ = ["RetrievalEvaluator"]

#: Backend kinds the QPS table can time (packed codes, float vectors, rerank).
QPS_KINDS = ("hamming", "float", "rerank")


class RetrievalEvaluator(Evaluator):
    """Recall@k / QPS study on an embedding corpus (real ``data.path`` or the stand-in).

    Parameters
    ----------
    data : EmbeddingCorpusSource
        The corpus (``data: ${data}``).
    methods : list of str
        Recall methods (:data:`geoemb.retrieval.study.METHODS`: binary, binary_rerank[_int8] or
        any compression config).
    backends : list of str
        Search backends (:data:`geoemb.retrieval.search.BACKENDS`) of the QPS table.
    ks, metrics, m :
        recall@k values, ground-truth metrics, rerank shortlist multiplier.
    k : int
        Neighbours per query in the QPS table.
    n_queries : int
        Queries drawn from the corpus.
    device : str, optional
        Torch device of GT, float and dequantized search; ``null``/``auto`` = the run's device.
    """

    def __init__(
        self,
        data: EmbeddingCorpusSource | None = None,
        methods: Sequence[str] = ("binary", "binary_rerank", "binary_rerank_int8", "int8", "int4",
                                  "rotate_affine_int4", "turboquant_mse_4"),
        backends: Sequence[str] = ("hamming_numba", "hamming_numpy", "hamming_faiss",
                                   "float_torch", "float_faiss", "binary_rerank"),
        ks: Sequence[int] = (1, 10, 100),
        metrics: Sequence[str] = ("cosine", "l2"),
        m: int = 10,
        k: int = 10,
        n_queries: int = 200,
        device: str | None = "cpu",
    ) -> None:  # fmt: skip
        if data is None:
            raise InputError("evaluation.data is not set: compose data=embedding_corpus "
                             "(experiment=retrieval does)")  # fmt: skip
        self.data = data
        self.methods, self.backends = list(methods), list(backends)
        self.ks, self.metrics = [int(v) for v in ks], list(metrics)
        self.m, self.k, self.n_queries, self.device = int(m), int(k), int(n_queries), device
        # fail on typos before any data is read or searched
        for name in self.methods:
            check_method(name)
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise InputError(f"evaluation.backends: unknown {unknown}; known {BACKENDS.names()}")
        no_qps = [b for b in self.backends if BACKENDS.get(b).meta["kind"] not in QPS_KINDS]
        if no_qps:
            raise InputError(f"evaluation.backends: {no_qps} cannot be timed on raw vectors; "
                             f"use hamming/float backends or binary_rerank")  # fmt: skip
        bad = [mt for mt in self.metrics if mt not in GT_METRICS]
        if bad:
            raise InputError(f"evaluation.metrics: unknown {bad}; expected some of {GT_METRICS}")
        if not self.ks or min(self.ks) < 1 or self.k < 1 or self.n_queries < 1:
            raise InputError("evaluation.ks, k and n_queries must be positive")

    def run(self, ctx: RunContext) -> dict[str, float]:
        x = self.data.load()
        if len(x) <= max(self.ks):
            raise InputError(f"{self.data.describe()}: {len(x)} rows, recall@{max(self.ks)} "
                             f"needs more than {max(self.ks)}")  # fmt: skip
        device = str(ctx.device if self.device in (None, "auto") else torch.device(self.device))
        rng = np.random.default_rng(ctx.seed + 1)
        qids = np.sort(rng.choice(len(x), size=min(self.n_queries, len(x)), replace=False))
        rec = recall_table(x, qids, self.methods, self.ks, self.metrics, m=self.m, device=device)
        qps = qps_table(x, x[qids], self.k, self.backends, device=device)
        metrics = write_report(rec, qps, ctx.output_dir, ctx.logger)
        metrics["test/n_corpus"] = float(len(x))
        ctx.logger.log_metrics(metrics)
        atomic_write_text(ctx.output_dir / "data_source.txt", self.data.data_source + "\n")
        return metrics
