"""EuroSAT-Embed files: layout, encoder formats, split files and the reference reader (no Lightning).

On-disk layout (``reference/geopool.md`` §3-4)::

    <root>/eurosat-train.txt  eurosat-val.txt  eurosat-test.txt          (".jpg" names, random split)
    <root>/eurosat-spatial-{train,val,test}.txt                          (longitude split)
    <root>/eurosat-<encoder>/<Class>/<Class>_<n>.tif                     band-interleaved embeddings

Encoders and their stored formats:

========================  ======  =========  ======================================================
encoder                   bands   dtype      values
========================  ======  =========  ======================================================
``aef``                   64      uint8      AlphaEarth codes 0..254, ``127`` ~ 0 (sqrt-quantised)
``olmoearth-nano``        128     float32    raw embeddings
``olmoearth-tiny``        192     float32    raw embeddings (dims per the blog; unverified)
``olmoearth-base``        768     float32    raw embeddings (dims per the blog; unverified)
``tessera``               128     uint8      GeoTessera int8 + 128 (scales not applied)
``tessera`` (ICLR)        512     float32    torchgeo Tessera encoder output
========================  ======  =========  ======================================================

Every file is read as the reference loader does: ``rasterio`` ``read(out_dtype="float32",
out_shape=(64, 64))`` (nearest resampling), so a file that is not 64x64 is resampled.

``values="raw"`` pools the stored values (reproduces the published numbers: offset codes for AEF
and Tessera-128). ``values="dequantized"`` applies the inverse quantisation: AEF
``q = code - 127; x = sign(q) * (|q| / 127.5)**2``; Tessera-128 ``x = code - 128`` (the int8
value; GeoTessera's per-pixel scales are not in the files); float32 encoders are unchanged.

Pixels whose bands all equal the file's declared nodata value, or with any non-finite band (NaN,
±inf), are invalid: ``mask`` is False there and the image value is set to 0, so they never reach a
pooling method or head (the reference has no nodata handling; the real files declare none and hold
no NaN, so this changes nothing for them). A chip with **no** valid pixel is an
:class:`~geoemb.errors.InputError` naming the file — it is not turned into a zero feature row (what
the reference's ``sanitize_features`` would silently do). An unreadable (truncated, corrupt) file is
an :class:`EmbeddingFileError` naming it. Pooled features that overflow to non-finite values (e.g.
covariance of values near the float32 limit) are kept as computed and reported with a warning by
:func:`pool_dataset`; the probes then zero them as the reference does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geoemb.data.source import STAND_IN_HINT
from geoemb.errors import DataNotFoundError, InputError

__all__ = [
    "CLASSES",
    "DOWNLOAD_HINT",
    "ENCODER_FORMATS",
    "GET_DATA",
    "IMAGE_SIZE",
    "SPLITS",
    "SPLIT_TYPES",
    "VALUES",
    "EmbeddingFileError",
    "EncoderFormat",
    "check_format",
    "dequantize",
    "encoder_dir",
    "label_of",
    "missing_files",
    "parse_split_file",
    "read_embedding",
    "split_file",
]

CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
"""EuroSAT class names; label = index (alphabetical, torchgeo/GeoPool order)."""

SPLIT_TYPES: tuple[str, ...] = ("standard", "spatial")
"""``standard`` = random split of Neumann et al.; ``spatial`` = torchgeo longitude split."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
VALUES: tuple[str, ...] = ("raw", "dequantized")
IMAGE_SIZE = 64

GET_DATA = (
    "Download the pixel embeddings from https://hf.co/datasets/isaaccorley/eurosat-embed "
    "(eurosat-<encoder>.tar.gz) and the split files eurosat[-spatial]-{train,val,test}.txt from "
    "https://hf.co/datasets/torchgeo/eurosat into data.root."
)
DOWNLOAD_HINT = f"{GET_DATA} {STAND_IN_HINT}"


class EmbeddingFileError(InputError, OSError):
    """An EuroSAT-Embed GeoTIFF cannot be read (truncated, corrupt, not a GeoTIFF)."""


@dataclass(frozen=True)
class EncoderFormat:
    """One admissible on-disk format of an encoder's embedding GeoTIFFs."""

    bands: int
    dtype: str
    offset: float | None = None  # integer code of 0 (uint8 formats)
    kind: str = "float"  # "aef" (sqrt quantised), "int8" (offset int8), "float"


ENCODER_FORMATS: dict[str, tuple[EncoderFormat, ...]] = {
    "aef": (EncoderFormat(64, "uint8", 127.0, "aef"),),
    "olmoearth-nano": (EncoderFormat(128, "float32"),),
    "olmoearth-tiny": (EncoderFormat(192, "float32"),),
    "olmoearth-base": (EncoderFormat(768, "float32"),),
    "tessera": (EncoderFormat(128, "uint8", 128.0, "int8"), EncoderFormat(512, "float32")),
}
"""encoder name -> admissible (bands, dtype) formats; the file must match one of them."""


def encoder_dir(root: str | os.PathLike, encoder: str) -> Path:
    """Directory ``<root>/eurosat-<encoder>`` holding that encoder's class folders."""
    return Path(root) / f"eurosat-{encoder}"


def split_file(root: str | os.PathLike, split: str, split_type: str = "standard") -> Path:
    """Path of the split file, e.g. ``<root>/eurosat-spatial-test.txt``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    if split_type not in SPLIT_TYPES:
        raise ValueError(f"split_type={split_type!r}: expected one of {SPLIT_TYPES}")
    prefix = "eurosat-spatial" if split_type == "spatial" else "eurosat"
    return Path(root) / f"{prefix}-{split}.txt"


def missing_files(
    root: str | os.PathLike, encoder: str = "aef", split_type: str = "standard"
) -> str | None:
    """``None`` if ``root`` holds ``eurosat-<encoder>/`` and the three split files of
    ``split_type``, else what is missing (the cheap check of the DataModule's data source)."""
    root = Path(root)
    if not root.is_dir():
        return "folder does not exist"
    need = [encoder_dir(root, encoder)] + [split_file(root, s, split_type) for s in SPLITS]
    missing = [p.name + ("/" if p == need[0] else "") for p in need if not p.exists()]
    return f"missing {', '.join(missing)}" if missing else None


def parse_split_file(path: str | os.PathLike) -> list[str]:
    """Read a split file and return the file stems (``"AnnualCrop_1"``), in file order.

    Lines may carry ``.jpg`` (real files) or ``.tif`` names; blank lines are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"EuroSAT split file not found: {path}. {DOWNLOAD_HINT}")
    stems = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        stem = Path(name).stem
        cls = stem.rsplit("_", 1)[0]
        if cls not in CLASSES:
            raise InputError(
                f"{path}:{lineno}: {name!r} is not '<Class>_<n>.jpg' with a EuroSAT class "
                f"(expected one of {CLASSES})"
            )
        stems.append(stem)
    if not stems:
        raise InputError(f"EuroSAT split file {path} lists no images")
    return stems


def label_of(stem: str) -> int:
    """Label of a file stem ``<Class>_<n>`` (index in :data:`CLASSES`)."""
    return CLASSES.index(stem.rsplit("_", 1)[0])


def check_format(path: Path, encoder: str, count: int, dtype: str) -> EncoderFormat:
    """Return the :class:`EncoderFormat` matching a file or raise naming the file."""
    if encoder not in ENCODER_FORMATS:
        raise InputError(f"encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
    for fmt in ENCODER_FORMATS[encoder]:
        if fmt.bands == count and fmt.dtype == dtype:
            return fmt
    expected = " or ".join(f"{f.bands} bands {f.dtype}" for f in ENCODER_FORMATS[encoder])
    raise InputError(
        f"{path}: {count} bands of {dtype} contradicts encoder {encoder!r} (expected {expected})"
    )


def dequantize(x: np.ndarray, fmt: EncoderFormat) -> np.ndarray:
    """Invert the stored quantisation of ``x`` (float32 codes, any shape) for format ``fmt``.

    AEF: ``q = code - 127; sign(q) * (|q| / 127.5)**2``. Tessera-128: ``code - 128``.
    Float formats: unchanged.
    """
    if fmt.kind == "aef":
        q = x.astype(np.float64) - fmt.offset
        return (np.sign(q) * (np.abs(q) / 127.5) ** 2).astype(np.float32)
    if fmt.kind == "int8":
        return (x - np.float32(fmt.offset)).astype(np.float32)
    return x


def _gdal_reason(e: BaseException) -> str:
    """``e``'s message plus the GDAL errors chained to it (rasterio's own says only "Read failed")."""
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        msg = str(e).strip()
        if msg and msg not in parts and not msg.startswith("Read failed"):
            parts.append(msg)
        e = e.__cause__ or e.__context__
    return "; ".join(parts) or "read failed"


def read_embedding(
    path: str | os.PathLike,
    encoder: str,
    values: str = "raw",
    size: int | None = IMAGE_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one EuroSAT-Embed GeoTIFF like the reference loader.

    Parameters
    ----------
    path:
        The ``.tif`` file.
    encoder:
        Encoder name (key of :data:`ENCODER_FORMATS`); the band count/dtype must match it.
    values:
        ``"raw"`` (stored values as float32) or ``"dequantized"`` (see :func:`dequantize`).
    size:
        Output height = width (nearest resampling via ``out_shape``); ``None`` keeps the file size.

    Returns
    -------
    image:
        ``(D, size, size)`` float32; invalid pixels set to 0.
    mask:
        ``(size, size)`` bool, True = valid.

    Raises
    ------
    EmbeddingFileError
        The file cannot be read (truncated/corrupt); names the file.
    InputError
        Band count/dtype contradict ``encoder``, or no pixel is valid; names the file.
    """
    if values not in VALUES:
        raise ValueError(f"values={values!r}: expected one of {VALUES}")
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"EuroSAT-Embed file not found: {path}. {DOWNLOAD_HINT}")
    try:
        with rasterio.open(path) as src:
            fmt = check_format(path, encoder, src.count, src.dtypes[0])
            shape = (src.count, size, size) if size else (src.count, src.height, src.width)
            x = src.read(out_dtype="float32", out_shape=shape)
            nodata = src.nodata
    except RasterioError as e:
        raise EmbeddingFileError(
            f"cannot read EuroSAT-Embed GeoTIFF {path} (truncated or corrupt?): {_gdal_reason(e)}"
        ) from e
    invalid = ~np.isfinite(x).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        invalid |= (x == np.float32(nodata)).all(axis=0)
    if invalid.all():
        raise InputError(
            f"{path}: no valid pixel — every pixel is nodata (nodata={nodata}) or has a "
            f"non-finite (NaN/inf) band; expected at least one valid embedding pixel"
        )
    if values == "dequantized":
        x = dequantize(x, fmt)
    if invalid.any():
        x[:, invalid] = 0.0
    return x, ~invalid
