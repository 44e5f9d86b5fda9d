"""Corpus build benchmark: geoemb build-corpus vs a plain pyarrow+numpy floor doing the same minimal work.

Same input (synthetic float32 embeddings in ``--parts`` Parquet files), same output layout:

- **floor**: read the files in batches (pyarrow), sign-quantize + ``np.packbits``, geohash cell
  (numpy bit interleaving), WKB points (numpy), group rows by cell in memory and write ONE zstd
  Parquet file per cell (id, code, lon, lat, bbox, geometry). No validation, no resume, no hashes.
- **geoemb**: ``geoemb retrieval build-corpus`` (validation, per-part resumable shards, compaction
  into few files per cell, sha256 of every file, GeoParquet metadata, manifest, id index), in this
  process and with ``--dask local:N``.

Each run is a separate process (peak RSS = its own ``VmHWM``); rows/s counts input rows over
the wall time of the whole build; rows per CPU-second (user + system time of that process; not
shown for Dask, whose work runs in worker processes) is the per-core rate, robust to a loaded box.

    python benchmarks/corpus.py                     # 200k rows x 1024-d, precision 2
    python benchmarks/corpus.py --n 50000 --quick   # smaller, no Dask rows
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


def _wkb_points(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    buf = np.zeros((len(lon), 21), np.uint8)
    buf[:, 0] = 1
    buf[:, 1:5] = np.frombuffer(np.uint32(1).tobytes(), np.uint8)
    buf[:, 5:13] = lon.astype("<f8").view(np.uint8).reshape(-1, 8)
    buf[:, 13:21] = lat.astype("<f8").view(np.uint8).reshape(-1, 8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(21), len(lon), [None, pa.py_buffer(buf.tobytes())]
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
                          "bbox": rb.column("bbox"), "geometry": _wkb_points(lon, lat)})  # fmt: skip
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


def geoemb_build(src: str, out: str, precision: int, batch_rows: int, dim: int,
                 dask: str | None) -> dict:  # fmt: skip
    from geoemb.retrieval.__main__ import main
    from geoemb.retrieval.store import CorpusStore

    t0 = time.perf_counter()
    main(["build-corpus", "--input", src, "--out", out, "--dim", str(dim), "--precision",
          str(precision), "--batch-rows", str(batch_rows), "--quiet",
          *(["--dask", dask] if dask else [])])  # fmt: skip
    dt = time.perf_counter() - t0
    man = CorpusStore(out).manifest
    per_cell = Counter(man["cell"].to_pylist())
    return {"rows": int(sum(man["rows"].to_pylist())), "seconds": dt, "files": man.num_rows,
            "cells": len(per_cell), "max_files_per_cell": max(per_cell.values())}  # fmt: skip


def _peak_rss_gb() -> float:
    """This process's peak RSS (``VmHWM``: reset by exec, unlike ``ru_maxrss``, which a child
    inherits from the parent it was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _child(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, __file__, "--child", *args], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--precision", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=65536)
    ap.add_argument("--workers", default="1,2", help="Dask local worker counts to time")
    ap.add_argument("--quick", action="store_true", help="no Dask rows")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, src, out, prec, br, dim, dask = a.child
        r = (floor(src, out, int(prec), int(br)) if kind == "floor"
             else geoemb_build(src, out, int(prec), int(br), int(dim), dask if dask != "-" else None))  # fmt: skip
        r["peak_rss_gb"] = _peak_rss_gb()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        r["cpu_s"] = ru.ru_utime + ru.ru_stime  # this process only (not Dask workers)
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
        runs = [("floor (pyarrow+numpy)", "floor", "-"), ("geoemb", "geoemb", "-")]
        if not a.quick:
            runs += [(f"geoemb --dask local:{w}", "geoemb", f"local:{w}")
                     for w in a.workers.split(",")]  # fmt: skip
        rows = []
        for label, kind, dask in runs:
            out = tmp / f"out-{len(rows)}"
            r = _child([kind, str(src), str(out), str(a.precision), str(a.batch_rows),
                        str(a.dim), dask])  # fmt: skip
            r["rows/s"] = r["rows"] / r["seconds"]
            rows.append({"build": label, **r})
            print(f"{label:28s} {r['rows/s']:10.0f} rows/s  {r['files']:6d} files in "
                  f"{r['cells']} cells  peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
        base = rows[0]["rows/s"]
        base_cpu = rows[0]["rows"] / rows[0]["cpu_s"]
        print(
            "\n| build | rows/s | vs floor | rows per CPU-s | vs floor | files | cells | "
            "max files/cell | peak RSS GB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            dask = r["build"].startswith("geoemb --dask")
            cpu = (
                "- | -"
                if dask
                else (f"{r['rows'] / r['cpu_s']:.0f} | {r['rows'] / r['cpu_s'] / base_cpu:.2f}")
            )
            print(
                f"| {r['build']} | {r['rows/s']:.0f} | {r['rows/s'] / base:.2f} | {cpu} "
                f"| {r['files']} | {r['cells']} | {r.get('max_files_per_cell', 1)} "
                f"| {r['peak_rss_gb']:.2f} |"
            )
        print("\n(Dask rows: peak RSS is the driver's; workers are separate processes.)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
