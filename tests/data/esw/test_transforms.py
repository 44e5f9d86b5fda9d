"""SpectralPreprocess / AppendNormalizedDifference vs torchgeo's indices and a numpy formula."""

from __future__ import annotations

import json

import hydra.utils
import kornia.augmentation as K
import numpy as np
import pytest
import torch
from torchgeo.transforms import indices

from geoemb.data.transforms import (
    ESW_INDICES,
    AppendNormalizedDifference,
    SpectralPreprocess,
)


def _dn(b: int = 2, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 12000, (b, 6, h, w), generator=g).float()
    x[0, :, 0, 0] = 0.0  # warped fill pixel: 0/0 must give 0, not NaN
    return x


def _np_nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (a + b + 1e-10)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (AppendNormalizedDifference(1, 3), indices.AppendNDWI(index_green=1, index_nir=3)),
        (AppendNormalizedDifference(1, 5), indices.AppendNDWI(index_green=1, index_nir=5)),
        (AppendNormalizedDifference(3, 2), indices.AppendNDVI(index_nir=3, index_red=2)),
    ],
)
def test_append_matches_torchgeo(ours, theirs):
    x = _dn() * 1e-4
    got = ours(x)
    want = theirs(x)
    assert got.shape == (2, 7, 9, 11)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.isfinite(got).all()


def test_preprocess_matches_tutorial_pipeline():
    """scale -> NDWI, "MNDWI"(B12), NDVI -> K.Normalize(mean+[0]*3, std+[1]*3), as the tutorial."""
    x = _dn(b=3)
    mean = [0.07, 0.09, 0.09, 0.22, 0.17, 0.12]
    std = [0.05, 0.045, 0.057, 0.12, 0.09, 0.075]
    tutorial = torch.nn.Sequential(
        indices.AppendNDWI(index_green=1, index_nir=3),
        indices.AppendNDWI(index_green=1, index_nir=5),
        indices.AppendNDVI(index_nir=3, index_red=2),
        K.Normalize(mean=torch.tensor(mean + [0, 0, 0]), std=torch.tensor(std + [1, 1, 1])),
    )
    want = tutorial(x / 10000)
    pre = SpectralPreprocess(1e-4, ESW_INDICES, mean + [0, 0, 0], std + [1, 1, 1])
    got = pre(x)
    assert got.shape == (3, 9, 9, 11)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_preprocess_matches_numpy_formula():
    x = _dn(b=2, seed=3)
    mean = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0, 0, 0])
    std = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 1, 1, 1])
    r = x.double().numpy() * 1e-4
    ndwi = _np_nd(r[:, 1], r[:, 3])
    mndwi = _np_nd(r[:, 1], r[:, 5])  # tutorial's "MNDWI" uses B12 (index 5), not B11
    ndvi = _np_nd(r[:, 3], r[:, 2])
    stacked = np.concatenate([r, ndwi[:, None], mndwi[:, None], ndvi[:, None]], axis=1)
    want = (stacked - mean[None, :, None, None]) / std[None, :, None, None]
    got = SpectralPreprocess(1e-4, [[1, 3], [1, 5], [3, 2]], mean.tolist(), std.tolist())(x)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
    # index channels are bounded and untouched by the 0/1 padding
    assert got[:, 6:].abs().max() <= 1.0 + 1e-6


def test_config_roundtrip_through_hydra_and_json():
    pre = SpectralPreprocess(1e-4, ESW_INDICES, [0.1] * 6 + [0] * 3, [0.2] * 6 + [1] * 3)
    cfg = pre.to_config()
    assert cfg["_target_"] == "geoemb.data.transforms.SpectralPreprocess"
    cfg = json.loads(json.dumps(cfg))  # plain types only (checkpoint hparams safe)
    rebuilt = hydra.utils.instantiate(cfg)
    assert isinstance(rebuilt, SpectralPreprocess)
    x = _dn()
    torch.testing.assert_close(rebuilt(x), pre(x))
    assert rebuilt.to_config() == pre.to_config()
    assert SpectralPreprocess.from_config(cfg).to_config() == cfg


def test_channel_mismatch_is_clear_error():
    pre = SpectralPreprocess(1e-4, ESW_INDICES, [0.0] * 9, [1.0] * 9)
    with pytest.raises(ValueError, match="input has 4 channels"):
        pre(torch.ones(1, 4, 8, 8))
    with pytest.raises(ValueError, match="std"):
        SpectralPreprocess(1e-4, ESW_INDICES, [0.0] * 9, [0.0] * 9)
    with pytest.raises(ValueError, match="out of range"):
        AppendNormalizedDifference(1, 7)(torch.ones(1, 6, 4, 4))


def test_batch_size_one_and_int_input_and_device():
    pre = SpectralPreprocess(1e-4, ESW_INDICES, [0.0] * 9, [1.0] * 9)
    x = torch.full((1, 6, 4, 4), 1000, dtype=torch.int32)
    out = pre(x)
    assert out.shape == (1, 9, 4, 4) and out.dtype == torch.float32
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:  # statistics follow the input's device even if the module was not moved
        y = pre(_dn().to(dev))
        assert y.device.type == dev
