"""Merge policies: one registry, a small object interface, and a user policy plugged in."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from geoemb.errors import InputError
from geoemb.inference import predict_raster
from geoemb.inference.merge import (
    MERGE_METHODS,
    MERGE_POLICIES,
    CenterMerge,
    CosineMerge,
    MergePolicy,
    RowBandMerger,
    merge_policy,
)
from geoemb.inference.tiling import axis_starts
from geoemb.utils.registry import Registry, UnknownNameError
from tests.inference.inference_helpers import ConvNet, scene, write_tif


def test_registry_and_resolution():
    assert isinstance(MERGE_POLICIES, Registry)
    assert MERGE_METHODS == ("center", "cosine") == tuple(MERGE_POLICIES.names())
    c, k = merge_policy("center"), merge_policy("Cosine")
    assert isinstance(c, CenterMerge) and isinstance(k, CosineMerge)
    assert c.tile_classes and not c.blends and k.blends and not k.tile_classes
    assert merge_policy(k) is k
    assert c.prob_channels(3, False) == 0 and c.prob_channels(3, True) == 3
    assert k.prob_channels(3, False) == 3
    assert k.bytes_per_pixel(np.uint8, 3) == c.bytes_per_pixel(np.uint8, 3) + 4 == 18
    with pytest.raises(
        UnknownNameError, match="unknown merge policy 'median'; valid: center, cosine"
    ):
        merge_policy("median")
    with pytest.raises(ValueError, match="probability maps"):
        RowBandMerger(
            np.zeros(1, int), np.zeros(1, int), 8, 8, 8, 0, 8, "cosine", 0, np.uint8, print
        )


@pytest.mark.parametrize(
    "length, tile, stride, pairs",
    [(100, 32, 24, True), (64, 64, 64, True), (20, 32, 32, True), (97, 16, 5, False)],
)
def test_extents_and_weights_cover_every_pixel(length, tile, stride, pairs):
    starts = axis_starts(length, tile, stride)
    ext = CenterMerge().extents(starts, tile, length)
    assert ext[0, 0] == 0 and ext[-1, 1] == length and (ext[1:, 0] == ext[:-1, 1]).all()
    cos = CosineMerge()
    ext = cos.extents(starts, tile, length)
    total = np.zeros(length)
    for (a, b), w, s in zip(ext, cos.weights(starts, tile, length), starts, strict=True):
        assert a == s and b == min(s + tile, length)
        total[a:b] += w[: b - a]
    assert (total > 0).all()  # the blend is normalised by the weight sum
    if pairs:  # at most two tiles overlap: the ramps sum to 1
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_unknown_policy_refused_before_any_work(tmp_path):
    src = write_tif(tmp_path / "s.tif", scene(20, 20))
    out = tmp_path / "o.tif"
    with pytest.raises(InputError, match="valid: center, cosine"):
        predict_raster(src, ConvNet(), out, num_classes=3, merge="median", progress=False)
    assert not out.exists()


class LastTileWins(CenterMerge):
    """Every tile writes its whole extent; later tiles (row-major) overwrite earlier ones."""

    name = "last"

    def extents(self, starts, tile_size, length):
        return CosineMerge().extents(starts, tile_size, length)


@pytest.mark.parametrize("max_buffer_mb", [256.0, 0.002])
def test_a_user_policy_plugs_in(tmp_path, max_buffer_mb):
    """A policy object is all predict_raster needs; the result equals painting the tiles'
    argmax maps in row-major order (one stripe, and several stripes)."""
    h, w, tile, stride = 40, 70, 16, 12
    data = scene(h, w)
    src = write_tif(tmp_path / "s.tif", data)
    net = ConvNet().eval()
    stats: dict = {}
    out = predict_raster(
        src, net, tmp_path / "o.tif", num_classes=3, tile_size=tile, stride=stride, batch_size=4,
        merge=LastTileWins(), progress=False, block_size=16, overviews=(),
        max_buffer_mb=max_buffer_mb, stats=stats,
    )  # fmt: skip
    with rasterio.open(out) as r:
        got = r.read(1)
    ref = np.zeros((h, w), dtype=np.uint8)
    x = torch.from_numpy(data.astype(np.float32))
    with torch.no_grad():
        for r0 in axis_starts(h, tile, stride):
            for c0 in axis_starts(w, tile, stride):
                y = net(x[None, :, r0 : r0 + tile, c0 : c0 + tile])[0]
                ref[r0 : r0 + tile, c0 : c0 + tile] = y.argmax(0).numpy()
    assert (stats["stripes"] > 1) == (max_buffer_mb < 1)
    np.testing.assert_array_equal(got, ref)
    assert not (got == _center_output(tmp_path, src, net, tile, stride)).all()


def _center_output(tmp_path, src, net, tile, stride) -> np.ndarray:
    out = predict_raster(
        src, net, tmp_path / "c.tif", num_classes=3, tile_size=tile, stride=stride,
        merge="center", progress=False, overviews=(),
    )  # fmt: skip
    with rasterio.open(out) as r:
        return r.read(1)


def test_policy_base_class_is_abstract_enough():
    p = MergePolicy()
    with pytest.raises(NotImplementedError):
        p.extents(np.zeros(1, int), 8, 8)
