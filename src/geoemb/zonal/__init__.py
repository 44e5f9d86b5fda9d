"""Zonal embedding statistics: polygons × embedding rasters -> per-polygon features.

Generalises "Characterizing Census Blocks with Satellite Embedding Statistics" (Robinson & Corley,
2026): any :mod:`geoemb.pooling` method pooled per polygon over (multi-tile, multi-CRS) embedding
rasters, a PCA-3 RGB map, and the census-style evaluation (OLS R², CV logistic accuracy, PC
correlations). Parameter objects (:mod:`geoemb.zonal.params`) hold every knob once; the report
and plots are :mod:`geoemb.reporting.zonal`. CLI: ``geoemb zonal …`` / ``python -m geoemb.zonal
{stats,pca-rgb,evaluate,synthetic} ...`` (:mod:`geoemb.zonal.cli`).
"""

from geoemb.zonal.analysis import (
    ZonalEvaluation,
    census_targets,
    cv_logistic_accuracy,
    evaluate_census,
    evaluate_features,
    majority_baseline,
    ols_r2,
    pc_correlations,
    pca_scores,
)
from geoemb.zonal.checks import ZonalWarning, check_output
from geoemb.zonal.footprints import catalog_from_tiles, tile_footprint
from geoemb.zonal.params import (
    CensusAnalysis,
    PoolingSpec,
    RasterInputs,
    ZonalFilters,
    default_workers,
)
from geoemb.zonal.pca_rgb import pca_colors, pca_rgb_raster
from geoemb.zonal.sources import (
    TileMeta,
    catalog_from_index,
    decode_values,
    read_polygons,
    read_tile_meta,
    tile_metas,
)
from geoemb.zonal.stats import (
    PIXEL_COUNT,
    TILE_COUNT,
    apply_filters,
    feature_names,
    polygon_pixels,
    read_features,
    write_geoparquet,
    zonal_stats,
)

__all__ = [
    "PIXEL_COUNT",
    "TILE_COUNT",
    "CensusAnalysis",
    "PoolingSpec",
    "RasterInputs",
    "TileMeta",
    "ZonalEvaluation",
    "ZonalFilters",
    "ZonalWarning",
    "apply_filters",
    "catalog_from_index",
    "catalog_from_tiles",
    "census_targets",
    "check_output",
    "cv_logistic_accuracy",
    "decode_values",
    "default_workers",
    "evaluate_census",
    "evaluate_features",
    "feature_names",
    "majority_baseline",
    "ols_r2",
    "pc_correlations",
    "pca_colors",
    "pca_rgb_raster",
    "pca_scores",
    "polygon_pixels",
    "read_features",
    "read_polygons",
    "read_tile_meta",
    "tile_footprint",
    "tile_metas",
    "write_geoparquet",
    "zonal_stats",
]
