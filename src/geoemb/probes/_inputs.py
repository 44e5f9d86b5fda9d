"""Input checks shared by the probes: numpy arrays or tensors in, tensors out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _features(a, name: str, device: torch.device | None = None) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"probes: {name} must be a numpy array or torch tensor, got {type(a)}")
    if a.ndim != 2:
        raise ValueError(f"probes: {name} must have shape (N, F), got {tuple(a.shape)}")
    if a.dtype != torch.float64:
        a = a.to(torch.float32)
    if device is not None:
        a = a.to(device)
    return a


def _labels(a, name: str, n: int, device: torch.device) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"probes: {name} must be a numpy array or torch tensor, got {type(a)}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"probes: {name} must have shape ({n},), got {tuple(a.shape)}")
    if a.is_floating_point():
        raise ValueError(f"probes: {name} must hold integer class labels, got {a.dtype}")
    return a.to(device=device, dtype=torch.long)


def _check_same_width(x_train: Tensor, x_test: Tensor) -> None:
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"probes: x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}"
        )
