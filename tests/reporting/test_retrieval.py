"""Retrieval reporting: tables written in three formats, scalars for ran methods only."""

import numpy as np
import pandas as pd

from geoemb.reporting.retrieval import retrieval_metrics, write_report
from geoemb.utils.run_logger import RunLogger


def test_write_report_tables_and_metrics(tmp_path):
    rec = pd.DataFrame([
        {"method": "binary", "metric": "l2", "bytes/vec": 4.0, "recall@1": 0.5, "recall@10": 0.7},
        {"method": "pq_8x8", "metric": "l2", "skipped": "pq_8x8: 200 training rows < 256"},
    ])  # fmt: skip
    qps = pd.DataFrame([{"backend": "hamming_numpy", "N": 400, "nq": 20, "QPS": 1234.5,
                         "seconds": 0.0162}])  # fmt: skip
    logger = RunLogger(None)
    m = write_report(rec, qps, tmp_path, logger)
    assert m == {"test/recall@10/l2/binary": 0.7, "test/qps/hamming_numpy": 1234.5}
    for stem in ("retrieval_recall", "retrieval_qps"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / f"{stem}.{ext}").stat().st_size > 0
    back = pd.read_csv(tmp_path / "retrieval_recall.csv")
    assert np.isnan(back.set_index("method").loc["pq_8x8", "recall@10"])
    assert {"retrieval/recall", "retrieval/qps"} <= set(logger.tables)
    assert retrieval_metrics(rec.iloc[1:], qps.iloc[:0]) == {}
