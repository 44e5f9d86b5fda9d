"""Pooling benchmark: geoemb batched torch pooling vs the per-method numpy reference.

Both sides pool the same N patches of 64x64xD (D in {64, 128}) with all 13 GeoPool methods.
The numpy side is what GeoPool users run today: per-method numpy over an (N, H, W, D) array
(processed in chunks of ``--ref-chunk`` patches to bound memory), with covariance and BoVW
looping per sample (np.cov / nearest-centroid predict per patch).  The geoemb side calls
``geoemb.pooling.pool`` per method, and ``pool_many`` for "all 13 together" (shared statistics).
The time of one read of the data (``x.sum()``) is printed as the memory-bandwidth floor.

Parametric states are fitted once (untimed) by geoemb and reused by both sides so that only the
pooling is compared; ``--fit`` also times the fits (sklearn IncrementalPCA + MiniBatchKMeans
partial_fit pass vs geoemb).

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/pooling.py   # N=512 per D, CPU
    python benchmarks/pooling.py --quick    # N=64, one run
    python benchmarks/pooling.py --device cuda --n 4000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from geoemb.pooling import ALL_METHODS, fit_parametric, output_dim, pool, pool_many


# ---------------------------------------------------------------------------------------------
# numpy reference (per method, (N, H, W, D) layout)
# ---------------------------------------------------------------------------------------------
def _np_weights(h: int, w: int) -> np.ndarray:
    sigma = min(h, w) / 4.0
    yy, xx = np.mgrid[0:h, 0:w]
    wt = np.exp(-((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (2 * sigma**2))
    return wt / wt.sum()


def ref_pool(x: np.ndarray, method: str, pca=None, centroids=None) -> np.ndarray:
    """x (n, H, W, D) float32 -> (n, F) float32, GeoPool numpy style."""
    n, h, w, d = x.shape
    if method == "mean":
        out = x.mean(axis=(1, 2))
    elif method == "max":
        out = x.max(axis=(1, 2))
    elif method == "std":
        out = x.std(axis=(1, 2))
    elif method == "gem":
        m = np.mean(np.sign(x) * np.abs(x) ** 3, axis=(1, 2))
        out = np.sign(m) * np.abs(m) ** (1.0 / 3.0)
    elif method == "center_weighted_mean":
        out = np.einsum("hw,nhwd->nd", _np_weights(h, w), x)  # geopool's call
    elif method == "mean_std":
        out = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], -1)
    elif method == "mean_max":
        out = np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], -1)
    elif method == "median_iqr":
        med = np.median(x, axis=(1, 2))
        q25, q75 = np.percentile(x, [25, 75], axis=(1, 2))
        out = np.concatenate([med, q75 - q25], -1)
    elif method == "stats":
        out = np.concatenate(
            [x.min(axis=(1, 2)), x.max(axis=(1, 2)), x.mean(axis=(1, 2)), x.std(axis=(1, 2))], -1
        )
    elif method == "percentiles":
        p = np.percentile(x, (10, 25, 50, 75, 90), axis=(1, 2))  # (5, n, D)
        out = np.moveaxis(p, 0, 1).reshape(n, 5 * d)
    elif method == "flattened_cov":
        iu = np.triu_indices(d)
        out = np.stack([np.cov(xi.reshape(-1, d), rowvar=False)[iu] for xi in x])
    elif method == "pca_64":
        mean_, comps = pca
        out = (x.mean(axis=(1, 2)) - mean_) @ comps.T
    elif method == "bovw_128":
        c = centroids
        cc = (c * c).sum(1)
        k = c.shape[0]
        rows = []
        for xi in x:  # per sample, as the reference's kmeans.predict loop
            p = xi.reshape(-1, d)
            lab = np.argmin(cc[None, :] - 2.0 * p @ c.T, axis=1)
            cnt = np.bincount(lab, minlength=k)
            rows.append(cnt / max(cnt.sum(), 1))
        out = np.stack(rows)
    else:
        raise KeyError(method)
    return out.astype(np.float32)


def bovw_label_check(xn: np.ndarray, centroids: np.ndarray, n_check: int) -> str:
    """Per-pixel labels of the first ``n_check`` patches: numpy reference (float32 GEMM + argmin,
    as ``kmeans.predict``), sklearn ``KMeans.predict`` (float32), geoemb, and the float64 answer."""
    from sklearn.cluster import KMeans

    from geoemb.pooling.parametric import assign

    d = xn.shape[-1]
    pix = np.ascontiguousarray(xn[:n_check].reshape(-1, d))
    c = centroids.astype(np.float32)
    ref = np.argmin((c * c).sum(1)[None, :] - 2.0 * pix @ c.T, axis=1)
    km = KMeans(n_clusters=len(c))
    km.cluster_centers_, km._n_threads, km.n_features_in_ = c, 1, d
    sk = km.predict(pix)
    geo = assign(torch.from_numpy(pix), torch.from_numpy(c)).numpy()
    c64, p64 = c.astype(np.float64), pix.astype(np.float64)
    ex = np.argmin((c64 * c64).sum(1)[None, :] - 2.0 * p64 @ c64.T, axis=1)
    return (
        f"bovw labels on {len(pix)} pixels: geoemb != float64 argmin at {(geo != ex).sum()}; "
        f"numpy ref != float64 at {(ref != ex).sum()}, sklearn predict (float32) != float64 at "
        f"{(sk != ex).sum()}; geoemb != numpy ref at {(geo != ref).sum()}, != sklearn at "
        f"{(geo != sk).sum()}"
    )


def ref_pool_chunked(xn: np.ndarray, method: str, chunk: int, **kw) -> np.ndarray:
    return np.concatenate(
        [ref_pool(xn[s : s + chunk], method, **kw) for s in range(0, len(xn), chunk)]
    )


# ---------------------------------------------------------------------------------------------
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, dev: torch.device | None = None, repeat: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls (device synchronised) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        if dev is not None:
            _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        if dev is not None:
            _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def timeit_pair(fn_a, fn_b, dev: torch.device, repeat: int) -> tuple[float, object, float, object]:
    """Median times of two callables run alternately ``repeat`` times (load drifts hit both)."""
    ta, tb, out_a, out_b = [], [], None, None
    for _ in range(repeat):
        t, out_a = timeit(fn_a, None, 1)
        ta.append(t)
        t, out_b = timeit(fn_b, dev, 1)
        tb.append(t)
    return statistics.median(ta), out_a, statistics.median(tb), out_b


def run_dim(args, d: int, dev: torch.device) -> list[tuple[str, float, float]]:
    n, h, w = args.n, args.size, args.size
    gen = torch.Generator().manual_seed(d)
    # AEF-like values: offset integer codes (0..254); the pooling cost does not depend on them
    x_cpu = torch.clamp(torch.round(127 + 40 * torch.randn(n, d, h, w, generator=gen)), 0, 254)
    xn = np.ascontiguousarray(x_cpu.permute(0, 2, 3, 1).numpy())  # (N, H, W, D) reference layout
    x = x_cpu.to(dev)
    n_fit = min(n, 256)
    states = {
        "pca_64": fit_parametric("pca_64", x[:n_fit]),
        "bovw_128": fit_parametric("bovw_128", x[:n_fit], seed=42),
    }
    pca_np = (states["pca_64"].mean.cpu().numpy(), states["pca_64"].components.cpu().numpy())
    cen_np = states["bovw_128"].centroids.cpu().numpy()

    print(
        f"\n## D={d}: N={n} patches of {h}x{w}x{d} float32 ({x.numel() * 4 / 2**30:.2f} GiB), "
        f"device={dev}, torch threads={torch.get_num_threads()}"
    )
    pool_many(x[:2], ALL_METHODS, states=states)  # warm-up (JIT caches, allocator)
    t_floor, _ = timeit(lambda: x.sum(), dev, args.repeat)
    rows = []
    print(
        f"{'method':<22}{'dim':>7}{'numpy ref s':>13}{'geoemb s':>11}{'ratio':>9}{'max rel err':>13}"
    )
    tot_ref = tot_geo = 0.0
    for m in ALL_METHODS:
        t_ref, ref, t_geo, got = timeit_pair(
            lambda m=m: ref_pool_chunked(xn, m, args.ref_chunk, pca=pca_np, centroids=cen_np),
            lambda m=m: pool(x, m, state=states.get(m)),
            dev,
            args.repeat,
        )
        got = got.cpu().numpy()
        assert got.shape == ref.shape == (n, output_dim(m, d)), (m, got.shape, ref.shape)
        err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
        tot_ref += t_ref
        tot_geo += t_geo
        rows.append((m, t_ref, t_geo))
        print(
            f"{m:<22}{output_dim(m, d):>7}{t_ref:>13.3f}{t_geo:>11.3f}{t_ref / t_geo:>8.1f}x"
            f"{err:>13.1e}"
        )
    t_all, _ = timeit(lambda: pool_many(x, ALL_METHODS, states=states), dev, max(args.repeat, 3))
    print(
        f"{'sum of 13 (per method)':<29}{tot_ref:>13.3f}{tot_geo:>11.3f}{tot_ref / tot_geo:>8.1f}x"
    )
    print(
        f"{'all 13 together (pool_many)':<29}{tot_ref:>13.3f}{t_all:>11.3f}{tot_ref / t_all:>8.1f}x"
    )
    print(
        f"{'one read of x (x.sum())':<29}{'':>13}{t_floor:>11.3f}   "
        f"(all-13 = {t_all / t_floor:.0f} reads)"
    )
    rows.append(("ALL13_together", tot_ref, t_all))
    if "bovw_128" in ALL_METHODS:
        print(bovw_label_check(xn, cen_np, min(n, args.check)))

    if args.fit:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.decomposition import IncrementalPCA

        def sk_fit():
            means = xn[:n_fit].mean(axis=(1, 2))
            IncrementalPCA(n_components=64, batch_size=512).fit(means)
            km = MiniBatchKMeans(n_clusters=128, random_state=42, batch_size=10_000, n_init="auto")
            rng = np.random.default_rng(42)
            for s in range(0, n_fit, 256):
                g = xn[s : s + 256].reshape(-1, d)
                g = g[rng.permutation(len(g))]
                for c in range(0, len(g), 10_000):
                    km.partial_fit(g[c : c + 10_000])

        def geo_fit():
            fit_parametric("pca_64", x[:n_fit])
            fit_parametric("bovw_128", x[:n_fit], seed=42)

        t_sk, _ = timeit(sk_fit, None, 1)
        t_gf, _ = timeit(geo_fit, dev, 1)
        print(
            f"fit pca_64+bovw_128 on {n_fit} patches: sklearn {t_sk:.2f}s, geoemb {t_gf:.2f}s "
            f"({t_sk / t_gf:.1f}x)"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="patches per D")
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--size", type=int, default=64, help="patch height = width")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--repeat", type=int, default=3, help="median of R alternating runs per side and method"
    )
    ap.add_argument("--ref-chunk", type=int, default=128, help="patches per numpy call")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch + numpy/BLAS threads (default 1: both sides)"
    )
    ap.add_argument("--fit", action="store_true", help="also time the parametric fits")
    ap.add_argument(
        "--check", type=int, default=32, help="patches whose BoVW labels are checked per pixel"
    )
    ap.add_argument("--quick", action="store_true", help="N=64")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeat = 64, 1
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:  # pragma: no cover
            pass
    print(
        f"threads: torch {torch.get_num_threads()}, BLAS/OpenMP limited to {args.threads} "
        f"(threadpoolctl; env OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}); median of "
        f"{args.repeat} alternating runs per side"
    )
    dev = torch.device(args.device)
    summary = []
    for d in args.dims:
        summary += [(d, *r) for r in run_dim(args, d, dev)]
    print("\n## summary: all 13 together, numpy reference / geoemb")
    for d, m, tr, tg in summary:
        if m == "ALL13_together":
            print(f"D={d}: {tr:.2f}s / {tg:.2f}s = {tr / tg:.1f}x")


if __name__ == "__main__":
    main()
