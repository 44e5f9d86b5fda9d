"""Tables of the retrieval study: recall@k and QPS as CSV/Markdown/LaTeX, plus scalar metrics.

:func:`write_report` writes ``retrieval_recall.{csv,md,tex}`` and ``retrieval_qps.{csv,md,tex}``
(from :func:`geoemb.retrieval.study.recall_table` / :func:`~geoemb.retrieval.study.qps_table`),
logs both tables and returns the scalars ``test/recall@10/<metric>/<method>`` and
``test/qps/<backend>``. Skipped (infeasible) methods keep their row with the reason and no
recall metric.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from geoemb.reporting.tables import write_table
from geoemb.utils.run_logger import RunLogger

__all__ = ["retrieval_metrics", "write_report"]


def retrieval_metrics(recall: pd.DataFrame, qps: pd.DataFrame) -> dict[str, float]:
    """``test/recall@10/<metric>/<method>`` (methods that ran) and ``test/qps/<backend>``."""
    out: dict[str, float] = {}
    for r in recall.to_dict("records"):
        v = r.get("recall@10")
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[f"test/recall@10/{r['metric']}/{r['method']}"] = float(v)
    for r in qps.to_dict("records"):
        out[f"test/qps/{r['backend']}"] = float(r["QPS"])
    return out


def write_report(
    recall: pd.DataFrame, qps: pd.DataFrame, out_dir: str | Path, logger: RunLogger | None = None
) -> dict[str, float]:
    """Write both tables under ``out_dir``, log them, and return :func:`retrieval_metrics`."""
    out_dir = Path(out_dir)
    write_table(recall, out_dir / "retrieval_recall", floatfmt=".3f")
    write_table(qps, out_dir / "retrieval_qps", floatfmt=".1f")
    if logger is not None:
        logger.log_table("retrieval/recall", recall)
        logger.log_table("retrieval/qps", qps)
    return retrieval_metrics(recall, qps)
