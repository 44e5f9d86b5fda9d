"""Integrity checks of inference inputs: errors, truncated GeoTIFFs, band grids, dtypes.

Everything here runs at open time (header only, no pixel reads) so that a bad input fails before
any model work; :func:`read_error` turns a failed windowed read into one error that names the file
and the window.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import Interleaving
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoemb.errors import GeoembError, InputError

__all__ = [
    "AllNodataWarning",
    "PredictionError",
    "RasterInputError",
    "check_band_dtypes",
    "check_model_output",
    "check_same_grid",
    "check_source",
    "check_tiff_blocks",
    "read_error",
]


class RasterInputError(InputError):
    """An input raster (file or folder) cannot be used; the message names it and says why.

    A :class:`~geoemb.errors.InputError`, hence also a ``ValueError``.
    """


class PredictionError(GeoembError, RuntimeError):
    """``predict_fn`` returned something unusable (non-finite values on valid pixels)."""


class AllNodataWarning(UserWarning):
    """The whole scene is nodata / masked / non-finite: the class map is all nodata."""


def read_error(path: Path, window: Window, err: BaseException) -> RasterInputError:
    """One error naming the file, the window and GDAL's reason for a failed read."""
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    cause = err.__cause__ or err.__context__
    reason = f"{err}" + (f" ({cause})" if cause is not None else "")
    return RasterInputError(
        f"cannot read {path} window rows {r0}:{r1}, cols {c0}:{c1}: {reason}; "
        "the file is truncated or corrupt"
    )


def check_tiff_blocks(ds: rasterio.io.DatasetReaderBase, path: Path) -> None:
    """Refuse a GeoTIFF whose pixel blocks extend past the end of the file (a truncated file).

    Reads only the TIFF block offset/size tags (``BLOCK_OFFSET_x_y``/``BLOCK_SIZE_x_y``), about
    0.1 s for a 10980^2 Sentinel-2 tile; other drivers and non-local files are skipped (their
    truncation is reported by :func:`read_error` when the window is read).

    Raises
    ------
    RasterInputError
        Naming the file, the first block past the end, and the file size.
    """
    if ds.driver != "GTiff" or not os.path.isfile(path):
        return
    size = os.path.getsize(path)
    bands = range(1, ds.count + 1) if ds.interleaving == Interleaving.band else [1]
    try:
        for b in bands:
            bh, bw = ds.block_shapes[b - 1]
            for i in range(math.ceil(ds.height / bh)):
                for j in range(math.ceil(ds.width / bw)):
                    off = ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=b)
                    n = ds.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=b)
                    if off and n and int(off) + int(n) > size:
                        raise RasterInputError(
                            f"{path} is truncated: block (col {j}, row {i}) of band {b} ends at "
                            f"byte {int(off) + int(n)} but the file has {size} bytes"
                        )
    except RasterioError as err:  # deferred tag arrays cut off inside the header
        raise RasterInputError(f"{path} has an unreadable TIFF header: {err}") from err


def check_band_dtypes(ds: rasterio.io.DatasetReaderBase, path: Path) -> None:
    """Refuse complex bands (reading them as float32 would silently drop the imaginary part)."""
    bad = sorted({d for d in ds.dtypes if np.dtype(d).kind == "c"})
    if bad:
        raise RasterInputError(
            f"{path} has {'/'.join(bad)} bands; gridded inference needs real-valued (integer or "
            "float) bands"
        )


def check_same_grid(
    ds: rasterio.io.DatasetReaderBase,
    path: Path,
    ref: rasterio.io.DatasetReaderBase,
    ref_path: Path,
) -> None:
    """Refuse a band file whose CRS or extent differs from the reference band's.

    Bands of one Sentinel-2 tile share a CRS and an extent; only the resolution may differ
    (20 m B11/B12 vs 10 m). Extents must agree to half a pixel of the coarser band, so that a
    resampled band never has pixels without source data that would pass for valid values.
    """
    if ds.crs != ref.crs:
        raise RasterInputError(
            f"{path} is in CRS {ds.crs} but {ref_path.name} is in {ref.crs}; the band files of a "
            "folder must share one grid (same CRS and extent)"
        )
    tol = 0.5 * max(abs(ds.res[0]), abs(ds.res[1]), abs(ref.res[0]), abs(ref.res[1]))
    if any(abs(a - b) > tol for a, b in zip(ds.bounds, ref.bounds, strict=True)):
        raise RasterInputError(
            f"{path} covers bounds {tuple(round(v, 3) for v in ds.bounds)} but {ref_path.name} "
            f"covers {tuple(round(v, 3) for v in ref.bounds)}; the band files of a folder must "
            "share one grid (same CRS and extent; only the resolution may differ)"
        )


def check_source(src: Any, in_channels: int | None = None) -> None:
    """Refuse an empty source, or one whose band count is not ``in_channels`` (if given)."""
    if src.width < 1 or src.height < 1 or src.count < 1:
        raise RasterInputError(
            f"{src.path} has size {src.width}x{src.height} with {src.count} bands; nothing to "
            "predict"
        )
    if in_channels is not None and src.count != in_channels:
        raise RasterInputError(
            f"{src.path} has {src.count} bands {src.band_names} but the model expects {in_channels}"
        )


def check_model_output(
    y: torch.Tensor, valid: np.ndarray, offsets: list[tuple[int, int]], path: Path
) -> torch.Tensor:
    """Raise if model output is non-finite on a valid pixel; zero it on invalid pixels.

    Parameters
    ----------
    y : Tensor (B, K, T, T)
        Model output (any device).
    valid : np.ndarray bool (B, T, T)
        Input validity of the B tiles.
    offsets : list of (row, col)
        Tile offsets, for the message.
    path : Path
        The input, for the message.

    Returns
    -------
    Tensor
        ``y`` itself when finite everywhere (the common case: one ``aminmax``, ~10x cheaper than
        ``isfinite(y).all()``), else ``y`` with non-finite values (on invalid pixels) set to 0.
    """
    lo, hi = torch.aminmax(y)  # propagates NaN
    if bool(torch.isfinite(lo) & torch.isfinite(hi)):
        return y
    fin = torch.isfinite(y)
    bad = (~fin.all(dim=1)).cpu().numpy() & valid
    if bad.any():
        k = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
        row, col = offsets[k]
        raise PredictionError(
            f"predict_fn returned non-finite values (NaN/inf) at {int(bad.sum())} valid "
            f"pixel(s) of {path}, first in the tile at row {row}, col {col} (size "
            f"{y.shape[-1]}); the input there is finite, so the model or its preprocessing "
            "produced them"
        )
    return torch.where(fin, y, torch.zeros((), dtype=y.dtype, device=y.device))
