"""Compression evaluator: rows per job, aggregation, fit-on-train-only, Hydra wiring."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoemb.compression.base import Compressor
from geoemb.data.synthetic.embedding_table import generate, make_table
from geoemb.evaluation.compression import (
    CompressionEvaluator,
    evaluate_config,
    load_features,
    pareto_front,
)
from geoemb.utils.run_logger import RunLogger

SMALL = {"n_train": 240, "n_test": 90, "seed": 0, "encoders": {"aef": [16, 4], "dino": [40, 6]}}


def _ev(tmp_path, configs, **kw):
    args = dict(
        synthetic=True, data_dir=str(tmp_path / "data"), encoders=["aef", "dino"], configs=configs,
        linear=False, bootstrap_resamples=199, id_max_rows=200, local_pca_neighbors=20,
        results_dir=str(tmp_path / "sweep"), synthetic_kwargs=SMALL, plots=True,
    )  # fmt: skip
    args.update(kw)
    return CompressionEvaluator(**args)


def test_sweep_jobs_write_rows_and_aggregate(tmp_path):
    # two "multirun jobs" over different configs share one results_dir
    _ev(tmp_path, ["float32", "int8", "pca32+int8"], aggregate=False).run(
        tmp_path / "job0", RunLogger(None)
    )
    job = (tmp_path / "job0" / "compression_job.json").read_text()
    assert "pca32+int8" in job and "k=32 exceeds input dimension 16" in job  # aef is 16-d
    logger = RunLogger(None)
    m = _ev(tmp_path, "binary,pca4+int4").run(tmp_path / "job1", logger)
    assert "compression/dino/binary/hamming_knn_acc" in m
    sweep = tmp_path / "sweep"
    df = pd.read_csv(sweep / "results.csv")
    assert len(df) == 9 and set(df["data_source"]) == {"synthetic"}
    f32 = df[df.config == "float32"]
    assert np.all(f32["knn_delta"] == 0) and np.all(f32["knn_mcnemar_p"] == 1.0)
    assert np.all(f32[["knn_ci_low", "knn_ci_high"]].to_numpy() == 0)
    b = df[df.config == "binary"].set_index("encoder")
    assert b.loc["aef", "bytes_payload"] == 2 and b.loc["dino", "bytes_payload"] == 5
    assert b["hamming_knn_acc"].notna().all() and b["dimension_balance"].between(0, 0.5).all()
    assert {"knn_worst_class", "knn_f1_drop/class0", "bytes_parquet_zstd"} <= set(df.columns)
    for name in ["quantization_knn", "pareto", "binary_hamming", "per_class", "significance",
                 "pca_variance", "intrinsic_dim"]:  # fmt: skip
        for ext in ("csv", "md", "tex"):
            assert (sweep / "tables" / f"{name}.{ext}").exists(), (name, ext)
    assert (sweep / "pareto_knn.png").stat().st_size > 1000
    assert "compression/results" in logger.tables and "compression/pareto_knn" in logger.images
    q = pd.read_csv(sweep / "tables" / "quantization_knn.csv")
    assert list(q["method"][:3]) == ["float32", "int8", "binary"] and {"aef", "dino"} <= set(
        q.columns
    )
    # aggregate-only mode rebuilds from the rows
    (sweep / "results.csv").unlink()
    _ev(tmp_path, None, mode="aggregate").run(tmp_path / "agg", RunLogger(None))
    assert len(pd.read_csv(sweep / "results.csv")) == 9


def test_compressor_is_fit_on_train_rows_only(monkeypatch):
    data = make_table(200, 80, 24, num_classes=4, intrinsic_dim=5, seed=3)
    seen = []
    orig = Compressor.fit

    def spy(self, X):
        seen.append(np.asarray(X))
        return orig(self, X)

    monkeypatch.setattr(Compressor, "fit", spy)
    base = {"knn": np.zeros(80, np.int64)}
    row = evaluate_config("pca8+int8", data, base, [f"c{i}" for i in range(4)], linear=False,
                          parquet=False, bootstrap_resamples=99)  # fmt: skip
    assert row["out_dim"] == 8 and row["bytes_payload"] == 8
    assert seen and all(s.shape[0] == 200 for s in seen)
    assert np.array_equal(seen[0], data["x_train"])


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.choice([1, 2, 4, 8, 16], 40), rng.random(40)
    ref = [not np.any((x <= x[i]) & (y > y[i])) for i in range(40)]
    got = pareto_front(x, y)
    # brute force keeps ties in accuracy at larger size; the front keeps the cheapest of ties
    assert np.all(got <= np.array(ref)) and got[np.argmax(y)]
    assert all(got[i] == ref[i] for i in range(40) if not np.any((x < x[i]) & (y == y[i])))


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="compression config"):
        CompressionEvaluator(synthetic=True, configs=["int9"])
    with pytest.raises(ValueError, match="synthetic=true"):
        CompressionEvaluator(features_dir=None, synthetic=False)
    with pytest.raises(FileNotFoundError, match="experiment=geopool"):
        load_features(tmp_path, "aef")
    root = generate(tmp_path / "d", {"aef": (8, 3)}, n_train=30, n_test=10)
    d = load_features(root, "aef", "mean", "spatial")
    assert d["x_train"].shape == (30, 8) and d["y_test"].dtype == np.int64
    np.savez(root / "aef" / "mean" / "standard.npz", x_train=d["x_train"])
    with pytest.raises(KeyError, match="missing arrays"):
        load_features(root, "aef")


@pytest.mark.slow
def test_evaluate_py_experiment_compression_composes_and_runs(tmp_path):
    from geoemb.tasks import evaluate
    from tests.helpers import compose_cfg

    cfg = compose_cfg("eval", [
        "experiment=compression", "evaluation.encoders=[aef]", "evaluation.configs=[int8,binary]",
        "evaluation.linear_C=1.0", "evaluation.bootstrap_resamples=99",
        "evaluation.synthetic_kwargs.n_train=200", "evaluation.synthetic_kwargs.n_test=60",
        "evaluation.id_max_rows=150", "evaluation.local_pca_neighbors=20", "logger=none",
    ], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert 0 < metrics["compression/aef/int8/knn_acc"] <= 1
    out = Path(cfg.paths.output_dir)
    assert (out / "results.csv").exists() and (out / "tables" / "pareto.md").exists()
