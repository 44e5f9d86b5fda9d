"""Inputs of the zonal pipeline: polygon layers and embedding-raster tile catalogues.

A *tile catalogue* is a GeoDataFrame with one row per raster tile: a footprint ``geometry`` (in the
catalogue CRS) and an absolute ``path``. It is built either from an explicit list of GeoTIFFs (their
footprints are read from the files) or from a tile index such as AEF's ``aef_index.gpkg``
(footprints -> paths; relative paths are resolved against the index file's folder).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, shape

PathLike = str | os.PathLike

#: Column names tried (in order) when a tile index does not name its path column.
PATH_COLUMNS = ("path", "location", "filename", "file", "href", "url", "tile_path")

#: Value decodings: ``raw`` casts stored values to float; ``aef`` inverts AlphaEarth quantisation
#: ``x = sign(q) * (|q| / 127.5) ** 2`` with ``q = code - 127`` for uint8 codes (GeoPool/EuroSAT-Embed
#: layout, 127 ~ 0) or ``q = code`` for int8 codes.
DECODINGS = ("raw", "aef")


def read_polygons(
    polygons: PathLike | gpd.GeoDataFrame, layer: str | None = None
) -> gpd.GeoDataFrame:
    """Read a polygon layer (GeoPackage, GeoParquet, Shapefile, ...) and check it has a CRS.

    Parameters
    ----------
    polygons:
        A path (``.parquet``/``.geoparquet`` read with ``read_parquet``; anything else through
        pyogrio) or an in-memory GeoDataFrame.
    layer:
        Optional layer name for multi-layer files.

    Returns
    -------
    GeoDataFrame with a CRS and a fresh RangeIndex.
    """
    name = "<GeoDataFrame>"
    if isinstance(polygons, gpd.GeoDataFrame):
        gdf = polygons.copy()
    else:
        name = str(polygons)
        path = Path(polygons)
        if not path.exists():
            raise FileNotFoundError(f"polygon file {path} does not exist")
        if path.suffix.lower() in (".parquet", ".geoparquet", ".pq"):
            gdf = gpd.read_parquet(path)
        else:
            gdf = gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    if gdf.crs is None:
        raise ValueError(
            f"polygons {name} have no CRS; expected a georeferenced layer "
            "(set one with GeoDataFrame.set_crs or fix the .prj/metadata)"
        )
    if len(gdf) and not gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        bad = sorted(set(gdf.geom_type) - {"Polygon", "MultiPolygon"})
        raise ValueError(f"polygons {name}: expected Polygon/MultiPolygon geometries, got {bad}")
    return gdf.reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class TileMeta:
    """Georeferencing of one raster tile (read once, shared by all worker threads)."""

    path: str
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None


def read_tile_meta(path: PathLike) -> TileMeta:
    """Open ``path`` and return its :class:`TileMeta`; clear errors for missing/CRS-less tiles."""
    path = str(path)
    if "://" not in path and not Path(path).exists():
        raise FileNotFoundError(f"embedding tile {path} does not exist")
    with rasterio.open(path) as ds:
        if ds.crs is None:
            raise ValueError(f"embedding tile {path} has no CRS; expected a georeferenced GeoTIFF")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise ValueError(
                f"embedding tile {path} has a rotated transform {t}; expected north-up"
            )
        return TileMeta(path, ds.crs, t, ds.width, ds.height, ds.count, ds.dtypes[0], ds.nodata)


def _expand_tiles(tiles: PathLike | Iterable[PathLike]) -> list[str]:
    items = [tiles] if isinstance(tiles, str | os.PathLike) else list(tiles)
    out: list[str] = []
    for item in items:
        s = str(item)
        if os.path.isdir(s):
            found = sorted(
                p
                for ext in ("tif", "tiff", "TIF", "vrt")
                for p in glob.glob(f"{s}/**/*.{ext}", recursive=True)
            )
            if not found:
                raise FileNotFoundError(f"tile folder {s} contains no .tif/.tiff/.vrt files")
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = sorted(glob.glob(s, recursive=True))
            if not found:
                raise FileNotFoundError(f"tile pattern {s} matched no files")
            out.extend(found)
        else:
            out.append(s)
    return out


def catalog_from_tiles(tiles: PathLike | Iterable[PathLike]) -> gpd.GeoDataFrame:
    """Build a tile catalogue (footprints in EPSG:4326 + ``path``) from GeoTIFF paths/folders/globs."""
    rows, geoms = [], []
    for p in _expand_tiles(tiles):
        meta = read_tile_meta(p)
        t = meta.transform
        left, top, right, bottom = t.c, t.f, t.c + t.a * meta.width, t.f + t.e * meta.height
        fp = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        geoms.append(
            shape(transform_geom(meta.crs, "EPSG:4326", fp.__geo_interface__, precision=-1))
        )
        rows.append({"path": os.path.abspath(p) if "://" not in p else p})
    if not rows:
        raise ValueError("no embedding tiles given; expected at least one GeoTIFF path")
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")


def catalog_from_index(
    index: PathLike | gpd.GeoDataFrame,
    path_column: str | None = None,
    filters: dict | None = None,
    root: PathLike | None = None,
) -> gpd.GeoDataFrame:
    """Read a tile index (footprint polygons -> raster paths) as a tile catalogue.

    Parameters
    ----------
    index:
        GeoPackage/GeoParquet/Shapefile (or GeoDataFrame) with footprint geometries and a path column.
    path_column:
        Column holding the raster paths; auto-detected from :data:`PATH_COLUMNS` when ``None``.
    filters:
        Equality filters on index columns, e.g. ``{"year": 2020}``.
    root:
        Folder against which relative paths are resolved (default: the index file's folder).
    """
    name = "<GeoDataFrame>" if isinstance(index, gpd.GeoDataFrame) else str(index)
    if isinstance(index, gpd.GeoDataFrame):
        gdf = index.copy()
    else:
        p = Path(index)
        if not p.exists():
            raise FileNotFoundError(f"tile index {p} does not exist")
        gdf = (
            gpd.read_parquet(p)
            if p.suffix.lower() in (".parquet", ".geoparquet")
            else gpd.read_file(p)
        )
        root = p.parent if root is None else root
    if gdf.crs is None:
        raise ValueError(f"tile index {name} has no CRS; expected footprints with a CRS")
    if path_column is None:
        path_column = next((c for c in PATH_COLUMNS if c in gdf.columns), None)
        if path_column is None:
            raise ValueError(
                f"tile index {name}: no path column found (tried {list(PATH_COLUMNS)}); "
                f"pass path_column=... (columns: {list(gdf.columns)})"
            )
    elif path_column not in gdf.columns:
        raise ValueError(f"tile index {name}: column {path_column!r} not in {list(gdf.columns)}")
    for col, val in (filters or {}).items():
        if col not in gdf.columns:
            raise ValueError(f"tile index {name}: filter column {col!r} not in {list(gdf.columns)}")
        gdf = gdf[gdf[col].astype(str) == str(val)]

    def resolve(s: str) -> str:
        s = str(s)
        if "://" in s or os.path.isabs(s) or root is None:
            return s
        return os.path.abspath(os.path.join(str(root), s))

    out = gpd.GeoDataFrame(
        {"path": [resolve(s) for s in gdf[path_column]]}, geometry=gdf.geometry.values, crs=gdf.crs
    )
    return out.reset_index(drop=True)


def decode_values(arr: np.ndarray, decode: str, dtype: str) -> np.ndarray:
    """Turn stored raster values ``arr`` (any shape) into float32 embeddings.

    ``raw`` casts; ``aef`` dequantises AlphaEarth codes: ``q = code - 127`` (uint8) or ``q = code``
    (int8), ``x = sign(q) * (|q| / 127.5) ** 2``.
    """
    if decode == "raw":
        return arr.astype(np.float32, copy=False)
    if decode == "aef":
        if dtype == "uint8":
            q = arr.astype(np.float32) - 127.0
        elif dtype == "int8":
            q = arr.astype(np.float32)
        else:
            raise ValueError(f"decode='aef' expects uint8 or int8 AEF codes, got dtype {dtype}")
        return np.sign(q) * (np.abs(q) / 127.5) ** 2
    raise ValueError(f"unknown decode {decode!r}; expected one of {DECODINGS}")


def check_tiles(metas: Sequence[TileMeta]) -> int:
    """Check all tiles have the same band count and return it."""
    counts = {m.count for m in metas}
    if len(counts) > 1:
        detail = ", ".join(f"{m.path}: {m.count}" for m in metas)
        raise ValueError(f"embedding tiles disagree on the band count ({detail}); expected one D")
    return counts.pop() if counts else 0
