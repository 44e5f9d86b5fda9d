"""The segmentation-net registry NETS: names, listing, errors, and the configs that name nets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from geoemb.errors import InputError
from geoemb.segmentation import NETS, build_net
from geoemb.segmentation.models import TinyConvNet
from geoemb.utils.registry import Registry, UnknownNameError

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_nets_is_a_registry_with_descriptions():
    assert isinstance(NETS, Registry)
    names = NETS.names()
    assert {"deeplabv3_resnet50", "unet_resnet18", "segformer_mit_b0", "tiny_cnn"} <= set(names)
    assert all(e.description for e in NETS)
    listed = NETS.describe()
    assert all(n in listed for n in names)
    assert NETS.names(library="torchvision") == ["deeplabv3_resnet50"]


def test_unknown_net_lists_valid_names():
    with pytest.raises(
        UnknownNameError, match=r"unknown segmentation net 'unet'; valid: .*tiny_cnn"
    ):
        build_net("unet", 3, 2)
    with pytest.raises(InputError):
        build_net("", 3, 2)


def test_build_net_passes_arguments():
    net = build_net("tiny_cnn", in_channels=5, num_classes=4, width=8, depth=2)
    assert isinstance(net, TinyConvNet)
    assert net(torch.zeros(1, 5, 9, 9)).shape == (1, 4, 9, 9)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 3


@pytest.mark.parametrize(
    "path", sorted((CONF / "model" / "net").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_net_config_names_a_registered_net(path):
    name = yaml.safe_load(path.read_text())["name"]
    assert name in NETS and name == path.stem
