"""``evaluate.py experiment=zonal_stats``: per-polygon embedding statistics end to end.

Polygons × embedding tiles -> features GeoParquet 1.1 -> PCA-3 RGB GeoTIFF -> census-style
evaluation (OLS R², stratified 5-fold logistic accuracy, majority baseline, PC correlations) and a
Markdown report. Runs on the synthetic AEF stand-in by default (``synthetic: true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.utils.run_logger import RunLogger

REAL_DATA_HINT = (
    "real inputs: the AEF tile index https://data.source.coop/tge-labs/aef/v1/annual/aef_index.gpkg "
    "(tiles downloaded locally, relative paths resolved beside the index) and TIGER/Line 2020 blocks "
    "from https://www.census.gov/cgi-bin/geo/shapefiles/index.php; or set evaluation.synthetic=true "
    "to run on the synthetic stand-in"
)


class ZonalStatsEvaluator(Evaluator):
    """Zonal statistics + PCA-RGB map + census-style evaluation.

    Parameters
    ----------
    data_dir:
        Data root; the synthetic stand-in is generated once under ``<data_dir>/synthetic/zonal``.
    synthetic:
        Use the synthetic AEF tiles/index/blocks instead of ``polygons`` + ``tiles``/``tile_index``.
    polygons, tiles, tile_index, index_filter, path_column:
        Real inputs (see :func:`geoemb.zonal.zonal_stats`).
    method, decode, nodata, all_touched, land_column, drop_zero_land, max_land_km2, bbox:
        Pooling and filters (defaults as the blog: mean+std, drop ALAND20 == 0 and > 25 km²).
    num_workers, chunk_size:
        I/O threads and polygons per chunk.
    pca_k, n_pcs, n_splits, seed:
        PCA-k baseline features, PCs in the correlation table, CV folds, CV shuffling seed.
    rgb_resolution, rgb_crs:
        PCA-RGB grid (``rgb_crs="utm"``: the polygons' UTM zone; ``null``: their CRS).
    census_columns:
        Renames for :func:`geoemb.zonal.census_targets` (``pop``, ``housing``, ``aland``, ...).
    synthetic_kwargs:
        Sizes for :func:`geoemb.data.synthetic.zonal.generate`.
    """

    def __init__(
        self,
        data_dir: str = "data",
        synthetic: bool = True,
        polygons: str | None = None,
        tiles: list[str] | None = None,
        tile_index: str | None = None,
        index_filter: dict | None = None,
        path_column: str | None = None,
        method: str = "mean_std",
        decode: str = "aef",
        nodata: float | None = None,
        all_touched: bool = False,
        land_column: str | None = "ALAND20",
        drop_zero_land: bool = True,
        max_land_km2: float | None = 25.0,
        bbox: list[float] | None = None,
        num_workers: int = 4,
        chunk_size: int = 2048,
        pca_k: int = 10,
        n_pcs: int = 5,
        n_splits: int = 5,
        seed: int = 0,
        rgb_resolution: float = 10.0,
        rgb_crs: str | None = "utm",
        census_columns: dict | None = None,
        synthetic_kwargs: dict | None = None,
        progress: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.synthetic = synthetic
        self.polygons, self.tiles, self.tile_index = polygons, tiles, tile_index
        self.index_filter = dict(index_filter) if index_filter else None
        self.path_column = path_column
        self.method, self.decode, self.nodata, self.all_touched = (
            method,
            decode,
            nodata,
            all_touched,
        )
        self.land_column, self.drop_zero_land, self.max_land_km2 = (
            land_column,
            drop_zero_land,
            max_land_km2,
        )
        self.bbox = tuple(bbox) if bbox else None
        self.num_workers, self.chunk_size = num_workers, chunk_size
        self.pca_k, self.n_pcs, self.n_splits, self.seed = pca_k, n_pcs, n_splits, seed
        self.rgb_resolution, self.rgb_crs = rgb_resolution, rgb_crs
        self.census_columns = dict(census_columns) if census_columns else None
        self.synthetic_kwargs = dict(synthetic_kwargs) if synthetic_kwargs else {}
        self.progress = progress

    def _inputs(self) -> tuple[Any, Any, Any]:
        if self.synthetic:
            from geoemb.data.synthetic.zonal import generate

            root = generate(
                self.data_dir / "synthetic" / "zonal", seed=self.seed, **self.synthetic_kwargs
            )
            return root / "blocks.gpkg", None, root / "aef_index.gpkg"
        if self.polygons is None or (self.tiles is None and self.tile_index is None):
            raise InputError(
                "zonal_stats: evaluation.polygons and evaluation.tile_index (or evaluation.tiles) "
                f"must be set when evaluation.synthetic=false; {REAL_DATA_HINT}"
            )
        from geoemb.zonal.sources import MissingInputError

        for p in [self.polygons, self.tile_index]:
            if p is not None and not Path(p).exists():
                raise MissingInputError(f"zonal_stats: {p} does not exist; {REAL_DATA_HINT}")
        return self.polygons, self.tiles, self.tile_index

    def run(self, output_dir: Path, logger: RunLogger) -> dict[str, float]:
        """Compute features, write ``features.parquet``, ``pca_rgb.tif`` and ``report.md``."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import rasterio

        from geoemb.zonal import evaluate_file, pca_rgb_raster, write_geoparquet, zonal_stats
        from geoemb.zonal.stats import PIXEL_COUNT

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        polygons, tiles, tile_index = self._inputs()
        gdf = zonal_stats(
            polygons,
            tiles=tiles,
            tile_index=tile_index,
            method=self.method,
            decode=self.decode,
            nodata=self.nodata,
            all_touched=self.all_touched,
            land_column=self.land_column,
            drop_zero_land=self.drop_zero_land,
            max_land_km2=self.max_land_km2,
            bbox=self.bbox,
            path_column=self.path_column,
            index_filter=self.index_filter,
            num_workers=self.num_workers,
            chunk_size=self.chunk_size,
            progress=self.progress,
        )
        info = gdf.attrs["zonal"]
        write_geoparquet(gdf, output_dir / "features.parquet")
        rgb = pca_rgb_raster(gdf, output_dir / "pca_rgb.tif", self.rgb_resolution, crs=self.rgb_crs)
        with rasterio.open(rgb) as ds:
            img = ds.read().transpose(1, 2, 0)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"PCA-3 RGB of {self.method} features")
        png = output_dir / "pca_rgb.png"
        fig.savefig(png, dpi=120, bbox_inches="tight")
        plt.close(fig)

        filters = info["filters"]
        extra = {
            "data": "synthetic AEF stand-in" if self.synthetic else str(polygons),
            "pooling": f"`{self.method}` ({len(info['feature_columns'])} features from D={info['input_dim']}, "
            f"decode={self.decode}, all_touched={self.all_touched})",
            "filters": ", ".join(f"{k}={v}" for k, v in filters.items()),
            "tiles used": str(info["n_tiles_used"]),
            "polygons without valid pixels": str(info["n_empty"]),
        }
        ev = evaluate_file(
            gdf,
            output_dir,
            pca_k=self.pca_k,
            n_pcs=self.n_pcs,
            n_splits=self.n_splits,
            seed=self.seed,
            columns=self.census_columns,
            extra=extra,
            images={"pca_rgb": png},
        )
        metrics = dict(ev.metrics)
        metrics.update(
            {
                "zonal/polygons_input": float(filters["input"]),
                "zonal/polygons_kept": float(filters["kept"]),
                "zonal/polygons_empty": float(info["n_empty"]),
                "zonal/pixels_mean": float(gdf[PIXEL_COUNT].mean()) if len(gdf) else 0.0,
            }
        )
        logger.log_metrics(metrics)
        logger.log_table("zonal/r2", ev.r2)
        if len(ev.classification):
            logger.log_table("zonal/classification", ev.classification)
        logger.log_table("zonal/pc_correlations", ev.correlations)
        for name in ("r2", "pc_scatter"):
            if (output_dir / f"{name}.png").exists():
                logger.log_image(f"zonal/{name}", output_dir / f"{name}.png")
        logger.log_image("zonal/pca_rgb", png)
        return metrics
