"""zonal_stats on the synthetic AEF stand-in: filters, blocks across tiles, exact pixel counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geoemb.synthetic.zonal import generate
from geoemb.zonal import zonal_stats

SMALL = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("zonal_data") / "stand_in", seed=0, **SMALL)


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
    # the stand-in's tiles are tagged, and the run description says so
    assert out.attrs["zonal"]["data_source"] == "synthetic"
