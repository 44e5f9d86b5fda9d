"""Synthetic AEF stand-in -> evaluator / CLI end to end (tiny sizes)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoemb.data.synthetic.zonal import generate, quantize_aef
from geoemb.evaluation.zonal import ZonalStatsEvaluator
from geoemb.utils.run_logger import RunLogger
from geoemb.zonal import decode_values, zonal_stats
from geoemb.zonal.__main__ import main

SMALL = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    # the layout the evaluator uses (<data_dir>/synthetic/zonal), so its run reuses this data
    return generate(tmp_path_factory.mktemp("zonal_data") / "synthetic" / "zonal", seed=0, **SMALL)


def test_generator_layout_and_special_blocks(syn):
    info = json.loads((syn / "info.json").read_text())
    blocks = gpd.read_file(syn / "blocks.gpkg")
    index = gpd.read_file(syn / "aef_index.gpkg")
    assert blocks.crs.to_epsg() == 4269 and index.crs.to_epsg() == 4326 and len(index) == 4
    assert {"GEOID20", "POP20", "HOUSING20", "ALAND20", "AWATER20", "UR20"} <= set(blocks.columns)
    assert set(blocks.UR20) == {"U", "R"}
    b = blocks.set_index("GEOID20")
    assert b.loc[info["water_block"], "ALAND20"] == 0
    assert b.loc[info["oversized_block"], "ALAND20"] > 25e6
    assert info["spans_tiles"]
    with rasterio.open(syn / index.path[0]) as ds:
        assert ds.dtypes[0] == "uint8" and ds.count == 8 and ds.crs.to_epsg() == 32610
        assert ds.compression.value.lower() == "zstd" and ds.res == (10.0, 10.0)
        assert ds.read().max() <= 254
    # AEF quantisation round-trips through the dequantisation used by zonal_stats
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(decode_values(quantize_aef(x), "aef", "uint8"), x, atol=0.02)
    np.testing.assert_allclose(decode_values(quantize_aef(x, "int8"), "aef", "int8"), x, atol=0.02)
    # idempotent: the completion marker short-cuts regeneration
    mtime = (syn / "blocks.gpkg").stat().st_mtime
    generate(syn, seed=0, **SMALL)
    assert (syn / "blocks.gpkg").stat().st_mtime == mtime


def test_filters_and_spanning_block(syn):
    info = json.loads((syn / "info.json").read_text())
    out = zonal_stats(
        syn / "blocks.gpkg", tile_index=syn / "aef_index.gpkg", decode="aef", progress=False
    )
    assert info["water_block"] not in set(out.GEOID20) and info["oversized_block"] not in set(
        out.GEOID20
    )
    assert out.attrs["zonal"]["filters"]["oversized"] == 1
    span = out.set_index("GEOID20").loc[info["spans_tiles"]]
    assert (span.tile_count >= 2).all() and (span.pixel_count > 0).all()
    # pixel counts equal the block areas in pixels (edges on the pixel grid, 10 m pixels)
    area_px = (out.ALAND20 + out.AWATER20) / 100
    np.testing.assert_array_equal(out.pixel_count, area_px)


@pytest.mark.slow
def test_evaluator_and_cli(syn, tmp_path):
    ev = ZonalStatsEvaluator(
        data_dir=str(syn.parent.parent),
        synthetic=True,
        synthetic_kwargs=SMALL,
        num_workers=2,
        progress=False,
    )
    logger = RunLogger(None)
    metrics = ev.run(tmp_path / "run", logger)
    for f in (
        "features.parquet",
        "pca_rgb.tif",
        "pca_rgb.png",
        "report.md",
        "r2.md",
        "r2.png",
        "pc_scatter.png",
    ):
        assert (tmp_path / "run" / f).exists(), f
    assert metrics["zonal/urban/acc"] > metrics["zonal/urban/baseline"]
    assert metrics["zonal/r2/log_land_area"] > 0.3 and metrics["zonal/polygons_empty"] == 0
    assert "zonal/r2" in logger.tables and "zonal/pca_rgb" in logger.images
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Classification" in report and "pca_rgb.png" in report

    # CLI on the same synthetic data
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
    assert main(["evaluate", str(feats), "-o", str(tmp_path / "cli" / "eval"), "--pca-k", "5"]) == 0
    assert (tmp_path / "cli" / "eval" / "report.md").exists()


def test_real_mode_requires_inputs(tmp_path):
    ev = ZonalStatsEvaluator(data_dir=str(tmp_path), synthetic=False)
    with pytest.raises(ValueError, match="synthetic=true"):
        ev.run(tmp_path / "run", RunLogger(None))
