"""Compression benchmark: geoemb encode/decode vs numpy/sklearn/FAISS reference paths, plus the
full synthetic EuroSAT-Embed-sized sweep time.

Part 1 runs each reference path and the geoemb path on the same inputs in this process and prints
seconds and the ratio ``reference / geoemb`` (> 1: geoemb faster), after checking that both give
identical (or, for float paths, numerically equal) outputs.

Part 2 times ``CompressionEvaluator`` on the synthetic stand-in at EuroSAT-Embed size (16,200 train
/ 5,400 test rows; encoders of D = 64/128/512/1024) over ``geoemb.compression.BLOG_CONFIGS``.

    python benchmarks/compression.py            # full (N = 16,200 x D = 1024; full sweep)
    python benchmarks/compression.py --quick    # small sizes, 2 encoders x 6 configs
    python benchmarks/compression.py --linear   # include the linear probe in the sweep (slow)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _time(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ----------------------------------------------------------------------------- reference paths


def ref_int8(xtr, x):
    """TerraBit formulas written inline (float64 numpy)."""
    lo, hi = xtr.min(0), xtr.max(0)
    s = (hi - lo) / 255.0
    s[s == 0] = 1
    q = np.clip(np.round((x - lo) / s) - 128, -128, 127).astype(np.int8)
    return q, (q.astype(np.float64) + 128) * s + lo


def ref_pack_bits(q, bits):
    """Generic MSB-first packing through an explicit bit matrix + np.packbits."""
    b = (q[:, :, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & np.uint8(1)
    return np.packbits(b.reshape(q.shape[0], -1).astype(np.uint8), axis=1)


def ref_unpack_bits(codes, bits, d):
    b = np.unpackbits(codes, axis=1, count=d * bits).reshape(codes.shape[0], d, bits)
    w = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (b * w).sum(-1, dtype=np.uint8)


def ref_turboquant_idx(u, Q, levels):
    """Naive nearest-codeword search: argmin_k |y_j - c_k| over the full codebook."""
    y = u @ Q
    return np.abs(y[:, :, None] - levels[None, None, :]).argmin(-1).astype(np.uint8)


def bench_ops(n: int, d: int, n_test: int, seed: int = 0) -> list[dict]:
    import faiss
    from sklearn.decomposition import PCA

    from geoemb.compression import build, pack_uint, unpack_uint
    from geoemb.retrieval.knn import hamming_knn

    rng = np.random.default_rng(seed)
    x = (
        rng.standard_normal((n, 32)) @ rng.standard_normal((32, d)) + rng.standard_normal((n, d))
    ).astype(np.float32)
    xte = x[:n_test]
    rows = []

    def add(op, t_ref, t_geo, ok, nbytes):
        rows.append({"op": op, "ref_s": t_ref, "geoemb_s": t_geo, "ratio": t_ref / t_geo,
                     "geoemb_MB/s": nbytes / t_geo / 1e6, "equal": ok})  # fmt: skip

    # int8 encode+decode (fit included in both)
    def geo_int8():
        q = build("int8").fit(x)
        c = q.encode(x)
        return c, q.decode(c)

    tr, (rq, rd) = _time(lambda: ref_int8(x.astype(np.float64), x.astype(np.float64)))
    tg, (gq, gd) = _time(geo_int8)
    # float64 reference vs float32 geoemb: codes may differ by one level at .5 rounding ties
    same = (
        np.abs(rq.astype(np.int16) - gq.astype(np.int16)).max() <= 1 and np.mean(rq == gq) > 0.999
    )
    add("int8 fit+encode+decode", tr, tg, bool(same), x.nbytes)

    # b-bit packing (4 and 3 bits)
    for bits in (4, 3, 2):
        q = rng.integers(0, 1 << bits, (n, d)).astype(np.uint8)
        tr, rc = _time(lambda q=q, bits=bits: ref_pack_bits(q, bits))
        tg, gc = _time(lambda q=q, bits=bits: pack_uint(q, bits))
        add(f"pack {bits}-bit MSB-first", tr, tg, bool(np.array_equal(rc, gc)), q.nbytes)
        tr, ru = _time(lambda gc=gc, bits=bits: ref_unpack_bits(gc, bits, d))
        tg, gu = _time(lambda gc=gc, bits=bits: unpack_uint(gc, bits, d))
        add(f"unpack {bits}-bit", tr, tg, bool(np.array_equal(ru, gu)), q.nbytes)

    # binary sign codes
    b = build("binary").fit(x)
    tr, rc = _time(lambda: np.packbits(x > 0, axis=1))
    tg, gc = _time(lambda: b.encode(x))
    add("binary encode (np.packbits)", tr, tg, bool(np.array_equal(rc, gc)), x.nbytes)

    # PCA64: sklearn directly vs geoemb reducer (fit + transform)
    def ref_pca():
        return PCA(64, svd_solver="full").fit(x).transform(xte)

    def geo_pca():
        c = build("pca64").fit(x)
        return c.decode_features(c.encode(xte))

    tr, rz = _time(ref_pca, 1)
    tg, gz = _time(geo_pca, 1)
    add(
        "pca64 fit+transform (sklearn)",
        tr,
        tg,
        bool(np.allclose(np.abs(rz), np.abs(gz), atol=1e-2)),
        x.nbytes,
    )

    # PQ 8x8: faiss IndexPQ directly vs geoemb
    def ref_pq():
        idx = faiss.IndexPQ(d, 8, 8)
        idx.pq.cp.seed = 0
        idx.pq.cp.max_points_per_centroid = 10**9
        idx.train(x)
        return idx.sa_decode(idx.sa_encode(xte))

    def geo_pq():
        c = build("pq_8x8").fit(x)
        return c.decode(c.encode(xte))

    tr, rp = _time(ref_pq, 1)
    tg, gp = _time(geo_pq, 1)
    add("pq_8x8 train+enc+dec (faiss)", tr, tg, bool(np.allclose(rp, gp, atol=1e-4)), x.nbytes)

    # TurboQuant-MSE 4-bit encode: naive argmin reference vs geoemb (searchsorted)
    tq = build("turboquant_mse_4").fit(x[:10])
    u = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    m = min(len(u), 2000)
    tr, ri = _time(lambda: ref_turboquant_idx(u[:m], tq.Q, tq.levels), 1)
    tg, gi = _time(lambda: tq.indices(u[:m]), 1)
    add("turboquant_mse_4 indices (argmin)", tr, tg, bool(np.mean(ri == gi) > 0.9999), u[:m].nbytes)

    # Hamming kNN: faiss.knn_hamming vs geoemb numpy popcount
    db = np.packbits(x > 0, axis=1)
    qq = db[:n_test]
    tr, (fd, _) = _time(lambda: faiss.knn_hamming(qq, db, 5), 1)
    tg, (gd_, _) = _time(lambda: hamming_knn(qq, db, 5), 1)
    add(
        f"hamming kNN k=5 ({n_test} q x {n} db)",
        tr,
        tg,
        bool(np.array_equal(fd, gd_)),
        qq.shape[0] * db.nbytes,
    )
    return rows


def bench_sweep(quick: bool, linear: bool, out: Path, encoders: str | None = None):
    from geoemb.compression import BLOG_CONFIGS
    from geoemb.data.embedding_table import EmbeddingTableSource
    from geoemb.evaluation.compression import CompressionEvaluator
    from geoemb.run.context import RunContext

    if quick:
        encs, cfgs = (
            ["aef", "olmoearth-nano"],
            ["float32", "int8", "int4", "binary", "pca16+int4", "turboquant_mse_2"],
        )
        kw = {"n_train": 2000, "n_test": 600, "seed": 0}
    else:
        encs, cfgs = ["aef", "olmoearth-nano", "tessera", "dinov3"], list(BLOG_CONFIGS)
        kw = {"n_train": 16_200, "n_test": 5_400, "seed": 0}
    if encoders:
        encs = [e.strip() for e in encoders.split(",") if e.strip()]
    data = EmbeddingTableSource(encoders=encs, synthetic=True, synthetic_root=out / "data",
                                synthetic_kwargs=kw)  # fmt: skip
    ev = CompressionEvaluator(data, configs=cfgs, probe={"linear": linear, "C": None},
                              results_dir=str(out / "results"))  # fmt: skip
    t0 = time.perf_counter()
    data.root()  # generation timed separately
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev.run(RunContext.local(out / "run"))
    return time.perf_counter() - t0, t_gen, len(encs) * len(cfgs), out / "results"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--linear", action="store_true", help="include the linear probe in the sweep")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-ops", action="store_true", help="skip the encode/decode comparison")
    ap.add_argument("--encoders", default=None, help="comma list (default: all 4 stand-ins)")
    ap.add_argument("--out", default=None, help="keep sweep outputs here (default: temp dir)")
    a = ap.parse_args()
    import pandas as pd

    n, d, nt = (3000, 256, 500) if a.quick else (16_200, 1024, 5_400)
    print(f"# geoemb compression benchmark ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, numpy {np.__version__})")  # fmt: skip
    if not a.no_ops:
        print(f"\n## encode/decode: N={n} x D={d} float32 (ratio = reference / geoemb)\n")
        df = pd.DataFrame(bench_ops(n, d, nt))
        with pd.option_context("display.width", 140, "display.float_format", "{:.4f}".format):
            print(df.to_string(index=False), flush=True)
    if a.no_sweep:
        return
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="geoemb_compression_bench_"))
    secs, t_gen, n_jobs, res = bench_sweep(a.quick, a.linear, out, a.encoders)
    probes = (
        "kNN + Hamming kNN + linear (C by 3-fold CV)"
        if a.linear
        else "kNN + Hamming kNN (no linear)"
    )
    print(f"\n## sweep: {n_jobs} (encoder, config) pairs, {probes}, McNemar + bootstrap(9999), "
          f"Parquet sizes, spectra + ID: {secs:.1f} s ({secs / n_jobs:.2f} s/pair); "
          f"synthetic generation {t_gen:.1f} s; outputs {res}")  # fmt: skip
    r = pd.read_csv(res / "results.csv")
    cols = [
        "encoder",
        "config",
        "bytes_payload",
        "bytes_parquet_zstd",
        "knn_acc",
        "hamming_knn_acc",
        "knn_mcnemar_p",
        "total_s",
    ]
    cols = [c for c in cols if c in r]
    with pd.option_context(
        "display.width", 160, "display.max_rows", 200, "display.float_format", "{:.4f}".format
    ):
        print(r[cols].to_string(index=False))
    print((res / "tables" / "quantization_knn.md").read_text())


if __name__ == "__main__":
    main()
