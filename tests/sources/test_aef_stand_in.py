"""The synthetic AEF stand-in (tiles + tile index + census-like blocks) written by the AEF source."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import rasterio

from geoemb.synthetic.zonal import generate, quantize_aef
from geoemb.zonal import decode_values

SMALL = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}


def test_generator_layout_and_special_blocks(tmp_path):
    syn = generate(tmp_path / "stand_in", seed=0, **SMALL)
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
        assert ds.tags()["data_source"] == "synthetic"  # every stand-in tile says what it is
    # AEF quantisation round-trips through the dequantisation used by zonal_stats
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(decode_values(quantize_aef(x), "aef", "uint8"), x, atol=0.02)
    np.testing.assert_allclose(decode_values(quantize_aef(x, "int8"), "aef", "int8"), x, atol=0.02)
    # idempotent: the completion marker short-cuts regeneration
    mtime = (syn / "blocks.gpkg").stat().st_mtime
    generate(syn, seed=0, **SMALL)
    assert (syn / "blocks.gpkg").stat().st_mtime == mtime
