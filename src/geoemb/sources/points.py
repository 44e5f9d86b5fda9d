"""EuroSAT-style chips at labelled points, cut from any embedding raster (``read_chips``).

:func:`write_point_chips` cuts a ``size × size`` chip around every point of a labelled point
layer from an embedding-raster source (AEF, Tessera, any GeoTIFF set) and writes them in the
EuroSAT-Embed layout that the GeoPool benchmark reads (``reference/geopool.md``)::

    <out>/eurosat-<encoder>/<Class>/<Class>_<i>.tif     one chip per point (georeferenced)
    <out>/eurosat-{train,val,test}.txt                  random split (seeded)
    <out>/eurosat-spatial-{train,val,test}.txt          longitude split (west -> east)

Chips are stored in the encoder's EuroSAT-Embed format, from the raster's raw codes
(``decode="raw"`` / ``tessera_unscaled``): ``aef`` = uint8 ``q + 127`` (255 = invalid pixel),
``tessera`` = uint8 ``q + 128`` (0 = invalid pixel). A point whose chip holds no valid pixel, a
label that is not a class name, or raster values that are not the encoder's int8 codes is one
:class:`~geoemb.errors.InputError` raised before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio

from geoemb.errors import InputError
from geoemb.sources.chips import read_chips

__all__ = ["CHIP_FORMATS", "labelled_points_stand_in", "write_point_chips"]

#: encoder -> (bands, offset added to the int8 code, nodata code of invalid pixels)
CHIP_FORMATS = {"aef": (64, 127, 255), "tessera": (128, 128, 0)}


def _points(points: Any, label_column: str) -> gpd.GeoDataFrame:
    if isinstance(points, str | os.PathLike):
        try:
            points = (
                gpd.read_file(points)
                if not str(points).endswith(".parquet")
                else gpd.read_parquet(points)
            )
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad input file
            raise InputError(
                f"cannot read labelled points {points} ({type(e).__name__}: {e})"
            ) from e
    if label_column not in points.columns:
        raise InputError(
            f"labelled points: no column {label_column!r} (columns: {list(points.columns)})"
        )
    return points


def write_point_chips(rasters: Any, points: Any, out: str | os.PathLike, *, classes: Sequence[str],
                      size: int = 64, label_column: str = "label", encoder: str = "aef",
                      seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Path:  # fmt: skip
    """Write EuroSAT-Embed chips at ``points`` (labels in ``label_column``, names in ``classes``).

    Parameters
    ----------
    rasters : an embedding-raster source (:func:`geoemb.sources.raster_source` with a raw decode),
        a tile index or tiles (anything :func:`read_chips` takes).
    points : GeoDataFrame or file of Point geometries (any CRS) with a label column.
    out : folder to write (must not exist or be empty).
    classes : valid class names (EuroSAT's for the GeoPool benchmark).
    size : chip side in pixels (the point's pixel at ``size // 2``).
    encoder : ``aef`` or ``tessera`` (:data:`CHIP_FORMATS`).
    seed, fractions : the random train/val/test split.

    Returns
    -------
    Path
        ``out``.
    """
    if encoder not in CHIP_FORMATS:
        raise InputError(f"encoder={encoder!r}: point chips are written for {sorted(CHIP_FORMATS)}")
    bands, offset, nodata = CHIP_FORMATS[encoder]
    pts = _points(points, label_column)
    labels = pts[label_column].astype(str).to_numpy()
    bad = sorted(set(labels) - set(classes))
    if bad:
        raise InputError(
            f"labelled points: labels {bad[:5]} are not class names; expected some of {list(classes)}"
        )
    chips = read_chips(rasters, pts, size)
    n, d = chips.values.shape[:2]
    if d != bands:
        raise InputError(f"encoder {encoder!r} chips need {bands} bands; the rasters have {d}")
    empty = np.flatnonzero(~chips.mask.reshape(n, -1).any(axis=1))
    if len(empty):
        raise InputError(
            f"labelled points {empty[:10].tolist()} (of {n}) have no valid pixel in a {size}x{size} "
            "chip (outside every tile, or nodata); drop them or extend the rasters"
        )
    v = chips.values
    valid = chips.mask[:, None]
    q = np.where(valid, v, 0.0)
    lo = -127 if encoder == "aef" else -128
    if not (np.array_equal(q, np.round(q)) and q.min() >= lo and q.max() <= 127):
        raise InputError(
            f"encoder {encoder!r} chips are stored as int8 codes: read the rasters with a raw decode "
            "(data.raster.decode=raw for AEF, tessera_unscaled for Tessera)"
        )
    codes = np.where(valid, q + offset, nodata).astype(np.uint8)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; point chips go to a new folder")
    names = []
    counts: dict[str, int] = {}
    for i in range(n):
        c = labels[i]
        counts[c] = counts.get(c, 0) + 1
        name = f"{c}_{counts[c]}"
        folder = out / f"eurosat-{encoder}" / c
        folder.mkdir(parents=True, exist_ok=True)
        with rasterio.open(folder / f"{name}.tif", "w", driver="GTiff", width=size, height=size,
                           count=bands, dtype="uint8", nodata=nodata, crs=chips.crs[i],
                           transform=chips.transforms[i]) as dst:  # fmt: skip
            dst.write(codes[i])
        names.append(name)
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(np.asarray(fractions[:2]) / sum(fractions) * n).astype(int)
    lon = np.asarray(pts.geometry.to_crs(4326).x)
    for prefix, order in (
        ("eurosat", rng.permutation(n)),
        ("eurosat-spatial", np.argsort(lon, kind="stable")),
    ):
        for split, idx in zip(("train", "val", "test"), np.split(order, cuts), strict=True):
            (out / f"{prefix}-{split}.txt").write_text(
                "".join(f"{names[i]}.jpg\n" for i in sorted(idx))
            )
    return out


def labelled_points_stand_in(polygons: str | os.PathLike, classes: tuple[str, str] = ("Residential", "AnnualCrop"),
                             per_block: int = 2, seed: int = 0) -> gpd.GeoDataFrame:  # fmt: skip
    """Labelled points over a census stand-in (``blocks.gpkg``): points inside each block,
    labelled ``classes[0]`` for urban blocks (``UR20 == "U"``) and ``classes[1]`` otherwise
    (blocks with ``ALAND20`` of 0 or over 25 km² are skipped, as the census study does)."""
    blocks = gpd.read_file(polygons)
    # the study's filter (drops the off-scene block)
    blocks = blocks[blocks["ALAND20"].between(1, 25e6)]
    rng = np.random.default_rng(seed)
    pts = blocks.geometry.sample_points(per_block, rng=rng).explode(index_parts=False)
    lab = np.where(blocks.loc[pts.index, "UR20"].to_numpy() == "U", classes[0], classes[1])
    return gpd.GeoDataFrame({"label": lab}, geometry=pts.to_numpy(), crs=blocks.crs).reset_index(
        drop=True
    )
