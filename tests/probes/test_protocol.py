"""The probe protocol: ProbeConfig knobs and run_probes == the single probes it wires."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier

from geoemb.errors import InputError
from geoemb.probes import (
    DEFAULT_CS,
    ProbeConfig,
    knn_classify,
    linear_probe,
    run_probes,
)


def _data(seed=0, n=300, m=120, d=12, k=4):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 1.2
    ytr, yte = rng.integers(0, k, n), rng.integers(0, k, m)
    xtr = (centers[ytr] + rng.normal(size=(n, d))).astype(np.float32)
    xte = (centers[yte] + rng.normal(size=(m, d))).astype(np.float32)
    return xtr, ytr, xte, yte


def test_defaults_are_the_published_protocol():
    cfg = ProbeConfig()
    assert cfg.knn_k == (5,) and cfg.linear and cfg.C is None and cfg.Cs == DEFAULT_CS
    assert (cfg.cv, cfg.max_iter, cfg.seed) == (3, 1000, 0)
    assert cfg.names == ["knn_5", "linear"]
    assert ProbeConfig(knn_k=7).knn_k == (7,) and ProbeConfig(knn_k="1,3").knn_k == (1, 3)


def test_run_probes_equals_the_probes_and_sklearn():
    xtr, ytr, xte, yte = _data()
    cfg = ProbeConfig(knn_k=(1, 5), C=None, Cs=(0.01, 1.0), cv=3, seed=3)
    res = run_probes(xtr, ytr, xte, yte, cfg)
    assert list(res.preds) == ["knn_1", "knn_5", "linear"]
    for k in (1, 5):
        ref = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(xtr, ytr)
        np.testing.assert_array_equal(res.preds[f"knn_{k}"], ref.predict(xte))
        assert res.metrics[f"knn_{k}"]["accuracy"] == pytest.approx(
            accuracy_score(yte, res.preds[f"knn_{k}"])
        )
        assert res.metrics[f"knn_{k}"]["f1_macro"] == pytest.approx(
            f1_score(yte, res.preds[f"knn_{k}"], average="macro")
        )
    lin = linear_probe(xtr, ytr, xte, Cs=(0.01, 1.0), cv=3, seed=3)
    np.testing.assert_array_equal(res.preds["linear"], lin.preds.numpy())
    assert res.C == lin.C and res.cv_scores == lin.cv_scores
    assert set(res.seconds) == {"knn_1", "knn_5", "linear"}


def test_run_probes_knobs_reach_the_probes():
    xtr, ytr, xte, yte = _data(1)
    res = run_probes(xtr, ytr, xte, None, ProbeConfig(knn_k=(3,), linear=False))
    assert list(res.preds) == ["knn_3"] and res.C is None and res.metrics == {}
    np.testing.assert_array_equal(res.preds["knn_3"], knn_classify(xtr, ytr, xte, 3).numpy())
    fixed = run_probes(xtr, ytr, xte, yte, ProbeConfig(knn_k=(), C=0.5, max_iter=3))
    ref = linear_probe(xtr, ytr, xte, C=0.5, max_iter=3)
    assert fixed.C == 0.5 and fixed.cv_scores == {}
    np.testing.assert_array_equal(fixed.preds["linear"], ref.preds.numpy())
    # torch inputs and a device give the same predictions as numpy on CPU
    on_dev = run_probes(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                        yte, ProbeConfig(linear=False), device="cpu")  # fmt: skip
    np.testing.assert_array_equal(
        on_dev.preds["knn_5"],
        run_probes(xtr, ytr, xte, cfg=ProbeConfig(linear=False)).preds["knn_5"],
    )


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"knn_k": (0,)}, "knn_k must hold positive"),
        ({"Cs": ()}, "Cs must be a non-empty"),
        ({"Cs": (1.0, -1.0)}, "Cs must be a non-empty"),
        ({"C": 0.0}, "C must be a positive"),
        ({"cv": 1}, "cv must be >= 2"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"knn_k": "five"}, "invalid value"),
    ],
)
def test_bad_knobs_name_the_config_key(kw, match):
    with pytest.raises(InputError, match=f"evaluation.probe.*{match}"):
        ProbeConfig(**kw)


def test_from_config_node_and_unknown_keys():
    cfg = ProbeConfig.from_config({"knn_k": [5, 7], "C": 1.0}, seed=9)
    assert cfg.knn_k == (5, 7) and cfg.C == 1.0 and cfg.seed == 9
    assert ProbeConfig.from_config(cfg) == cfg and ProbeConfig.from_config(None) == ProbeConfig()
    with pytest.raises(InputError, match=r"unknown key\(s\) \['linear_Cs'\]"):
        ProbeConfig.from_config({"linear_Cs": [1.0]})
