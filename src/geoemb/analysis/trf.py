"""Theoretical receptive field (TRF) of a network, in input pixels.

Reference (ChesapeakeRSC ``notebooks/theoretical_receptive_field.ipynb``): BatchNorm → Identity, every
conv weight (and the head) set to 1, biases to 0, a single 1 impulse fed in, and the output region
``> 0`` is the TRF. Generalised here:

* :func:`theoretical_receptive_field` (**gradient method**, any output resolution/stride/dilation):
  a copy of the model is made "positive and linear-ish" — normalisation layers and dropout become
  ``Identity``; every weight of conv/linear layers becomes the positive constant ``1/fan_in``
  (averaging keeps activations bounded, so deep nets neither overflow nor underflow in float64);
  biases become 0; ``MaxPool`` becomes ``AvgPool`` with the same window (same support; max-pool
  gradients would flow to a single argmax). On an all-ones input every pre-activation is positive,
  so ReLU-like gates are open, and the support of ``∂ out[centre] / ∂ input`` is exactly the set
  of input pixels that can influence the centre output pixel. TRF = max(height, width) of that
  support's bounding box. The input grows (doubling) until the support no longer touches the input
  border (else the result is a lower bound, flagged ``clipped``).
* :func:`trf_impulse` — the reference's forward impulse method (same-resolution outputs), with the
  impulse at the image centre instead of (0, 0), for cross-checking.

For attention models (SegFormer) the TRF is the whole image by construction: the method reports the
input size with ``clipped=True``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TRFResult", "positive_copy", "theoretical_receptive_field", "trf_impulse"]

_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.Dropout,
    nn.Dropout2d,
)


@dataclass
class TRFResult:
    """``trf``: max(height, width) in input px; ``height``/``width``: bounding box of the support;
    ``input_size``: input side used; ``clipped``: support reached the input border (lower bound)."""

    trf: int
    height: int
    width: int
    input_size: int
    clipped: bool


def positive_copy(model: nn.Module, dtype: torch.dtype = torch.float64) -> nn.Module:
    """Deep copy with norms/dropout → Identity, max-pool → avg-pool, weights → 1/fan_in, bias → 0."""
    m = copy.deepcopy(model).to(dtype)

    def swap(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, _NORMS):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(
                    parent,
                    name,
                    nn.AvgPool2d(
                        child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                    ),
                )
            else:
                swap(child)

    swap(m)
    with torch.no_grad():
        for mod in m.modules():
            w = getattr(mod, "weight", None)
            if isinstance(w, torch.Tensor) and w.ndim >= 2:
                fan_in = w[0].numel()
                w.fill_(1.0 / fan_in)
            elif isinstance(w, torch.Tensor):
                w.fill_(1.0)
            b = getattr(mod, "bias", None)
            if isinstance(b, torch.Tensor):
                b.zero_()
    return m.eval()


def _bbox(support: torch.Tensor) -> tuple[int, int, int, int]:
    ys = torch.nonzero(support.any(1)).flatten()
    xs = torch.nonzero(support.any(0)).flatten()
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def theoretical_receptive_field(
    model: nn.Module,
    in_channels: int,
    input_size: int = 64,
    max_input_size: int = 2048,
    output_channel: int = 0,
    device: torch.device | str | None = None,
) -> TRFResult:
    """TRF of the centre output pixel in input pixels (gradient method, see module docstring).

    Parameters
    ----------
    model : ``(1, in_channels, S, S)`` → ``(1, K, H', W')`` (any output resolution).
    in_channels : input channels.
    input_size : first input side tried (doubled until the support fits, up to ``max_input_size``).
    output_channel : output channel whose centre pixel is differentiated.
    device : where to run (default: the model's parameters' device, else CPU).
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    net = positive_copy(model).to(device)
    size = int(input_size)
    while True:
        x = torch.ones(
            1, in_channels, size, size, dtype=torch.float64, device=device, requires_grad=True
        )
        out = net(x)
        if isinstance(out, dict):
            out = out["out"]
        oh, ow = out.shape[-2:]
        (g,) = torch.autograd.grad(out[0, output_channel, oh // 2, ow // 2], x)
        support = g[0].abs().sum(0) > 0
        y0, y1, x0, x1 = _bbox(support)
        clipped = y0 == 0 or x0 == 0 or y1 == size - 1 or x1 == size - 1
        if not clipped or size * 2 > max_input_size:
            h, w = y1 - y0 + 1, x1 - x0 + 1
            return TRFResult(trf=max(h, w), height=h, width=w, input_size=size, clipped=clipped)
        size *= 2


def trf_impulse(model: nn.Module, in_channels: int, input_size: int = 64) -> TRFResult:
    """The reference's forward impulse method (impulse at the centre; same-resolution outputs only).

    Output pixels ``> 0`` after feeding a single 1 (channel 0) through :func:`positive_copy` are the
    pixels whose receptive field contains the impulse; their extent equals the TRF for models whose
    receptive field is symmetric.
    """
    net = positive_copy(model)
    x = torch.zeros(1, in_channels, input_size, input_size, dtype=torch.float64)
    c = input_size // 2
    x[0, 0, c, c] = 1.0
    with torch.no_grad():
        out = net(x)
        if isinstance(out, dict):
            out = out["out"]
    if out.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"trf_impulse needs same-resolution outputs; got {tuple(out.shape[-2:])} for input "
            f"{input_size}; use theoretical_receptive_field"
        )
    support = out[0].abs().sum(0) > 0
    y0, y1, x0, x1 = _bbox(support)
    clipped = y0 == 0 or x0 == 0 or y1 == input_size - 1 or x1 == input_size - 1
    h, w = y1 - y0 + 1, x1 - x0 + 1
    return TRFResult(trf=max(h, w), height=h, width=w, input_size=input_size, clipped=clipped)
