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
    write_distance_curve_csv,
)
from geoemb.reporting.rsc import plot_distance_curves
from tests.metrics.rsc_oracle import reference_curve, reference_eval


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


# ---------------------------------------------------------------------------------------------
# speed work (issue 15): OpenCV / numba CPU paths, one computation per batch, identical numbers
# ---------------------------------------------------------------------------------------------
def _cv2_reference_distance(m: np.ndarray) -> np.ndarray:
    """The notebook's exact call: cv2.distanceTransform((~(mask == 1)).astype(np.uint8), DIST_L1, 3)."""
    import cv2

    return cv2.distanceTransform((~(m == 1)).astype(np.uint8), cv2.DIST_L1, 3)


def _cv2_reference_tc(preds: np.ndarray, target: np.ndarray, max_distance: int = 8192):
    ds, ps = [], []
    for m, p in zip(target, preds):
        if (m == 2).any():
            d = _cv2_reference_distance(m)
            ds.append(d[m == 2])
            ps.append(p[m == 2])
    d = np.concatenate(ds) if ds else np.zeros(0, np.float32)
    p = np.concatenate(ps) if ps else np.zeros(0, np.int64)
    keep = d < max_distance
    return d[keep].astype(np.int64), p[keep] != 0


def _structured_case(rng, b=5, h=70, w=90):
    """Roads with long canopy-covered stretches (distances well past 255 on the 300-px patch)."""
    t = np.zeros((b, h, w), np.int64)
    for i in range(b):
        y = int(rng.integers(0, h - 2))
        t[i, y : y + 2] = 1
        x0 = int(rng.integers(0, w // 2))
        t[i, y : y + 2, x0 : x0 + int(rng.integers(3, w // 2))] = 2
        t[i][rng.random((h, w)) < 0.01] = 2
    t[0][t[0] == 1] = 0
    t[0, :2, :3] = 1  # visible road only in a corner: distances up to h + w
    t[-1] = np.where(t[-1] == 1, 2, t[-1])  # canopy, no visible road
    return (rng.random((b, h, w)) < 0.5).astype(np.int64), t


@pytest.mark.parametrize("method", ["cv2", "scan", "doubling"])
@pytest.mark.parametrize("shape", [(3, 17, 29), (2, 1, 50), (2, 5, 1), (1, 40, 300)])
def test_distance_transform_methods_match_cv2(method, shape):
    rng = np.random.default_rng(sum(shape) + len(method))
    f = rng.random(shape) < 0.01
    f[0].flat[rng.integers(f[0].size)] = True
    if shape[0] > 1:
        f[-1] = False
    d = l1_distance_transform(torch.from_numpy(f), method=method).numpy()
    assert d.dtype == np.int32
    for i in range(shape[0]):
        if f[i].any():
            m = np.where(f[i], 1, 0)
            np.testing.assert_array_equal(d[i], _cv2_reference_distance(m).astype(np.int32))
        else:
            assert (d[i] == NO_FEATURE).all()


def test_distance_transform_bad_method():
    with pytest.raises(ValueError, match="method must be one of"):
        l1_distance_transform(torch.zeros(2, 2, dtype=torch.bool), method="edt")


@pytest.mark.parametrize(
    ("seed", "pred_kind", "target_kind"),
    [(0, "int64", "int64"), (1, "bool", "int64"), (2, "int32", "uint8")],
)
def test_cpu_tc_distances_match_cv2_in_row_major_order(seed, pred_kind, target_kind):
    from geoemb.metrics import tc_distances

    rng = np.random.default_rng(seed)
    preds, target = _structured_case(rng, h=60 + seed, w=300)
    d_ref, p_ref = _cv2_reference_tc(preds, target)
    assert d_ref.max() > 255  # exercises distances past 8 bits
    pt = torch.from_numpy(
        preds.astype({"int64": np.int64, "bool": bool, "int32": np.int32}[pred_kind])
    )
    tt = torch.from_numpy(target.astype(np.int64 if target_kind == "int64" else np.uint8))
    d, hit = tc_distances(pt, tt)
    np.testing.assert_array_equal(d.numpy(), d_ref)
    np.testing.assert_array_equal(hit.numpy(), p_ref)
    d5, hit5 = tc_distances(pt, tt, max_distance=5)
    np.testing.assert_array_equal(d5.numpy(), d_ref[d_ref < 5])
    np.testing.assert_array_equal(hit5.numpy(), p_ref[d_ref < 5])


def test_torch_fallback_path_equals_numba_path(monkeypatch):
    """Without numba the CPU path is the generic torch one (OpenCV transform): same numbers."""
    import geoemb.metrics.rsc as rsc

    rng = np.random.default_rng(11)
    preds, target = _structured_case(rng, w=120)
    _, dwr_fast, curve_fast = _ours(preds, target, batches=2)
    monkeypatch.setattr(rsc, "_numba_kernel", lambda: None)
    _, dwr_slow, curve_slow = _ours(preds, target, batches=2)
    assert float(dwr_fast.compute()) == float(dwr_slow.compute())
    assert torch.equal(curve_fast.count, curve_slow.count)
    assert torch.equal(curve_fast.hits, curve_slow.hits)
    assert int(dwr_fast.n_dropped) == int(dwr_slow.n_dropped) > 0


@pytest.mark.parametrize("device_path", ["numba", "torch"])
def test_dwr_and_curve_share_one_computation_per_batch(monkeypatch, device_path):
    """DWR + curve updated with the same batch compute the distances once (issue 15)."""
    import geoemb.metrics._rsc_numba as kernel
    import geoemb.metrics.distance as distance
    import geoemb.metrics.rsc as rsc

    calls = []
    if device_path == "numba":
        real = kernel._tc_kernel
        monkeypatch.setattr(kernel, "_tc_kernel", lambda *a: calls.append(1) or real(*a))
    else:
        monkeypatch.setattr(rsc, "_numba_kernel", lambda: None)
        real = distance.l1_distance_transform
        monkeypatch.setattr(
            distance, "l1_distance_transform", lambda *a: calls.append(1) or real(*a)
        )
    rng = np.random.default_rng(4)
    preds, target = _random_case(rng, b=4)
    dwr, curve = DistanceWeightedRecall(), DistanceBinnedRecall()
    for s in range(0, 4, 2):
        p, t = torch.from_numpy(preds[s : s + 2]), torch.from_numpy(target[s : s + 2])
        dwr.update(p, t)
        curve.update(p, t)
    assert len(calls) == 2  # one per batch, not one per metric and batch
    _, dwr_ref, *_ = reference_eval(preds, target)
    assert float(dwr.compute()) == pytest.approx(dwr_ref, abs=1e-12)
    assert float(curve.dwr()) == pytest.approx(dwr_ref, abs=1e-12)


@pytest.mark.parametrize("device_path", ["numba", "torch"])
def test_cache_is_keyed_by_content_not_identity(monkeypatch, device_path):
    """The same tensor object edited in place (even behind torch's back, through numpy) between two
    updates must not be served the previous batch's distances."""
    import geoemb.metrics.rsc as rsc

    if device_path == "torch":
        monkeypatch.setattr(rsc, "_numba_kernel", lambda: None)
    rng = np.random.default_rng(9)
    preds_a, target_a = _random_case(rng, b=2)
    preds_b, target_b = _random_case(rng, b=2, p_road=0.08)
    buf_t, buf_p = target_a.copy(), preds_a.copy()
    t, p = torch.from_numpy(buf_t), torch.from_numpy(buf_p)  # shares memory with the buffers
    seq = DistanceWeightedRecall()
    seq.update(p, t)
    version = t._version
    buf_t[...] = target_b  # numpy write: torch's version counter does not move
    buf_p[...] = preds_b
    assert t._version == version
    seq.update(p, t)
    fresh = DistanceWeightedRecall()
    fresh.update(torch.from_numpy(preds_a), torch.from_numpy(target_a))
    fresh.update(torch.from_numpy(preds_b), torch.from_numpy(target_b))
    assert float(seq.compute()) == float(fresh.compute())
    assert int(seq.n_pixels) == int(fresh.n_pixels)
    # only the prediction changes: still recomputed
    d1, h1 = rsc.tc_distances(p, t)
    buf_p[...] = 1 - buf_p
    d2, h2 = rsc.tc_distances(p, t)
    assert torch.equal(d1, d2) and torch.equal(h2, ~h1)


@pytest.mark.parametrize("bad", ["target_neg", "target_3", "preds_2", "preds_neg"])
def test_bad_values_raise_on_every_path(monkeypatch, bad):
    import geoemb.metrics.rsc as rsc

    rng = np.random.default_rng(2)
    preds, target = _random_case(rng, b=3)
    if bad == "target_neg":
        target[2, 1, 1] = -1
    elif bad == "target_3":
        target[1, 0, 0] = 3
    elif bad == "preds_2":
        preds[2, -1, -1] = 2
    else:
        preds[0, 3, 3] = -4
    match = "canopy over road" if bad.startswith("target") else "not road"
    for path in ("numba", "torch"):
        if path == "torch":
            monkeypatch.setattr(rsc, "_numba_kernel", lambda: None)
        for cls in (DistanceWeightedRecall, DistanceBinnedRecall):
            with pytest.raises(ValueError, match=match):
                cls().update(torch.from_numpy(preds), torch.from_numpy(target))
    # a failed batch is not cached: the valid batch afterwards is computed afresh
    monkeypatch.undo()
    good_p, good_t = _random_case(np.random.default_rng(2), b=3)
    m = DistanceWeightedRecall()
    m.update(torch.from_numpy(good_p), torch.from_numpy(good_t))
    _, dwr_ref, *_ = reference_eval(good_p, good_t)
    assert float(m.compute()) == pytest.approx(dwr_ref, abs=1e-12)


def test_batches_without_canopy_or_road():
    no_tc = torch.zeros(3, 9, 9, dtype=torch.long)
    no_tc[:, 4] = 1
    m = DistanceBinnedRecall()
    m.update(torch.ones(3, 9, 9, dtype=torch.bool), no_tc)
    assert int(m.count.sum()) == 0 and m.compute()["recall"].numel() == 0
    d, hit = tc_distances_fn()(torch.zeros(0, 4, 4, dtype=torch.long), torch.zeros(0, 4, 4))
    assert d.numel() == 0 and hit.dtype == torch.bool


def tc_distances_fn():
    from geoemb.metrics import tc_distances

    return tc_distances
