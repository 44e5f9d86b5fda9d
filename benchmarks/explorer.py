"""Explorer latency: click → heat map over loopback, at 1M and 5M rows, vs the library query path.

A corpus of ``N`` 512-bit (64-byte) codes over a 40°×25° region (codes = one of 200 site codes
with 15 % of bits flipped; a site per Voronoi cell, so similar rows cluster in space) is built
once with the library's ``CorpusBuilder`` (geohash precision 3, ≤ 5,000 rows per shard, as
TerraBit). Then ``geoemb explore``'s app serves it on 127.0.0.1 (uvicorn in a thread) and an
httpx client measures, per viewport size:

- **click**: ``POST /exemplar`` (the clicked point) + ``POST /search`` (3 positives, 1 negative,
  k=50, 640×400 heat map) on an unchanged viewport — what a user waits for after a click;
- **pan**: ``POST /search`` on a new random viewport of the same size (fixed exemplars);
- **anchor**: the CLI's path, the library's ``exemplar_query`` on ``CorpusStore`` with the
  exemplars as points (reads the pruned shards from Parquet on every call), same query, same
  process — the ratio is anchor / pan.

The first query after start-up (shards not yet decoded) is reported separately as *cold*.

    python benchmarks/explorer.py                  # N = 1M and 5M
    python benchmarks/explorer.py --quick          # N = 100k
    python benchmarks/explorer.py --n 1000000 --repeats 40
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from geoemb.compression.bitpack import pack_bits

BOUNDS = (-10.0, 35.0, 30.0, 60.0)
DIM = 512


def make_corpus(root: Path, n: int, seed: int = 0, parts: int = 16, n_sites: int = 200,
                flip: float = 0.15) -> Path:  # fmt: skip
    """Build (once) a clustered binary corpus of ``n`` rows; returns its root."""
    from geoemb.retrieval.store import CorpusBuilder

    if (root / "manifest.parquet").exists():
        return root
    rng = np.random.default_rng(seed)
    w, s, e, nn = BOUNDS
    site_lon, site_lat = rng.uniform(w, e, n_sites), rng.uniform(s, nn, n_sites)
    site_bits = rng.random((n_sites, DIM)) < 0.5

    def batches():
        bw = (e - w) / parts
        start = 0
        for p in range(parts):
            m = n // parts + (1 if p < n % parts else 0)
            lon = rng.uniform(w + p * bw, w + (p + 1) * bw, m)
            lat = rng.uniform(s, nn, m)
            codes = np.empty((m, DIM // 8), np.uint8)
            for a in range(0, m, 32768):
                b = min(m, a + 32768)
                d2 = (lon[a:b, None] - site_lon) ** 2 + (lat[a:b, None] - site_lat) ** 2
                noise = rng.random((b - a, DIM), dtype=np.float32) < flip
                codes[a:b] = pack_bits(site_bits[d2.argmin(1)] ^ noise)
            half = 0.005
            yield p, {"id": np.arange(start, start + m, dtype=np.int64), "lon": lon, "lat": lat,
                      "code": codes,
                      "bbox": np.stack([lon - half, lat - half, lon + half, lat + half], 1)}  # fmt: skip
            start += m

    tmp = root.with_name(root.name + ".building")  # a killed build resumes (same seed, same parts)
    CorpusBuilder(tmp, dim=DIM, geohash_precision=3, max_rows_per_shard=5000).build(
        batches(), total=parts, progress=False
    )
    tmp.rename(root)
    return root


def _serve(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    return server, th, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _pct(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 95))


def bench_corpus(root: Path, n: int, repeats: int, sizes: list[float], anchor_repeats: int) -> list:
    import httpx

    from geoemb.explore import create_app
    from geoemb.retrieval.exemplar import exemplar_query

    t0 = time.perf_counter()
    app = create_app(root, cache_dir=root.parent / f"{root.name}_cache", max_view_rows=n)
    startup = time.perf_counter() - t0
    index = app.state.index
    server, th, url = _serve(app)
    rng = np.random.default_rng(1)
    w, s, e, nn = BOUNDS
    rows_out = []
    try:
        with httpx.Client(base_url=url, timeout=120) as c:

            def click(lon, lat):
                r = c.post("/exemplar", json={"lon": lon, "lat": lat, "tolerance_deg": 0.02})
                r.raise_for_status()
                return r.json()

            for frac in sizes:
                vw, vh = (e - w) * frac, (nn - s) * frac
                x0, y0 = rng.uniform(w, e - vw), rng.uniform(s, nn - vh)
                box = [x0, y0, x0 + vw, y0 + vh]
                # click where a row is (a user clicks on the map's coloured chips)
                inview = index.rows(box)
                pick = rng.choice(len(inview), size=4 + repeats, replace=len(inview) < 4 + repeats)
                spots = iter(zip(inview.lon[pick], inview.lat[pick]))

                def random_point(_box, spots=spots):
                    lon, lat = next(spots)
                    return click(float(lon), float(lat))

                ex = [random_point(box) for _ in range(4)]
                body = {"bbox": box, "positives": [{"id": x["id"], "lon": x["lon"], "lat": x["lat"]}
                                                   for x in ex[:2]],
                        "negatives": [{"id": ex[3]["id"], "lon": ex[3]["lon"], "lat": ex[3]["lat"]}],
                        "k": 50, "width": 640, "height": 400}  # fmt: skip
                t = time.perf_counter()
                r = c.post("/search", json=body)
                r.raise_for_status()
                cold = time.perf_counter() - t
                n_view = r.json()["n_candidates"]
                clicks, server_ms = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    x = random_point(box)
                    b = dict(body, positives=body["positives"] + [{"id": x["id"], "lon": x["lon"],
                                                                   "lat": x["lat"]}])  # fmt: skip
                    if x["id"] in {p["id"] for p in body["positives"] + body["negatives"]}:
                        b = body
                    r = c.post("/search", json=b)
                    r.raise_for_status()
                    clicks.append(time.perf_counter() - t)
                    server_ms.append(r.json()["timing_ms"]["total_ms"])
                pans = []
                for _ in range(repeats):
                    px, py = rng.uniform(w, e - vw), rng.uniform(s, nn - vh)
                    b = dict(body, bbox=[px, py, px + vw, py + vh])
                    t = time.perf_counter()
                    r = c.post("/search", json=b)
                    r.raise_for_status()
                    pans.append(time.perf_counter() - t)
                anchor = []
                for _ in range(anchor_repeats):
                    t = time.perf_counter()
                    # the CLI path: `python -m geoemb.retrieval exemplar --pos LON,LAT ...`
                    exemplar_query(index.store,
                                   positives=[(p["lon"], p["lat"]) for p in body["positives"]],
                                   negatives=[(p["lon"], p["lat"]) for p in body["negatives"]],
                                   bbox=box, k=50)  # fmt: skip
                    anchor.append(time.perf_counter() - t)
                cp, pp, ap = _pct(clicks), _pct(pans), _pct(anchor)
                rows_out.append({
                    "N": n, "view": f"{vw:.1f}°×{vh:.1f}°", "rows in view": n_view,
                    "cold ms": 1e3 * cold, "click p50 ms": 1e3 * cp[0], "click p95 ms": 1e3 * cp[1],
                    "server p50 ms": float(np.median(server_ms)),
                    "pan p50 ms": 1e3 * pp[0], "pan p95 ms": 1e3 * pp[1],
                    "anchor p50 ms": 1e3 * ap[0], "anchor/pan": ap[0] / pp[0],
                    "startup s": startup,
                })  # fmt: skip
                print(rows_out[-1], flush=True)
    finally:
        server.should_exit = True
        th.join(10)
    return rows_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--root", default="data/bench_explorer", help="where corpora are built/reused")
    ap.add_argument("--sizes", type=float, nargs="*", default=[0.1, 0.25, 1.0],
                    help="viewport side as a fraction of the corpus extent")  # fmt: skip
    a = ap.parse_args()
    ns = a.n or ([100_000] if a.quick else [1_000_000, 5_000_000])
    repeats = a.repeats or (10 if a.quick else 30)
    print(f"# explorer benchmark: N={ns}, {DIM}-bit codes, repeats={repeats}, viewports={a.sizes}")
    print(f"# CPU: {platform.processor() or platform.machine()}, os.cpu_count={os.cpu_count()}, "
          f"load avg={os.getloadavg()}")  # fmt: skip
    import pandas as pd

    from geoemb.reporting.tables import to_markdown

    rows = []
    for n in ns:
        t = time.perf_counter()
        root = make_corpus(Path(a.root) / f"corpus_{n}", n)
        print(f"# corpus N={n} ready in {time.perf_counter() - t:.0f}s at {root}", flush=True)
        rows += bench_corpus(root, n, repeats, a.sizes, anchor_repeats=3 if n <= 1_000_000 else 2)
    df = pd.DataFrame(rows)
    print(to_markdown(df.round(1)) if hasattr(df, "round") else df)


if __name__ == "__main__":
    main()
