"""GeoPool evaluator: end to end on a synthetic tree, content-keyed cache, heads first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio

from geoemb.data.eurosat_embed import EuroSATEmbedDataModule
from geoemb.errors import CheckpointError, InputError
from geoemb.evaluation import geopool as G
from geoemb.evaluation.geopool import GeoPoolEvaluator
from geoemb.pooling import features as F
from geoemb.run.context import RunContext
from geoemb.synthetic.eurosat_embed import generate

POOL_MANY = F.pool_many


def _dm(root, **kw):
    return EuroSATEmbedDataModule(root=str(root), batch_size=16, **kw)


def _ev(dm, **kw):
    kw = {"encoders": ["aef"], "probe": {"C": 1.0}, "progress": False, **kw}
    return GeoPoolEvaluator(dm, **kw)


def _ctx(path):
    return RunContext.local(path, seed=0, device="cpu")


def _refuse_pooling(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pooled although the cache holds these features")

    monkeypatch.setattr(F, "pool_many", boom)


@pytest.mark.slow
def test_evaluator_end_to_end(syn_root, tmp_path, monkeypatch):
    ev = _ev(_dm(syn_root), methods=["mean", "stats", "pca_64", "bovw_128"])
    ctx = _ctx(tmp_path / "run")
    metrics = ev.run(ctx)
    rd = tmp_path / "run"
    jobs = sorted(p.name for p in (rd / "jobs").glob("*.csv"))
    # pca_64 skipped: 40 train samples < 64 components
    assert jobs == ["aef__bovw_128.csv", "aef__mean.csv", "aef__stats.csv"]
    df = pd.read_csv(rd / "geopool_results.csv")
    assert (df["data_source"] == "synthetic").all()  # a generated tree is tagged even as data.root
    assert len(df) == 3 * 2 * 2  # methods x splits x probes
    stats_lin = df[(df.pool == "stats") & (df.probe == "linear")]["accuracy"]
    assert stats_lin.mean() > 0.4  # chance 0.1
    assert (df[df.probe == "knn_5"]["accuracy"] > 0.1).mean() > 0.5
    assert metrics["test/linear_acc/spatial/aef/stats"] == pytest.approx(
        df.query("pool=='stats' and probe=='linear' and split_type=='spatial' and encoder=='aef'")[
            "accuracy"
        ].item()
    )
    assert (rd / "tables" / "linear_table.tex").is_file() and (
        rd / "plots" / "random_vs_spatial.png"
    ).is_file()
    assert "geopool/linear_table" in ctx.logger.tables
    assert "geopool/random_vs_spatial" in ctx.logger.images
    npz = rd / "embeddings" / "aef" / "stats" / "spatial.npz"
    with np.load(npz) as z:
        assert z["x_train"].shape == (40, 256) and z["x_test"].shape[1] == 256
    # second run uses the cache: pooling is never called
    _refuse_pooling(monkeypatch)
    again = ev.run(_ctx(tmp_path / "run"))
    assert (
        again["test/linear_acc/spatial/aef/stats"] == metrics["test/linear_acc/spatial/aef/stats"]
    )


def test_changed_files_are_never_served_from_the_cache(tmp_path, monkeypatch):
    """Regression: the cache was keyed by a description (root, encoder, method, split, counts), so
    rewritten chips under the same names got the stale features of the old files."""
    root = generate(tmp_path / "ee", n_per_class=5, encoders=("aef",), size=16, seed=0)
    dm = _dm(root, size=16)
    ev = _ev(dm, methods=["mean"], split_types=["standard"], aggregate=False,
             probe={"knn_k": [1], "linear": False})  # fmt: skip
    ev.run(_ctx(tmp_path / "run"))
    npz = tmp_path / "run" / "embeddings" / "aef" / "mean" / "standard.npz"
    before = np.load(npz)["x_train"].copy()
    first = (root / "eurosat-train.txt").read_text().split()[0].rsplit(".", 1)[0]
    chip = root / "eurosat-aef" / first.rsplit("_", 1)[0] / f"{first}.tif"
    with rasterio.open(chip, "r+") as ds:  # same name, size and shape; other values
        ds.write(255 - ds.read())
    calls = []
    monkeypatch.setattr(F, "pool_many", lambda *a, **k: calls.append(1) or POOL_MANY(*a, **k))
    ev.run(_ctx(tmp_path / "run"))
    assert calls, "features of changed files were served from the cache"
    after = np.load(npz)["x_train"]
    assert not np.allclose(after[0], before[0]) and np.array_equal(after[1:], before[1:])
    # unchanged files: a hit again (the second run's entry is reused)
    _refuse_pooling(monkeypatch)
    ev.run(_ctx(tmp_path / "run"))


def test_head_checkpoints_are_checked_before_any_pooling(syn_root, tmp_path, monkeypatch):
    bad = tmp_path / "head.ckpt"
    bad.write_text("not a checkpoint")
    monkeypatch.setattr(G, "pool_split", lambda *a, **k: pytest.fail("pooled before heads"))
    with pytest.raises(CheckpointError, match="head.ckpt"):
        _ev(_dm(syn_root), methods=["mean"], heads=[str(bad)]).run(_ctx(tmp_path / "run"))


def test_missing_real_data_is_one_clear_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(G, "pool_split", lambda *a, **k: pytest.fail("pooled without data"))
    ev = _ev(_dm(tmp_path / "nowhere"), methods=["mean"])
    with pytest.raises(FileNotFoundError, match=r"data\.synthetic=true") as info:
        ev.run(_ctx(tmp_path / "run"))
    assert "eurosat" in str(info.value).lower() and "nowhere" in str(info.value)


def test_evaluator_bad_args(tmp_path):
    dm = _dm(tmp_path)
    with pytest.raises(ValueError, match="unknown pooling method"):
        GeoPoolEvaluator(dm, methods=["mean", "avg"])
    with pytest.raises(ValueError, match="evaluation.encoders"):
        GeoPoolEvaluator(dm, encoders=["sentinel"])
    with pytest.raises(InputError, match="evaluation.probe"):
        GeoPoolEvaluator(dm, probe={"linear_C": 1.0})
    with pytest.raises(InputError, match="data=eurosat_embed"):
        GeoPoolEvaluator(None)


def test_old_keys_are_not_constructor_arguments(tmp_path):
    """Renamed keys are refused by the run layer (tests/run/test_renamed.py), never passed on."""
    dm = _dm(tmp_path)
    for old in ("synthetic", "root", "linear_C", "Cs", "cv", "device"):
        with pytest.raises(TypeError, match=old):
            GeoPoolEvaluator(dm, **{old: None})


def test_synthetic_stand_in_holds_the_evaluators_encoders(tmp_path):
    dm = _dm(tmp_path / "real", synthetic=True, synthetic_root=str(tmp_path / "syn"),
             synthetic_kwargs={"n_per_class": 5, "size": 16})  # fmt: skip
    ev = _ev(dm, encoders=["aef", "tessera"], methods=["mean"])
    assert ev.source.synthetic_kwargs == {
        "n_per_class": 5,
        "size": 16,
        "encoders": ["aef", "tessera"],
    }
    root = ev.data_root()
    assert (root / "eurosat-aef").is_dir() and (root / "eurosat-tessera").is_dir()
    assert str(root).startswith(str(tmp_path / "syn")) and ev.data_source(root) == "synthetic"
