"""Shared helpers of the zonal tests: tile writer and the brute-force oracle."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio

RES = 20.0
SIZE = 30  # pixels per tile side
D = 5
NODATA = -9999.0


def write_tile(path: Path, data: np.ndarray, crs: str, transform, nodata=None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def reference_pixels(polygon_4326, tile_paths, all_touched: bool) -> np.ndarray:
    """Brute force: rasterise the polygon over every *whole* tile and gather valid pixels (N, D)."""
    from rasterio.features import rasterize

    out = []
    for p in tile_paths:
        with rasterio.open(p) as ds:
            arr = ds.read().astype(np.float64)
            geom = gpd.GeoSeries([polygon_4326], crs="EPSG:4326").to_crs(ds.crs).iloc[0]
            m = rasterize(
                [(geom, 1)],
                out_shape=(ds.height, ds.width),
                transform=ds.transform,
                fill=0,
                all_touched=all_touched,
            )
            vals = arr[:, m == 1]
            if ds.nodata is not None:
                vals = vals[:, ~(vals == ds.nodata).any(axis=0)]
            out.append(vals.T)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0))
