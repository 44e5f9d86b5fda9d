"""Chesapeake RSC under hostile inputs: NaN/inf/nodata image pixels, all-invalid and truncated
patches, a data/model ``ignore_index`` mismatch.

Decision (documented in :mod:`geoemb.data.chesapeake_rsc`): invalid image pixels never reach the
model as numbers; without ``ignore_index`` such a patch is one InputError naming the file; with it
they are excluded from the training loss (label ``ignore_index`` in ``mask``) and are background in
``mask_3class`` (as the reference treats label nodata).
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio
import torch

from geoemb.data.chesapeake_rsc import ChesapeakeRSC, ChesapeakeRSCDataModule, remap_mask
from geoemb.errors import InputError
from geoemb.synthetic.chesapeake_rsc import generate

pytestmark = pytest.mark.faults

KW = {"n_train": 3, "n_val": 1, "n_test": 2, "size": 32}
II = 255


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("rsc") / "ChesapeakeRSC", **KW)


@pytest.fixture
def root(clean_root, tmp_path):
    dst = tmp_path / "ChesapeakeRSC"
    shutil.copytree(clean_root, dst)
    return dst


def _rewrite(path, fn, dtype="float32", nodata=None):
    """Rewrite an image tif as ``dtype`` after ``fn(array)``; returns the original uint8 array."""
    with rasterio.open(path) as src:
        prof, orig = src.profile, src.read()
    arr = orig.astype(dtype)
    fn(arr)
    prof.update(dtype=dtype, nodata=nodata, predictor=1)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)
    return orig


def _poison(arr):
    arr[:, :4, :] = np.nan  # whole rows
    arr[2, 10, 10] = np.inf  # one band of one pixel
    arr[0, 11, 11] = -np.inf


def _bad_map(shape):
    bad = np.zeros(shape, bool)
    bad[:4] = True
    bad[10, 10] = bad[11, 11] = True
    return bad


def _ds(root, split="train", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in's planted missing patch
        return ChesapeakeRSC(root, split, patch_size=32, **kw)


def test_nan_image_is_one_clear_error_without_ignore_index(root):
    ds = _ds(root)
    path = ds.image_path(ds.idxs[0])
    _rewrite(path, _poison)
    with pytest.raises(InputError, match=rf"{path.name}.*non-finite.*ignore_index"):
        ds[0]
    ds[1]  # other patches are fine


def test_invalid_pixels_get_the_ignore_label_and_a_finite_image(root):
    ds = _ds(root, num_classes=2, ignore_index=II)
    path = ds.image_path(ds.idxs[0])
    orig = _rewrite(path, _poison)
    with rasterio.open(ds.mask_path(ds.idxs[0])) as src:
        raw = src.read(1)
    item = ds[0]
    bad = _bad_map(raw.shape)
    assert torch.isfinite(item["image"]).all()
    assert (item["image"][:, torch.from_numpy(bad)] == 0).all()
    np.testing.assert_array_equal(item["image"].numpy()[:, ~bad], orig[:, ~bad].astype(np.float32))
    exp3 = remap_mask(raw, 3)
    np.testing.assert_array_equal(item["mask"].numpy()[bad], II)
    np.testing.assert_array_equal(item["mask"].numpy()[~bad], np.minimum(exp3, 1)[~bad])
    np.testing.assert_array_equal(item["mask_3class"].numpy()[~bad], exp3[~bad])
    assert (item["mask_3class"].numpy()[bad] == 0).all()
    # the 3-class training view carries the ignore label too
    ds3 = _ds(root, num_classes=3, ignore_index=II)
    np.testing.assert_array_equal(ds3[0]["mask"].numpy()[bad], II)
    # a declared nodata value: pixels whose 4 bands all equal it are invalid, one band is not
    path1 = ds.image_path(ds.idxs[1])

    def nodata_fn(arr):
        arr[:, 5, :] = 0
        arr[1, 6, :] = 0

    _rewrite(path1, nodata_fn, dtype="uint8", nodata=0)
    m = ds[1]["mask"].numpy()
    assert (m[5] == II).all() and not (m[6] == II).any()


def test_all_invalid_patch_and_bad_ignore_index(root):
    ds = _ds(root, ignore_index=II)
    path = ds.image_path(ds.idxs[2])
    _rewrite(path, lambda a: a.__setitem__(slice(None), np.nan))
    with pytest.raises(InputError, match=rf"{path.name}.*no valid pixel"):
        ds[2]
    for bad in (0, 1, 2):
        with pytest.raises(InputError, match="class label"):
            ChesapeakeRSCDataModule(root=str(root), ignore_index=bad)


def test_truncated_tif_is_one_error_naming_it(root):
    ds = _ds(root)
    path = ds.mask_path(ds.idxs[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"cannot read .*{path.name}"):
        ds[0]


def _module(ignore_index):
    from geoemb.segmentation.rsc_module import RSCSegmentationModule

    return RSCSegmentationModule(
        net={"name": "tiny_cnn", "width": 4, "depth": 1},
        preprocess={"_target_": "geoemb.data.augment.Scale"},
        ignore_index=ignore_index,
    )


def _trainer(tmp_path, **kw):
    from lightning import Trainer

    return Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), **kw,
    )  # fmt: skip


def _dm(root, ignore_index, augment=None):
    return ChesapeakeRSCDataModule(
        root=str(root), patch_size=KW["size"], batch_size=3, ignore_index=ignore_index,
        augment=augment,
    )  # fmt: skip


def test_training_excludes_invalid_pixels_from_the_loss(root, tmp_path):
    ds = _ds(root)
    for i in range(len(ds)):
        _rewrite(ds.image_path(ds.idxs[i]), _poison)
    torch.manual_seed(0)
    model = _module(II)
    dm = _dm(root, II, augment={"rotation_degrees": 90, "flips": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(tmp_path, max_epochs=2, num_sanity_val_steps=1).fit(model, datamodule=dm)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # oracle: the module's loss on a poisoned batch = plain CE over the valid pixels only
    batch = next(iter(dm.train_dataloader()))
    bad = torch.from_numpy(_bad_map((32, 32)))
    assert (batch["mask"][:, bad] == II).all()
    with torch.no_grad():
        logits = model(batch["image"])
        got = model.compute_loss(logits, batch)
        pix = logits.permute(0, 2, 3, 1)[:, ~bad]  # (B, n_valid, K)
        exp = torch.nn.functional.cross_entropy(
            pix.reshape(-1, 2), batch["mask"][:, ~bad].reshape(-1)
        )
    assert torch.isfinite(got) and got.item() == pytest.approx(exp.item(), rel=1e-5)


def test_data_and_model_ignore_index_must_agree_before_training(root, tmp_path):
    model = _module(None)
    steps = []
    model.training_step = lambda batch, i: steps.append(i)  # never reached
    with pytest.raises(InputError, match=r"data.ignore_index=255.*model.ignore_index=None"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _trainer(tmp_path, max_epochs=1).fit(model, datamodule=_dm(root, II))
    assert steps == []
