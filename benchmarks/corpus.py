"""Corpus build benchmark: geoemb build-corpus vs a plain pyarrow+numpy floor doing the same minimal work.

Same input (synthetic float32 embeddings in ``--parts`` Parquet files), same output layout:

- **floor**: read the files in batches (pyarrow), sign-quantize + ``np.packbits``, geohash cell
  (numpy bit interleaving), WKB footprints of the input bbox (numpy; geoemb's ``geometry`` is that
  polygon too), group rows by cell in memory and write ONE zstd Parquet file per cell (id, code,
  lon, lat, bbox, geometry). No validation, no resume, no hashes, no spatial sort.
- **geoemb**: ``geoemb retrieval build-corpus`` (validation, per-part resumable shards, compaction
  into few files per cell, sha256 of every file, GeoParquet metadata, manifest, id index), in this
  process and with ``--dask local:N``.

Each run is a separate process (peak RSS = its own ``VmHWM``); rows/s counts input rows over
the wall time of the whole build (with Dask: including the cluster start); rows per CPU-second
counts the CPU time of the build itself (all threads of the process, plus every Dask worker's CPU
time during the build; interpreter start and imports excluded for every row alike), the per-core
rate, robust to a loaded box. Bytes read are ``rchar`` (read syscalls, page cache included;
memory-mapped reads, such as geoemb's spill files, are not counted).

    python benchmarks/corpus.py                     # 200k rows x 1024-d, precision 2
    python benchmarks/corpus.py --n 50000 --quick   # smaller, no Dask rows
    python benchmarks/corpus.py --quick --before /tmp/old/src   # + an older geoemb, same run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_B32 = np.frombuffer(b"0123456789bcdefghjkmnpqrstuvwxyz", np.uint8)


def _geohash(lat: np.ndarray, lon: np.ndarray, precision: int) -> np.ndarray:
    """Plain numpy geohash (bits interleaved lon-first, base32)."""
    nbits = 5 * precision
    nlon, nlat = (nbits + 1) // 2, nbits // 2
    xi = np.minimum(((lon + 180.0) / 360.0 * (1 << nlon)).astype(np.int64), (1 << nlon) - 1)
    yi = np.minimum(((lat + 90.0) / 180.0 * (1 << nlat)).astype(np.int64), (1 << nlat) - 1)
    code = np.zeros(len(lat), np.int64)
    for b in range(nbits):
        src, width, i = (xi, nlon, b // 2) if b % 2 == 0 else (yi, nlat, b // 2)
        code = (code << 1) | ((src >> (width - 1 - i)) & 1)
    chars = np.stack([_B32[(code >> (5 * (precision - 1 - c))) & 31] for c in range(precision)], 1)
    return chars.view(f"S{precision}").ravel()


def _wkb_boxes(bbox: pa.StructArray) -> pa.Array:
    """WKB polygons of the bbox covering column (what geoemb stores as ``geometry``)."""
    x0, y0, x1, y1 = (bbox.field(f).to_numpy() for f in ("xmin", "ymin", "xmax", "ymax"))
    n = len(x0)
    buf = np.zeros((n, 93), np.uint8)
    buf[:, :13] = np.frombuffer(b"\x01\x03\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00", np.uint8)
    ring = np.stack([x1, y0, x1, y1, x0, y1, x0, y0, x1, y0], 1).astype("<f8")
    buf[:, 13:] = ring.view(np.uint8).reshape(n, 80)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(93), n, [None, pa.py_buffer(buf.tobytes())]
    ).cast(pa.binary())


def floor(src: str, out: str, precision: int, batch_rows: int) -> dict:
    """The plain pyarrow+numpy build (one file per cell)."""
    t0 = time.perf_counter()
    cells: dict[bytes, list[pa.Table]] = {}
    n = 0
    for path in sorted(Path(src).glob("*.parquet")):
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            emb = rb.column("embedding")
            x = emb.flatten().to_numpy().reshape(len(emb), -1)
            codes = np.packbits(x > 0, axis=1)
            lon, lat = rb.column("lon").to_numpy(), rb.column("lat").to_numpy()
            gh = _geohash(lat, lon, precision)
            t = pa.table({"id": rb.column("id"),
                          "code": pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel()),
                                                                    codes.shape[1]),
                          "lon": rb.column("lon"), "lat": rb.column("lat"),
                          "bbox": rb.column("bbox"), "geometry": _wkb_boxes(rb.column("bbox"))})  # fmt: skip
            order = np.argsort(gh, kind="stable")
            gh_sorted = gh[order]
            t = t.take(pa.array(order))
            uniq, starts = np.unique(gh_sorted, return_index=True)
            bounds = [*starts, len(gh_sorted)]
            for c, cell in enumerate(uniq):
                cells.setdefault(cell, []).append(t.slice(bounds[c], bounds[c + 1] - bounds[c]))
            n += rb.num_rows
    for cell, parts in cells.items():
        d = Path(out) / f"geohash={cell.decode()}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(parts), d / "part-0.parquet", compression="zstd")
    return {"rows": n, "seconds": time.perf_counter() - t0, "files": sum(1 for _ in cells),
            "cells": len(cells)}  # fmt: skip


def _proc_stats() -> dict:
    """This process: CPU seconds (all threads), peak RSS (``VmHWM``, reset by exec, unlike
    ``ru_maxrss`` which a forked child inherits) and bytes read through read syscalls (``rchar``:
    page-cache hits included, memory-mapped reads not)."""
    out = {"cpu_s": time.process_time(), "peak_rss_gb": float("nan"), "rchar": 0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_gb"] = int(line.split()[1]) / 2**20
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                out["rchar"] = int(line.split()[1])
    except OSError:
        out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def geoemb_build(src: str, out: str, precision: int, batch_rows: int, dim: int,
                 dask: str | None) -> dict:  # fmt: skip
    import contextlib

    import geoemb.retrieval.cli as cli
    from geoemb.retrieval.__main__ import main
    from geoemb.retrieval.store import CorpusStore

    workers: dict = {}
    real_client = cli.dask_client

    @contextlib.contextmanager
    def measured_client(spec):  # the CLI's client, with each worker's CPU/RSS/bytes measured
        with real_client(spec) as client:
            if client is None:  # no Dask
                yield client
                return
            workers["ready_s"] = time.perf_counter() - t0
            start = client.run(_proc_stats)
            yield client
            end = client.run(_proc_stats)
            workers["w"] = [{"cpu_s": end[k]["cpu_s"] - start[k]["cpu_s"],
                             "rchar": end[k]["rchar"] - start[k]["rchar"],
                             "peak_rss_gb": end[k]["peak_rss_gb"]} for k in end]  # fmt: skip

    cli.dask_client = measured_client
    t0 = time.perf_counter()
    main(["build-corpus", "--input", src, "--out", out, "--dim", str(dim), "--precision",
          str(precision), "--batch-rows", str(batch_rows), "--quiet",
          *(["--dask", dask] if dask else [])])  # fmt: skip
    dt = time.perf_counter() - t0
    man = CorpusStore(out).manifest
    per_cell = Counter(man["cell"].to_pylist())
    return {"rows": int(sum(man["rows"].to_pylist())), "seconds": dt, "files": man.num_rows,
            "cells": len(per_cell), "max_files_per_cell": max(per_cell.values()),
            "workers": workers.get("w", []), "cluster_start_s": workers.get("ready_s")}  # fmt: skip


def _child(args: list[str], src_tree: str | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src_tree:
        env["PYTHONPATH"] = src_tree
    res = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"{args[0]} run failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], n: int) -> str:
    """The Markdown table: wall and per-CPU-second rates vs the floor, files, RSS, bytes read."""
    base, base_cpu = rows[0]["rows/s"], rows[0]["rows"] / rows[0]["cpu_s"]
    out = ["| build | rows/s | × floor | rows per CPU-s | × floor | files | files per cell (max) "
           "| peak RSS GB (driver; per worker) | GB read (rchar) |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        w = r.get("workers") or []
        cpu = r["cpu_s"] + sum(x["cpu_s"] for x in w)  # driver + every worker
        rss = f"{r['peak_rss_gb']:.2f}" + (
            "; " + ", ".join(f"{x['peak_rss_gb']:.2f}" for x in w) if w else "")  # fmt: skip
        read = (r["rchar"] + sum(x["rchar"] for x in w)) / 1e9
        label = r["build"] + (f" (incl. {r['cluster_start_s']:.1f} s cluster start)"
                              if r.get("cluster_start_s") else "")  # fmt: skip
        per = r["files"] / r["cells"]
        out.append(f"| {label} | {r['rows/s']:,.0f} | {r['rows/s'] / base:.2f} | "
                   f"{r['rows'] / cpu:,.0f} | {r['rows'] / cpu / base_cpu:.2f} | {r['files']} | "
                   f"{per:.1f} ({r.get('max_files_per_cell', 1)}) | {rss} | {read:.2f} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--precision", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=65536)
    ap.add_argument("--workers", default="1,2", help="Dask local worker counts to time")
    ap.add_argument("--quick", action="store_true", help="no Dask rows")
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="also time the geoemb of another source tree "
        "(e.g. an older commit's src/, via git archive), labelled 'geoemb before'",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the single-process rows N times, "
        "interleaved (report each run; a loaded box is noisy)",
    )
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, src, out, prec, br, dim, dask = a.child
        import pyarrow.dataset  # noqa: F401  (imports outside the measured build, as geoemb's)

        if kind != "floor":
            import geoemb.retrieval.__main__  # noqa: F401
            import geoemb.retrieval.store  # noqa: F401
        before = _proc_stats()
        r = (floor(src, out, int(prec), int(br)) if kind == "floor"
             else geoemb_build(src, out, int(prec), int(br), int(dim), dask if dask != "-" else None))  # fmt: skip
        after = _proc_stats()
        r["peak_rss_gb"] = after["peak_rss_gb"]
        r["cpu_s"] = (
            after["cpu_s"] - before["cpu_s"]
        )  # the build only: no interpreter start/imports
        r["rchar"] = after["rchar"] - before["rchar"]
        print(json.dumps(r))
        return
    from geoemb.synthetic.retrieval_corpus import generate

    tmp = Path(tempfile.mkdtemp(prefix="geoemb-corpus-bench-"))
    try:
        t0 = time.perf_counter()
        src = generate(tmp / "in", n=a.n, dim=a.dim, parts=a.parts, seed=0)
        print(f"# corpus build benchmark: N={a.n}, dim={a.dim}, {a.parts} input files, precision "
              f"{a.precision}, batch {a.batch_rows} rows; input written in "
              f"{time.perf_counter() - t0:.0f}s; os.cpu_count={os.cpu_count()}, "
              f"load avg={os.getloadavg()}", flush=True)  # fmt: skip
        one = [("floor (pyarrow+numpy)", "floor", "-", None)]
        if a.before:
            one.append(("geoemb before", "geoemb", "-", a.before))
        one.append(("geoemb", "geoemb", "-", None))
        runs = one * a.repeat
        if not a.quick:
            runs += [(f"geoemb --dask local:{w}", "geoemb", f"local:{w}", None)
                     for w in a.workers.split(",")]  # fmt: skip
        rows = []
        for label, kind, dask, tree in runs:
            out = tmp / f"out-{len(rows)}"
            r = _child([kind, str(src), str(out), str(a.precision), str(a.batch_rows),
                        str(a.dim), dask], tree)  # fmt: skip
            r["rows/s"] = r["rows"] / r["seconds"]
            rows.append({"build": label, **r})
            print(f"{label:28s} {r['rows/s']:10.0f} rows/s  {r['files']:6d} files in "
                  f"{r['cells']} cells  peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
        print(_table(rows, a.n))
        if a.repeat > 1:  # best of the repeats per build (the least disturbed run of each)
            best: dict[str, dict] = {}
            for r in rows:
                b = best.get(r["build"])
                if b is None or r["rows"] / r["cpu_s"] > b["rows"] / b["cpu_s"]:
                    best[r["build"]] = r
            print(f"\nbest of {a.repeat} (by rows per CPU-s):")
            print(_table(list(best.values()), a.n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
