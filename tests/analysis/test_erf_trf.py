"""ERF radii on models with analytically known attributions; TRF of simple stacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from geoemb.analysis.erf import (
    ERFResult,
    attribution_maps,
    cumulative_mass,
    erf_analysis,
    radius_at,
    recommended_overlap,
    sample_output_pixels,
)
from geoemb.analysis.trf import theoretical_receptive_field, trf_impulse


def _box(k: int, c: int = 2) -> nn.Module:
    conv = nn.Conv2d(c, 2, k, padding=k // 2, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    return conv


def _hand_radius(k: int, p: float, clip: tuple[int, int, int, int] | None = None) -> float:
    """Exact answer by hand-enumerating the k×k window offsets (optionally clipped by the border)."""
    r = k // 2
    offs = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    if clip is not None:  # (ymin, ymax, xmin, xmax) offsets still inside the image
        offs = [
            (dy, dx) for dy, dx in offs if clip[0] <= dy <= clip[1] and clip[2] <= dx <= clip[3]
        ]
    dist = sorted(math.hypot(dy, dx) for dy, dx in offs)
    need = p * len(dist)
    for dd in dist:
        # all pixels at this radius are inside the circle
        n_inside = sum(1 for x in dist if x <= dd)
        if n_inside >= need - 1e-9:
            return dd
    return dist[-1]


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_box_filter_exact_radii(k, p):
    img = torch.rand(2, 24, 24)
    attr = attribution_maps(_box(k), img, [(12, 12)], class_index=1)
    assert attr.shape == (1, 24, 24)
    support = (attr[0] > 0).nonzero()
    assert support[:, 0].min() == 12 - k // 2 and support[:, 0].max() == 12 + k // 2
    _, exact, keep = cumulative_mass(attr, [(12.0, 12.0)], np.arange(0, 20.0))
    assert keep.all()
    assert radius_at(*exact[0], p) == pytest.approx(_hand_radius(k, p))


def test_k5_hand_numbers_and_border_renormalisation():
    # k=5 centre: radii 0 (1), 1 (4), sqrt2 (4), 2 (4), sqrt5 (8), sqrt8 (4) -> 50 %: 2, 90 %: sqrt8
    assert _hand_radius(5, 0.5) == 2.0 and _hand_radius(5, 0.9) == pytest.approx(math.sqrt(8))
    img = torch.rand(2, 16, 16)
    attr = attribution_maps(_box(5), img, [(0, 0)], class_index=0)
    _, exact, _ = cumulative_mass(attr, [(0.0, 0.0)], np.arange(0, 20.0))
    # corner: only offsets 0..2 x 0..2 are inside the image; the mass is renormalised to them
    assert radius_at(*exact[0], 0.5) == pytest.approx(_hand_radius(5, 0.5, (0, 2, 0, 2))) == 2.0
    assert radius_at(*exact[0], 0.99) == pytest.approx(math.sqrt(8))


def test_erf_analysis_stratified_and_block_mode():
    torch.manual_seed(0)
    model = _box(5)
    img = torch.rand(2, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[10:14, :] = 1
    mask[20:22, 5:9] = 2
    res = erf_analysis(model, [img], [mask], n_per_class=3, border=2, percentiles=(0.5, 0.9))
    assert set(res.radius) == {"background", "road", "tc", "all"}
    assert res.n["all"] == 9 and res.n_dead == 0
    for name in ("background", "road", "tc"):
        assert res.median_radius[name][0.5] == 2.0  # interior pixels: exact hand value
        assert res.radius[name][0.5] == 2.0  # mean curve on the 1-px grid
        assert res.median_radius[name][0.9] == pytest.approx(math.sqrt(8))
        assert res.radius[name][0.9] == 3.0  # first grid radius >= sqrt(8)
    tab = res.table()
    assert set(tab.columns) >= {"class", "percentile", "radius_px", "diameter_px"}
    assert (tab.diameter_px == 2 * tab.radius_px).all()
    # block mode: an 8x8 block of a 5x5 box filter has a 12x12 support centred on the block centre
    attr = attribution_maps(model, img, [(8, 8)], class_index=1, block=8)
    ys, xs = (attr[0] > 0).nonzero(as_tuple=True)
    assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (6, 17, 6, 17)


def test_sampling_is_seeded_and_stratified():
    mask = torch.zeros(20, 20, dtype=torch.long)
    mask[5:7] = 1
    a = sample_output_pixels(mask, 4, seed=1, border=3)
    b = sample_output_pixels(mask, 4, seed=1, border=3)
    assert a == b and len(a) == 8
    assert all(3 <= y < 17 and 3 <= x < 17 and int(mask[y, x]) == c for y, x, c in a)


def test_recommended_overlap():
    assert recommended_overlap(10.2, multiple=1) == 22
    assert recommended_overlap(10.2, multiple=32) == 32
    res = ERFResult(grid=np.arange(3.0), radius={"road": {0.99: 40.0}})
    assert recommended_overlap(res, 0.99, multiple=2) == 80
    with pytest.raises(ValueError, match="does not fit"):
        recommended_overlap(100.0, tile_size=128)
    with pytest.raises(ValueError, match="no radius"):
        recommended_overlap(res, 0.5)


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_trf_n_3x3_convs(n):
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    model = nn.Sequential(*layers)
    assert theoretical_receptive_field(model, 3).trf == 2 * n + 1
    assert trf_impulse(model, 3).trf == 2 * n + 1


@pytest.mark.parametrize(
    "layers, expected",
    [
        ([nn.Conv2d(1, 2, 5, padding=2)], 5),
        ([nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)], 7),
        (
            [
                nn.Conv2d(1, 2, 3, dilation=2, padding=2),
                nn.ReLU(),
                nn.Conv2d(2, 2, 3, dilation=3, padding=3),
            ],
            11,
        ),
        ([nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1)], 8),
    ],
)
def test_trf_stride_dilation_pool(layers, expected):
    # RF recursion: r += (k - 1) * jump; jump *= stride
    assert theoretical_receptive_field(nn.Sequential(*layers), 1).trf == expected


def test_trf_grows_input_and_flags_global():
    deep = nn.Sequential(*[nn.Conv2d(1, 1, 9, padding=4) for _ in range(6)])  # 49 px
    res = theoretical_receptive_field(deep, 1, input_size=16, max_input_size=256)
    assert res.trf == 49 and not res.clipped and res.input_size >= 64

    class Global(nn.Module):
        def forward(self, x):
            return x.mean((2, 3), keepdim=True).expand_as(x)

    res = theoretical_receptive_field(Global(), 1, input_size=16, max_input_size=32)
    assert res.clipped and res.trf == 32
