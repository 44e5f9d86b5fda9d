"""Remote reads benchmark: windowed reads of a real-size AEF COG over loopback HTTP vs local.

One 8192 × 8192 × 64 int8 COG in AEF's published layout (1024-px tiles, nodata -128, overview
IFDs down to 1 × 1; ``--content`` of the 64 tiles hold data, the rest sparse) is served by
:class:`geoemb.sources.loopback.RangeServer` (a child process on 127.0.0.1 that counts requests
and bytes). The same random windows are read

- **local, header cached**: one ``rasterio`` dataset for all windows (geoemb's ``RasterCache``);
- **local, open per window**: ``rasterio.open`` for every window;
- **HTTP, header cached** (geoemb): ``RasterCache`` over the URL (GDAL ``/vsicurl/`` range reads);
- **HTTP, open per window**: ``rasterio.open(url)`` for every window, with GDAL's process-wide
  curl cache on (its default) and off (``CPL_VSIL_CURL_NON_CACHED``: what separate processes or a
  reader without a header cache pay) — the anchor rasteret's header cache is measured against;
- **read_chips over HTTP vs local**: geoemb's chip reader at random points (16 × 16 chips).

It prints seconds, HTTP requests and bytes fetched per window, and the header bytes, and checks
that every approach returns the same pixels. Loopback has no network latency, so the times
understate what headers cost against an object store; the request and byte counts do not.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sources.py            # 200 windows of 256², 16 data tiles
    python benchmarks/sources.py --quick                      # 40 windows
    python benchmarks/sources.py --window 64 --windows 500
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from geoemb.sources import read_chips
from geoemb.sources.aef import AEF_SIZE, AEF_TILE, quantize, write_aef_cog
from geoemb.sources.loopback import RangeServer
from geoemb.sources.remote import RasterCache, remote_env
from geoemb.zonal import RasterInputs

ORIGIN = (500_000.0, 5_300_000.0)


def content_block(seed: int) -> np.ndarray:
    """A 1024² × 64 int8 block: unit vectors quantised as AEF, 16-px patches + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 64, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=0)
    codes = np.repeat(np.repeat(quantize(x), 16, 1), 16, 2)
    noise = rng.integers(-2, 3, codes.shape).astype(np.int16)
    return np.clip(codes.astype(np.int16) + noise, -127, 127).astype(np.int8)


def build(root: Path, n_content: int, seed: int) -> tuple[Path, list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    n = AEF_SIZE // AEF_TILE
    cells = [(int(i) // n, int(i) % n) for i in rng.choice(n * n, n_content, replace=False)]
    path = root / "2024" / "10N" / "bench.tiff"
    path.parent.mkdir(parents=True)
    blocks = {c: content_block(seed + k) for k, c in enumerate(cells)}
    write_aef_cog(path, blocks, epsg=32610, origin=ORIGIN, overviews="empty")
    return path, cells


def windows(cells, count: int, size: int, seed: int) -> list[Window]:
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(count):
        r, c = cells[rng.integers(len(cells))]
        off = rng.integers(0, AEF_TILE - size, 2)
        out.append(Window(c * AEF_TILE + int(off[1]), r * AEF_TILE + int(off[0]), size, size))
    return out


def run(label: str, fn, srv: RangeServer | None, wins) -> dict:
    if srv is not None:
        srv.reset()
    t0 = time.perf_counter()
    arrays = fn(wins)
    dt = time.perf_counter() - t0
    st = srv.stats() if srv is not None else {"requests": 0, "bytes_sent": 0}
    n = len(wins)
    return {"label": label, "s": dt / n, "req": st["requests"] / n, "bytes": st["bytes_sent"] / n,
            "total_bytes": st["bytes_sent"], "arrays": arrays}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--window", type=int, default=256, help="window side in pixels")
    ap.add_argument("--content", type=int, default=16, help="tiles (of 64) holding data")
    ap.add_argument("--chips", type=int, default=200, help="read_chips points")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="40 windows, 40 chips")
    a = ap.parse_args(argv)
    if a.quick:
        a.windows, a.chips = 40, 40
    with tempfile.TemporaryDirectory(prefix="geoemb_bench_sources_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        path, cells = build(root, a.content, a.seed)
        size = path.stat().st_size
        print(f"COG {AEF_SIZE}² × 64 int8, {a.content}/64 data tiles: {size / 2**20:.1f} MiB "
              f"written in {time.perf_counter() - t0:.1f} s; {a.windows} windows of {a.window}²")  # fmt: skip
        wins = windows(cells, a.windows, a.window, a.seed)
        with RangeServer(root) as srv:
            url = srv.url("2024/10N/bench.tiff")
            srv.reset()
            with remote_env(), rasterio.open(url) as ds:
                header = srv.bytes_sent
                header_req = srv.requests
                _ = ds.profile

            def cached(src):
                def fn(ws):
                    with RasterCache() as cache:
                        return [cache.get(src).read(window=w) for w in ws]

                return fn

            def naive(src):
                def fn(ws):
                    out = []
                    for w in ws:
                        with rasterio.open(src) as ds:
                            out.append(ds.read(window=w))
                    return out

                return fn

            rows = [run("local, header cached (RasterCache)", cached(str(path)), None, wins),
                    run("local, open per window", naive(str(path)), None, wins)]  # fmt: skip
            with remote_env():
                rows.append(run("HTTP, header cached (geoemb RasterCache)", cached(url), srv, wins))
                rows.append(
                    run("HTTP, open per window (GDAL curl cache on)", naive(url), srv, wins)
                )
            with remote_env(CPL_VSIL_CURL_NON_CACHED=url.replace("http://", "/vsicurl/http://")):
                rows.append(run("HTTP, open per window (curl cache off)", naive(url), srv, wins))
            ref = rows[0]["arrays"]
            for r in rows[1:]:
                assert all(
                    np.array_equal(x, y) for x, y in zip(ref, r.pop("arrays"), strict=True)
                ), r
            rows[0].pop("arrays")

            rng = np.random.default_rng(a.seed + 2)
            pick = [cells[i] for i in rng.integers(len(cells), size=a.chips)]
            xy = [(ORIGIN[0] + (c * AEF_TILE + rng.integers(8, AEF_TILE - 8) + 0.5) * 10,
                   ORIGIN[1] - (r * AEF_TILE + rng.integers(8, AEF_TILE - 8) + 0.5) * 10) for r, c in pick]  # fmt: skip
            pts = gpd.GeoSeries(shapely.points(xy), crs="EPSG:32610")
            chip_rows = []
            for label, src in (("read_chips local", str(path)), ("read_chips HTTP", url)):
                srv.reset()
                t0 = time.perf_counter()
                ch = read_chips(RasterInputs(tiles=[src], decode="aef_power"), pts, 16)
                dt = time.perf_counter() - t0
                st = srv.stats()
                chip_rows.append((label, dt / a.chips, st["requests"] / a.chips,
                                  st["bytes_sent"] / a.chips, ch.values))  # fmt: skip
            assert np.array_equal(chip_rows[0][4], chip_rows[1][4], equal_nan=True)

    print(f"\nmachine: {platform.machine()} {platform.processor() or ''}; file {size / 2**20:.1f} MiB; "
          f"header (first open over HTTP): {header / 1024:.1f} KiB in {header_req} requests\n")  # fmt: skip
    print("| approach | ms / window | HTTP requests / window | KiB fetched / window | "
          "fetched, % of file | vs geoemb HTTP |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    geo = rows[2]
    for r in rows:
        pct = 100 * r["total_bytes"] / size if r["total_bytes"] else 0
        print(f"| {r['label']} | {1000 * r['s']:.2f} | {r['req']:.2f} | {r['bytes'] / 1024:.1f} | "
              f"{pct:.2f} | {r['s'] / geo['s']:.2f}× time, "
              f"{(r['bytes'] / geo['bytes']) if geo['bytes'] else 0:.2f}× bytes |")  # fmt: skip
    for label, s, req, nb, _ in chip_rows:
        print(f"| {label} (16² chips) | {1000 * s:.2f} | {req:.2f} | {nb / 1024:.1f} | - | - |")


if __name__ == "__main__":
    main()
