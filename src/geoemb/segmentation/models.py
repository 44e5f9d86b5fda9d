"""Segmentation network factory: the :data:`NETS` registry of named nets, all buildable offline
with no weights.

torchvision's and segmentation_models_pytorch's model modules are imported when a net of theirs is
built (each takes seconds to import and most runs build one net); this is not an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from geoemb.utils.registry import Registry


class _TorchvisionDeepLab(nn.Module):
    """torchvision DeepLabV3 wrapper returning the ``"out"`` logits tensor ``(B, K, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _deeplabv3_resnet50(in_channels: int, num_classes: int, **kw) -> nn.Module:
    """The TorchGeo ESW tutorial net: DeepLabV3-ResNet50, no weights, new ``in_channels`` conv1."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, **kw)
    conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.get_submodule("backbone").register_module("conv1", conv)
    return _TorchvisionDeepLab(model)


def _smp(arch: str, encoder: str) -> Callable[..., nn.Module]:
    def build(in_channels: int, num_classes: int, **kw) -> nn.Module:
        import segmentation_models_pytorch as smp

        return smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **kw,
        )

    build.__doc__ = f"segmentation_models_pytorch {arch} with a {encoder} encoder (no weights)."
    return build


class TinyConvNet(nn.Module):
    """A small fully-convolutional net (``depth`` 3×3 conv+ReLU blocks, 1×1 head).

    Used by tests, the demo and benchmarks: its receptive field is ``2·depth + 1`` pixels. No
    normalization layers by default (``batch_norm=True`` adds them): with only a few optimizer
    steps, BatchNorm running statistics are far from converged and eval-mode outputs drift.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 16,
        depth: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers.append(nn.Conv2d(c, width, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            c = width
        layers.append(nn.Conv2d(c, num_classes, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _tiny_cnn(in_channels: int, num_classes: int, **kw) -> nn.Module:
    return TinyConvNet(in_channels, num_classes, **kw)


#: Segmentation nets: name -> ``builder(in_channels, num_classes, **kw)`` returning logits
#: ``(B, num_classes, H, W)``; ``meta(library=...)`` says what builds it.
NETS = Registry("segmentation net")
NETS.add(
    "deeplabv3_resnet50",
    _deeplabv3_resnet50,
    library="torchvision",
    description="DeepLabV3-ResNet50 (TorchGeo ESW tutorial), new in_channels conv1",
)
for _arch, _encoder, _label in (
    ("unet", "resnet18", "U-Net"),
    ("unet", "resnet34", "U-Net"),
    ("unet", "resnet50", "U-Net"),
    ("deeplabv3plus", "resnet18", "DeepLabV3+"),
    ("deeplabv3plus", "resnet50", "DeepLabV3+"),
    ("segformer", "mit_b0", "SegFormer"),
    ("segformer", "mit_b2", "SegFormer"),
):
    NETS.add(
        f"{_arch}_{_encoder}",
        _smp(_arch, _encoder),
        library="segmentation_models_pytorch",
        description=f"{_label} with a {_encoder} encoder (smp)",
    )
NETS.add(
    "tiny_cnn",
    _tiny_cnn,
    library="geoemb",
    description="depth x (3x3 conv + ReLU), 1x1 head; receptive field 2*depth + 1 (tests)",
)


def build_net(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered segmentation net returning logits ``(B, num_classes, H, W)``.

    Parameters
    ----------
    name:
        A :data:`NETS` name (e.g. ``deeplabv3_resnet50``, ``unet_resnet18``,
        ``segformer_mit_b0``); ``print(NETS.describe())`` lists them.
    in_channels, num_classes:
        Input channels (e.g. 9 for ESW: 6 bands + 3 indices) and output classes.

    Raises
    ------
    UnknownNameError
        ``name`` is not a net (a ``ValueError``; the message lists the valid names).
    """
    return NETS.build(name, in_channels=in_channels, num_classes=num_classes, **kwargs)
