"""Retrieval benchmark: geoemb search kernels vs FAISS / torch.cdist anchors, recall@10 per method.

Same process, same data: ``dim``-bit sign codes of a synthetic low-ID corpus (N rows), ``nq``
held-in queries (excluded from their own results), k=10.

    python benchmarks/retrieval.py                 # N=200k, 1k queries, 1024-d
    python benchmarks/retrieval.py --quick         # N=20k, 200 queries
    python benchmarks/retrieval.py --device cuda   # torch backends on the GPU
    python benchmarks/retrieval.py --ann --n 1000000   # ANN recall@10-QPS curves vs exact Hamming

Anchors: FAISS ``IndexBinaryFlat`` (raw ``index.search``), FAISS ``IndexFlatIP``, ``torch.cdist``
+ ``topk`` (TerraBit's GPU harness). Ratios are geoemb QPS / anchor QPS.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import faiss
import numpy as np
import pandas as pd
import torch

from geoemb.compression.bitpack import pack_bits
from geoemb.reporting.tables import to_markdown
from geoemb.retrieval import build_index, measure_qps, recall_at_k
from geoemb.retrieval.study import recall_table
from geoemb.synthetic.retrieval_corpus import make_embeddings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--nq", type=int, default=None)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--slow-queries", type=int, default=64,
                    help="queries used for the slow CPU torch kernels (SWAR, GEMM)")  # fmt: skip
    ap.add_argument("--methods", default="binary,binary_rerank,binary_rerank_int8,int8,int4,"
                    "rotate_affine_int4,turboquant_mse_4")  # fmt: skip
    ap.add_argument(
        "--ann",
        action="store_true",
        help="ANN curves: binary_ivf / binary_hnsw / float_ivfpq vs the exact scan",
    )
    ap.add_argument(
        "--hnsw-n",
        type=int,
        default=None,
        help="--ann: rows for binary_hnsw (its build is slow; default --n; 0 skips it)",
    )
    ap.add_argument("--no-float", action="store_true", help="--ann: skip float_ivfpq")
    ap.add_argument(
        "--float-n",
        type=int,
        default=200_000,
        help="--ann: rows for float_ivfpq vs exact float (default 200k: memory)",
    )
    a = ap.parse_args()
    if a.ann:
        ann_main(a)
        return
    n = a.n or (20_000 if a.quick else 200_000)
    nq = a.nq or (200 if a.quick else 1000)
    dev = torch.device(a.device)
    print(f"# retrieval benchmark: N={n}, nq={nq}, dim={a.dim} bits, k={a.k}, device={dev}")
    print(f"# CPU: {platform.processor() or platform.machine()}, os.cpu_count={os.cpu_count()}, "
          f"torch threads={torch.get_num_threads()}, faiss threads={faiss.omp_get_max_threads()}, "
          f"load avg={os.getloadavg()}")  # fmt: skip
    t0 = time.perf_counter()
    x, _, _ = make_embeddings(n, a.dim, seed=0)
    rng = np.random.default_rng(1)
    qids = np.sort(rng.choice(n, nq, replace=False))
    q = x[qids]
    codes, qcodes = pack_bits(x > 0), pack_bits(q > 0)
    print(f"# data generated in {time.perf_counter() - t0:.1f}s")

    rows = []

    def time_it(label, fn, queries, anchor=None, group="", **kw):
        t = measure_qps(fn, queries, a.k, **kw)
        rows.append({"group": group, "method": label, "nq": len(queries), "QPS": t.qps,
                     "anchor": anchor or ""})  # fmt: skip
        print(f"{group:8s} {label:34s} nq={len(queries):5d} QPS={t.qps:10.1f}", flush=True)
        return t

    # ---- Hamming: FAISS anchor vs geoemb kernels
    fb = faiss.IndexBinaryFlat(a.dim)
    fb.add(codes)
    ref = time_it("faiss IndexBinaryFlat", fb.search, qcodes, group="hamming")
    for name in ("hamming_numba", "hamming_faiss", "hamming_numpy"):
        idx = build_index(name, codes, dim=a.dim)
        t = time_it(f"geoemb {name}", idx.search, qcodes, "faiss IndexBinaryFlat", "hamming")
        assert np.array_equal(np.asarray(t.result[0])[:, -1], ref.result[0][:, -1]), name
    ns = min(a.slow_queries, nq) if dev.type == "cpu" else nq
    for name in ("hamming_torch", "hamming_gemm"):
        idx = build_index(name, torch.from_numpy(codes).to(dev), dim=a.dim)
        time_it(f"geoemb {name} ({dev.type})", idx.search, torch.from_numpy(qcodes[:ns]).to(dev),
                "faiss IndexBinaryFlat", "hamming")  # fmt: skip

    # ---- float exact: FAISS IndexFlatIP and torch.cdist anchors vs geoemb
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    fi = faiss.IndexFlatIP(a.dim)
    fi.add(xn)
    time_it("faiss IndexFlatIP", fi.search, qn, group="float")
    xt = torch.from_numpy(x).to(dev)
    qt = torch.from_numpy(q).to(dev)

    def cdist_topk(qb, k):  # TerraBit's GPU harness: cdist + topk, query batches of 256
        out = [
            torch.topk(torch.cdist(qb[s : s + 256], xt), k, largest=False)
            for s in range(0, len(qb), 256)
        ]
        return torch.cat([o.values for o in out]), torch.cat([o.indices for o in out])

    time_it(f"torch.cdist+topk ({dev.type})", cdist_topk, qt, group="float")
    for label, name, metric in (("float_torch cosine", "float_torch", "cosine"),
                                ("float_torch l2", "float_torch", "l2"),
                                ("float_cdist l2", "float_cdist", "l2"),
                                ("float_faiss cosine", "float_faiss", "cosine")):  # fmt: skip
        idx = build_index(name, xt if name != "float_faiss" else x, metric=metric)
        time_it(f"geoemb {label}", idx.search, qt if name != "float_faiss" else q,
                "faiss IndexFlatIP / torch.cdist", "float")  # fmt: skip
    rr = build_index("binary_rerank", codes, rerank_vectors=x, dim=a.dim, metric="cosine", m=10)
    time_it("geoemb binary_rerank (m=10, float)", rr.search, q, "hamming_numba", "rerank")

    qps = pd.DataFrame(rows)
    anchors = {r["method"]: r["QPS"] for r in rows if not r["anchor"]}

    def ratio(r):
        if r["group"] == "hamming":
            return r["QPS"] / anchors["faiss IndexBinaryFlat"]
        if r["group"] == "float":
            return r["QPS"] / anchors["faiss IndexFlatIP"] if r["anchor"] else float("nan")
        if r["group"] == "rerank":
            return r["QPS"] / qps.loc[qps.method == "geoemb hamming_numba", "QPS"].iloc[0]
        return float("nan")

    qps["ratio"] = qps.apply(ratio, axis=1)
    cd = anchors.get(f"torch.cdist+topk ({dev.type})")
    qps["ratio_vs_cdist"] = [r["QPS"] / cd if r["group"] == "float" else float("nan") for r in rows]
    print("\n## QPS (ratio: hamming vs faiss IndexBinaryFlat; float vs faiss IndexFlatIP; "
          "rerank vs binary-only hamming_numba)\n")  # fmt: skip
    print(to_markdown(qps, floatfmt=".2f"))

    # ---- recall@10 vs exact float32 GT (cosine and L2), queries excluded
    t0 = time.perf_counter()
    rec = recall_table(x, qids, a.methods.split(","), ks=(1, 10, 100), device=a.device)
    cols = [c for c in ("method", "metric", "bytes/vec", "recall@1", "recall@10", "recall@100",
                        "tie_recall@10", "QPS", "error") if c in rec.columns]  # fmt: skip
    print(f"\n## recall vs exact float32 GT (computed in {time.perf_counter() - t0:.0f}s)\n")
    print(to_markdown(rec[cols], floatfmt=".3f"))


def _codes_corpus(n: int, nq: int, dim: int, keep_float: bool):
    """``n`` database + ``nq`` held-out rows, in chunks of 1M (seed = chunk index) as sign codes."""
    codes, xs = [], []
    for c, s in enumerate(range(0, n + nq, 1_000_000)):
        m = min(1_000_000, n + nq - s)
        x, _, _ = make_embeddings(m, dim, seed=c)
        codes.append(pack_bits(x > 0))
        if keep_float:
            xs.append(x)
        del x
    codes = np.concatenate(codes)
    rng = np.random.default_rng(1)
    qpos = np.sort(rng.choice(n + nq, nq, replace=False))
    keep = np.ones(n + nq, bool)
    keep[qpos] = False
    xf = np.concatenate(xs) if keep_float else None
    return (codes[keep], codes[qpos], None if xf is None else xf[keep],
            None if xf is None else xf[qpos])  # fmt: skip


def ann_main(a) -> None:
    """Recall@10-QPS curves of the ANN backends vs the exact Hamming scan (same queries)."""
    n = a.n or 1_000_000
    nq = a.nq or 200
    k = a.k
    print(f"# ANN benchmark: N={n}, nq={nq} held-out queries, dim={a.dim} bits, k={k}")
    print(f"# CPU: {platform.processor() or platform.machine()}, os.cpu_count={os.cpu_count()}, "
          f"faiss threads={faiss.omp_get_max_threads()}, load avg={os.getloadavg()}")  # fmt: skip
    t0 = time.perf_counter()
    codes, qcodes, x, q = _codes_corpus(n, nq, a.dim, keep_float=not a.no_float)
    print(f"# data generated in {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []

    def record(backend, param, build_s, t, d_ex, i_ex, exact_qps, hamming=True):
        i = np.asarray(t.result[1])
        rec = recall_at_k(i_ex, i, k)
        tie = (float((np.asarray(t.result[0])[:, :k] <= d_ex[:, k - 1 : k]).mean())
               if hamming else float("nan"))  # fmt: skip
        rows.append({"backend": backend, "param": param, "build_s": build_s, "QPS": t.qps,
                     "speedup": t.qps / exact_qps, "recall@10": rec, "tie_recall@10": tie})  # fmt: skip
        print(f"{backend:12s} {param:16s} QPS={t.qps:9.1f} x{t.qps / exact_qps:6.1f} "
              f"recall@10={rec:.4f} tie={tie:.4f}", flush=True)  # fmt: skip

    exact = {}
    for name in ("hamming_numba", "hamming_faiss"):
        t1 = time.perf_counter()
        idx = build_index(name, codes, dim=a.dim)
        b = time.perf_counter() - t1
        exact[name] = measure_qps(idx.search, qcodes, k, repeats=2)
        rows.append({"backend": name, "param": "exact", "build_s": b, "QPS": exact[name].qps,
                     "speedup": 1.0, "recall@10": 1.0, "tie_recall@10": 1.0})  # fmt: skip
        print(f"{name:12s} exact QPS={exact[name].qps:.1f}", flush=True)
        del idx
    base = max(exact.values(), key=lambda t: t.qps)
    d_ex, i_ex = (np.asarray(v) for v in base.result)
    assert np.array_equal(exact["hamming_numba"].result[0], exact["hamming_faiss"].result[0])

    t1 = time.perf_counter()
    ivf = build_index("binary_ivf", codes, dim=a.dim)
    b = time.perf_counter() - t1
    print(f"# binary_ivf: nlist={ivf.nlist}, train_size={ivf.train_size}, build {b:.1f}s")
    for p in (1, 2, 4, 8, 16, 32, 64, 128):
        ivf.set_search_params(nprobe=p)
        record("binary_ivf", f"nprobe={p}", b, measure_qps(ivf.search, qcodes, k, repeats=3), d_ex, i_ex,
               base.qps)  # fmt: skip
    del ivf
    nh = n if a.hnsw_n is None else min(n, a.hnsw_n)
    d_h, i_h, qps_h = d_ex, i_ex, base.qps
    if 0 < nh < n:  # the exact baseline of the subset
        t = measure_qps(build_index("hamming_numba", codes[:nh], dim=a.dim).search, qcodes, k)
        d_h, i_h, qps_h = (*(np.asarray(v) for v in t.result), t.qps)
        rows.append(
            {
                "backend": "hamming_numba",
                "param": f"exact N={nh}",
                "build_s": 0.0,
                "QPS": t.qps,
                "speedup": 1.0,
                "recall@10": 1.0,
                "tie_recall@10": 1.0,
            }
        )
    if nh:
        t1 = time.perf_counter()
        hnsw = build_index("binary_hnsw", codes[:nh], dim=a.dim, M=16, ef_construction=40)
        b = time.perf_counter() - t1
        print(f"# binary_hnsw: N={nh}, M=16, ef_construction=40, build {b:.1f}s", flush=True)
        for ef in (16, 32, 64, 128, 256):
            hnsw.set_search_params(ef_search=ef)
            record("binary_hnsw", f"ef={ef} N={nh}", b, measure_qps(hnsw.search, qcodes, k, repeats=3),
                   d_h, i_h, qps_h)  # fmt: skip
        del hnsw
    if x is not None:
        nf = min(n, a.float_n)
        x = x[:nf]
        fi = faiss.IndexFlatIP(a.dim)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        fi.add(xn)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        t = measure_qps(fi.search, qn, k)
        d_f, i_f = t.result
        rows.append(
            {
                "backend": "faiss IndexFlatIP",
                "param": f"exact cosine N={nf}",
                "build_s": 0.0,
                "QPS": t.qps,
                "speedup": 1.0,
                "recall@10": 1.0,
                "tie_recall@10": 1.0,
            }
        )
        print(f"float exact cosine QPS={t.qps:.1f}", flush=True)
        del fi, xn
        t1 = time.perf_counter()
        pq_idx = build_index("float_ivfpq", x, metric="cosine", m=64, nbits=8)
        b = time.perf_counter() - t1
        print(f"# float_ivfpq: nlist={pq_idx.nlist}, m=64, nbits=8, build {b:.1f}s", flush=True)
        for p in (1, 4, 16, 64):
            pq_idx.set_search_params(nprobe=p)
            record("float_ivfpq", f"nprobe={p} N={nf}", b, measure_qps(pq_idx.search, q, k, repeats=3), d_f, i_f,
                   t.qps, hamming=False)  # fmt: skip
    print(
        "\n## ANN recall@10 vs QPS (speedup vs the faster exact scan of the same rows; "
        "float_ivfpq: recall vs exact float cosine, speedup vs IndexFlatIP)\n"
    )
    print(to_markdown(pd.DataFrame(rows), floatfmt=".3f"))


if __name__ == "__main__":
    main()
