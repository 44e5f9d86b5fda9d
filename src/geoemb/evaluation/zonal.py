"""``evaluate.py experiment=zonal_stats``: per-polygon embedding statistics end to end.

Thin wiring: the embedding rasters come from ``data`` (an
:class:`~geoemb.sources.rasters.EmbeddingRasters`, ``conf/data/aef.yaml``; ``data.synthetic=true``
for the stand-in, whose census-like blocks are the polygons unless ``evaluation.polygons`` is
set), the pooling is :func:`geoemb.zonal.zonal_stats`, the map :func:`geoemb.zonal.pca_rgb_raster`
and the census evaluation + report :func:`geoemb.reporting.zonal.evaluate_file`. Outputs:
``features.parquet`` (GeoParquet 1.1), ``pca_rgb.tif``/``.png``, ``report.md`` with tables and plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.reporting.zonal import evaluate_file, pca_rgb_preview
from geoemb.run.context import RunContext
from geoemb.sources.rasters import EmbeddingRasters
from geoemb.utils.dask import parse_dask_spec
from geoemb.zonal.params import CensusAnalysis, PoolingSpec, ZonalFilters
from geoemb.zonal.pca_rgb import pca_rgb_raster
from geoemb.zonal.stats import PIXEL_COUNT, zonal_stats

__all__ = ["POLYGONS_HINT", "ZonalStatsEvaluator"]

POLYGONS_HINT = (
    "Census blocks: TIGER/Line 2020 tabulation blocks (tl_2020_<state FIPS>_tabblock20.zip) from "
    "https://www.census.gov/cgi-bin/geo/shapefiles/index.php, set as evaluation.polygons."
)


class ZonalStatsEvaluator(Evaluator):
    """Zonal statistics + PCA-RGB map + census-style evaluation.

    Parameters
    ----------
    data : EmbeddingRasters
        The embedding rasters (``data: ${data}``; ``conf/data/aef.yaml``).
    polygons : str, optional
        Polygon layer (TIGER/Line blocks…). ``None`` with ``data.synthetic=true``: the stand-in's
        census-like blocks; required with real data.
    pooling, filters, analysis : parameter objects or mappings
        ``evaluation.pooling`` (:class:`~geoemb.zonal.params.PoolingSpec`), ``evaluation.filters``
        (:class:`~geoemb.zonal.params.ZonalFilters`), ``evaluation.analysis``
        (:class:`~geoemb.zonal.params.CensusAnalysis`).
    dask : str, optional
        Where the pixel work runs (``dask.scheduler`` from ``conf/dask/``: ``none``, ``local:N``
        or a scheduler address); the features are identical row by row.
    """

    def __init__(
        self,
        data: EmbeddingRasters | None = None,
        polygons: str | None = None,
        pooling: PoolingSpec | Mapping[str, Any] | None = None,
        filters: ZonalFilters | Mapping[str, Any] | None = None,
        analysis: CensusAnalysis | Mapping[str, Any] | None = None,
        dask: str | None = None,
    ) -> None:
        if not isinstance(data, EmbeddingRasters):
            raise InputError(
                "evaluation.data must be an embedding-raster source: compose data=aef "
                f"(experiment=zonal_stats does), got {type(data).__name__}"
            )
        self.data, self.polygons, self.dask = data, polygons, parse_dask_spec(dask)
        self.pooling = PoolingSpec.from_config(pooling, "evaluation.pooling")
        self.filters = ZonalFilters.from_config(filters, "evaluation.filters")
        self.analysis = CensusAnalysis.from_config(analysis, "evaluation.analysis")

    def _inputs(self) -> tuple[Path, Any]:
        """Polygons and rasters, real (all checked, one error for everything missing) or the
        stand-in (generated once)."""
        missing = []
        if not self.data.synthetic:
            if self.polygons is None:
                missing.append("evaluation.polygons is not set (real data needs a polygon layer)")
            elif not Path(self.polygons).exists():
                missing.append(f"evaluation.polygons {self.polygons} does not exist")
        rasters = self.data.resolve(missing, POLYGONS_HINT if missing else "")
        polygons = self.polygons or self.data.stand_in_polygons()
        return Path(polygons), rasters

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Write ``features.parquet``, ``pca_rgb.tif``/``.png`` and ``report.md``; return metrics."""
        out = ctx.output_dir
        polygons, rasters = self._inputs()
        gdf = zonal_stats(polygons, rasters, self.filters, self.pooling,
                          output=out / "features.parquet", dask=self.dask)  # fmt: skip
        info = gdf.attrs["zonal"]
        source = "synthetic" if self.data.synthetic else info["data_source"]
        a, method = self.analysis, self.pooling.method
        rgb = pca_rgb_raster(gdf, out / "pca_rgb.tif", a.rgb_resolution, crs=a.rgb_crs,
                             data_source=source)  # fmt: skip
        png = pca_rgb_preview(rgb, out / "pca_rgb.png", f"PCA-3 RGB of {method} features", source)
        filters = info["filters"]
        extra = {
            "data": f"{self.data!r}; polygons {polygons}",
            "pooling": f"`{method}` ({len(info['feature_columns'])} features from "
            f"D={info['input_dim']}, decode={rasters.decode}, "
            f"all_touched={self.pooling.all_touched})",
            "filters": ", ".join(f"{k}={v}" for k, v in filters.items()),
            "tiles used": str(info["n_tiles_used"]),
            "polygons without valid pixels": str(info["n_empty"]),
        }
        ev = evaluate_file(gdf, out, a, seed=ctx.seed, extra=extra, images={"pca_rgb": png},
                           data_source=source)  # fmt: skip
        metrics = dict(ev.metrics)
        metrics.update(
            {
                "zonal/polygons_input": float(filters["input"]),
                "zonal/polygons_kept": float(filters["kept"]),
                "zonal/polygons_empty": float(info["n_empty"]),
                "zonal/pixels_mean": float(gdf[PIXEL_COUNT].mean()) if len(gdf) else 0.0,
            }
        )
        ctx.logger.log_metrics(metrics)
        ctx.logger.log_table("zonal/r2", ev.r2)
        if len(ev.classification):
            ctx.logger.log_table("zonal/classification", ev.classification)
        ctx.logger.log_table("zonal/pc_correlations", ev.correlations)
        for name in ("r2", "pc_scatter"):
            if (out / f"{name}.png").exists():
                ctx.logger.log_image(f"zonal/{name}", out / f"{name}.png")
        ctx.logger.log_image("zonal/pca_rgb", png)
        return metrics
