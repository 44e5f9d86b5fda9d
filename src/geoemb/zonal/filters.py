"""Polygon filters of the census-block workflow and geometry repair for rasterisation."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box

from geoemb.errors import InputError
from geoemb.zonal.checks import warn


def apply_filters(
    gdf: gpd.GeoDataFrame,
    land_column: str | None = "ALAND20",
    drop_zero_land: bool = True,
    max_land_km2: float | None = 25.0,
    bbox: tuple[float, float, float, float] | None = None,
) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """Drop all-water (``land == 0``) and oversized (``land > max_land_km2`` km², land in m²) polygons.

    ``bbox = (W, S, E, N)`` in EPSG:4326 keeps only polygons intersecting it. Returns the kept
    rows (original index preserved) and counts per reason.
    """
    counts = {"input": len(gdf)}
    keep = np.ones(len(gdf), dtype=bool)
    if bbox is not None:
        b = gpd.GeoSeries([box(*bbox)], crs="EPSG:4326").to_crs(gdf.crs).iloc[0]
        inside = gdf.geometry.intersects(b).to_numpy()
        counts["outside_bbox"] = int((~inside).sum())
        keep &= inside
    if land_column is not None and (drop_zero_land or max_land_km2 is not None):
        if land_column not in gdf.columns:
            raise InputError(
                f"polygons have no land-area column {land_column!r} (columns: {list(gdf.columns)}); "
                "pass land_column=None to disable the water/size filters"
            )
        land = pd.to_numeric(gdf[land_column], errors="coerce").to_numpy(dtype=float)
        if drop_zero_land:
            water = land == 0
            counts["all_water"] = int((water & keep).sum())
            keep &= ~water
        if max_land_km2 is not None:
            big = land > max_land_km2 * 1e6
            counts["oversized"] = int((big & keep).sum())
            keep &= ~big
    counts["kept"] = int(keep.sum())
    return gdf[keep], counts


def repaired(geoms: gpd.GeoSeries, name: str) -> gpd.GeoSeries:
    """Invalid polygons (self-intersecting rings, overlapping parts) repaired for rasterisation
    with ``make_valid(method="structure")`` — the area GDAL's even-odd fill burns — with a
    warning; valid ones untouched. The output keeps the original geometries."""
    arr = geoms.to_numpy()
    bad = ~shapely.is_valid(arr) & ~shapely.is_missing(arr)
    if not bad.any():
        return geoms
    arr = arr.copy()
    arr[bad] = shapely.make_valid(arr[bad], method="structure", keep_collapsed=False)
    rows = np.flatnonzero(bad)
    warn(
        f"polygons {name}: {len(rows)} invalid geometries (rows {rows[:10].tolist()}"
        f"{' …' if len(rows) > 10 else ''}) repaired with make_valid for rasterisation"
    )
    return gpd.GeoSeries(arr, index=geoms.index, crs=geoms.crs)
