"""Synthetic ESW generator: real layout, georeferencing, block-streamed writing, S2 per-band folders."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import rasterio
from omegaconf import OmegaConf

from geoemb.data import geo_adapter as ga
from geoemb.data.earth_surface_water import SCENE_REGEX, TRUTH_REGEX, pair_split
from geoemb.data.source import MARKER
from geoemb.errors import OutputError
from geoemb.synthetic import earth_surface_water as synth

REPO = Path(__file__).resolve().parents[3]


def test_layout_dtypes_zones(esw_root):
    dset = esw_root / "dset-s2"
    zones = {}
    for split, n in (("train", 3), ("val", 2)):
        pairs = pair_split(dset, split)
        assert len(pairs) == n
        for scene, truth in pairs:
            assert re.match(SCENE_REGEX, scene.name) and re.match(TRUTH_REGEX, truth.name)
            with rasterio.open(scene) as s, rasterio.open(truth) as t:
                assert s.count == 6 and set(s.dtypes) == {"uint16"} and s.nodata is None
                assert t.count == 1 and t.dtypes[0] == "uint8"
                assert (s.crs, s.transform, s.shape) == (t.crs, t.transform, t.shape)
                assert 256 <= s.height <= 320 and 256 <= s.width <= 320
                assert s.res == (10.0, 10.0)
                assert set(np.unique(t.read(1)).tolist()) == {0, 1}
                img = s.read()
                zones.setdefault(split, set()).add(s.crs.to_epsg())
            # land-dominated DN means in the range of the real data (reference §2.1)
            assert 300 < img[0].mean() < 2000 and 1000 < img[3].mean() < 4000
    assert len(zones["train"]) >= 2 and len(zones["val"]) >= 2
    all_zones = zones["train"] | zones["val"]
    assert any(32701 <= z <= 32760 for z in all_zones) and any(
        32601 <= z <= 32660 for z in all_zones
    )


def test_generate_is_seeded(tmp_path):
    a = synth.generate(tmp_path / "a", n_train=1, n_val=1, size=(96, 96), seed=3)
    b = synth.generate(tmp_path / "b", n_train=1, n_val=1, size=(96, 96), seed=3)
    fa = sorted((a / "dset-s2").rglob("*.tif"))
    fb = sorted((b / "dset-s2").rglob("*.tif"))
    assert [f.name for f in fa] == [f.name for f in fb]
    for x, y in zip(fa, fb):
        with rasterio.open(x) as s, rasterio.open(y) as t:
            assert np.array_equal(s.read(), t.read())
    # never generated over an existing dataset (it may be real data)
    stamp = fa[0].stat().st_mtime_ns
    with pytest.raises(OutputError, match="never overwrites"):
        synth.generate(a, n_train=2, n_val=1, size=(96, 96), seed=3)
    assert fa[0].stat().st_mtime_ns == stamp


def test_water_spectra_plausible():
    spec = synth.make_spec(200, 200, seed=11, coast=True)
    img, mask = synth.render_window(spec, 0, 0, 200, 200)
    img = img.astype(np.float64)
    w = mask == 1
    assert 0.05 < w.mean() < 0.9
    ndwi = (img[1] - img[3]) / (img[1] + img[3])
    assert (ndwi[w] > 0).all()
    # water is dark in NIR and SWIR, land is bright in NIR
    assert img[3][w].mean() < 600 and img[4][w].mean() < 300 and img[5][w].mean() < 300
    assert img[3][~w].mean() > 1500
    assert img.max() > 10000  # saturated bright pixels exist


def test_scene_geotiff_block_invariant_and_bounded_memory(tmp_path):
    a = synth.write_scene_geotiff(tmp_path / "a.tif", (300, 520), seed=4, block=1024)
    b = synth.write_scene_geotiff(
        tmp_path / "b.tif", (300, 520), seed=4, block=128, mask_path=tmp_path / "m.tif"
    )
    with rasterio.open(a) as s, rasterio.open(b) as t, rasterio.open(tmp_path / "m.tif") as m:
        assert np.array_equal(s.read(), t.read())
        assert s.profile["tiled"] and s.count == 6 and m.read().max() == 1
    # streaming: peak numpy allocation follows the block, not the scene (rendering the 1024^2
    # scene in one block peaks at ~340 MB; 256 blocks at ~25 MB)
    tracemalloc.start()
    synth.write_scene_geotiff(tmp_path / "big.tif", 1024, seed=0, block=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 60e6, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("layout", ["flat", "safe"])
def test_sentinel2_scene_reads_with_torchgeo(tmp_path, layout):
    from torchgeo.datasets import Sentinel2

    d = synth.write_sentinel2_scene(
        tmp_path / "s2", (130, 150), layout=layout, seed=2, mask_path=tmp_path / "truth.tif"
    )
    files = sorted(p.relative_to(d).as_posix() for p in d.rglob("*.tif"))
    if layout == "flat":
        assert (
            "T23KPQ_20230815T130251_B02.tif" in files and "T23KPQ_20230815T130251_B12.tif" in files
        )
    else:
        assert "R10m/T23KPQ_20230815T130251_B08_10m.tif" in files
        assert "R20m/T23KPQ_20230815T130251_B11_20m.tif" in files
    b11 = next(d.rglob("*_B11*.tif"))
    with rasterio.open(b11) as src:
        assert src.shape == (65, 75) and src.res == (20.0, 20.0) and src.crs.to_epsg() == 32723
    ds = Sentinel2(paths=str(d), bands=list(synth.BANDS), res=10)
    q = ga.sampler_queries(ga.grid_sampler(ds, 64))[0]
    sample = ds[q]
    assert sample["image"].shape == (6, 64, 64)
    # the 20 m bands are the 2x2 means of the 10 m rendering: close to it where smooth
    spec = synth.make_spec(130, 150, 2)
    full, _ = synth.render_window(spec, 0, 0, 130, 150)
    with rasterio.open(b11) as src:
        coarse = src.read(1).astype(float)
    ref = full[4, :130, :150].astype(float).reshape(65, 2, 75, 2).mean(axis=(1, 3))
    assert np.abs(coarse - np.rint(ref)).max() <= 0.5


def test_config_instantiates_on_synthetic(tmp_path):
    cfg = OmegaConf.load(REPO / "conf" / "data" / "earth_surface_water.yaml")
    cfg = OmegaConf.merge(
        {"paths": {"data_dir": str(tmp_path)}, "seed": 0},
        {"data": cfg},
        {
            "data": {
                "synthetic": True,
                "patch_size": 64,
                "train_length": 4,
                "synthetic_kwargs": {"n_train": 2, "n_val": 1, "size": [160, 180]},
            }
        },
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    folder = dm.source.synthetic_dir()
    assert folder.parent == tmp_path / "synthetic" / "earth_surface_water"
    assert (folder / MARKER).is_file() and dm.data_source == "synthetic"
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 6, 64, 64)
    assert dm.preprocess_config()["_target_"] == "geoemb.data.transforms.SpectralPreprocess"
