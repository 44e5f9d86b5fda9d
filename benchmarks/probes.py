"""Probe benchmark: geoemb torch probes vs the sklearn anchors GeoPool uses.

* kNN: ``KNeighborsClassifier(5, metric="cosine", algorithm="brute", n_jobs=-1)`` vs
  ``geoemb.probes.knn_classify`` (target >= 3x faster, identical predictions).
* linear: ``StandardScaler`` + ``LogisticRegressionCV(Cs=[1e-3..100], cv=3, lbfgs,
  max_iter=1000)`` (GeoPool commit ea8575a2, ``n_jobs=-1``; also timed with ``n_jobs=1``, which
  is faster on a small or loaded 2-core box) vs ``geoemb.probes.linear_probe``: target >= 1x the
  faster of the two at every size (a 1000x64 row and the main size), accuracy within 0.5 pp,
  same C. One warm-up call loads geoemb's numba kernel before timing.

Features are synthetic pooled vectors with EuroSAT's shape: 10 classes, N_train=16,200 /
N_test=5,400 (random split sizes) can be run with --n-train 16200 --n-test 5400; the default is half that (8,000 / 2,700) so that the sklearn anchor finishes in minutes on 2 cores, F=256 (``stats`` pooling of AEF, D=64).

Usage::

    python benchmarks/probes.py [--quick] [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from geoemb.probes import DEFAULT_CS, knn_classify, linear_probe


def make_features(n_train: int, n_test: int, f: int, k: int, seed: int = 0):
    """Gaussian classes in a low-dim subspace + anisotropic noise + offset (like pooled codes)."""
    rng = np.random.default_rng(seed)
    sub = rng.normal(size=(16, f))
    centers = rng.normal(size=(k, 16)) @ sub * 0.12
    n = n_train + n_test
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(size=(n, f)) * rng.uniform(0.5, 2.0, f) + 127.0
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _sk_linear(xtr, ytr, xte, n_jobs: int):
    sc = StandardScaler().fit(xtr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegressionCV(
            Cs=list(DEFAULT_CS),
            cv=3,
            max_iter=1000,
            solver="lbfgs",
            n_jobs=n_jobs,
            random_state=42,
            refit=True,
            use_legacy_attributes=False,
            l1_ratios=(0,),
            scoring="accuracy",
        ).fit(sc.transform(xtr), ytr)
    return lr.predict(sc.transform(xte)), lr


def bench_linear(n_train: int, n_test: int, f: int, k: int, dev: torch.device) -> dict:
    """sklearn ``LogisticRegressionCV`` (GeoPool's ``n_jobs=-1`` and ``n_jobs=1``) vs geoemb."""
    xtr, ytr, xte, yte = make_features(n_train, n_test, f, k)
    t0 = time.perf_counter()
    sk_pred, lr = _sk_linear(xtr, ytr, xte, -1)
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk_pred1, lr1 = _sk_linear(xtr, ytr, xte, 1)
    t_one = time.perf_counter() - t0
    xtr_t, ytr_t, xte_t = (torch.from_numpy(a).to(dev) for a in (xtr, ytr, xte))
    _sync(dev)
    t0 = time.perf_counter()
    res = linear_probe(xtr_t, ytr_t, xte_t)
    _sync(dev)
    t_geo = time.perf_counter() - t0
    pred = res.preds.cpu().numpy()
    coef_diff = float(np.abs(res.coef.cpu().double().numpy() - lr1.coef_).max())
    print(
        f"linear {n_train}x{f}: C sklearn {float(np.ravel(lr.C_)[0])} / geoemb {res.C}; "
        f"identical test predictions {int((pred == sk_pred1).sum())}/{len(yte)}; "
        f"max |coef - sklearn coef| {coef_diff:.2e}"
    )
    return {
        "name": f"{n_train}x{f}",
        "sk_all": t_all,
        "sk_one": t_one,
        "geo": t_geo,
        "acc_sk": accuracy_score(yte, sk_pred),
        "acc_geo": accuracy_score(yte, pred),
        "C_sk": float(np.ravel(lr.C_)[0]),
        "C_geo": res.C,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-train", type=int, default=8_000)
    ap.add_argument("--n-test", type=int, default=2_700)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch + BLAS threads")
    ap.add_argument("--skip-linear", action="store_true")
    ap.add_argument("--no-small", action="store_true", help="skip the 1000x64 linear row")
    ap.add_argument("--quick", action="store_true", help="N_train=3000, N_test=1000")
    args = ap.parse_args()
    if args.quick:
        args.n_train, args.n_test = 3000, 1000
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    dev = torch.device(args.device)
    xtr, ytr, xte, yte = make_features(args.n_train, args.n_test, args.features, args.classes)
    print(
        f"N_train={args.n_train} N_test={args.n_test} F={args.features} classes={args.classes} "
        f"device={dev} torch threads={torch.get_num_threads()}"
    )
    rows = []

    # kNN ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sk = KNeighborsClassifier(5, metric="cosine", algorithm="brute", n_jobs=-1).fit(xtr, ytr)
    sk_pred = sk.predict(xte)
    t_sk = time.perf_counter() - t0
    xtr_t, ytr_t, xte_t = (torch.from_numpy(a).to(dev) for a in (xtr, ytr, xte))
    knn_classify(xtr_t[:100], ytr_t[:100], xte_t[:10])  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    pred = knn_classify(xtr_t, ytr_t, xte_t, k=5)
    _sync(dev)
    t_geo = time.perf_counter() - t0
    pred = pred.cpu().numpy()
    same = int((pred == sk_pred).sum())
    rows.append(
        ("kNN k=5 cosine", t_sk, t_geo, accuracy_score(yte, sk_pred), accuracy_score(yte, pred))
    )
    sk1 = KNeighborsClassifier(5, metric="cosine", algorithm="brute", n_jobs=1).fit(xtr, ytr)
    same1 = int((pred == sk1.predict(xte)).sum())
    print(
        f"kNN identical predictions: {same1}/{len(yte)} vs sklearn n_jobs=1, {same}/{len(yte)} "
        f"vs sklearn n_jobs=-1 (timed; its column-split GEMM rounds some exact float32 ties "
        f"differently from its own n_jobs=1 result)"
    )

    # linear ----------------------------------------------------------------------------------
    lin_rows = []
    if not args.skip_linear:
        # warm-up: the CPU solver's numba kernel loads from its on-disk cache on first use (a
        # one-off per process, like sklearn's imports above); the timed calls start warm
        linear_probe(xtr_t[:60], ytr_t[:60], xte_t[:5], Cs=(1.0,))
        sizes = [(args.n_train, args.n_test, args.features)]
        if not args.no_small:
            sizes.insert(0, (1000, 300, 64))
        for n_tr, n_te, f in sizes:
            lin_rows.append(bench_linear(n_tr, n_te, f, args.classes, dev))

    print(
        f"\n{'probe':<26}{'sklearn s':>10}{'geoemb s':>10}{'speed-up':>10}{'time ratio':>11}"
        f"{'acc sk':>8}{'acc geo':>9}{'d pp':>7}"
    )
    for name, ts, tg, a_s, a_g in rows:
        print(
            f"{name:<26}{ts:>10.2f}{tg:>10.2f}{ts / tg:>9.1f}x{tg / ts:>11.2f}"
            f"{100 * a_s:>8.2f}{100 * a_g:>9.2f}{100 * (a_g - a_s):>7.2f}"
        )
    if lin_rows:
        print(
            f"\n{'linear (3-fold CV, 6 Cs)':<26}{'sk -1 s':>9}{'sk 1 s':>9}{'geoemb s':>10}"
            f"{'vs best sk':>11}{'acc sk':>8}{'acc geo':>9}{'d pp':>7}{'C sk/geo':>14}"
        )
        for r in lin_rows:
            best = min(r["sk_all"], r["sk_one"])
            print(
                f"{r['name']:<26}{r['sk_all']:>9.2f}{r['sk_one']:>9.2f}{r['geo']:>10.2f}"
                f"{best / r['geo']:>10.2f}x{100 * r['acc_sk']:>8.2f}{100 * r['acc_geo']:>9.2f}"
                f"{100 * (r['acc_geo'] - r['acc_sk']):>7.2f}{r['C_sk']:>8g}/{r['C_geo']:g}"
            )


if __name__ == "__main__":
    main()
