"""1 vs 2 Dask workers for the pooled-feature cache build and the compression sweep.

Each (workload, mode) runs in a fresh Python process (so peak RSS is that run's): ``none`` (the
in-process path), ``local:1`` and ``local:2`` (:func:`geoemb.utils.dask.dask_client`). Workers are
started and have imported geoemb/torch before the clock starts (the cluster start is printed
apart); the timed part is one ``pool_split`` with a fresh cache (pooling) or one ``run_study``
(compression). Outputs are checked equal to the ``none`` run (bitwise features; rows without
timing columns). Peak RSS: ``ru_maxrss`` of the driver and of each worker process.

    OMP_NUM_THREADS=1 python benchmarks/dask_scaling.py            # both workloads
    python benchmarks/dask_scaling.py --quick                       # small sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("none", "local:1", "local:2")
POOL_METHODS = ["mean", "stats", "mean_std", "percentiles", "flattened_cov", "pca_16", "bovw_16"]
COMP_CONFIGS = ["float32", "int8", "int4", "binary", "pca32+int8", "pca16+int8", "pq_16x8",
                "int2", "rotate_sign", "turboquant_mse_4"]  # fmt: skip
TIMING = {"fit_s", "encode_s", "decode_s", "knn_s", "linear_s", "hamming_s", "total_s"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm() -> int:
    import geoemb.compression.study  # noqa: F401
    import geoemb.pooling.features  # noqa: F401

    return os.getpid()


def _pooling(mode: str, work: Path, quick: bool, client) -> tuple[dict, float, str]:
    import torch

    from geoemb.data.eurosat_embed import EuroSATEmbedDataset
    from geoemb.pooling.cache import PooledFeatureCache, SplitCache
    from geoemb.pooling.features import PoolOptions, pool_split
    from geoemb.synthetic.eurosat_embed import generate

    n_per_class = 8 if quick else 60
    root = work / "data"
    if not root.exists():
        generate(root, n_per_class=n_per_class, encoders=("aef",), size=32)
    train, test = (EuroSATEmbedDataset(root, "aef", s, "standard", size=32)
                   for s in ("train", "test"))  # fmt: skip
    slot = SplitCache(PooledFeatureCache(work / f"cache-{mode}"), "aef", "standard", "b" * 64)
    opts = PoolOptions(batch_size=32, seed=0)
    t0 = time.perf_counter()
    out = pool_split(train, test, POOL_METHODS, opts, torch.device("cpu"), slot, "bench",
                     dask=client, chunk_size=128)  # fmt: skip
    dt = time.perf_counter() - t0
    import hashlib

    h = hashlib.sha256()
    for m in sorted(out):
        for k in ("x_train", "y_train", "x_test", "y_test"):
            h.update(np.ascontiguousarray(out[m][k]).tobytes())
    return {"items": len(train) + len(test), "unit": "patches"}, dt, h.hexdigest()[:16]


def _compression(mode: str, work: Path, quick: bool, client) -> tuple[dict, float, str]:
    import pandas as pd

    from geoemb.compression.study import SpectraConfig, StudyConfig, run_study
    from geoemb.probes import ProbeConfig
    from geoemb.synthetic.embedding_table import make_table

    n_tr, n_te = (600, 200) if quick else (5000, 1500)
    tables = {"e128": make_table(n_tr, n_te, 128, num_classes=10, intrinsic_dim=16, seed=1)}
    study = StudyConfig(probe=ProbeConfig(knn_k=(5,), linear=True, C=1.0),
                        bootstrap_resamples=999, spectra=SpectraConfig(enabled=False))  # fmt: skip
    rd = work / f"rows-{mode}"
    t0 = time.perf_counter()
    run_study(tables, COMP_CONFIGS, study, rd, dask=client)
    dt = time.perf_counter() - t0
    df = pd.concat([pd.read_csv(f) for f in sorted((rd / "rows").glob("*.csv"))])
    df = df.drop(columns=[c for c in df.columns if c in TIMING])
    import hashlib

    h = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()[:16]
    return {"items": len(COMP_CONFIGS), "unit": "configs"}, dt, h


def one(workload: str, mode: str, work: Path, quick: bool) -> dict:
    """Run one (workload, mode) in this process; return its measurements."""
    import torch

    from geoemb.utils.dask import dask_client

    torch.set_num_threads(1)
    fn = {"pooling": _pooling, "compression": _compression}[workload]
    t0 = time.perf_counter()
    with dask_client(None if mode == "none" else mode) as client:
        workers_rss = {}
        if client is not None:
            client.run(_warm)
        start = time.perf_counter() - t0
        meta, dt, digest = fn(mode, work, quick, client)
        if client is not None:
            workers_rss = client.run(_rss_mb)
    return {"workload": workload, "mode": mode, "seconds": dt, "start_s": start,
            "rate": meta["items"] / dt, "unit": meta["unit"], "items": meta["items"],
            "digest": digest, "driver_rss_mb": _rss_mb(),
            "worker_rss_mb": sorted(workers_rss.values())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default="pooling,compression")
    ap.add_argument("--one", nargs=3, metavar=("WORKLOAD", "MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], Path(args.one[2]), args.quick)))
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    print(f"# {platform.node()} {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(
        "| workload | mode | items | seconds | rate | speed-up | cluster start s | driver peak "
        "RSS MB | per-worker peak RSS MB | output = none's |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for wl in args.workloads.split(","):
        with tempfile.TemporaryDirectory() as d:
            base = None
            for mode in MODES:
                cmd = [sys.executable, __file__, "--one", wl, mode, d] + (["--quick"] * args.quick)
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if r.returncode:
                    sys.exit(f"{wl} {mode} failed:\n{r.stderr[-3000:]}")
                res = json.loads(r.stdout.strip().splitlines()[-1])
                base = base or res
                same = "yes" if res["digest"] == base["digest"] else "NO"
                wrss = ", ".join(f"{v:.0f}" for v in res["worker_rss_mb"]) or "—"
                print(f"| {wl} | {mode} | {res['items']} {res['unit']} | {res['seconds']:.2f} | "
                      f"{res['rate']:.1f} {res['unit']}/s | {base['seconds'] / res['seconds']:.2f}× | "
                      f"{res['start_s']:.1f} | {res['driver_rss_mb']:.0f} | {wrss} | {same} |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
