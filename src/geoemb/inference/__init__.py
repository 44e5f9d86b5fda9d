"""Streaming gridded GeoTIFF inference.

>>> from geoemb.inference import open_source, predict_raster  # doctest: +SKIP
>>> with open_source("scene_dir/") as src:  # doctest: +SKIP
...     predict_raster(src, predict_fn, "water.tif", num_classes=2)

``open_source`` reads a multi-band GeoTIFF or a folder of per-band Sentinel-2 files window by
window; ``predict_raster`` tiles the scene with overlap, runs batches through ``predict_fn``,
merges overlaps (keep-centre crop or cosine blend) in a bounded rolling buffer and writes a
tiled, compressed GeoTIFF with overviews, pixel-aligned to the input.

Trust: NaN/inf/nodata pixels never reach the model and are nodata in the output; an output path
that is the input (or a band file of it) or an existing directory is refused before any work
(:func:`check_output`); truncated or corrupt inputs raise one :class:`RasterInputError` naming the
file (and the window); the output appears atomically under its final name.
"""

from geoemb.inference.checks import AllNodataWarning, PredictionError
from geoemb.inference.merge import MERGE_METHODS, RowBandMerger
from geoemb.inference.output import check_output
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
    "AllNodataWarning",
    "DEFAULT_S2_BANDS",
    "GDAL_ENV",
    "MERGE_METHODS",
    "GeoTiffSource",
    "PredictFn",
    "PredictionError",
    "RasterInputError",
    "RasterSource",
    "RowBandMerger",
    "Sentinel2FolderSource",
    "axis_starts",
    "center_cuts",
    "check_output",
    "class_dtype",
    "cosine_ramp_weights",
    "open_source",
    "predict_raster",
    "recommended_stride",
    "tile_grid",
]
