"""PCA-3 RGB map of per-polygon features, rasterised to a uint8 3-band GeoTIFF.

Fit a 3-component PCA on the polygons' feature vectors, scale each component to 1..255 (0 is
nodata, i.e. outside every polygon) and burn the polygons into a grid at a chosen resolution in the
polygons' CRS (or ``crs``). The raster is written block by block (memory bounded) and atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import box
from sklearn.decomposition import PCA

from geoemb.errors import InputError
from geoemb.utils.io import atomic_path
from geoemb.zonal.checks import check_output
from geoemb.zonal.output import read_features
from geoemb.zonal.sources import DATA_SOURCE_TAG, PathLike


def pca_colors(
    X: np.ndarray, n_components: int = 3, clip_percentiles: tuple[float, float] = (2.0, 98.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Project ``X`` (N, F) on its first PCs and scale each to uint8 1..255.

    Rows with non-finite values get colour 0 (nodata). Returns ``(colors (N, k) uint8,
    explained_variance_ratio (k,))``.
    """
    X = np.asarray(X, dtype=np.float64)
    ok = np.isfinite(X).all(axis=1)
    colors = np.zeros((len(X), n_components), dtype=np.uint8)
    if ok.sum() <= n_components:
        raise InputError(
            f"PCA-RGB needs more than {n_components} polygons with finite features, got {ok.sum()}"
        )
    pca = PCA(n_components=n_components).fit(X[ok])
    Z = pca.transform(X[ok])
    lo, hi = np.percentile(Z, clip_percentiles, axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    colors[ok] = (1 + np.round(np.clip((Z - lo) / scale, 0, 1) * 254)).astype(np.uint8)
    return colors, pca.explained_variance_ratio_


def pca_rgb_raster(
    features: PathLike | gpd.GeoDataFrame,
    output: PathLike,
    resolution: float,
    crs: str | None = None,
    clip_percentiles: tuple[float, float] = (2.0, 98.0),
    all_touched: bool = False,
    block_rows: int = 1024,
    feature_prefix: str = "emb_",
    data_source: str | None = None,
) -> Path:
    """Rasterise the PCA-3 colours of polygon features to a uint8 3-band GeoTIFF.

    Parameters
    ----------
    features:
        Output of :func:`geoemb.zonal.zonal_stats` (GeoParquet path or GeoDataFrame).
    output:
        Target ``.tif`` (written atomically; tiled, deflate, nodata 0).
    resolution:
        Pixel size in units of the target CRS (e.g. 10 for metres in UTM).
    crs:
        Target CRS (default: the polygons' CRS); ``"utm"`` picks the polygons' UTM zone
        (``GeoDataFrame.estimate_utm_crs``).
    data_source:
        Written as the GeoTIFF tag ``data_source`` (``synthetic`` for the stand-in); default: the
        features' own record (``attrs["zonal"]["data_source"]``), if any.

    Returns
    -------
    The output path. The grid origin is the polygons' total bounds snapped outward to
    ``resolution``.
    """
    inputs = [features] if isinstance(features, str | os.PathLike) else []
    output = check_output(output, inputs, suffixes=(".tif", ".tiff"), what="PCA-RGB output")
    if not resolution > 0:
        raise InputError(f"resolution must be > 0, got {resolution}")
    gdf, cols = read_features(features, prefix=feature_prefix)
    if gdf.crs is None:
        raise InputError("features have no CRS; expected georeferenced polygons")
    data_source = data_source or gdf.attrs.get("zonal", {}).get(DATA_SOURCE_TAG)
    if crs is not None:
        gdf = gdf.to_crs(gdf.estimate_utm_crs() if str(crs).lower() == "utm" else crs)
    colors, evr = pca_colors(gdf[cols].to_numpy(), 3, clip_percentiles)
    minx, miny, maxx, maxy = gdf.total_bounds
    x0 = math.floor(minx / resolution) * resolution
    y1 = math.ceil(maxy / resolution) * resolution
    width = max(1, math.ceil((maxx - x0) / resolution))
    height = max(1, math.ceil((y1 - miny) / resolution))
    transform = from_origin(x0, y1, resolution, resolution)
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 3,
        "width": width,
        "height": height,
        "crs": gdf.crs,
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "photometric": "RGB",
        "interleave": "pixel",
    }
    if width < 256 or height < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    geoms = gdf.geometry.to_numpy()
    tree = gdf.sindex
    block_rows = max(1, int(block_rows))
    with atomic_path(output) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for r0 in range(0, height, block_rows):
                h = min(block_rows, height - r0)
                win = Window(0, r0, width, h)
                wt = rasterio.Affine(resolution, 0.0, x0, 0.0, -resolution, y1 - r0 * resolution)
                bx0, by1 = wt.c, wt.f
                bx1, by0 = wt.c + wt.a * width, wt.f + wt.e * h
                idx = tree.query(box(bx0, by0, bx1, by1), predicate="intersects")
                block = np.zeros((3, h, width), dtype=np.uint8)
                if len(idx):
                    # Burn polygon ids (+1; later rows win where polygons overlap), then look up colours.
                    ids = rasterio.features.rasterize(
                        ((geoms[i], int(i) + 1) for i in np.sort(idx)),
                        out_shape=(h, width),
                        transform=wt,
                        fill=0,
                        all_touched=all_touched,
                        dtype="int32",
                    )
                    hit = ids > 0
                    block[:, hit] = colors[ids[hit] - 1].T
                dst.write(block, window=win)
            tags = {
                "pca_explained_variance_ratio": ",".join(f"{v:.6f}" for v in evr),
                "source": "geoemb.zonal.pca_rgb_raster",
            }
            if data_source:
                tags[DATA_SOURCE_TAG] = str(data_source)
            dst.update_tags(**tags)
    return output
