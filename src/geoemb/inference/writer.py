"""Windowed GeoTIFF writer for class maps (and optional quantised probabilities).

Rows arrive top to bottom per column stripe; they are buffered until whole block rows are
available and then written as block-aligned windows, so every GeoTIFF block is compressed and
written exactly once (a partly written deflate block would be re-read and appended again, bloating
the file). Overviews are built at the end, on the still-temporary file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

__all__ = [
    "ClassMapWriter",
    "build_overviews",
    "class_dtype",
    "output_profile",
    "usable_overview_factors",
]


def class_dtype(num_classes: int) -> np.dtype:
    """uint8 for up to 255 classes (255 = nodata), uint16 up to 65535, else error."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if num_classes <= 255:
        return np.dtype(np.uint8)
    if num_classes <= 65535:
        return np.dtype(np.uint16)
    raise ValueError(f"num_classes={num_classes} does not fit a uint16 class map")


def output_profile(
    src_profile: dict[str, Any],
    crs: Any,
    transform: Any,
    width: int,
    height: int,
    *,
    num_classes: int,
    num_prob_bands: int = 0,
    block_size: int = 512,
    compress: str = "deflate",
) -> dict[str, Any]:
    """Profile of the output: input grid, tiled blocks, compression, nodata = dtype max."""
    if block_size % 16:
        raise ValueError(f"block_size must be a multiple of 16 (GeoTIFF tiling), got {block_size}")
    dt = class_dtype(num_classes)
    prof: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dt.name,
        "count": 1 + num_prob_bands,
        "width": width,
        "height": height,
        "crs": crs,
        "transform": transform,
        "nodata": int(np.iinfo(dt).max),
        "tiled": True,
        "blockxsize": block_size,
        "blockysize": block_size,
        "compress": compress,
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }
    if compress and compress.lower() in {"deflate", "lzw", "zstd"}:
        prof["predictor"] = 2
    return prof


class ClassMapWriter:
    """Buffered, block-aligned windowed writer.

    Band 1 is the class map; bands ``2..P+1`` (optional) are probabilities quantised to
    ``round(p * (nodata - 1))`` with band scale ``1 / (nodata - 1)`` so GDAL-aware readers
    (``rasterio`` ``scales``, QGIS) recover ``p``. Invalid pixels get ``nodata`` in every band.

    Parameters
    ----------
    dst : rasterio dataset opened for writing
    block_size : int
        Rows are written in multiples of this.
    """

    def __init__(self, dst: rasterio.io.DatasetWriter, block_size: int) -> None:
        self.dst = dst
        self.block = block_size
        self.nodata = int(dst.nodata)
        self.qmax = self.nodata - 1
        self.dtype = np.dtype(dst.dtypes[0])
        self.nprob = dst.count - 1
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._next_row = 0
        self._cols = (0, dst.width)
        self.bytes_written = 0
        if self.nprob:
            dst.scales = (1.0,) + (1.0 / self.qmax,) * self.nprob
            for b in range(self.nprob):
                dst.set_band_description(b + 2, f"prob_class_{b}")
        dst.set_band_description(1, "class")

    def start_stripe(self, c0: int, c1: int) -> None:
        """Begin a new column stripe ``[c0, c1)`` (rows restart at 0)."""
        self.flush(final=True)
        self._cols = (c0, c1)
        self._next_row = 0

    def add_rows(
        self, row0: int, classes: np.ndarray, probs: np.ndarray | None, valid: np.ndarray
    ) -> None:
        """Queue final rows starting at global row ``row0`` (must follow the previous ones)."""
        if row0 != self._next_row + self._pending_rows:
            raise RuntimeError(f"rows out of order: got {row0}, expected {self._next_row}")
        h, w = classes.shape
        out = np.empty((1 + self.nprob, h, w), dtype=self.dtype)
        out[0] = classes
        if self.nprob:
            if probs is None or probs.shape[0] != self.nprob:
                raise ValueError(f"expected {self.nprob} probability bands")
            np.rint(np.clip(probs, 0.0, 1.0) * self.qmax, out=probs)
            out[1:] = probs
        out[:, ~valid] = self.nodata
        self._pending.append(out)
        self._pending_rows += h
        if self._pending_rows >= self.block:
            self.flush(final=False)

    def flush(self, final: bool) -> None:
        """Write all whole block rows (and the remainder if ``final``)."""
        if not self._pending_rows:
            return
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending, 1)
        n = data.shape[1] if final else (data.shape[1] // self.block) * self.block
        if n:
            c0, c1 = self._cols
            self.dst.write(data[:, :n], window=Window(c0, self._next_row, c1 - c0, n))
            self.bytes_written += data[:, :n].nbytes
            self._next_row += n
        rest = data[:, n:]
        self._pending = [rest.copy()] if rest.shape[1] else []
        self._pending_rows = rest.shape[1]


def usable_overview_factors(width: int, height: int, factors: Sequence[int]) -> list[int]:
    """The factors whose overview is smaller than the previous level (GDAL refuses the rest).

    GDAL sizes an overview ``ceil(width / f) x ceil(height / f)``; once a level is as small as
    the previous one (e.g. 1x1 for a tiny scene), further factors add nothing and GDAL raises
    "Too many overviews levels". A 512^2+ scene keeps all of ``[2, 4, 8, 16]``.
    """
    kept: list[int] = []
    prev = (width, height)
    for f in sorted({int(f) for f in factors}):
        size = (-(-width // f), -(-height // f))
        if size[0] < prev[0] or size[1] < prev[1]:
            kept.append(f)
            prev = size
    return kept


def build_overviews(path: Path, factors: Sequence[int]) -> None:
    """Build internal nearest-neighbour overviews (the ESW tutorial's ``[2, 4, 8, 16]``).

    Factors that would not shrink the previous level are dropped
    (:func:`usable_overview_factors`), so scenes smaller than 16 px work.
    """
    if not factors:
        return
    with rasterio.open(path, "r+") as dst:
        factors = usable_overview_factors(dst.width, dst.height, factors)
        if not factors:
            return
        dst.build_overviews(factors, Resampling.nearest)
        dst.update_tags(ns="rio_overview", resampling="nearest")
