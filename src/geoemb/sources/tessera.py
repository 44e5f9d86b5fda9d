"""Tessera (GeoTessera) embedding tiles in the layout ``geotessera`` downloads and reads.

Facts used here, from the ``geotessera`` package source (version 0.7.5: ``registry.py``,
``tiles.py``, ``core.py``, ``cli.py``) and its README:

- 128 channels at 10 m; a 0.1° × 0.1° grid of tiles named by their centre, ``grid_0.15_52.05``
  (``f"grid_{lon:.2f}_{lat:.2f}"``), centres on the 0.05° offsets, covering lon ± 0.05°,
  lat ± 0.05° (``tile_from_world``: ``floor(x * 10) / 10 + 0.05``; ``contains_point`` is
  half-open: ``lon - 0.05 <= x < lon + 0.05``).
- ``--format npy`` (the quantised form): ``global_0.1_degree_representation/<year>/<grid>/
  <grid>.npy`` (int8, ``(H, W, 128)``) and ``<grid>_scales.npy`` (float32, ``(H, W)`` or
  ``(H, W, 128)``); de-quantised = ``int8 * scales`` (``dequantize_embedding``, 2-D scales
  broadcast over the channels). The georeferencing is not in the arrays: it comes from the
  landmask ``global_0.1_degree_tiff_all/<grid>.tiff`` (uint8, 1 band, the tile's UTM zone,
  north-up, 10 m; the arrays share its pixel grid).
- ``--format tiff`` (the default download): ``global_0.1_degree_representation/<year>/<grid>/
  <grid>_<year>.tiff``, float32 (already de-quantised), 128 bands described ``Tessera_Band_<i>``,
  LZW, 256-px tiles, the landmask's CRS and transform, tags ``TESSERA_DATASET_VERSION`` (``v1``
  by default), ``TESSERA_YEAR``, ``TESSERA_TILE_LAT``/``LON``.
- Dataset versions are server folders (``https://dl2.geotessera.org/<version>/…``); a local NPY
  download does not record its version, a GeoTIFF export does (``TESSERA_DATASET_VERSION``).

Reading: :func:`discover` finds the tiles (NPY preferred when both forms exist, as geotessera
does); :mod:`geoemb.sources.tessera_vrt` turns them into per-zone GDAL VRT mosaics that zonal
statistics and chip reads use.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.lib.format as npf
import rasterio
from affine import Affine
from pyproj import Transformer

from geoemb.errors import InputError
from geoemb.utils.io import atomic_path
from geoemb.zonal.sources import DATA_SOURCE_TAG

__all__ = [
    "EMBEDDINGS_DIR",
    "LANDMASKS_DIR",
    "TESSERA_BANDS",
    "TesseraTile",
    "cell_bounds",
    "dequantize",
    "discover",
    "grid_name",
    "npy_header",
    "quantize",
    "tile_from_world",
    "write_tessera_tile",
]

EMBEDDINGS_DIR = "global_0.1_degree_representation"
LANDMASKS_DIR = "global_0.1_degree_tiff_all"
TESSERA_BANDS = 128
_GRID = re.compile(r"grid_(-?\d+\.\d+)_(-?\d+\.\d+)")
_TIFF = re.compile(r"grid_(-?\d+\.\d+)_(-?\d+\.\d+)_(\d{4})\.tiff?")


def grid_name(lon: float, lat: float) -> str:
    """``grid_<lon:.2f>_<lat:.2f>`` of a tile centre."""
    return f"grid_{lon:.2f}_{lat:.2f}"


def tile_from_world(lon: float, lat: float) -> tuple[float, float]:
    """The centre of the 0.1° tile holding ``(lon, lat)`` (geotessera's ``tile_from_world``)."""
    return (round(math.floor(lon * 10) / 10 + 0.05, 2), round(math.floor(lat * 10) / 10 + 0.05, 2))


def cell_bounds(lon: float, lat: float) -> tuple[float, float, float, float]:
    """``(W, S, E, N)`` of the tile centred at ``(lon, lat)``: ± 0.05°."""
    return (lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05)


def utm_epsg(lon: float, lat: float) -> int:
    """The WGS 84 / UTM zone holding ``(lon, lat)`` (326xx north, 327xx south)."""
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def dequantize(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """geotessera's ``dequantize_embedding``: ``q.astype(float32) * scales`` ((H, W) scales are
    broadcast over the channels)."""
    if scales.ndim == q.ndim - 1:
        scales = scales[..., None]
    return q.astype(np.float32) * scales


def quantize(x: np.ndarray, per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Float embeddings ``(H, W, C)`` -> int8 codes and float32 scales ((H, W), or (H, W, C) with
    ``per_channel``): ``scale = max |x| / 127``, ``q = round(x / scale)`` (zero vectors: scale 0)."""
    x = np.asarray(x, dtype=np.float32)
    m = np.abs(x) if per_channel else np.abs(x).max(axis=-1, keepdims=True)
    scale = (m / 127.0).astype(np.float32)
    q = np.round(np.divide(x, scale, out=np.zeros_like(x), where=scale > 0))
    scale = scale if per_channel else scale[..., 0]
    return np.clip(q, -127, 127).astype(np.int8), scale


def npy_header(path: str | os.PathLike) -> tuple[int, tuple[int, ...], np.dtype, bool]:
    """``(data offset, shape, dtype, fortran_order)`` of a ``.npy`` file, read from its header.

    Raises
    ------
    InputError
        Not a readable ``.npy`` file (named).
    """
    try:
        with open(path, "rb") as f:
            version = npf.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npf.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = npf.read_array_header_2_0(f)
            return f.tell(), tuple(shape), np.dtype(dtype), bool(fortran)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read Tessera array {path}: {e}; expected a .npy file") from e


@dataclasses.dataclass(frozen=True)
class TesseraTile:
    """One tile of a local Tessera download.

    ``embedding`` is the ``.npy`` (format ``npy``) or the GeoTIFF (format ``tiff``); ``scales``
    and ``landmask`` belong to the NPY form (the landmask also georeferences it).
    """

    lon: float
    lat: float
    year: int
    fmt: str
    embedding: Path
    scales: Path | None = None
    landmask: Path | None = None

    @property
    def name(self) -> str:
        return grid_name(self.lon, self.lat)


def discover(root: str | os.PathLike) -> list[TesseraTile]:
    """Every tile under a geotessera output folder ``root``, sorted by (year, lat, lon).

    NPY tiles need their scales file and their landmask; a tile folder with neither form is
    ignored, one with an ``.npy`` but no scales or landmask is an error (an incomplete download).

    Raises
    ------
    InputError
        An incomplete NPY tile, naming the missing file.
    """
    root = Path(root)
    out: list[TesseraTile] = []
    for year_dir in sorted((root / EMBEDDINGS_DIR).glob("[0-9][0-9][0-9][0-9]")):
        year = int(year_dir.name)
        for tile_dir in sorted(year_dir.glob("grid_*")):
            m = _GRID.fullmatch(tile_dir.name)
            if m is None or not tile_dir.is_dir():
                continue
            lon, lat = float(m.group(1)), float(m.group(2))
            npy = tile_dir / f"{tile_dir.name}.npy"
            tif = [
                p for p in tile_dir.glob(f"{tile_dir.name}_{year}.tif*") if _TIFF.fullmatch(p.name)
            ]
            if npy.exists():
                scales = tile_dir / f"{tile_dir.name}_scales.npy"
                landmask = root / LANDMASKS_DIR / f"{tile_dir.name}.tiff"
                for need, what in ((scales, "scales"), (landmask, "landmask")):
                    if not need.exists():
                        raise InputError(
                            f"Tessera tile {npy} has no {what} file {need}; expected geotessera's "
                            f"NPY layout (<grid>.npy + <grid>_scales.npy + {LANDMASKS_DIR}/"
                            "<grid>.tiff): re-run the download"
                        )
                out.append(TesseraTile(lon, lat, year, "npy", npy, scales, landmask))
            elif tif:
                out.append(TesseraTile(lon, lat, year, "tiff", tif[0]))
    return sorted(out, key=lambda t: (t.year, t.lat, t.lon))


def cell_grid(lon: float, lat: float, res: float = 10.0, align: tuple[float, float] = (0.0, 0.0)):
    """The UTM pixel grid of a tile as the synthetic writer lays it out: the zone's bounding box
    of the 0.1° cell, snapped outwards to ``res`` (offset ``align``). Returns (epsg, transform,
    height, width). (Real tiles' exact extents could not be confirmed offline.)"""
    epsg = utm_epsg(lon, lat)
    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    w, s, e, n = cell_bounds(lon, lat)
    ts = np.linspace(0, 1, 33)
    xs = np.concatenate([w + (e - w) * ts, np.full(33, e), w + (e - w) * ts, np.full(33, w)])
    ys = np.concatenate([np.full(33, s), s + (n - s) * ts, np.full(33, n), s + (n - s) * ts])
    x, y = tr.transform(xs, ys)
    ax, ay = align
    x0 = math.floor((min(x) - ax) / res) * res + ax
    x1 = math.ceil((max(x) - ax) / res) * res + ax
    y0 = math.floor((min(y) - ay) / res) * res + ay
    y1 = math.ceil((max(y) - ay) / res) * res + ay
    return (
        epsg,
        Affine(res, 0, x0, 0, -res, y1),
        int(round((y1 - y0) / res)),
        int(round((x1 - x0) / res)),
    )


def write_tessera_tile(
    root: str | os.PathLike,
    lon: float,
    lat: float,
    year: int,
    q: np.ndarray,
    scales: np.ndarray,
    *,
    epsg: int,
    transform: Affine,
    landmask: np.ndarray | None = None,
    layout: str = "npy",
    version: str = "v1",
    tags: dict[str, str] | None = None,
) -> TesseraTile:
    """Write one tile in geotessera's layout under ``root``.

    Parameters
    ----------
    q, scales : arrays
        int8 codes ``(H, W, C)`` and float32 scales ``(H, W)`` or ``(H, W, C)``.
    epsg, transform : int, Affine
        The tile's UTM zone and north-up 10 m grid (stored in the landmask / the GeoTIFF).
    landmask : (H, W) uint8, optional
        1 = land (default all ones).
    layout : ``npy`` or ``tiff``
        ``npy``: ``<grid>.npy`` + ``<grid>_scales.npy`` + the landmask GeoTIFF; ``tiff``: one
        float32 GeoTIFF of ``q * scales`` as ``geotessera download --format tiff`` writes it.
    tags : mapping, optional
        Extra GeoTIFF tags (``data_source=synthetic``) on the landmask / the GeoTIFF.
    """
    root = Path(root)
    h, w, c = q.shape
    name = grid_name(lon, lat)
    tile_dir = root / EMBEDDINGS_DIR / str(year) / name
    tile_dir.mkdir(parents=True, exist_ok=True)
    tags = dict(tags or {})
    if layout == "npy":
        lm = np.ones((h, w), np.uint8) if landmask is None else landmask.astype(np.uint8)
        lm_path = root / LANDMASKS_DIR / f"{name}.tiff"
        lm_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(lm_path) as tmp:
            with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1,
                               dtype="uint8", crs=f"EPSG:{epsg}", transform=transform,
                               compress="lzw") as dst:  # fmt: skip
                dst.write(lm, 1)
                dst.update_tags(**tags)
        for arr, path in ((q, tile_dir / f"{name}.npy"), (scales, tile_dir / f"{name}_scales.npy")):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, arr)
        return TesseraTile(lon, lat, year, "npy", tile_dir / f"{name}.npy",
                           tile_dir / f"{name}_scales.npy", lm_path)  # fmt: skip
    if layout != "tiff":
        raise ValueError(f"layout must be 'npy' or 'tiff', got {layout!r}")
    path = tile_dir / f"{name}_{year}.tiff"
    data = np.moveaxis(dequantize(q, scales), -1, 0)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=c, dtype="float32",
                           crs=f"EPSG:{epsg}", transform=transform, compress="lzw", tiled=True,
                           blockxsize=256, blockysize=256) as dst:  # fmt: skip
            dst.write(data)
            for i in range(c):
                dst.set_band_description(i + 1, f"Tessera_Band_{i}")
            dst.update_tags(TESSERA_DATASET_VERSION=version, TESSERA_YEAR=str(year),
                            TESSERA_TILE_LAT=f"{lat:.2f}", TESSERA_TILE_LON=f"{lon:.2f}",
                            TESSERA_DESCRIPTION="GeoTessera satellite embedding tile", **tags)  # fmt: skip
    return TesseraTile(lon, lat, year, "tiff", path)


def versions(tiles: Iterable[TesseraTile]) -> dict[str, list[Path]]:
    """``TESSERA_DATASET_VERSION`` -> GeoTIFF tiles carrying it (NPY tiles record none)."""
    out: dict[str, list[Path]] = {}
    for t in tiles:
        if t.fmt == "tiff":
            with rasterio.open(t.embedding) as ds:
                v = ds.tags().get("TESSERA_DATASET_VERSION", "unknown")
            out.setdefault(v, []).append(t.embedding)
    return out


def is_synthetic(tile: TesseraTile) -> bool:
    """Whether the tile carries geoemb's stand-in tag (on its landmask or GeoTIFF)."""
    path = tile.landmask if tile.fmt == "npy" else tile.embedding
    with rasterio.open(path) as ds:
        return ds.tags().get(DATA_SOURCE_TAG) == "synthetic"
