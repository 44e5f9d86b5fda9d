"""Shared fixtures-as-functions for the inference tests (tests/inference, tests/faults)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

CRS = "EPSG:32750"  # southern-hemisphere UTM, as the ESW validation scenes


def write_tif(
    path: Path, data: np.ndarray, res: float = 10.0, nodata=None, crs=CRS, **extra
) -> Path:
    """Write ``data`` (C, H, W) as a GeoTIFF on a 10 m UTM grid."""
    c, h, w = data.shape
    prof = dict(
        driver="GTiff",
        dtype=data.dtype.name,
        count=c,
        width=w,
        height=h,
        crs=crs,
        transform=from_origin(300000.0, 8000000.0, res, res),
        nodata=nodata,
        **extra,
    )
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


def scene(h: int, w: int, c: int = 6, seed: int = 0) -> np.ndarray:
    """uint16 reflectance-like scene with smooth structure (classes are spatially coherent)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(200, 4000, size=(c, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    base[0] += (3000 * (np.sin(xx / 17.0) * np.cos(yy / 11.0) > 0.3)).astype(np.int64)
    return base.astype(np.uint16)


class ConvNet(torch.nn.Module):
    """3 stacked 3x3 convs, zero padding: receptive-field radius 3."""

    def __init__(self, c_in: int = 6, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [c_in, 8, 8, k]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        for m in self.convs:
            torch.nn.init.normal_(m.weight, std=0.5, generator=g)
            torch.nn.init.normal_(m.bias, std=0.1, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 4000.0 - 0.5
        for n, m in enumerate(self.convs):
            x = m(x)
            if n < len(self.convs) - 1:
                x = torch.relu(x)
        return x


class GapNet(torch.nn.Module):
    """A 1x1 conv plus a global-average-pool term (as DeepLabV3's ASPP image pooling).

    One NaN anywhere in a tile makes the pooled term, hence every logit of the tile, NaN.
    """

    def __init__(self, c_in: int = 6, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.local = torch.nn.Conv2d(c_in, k, 1)
        self.glob = torch.nn.Linear(c_in, k)
        for p in (*self.local.parameters(), *self.glob.parameters()):
            torch.nn.init.normal_(p, std=1.0, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 4000.0 - 0.5
        return self.local(x) + self.glob(x.mean(dim=(2, 3)))[:, :, None, None]


def single_pass(net: torch.nn.Module, data: np.ndarray, tile: int) -> torch.Tensor:
    """Oracle: the net on the whole scene at once, zero-padded to >= one tile (bottom/right)."""
    c, h, w = data.shape
    x = np.zeros((c, max(h, tile), max(w, tile)), dtype=np.float32)
    x[:, :h, :w] = data
    with torch.no_grad():
        y = net(torch.from_numpy(x)[None])[0, :, :h, :w]
    return y  # logits


def read_out(path: Path) -> tuple[np.ndarray, dict]:
    """Bands and profile (plus overviews and scales) of a written GeoTIFF."""
    with rasterio.open(path) as ds:
        return ds.read(), dict(ds.profile, overviews=ds.overviews(1), scales=ds.scales)
