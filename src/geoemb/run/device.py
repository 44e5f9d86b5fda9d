"""``resolve_device``: the one place that turns ``"auto"`` into a device.

Core functions take their device from their inputs; the run layer resolves the configured device
once (``RunContext.device``) and everything below receives a ``torch.device``.
"""

from __future__ import annotations

import torch

from geoemb.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → CUDA when available else CPU; other names are checked.

    Raises
    ------
    InputError
        For an unknown device string, or ``cuda`` when no CUDA device is present.
    """
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"device={device!r}: expected auto, cpu, cuda or cuda:<n> ({e})") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device={device!r} but no CUDA device is available; use device=auto or cpu"
        )
    return dev
