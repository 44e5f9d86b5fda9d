"""Compression evaluator + study: rows per job, aggregation, fit-on-train-only, Hydra wiring."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoemb.compression.base import Compressor
from geoemb.compression.study import StudyConfig, evaluate_config
from geoemb.data.embedding_table import EmbeddingTableSource, load_features
from geoemb.errors import DataNotFoundError, InputError
from geoemb.evaluation.compression import CompressionEvaluator
from geoemb.probes import ProbeConfig
from geoemb.run.context import RunContext
from geoemb.synthetic.embedding_table import generate, make_table
from geoemb.utils.run_logger import RunLogger
from tests.helpers import compose_cfg

SMALL = {"n_train": 240, "n_test": 90, "seed": 0, "encoders": {"aef": [16, 4], "dino": [40, 6]}}


def _data(tmp_path, **kw):
    args = dict(encoders=["aef", "dino"], synthetic=True, synthetic_root=tmp_path / "data",
                synthetic_kwargs=SMALL)  # fmt: skip
    args.update(kw)
    return EmbeddingTableSource(**args)


def _ev(tmp_path, configs, data=None, **kw):
    args = dict(
        data=data or _data(tmp_path), configs=configs, probe={"linear": False},
        bootstrap_resamples=199, spectra={"id_max_rows": 200, "local_pca_neighbors": 20},
        results_dir=str(tmp_path / "sweep"), plots=True,
    )  # fmt: skip
    args.update(kw)
    return CompressionEvaluator(**args)


def _ctx(path, logger=None):
    return RunContext.local(path, logger=logger or RunLogger(None))


def test_sweep_jobs_write_rows_and_aggregate(tmp_path):
    # two "multirun jobs" over different configs share one results_dir
    _ev(tmp_path, ["float32", "int8", "pca32+int8"], aggregate=False).run(_ctx(tmp_path / "job0"))
    job = (tmp_path / "job0" / "compression_job.json").read_text()
    assert "pca32+int8" in job and "k=32 exceeds input dimension 16" in job  # aef is 16-d
    logger = RunLogger(None)
    m = _ev(tmp_path, "binary,pca4+int4").run(_ctx(tmp_path / "job1", logger))
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
    _ev(tmp_path, None, mode="aggregate").run(_ctx(tmp_path / "agg"))
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
    study = StudyConfig(probe=ProbeConfig(linear=False), parquet=False, bootstrap_resamples=99)
    row = evaluate_config("pca8+int8", data, base, [f"c{i}" for i in range(4)], study)
    assert row["out_dim"] == 8 and row["bytes_payload"] == 8
    assert seen and all(s.shape[0] == 200 for s in seen)
    assert np.array_equal(seen[0], data["x_train"])


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="compression config"):
        CompressionEvaluator(_data(tmp_path), configs=["int9"])
    with pytest.raises(DataNotFoundError, match="synthetic=true"):  # missing data: one clear error
        EmbeddingTableSource(path=None, synthetic=False).load()
    with pytest.raises(FileNotFoundError, match="experiment=geopool"):
        load_features(tmp_path, "aef")
    # a real cache folder without one encoder's table: one error naming the file and the fix
    with pytest.raises(
        DataNotFoundError, match=r"no table .*dino/mean/standard\.npz.*synthetic=true"
    ):
        EmbeddingTableSource(path=generate(tmp_path / "r", {"aef": (8, 3)}, n_train=30, n_test=10),
                             encoders=["aef", "dino"]).load()  # fmt: skip
    # old spellings name the new one
    for key, new in [("synthetic", "data.synthetic=true"), ("linear_Cs", "evaluation.probe.Cs"),
                     ("features_dir", "data.path"), ("encoders", "data.encoders")]:  # fmt: skip
        with pytest.raises(InputError, match=f"evaluation.{key} was renamed: use {new}"):
            compose_cfg("eval", ["experiment=compression", f"evaluation.{key}=x"], tmp_path)
    with pytest.raises(InputError, match="knn_k=\\[5, 7\\].*give one k"):
        CompressionEvaluator(_data(tmp_path), probe={"knn_k": [5, 7]})
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
        "experiment=compression", "data.synthetic=true", "data.encoders=[aef]",
        "evaluation.configs=[int8,binary]", "evaluation.probe.C=1.0",
        "evaluation.bootstrap_resamples=99", "data.synthetic_kwargs.n_train=200",
        "data.synthetic_kwargs.n_test=60", "evaluation.spectra.id_max_rows=150",
        "evaluation.spectra.local_pca_neighbors=20", "logger=none",
    ], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert 0 < metrics["compression/aef/int8/knn_acc"] <= 1
    out = Path(cfg.paths.output_dir)
    assert (out / "results.csv").exists() and (out / "tables" / "pareto.md").exists()


def test_default_is_real_data_with_one_clear_error(tmp_path):
    import hydra

    from tests.helpers import compose_cfg

    cfg = compose_cfg("eval", ["experiment=compression"], tmp_path)
    assert cfg.data.synthetic is False and cfg.evaluation.data.synthetic is False
    ev = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
    with pytest.raises(DataNotFoundError, match=r"geopool_embeddings.*experiment=geopool.*"
                       r"data\.synthetic=true"):  # fmt: skip
        ev.run(_ctx(tmp_path / "run"))
    with pytest.raises(
        InputError, match="evaluation.synthetic was renamed: use data.synthetic=true"
    ):
        compose_cfg("eval", ["experiment=compression", "evaluation.synthetic=true"], tmp_path)
