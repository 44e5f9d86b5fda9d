"""Inputs of the zonal pipeline: polygon layers and embedding-raster tile catalogues.

A *tile catalogue* is a GeoDataFrame with one row per raster tile: a footprint ``geometry`` (in the
catalogue CRS) and an absolute ``path``. It is built either from an explicit list of GeoTIFFs (their
footprints are read from the files) or from a tile index such as AEF's ``aef_index.gpkg``
(footprints -> paths; relative paths are resolved against the index file's folder).
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import shapely.geometry.base
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError

from geoemb.errors import InputError
from geoemb.zonal.decodes import DECODES, DECODINGS, check_decode, decode_values
from geoemb.zonal.index_schemas import PATH_COLUMNS, http_status, normalize_index, stac_table

__all__ = [  # the decodes are re-exported (their home is geoemb.zonal.decodes)
    "DECODES", "DECODINGS", "PATH_COLUMNS", "MissingInputError", "TileMeta", "TileNotFoundError",
    "catalog_from_index", "check_decode", "decode_values", "is_remote", "raster_error",
    "read_polygons", "normalize_index", "read_tile_index", "read_tile_meta", "read_vector",
    "tile_metas",
]  # fmt: skip

PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
    """A URL (``https://…``, ``s3://…``) or a GDAL virtual path (``/vsicurl/…``, ``/vsis3/…``)."""
    s = str(path)
    return "://" in s or s.startswith("/vsi")


def raster_error(path: str, exc: Exception) -> InputError:
    """One clear error for a raster GDAL cannot open or read, naming the file or URL; HTTP status
    codes in GDAL's message (``/vsicurl/``) become what they mean (404: the tile does not exist)."""
    msg = str(exc)
    code = re.search(r"(?:HTTP (?:response )?code|HTTP error code)[:= ]*(\d{3})", msg)
    status = int(code.group(1)) if code else http_status(path)
    if status == 404 or (is_remote(path) and "does not exist in the file system" in msg):
        return TileNotFoundError(f"embedding tile {path} does not exist (HTTP 404 / not found)")
    if status in (401, 403):
        return InputError(
            f"embedding tile {path}: access denied (HTTP {status}); expected a public URL or "
            "credentials (Google's AEF bucket is requester-pays; the Source Cooperative mirror "
            "is public)"
        )
    if status == 416:
        return InputError(
            f"embedding tile {path}: HTTP 416 Range Not Satisfiable: the server's file is shorter "
            "than its header says (changed or truncated upload?); expected the complete COG"
        )
    what = f"HTTP {status}: " if status else ""
    return InputError(
        f"cannot read embedding tile {path}: {what}{msg}; expected a readable GeoTIFF"
    )


class MissingInputError(InputError, FileNotFoundError):
    """An input file (polygons, tile index, tile) does not exist."""


class TileNotFoundError(MissingInputError):
    """An embedding tile (listed, or named by a tile-index entry) does not exist."""


#: GeoTIFF tag (and ``attrs["zonal"]`` key) marking data made by a synthetic stand-in.
DATA_SOURCE_TAG = "data_source"

#: Suffixes read with ``geopandas.read_parquet``; everything else goes through pyogrio.
PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")


def read_vector(path: PathLike, what: str, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a GeoPackage/GeoParquet/Shapefile ``path``; any failure is one :class:`InputError`.

    ``what`` names the role in messages (``"polygon file"``, ``"tile index"``).
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{what} {path} does not exist")
    if path.is_dir() and path.suffix.lower() not in PARQUET_SUFFIXES:
        raise InputError(f"{what} {path} is a directory; expected a GeoPackage/GeoParquet file")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return gpd.read_parquet(path)
        return gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as e:  # pyogrio/pyarrow/sqlite raise many types for damaged files
        raise InputError(
            f"cannot read {what} {path}: {type(e).__name__}: {e}; expected a complete "
            "GeoPackage / GeoParquet / Shapefile (truncated or damaged file?)"
        ) from e


def read_polygons(
    polygons: PathLike | gpd.GeoDataFrame, layer: str | None = None
) -> gpd.GeoDataFrame:
    """Read a polygon layer (GeoPackage, GeoParquet, Shapefile, ...) and check it.

    Parameters
    ----------
    polygons:
        A path (``.parquet``/``.geoparquet`` read with ``read_parquet``; anything else through
        pyogrio) or an in-memory GeoDataFrame.
    layer:
        Optional layer name for multi-layer files.

    Returns
    -------
    GeoDataFrame with a CRS and a fresh RangeIndex. Rows may hold null/empty geometries (they get
    no pixels); every other geometry is a Polygon or MultiPolygon.

    Raises
    ------
    InputError
        Unreadable file, no CRS, non-polygon geometries or non-finite vertices (naming rows).
    """
    name = "<GeoDataFrame>"
    if isinstance(polygons, gpd.GeoDataFrame):
        gdf = polygons.copy()
    else:
        name = str(polygons)
        gdf = read_vector(polygons, "polygon file", layer)
    if gdf.crs is None:
        raise InputError(
            f"polygons {name} have no CRS; expected a georeferenced layer "
            "(set one with GeoDataFrame.set_crs or fix the .prj/metadata)"
        )
    gdf = gdf.reset_index(drop=True)
    geoms = gdf.geometry.to_numpy()
    types = shapely.get_type_id(geoms)  # -1: missing
    empty = shapely.is_empty(geoms) | (types < 0)
    bad = ~empty & ~np.isin(types, (3, 6))  # Polygon, MultiPolygon
    if bad.any():
        rows = np.flatnonzero(bad)
        kinds = sorted({shapely.geometry.base.GEOMETRY_TYPES[t] for t in types[bad]})
        raise InputError(
            f"polygons {name}: expected Polygon/MultiPolygon geometries, got {kinds} "
            f"in rows {rows[:10].tolist()}{' …' if len(rows) > 10 else ''}"
        )
    xy, row = shapely.get_coordinates(geoms, return_index=True)
    nonfinite = ~np.isfinite(xy).all(axis=1)
    if nonfinite.any():
        rows = np.unique(row[nonfinite])
        raise InputError(
            f"polygons {name}: rows {rows[:10].tolist()}{' …' if len(rows) > 10 else ''} have "
            "NaN/inf vertex coordinates; expected finite coordinates"
        )
    return gdf


@dataclasses.dataclass(frozen=True)
class TileMeta:
    """Georeferencing of one raster tile (read once, shared by all worker threads).

    ``masked`` is True when the tile carries a per-dataset validity mask (GDAL mask band), which
    is then honoured in addition to ``nodata`` and non-finite values. ``data_source`` is the
    tile's ``data_source`` GeoTIFF tag (``"synthetic"`` on geoemb's stand-ins), if any.
    """

    path: str
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    masked: bool = False
    data_source: str | None = None

    @property
    def rect(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the tile in its own CRS (any y orientation)."""
        t = self.transform
        xs = (t.c, t.c + t.a * self.width)
        ys = (t.f, t.f + t.e * self.height)
        return min(xs), min(ys), max(xs), max(ys)


def _check_complete(ds: rasterio.io.DatasetReader, path: str) -> None:
    """Cheap truncation check: the last block of the first/last band must end inside the file."""
    if ds.driver != "GTiff" or is_remote(path):
        return
    size = os.path.getsize(path)
    bh, bw = ds.block_shapes[0]
    nbx, nby = -(-ds.width // bw), -(-ds.height // bh)
    for bidx in sorted({1, ds.count}):
        off = ds.get_tag_item(f"BLOCK_OFFSET_{nbx - 1}_{nby - 1}", "TIFF", bidx=bidx)
        nbytes = ds.get_tag_item(f"BLOCK_SIZE_{nbx - 1}_{nby - 1}", "TIFF", bidx=bidx)
        if off and nbytes and int(off) > 0 and int(off) + int(nbytes) > size:
            raise InputError(
                f"embedding tile {path} is truncated: its last block ends at byte "
                f"{int(off) + int(nbytes)} but the file has {size} bytes; re-download it"
            )


def read_tile_meta(path: PathLike) -> TileMeta:
    """Open ``path`` and return its :class:`TileMeta`.

    Raises
    ------
    TileNotFoundError
        The file does not exist.
    InputError
        Not a readable raster, truncated, no CRS, or a rotated transform.
    """
    path = str(path)
    if not is_remote(path) and not Path(path).exists():
        raise TileNotFoundError(f"embedding tile {path} does not exist")
    try:
        with rasterio.open(path) as ds:
            _check_complete(ds, path)
            if ds.crs is None:
                raise InputError(
                    f"embedding tile {path} has no CRS; expected a georeferenced GeoTIFF"
                )
            t = ds.transform
            if t.b != 0 or t.d != 0 or t.a == 0 or t.e == 0:
                raise InputError(
                    f"embedding tile {path} has a rotated/degenerate transform {t}; "
                    "expected an axis-aligned grid (north-up or bottom-up)"
                )
            flags = ds.mask_flag_enums[0] if ds.count else ()
            masked = MaskFlags.per_dataset in flags and MaskFlags.all_valid not in flags
            return TileMeta(path, ds.crs, t, ds.width, ds.height, ds.count, ds.dtypes[0],
                            ds.nodata, masked, ds.tags().get(DATA_SOURCE_TAG))  # fmt: skip
    except RasterioError as e:
        raise raster_error(path, e) from e


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
                raise TileNotFoundError(f"tile folder {s} contains no .tif/.tiff/.vrt files")
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = sorted(glob.glob(s, recursive=True))
            if not found:
                raise TileNotFoundError(f"tile pattern {s} matched no files")
            out.extend(found)
        else:
            out.append(s)
    return out


def tile_metas(tiles: PathLike | Iterable[PathLike]) -> list[TileMeta]:
    """Expand GeoTIFF paths/folders/globs and read every tile's :class:`TileMeta`.

    Raises
    ------
    InputError
        No tiles, a tile given twice (its pixels would be pooled twice), or an unreadable tile.
    """
    paths = [p if is_remote(p) else os.path.abspath(p) for p in _expand_tiles(tiles)]
    if not paths:
        raise InputError("no embedding tiles given; expected at least one GeoTIFF path")
    seen: dict[str, str] = {}
    for p in paths:
        key = p if is_remote(p) else os.path.realpath(p)
        if key in seen:
            raise InputError(
                f"embedding tile {p} is given twice (also as {seen[key]}); its pixels would be "
                "pooled twice — list each tile once"
            )
        seen[key] = p
    return [read_tile_meta(p) for p in paths]


def _fetch(url: str) -> bytes:
    """The bytes of a remote tile index (HTTP(S)); errors name the URL and the status."""
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise MissingInputError(f"tile index {url} does not exist (HTTP 404)") from e
        raise InputError(f"cannot read tile index {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise InputError(f"cannot read tile index {url}: {e}; expected an http(s) URL") from e


def read_tile_index(index: PathLike | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Read a tile index (GeoParquet, stac-geoparquet, GeoPackage, Shapefile; a path or an
    http(s) URL) as is."""
    if isinstance(index, gpd.GeoDataFrame):
        return index.copy()
    name = str(index)
    parquet = Path(urllib.parse.urlparse(name).path).suffix.lower() in PARQUET_SUFFIXES
    if is_remote(name) and not parquet:
        try:
            return gpd.read_file(name)  # GDAL reads GeoPackage & co. over /vsicurl/
        except Exception as e:
            raise InputError(f"cannot read tile index {name}: {type(e).__name__}: {e}") from e
    if not parquet or not (is_remote(name) or Path(name).is_file()):
        return read_vector(index, "tile index")
    try:
        src = io.BytesIO(_fetch(name)) if is_remote(name) else name
        stac = stac_table(src)
        if stac is not None:
            return stac
        if is_remote(name):
            src.seek(0)
            return gpd.read_parquet(src)
    except InputError:
        raise
    except Exception as e:  # damaged parquet: pyarrow raises many types
        raise InputError(
            f"cannot read tile index {name}: {type(e).__name__}: {e}; expected a complete "
            "GeoParquet / stac-geoparquet file (truncated or damaged file?)"
        ) from e
    return read_vector(index, "tile index")


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
        GeoPackage/GeoParquet/Shapefile (or GeoDataFrame) with footprint geometries and a path
        column, or a stac-geoparquet item table (``assets.data.href``; :func:`normalize_index`).
        The footprints may be approximate (4-corner quadrilaterals in lon/lat, or clipped to the
        UTM zone as in AEF's index): :func:`geoemb.zonal.zonal_stats` decides membership from the
        tiles' own headers.
    path_column:
        Column holding the raster paths (``assets.<key>`` for STAC items); auto-detected from
        :data:`PATH_COLUMNS` (or ``assets.data``) when ``None``.
    filters:
        Equality filters on index columns, e.g. ``{"year": 2020}`` (STAC items get ``year`` from
        their ``datetime``).
    root:
        Folder against which relative paths are resolved (default: the index file's folder).

    Returns
    -------
    GeoDataFrame with ``path`` and ``geometry`` (the index CRS), plus ``year``/``crs`` when the
    index has them; ``attrs["source"]`` names the index.
    """
    if isinstance(index, gpd.GeoDataFrame):
        name = str(index.attrs.get("source", "<GeoDataFrame>")).removeprefix("tile index ")
    else:
        name = str(index)
    gdf = read_tile_index(index)
    if not isinstance(index, gpd.GeoDataFrame) and root is None and not is_remote(name):
        root = Path(index).parent
    if gdf.crs is None:
        raise InputError(f"tile index {name} has no CRS; expected footprints with a CRS")
    given = path_column
    gdf, path_column = normalize_index(gdf, name, path_column)
    if path_column is None:
        raise InputError(
            f"tile index {name}: no path column found (tried {list(PATH_COLUMNS)} and STAC "
            f"assets.data.href); pass path_column=... (columns: {list(gdf.columns)})"
        )
    if path_column not in gdf.columns:
        raise InputError(f"tile index {name}: column {given!r} not in {list(gdf.columns)}")
    for col, val in (filters or {}).items():
        if col not in gdf.columns:
            raise InputError(f"tile index {name}: filter column {col!r} not in {list(gdf.columns)}")
        values = gdf[col].astype(str)
        if not (values == str(val)).any():
            present = sorted(set(values))
            raise InputError(
                f"tile index {name}: no entry has {col} == {val!r}; expected one of "
                f"{present[:20]}{' …' if len(present) > 20 else ''}"
            )
        gdf = gdf[values == str(val)]
    if not len(gdf):
        raise InputError(f"tile index {name} has no entries; expected at least one tile")
    bad = gdf[path_column].isna() | gdf.geometry.isna() | gdf.geometry.is_empty
    if bad.any():
        raise InputError(
            f"tile index {name}: rows {np.flatnonzero(bad.to_numpy())[:10].tolist()} lack a "
            f"{path_column!r} value or a footprint geometry"
        )

    def resolve(s: str) -> str:
        s = str(s)
        if is_remote(s) or os.path.isabs(s):
            return s
        if root is None:  # relative to a remote index: beside it on the server
            return urllib.parse.urljoin(name, s) if is_remote(name) else s
        return os.path.abspath(os.path.join(str(root), s))

    cols = {"path": [resolve(s) for s in gdf[path_column]]}
    cols.update({c: gdf[c].to_numpy() for c in ("year", "crs") if c in gdf.columns})
    out = gpd.GeoDataFrame(cols, geometry=gdf.geometry.values, crs=gdf.crs)
    out.attrs["source"] = f"tile index {name}"
    return out.reset_index(drop=True)


def check_tiles(metas: Sequence[TileMeta]) -> int:
    """Check all tiles have the same band count and return it."""
    counts = {m.count for m in metas}
    if len(counts) > 1:
        detail = ", ".join(f"{m.path}: {m.count}" for m in metas)
        raise InputError(f"embedding tiles disagree on the band count ({detail}); expected one D")
    return counts.pop() if counts else 0


def any_band_count(catalog: gpd.GeoDataFrame, metas: dict[int, TileMeta]) -> int:
    """D when no polygon meets a tile: from a known header, else the first readable tile."""
    if metas:
        return next(iter(metas.values())).count
    for p in catalog.path:
        try:
            return read_tile_meta(p).count
        except InputError:
            continue
    raise InputError(f"{catalog.attrs.get('source')}: no tile is readable; expected GeoTIFFs")


def data_source(metas: Iterable[TileMeta]) -> str:
    """``"synthetic"`` if any tile is tagged as geoemb's synthetic stand-in, else ``"real"``."""
    return "synthetic" if any(m.data_source == "synthetic" for m in metas) else "real"
