"""``geoemb zonal …`` / ``python -m geoemb.zonal …``: per-polygon embedding statistics.

Subcommands
-----------
stats      polygons × embedding tiles (or a tile index) -> features GeoParquet 1.1
pca-rgb    features GeoParquet -> PCA-3 uint8 RGB GeoTIFF
evaluate   features GeoParquet -> R² / CV accuracy / PC correlations report (Markdown + plots)
synthetic  write the synthetic AEF-format tiles + tile index + census-like blocks

Defaults come from the parameter objects of :mod:`geoemb.zonal.params` (the same ones the
``zonal_stats`` evaluator uses), so the command line and ``evaluate.py`` never disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from geoemb.errors import GeoembError
from geoemb.reporting.tables import to_markdown
from geoemb.reporting.zonal import evaluate_file
from geoemb.synthetic.zonal import generate
from geoemb.zonal.params import CensusAnalysis, PoolingSpec, RasterInputs, ZonalFilters
from geoemb.zonal.pca_rgb import pca_rgb_raster
from geoemb.zonal.sources import DECODES, DECODINGS
from geoemb.zonal.stats import zonal_stats

__all__ = ["build_parser", "main", "run"]

DESCRIPTION = "per-polygon embedding statistics (census blocks × AEF-like embedding rasters)"


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def _add_commands(p: argparse.ArgumentParser) -> None:
    R, F, P, A = RasterInputs(), ZonalFilters(), PoolingSpec(), CensusAnalysis()
    sub = p.add_subparsers(dest="zonal_cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("stats", help="pool embedding pixels per polygon -> GeoParquet")
    s.add_argument("polygons", help="GeoPackage / GeoParquet / Shapefile (any CRS), or a directory "
                   "of GeoParquet/GeoPackage parts (e.g. dask_geopandas.to_parquet's output)")  # fmt: skip
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiles", nargs="+", help="GeoTIFF paths, folders or globs")
    src.add_argument("--tile-index", help="tile index (footprints -> paths), e.g. aef_index.gpkg")
    s.add_argument("--output", "-o", required=True, help="output .parquet (GeoParquet 1.1)")
    s.add_argument("--method", default=P.method, help=f"geoemb.pooling key (default {P.method})")
    s.add_argument("--decode", choices=DECODINGS, default=R.decode,
                   help="value decode (default %(default)s): " + "; ".join(
                       f"{e.name}: {e.description}" for e in DECODES))  # fmt: skip
    s.add_argument("--nodata", type=float, default=R.nodata, help="override the tiles' nodata")
    s.add_argument("--all-touched", action="store_true", help="rasterise all touched pixels")
    s.add_argument("--land-column", default=F.land_column,
                   help="land area (m²) column; 'none' disables the area filters")  # fmt: skip
    s.add_argument("--keep-water", action="store_true", help="keep polygons with land area 0")
    s.add_argument("--max-land-km2", type=float, default=F.max_land_km2,
                   help=f"drop larger polygons (default {F.max_land_km2}; <=0: off)")  # fmt: skip
    s.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                   help="EPSG:4326 bbox")  # fmt: skip
    s.add_argument("--year", help="shorthand for --index-filter year=YEAR")
    s.add_argument("--index-filter", nargs="*", help="COLUMN=VALUE filters on the tile index")
    s.add_argument("--path-column", default=R.path_column, help="tile index column with paths")
    s.add_argument("--workers", type=int, default=P.num_workers,
                   help="I/O threads (default min(8, 2×CPUs))")  # fmt: skip
    s.add_argument("--chunk-size", type=int, default=P.chunk_size,
                   help=f"polygons per processing chunk (default {P.chunk_size})")  # fmt: skip
    s.add_argument("--weighting", choices=("centre", "coverage"), default=P.weighting,
                   help="centre: pixels whose centre is inside (default); coverage: every touched "
                   "pixel weighted by its covered fraction (exactextract)")  # fmt: skip
    s.add_argument("--dask", default=None, metavar="SPEC",
                   help="run the partitions on Dask: local, local:N (N worker processes) or a "
                   "scheduler address tcp://host:8786 (default: this process)")  # fmt: skip
    s.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("pca-rgb", help="PCA-3 RGB GeoTIFF of the polygon features")
    r.add_argument("features", help="features GeoParquet from `stats`")
    r.add_argument("--output", "-o", required=True, help="output .tif")
    r.add_argument("--resolution", type=float, required=True, help="pixel size in CRS units")
    r.add_argument("--crs", default=None,
                   help="target CRS, or 'utm' (default: the polygons' CRS)")  # fmt: skip
    r.add_argument("--all-touched", action="store_true")
    r.add_argument("--clip", nargs=2, type=float, default=(2.0, 98.0), help="percentile stretch")

    e = sub.add_parser("evaluate", help="R² / CV accuracy / PC correlation report")
    e.add_argument("features", help="features GeoParquet from `stats`")
    e.add_argument("--output", "-o", required=True, help="output folder (report.md, tables, plots)")
    e.add_argument("--pca-k", type=int, default=A.pca_k)
    e.add_argument("--n-pcs", type=int, default=A.n_pcs, help="PCs in the correlation table")
    e.add_argument("--folds", type=int, default=A.n_splits)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--columns", nargs="*", metavar="KEY=COLUMN",
                   help="census column renames, e.g. pop=P0010001 urban=UR")  # fmt: skip

    g = sub.add_parser("synthetic", help="write synthetic AEF tiles + index + census-like blocks")
    g.add_argument("root", help="output folder")
    g.add_argument("--tile-size", type=int, default=128)
    g.add_argument("--bands", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)


def build_parser(
    parser_or_subparsers: argparse.ArgumentParser | argparse._SubParsersAction | None = None,
) -> argparse.ArgumentParser:
    """The zonal commands, mounted on a parser.

    ``None``: a stand-alone parser (``python -m geoemb.zonal``); an ``ArgumentParser``: the
    commands are added to it; a sub-parsers action (the ``geoemb`` command): a ``zonal``
    sub-command is added to it. The returned parser sets ``fn=run`` for dispatch.
    """
    if parser_or_subparsers is None:
        p = argparse.ArgumentParser(prog="geoemb zonal", description=DESCRIPTION)
    elif isinstance(parser_or_subparsers, argparse.ArgumentParser):
        p = parser_or_subparsers
    else:
        p = parser_or_subparsers.add_parser("zonal", help=DESCRIPTION, description=DESCRIPTION)
    _add_commands(p)
    p.set_defaults(fn=run)
    return p


def _stats(args: argparse.Namespace) -> None:
    filt = _pairs(args.index_filter, "--index-filter")
    if args.year:
        filt["year"] = args.year
    rasters = RasterInputs(tiles=args.tiles, tile_index=args.tile_index,
                           path_column=args.path_column, index_filter=filt or None,
                           decode=args.decode, nodata=args.nodata)  # fmt: skip
    max_land = (
        args.max_land_km2 if args.max_land_km2 is not None and args.max_land_km2 > 0 else None
    )
    filters = ZonalFilters(land_column=args.land_column, drop_zero_land=not args.keep_water,
                           max_land_km2=max_land, bbox=args.bbox)  # fmt: skip
    pooling = PoolingSpec(method=args.method, all_touched=args.all_touched,
                          num_workers=args.workers, chunk_size=args.chunk_size,
                          progress=not args.no_progress, weighting=args.weighting)  # fmt: skip
    # the output is checked before any work and written atomically at the end
    gdf = zonal_stats(args.polygons, rasters, filters, pooling, output=args.output, dask=args.dask)
    info = gdf.attrs["zonal"]
    keys = ("method", "input_dim", "filters", "n_tiles_used", "n_empty", "data_source")
    summary = {k: info[k] for k in keys}
    summary["features"] = len(info["feature_columns"])
    print(json.dumps({"output": str(args.output), **summary}))


def _evaluate(args: argparse.Namespace) -> None:
    analysis = CensusAnalysis(pca_k=args.pca_k, n_pcs=args.n_pcs, n_splits=args.folds,
                              census_columns=_pairs(args.columns, "--columns") or None)  # fmt: skip
    ev = evaluate_file(args.features, args.output, analysis, seed=args.seed)
    print(to_markdown(ev.r2, ".3f"))
    if len(ev.classification):
        print(to_markdown(ev.classification, ".3f"))
    print(f"report: {Path(args.output) / 'report.md'}")


def run(args: argparse.Namespace) -> int:
    """Run a parsed zonal command; a :class:`~geoemb.errors.GeoembError` prints one line and
    returns 2."""
    try:
        if args.zonal_cmd == "stats":
            _stats(args)
        elif args.zonal_cmd == "pca-rgb":
            print(pca_rgb_raster(args.features, args.output, args.resolution, crs=args.crs,
                                 all_touched=args.all_touched,
                                 clip_percentiles=tuple(args.clip)))  # fmt: skip
        elif args.zonal_cmd == "evaluate":
            _evaluate(args)
        elif args.zonal_cmd == "synthetic":
            print(generate(args.root, tile_size=args.tile_size, n_bands=args.bands, seed=args.seed))
    except GeoembError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geoemb.zonal COMMAND …``; returns the exit status."""
    return run(build_parser().parse_args(argv))
