"""Up-front checks of the zonal pipeline: output paths, polygon CRS and coordinates, nodata.

Everything here runs before any pixel is read, so a bad argument costs seconds, not hours.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from geoemb.errors import InputError, OutputError
from geoemb.zonal.footprints import transformer
from geoemb.zonal.sources import is_remote

PathLike = str | os.PathLike


class ZonalWarning(UserWarning):
    """Something is probably not what the user meant, but the result is still correct."""


def warn(msg: str) -> None:
    """Emit a :class:`ZonalWarning` (shown once per message)."""
    warnings.warn(msg, ZonalWarning, stacklevel=3)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    output: PathLike,
    inputs: Iterable[PathLike | None] = (),
    suffixes: tuple[str, ...] | None = None,
    what: str = "output",
) -> Path:
    """Refuse an output path that cannot be used, before any work.

    Parameters
    ----------
    output:
        Target file.
    inputs:
        Input files the output must not replace (``None``/non-path entries are skipped; URLs too).
    suffixes:
        Allowed suffixes (lower case), e.g. ``(".parquet",)``; ``None`` accepts any.

    Raises
    ------
    OutputError
        ``output`` is an existing directory, lies under a file, is in a folder that cannot be
        written, has the wrong suffix, or is one of ``inputs``.
    """
    out = Path(output)
    if out.is_dir():
        raise OutputError(
            f"{what} {out} is an existing directory; expected a file path "
            f"(e.g. {out / ('features' + (suffixes[0] if suffixes else ''))})"
        )
    if suffixes and out.suffix.lower() not in suffixes:
        raise OutputError(f"{what} {out}: expected a file name ending in {' / '.join(suffixes)}")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {out}: folder {parent} is not writable")
    if not out.exists():  # nothing there that writing could destroy
        return out
    for p in inputs:
        if p is None or not isinstance(p, str | os.PathLike) or is_remote(p):
            continue
        if _same_file(out, Path(p)):
            raise OutputError(
                f"{what} {out} is the input {p}; writing it would destroy the input — "
                "choose another output path"
            )
    return out


def check_polygon_coordinates(gdf: gpd.GeoDataFrame, name: str) -> None:
    """Geographic polygons must have longitudes/latitudes in range (metres labelled as degrees
    are the usual mistake)."""
    crs = CRS.from_user_input(gdf.crs)
    if not crs.is_geographic or not len(gdf):
        return
    b = shapely.bounds(gdf.geometry.to_numpy())
    b = b[np.isfinite(b).all(axis=1)]
    if not len(b):
        return
    lo, hi = b.min(axis=0), b.max(axis=0)
    if lo[0] < -360 or hi[2] > 360 or lo[1] < -90.0001 or hi[3] > 90.0001:
        raise InputError(
            f"polygons {name} are in geographic CRS {crs.name!r} but their coordinates span "
            f"x {lo[0]:.6g}..{hi[2]:.6g}, y {lo[1]:.6g}..{hi[3]:.6g}; expected longitudes/latitudes "
            "(projected coordinates labelled with a geographic CRS?)"
        )


def to_crs_checked(geoms: gpd.GeoSeries, dst: Any, name: str) -> np.ndarray:
    """``geoms.to_crs(dst)`` as a shapely array; :class:`InputError` when the CRS cannot be
    transformed or some polygons have non-finite coordinates there (NaN vertices, or outside
    ``dst``'s domain)."""
    transformer(geoms.crs, dst, f"polygons {name}")  # a clear error for an untransformable CRS
    out = geoms.to_crs(dst).to_numpy()
    xy, row = shapely.get_coordinates(out, return_index=True)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        rows = np.unique(row[bad])
        raise InputError(
            f"polygons {name}: rows {rows[:10].tolist()}{' …' if len(rows) > 10 else ''} cannot be "
            f"transformed from {CRS.from_user_input(geoms.crs).name!r} to "
            f"{CRS.from_user_input(dst).name!r} (non-finite coordinates); expected polygons "
            "inside the area of use of both CRSs"
        )
    return out


@functools.lru_cache(maxsize=1024)
def nodata_code(nodata: float | None, dtype: str, path: str, override: bool) -> float | None:
    """The nodata value as comparable to the tile's stored values, or ``None`` for none.

    A value the dtype cannot hold (e.g. 255 for int8) matches no pixel: as the file's own
    declaration that is harmless (``None``); as a user override it is refused, since the user
    believes some pixels are nodata.
    """
    if nodata is None or np.isnan(nodata):
        return None
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if nodata != int(nodata) or not info.min <= nodata <= info.max:
            if override:
                raise InputError(
                    f"nodata {nodata!r} cannot occur in {dtype} tile {path} (values "
                    f"{info.min}..{info.max}); expected a nodata value of the tiles' dtype"
                )
            return None
    return nodata
