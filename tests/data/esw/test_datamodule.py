"""EarthSurfaceWaterDataModule on the synthetic stand-in: batches, samplers, stats, cache, preprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import rasterio
import torch

from geoemb.data import esw_stats
from geoemb.data import geo_adapter as ga
from geoemb.data.earth_surface_water import STATS_FILE, EarthSurfaceWaterDataModule, pair_split
from geoemb.data.source import MARKER
from geoemb.data.transforms import SpectralPreprocess

PATCH = 64


def _dm(root: Path, **kw) -> EarthSurfaceWaterDataModule:
    args = dict(root=str(root), patch_size=PATCH, batch_size=4, train_length=12, stats_cache=False)
    args.update(kw)
    return EarthSurfaceWaterDataModule(**args)


def test_train_batches_shapes_values(esw_root):
    dm = _dm(esw_root)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 12 chips / batch 4
    seen = set()
    for b in batches:
        assert set(b) == {"image", "mask", "valid_fraction"}
        assert b["image"].shape == (4, 6, PATCH, PATCH) and b["image"].dtype == torch.float32
        assert b["mask"].shape == (4, PATCH, PATCH) and b["mask"].dtype == torch.long
        seen |= set(b["mask"].unique().tolist())
        # raw DN, not scaled: land NIR is thousands
        assert b["image"].max() > 1000
    assert seen == {0, 1}
    assert dm.num_input_channels == 9 and dm.num_classes == 2
    assert dm.hparams["patch_size"] == PATCH  # save_hyperparameters()


def test_batch_size_one_keeps_batch_dim(esw_root):
    dm = _dm(esw_root, batch_size=1, train_length=2)
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (1, 6, PATCH, PATCH) and b["mask"].shape == (1, PATCH, PATCH)


def test_chips_come_from_two_utm_zones_incl_south(esw_root):
    dm = _dm(esw_root, train_length=40)
    dm.setup("fit")
    zones = {}
    for scene, _ in dm.train_ds.pairs:
        with rasterio.open(scene) as src:
            zones[scene.name] = src.crs.to_epsg()
    assert len(set(zones.values())) >= 2 and any(32701 <= z <= 32760 for z in zones.values())
    entries = ga.index_entries(dm.train_ds.images)
    sampler = ga.random_sampler(dm.train_ds.images, PATCH, 40, seed=0)
    hit_zones = set()
    for q in ga.sampler_queries(sampler):
        xmin, ymin, xmax, ymax = ga.query_bounds(q)
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        for fp, (a, b, c, d) in entries:
            if a <= cx <= c and b <= cy <= d:
                hit_zones.add(zones[Path(fp).name])
    assert len(hit_zones) >= 2


def test_sampler_is_seeded(esw_root):
    a = next(iter(_dm(esw_root, seed=5).train_dataloader()))
    b = next(iter(_dm(esw_root, seed=5).train_dataloader()))
    c = next(iter(_dm(esw_root, seed=6).train_dataloader()))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])


def test_val_grid_covers_scenes_and_test_equals_val(esw_root):
    dm = _dm(esw_root)
    dm.setup("fit")
    loader = dm.val_dataloader()
    expected = 0
    for _, (xmin, ymin, xmax, ymax) in ga.index_entries(dm.val_ds.images):
        h, w = (ymax - ymin) / 10, (xmax - xmin) / 10
        expected += int(np.ceil((h - PATCH) / PATCH) + 1) * int(np.ceil((w - PATCH) / PATCH) + 1)
    assert len(loader.sampler) == expected
    n = 0
    for b in loader:
        assert b["image"].shape[1:] == (6, PATCH, PATCH) and b["mask"].shape[1:] == (PATCH, PATCH)
        n += b["image"].shape[0]
    assert n == expected
    t = next(iter(dm.test_dataloader()))
    v = next(iter(dm.val_dataloader()))
    assert torch.equal(t["image"], v["image"])
    thin = _dm(esw_root, val_length=5)
    assert len(thin.val_dataloader().sampler) == 5


def test_stats_equal_numpy_recomputation(esw_root):
    dm = _dm(esw_root)
    mean, std = dm.band_stats()
    files = [s for s, _ in pair_split(esw_root / "dset-s2", "train")]
    means, stds = [], []
    for f in files:  # the tutorial's calc_statistics, verbatim in numpy
        with rasterio.open(f) as src:
            img = src.read() / 10000
        means.append(img.reshape((img.shape[0], -1)).mean(axis=1))
        stds.append(img.reshape((img.shape[0], -1)).std(axis=1))
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, np.mean(stds, axis=0), rtol=1e-10)
    cfg = dm.preprocess_config()
    assert cfg["mean"] == pytest.approx(list(mean) + [0, 0, 0])
    assert cfg["std"] == pytest.approx(list(std) + [1, 1, 1])
    assert cfg["scale"] == 1e-4 and cfg["indices"] == [[1, 3], [1, 5], [3, 2]]


def test_stats_cache_hit_and_invalidation(esw_copy, monkeypatch):
    dm = _dm(esw_copy, stats_cache=True)
    first = dm.band_stats()
    assert dm.stats_cache_hit is False
    cache = esw_copy / "dset-s2" / STATS_FILE
    assert cache.is_file() and json.loads(cache.read_text())["mean"] == pytest.approx(first[0])

    def boom(*a, **k):
        raise AssertionError("stats recomputed despite a valid cache")

    monkeypatch.setattr(esw_stats, "compute_band_stats", boom)
    dm2 = _dm(esw_copy, stats_cache=True)
    assert dm2.band_stats() == first and dm2.stats_cache_hit is True

    # touching a training file invalidates the key
    scene = pair_split(esw_copy / "dset-s2", "train")[0][0]
    st = scene.stat()
    os.utime(scene, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    dm3 = _dm(esw_copy, stats_cache=True)
    with pytest.raises(AssertionError, match="recomputed"):
        dm3.band_stats()


def test_preprocess_config_builds_module_applied_to_batch(esw_root):
    dm = _dm(esw_root)
    cfg = dm.preprocess_config()
    pre = hydra.utils.instantiate(cfg)
    assert isinstance(pre, SpectralPreprocess)
    b = next(iter(dm.train_dataloader()))
    out = pre(b["image"])
    assert out.shape == (4, dm.num_input_channels, PATCH, PATCH)
    assert torch.isfinite(out).all()
    # normalised bands are roughly standardised over the training data
    assert abs(out[:, :6].mean().item()) < 1.5


def test_synthetic_chip_water_has_positive_ndwi(esw_root):
    # native files: every water pixel has NDWI > 0 (generator guarantee)
    for scene, truth in pair_split(esw_root / "dset-s2", "train"):
        with rasterio.open(scene) as s, rasterio.open(truth) as t:
            img, m = s.read().astype(np.float64), t.read(1)
        ndwi = (img[1] - img[3]) / (img[1] + img[3] + 1e-10)
        assert m.any() and (ndwi[m == 1] > 0).all()
        assert np.median(ndwi[m == 0]) < 0
    # chips through the loader (bilinear warping mixes shore pixels slightly)
    dm = _dm(esw_root, train_length=16)
    ndwi_fn = SpectralPreprocess(1e-4, [[1, 3]])
    water, land = [], []
    for b in dm.train_dataloader():
        nd = ndwi_fn(b["image"])[:, 6]
        valid = b["image"].sum(1) > 0  # exclude warp fill corners
        water.append(nd[(b["mask"] == 1) & valid])
        land.append(nd[(b["mask"] == 0) & valid])
    water, land = torch.cat(water), torch.cat(land)
    assert water.numel() > 100
    assert (water > 0).float().mean() > 0.95
    assert water.mean() > land.mean() + 0.5


def test_synthetic_flag_generates_once_and_reads_through_loader(tmp_path):
    syn_root = tmp_path / "synthetic" / "earth_surface_water"
    kw = {"n_train": 2, "n_val": 1, "size": [200, 220], "seed": 1}
    dm = EarthSurfaceWaterDataModule(
        root=str(tmp_path / "missing"),
        synthetic=True,
        synthetic_root=str(syn_root),
        synthetic_kwargs=kw,
        patch_size=PATCH,
        train_length=4,
    )
    dm.prepare_data()
    folder = dm.source.synthetic_dir()
    marker = folder / MARKER
    assert folder.parent == syn_root and marker.is_file() and dm.data_source == "synthetic"
    assert dm.dset_dir() == folder / "dset-s2"
    stamp = marker.stat().st_mtime_ns
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 6, PATCH, PATCH)
    assert len(dm.train_ds.pairs) == 2 and len(dm.val_ds.pairs) == 1
    # second module: no regeneration
    dm2 = EarthSurfaceWaterDataModule(
        root=str(tmp_path / "missing"),
        synthetic=True,
        synthetic_root=str(syn_root),
        synthetic_kwargs=kw,
    )
    dm2.prepare_data()
    assert marker.stat().st_mtime_ns == stamp and dm2.source.synthetic_dir() == folder
    assert [p.name for p in syn_root.iterdir()] == [folder.name]  # no temporary folder left
    # default synthetic_root is <parent of root>/synthetic/earth_surface_water
    dm3 = EarthSurfaceWaterDataModule(root=str(tmp_path / "earth_surface_water"), synthetic=True)
    assert Path(dm3.synthetic_root) == syn_root


def test_valid_fraction_counts_non_fill_pixels(esw_root):
    """``valid_fraction`` per chip = share of pixels with some non-zero, finite band (oracle:
    numpy on the chip); the full validation grid is unchanged (metrics see every chip)."""
    dm = _dm(esw_root)
    n = 0
    fractions = []
    for b in dm.val_dataloader():
        img = b["image"].numpy()
        expected = (np.isfinite(img).all(1) & (img != 0).any(1)).mean(axis=(1, 2))
        np.testing.assert_allclose(b["valid_fraction"].numpy(), expected, rtol=1e-6)
        n += len(img)
        fractions += b["valid_fraction"].tolist()
    assert n == len(dm.val_dataloader().sampler)
    assert min(fractions) < 0.9 < max(fractions) == pytest.approx(1.0)  # fill and full chips


def test_missing_real_data_is_one_error_with_a_working_hint(tmp_path):
    from geoemb.errors import DataNotFoundError

    dm = _dm(tmp_path / "earth_surface_water")
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert msg.startswith("Earth Surface Water data not found: folder does not exist")
    assert "earth_surface_water.zip" in msg and msg.endswith("data.synthetic=true.")
    (tmp_path / "earth_surface_water").mkdir()
    with pytest.raises(DataNotFoundError, match=r"no dset-s2/\{tra,val\}"):
        dm.check()


def test_stand_in_fits_the_recipe_chip_size(tmp_path):
    """Regression: ``experiment=water_seg data.synthetic=true`` failed at the recipe's 512 px
    chips (256-320 px scenes); the default stand-in's scenes now fit ``patch_size``."""
    dm = EarthSurfaceWaterDataModule(
        root=str(tmp_path / "esw"), synthetic=True, patch_size=512, train_length=2,
        synthetic_kwargs={"n_train": 1, "n_val": 1, "seed": 0, "size": None},
    )  # fmt: skip
    dm.setup("fit")  # raises if a scene is smaller than 512 px after warping
    sizes = list(dm.train_ds.warped_sizes().values()) + list(dm.val_ds.warped_sizes().values())
    assert min(min(hw) for hw in sizes) >= 512
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (2, 6, 512, 512)
    # an explicit size that cannot hold the chip is one clear error naming the knob
    small = EarthSurfaceWaterDataModule(
        root=str(tmp_path / "esw"), synthetic=True, patch_size=512,
        synthetic_kwargs={"n_train": 1, "n_val": 1, "size": [200, 220]},
    )  # fmt: skip
    with pytest.raises(ValueError, match="smaller than the 512x512 px chip"):
        small.setup("fit")


def test_synthetic_root_not_written_by_geoemb_is_refused(tmp_path, esw_root):
    """A ``synthetic_root`` holding other data (real ESW) is never generated into; a folder that
    holds an older geoemb stand-in (its ``.complete`` marker) is."""
    import shutil

    from geoemb.errors import InputError

    victim = tmp_path / "real"
    shutil.copytree(esw_root, victim)
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    kw = {"n_train": 1, "n_val": 1, "size": [96, 96]}
    dm = _dm(tmp_path / "x", synthetic=True, synthetic_root=str(victim), synthetic_kwargs=kw)
    with pytest.raises(InputError, match="refusing to generate into it"):
        dm.prepare_data()
    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before
    legacy = tmp_path / "legacy"
    shutil.copytree(esw_root, legacy)
    (legacy / ".complete").write_text("{}")
    dm = _dm(tmp_path / "x", synthetic=True, synthetic_root=str(legacy), synthetic_kwargs=kw)
    assert dm.check().parent == legacy
