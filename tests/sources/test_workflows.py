"""The configs that use the embedding products compose and run on their stand-ins (tiny sizes):
`evaluate.py experiment=retrieval data=clay|majortom data.synthetic=true`, and the raster
workflows (zonal_stats data=aef|tessera, geopool data=aef_points)."""

from __future__ import annotations

import pytest

from geoemb.tasks import evaluate
from tests.helpers import compose_cfg

QUICK_RETRIEVAL = ["evaluation.n_queries=10", "evaluation.methods=[binary,int8]",
                   "evaluation.backends=[hamming_numpy]", "evaluation.ks=[1,10]",
                   "~logger"]  # fmt: skip


@pytest.mark.parametrize(("data", "kw"), [
    ("clay", "data.synthetic_kwargs.dim=32"),
    ("clay", "+data.synthetic_kwargs.version=v0"),
    ("majortom", "data.synthetic_kwargs.dim=24"),
])  # fmt: skip
def test_retrieval_on_table_stand_ins(tmp_path, data, kw):
    cfg = compose_cfg("eval", ["experiment=retrieval", f"data={data}", "data.synthetic=true",
                               "data.synthetic_kwargs.n=300", kw, *QUICK_RETRIEVAL], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["test/n_corpus"] > 200
    # int8 keeps the neighbours of a learnable corpus; binary less so, but far above chance
    assert metrics["test/recall@10/cosine/int8"] > 0.9
    assert metrics["test/recall@10/cosine/binary"] > 10 / metrics["test/n_corpus"] * 3
    assert (tmp_path / "run" / "data_source.txt").read_text().strip() == "synthetic"


@pytest.mark.slow
def test_geopool_on_chips_at_labelled_points(tmp_path):
    """experiment=geopool data=aef_points on the AEF stand-in: chips at labelled points pooled by
    two methods; the probes beat the majority class (the labels follow the blocks' urbanness)."""
    cfg = compose_cfg("eval", ["experiment=geopool", "data=aef_points", "data.synthetic=true",
                               "data.chip_size=8", "data.raster.synthetic_kwargs.tile_size=64",
                               "evaluation.methods=[mean,stats]",
                               "evaluation.progress=false", "evaluation.probe.C=1.0"], tmp_path)  # fmt: skip
    assert list(cfg.evaluation.encoders) == ["aef"]
    metrics = evaluate(cfg)
    chips = next((tmp_path / "data" / "point_chips").glob("*/eurosat-aef"))
    n = {c.name: len(list(c.glob("*.tif"))) for c in chips.iterdir()}
    majority = max(n.values()) / sum(n.values())
    assert metrics["data_source_synthetic"] == 1.0
    assert metrics["test/linear_acc/standard/aef/mean"] > majority + 0.05


@pytest.mark.slow
@pytest.mark.parametrize("product", ["aef", "tessera"])
def test_zonal_stats_on_raster_stand_ins(tmp_path, product):
    cfg = compose_cfg("eval", ["experiment=zonal_stats", f"data={product}", "data.synthetic=true",
                               "data.synthetic_kwargs.tile_size=32",
                               "evaluation.pooling.progress=false"], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["zonal/polygons_empty"] == 0
    assert metrics["zonal/urban/acc"] > metrics["zonal/urban/baseline"]
    assert (tmp_path / "run" / "features.parquet").exists()


def test_tessera_chips_at_points(tmp_path):
    """Tessera chips in EuroSAT-Embed's tessera format (uint8 = int8 + 128), through the per-zone
    mosaics, equal the int8 codes of the tile that holds each pixel."""
    import glob

    import numpy as np
    import rasterio

    from geoemb.data.eurosat_files import CLASSES
    from geoemb.sources import raster_source
    from geoemb.sources.points import labelled_points_stand_in, write_point_chips

    src = raster_source("tessera", root=tmp_path / "t", synthetic=True, synthetic_root=tmp_path / "s",
                        decode="tessera_unscaled", synthetic_kwargs={"tile_size": 32},
                        options={"cache_dir": str(tmp_path / "vrt")})  # fmt: skip
    pts = labelled_points_stand_in(src.stand_in_polygons(), per_block=1)
    out = write_point_chips(
        src, pts, tmp_path / "chips", classes=CLASSES, size=8, encoder="tessera"
    )
    files = sorted(glob.glob(str(out / "eurosat-tessera" / "*" / "*.tif")))
    assert len(files) == len(pts)
    with rasterio.open(files[0]) as ds:
        a = ds.read().astype(int)
        x, y = ds.xy(4, 4)  # the point's pixel (size // 2)
    with rasterio.open(src.resolve().tiles[0]) as m:
        r, c = m.index(x, y)
        want = m.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0].astype(int)
    assert ds.count == 128 and np.array_equal(a[:, 4, 4] - 128, want)
