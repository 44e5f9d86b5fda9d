"""End-to-end CLI: synth -> build-corpus -> query / exemplar -> GeoParquet + score raster."""

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoemb.retrieval.__main__ import main
from geoemb.utils.geoparquet import validate_geoparquet


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    src, corpus = tmp_path / "in", tmp_path / "corpus"
    main(["synth", "--out", str(src), "--n", "600", "--dim", "64", "--parts", "2"])
    main(["build-corpus", "--input", str(src), "--out", str(corpus), "--dim", "64",
          "--precision", "1", "--max-rows", "200", "--batch-rows", "500", "--quiet",
          "--model", '{"name": "synthetic"}'])  # fmt: skip
    assert "600 rows" in capsys.readouterr().out
    main(["query", "--corpus", str(corpus), "--id", "3", "--k", "5", "--bbox", "170", "-60", "-170",
          "75", "--out", str(tmp_path / "q.parquet")])  # fmt: skip
    validate_geoparquet(tmp_path / "q.parquet")
    out = tmp_path / "ex.parquet"
    main(["exemplar", "--corpus", str(corpus), "--pos-id", "3", "--neg-id", "4", "--view", "full",
          "--bbox", "-60", "-40", "60", "40", "--out", str(out), "--raster", str(tmp_path / "s.tif"),
          "--resolution", "5"])  # fmt: skip
    g = gpd.read_parquet(out, bbox=(-10, -10, 10, 10))
    full = gpd.read_parquet(out)
    assert 0 < len(g) < len(full)
    # the full score raster covers the rows' extent at 5 degrees per cell
    width = math.ceil((full["lon"].max() + 5e-6 - full["lon"].min()) / 5)
    height = math.ceil((full["lat"].max() + 5e-6 - full["lat"].min()) / 5)
    with rasterio.open(tmp_path / "s.tif") as r:
        assert r.crs.to_epsg() == 4326 and r.read(1).shape == (height, width)
        assert r.transform.a == 5 and r.transform.c == pytest.approx(full["lon"].min())
        assert int((~np.isnan(r.read(1))).sum()) <= len(full)
