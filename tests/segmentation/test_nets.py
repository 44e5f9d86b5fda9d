"""Segmentation net factory (geoemb.segmentation.build_net): shapes, the tutorial's conv1, unknown names."""

from __future__ import annotations

import pytest
import torch

from geoemb.segmentation import build_net


@pytest.mark.parametrize(
    "name", ["deeplabv3_resnet50", "unet_resnet18", "segformer_mit_b0", "tiny_cnn"]
)
def test_build_net_shapes(name):
    net = build_net(name, in_channels=9, num_classes=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 9, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def test_deeplab_has_tutorial_conv1():
    net = build_net("deeplabv3_resnet50", in_channels=9, num_classes=2)
    conv = net.model.backbone.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.bias) == (
        9,
        64,
        (7, 7),
        (2, 2),
        None,
    )


def test_unknown_net_is_clear():
    with pytest.raises(ValueError, match="unknown segmentation net 'nope'"):
        build_net("nope", 3, 2)
