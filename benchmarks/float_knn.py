"""Exact float kNN on CPU: geoemb ``float_torch`` vs FAISS ``IndexFlatIP`` / ``IndexFlatL2``.

Same process, same float32 arrays, best of ``--repeats`` runs each; ``ratio`` = geoemb QPS /
FAISS QPS for the same metric (cosine: both on L2-normalised vectors). ``same ids`` counts query
rows whose k ids equal FAISS's (ties in float32 can legitimately order differently; geoemb breaks
them by smaller id). Threads: torch, numba and BLAS/FAISS OpenMP all get ``--threads``.

Usage::

    python benchmarks/float_knn.py [--quick] [--n 50000] [--nq 1000] [--dim 1024] [--k 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="N=20,000, 200 queries, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.n, args.nq, args.repeats = 20_000, 200, 1
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faiss
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    from geoemb.retrieval.search import build_index

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    q = rng.standard_normal((args.nq, args.dim), dtype=np.float32)

    def best(fn, *a):
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn(*a)
            ts.append(time.perf_counter() - t0)
        return min(ts), out

    print(f"N={args.n} nq={args.nq} D={args.dim} k={args.k} threads={args.threads} "
          f"load={os.getloadavg()[0]:.1f}")  # fmt: skip
    rows = []
    for metric in ("cosine", "l2"):
        if metric == "cosine":
            xf = x / np.linalg.norm(x, axis=1, keepdims=True)
            qf = q / np.linalg.norm(q, axis=1, keepdims=True)
            fi = faiss.IndexFlatIP(args.dim)
        else:
            xf, qf = x, q
            fi = faiss.IndexFlatL2(args.dim)
        fi.add(xf)
        fi.search(qf[:8], args.k)
        t_f, (fd, fidx) = best(fi.search, qf, args.k)
        for name in ("float_torch", "float_faiss"):
            idx = build_index(name, x, metric=metric)
            idx.search(q[:8], args.k)  # warm-up (numba kernels load from their cache)
            t_g, (gd, gi) = best(idx.search, q, args.k)
            same = int((gi == fidx).all(1).sum())
            rows.append((metric, name, args.nq / t_f, args.nq / t_g, t_f / t_g, same))
    # the floor both sides share: the float32 GEMM alone, in geoemb's CPU block size
    from geoemb.retrieval.search import FloatTorchIndex

    step = FloatTorchIndex.cpu_block

    def gemm_only(qq):
        for s in range(0, args.n, step):
            qq @ x[s : s + step].T

    t_gemm, _ = best(gemm_only, q)
    print(f"GEMM alone (numpy BLAS, blocks of {step}): {args.nq / t_gemm:.1f} QPS")
    print(f"\n{'metric':<8}{'geoemb backend':<16}{'faiss QPS':>11}{'geoemb QPS':>12}{'ratio':>8}"
          f"{'same ids':>10}")  # fmt: skip
    for metric, name, qf_, qg, r, same in rows:
        print(f"{metric:<8}{name:<16}{qf_:>11.1f}{qg:>12.1f}{r:>8.2f}{same:>7}/{args.nq}")


if __name__ == "__main__":
    main()
