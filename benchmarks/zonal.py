"""Zonal statistics: geoemb vs exactextract, side by side in one process, same inputs.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/zonal.py [--polygons 3000] [--size 1024]
        [--bands 64] [--dask-workers 1 2]

Inputs (written to a temporary folder): one AEF-like tile (``--size``² px, ``--bands`` int8 bands,
10 m, tiled 256², nodata −128) and random census-block-like polygons (radius 20–200 m, 4–16
vertices). Rows:

- ``centre mean_std``: geoemb's default (pixel centres) vs exactextract ``mean``+``stdev``;
- ``coverage mean_std``: the same semantics as exactextract (fractional coverage), with the
  largest absolute difference of the means;
- exactextract in its ``feature-sequential`` (default) and ``raster-sequential`` strategies; the
  ratio is against the faster one;
- geoemb on a local Dask cluster with 1 and 2 worker processes (cluster start excluded), with the
  peak RSS of each worker and the bytes each worker read (``rchar`` of ``/proc/<pid>/io``: every
  byte read through ``read()``, page cache included) — for the in-memory layer and for the same
  polygons as a 4-part ``dask_geopandas.to_parquet`` dataset (read lazily, Hilbert-partitioned).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from geoemb.utils.dask import dask_client  # noqa: E402
from geoemb.zonal import zonal_stats  # noqa: E402

X0, Y0, RES = 500_000.0, 5_200_000.0, 10.0


def make_inputs(root: Path, size: int, bands: int, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    tile = root / "tile.tif"
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="int8",
                   crs="EPSG:32610", transform=from_origin(X0, Y0, RES, RES), nodata=-128,
                   tiled=True, blockxsize=256, blockysize=256)  # fmt: skip
    with rasterio.open(tile, "w", **profile) as ds:
        ds.write(rng.integers(-127, 128, size=(bands, size, size), dtype=np.int8))
    m = 250.0
    cx = X0 + rng.uniform(m, size * RES - m, n)
    cy = Y0 - rng.uniform(m, size * RES - m, n)
    polys = []
    for x, y in zip(cx, cy, strict=True):
        k = int(rng.integers(4, 17))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(20, 200) * rng.uniform(0.5, 1.0, k)
        polys.append(shapely.make_valid(shapely.Polygon(np.c_[x + rad * np.cos(ang),
                                                              y + rad * np.sin(ang)])))  # fmt: skip
    gdf = gpd.GeoDataFrame({"id": np.arange(n)}, geometry=polys, crs="EPSG:32610")
    gdf = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])].reset_index(drop=True)
    path = root / "polygons.parquet"
    gdf.to_parquet(path)
    return tile, path


def timed(fn, repeat: int = 1):
    """``fn()``'s result and its best wall time over ``repeat`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry a spawning parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_bytes() -> int:
    """Bytes this process has read through read() so far (``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polygons", type=int, default=3000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=64)
    ap.add_argument("--dask-workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--ee-strategies", nargs="*",
                    default=["feature-sequential", "raster-sequential"])  # fmt: skip
    ap.add_argument("--repeat", type=int, default=1,
                    help="best of N runs for each timing (feature-sequential: always 1)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="300 polygons on 512², no Dask rows")
    args = ap.parse_args()
    if args.quick:
        args.polygons, args.size, args.dask_workers = 300, 512, []
    from exactextract import exact_extract

    with tempfile.TemporaryDirectory() as tmp:
        tile, poly = make_inputs(Path(tmp), args.size, args.bands, args.polygons)
        gdf = gpd.read_parquet(poly)
        n = len(gdf)
        kw = dict(tiles=[tile], land_column=None, progress=False, num_workers=1)
        print(f"# zonal: {n} polygons, {args.size}² px × {args.bands} int8 bands, "
              f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")  # fmt: skip
        zonal_stats(gdf.iloc[:50], **kw)  # warm-up (imports, GDAL cache of the header)
        ee = {}
        for strat in args.ee_strategies:
            ee[strat], t = timed(lambda s=strat: exact_extract(str(tile), gdf, ["mean", "stdev"],
                                                                output="pandas", strategy=s),
                                 1 if strat == "feature-sequential" else args.repeat)  # fmt: skip
            print(f"exactextract {strat:<20} {n / t:9.0f} polygons/s")
            ee[strat + "_t"] = t
        best = min(ee[s + "_t"] for s in args.ee_strategies)
        print("| mode | geoemb poly/s | exactextract poly/s (best strategy) | ratio | note |")
        print("|---|---|---|---|---|")
        for weighting in ("centre", "coverage"):
            out, t = timed(
                lambda w=weighting: zonal_stats(gdf, method="mean_std", weighting=w, **kw),
                args.repeat,
            )
            note = ""
            if weighting == "coverage":
                ref = ee["raster-sequential"]
                diff = max(np.nanmax(np.abs(out[f"emb_mean_{b:02d}"].to_numpy()
                                            - ref[f"band_{b + 1}_mean"].to_numpy()))
                           for b in range(args.bands))  # fmt: skip
                note = f"max |mean − exactextract mean| = {diff:.2e}"
            else:
                note = f"{int((out.pixel_count == 0).sum())} polygons without a pixel centre"
            print(f"| {weighting} mean_std | {n / t:.0f} | {n / best:.0f} | {best / t:.2f}× | "
                  f"{note} |")  # fmt: skip
        print(f"in-process peak RSS {peak_rss_mb():.0f} MB")
        dataset = Path(tmp) / "polygons_parts.parquet"
        if args.dask_workers:
            import dask_geopandas

            dask_geopandas.from_geopandas(gdf, npartitions=4).to_parquet(dataset)
        print("| workers | input | polygons/s | × exactextract | peak RSS per worker (MB) | "
              "MiB read per worker |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for w in args.dask_workers:
            with dask_client(f"local:{w}") as client:
                client.run(lambda: __import__("geoemb.zonal.partitioned"))  # imports untimed
                rows = {}
                for label, src in (("GeoDataFrame", gdf), ("4-part GeoParquet dataset", dataset)):
                    before = client.run(read_bytes)
                    out, t = timed(lambda c=client, s=src: zonal_stats(
                        s, method="mean_std", dask=c, chunk_size=256, **kw), args.repeat)  # fmt: skip
                    after = client.run(read_bytes)
                    rss = client.run(peak_rss_mb)
                    mib = [(after[k] - before[k]) / 2**20 / args.repeat for k in after]
                    print(f"| {w} | {label} | {n / t:.0f} | {best / t:.2f}× | "
                          f"{' / '.join(f'{v:.0f}' for v in rss.values())} | "
                          f"{' / '.join(f'{v:.0f}' for v in mib)} |")  # fmt: skip
                    rows[label] = out.drop(columns="geometry")
                assert rows["GeoDataFrame"].equals(rows["4-part GeoParquet dataset"]), "rows differ"


if __name__ == "__main__":
    main()
