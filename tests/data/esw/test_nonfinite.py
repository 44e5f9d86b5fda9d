"""Non-finite pixels (NaN/inf) in float ESW scenes are invalid data: they never reach the model.

With ``fill_ignore_index`` they become fill (0 in every band) labelled with the ignore index, and
the band statistics leave them out; without it the datamodule refuses, naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoemb import tasks
from geoemb.data.earth_surface_water import (
    EarthSurfaceWaterDataModule,
    ESWDataError,
    nonfinite_pixels,
    pair_split,
)
from geoemb.errors import InputError
from tests.helpers import compose_cfg


def _to_float_with_nans(scene: Path, seed: int) -> tuple[int, int]:
    """Rewrite ``scene`` as float32 with a NaN block and scattered +/-inf; returns (n_nan, n_inf)."""
    with rasterio.open(scene) as src:
        data = src.read().astype(np.float32)
        profile = src.profile | {"dtype": "float32"}
    rng = np.random.default_rng(seed)
    data[:, 40:90, 60:120] = np.nan
    ys, xs = rng.integers(0, data.shape[1], 30), rng.integers(0, data.shape[2], 30)
    data[rng.integers(0, 6, 30), ys, xs] = np.inf
    data[2, 5, 5] = -np.inf
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    return 50 * 60, 31


@pytest.fixture()
def nan_root(esw_copy: Path) -> Path:
    dset = esw_copy / "dset-s2"
    _to_float_with_nans(pair_split(dset, "train")[0][0], 0)
    _to_float_with_nans(pair_split(dset, "val")[0][0], 1)
    return esw_copy


def _dm(root: Path, **kw) -> EarthSurfaceWaterDataModule:
    args = dict(root=str(root), patch_size=64, batch_size=4, train_length=40, stats_cache=False)
    return EarthSurfaceWaterDataModule(**(args | kw))


def test_without_ignore_index_the_file_is_named(nan_root):
    bad = pair_split(nan_root / "dset-s2", "train")[0][0]
    assert nonfinite_pixels(bad) >= 50 * 60
    with pytest.raises(ESWDataError, match="fill_ignore_index") as info:
        _dm(nan_root).setup("fit")
    assert str(bad) in str(info.value) and isinstance(info.value, InputError)


def test_collate_fills_and_ignores_exactly_the_nonfinite_pixels():
    dm = EarthSurfaceWaterDataModule(root="unused", fill_ignore_index=255)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 6, 8, 8, generator=g) * 3000 + 1
    mask = torch.randint(0, 2, (2, 8, 8), generator=g)
    image[0, :, 1, 2] = float("nan")
    image[1, 4, 3, 3] = float("inf")
    image[1, 0, 7, 0] = float("-inf")
    image[0, :, 6, 6] = 0.0  # warp fill: already ignored
    samples = [{"image": image[i], "mask": mask[i]} for i in range(2)]
    out = dm._collate(samples)
    bad = torch.zeros(2, 8, 8, dtype=torch.bool)
    bad[0, 1, 2] = bad[1, 3, 3] = bad[1, 7, 0] = bad[0, 6, 6] = True
    assert torch.isfinite(out["image"]).all()
    assert (out["image"].permute(0, 2, 3, 1)[bad] == 0).all()
    assert torch.equal(
        out["image"][~bad[:, None].expand_as(image)], image[~bad[:, None].expand_as(image)]
    )
    assert torch.equal(out["mask"] == 255, bad)
    assert torch.equal(out["mask"][~bad], mask[~bad])
    with pytest.raises(ESWDataError, match="NaN/inf"):
        EarthSurfaceWaterDataModule(root="unused")._collate(samples)


def test_batches_are_finite_and_stats_leave_nonfinite_out(nan_root, monkeypatch):
    from geoemb.data import geo_adapter as ga

    raw_nonfinite = []
    collate = ga.collate_image_mask

    def spy(samples):
        batch = collate(samples)
        raw_nonfinite.append(int((~torch.isfinite(batch["image"])).sum()))
        return batch

    monkeypatch.setattr(ga, "collate_image_mask", spy)
    dm = _dm(nan_root, fill_ignore_index=255)
    dm.setup("fit")
    ignored = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for b in loader:
            assert torch.isfinite(b["image"]).all()
            ignored += int((b["mask"] == 255).sum())
    assert ignored > 0 and sum(raw_nonfinite) > 0  # NaN/inf did arrive from the reader
    mean, std = dm.band_stats()
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    means, stds = [], []
    for f, _ in pair_split(nan_root / "dset-s2", "train"):  # oracle: numpy nan-aware moments
        with rasterio.open(f) as src:
            img = src.read().astype(np.float64) * 1e-4
        img[~np.isfinite(img)] = np.nan
        means.append(np.nanmean(img.reshape(6, -1), axis=1))
        stds.append(np.nanstd(img.reshape(6, -1), axis=1))
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, np.mean(stds, axis=0), rtol=1e-8)


def test_training_on_nan_scenes_stays_finite(nan_root, tmp_path):
    over = [
        "experiment=water_seg_demo", "model/net=tiny_cnn", "logger=csv", "data.synthetic=false",
        f"data.root={nan_root}", "data.patch_size=64", "data.batch_size=4", "data.train_length=16",
        "data.val_length=4", "trainer.max_epochs=1", "callbacks.rich_progress_bar=null",
        "callbacks.log_predictions=null",
    ]  # fmt: skip
    metrics = tasks.train(compose_cfg("train", over, tmp_path))
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert "test/iou" in metrics


def test_fill_ignore_index_must_match_the_model(tmp_path):
    cfg = compose_cfg("train", ["experiment=water_seg_demo", "model.ignore_index=null"], tmp_path)
    with pytest.raises(InputError, match="model.ignore_index=255"):
        tasks.train(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()
