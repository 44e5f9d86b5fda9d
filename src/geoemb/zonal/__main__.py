"""``python -m geoemb.zonal``: per-polygon embedding statistics from the command line.

Subcommands
-----------
stats      polygons × embedding tiles (or a tile index) -> features GeoParquet 1.1
pca-rgb    features GeoParquet -> PCA-3 uint8 RGB GeoTIFF
evaluate   features GeoParquet -> R² / CV accuracy / PC correlations report (Markdown + plots)
synthetic  write the synthetic AEF-format tiles + tile index + census-like blocks
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_filter(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"--index-filter expects COLUMN=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m geoemb.zonal", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("stats", help="pool embedding pixels per polygon -> GeoParquet")
    s.add_argument("polygons", help="GeoPackage / GeoParquet / Shapefile (any CRS)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiles", nargs="+", help="GeoTIFF paths, folders or globs")
    src.add_argument("--tile-index", help="tile index (footprints -> paths), e.g. aef_index.gpkg")
    s.add_argument("--output", "-o", required=True, help="output .parquet (GeoParquet 1.1)")
    s.add_argument("--method", default="mean_std", help="geoemb.pooling key (default mean_std)")
    s.add_argument(
        "--decode", choices=["raw", "aef"], default="raw", help="aef: dequantise AEF codes"
    )
    s.add_argument("--nodata", type=float, default=None, help="override the tiles' nodata value")
    s.add_argument("--all-touched", action="store_true", help="rasterise all touched pixels")
    s.add_argument(
        "--land-column", default="ALAND20", help="land area (m²) column; 'none' disables"
    )
    s.add_argument("--keep-water", action="store_true", help="keep polygons with land area 0")
    s.add_argument(
        "--max-land-km2", type=float, default=25.0, help="drop larger polygons (<=0: off)"
    )
    s.add_argument(
        "--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="EPSG:4326 bbox"
    )
    s.add_argument("--year", help="shorthand for --index-filter year=YEAR")
    s.add_argument("--index-filter", nargs="*", help="COLUMN=VALUE filters on the tile index")
    s.add_argument("--path-column", default=None, help="tile index column with raster paths")
    s.add_argument("--workers", type=int, default=None, help="I/O threads (default min(8, 2×CPUs))")
    s.add_argument("--chunk-size", type=int, default=2048, help="polygons per processing chunk")
    s.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("pca-rgb", help="PCA-3 RGB GeoTIFF of the polygon features")
    r.add_argument("features", help="features GeoParquet from `stats`")
    r.add_argument("--output", "-o", required=True, help="output .tif")
    r.add_argument("--resolution", type=float, required=True, help="pixel size in CRS units")
    r.add_argument("--crs", default=None, help="target CRS (default: the polygons' CRS)")
    r.add_argument("--all-touched", action="store_true")
    r.add_argument("--clip", nargs=2, type=float, default=(2.0, 98.0), help="percentile stretch")

    e = sub.add_parser("evaluate", help="R² / CV accuracy / PC correlation report")
    e.add_argument("features", help="features GeoParquet from `stats`")
    e.add_argument("--output", "-o", required=True, help="output folder (report.md, tables, plots)")
    e.add_argument("--pca-k", type=int, default=10)
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--seed", type=int, default=0)

    g = sub.add_parser("synthetic", help="write synthetic AEF tiles + index + census-like blocks")
    g.add_argument("root", help="output folder")
    g.add_argument("--tile-size", type=int, default=128)
    g.add_argument("--bands", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; a :class:`geoemb.errors.GeoembError` prints one line and returns 2."""
    from geoemb.errors import GeoembError

    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except GeoembError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "stats":
        from geoemb.zonal.stats import default_workers, zonal_stats

        filt = _parse_filter(args.index_filter) or {}
        if args.year:
            filt["year"] = args.year
        land = None if str(args.land_column).lower() == "none" else args.land_column
        gdf = zonal_stats(
            args.polygons,
            tiles=args.tiles,
            tile_index=args.tile_index,
            method=args.method,
            decode=args.decode,
            nodata=args.nodata,
            all_touched=args.all_touched,
            land_column=land,
            drop_zero_land=not args.keep_water,
            max_land_km2=args.max_land_km2 if args.max_land_km2 > 0 else None,
            bbox=tuple(args.bbox) if args.bbox else None,
            path_column=args.path_column,
            index_filter=filt or None,
            num_workers=args.workers or default_workers(),
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            output=args.output,  # checked before any work, written atomically at the end
        )
        info = gdf.attrs["zonal"]
        summary = {
            k: info[k] for k in ("method", "input_dim", "filters", "n_tiles_used", "n_empty")
        }
        summary["features"] = len(info["feature_columns"])
        print(json.dumps({"output": str(args.output), **summary}))
    elif args.cmd == "pca-rgb":
        from geoemb.zonal.pca_rgb import pca_rgb_raster

        out = pca_rgb_raster(
            args.features,
            args.output,
            args.resolution,
            crs=args.crs,
            all_touched=args.all_touched,
            clip_percentiles=tuple(args.clip),
        )
        print(out)
    elif args.cmd == "evaluate":
        from geoemb.reporting.tables import to_markdown
        from geoemb.zonal.analysis import evaluate_file

        ev = evaluate_file(
            args.features, args.output, pca_k=args.pca_k, n_splits=args.folds, seed=args.seed
        )
        print(to_markdown(ev.r2, ".3f"))
        if len(ev.classification):
            print(to_markdown(ev.classification, ".3f"))
        print(f"report: {Path(args.output) / 'report.md'}")
    elif args.cmd == "synthetic":
        from geoemb.data.synthetic.zonal import generate

        print(generate(args.root, tile_size=args.tile_size, n_bands=args.bands, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
