"""Windowed raster readers for gridded inference.

Two kinds of input are supported, both exposed through :class:`RasterSource`:

* a multi-band GeoTIFF (or any single file GDAL can read) -> :class:`GeoTiffSource`;
* a folder of per-band Sentinel-2 files named like torchgeo's ``Sentinel2`` dataset
  (``T23KPQ_20230815T130251_B02_10m.tif`` or without the ``_10m`` suffix)
  -> :class:`Sentinel2FolderSource`. Bands on another grid (the 20 m B11/B12) are resampled on
  read to the grid of the first requested band through a ``WarpedVRT``.

Reads are *boundless*: a window that extends past the raster is zero-padded and the padded pixels
are marked invalid. No read ever loads more than the requested window.

Validity: a pixel is invalid when it lies outside the raster, or when ANY band is the declared
nodata value, masked by the file (per-dataset mask / alpha), or non-finite (NaN, +-inf; float
bands only, declared nodata or not; a float64 value beyond the float32 range reads as inf and is
invalid too).

Integrity is checked at open (header only): a missing CRS, complex bands, a GeoTIFF truncated
inside its header or its pixel blocks, band files of a folder on different CRS/extents all raise
:class:`RasterInputError` naming the file; a read that fails later (a corrupt block) raises one
:class:`RasterInputError` naming the file and the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoemb.inference.checks import (
    RasterInputError,
    check_band_dtypes,
    check_same_grid,
    check_tiff_blocks,
    read_error,
)
from geoemb.inference.s2names import DEFAULT_S2_BANDS, S2_FILENAME_REGEX, find_s2_band_files

__all__ = [
    "DEFAULT_S2_BANDS",
    "S2_FILENAME_REGEX",
    "GeoTiffSource",
    "RasterInputError",
    "RasterSource",
    "Sentinel2FolderSource",
    "open_source",
]


def _as_window(window: Window | tuple[int, int, int, int]) -> Window:
    """Accept a rasterio ``Window`` or ``(col_off, row_off, width, height)``."""
    if isinstance(window, Window):
        return window
    col_off, row_off, width, height = window
    return Window(col_off, row_off, width, height)


class RasterSource:
    """A georeferenced multi-band raster read window by window.

    Attributes
    ----------
    path : Path
        The file or folder the source was opened from.
    crs, transform, width, height, count, nodata, profile
        Grid description (rasterio semantics). ``nodata`` is the first band's nodata value (or
        ``None``); ``profile`` is a rasterio profile of the stacked input.
    band_names : list[str]
        One name per band.
    input_files : list[Path]
        Every file the source reads (GDAL's file list: the raster, its sidecars, VRT sources;
        all band files of a folder), so an output can be refused when it is one of them.

    Notes
    -----
    Subclasses implement ``_read_inside(window) -> (data (C,h,w) float32, valid (h,w) bool)`` for
    windows entirely inside the raster; this class adds boundless padding.
    """

    path: Path
    crs: Any
    transform: Affine
    width: int
    height: int
    count: int
    nodata: float | None
    profile: dict[str, Any]
    band_names: list[str]
    input_files: list[Path]

    # -- public API -------------------------------------------------------------------------
    def read_with_mask(
        self, window: Window | tuple[int, int, int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read a (possibly out-of-bounds) window.

        Parameters
        ----------
        window : Window or (col_off, row_off, width, height)
            Integer pixel window; may extend beyond the raster on any side.

        Returns
        -------
        data : np.ndarray, float32, shape (C, h, w)
            Raw band values; pixels outside the raster are 0.
        valid : np.ndarray, bool, shape (h, w)
            False outside the raster and where any band is nodata, masked by the file or
            non-finite. Invalid pixels keep their raw values in ``data`` (NaN stays NaN).
        """
        win = _as_window(window)
        c0, r0 = int(win.col_off), int(win.row_off)
        w, h = int(win.width), int(win.height)
        if w <= 0 or h <= 0:
            raise ValueError(f"window must have a positive size, got {win}")
        ic0, ir0 = max(c0, 0), max(r0, 0)
        ic1, ir1 = min(c0 + w, self.width), min(r0 + h, self.height)
        if ic0 == c0 and ir0 == r0 and ic1 == c0 + w and ir1 == r0 + h:
            return self._read_inside(Window(c0, r0, w, h))
        data = np.zeros((self.count, h, w), dtype=np.float32)
        valid = np.zeros((h, w), dtype=bool)
        if ic1 > ic0 and ir1 > ir0:
            d, v = self._read_inside(Window(ic0, ir0, ic1 - ic0, ir1 - ir0))
            data[:, ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = d
            valid[ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = v
        return data, valid

    def read(self, window: Window | tuple[int, int, int, int]) -> np.ndarray:
        """Boundless read: float32 (C, h, w), zero outside the raster (see :meth:`read_with_mask`)."""
        return self.read_with_mask(window)[0]

    def valid_mask(self, window: Window | tuple[int, int, int, int]) -> np.ndarray:
        """(h, w) bool: False outside the raster and where any band is nodata."""
        return self.read_with_mask(window)[1]

    def close(self) -> None:  # pragma: no cover - overridden
        """Release file handles."""

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, {self.count} bands, "
            f"{self.width}x{self.height}, crs={self.crs})"
        )

    # -- for subclasses ---------------------------------------------------------------------
    def _read_inside(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def _open_dataset(path: Path) -> rasterio.DatasetReader:
    """Open ``path`` and check its header (truncation, dtype); one RasterInputError if bad."""
    try:
        ds = rasterio.open(path)
    except RasterioIOError as err:
        raise RasterInputError(f"cannot read raster {path}: {err}") from err
    try:
        check_band_dtypes(ds, path)
        check_tiff_blocks(ds, path)
    except BaseException:
        ds.close()
        raise
    return ds


def _check_crs(ds: rasterio.DatasetReader, path: Path) -> None:
    if ds.crs is None:
        ds.close()
        raise RasterInputError(
            f"{path} has no CRS (no georeferencing); gridded inference needs a georeferenced "
            "input so the output can be aligned to it"
        )


def _has_float_bands(ds: rasterio.io.DatasetReaderBase, indexes: Sequence[int]) -> bool:
    return any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in indexes)


def _valid_from_band_masks(
    ds: rasterio.io.DatasetReaderBase,
    indexes: Sequence[int],
    window: Window,
    data: np.ndarray,
    check_finite: bool = True,
) -> np.ndarray:
    """Validity of each pixel: False if any band is nodata / masked / non-finite.

    ``check_finite=False`` skips the NaN/inf test (integer bands cannot hold them).
    """
    valid = np.isfinite(data).all(axis=0) if check_finite else np.ones(data.shape[1:], bool)
    use_gdal_mask = False
    for j, bidx in enumerate(indexes):
        flags = ds.mask_flag_enums[bidx - 1]
        nod = ds.nodatavals[bidx - 1]
        if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
            use_gdal_mask = True
        elif nod is not None and not np.isnan(nod):
            valid &= data[j] != np.float32(nod)
    if use_gdal_mask:
        masks = ds.read_masks(list(indexes), window=window)
        valid &= np.all(masks > 0, axis=0)
    return valid


class GeoTiffSource(RasterSource):
    """A single multi-band raster file.

    Parameters
    ----------
    path : str or Path
        Raster file readable by GDAL, with a CRS.
    indexes : sequence of int, optional
        1-based band indexes to read (default: all bands).
    band_names : sequence of str, optional
        Names of the selected bands (default: the file's band descriptions or ``band<i>``).
    """

    def __init__(
        self,
        path: str | Path,
        indexes: Sequence[int] | None = None,
        band_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        ds = _open_dataset(self.path)
        _check_crs(ds, self.path)
        self._ds = ds
        self.indexes = list(indexes) if indexes is not None else list(range(1, ds.count + 1))
        self.crs = ds.crs
        self.transform = ds.transform
        self.width, self.height = ds.width, ds.height
        self.count = len(self.indexes)
        self.nodata = ds.nodatavals[self.indexes[0] - 1]
        self.profile = dict(ds.profile, count=self.count)
        if band_names is None:
            band_names = [ds.descriptions[i - 1] or f"band{i}" for i in self.indexes]
        self.band_names = list(band_names)
        self.input_files = [Path(f) for f in ds.files]
        self._finite = _has_float_bands(ds, self.indexes)

    def _read_inside(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        try:
            data = self._ds.read(self.indexes, window=window, out_dtype=np.float32)
            return data, _valid_from_band_masks(self._ds, self.indexes, window, data, self._finite)
        except RasterioError as err:
            raise read_error(self.path, window, err) from err

    def close(self) -> None:
        self._ds.close()


class Sentinel2FolderSource(RasterSource):
    """A folder of per-band Sentinel-2 files, stacked on the grid of the first band.

    Parameters
    ----------
    folder : Path
        Folder holding the files (searched recursively).
    files : sequence of Path
        One file per band, in band order (see :func:`open_source`, which finds them).
    band_names : sequence of str
        Names of the bands, same order as ``files``.
    resampling : rasterio Resampling
        Used for bands whose grid differs from the first band's (default bilinear, as torchgeo
        uses for image layers).
    """

    def __init__(
        self,
        folder: Path,
        files: Sequence[Path],
        band_names: Sequence[str],
        resampling: Resampling = Resampling.bilinear,
    ) -> None:
        self.path = Path(folder)
        self.files = [Path(f) for f in files]
        self.band_names = list(band_names)
        self._datasets: list[rasterio.io.DatasetReaderBase] = []
        self._readers: list[rasterio.io.DatasetReaderBase] = []
        try:
            for f in self.files:
                ds = _open_dataset(f)
                self._datasets.append(ds)
                _check_crs(ds, f)
                if ds.count != 1:
                    raise RasterInputError(
                        f"{f}: expected a single-band Sentinel-2 band file, found {ds.count} bands"
                    )
            ref = self._datasets[0]
            self.crs, self.transform = ref.crs, ref.transform
            self.width, self.height = ref.width, ref.height
            for ds, f in zip(self._datasets, self.files, strict=True):
                check_same_grid(ds, f, ref, self.files[0])
            for ds in self._datasets:
                same = (
                    ds.crs == ref.crs
                    and ds.transform == ref.transform
                    and (ds.width, ds.height) == (ref.width, ref.height)
                )
                if same:
                    self._readers.append(ds)
                else:
                    self._readers.append(
                        WarpedVRT(
                            ds,
                            crs=ref.crs,
                            transform=ref.transform,
                            width=ref.width,
                            height=ref.height,
                            resampling=resampling,
                            src_nodata=ds.nodata,
                            nodata=ds.nodata,
                        )
                    )
        except BaseException:
            self.close()
            raise
        self.count = len(self.files)
        self.nodata = ref.nodata
        self.profile = dict(ref.profile, count=self.count)
        self._finite = [_has_float_bands(ds, [1]) for ds in self._datasets]
        self.input_files = [Path(f) for ds in self._datasets for f in ds.files]

    def _read_inside(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        data = np.empty((self.count, int(window.height), int(window.width)), dtype=np.float32)
        valid = np.ones(data.shape[1:], dtype=bool)
        for j, rd in enumerate(self._readers):
            try:
                data[j] = rd.read(1, window=window, out_dtype=np.float32)
                valid &= _valid_from_band_masks(rd, [1], window, data[j : j + 1], self._finite[j])
            except RasterioError as err:
                raise read_error(self.files[j], window, err) from err
        return data, valid

    def close(self) -> None:
        for rd in self._readers:
            if isinstance(rd, WarpedVRT):
                rd.close()
        for ds in self._datasets:
            ds.close()


def open_source(
    path: str | Path,
    bands: Sequence[str] | None = None,
    *,
    expected_bands: int | None = None,
    resampling: str | Resampling = "bilinear",
) -> RasterSource:
    """Open a scene for gridded inference.

    Parameters
    ----------
    path : str or Path
        A multi-band raster file (GeoTIFF), or a folder of per-band Sentinel-2 files named like
        torchgeo's ``Sentinel2`` dataset (``T23KPQ_20230815T130251_B02_10m.tif``, or without the
        resolution suffix).
    bands : sequence of str, optional
        Folder input: the bands to stack, in order (default ``B02 B03 B04 B08 B11 B12``). File
        input: names of the bands to select by band description, or just names for all bands
        (then its length must equal the band count).
    expected_bands : int, optional
        Raise if the stacked source does not have exactly this many bands.
    resampling : str or Resampling
        Folder input: resampling for bands whose grid differs from the first band's
        (e.g. 20 m B11/B12 onto the 10 m grid). Default ``bilinear`` (torchgeo's choice for images).

    Returns
    -------
    RasterSource
        Use as a context manager.

    Raises
    ------
    RasterInputError
        Missing path, unreadable file, no CRS, wrong band count, missing band file.
    """
    path = Path(path)
    if not path.exists():
        raise RasterInputError(f"input raster {path} does not exist")
    rs = Resampling[resampling] if isinstance(resampling, str) else Resampling(resampling)
    if path.is_dir():
        band_list = list(bands) if bands is not None else list(DEFAULT_S2_BANDS)
        files = find_s2_band_files(path, band_list)
        src: RasterSource = Sentinel2FolderSource(path, files, band_list, resampling=rs)
    else:
        indexes = None
        names = None
        if bands is not None:
            with _open_dataset(path) as ds:
                descs = [d or "" for d in ds.descriptions]
                count = ds.count
            if all(b in descs for b in bands):
                indexes = [descs.index(b) + 1 for b in bands]
                names = list(bands)
            elif len(bands) == count:
                names = list(bands)
            else:
                raise RasterInputError(
                    f"{path} has {count} bands (descriptions {descs}); cannot select bands "
                    f"{list(bands)}: give one name per band or names matching band descriptions"
                )
        src = GeoTiffSource(path, indexes=indexes, band_names=names)
    if expected_bands is not None and src.count != expected_bands:
        src.close()
        raise RasterInputError(
            f"{path} has {src.count} bands but the model expects {expected_bands} "
            f"(bands {src.band_names})"
        )
    return src
