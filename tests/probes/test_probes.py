"""Probes vs sklearn: kNN predictions, linear probe accuracy/C, folds, metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from geoemb.probes import (
    classification_metrics,
    knn_classify,
    linear_probe,
    stratified_kfold_test_folds,
)


def sk_knn(xtr, ytr, xte, k):
    return (
        KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        .fit(xtr, ytr)
        .predict(xte)
    )


@pytest.mark.parametrize("k", [1, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_identical_to_sklearn_random(k, dtype):
    rng = np.random.default_rng(k)
    centers = rng.normal(size=(6, 16)) * 1.5
    ytr = rng.integers(0, 6, 700)
    yte = rng.integers(0, 6, 300)
    xtr = (centers[ytr] + rng.normal(size=(700, 16))).astype(dtype)
    xte = (centers[yte] + rng.normal(size=(300, 16))).astype(dtype)
    ytr = ytr * 3 + 7  # non-contiguous labels
    ref = sk_knn(xtr, ytr, xte, k)
    for backend in ("numpy", "torch"):
        got = knn_classify(xtr, ytr, xte, k=k, batch_size=128, backend=backend)
        assert got.dtype == torch.long
        np.testing.assert_array_equal(got.numpy(), ref)


def test_knn_identical_to_sklearn_with_ties():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(80, 8)).astype(np.float32)
    lab = rng.integers(0, 4, 80)
    # duplicated training points (same label) -> exact distance ties, incl. at the k-th place
    xtr = np.concatenate([base, base[:40], base[:10], np.zeros((2, 8), np.float32)])
    ytr = np.concatenate([lab, lab[:40], lab[:10], [1, 2]])
    # queries: exact copies of training points, a zero vector, and fresh points
    xte = np.concatenate(
        [base[:30], np.zeros((1, 8), np.float32), rng.normal(size=(100, 8)).astype(np.float32)]
    )
    for k in (2, 3, 4, 5, 6):  # even k gives many vote ties -> smallest label wins
        np.testing.assert_array_equal(
            knn_classify(xtr, ytr, xte, k=k).numpy(), sk_knn(xtr, ytr, xte, k), err_msg=f"k={k}"
        )


def test_knn_identical_with_heavy_boundary_ties():
    # integer features: many training points at exactly the k-th distance with different labels
    rng = np.random.default_rng(5)
    xtr = rng.integers(0, 3, size=(300, 3)).astype(np.float32)
    ytr = rng.integers(0, 4, size=300)
    xte = rng.integers(0, 3, size=(200, 3)).astype(np.float32)
    # offset codes (like raw AEF uint8): float32 cosine distances are quantised -> ties
    ctr = (rng.normal(size=(400, 32)) + 127).astype(np.float32)
    cte = (rng.normal(size=(150, 32)) + 127).astype(np.float32)
    ctr_y = rng.integers(0, 5, 400)
    for k in (1, 4, 5):
        got = knn_classify(xtr, ytr, xte, k=k, batch_size=64).numpy()
        np.testing.assert_array_equal(got, sk_knn(xtr, ytr, xte, k), err_msg=f"k={k}")
        got = knn_classify(ctr, ctr_y, cte, k=k).numpy()
        np.testing.assert_array_equal(got, sk_knn(ctr, ctr_y, cte, k), err_msg=f"codes k={k}")
    # torch backend (the CUDA path): exact ties go to the lowest training index
    d = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]], np.float32)
    assert knn_classify(d, np.array([3, 1, 0, 2, 0]), d[:1], k=1, backend="torch").tolist() == [3]


def test_knn_vote_ties_pick_smallest_label():
    xtr = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]], np.float32)
    ytr = np.array([5, 5, 2, 2])
    xte = np.array([[1.0, 1.0]], np.float32)
    assert knn_classify(xtr, ytr, xte, k=4).tolist() == [2]
    assert sk_knn(xtr, ytr, xte, 4).tolist() == [2]


def test_knn_errors():
    with pytest.raises(ValueError, match="k must be"):
        knn_classify(np.ones((3, 2)), np.arange(3), np.ones((1, 2)), k=4)
    with pytest.raises(ValueError, match="features"):
        knn_classify(np.ones((3, 2)), np.arange(3), np.ones((1, 3)), k=1)


def test_stratified_folds_match_sklearn():
    rng = np.random.default_rng(3)
    for n_splits in (3, 5):
        y = rng.choice([4, 1, 9, 2], size=257, p=[0.5, 0.2, 0.2, 0.1])
        folds = stratified_kfold_test_folds(y, n_splits)
        for i, (_, te) in enumerate(StratifiedKFold(n_splits).split(np.zeros(len(y)), y)):
            np.testing.assert_array_equal(np.flatnonzero(folds == i), te)


def _sk_lrcv(xtr, ytr, cs):
    sc = StandardScaler().fit(xtr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LogisticRegressionCV(
            Cs=list(cs),
            cv=3,
            max_iter=1000,
            solver="lbfgs",
            scoring="accuracy",
            l1_ratios=(0,),
            use_legacy_attributes=False,
        ).fit(sc.transform(xtr), ytr)
    return m, sc


def _as_scalar(c):
    return float(np.ravel(c)[0])


def test_linear_probe_matches_logisticregressioncv():
    rng = np.random.default_rng(1)
    n, d, k = 450, 40, 4
    y = rng.integers(0, k, n + 300)
    x = rng.normal(size=(n + 300, d))
    x[:, :3] += np.eye(k, 3)[y] * 1.2  # weak signal in 3 dims, 37 noise dims -> C matters
    x = (x * rng.uniform(0.5, 20, d) + rng.normal(0, 5, d)).astype(np.float32)
    xtr, ytr, xte, yte = x[:n], y[:n], x[n:], y[n:]
    cs = (1e-3, 1e-2, 1e-1, 1, 10, 100)
    res = linear_probe(xtr, ytr, xte, Cs=cs)
    sk, sc = _sk_lrcv(xtr, ytr, cs)
    sk_acc = accuracy_score(yte, sk.predict(sc.transform(xte)))
    acc = accuracy_score(yte, res.preds.numpy())
    assert res.C == _as_scalar(sk.C_)
    assert abs(acc - sk_acc) <= 0.005
    assert set(res.cv_scores) == set(cs)


def test_linear_probe_separable_case_same_c_and_fixed_c_coefs():
    rng = np.random.default_rng(2)
    k, d = 3, 10
    y = rng.integers(0, k, 600)
    x = rng.normal(size=(600, d)) + 4.0 * np.eye(k, d)[y]
    x = x.astype(np.float32)
    xtr, ytr, xte, yte = x[:400], y[:400], x[400:], y[400:]
    res = linear_probe(xtr, ytr, xte)
    sk, sc = _sk_lrcv(xtr, ytr, (1e-3, 1e-2, 1e-1, 1, 10, 100))
    assert res.C == _as_scalar(sk.C_)
    assert abs(accuracy_score(yte, res.preds.numpy()) - sk.score(sc.transform(xte), yte)) <= 0.005
    # fixed C: same optimum as sklearn LogisticRegression on standardized data
    fixed = linear_probe(xtr, ytr, xte, C=1.0, tol=1e-6)
    assert fixed.C == 1.0 and fixed.cv_scores == {}
    lr = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8).fit(sc.transform(xtr), ytr)
    np.testing.assert_allclose(fixed.coef.numpy(), lr.coef_, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(fixed.preds.numpy(), lr.predict(sc.transform(xte)))
    np.testing.assert_array_equal(fixed.predict(xte).numpy(), fixed.preds.numpy())


def test_classification_metrics_equal_sklearn():
    rng = np.random.default_rng(4)
    yt = rng.integers(0, 6, 500)
    yp = np.where(rng.random(500) < 0.7, yt, rng.integers(0, 7, 500))  # 6 never in y_true
    yp[yp == 3] = 2  # class 3 never predicted
    got = classification_metrics(torch.from_numpy(yt), yp)
    kw = {"zero_division": 0}
    ref = {
        "accuracy": accuracy_score(yt, yp),
        "f1_macro": f1_score(yt, yp, average="macro", **kw),
        "f1_weighted": f1_score(yt, yp, average="weighted", **kw),
        "precision_macro": precision_score(yt, yp, average="macro", **kw),
        "recall_macro": recall_score(yt, yp, average="macro", **kw),
    }
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    labels = list(range(8))
    got8 = classification_metrics(yt, yp, num_classes=8)
    assert got8["f1_macro"] == pytest.approx(
        f1_score(yt, yp, average="macro", labels=labels, **kw), abs=1e-12
    )
