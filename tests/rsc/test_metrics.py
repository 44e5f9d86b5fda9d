"""RSC metrics vs an independent numpy/scipy/sklearn implementation of the reference notebooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_cdt

from geoemb.metrics import (
    NO_FEATURE,
    BackgroundPrecision,
    BackgroundRecall,
    DistanceBinnedRecall,
    DistanceWeightedRecall,
    RoadPrecision,
    RoadRecall,
    RSCConfusionMatrix,
    TCRecall,
    l1_distance_transform,
    plot_distance_curves,
    write_distance_curve_csv,
)
from tests.rsc.oracle import reference_curve, reference_eval


def _random_case(rng, b=4, h=40, w=33, p_road=0.03, p_tc=0.05, p_pred=0.3):
    t = np.zeros((b, h, w), np.int64)
    u = rng.random((b, h, w))
    t[u < p_road] = 1
    t[(u >= p_road) & (u < p_road + p_tc)] = 2
    t[0][t[0] == 1] = 0  # patch 0 has canopy but no visible road
    preds = (rng.random((b, h, w)) < p_pred).astype(np.int64)
    return preds, t


def _ours(preds, target, batches=1):
    cnf, dwr, curve = RSCConfusionMatrix(), DistanceWeightedRecall(), DistanceBinnedRecall()
    for pc, tc in zip(np.array_split(preds, batches), np.array_split(target, batches)):
        for m in (cnf, dwr, curve):
            m.update(torch.from_numpy(pc), torch.from_numpy(tc))
    return cnf.compute(), dwr, curve


def _assert_close(a, b):
    if math.isnan(b):
        assert math.isnan(a)
    else:
        assert a == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batches", [1, 3])
def test_random_masks_match_reference(seed, batches):
    rng = np.random.default_rng(seed)
    preds, target = _random_case(rng, b=6, p_road=0.01 + 0.02 * seed)
    ratios, dwr_ref, d, p = reference_eval(preds, target)
    ours, dwr, curve = _ours(preds, target, batches)
    for k, v in ratios.items():
        _assert_close(float(ours[k]), float(v))
    _assert_close(float(dwr.compute()), float(dwr_ref))
    _assert_close(float(curve.dwr()), float(dwr_ref))
    assert int(dwr.n_pixels) == d.size
    assert int(dwr.n_dropped) == int((target[0] == 2).sum())  # the no-road patch
    c = curve.compute()
    ref = reference_curve(d, p)
    assert len(ref) == len(c["recall"]) and len(ref) > 3
    for (lo, hi, n, r), lo2, hi2, n2, r2 in zip(
        ref, c["bin_left"], c["bin_right"], c["count"], c["recall"]
    ):
        assert lo == float(lo2) and hi == float(hi2) and n == int(n2)
        assert r == pytest.approx(float(r2), abs=1e-12)
    pct = curve.distance_percentiles((50, 95, 99))
    for q in (50, 95, 99):
        assert pct[f"p{q}"] == pytest.approx(np.percentile(d, q))


def test_single_metric_classes_match_collection():
    rng = np.random.default_rng(5)
    preds, target = _random_case(rng)
    ratios, *_ = reference_eval(preds, target)
    for cls, key in [
        (RoadRecall, "road_recall"),
        (RoadPrecision, "road_precision"),
        (TCRecall, "tc_recall"),
        (BackgroundRecall, "bg_recall"),
        (BackgroundPrecision, "bg_precision"),
    ]:
        m = cls()
        m.update(torch.from_numpy(preds), torch.from_numpy(target))
        assert float(m.compute()) == pytest.approx(ratios[key])


def test_hand_made_dwr_and_precision():
    # one row: road, 3 canopy pixels at L1 distances 1, 2, 3, background; road predicted at d=1 only
    target = torch.tensor([[[1, 2, 2, 2, 0]]])
    preds = torch.tensor([[[1, 1, 0, 0, 0]]])
    dwr = DistanceWeightedRecall()
    dwr.update(preds, target)
    assert float(dwr.compute()) == pytest.approx(1 / 6)
    cnf = RSCConfusionMatrix()
    cnf.update(preds, target)
    r = cnf.compute()
    assert float(r["road_precision"]) == pytest.approx(0.5)  # TC predicted as road is a FP
    assert float(r["road_recall"]) == 1.0 and float(r["tc_recall"]) == pytest.approx(1 / 3)


def test_no_road_all_canopy_and_empty_predictions():
    all_canopy = torch.full((2, 8, 8), 2)
    dwr = DistanceWeightedRecall()
    dwr.update(torch.ones(2, 8, 8, dtype=torch.long), all_canopy)
    assert math.isnan(float(dwr.compute())) and int(dwr.n_dropped) == 128
    curve = DistanceBinnedRecall()
    curve.update(torch.ones(2, 8, 8, dtype=torch.long), all_canopy)
    assert curve.compute()["recall"].numel() == 0
    # empty predictions: DWR 0, road recall 0, road precision undefined (NaN as 0/0)
    rng = np.random.default_rng(3)
    _, target = _random_case(rng)
    preds = np.zeros_like(target)
    ratios, dwr_ref, *_ = reference_eval(preds, target)
    ours, dwr, _ = _ours(preds, target)
    assert float(dwr.compute()) == 0.0 == dwr_ref
    assert float(ours["road_recall"]) == 0.0
    assert math.isnan(float(ours["road_precision"])) and math.isnan(ratios["road_precision"])


def test_logits_input_and_bool_preds():
    rng = np.random.default_rng(7)
    preds, target = _random_case(rng)
    logits = torch.zeros(preds.shape[0], 2, *preds.shape[1:])
    logits[:, 1] = torch.from_numpy(preds).float()
    a, b = DistanceWeightedRecall(), DistanceWeightedRecall()
    a.update(logits, torch.from_numpy(target))
    b.update(torch.from_numpy(preds).bool(), torch.from_numpy(target))
    assert float(a.compute()) == float(b.compute())


def test_bad_inputs():
    m = DistanceWeightedRecall()
    with pytest.raises(ValueError, match="same shape"):
        m.update(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="canopy over road"):
        m.update(torch.zeros(1, 4, 4), torch.full((1, 4, 4), 3))
    with pytest.raises(ValueError, match="not road"):
        m.update(torch.full((1, 4, 4), 2), torch.zeros(1, 4, 4))


@pytest.mark.parametrize("shape", [(3, 17, 29), (2, 1, 50), (1, 64, 64), (2, 5, 1)])
def test_distance_transform_matches_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    f = rng.random(shape) < 0.02
    f[0].flat[rng.integers(f[0].size)] = True
    if shape[0] > 1:
        f[-1] = False
    d = l1_distance_transform(torch.from_numpy(f)).numpy()
    for i in range(shape[0]):
        if f[i].any():
            np.testing.assert_array_equal(d[i], distance_transform_cdt(~f[i], metric="taxicab"))
        else:
            assert (d[i] == NO_FEATURE).all()
    # 2-D input
    np.testing.assert_array_equal(l1_distance_transform(torch.from_numpy(f[0])).numpy(), d[0])


def test_curve_csv_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    preds, target = _random_case(rng)
    _, _, curve = _ours(preds, target)
    c = curve.compute()
    csv = write_distance_curve_csv(c, tmp_path / "c.csv", model="m")
    import pandas as pd

    df = pd.read_csv(csv)
    assert list(df.columns[:3]) == ["model", "bin_index", "bin_left"] and len(df) == len(
        c["recall"]
    )
    png = plot_distance_curves({"a": c, "b": c}, tmp_path / "c.png")
    assert png.stat().st_size > 1000
    per = curve.per_distance()
    assert per["count"].sum() == c["count"].sum()
