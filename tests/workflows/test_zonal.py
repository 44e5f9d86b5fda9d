"""Zonal workflow end to end: the evaluator on the synthetic AEF stand-in (tiny sizes), the CLI on
the same files, the config that `evaluate.py experiment=zonal_stats` composes, and the clear errors
for real data that is not there and for renamed keys."""

from __future__ import annotations

import geopandas as gpd
import hydra
import pandas as pd
import pytest
import rasterio

import geoemb.zonal.distributed as zdist
from geoemb.errors import DataNotFoundError, InputError, OutputError
from geoemb.evaluation.zonal import ZonalStatsEvaluator
from geoemb.run.context import RunContext
from geoemb.run.renamed import RENAMED
from geoemb.sources import EmbeddingRasters, raster_source
from geoemb.utils.dask import DaskSpec
from geoemb.zonal.cli import main
from tests.helpers import compose_cfg

SMALL = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zonal_wf")
    return raster_source("aef", root=root / "aef", synthetic=True,
                         synthetic_root=root / "synthetic", synthetic_kwargs=SMALL)  # fmt: skip


@pytest.mark.slow
def test_evaluator_and_cli(data, tmp_path):
    ev = ZonalStatsEvaluator(data=data, pooling={"num_workers": 2, "progress": False})
    ctx = RunContext.local(tmp_path / "run", seed=0)
    metrics = ev.run(ctx)
    run = tmp_path / "run"
    for f in ("features.parquet", "pca_rgb.tif", "pca_rgb.png", "report.md", "r2.md", "r2.png",
              "pc_scatter.png"):  # fmt: skip
        assert (run / f).exists(), f
    assert metrics["zonal/urban/acc"] > metrics["zonal/urban/baseline"]
    assert metrics["zonal/r2/log_land_area"] > 0.3 and metrics["zonal/polygons_empty"] == 0
    assert "zonal/r2" in ctx.logger.tables and "zonal/pca_rgb" in ctx.logger.images
    report = (run / "report.md").read_text()
    assert "Classification" in report and "pca_rgb.png" in report
    assert report.startswith("# Zonal embedding statistics (synthetic data)")
    with rasterio.open(run / "pca_rgb.tif") as ds:
        assert ds.tags()["data_source"] == "synthetic"

    # CLI on the same synthetic data
    syn = data.resolve().tile_index.parent
    feats = tmp_path / "cli" / "f.parquet"
    assert main(["stats", str(syn / "blocks.gpkg"), "--tile-index", str(syn / "aef_index.gpkg"),
                 "--year", "2020", "--decode", "aef", "--method", "stats", "-o", str(feats),
                 "--no-progress", "--workers", "2"]) == 0  # fmt: skip
    g = gpd.read_parquet(feats)
    assert "emb_min_00" in g.columns and "emb_std_07" in g.columns and (g.pixel_count > 0).all()
    assert main(["pca-rgb", str(feats), "-o", str(tmp_path / "cli" / "rgb.tif"), "--resolution", "20",
                 "--crs", "utm"]) == 0  # fmt: skip
    with rasterio.open(tmp_path / "cli" / "rgb.tif") as ds:
        assert ds.count == 3 and ds.res == (20.0, 20.0) and ds.crs.to_epsg() == 32610
        assert ds.tags()["data_source"] == "synthetic"  # provenance travels through the files
    assert main(["evaluate", str(feats), "-o", str(tmp_path / "cli" / "eval"), "--pca-k", "5"]) == 0
    assert "data_source=synthetic" in (tmp_path / "cli" / "eval" / "report.md").read_text()


def test_real_mode_requires_inputs(tmp_path):
    ev = ZonalStatsEvaluator(data=raster_source("aef", root=tmp_path / "aef"))
    with pytest.raises(DataNotFoundError, match="data.synthetic=true") as e:
        ev.run(RunContext.local(tmp_path / "run"))
    msg = str(e.value)  # one error naming everything missing and where to get it
    assert "aef_index.gpkg" in msg and "evaluation.polygons is not set" in msg
    assert "census.gov" in msg and "source.coop" in msg
    assert not list((tmp_path / "run").iterdir())  # nothing written


def test_features_output_checked_before_pixel_work(data, tmp_path, monkeypatch):
    # regression: the evaluator wrote features.parquet only after all the pixel work
    def boom(*a, **k):
        raise AssertionError("pixel work started before the output check")

    monkeypatch.setattr(zdist, "run_partition", boom)
    (tmp_path / "run" / "features.parquet").mkdir(parents=True)
    ev = ZonalStatsEvaluator(data=data, pooling={"progress": False})
    with pytest.raises(OutputError, match="existing directory"):
        ev.run(RunContext.local(tmp_path / "run"))


def test_renamed_keys_name_the_new_spelling(data):
    for key, new in RENAMED[ZonalStatsEvaluator.__module__ + ".ZonalStatsEvaluator"].items():
        with pytest.raises(TypeError):  # the run layer refuses them (tests/run/test_renamed.py)
            ZonalStatsEvaluator(data=data, **{key.split(".", 1)[1]: None})
        assert new.split("=")[0].split(" ")[0].split(".")[0] in ("data", "evaluation", "seed")
    with pytest.raises(TypeError, match="nope"):
        ZonalStatsEvaluator(data=data, nope=None)
    with pytest.raises(InputError, match="compose data=aef"):
        ZonalStatsEvaluator(data=None)
    with pytest.raises(InputError, match="evaluation.pooling: unknown key"):
        ZonalStatsEvaluator(data=data, pooling={"methd": "mean"})


def test_experiment_config_builds_the_evaluator(tmp_path):
    cfg = compose_cfg("eval", ["experiment=zonal_stats", "data.synthetic=true"], tmp_path)
    assert cfg.data.product == "aef" and cfg.data.synthetic is True
    ev = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
    assert isinstance(ev.data, EmbeddingRasters) and ev.data.synthetic
    assert ev.pooling.method == "mean_std" and ev.filters.max_land_km2 == 25.0
    assert ev.analysis.rgb_crs == "utm" and ev.data.decode == "aef_power"
    real = compose_cfg("eval", ["experiment=zonal_stats"], tmp_path)
    assert real.data.synthetic is False  # real data by default, with the one clear error
    with pytest.raises(InputError, match="evaluation.synthetic was renamed: use data.synthetic"):
        compose_cfg("eval", ["experiment=zonal_stats", "evaluation.synthetic=true"], tmp_path)


@pytest.mark.slow
def test_hydra_dask_local_equals_dask_none(data, tmp_path):
    """`evaluate.py experiment=zonal_stats dask=local` writes the features of `dask=none`."""
    feats = {}
    for choice, spec in (("none", DaskSpec("none")), ("local", DaskSpec("local", n_workers=2))):
        cfg = compose_cfg("eval", ["experiment=zonal_stats", f"dask={choice}"], tmp_path / choice)
        assert cfg.dask.scheduler == str(spec) and cfg.evaluation.dask == str(spec)
        ev = hydra.utils.instantiate(cfg.evaluation, data=data, _convert_="partial",
                                     pooling={"progress": False, "chunk_size": 4})  # fmt: skip
        assert ev.dask == spec
        ev.run(RunContext.local(tmp_path / choice / "out", seed=0))
        feats[choice] = gpd.read_parquet(tmp_path / choice / "out" / "features.parquet")
    a, b = feats["none"], feats["local"]
    assert len(a) > 10 and a.dtypes.equals(b.dtypes) and a.index.equals(b.index)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
