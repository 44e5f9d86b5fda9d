"""GeoPool / EuroSAT-Embed under hostile inputs: NaN/inf pixels, all-invalid and truncated chips,
values that overflow pooling.

Decision (documented in :mod:`geoemb.data.eurosat_embed`): a pixel with any non-finite band is
invalid (mask False, value 0) and never reaches a pooling method; a chip with no valid pixel is an
:class:`~geoemb.errors.InputError` naming the file (it would otherwise become a zero feature row,
the reference's ``sanitize_features``); pooled features that overflow to non-finite are reported
with a warning naming the method before the probes zero them.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio
import torch

from geoemb.data import eurosat_embed as E
from geoemb.errors import InputError
from geoemb.pooling import TRAINING_FREE
from geoemb.synthetic.eurosat_embed import generate

pytestmark = pytest.mark.faults

ENC = "olmoearth-nano"
SIZE = 16


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("ee") / "root", n_per_class=5, encoders=(ENC,), size=16)


@pytest.fixture
def root(clean_root, tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(clean_root, dst)
    return dst


def _edit(path, fn):
    with rasterio.open(path, "r+") as ds:
        a = ds.read()
        fn(a)
        ds.write(a)


def _train_ds(root):
    return E.EuroSATEmbedDataset(root, ENC, "train", size=SIZE)


def _pool(ds, methods=TRAINING_FREE):
    feats, _ = E.pool_dataset(ds, list(methods), batch_size=8, progress=False)
    return feats


def test_nonfinite_pixels_are_masked_and_never_reach_pooling(root):
    ds = _train_ds(root)
    a, b = ds.paths[0], ds.paths[3]
    with rasterio.open(a) as src:
        orig = src.read()
    bad = np.zeros(orig.shape[1:], bool)
    bad[:3] = True
    bad[7, 9] = True

    def poison(value):
        def fn(arr):
            arr[:, :3] = value
            arr[5, 7, 9] = value  # one band of one pixel

        return fn

    _edit(a, poison(np.nan))
    _edit(b, lambda arr: arr.__setitem__((0, 0, 0), -np.inf))
    x, m = E.read_embedding(a, ENC, size=SIZE)
    np.testing.assert_array_equal(m, ~bad)
    assert np.isfinite(x).all() and (x[:, bad] == 0).all()
    feats_nan = _pool(_train_ds(root))
    for meth, f in feats_nan.items():
        assert np.isfinite(f).all(), meth
    # oracle: the same statistics over the valid pixels of the original file only
    valid = orig[:, ~bad].astype(np.float64)
    np.testing.assert_allclose(feats_nan["mean"][0], valid.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats_nan["max"][0], valid.max(1), rtol=1e-6)
    # masked pixels never leak: any other garbage in the same pixels gives identical features
    _edit(a, poison(np.inf))
    feats_inf = _pool(_train_ds(root))
    for meth in TRAINING_FREE:
        np.testing.assert_array_equal(feats_nan[meth], feats_inf[meth], err_msg=meth)


def test_all_invalid_chip_is_one_error_naming_the_file(root):
    ds = _train_ds(root)
    _edit(ds.paths[2], lambda arr: arr.__setitem__(slice(None), np.nan))
    with pytest.raises(InputError, match=rf"{ds.paths[2].name}.*no valid pixel"):
        _pool(ds, ["mean"])
    # a chip of +/-inf only is the same fault
    _edit(ds.paths[2], lambda arr: arr.__setitem__(slice(None), np.inf))
    with pytest.raises(InputError, match=ds.paths[2].name):
        ds[2]


def test_truncated_chip_is_one_error_naming_the_file(root):
    ds = _train_ds(root)
    p = ds.paths[1]
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=rf"cannot read EuroSAT-Embed GeoTIFF .*{p.name}"):
        ds[1]
    with pytest.raises(OSError):  # still an OSError for callers that catch that
        ds[1]


def test_pooled_overflow_is_reported_not_silently_zeroed(root, caplog):
    ds = _train_ds(root)
    _edit(ds.paths[4], lambda arr: arr.__setitem__((slice(None), slice(0, 4)), 3e38))
    with caplog.at_level("WARNING", logger="geoemb.data.eurosat_embed"):
        feats = _pool(ds, ["mean", "max"])
    assert not np.isfinite(feats["mean"][4]).all()  # kept as computed: the probes decide
    assert np.isfinite(feats["max"]).all()
    msgs = [r.getMessage() for r in caplog.records]
    assert any("mean" in s and "1 of" in s and "non-finite" in s for s in msgs), msgs
    assert not any("'max'" in s for s in msgs)


def test_pooling_classifier_trains_on_chips_with_nan_pixels(root, tmp_path):
    """The learnable-head path (DataModule → PoolingClassifier) sees masks, finite inputs."""
    from lightning import Trainer

    from geoemb.classification.module import PoolingClassifier

    ds = _train_ds(root)
    for p in ds.paths[:6]:
        _edit(p, lambda arr: arr.__setitem__((slice(None), slice(0, 5)), np.nan))
    dm = E.EuroSATEmbedDataModule(root=str(root), encoder=ENC, batch_size=8, size=SIZE)
    model = PoolingClassifier(head={"name": "gem"}, num_classes=10, write_results=False)
    trainer = Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1, default_root_dir=str(tmp_path),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
