"""Batch-level spectral preprocessing that a checkpoint can carry.

The Earth Surface Water tutorial turns 6 raw Sentinel-2 bands (DN = reflectance x 10000) into 9
model channels: scale by 1e-4, append NDWI, the tutorial's "MNDWI" and NDVI, then z-normalise
with per-band statistics padded with 0/1 for the index channels
(reference/earth_surface_water.md §3.2). :class:`SpectralPreprocess` does exactly that on a
``(B, C, H, W)`` tensor on whatever device the tensor lives on, and :meth:`SpectralPreprocess.to_config`
returns a plain dict (with ``_target_``) that ``hydra.utils.instantiate`` turns back into the same
module, so a LightningModule can keep it in its hyperparameters.

No Hydra or Lightning import here: plain torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "EPSILON",
    "ESW_INDICES",
    "ESW_INDEX_NAMES",
    "AppendNormalizedDifference",
    "SpectralPreprocess",
    "normalized_difference",
]

#: torchgeo's epsilon in ``AppendNormalizedDifferenceIndex`` (torchgeo.transforms.indices).
EPSILON = 1e-10

#: Index pairs (a, b) of the ESW tutorial, in the order they are appended, on the 6-band stack
#: (B02, B03, B04, B08, B11, B12):
#:   NDWI  = (B03 - B08) / (B03 + B08)  -> (1, 3)
#:   "MNDWI" = (B03 - B12) / (B03 + B12) -> (1, 5). NOTE: the tutorial uses SWIR2 (B12, index 5);
#:   textbook MNDWI uses SWIR1 (B11, index 4). We reproduce the tutorial (documented pitfall).
#:   NDVI  = (B08 - B04) / (B08 + B04)  -> (3, 2)
ESW_INDICES: list[list[int]] = [[1, 3], [1, 5], [3, 2]]
ESW_INDEX_NAMES: list[str] = ["ndwi", "mndwi_b12", "ndvi"]


def normalized_difference(x: Tensor, index_a: int, index_b: int) -> Tensor:
    """Normalized difference ``(a - b) / (a + b + 1e-10)`` of two channels.

    Parameters
    ----------
    x : Tensor (..., C, H, W)
    index_a, index_b : int
        Channel indices of ``a`` and ``b``.

    Returns
    -------
    Tensor (..., 1, H, W), same dtype/device as ``x``.
    """
    a = x[..., index_a, :, :]
    b = x[..., index_b, :, :]
    return ((a - b) / (a + b + EPSILON)).unsqueeze(-3)


def _check_channels(x: Tensor, needed: int, what: str) -> None:
    if x.ndim < 3:
        raise ValueError(
            f"{what}: expected a (B, C, H, W) or (C, H, W) tensor, got shape {tuple(x.shape)}"
        )
    if x.shape[-3] <= needed:
        raise ValueError(
            f"{what}: channel index {needed} out of range for input with {x.shape[-3]} channels "
            f"(shape {tuple(x.shape)})"
        )


class AppendNormalizedDifference(nn.Module):
    """Append ``(x[a] - x[b]) / (x[a] + x[b] + 1e-10)`` as the last channel.

    Same definition as torchgeo's ``AppendNormalizedDifferenceIndex`` (e.g. ``AppendNDWI(1, 3)``
    is ``AppendNormalizedDifference(1, 3)``), but a plain ``nn.Module`` on tensors.

    Parameters
    ----------
    index_a, index_b : int
        Channel indices of the reference and difference band.

    Shapes
    ------
    input (B, C, H, W) -> output (B, C + 1, H, W) (a leading batch dim is optional).
    """

    def __init__(self, index_a: int, index_b: int) -> None:
        super().__init__()
        self.index_a = int(index_a)
        self.index_b = int(index_b)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        _check_channels(x, max(self.index_a, self.index_b), type(self).__name__)
        return torch.cat([x, normalized_difference(x, self.index_a, self.index_b)], dim=-3)

    def extra_repr(self) -> str:  # noqa: D102
        return f"index_a={self.index_a}, index_b={self.index_b}"


class SpectralPreprocess(nn.Module):
    """``x * scale`` -> append normalized-difference indices in order -> per-channel z-score.

    Parameters
    ----------
    scale : float
        Multiplier applied first (ESW: ``1e-4`` turns DN into reflectance).
    indices : list of [a, b]
        Channel pairs appended in order; each appended channel can be referenced by later pairs.
    mean, std : list of float
        One value per OUTPUT channel (``C_in + len(indices)``); for the ESW recipe the index
        channels get mean 0 / std 1 (a no-op), as in the tutorial.

    Shapes
    ------
    input (B, C_in, H, W) float (raw DN) -> output (B, C_in + len(indices), H, W).
    Works on any device: the statistics follow the input's device and dtype.
    """

    def __init__(
        self,
        scale: float = 1.0,
        indices: Sequence[Sequence[int]] = (),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.scale = float(scale)
        self.indices = [[int(a), int(b)] for a, b in (tuple(p) for p in indices)]
        if (mean is None) != (std is None):
            raise ValueError("SpectralPreprocess: give both `mean` and `std`, or neither")
        if mean is not None and len(mean) != len(std):
            raise ValueError(
                f"SpectralPreprocess: `mean` has {len(mean)} values but `std` has {len(std)}"
            )
        if std is not None and any(float(s) <= 0 for s in std):
            raise ValueError(f"SpectralPreprocess: `std` must be > 0, got {list(std)}")
        self._mean = None if mean is None else [float(m) for m in mean]
        self._std = None if std is None else [float(s) for s in std]
        self.appenders = nn.ModuleList(AppendNormalizedDifference(a, b) for a, b in self.indices)
        self.register_buffer(
            "mean",
            None if mean is None else torch.tensor([float(m) for m in mean], dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "std",
            None if std is None else torch.tensor([float(s) for s in std], dtype=torch.float32),
            persistent=False,
        )

    @property
    def in_channels(self) -> int | None:
        """Number of input channels implied by the statistics (None without statistics)."""
        return None if self.mean is None else len(self.mean) - len(self.indices)

    @property
    def out_channels(self) -> int | None:
        """Number of output channels (None without statistics)."""
        return None if self.mean is None else len(self.mean)

    def forward(self, x: Tensor) -> Tensor:
        """Apply scale, indices and normalisation.

        Parameters
        ----------
        x : Tensor (B, C_in, H, W) or (C_in, H, W), floating point.

        Returns
        -------
        Tensor (B, C_in + n_indices, H, W) on ``x``'s device.
        """
        if not torch.is_floating_point(x):
            x = x.float()
        if self.mean is not None and x.shape[-3] + len(self.indices) != len(self.mean):
            raise ValueError(
                f"SpectralPreprocess: input has {x.shape[-3]} channels; with {len(self.indices)} "
                f"appended indices the statistics expect {len(self.mean) - len(self.indices)} "
                f"input channels (shape {tuple(x.shape)})"
            )
        x = x * self.scale
        for appender in self.appenders:
            x = appender(x)
        if self.mean is not None:
            mean = self.mean.to(device=x.device, dtype=x.dtype)[:, None, None]
            std = self.std.to(device=x.device, dtype=x.dtype)[:, None, None]
            x = (x - mean) / std
        return x

    def to_config(self) -> dict[str, Any]:
        """Plain-dict config; ``hydra.utils.instantiate(cfg)`` rebuilds this module.

        Returns
        -------
        dict with keys ``_target_``, ``scale``, ``indices``, ``mean``, ``std`` (plain Python types).
        """
        return {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "scale": self.scale,
            "indices": [list(p) for p in self.indices],
            "mean": None if self._mean is None else list(self._mean),
            "std": None if self._std is None else list(self._std),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpectralPreprocess:
        """Rebuild from :meth:`to_config` output without Hydra (``_target_`` is ignored)."""
        kwargs = {k: v for k, v in dict(config).items() if not k.startswith("_")}
        return cls(**kwargs)

    def extra_repr(self) -> str:  # noqa: D102
        return f"scale={self.scale}, indices={self.indices}"
