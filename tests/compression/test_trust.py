"""Compression study trust rules: content-keyed caches, infeasible configs skipped with a reason,
unexpected failures fail the run, stand-in data seeded by encoder name."""

import logging

import numpy as np
import pandas as pd
import pytest

import geoemb.compression.study as cs
from geoemb.compression import InfeasibleConfigError, build, infeasible_reason
from geoemb.compression.quantizers import AffineQuantizer, ProductQuantizer
from geoemb.data.embedding_table import EmbeddingTableSource, load_features
from geoemb.errors import GeoembError, InputError
from geoemb.evaluation.compression import CompressionEvaluator
from geoemb.reporting.compression import aggregate
from geoemb.run.context import RunContext
from geoemb.synthetic.embedding_table import generate
from geoemb.utils.run_logger import RunLogger


def _ev(tmp_path, configs, seed=0, n_train=120, knn_k=5, **kw):
    small = {"n_train": n_train, "n_test": 60, "seed": seed, "encoders": {"aef": [16, 4]}}
    data = EmbeddingTableSource(encoders=["aef"], synthetic=True, synthetic_root=tmp_path / "data",
                                synthetic_kwargs=small)  # fmt: skip
    args = dict(
        data=data, configs=configs, probe={"linear": False, "knn_k": [knn_k]},
        bootstrap_resamples=99, spectra={"id_max_rows": 100, "local_pca_neighbors": 15},
        results_dir=str(tmp_path / "sweep"), plots=False,
    )  # fmt: skip
    args.update(kw)
    return CompressionEvaluator(**args)


def _ctx(path):
    return RunContext.local(path, logger=RunLogger(None))


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_baseline_and_spectra_caches_are_keyed_by_the_data(tmp_path, monkeypatch):
    knn = _counting(monkeypatch, cs, "run_probes")  # one call: the kNN (and linear) probes
    ids = _counting(monkeypatch, cs, "intrinsic_dimension_report")
    sweep = tmp_path / "sweep"
    _ev(tmp_path, ["float32", "int8"], seed=0).run(_ctx(tmp_path / "j0"))
    assert (len(knn), len(ids)) == (3, 1)  # baseline + 2 configs; one spectrum
    # identical data and protocol: baseline and spectra are reused
    _ev(tmp_path, ["float32"], seed=0).run(_ctx(tmp_path / "j1"))
    assert (len(knn), len(ids)) == (4, 1)
    # other data in the same results_dir (a multirun over data seeds): recomputed, so float32 is
    # compared with its own baseline (the bug: p = 0.856 vs the first run's predictions)
    with pytest.raises(InputError, match="different data"):  # the int8 row is from seed 0
        _ev(tmp_path, ["float32"], seed=1).run(_ctx(tmp_path / "j2"))
    assert (len(knn), len(ids)) == (6, 2)
    row = pd.read_csv(sweep / "rows" / "aef__float32__mean__standard.csv").iloc[0]
    assert row["knn_mcnemar_p"] == 1.0 and row["knn_delta"] == 0.0
    assert row["knn_mcnemar_b"] == 0 and row["knn_mcnemar_c"] == 0
    # rerunning the stale config on the new data makes the table consistent again
    _ev(tmp_path, ["int8"], seed=1).run(_ctx(tmp_path / "j3"))
    df = pd.read_csv(sweep / "results.csv")
    assert len(df) == 2 and df["data_fingerprint"].nunique() == 1
    spec = pd.read_csv(sweep / "spectra.csv")
    assert list(spec["data_fingerprint"]) == [df["data_fingerprint"].iloc[0]]


def test_protocol_change_does_not_reuse_the_baseline(tmp_path, monkeypatch):
    knn = _counting(monkeypatch, cs, "run_probes")
    _ev(tmp_path, ["float32"], aggregate=False).run(_ctx(tmp_path / "j0"))
    _ev(tmp_path, ["float32"], knn_k=3, aggregate=False).run(_ctx(tmp_path / "j1"))
    assert len(knn) == 4  # a k=3 run must not read the k=5 baseline
    ev = _ev(tmp_path, ["int8"])
    with pytest.raises(InputError, match="different probe protocols"):
        ev.run(_ctx(tmp_path / "j2"))


def test_truncated_baseline_cache_is_recomputed(tmp_path, monkeypatch, caplog):
    _ev(tmp_path, ["float32"]).run(_ctx(tmp_path / "j0"))
    (cache,) = (tmp_path / "sweep" / "baseline").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:50])
    knn = _counting(monkeypatch, cs, "run_probes")
    with caplog.at_level(logging.WARNING):
        _ev(tmp_path, ["float32"]).run(_ctx(tmp_path / "j1"))
    assert len(knn) == 2 and "unreadable" in caplog.text
    assert pd.read_csv(tmp_path / "sweep" / "results.csv")["knn_mcnemar_p"].iloc[0] == 1.0


def test_infeasible_config_is_skipped_with_reason(tmp_path, caplog):
    # issue 16 §3: pq_8x8 with 180 training rows < 256 centroids aborted all configs
    with caplog.at_level(logging.WARNING):
        _ev(tmp_path, ["int8", "pq_8x8", "pq_4x4"], n_train=180).run(_ctx(tmp_path / "j0"))
    assert "skipping pq_8x8 on aef" in caplog.text
    sweep = tmp_path / "sweep"
    assert set(pd.read_csv(sweep / "results.csv")["config"]) == {"int8", "pq_4x4"}
    sk = pd.read_csv(sweep / "tables" / "skipped.csv")
    assert list(sk["config"]) == ["pq_8x8"]
    assert "180 training rows < 2^nbits=256 centroids" in sk["reason"].iloc[0]
    assert "pq_8x8" in (sweep / "tables" / "skipped.md").read_text()


@pytest.mark.parametrize("exc", [RuntimeError, ValueError])
def test_unexpected_failure_fails_the_run_and_blocks_tables(tmp_path, monkeypatch, exc):
    def boom(self, X):
        raise exc("simulated bug")

    monkeypatch.setattr(ProductQuantizer, "_fit", boom)  # feasible config that fails to fit
    with pytest.raises(GeoembError, match="pq_4x4.*simulated bug"):
        _ev(tmp_path, ["int8", "pq_4x4", "binary"]).run(_ctx(tmp_path / "j0"))
    sweep = tmp_path / "sweep"
    assert not (sweep / "results.csv").exists() and not (sweep / "tables").exists()
    # a later job (or mode=aggregate) must not build a table that silently lacks pq_4x4
    with pytest.raises(GeoembError, match="1 config\\(s\\) failed"):
        aggregate(sweep)
    monkeypatch.undo()
    _ev(tmp_path, ["pq_4x4", "binary"]).run(_ctx(tmp_path / "j1"))
    assert set(pd.read_csv(sweep / "results.csv")["config"]) == {"int8", "pq_4x4", "binary"}


def test_feasibility_is_checked_before_fitting(monkeypatch):
    called = []
    monkeypatch.setattr(ProductQuantizer, "_fit", lambda self, X: called.append(1))
    x = np.random.default_rng(0).standard_normal((180, 16)).astype(np.float32)
    with pytest.raises(InfeasibleConfigError, match="180 training rows"):
        build("pq_8x8").fit(x)
    with pytest.raises(InfeasibleConfigError, match="not divisible"):
        build("pq_5x4").fit(x)
    with pytest.raises(InfeasibleConfigError, match="k=32 exceeds"):
        build("pca32+int8").fit(x)
    with pytest.raises(InfeasibleConfigError, match="pca8\\+pq_8x8: 180 training rows"):
        build("pca8+pq_8x8").fit(x)
    assert called == []
    assert infeasible_reason("pca64+int8", 30, 64) is not None  # rank <= min(N, D)
    assert infeasible_reason("turboquant_mse_4", 100, 2) is not None
    assert infeasible_reason("pq_8x8", 256, 64) is None and infeasible_reason("int8", 1, 4) is None
    # a broken value is not "infeasible": NaN still raises a plain error, not the skip signal
    x[3, 2] = np.nan
    with pytest.raises(ValueError) as e:
        AffineQuantizer(8).fit(x)
    assert not isinstance(e.value, InfeasibleConfigError)


def test_standin_encoder_data_do_not_depend_on_the_other_encoders(tmp_path):
    kw = dict(n_train=40, n_test=10, methods=("mean", "gem"))
    alone = generate(tmp_path / "a", {"dinov3": (24, 4)}, **kw)
    many = generate(tmp_path / "b", {"aef": (8, 3), "tessera": (12, 3), "dinov3": (24, 4)}, **kw)
    other = generate(tmp_path / "c", {"dinov3": (24, 4), "aef": (8, 3)}, methods=("gem",),
                     n_train=40, n_test=10)  # fmt: skip
    for split in ("standard", "spatial"):
        a = load_features(alone, "dinov3", "gem", split)
        for root in (many, other):
            b = load_features(root, "dinov3", "gem", split)
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
    # different names / seeds / splits still give different data
    s, p = load_features(alone, "dinov3", "gem"), load_features(alone, "dinov3", "gem", "spatial")
    assert not np.array_equal(s["x_train"], p["x_train"])
    m = load_features(alone, "dinov3", "mean")
    assert not np.array_equal(s["x_train"], m["x_train"])
