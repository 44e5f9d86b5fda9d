"""The tutorial's per-batch water metrics (geoemb.metrics.water) against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from geoemb.metrics.water import PerBatchMeanIoU, PerBatchMeanOA


def test_tutorial_per_batch_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    oa, iou = PerBatchMeanOA(), PerBatchMeanIoU()
    ref_oa, ref_iou = [], []
    for i in range(5):
        y = rng.integers(0, 2, size=(2, 8, 8))
        p = rng.integers(0, 2, size=(2, 8, 8))
        if i == 3:  # a batch with no water anywhere: zero_division=1
            y[:] = 0
            p[:] = 0
        oa.update(torch.from_numpy(p), torch.from_numpy(y))
        iou.update(torch.from_numpy(p), torch.from_numpy(y))
        ref_oa.append(np.count_nonzero(y == p) / y.size)
        ref_iou.append(jaccard_score(y.flatten(), p.flatten(), zero_division=1.0))
    assert float(oa.compute()) == pytest.approx(np.mean(ref_oa), abs=1e-6)
    assert float(iou.compute()) == pytest.approx(np.mean(ref_iou), abs=1e-6)


def test_per_batch_metrics_ignore_index_match_sklearn_on_valid_pixels():
    rng = np.random.default_rng(1)
    oa, iou = PerBatchMeanOA(ignore_index=255), PerBatchMeanIoU(ignore_index=255)
    ref_oa, ref_iou = [], []
    for _ in range(4):
        y = rng.integers(0, 2, size=(2, 8, 8))
        y[:, :3] = 255  # warp-fill rows
        p = rng.integers(0, 2, size=(2, 8, 8))
        oa.update(torch.from_numpy(p), torch.from_numpy(y))
        iou.update(torch.from_numpy(p), torch.from_numpy(y))
        v = y != 255
        ref_oa.append(np.mean(y[v] == p[v]))
        ref_iou.append(jaccard_score(y[v], p[v], zero_division=1.0))
    all_fill = torch.full((1, 4, 4), 255)
    oa.update(torch.zeros(1, 4, 4, dtype=torch.long), all_fill)  # no valid pixel: batch skipped
    assert float(oa.compute()) == pytest.approx(np.mean(ref_oa), abs=1e-6)
    assert float(iou.compute()) == pytest.approx(np.mean(ref_iou), abs=1e-6)
