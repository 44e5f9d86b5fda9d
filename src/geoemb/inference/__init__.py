"""Streaming gridded GeoTIFF inference.

>>> from geoemb.inference import open_source, predict_raster  # doctest: +SKIP
>>> with open_source("scene_dir/") as src:  # doctest: +SKIP
...     predict_raster(src, predict_fn, "water.tif", num_classes=2)

``open_source`` reads a multi-band GeoTIFF or a folder of per-band Sentinel-2 files window by
window; ``predict_raster`` tiles the scene with overlap, runs batches through ``predict_fn``,
merges overlaps (keep-centre crop or cosine blend) in a bounded rolling buffer and writes a
tiled, compressed GeoTIFF with overviews, pixel-aligned to the input.
"""

from geoemb.inference.merge import MERGE_METHODS, RowBandMerger
from geoemb.inference.predict import GDAL_ENV, PredictFn, predict_raster
from geoemb.inference.reader import (
    DEFAULT_S2_BANDS,
    GeoTiffSource,
    RasterInputError,
    RasterSource,
    Sentinel2FolderSource,
    open_source,
)
from geoemb.inference.tiling import (
    axis_starts,
    center_cuts,
    cosine_ramp_weights,
    recommended_stride,
    tile_grid,
)
from geoemb.inference.writer import class_dtype

__all__ = [
    "DEFAULT_S2_BANDS",
    "GDAL_ENV",
    "MERGE_METHODS",
    "GeoTiffSource",
    "PredictFn",
    "RasterInputError",
    "RasterSource",
    "RowBandMerger",
    "Sentinel2FolderSource",
    "axis_starts",
    "center_cuts",
    "class_dtype",
    "cosine_ramp_weights",
    "open_source",
    "predict_raster",
    "recommended_stride",
    "tile_grid",
]
