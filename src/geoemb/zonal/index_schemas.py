"""Tile-index schemas: the tables that map raster footprints to raster paths, made uniform.

Two published shapes are read (plus any table with a path column, :data:`PATH_COLUMNS`):

- AEF's own index (Google's bucket README, section *Manifest and index*; the same file on the
  Source Cooperative mirror ``tge-labs/aef/v1/annual/aef_index.parquet``): one row per COG with
  the WGS84 footprint (GeoParquet geometry column, named ``geom`` in the mirror's copy per
  rasteret's AEF how-to), ``path``, ``year``, ``crs`` (``EPSG:326xx``), ``utm_zone``
  (``10N``), ``utm_west/south/east/north`` and ``wgs84_west/south/east/north``.
- STAC items as stac-geoparquet (what STAC tooling and rasteret's collections write): ``id``,
  ``datetime``, WKB ``geometry`` (WGS84 by the STAC spec), ``bbox`` struct, ``assets`` struct
  whose ``data.href`` is the raster, ``proj:epsg`` (an integer, or a string ``EPSG:32760`` in
  some copies).

:func:`normalize_index` gives both plain ``path`` (or ``href``), ``year`` and ``crs`` columns.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import IO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from geoemb.errors import InputError

__all__ = ["PATH_COLUMNS", "STAC_COLUMNS", "http_status", "normalize_index", "stac_table"]

#: Column names tried (in order) when a tile index does not name its path column.
PATH_COLUMNS = ("path", "location", "filename", "file", "href", "url", "tile_path")

#: Columns that mark a STAC item table (stac-geoparquet: one STAC item per row).
STAC_COLUMNS = ("assets", "datetime")


def stac_table(path: str | os.PathLike | IO[bytes]) -> gpd.GeoDataFrame | None:
    """A parquet file without GeoParquet metadata that is a STAC item table: its WKB ``geometry``
    is WGS84 by the STAC spec. ``None`` when the file has GeoParquet metadata or is not STAC."""
    schema = pq.read_schema(path)
    if hasattr(path, "seek"):
        path.seek(0)
    if schema.metadata and b"geo" in schema.metadata:
        return None
    if not all(c in schema.names for c in (*STAC_COLUMNS, "geometry")):
        return None
    table = pq.read_table(path).to_pandas()
    geom = shapely.from_wkb(table.pop("geometry").to_numpy())
    return gpd.GeoDataFrame(table, geometry=geom, crs="EPSG:4326")


def _asset_hrefs(gdf: gpd.GeoDataFrame, name: str, asset: str | None) -> list:
    """``assets[<key>].href`` of every STAC item (key ``asset``, else ``data``, else the only one)."""
    out = []
    for i, assets in enumerate(gdf["assets"]):
        if isinstance(assets, str):  # GeoPackage/CSV copies keep the struct as JSON text
            assets = json.loads(assets)
        assets = {k: v for k, v in dict(assets or {}).items() if v is not None}
        key = asset or ("data" if "data" in assets else None)
        if key is None and len(assets) == 1:
            key = next(iter(assets))
        if key not in assets or not isinstance(assets[key], dict) or not assets[key].get("href"):
            raise InputError(
                f"tile index {name}: STAC item {i} has no asset {key or 'data'!r} with an href "
                f"(assets: {sorted(assets)}); expected assets.data.href = the COG's URL or path "
                "(or path_column='assets.<key>')"
            )
        out.append(assets[key]["href"])
    return out


def normalize_index(
    gdf: gpd.GeoDataFrame, name: str, path_column: str | None = None
) -> tuple[gpd.GeoDataFrame, str | None]:
    """Give a tile index of any supported schema plain ``path``/``year``/``crs`` columns.

    Schemas: a path column (``PATH_COLUMNS``; AEF's own index: ``path``, ``year``, ``crs``,
    ``utm_zone``, ``utm_*``/``wgs84_*`` bounds), or STAC items (stac-geoparquet: ``id``,
    ``datetime``, ``assets`` struct whose ``data.href`` is the raster, ``proj:epsg``). Returns the
    table and the column holding the raster paths (``None`` when none was found).
    """
    gdf = gdf.copy()
    is_stac = all(c in gdf.columns for c in STAC_COLUMNS)
    if is_stac and (path_column is None or path_column.startswith("assets")):
        key = None
        if path_column is not None:
            key = path_column.split(".")[1] if path_column.count(".") else None
        gdf["href"] = _asset_hrefs(gdf, name, key)
        path_column = "href"
        if "year" not in gdf.columns:
            dt = pd.to_datetime(gdf["datetime"], utc=True, errors="coerce")
            if dt.isna().any():
                bad = np.flatnonzero(dt.isna().to_numpy())[:10].tolist()
                raise InputError(
                    f"tile index {name}: STAC items {bad} have no parseable datetime; expected "
                    "ISO 8601 (e.g. 2024-01-01T00:00:00Z)"
                )
            gdf["year"] = dt.dt.year.astype("int64")
        if "crs" not in gdf.columns and "proj:epsg" in gdf.columns:
            gdf["crs"] = [
                v if isinstance(v, str) and ":" in v else f"EPSG:{int(v)}" if v == v else None
                for v in gdf["proj:epsg"]
            ]
    if path_column is None:
        path_column = next((c for c in PATH_COLUMNS if c in gdf.columns), None)
    return gdf, path_column


def http_status(path: str) -> int | None:
    """The HTTP status of a one-byte range request to an http(s) ``path`` (GDAL's messages often
    drop it); ``None`` for other paths or when the server answers normally."""
    url = path.removeprefix("/vsicurl/")
    if not url.startswith(("http://", "https://")):
        return None
    try:
        req = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
        with urllib.request.urlopen(req, timeout=30):
            return None
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None
