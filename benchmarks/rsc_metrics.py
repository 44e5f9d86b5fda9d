"""Benchmark: geoemb RSC DWR + distance curve vs the reference per-patch path.

Reference path (``notebooks/eval_over_distance.ipynb``): per patch, an L1 distance transform of
``mask != 1`` (``cv2.distanceTransform(..., DIST_L1, 3)``; here the identical
``scipy.ndimage.distance_transform_cdt(metric="taxicab")`` since OpenCV is not a dependency), TC
distances and predictions concatenated over patches, ``d < 8192`` filter, ``sklearn`` weighted
recall, 19 log bins with numpy. geoemb path: ``DistanceWeightedRecall`` + ``DistanceBinnedRecall``
updated batch by batch (exact torch L1 transform, O(1) state). Same inputs, one process.

    python benchmarks/rsc_metrics.py            # 256 patches of 512x512
    python benchmarks/rsc_metrics.py --quick    # 32 patches
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import distance_transform_cdt
from sklearn.metrics import recall_score

from geoemb.data.chesapeake_rsc import remap_mask
from geoemb.data.synthetic.chesapeake_rsc import _draw_patch
from geoemb.metrics import DistanceBinnedRecall, DistanceWeightedRecall


def make_inputs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = np.stack(
        [remap_mask(_draw_patch(rng, size, tc_only=(i % 50 == 49))[1], 3) for i in range(n)]
    )
    # a "model": right on 90 % of road, TC recall decaying with a random field
    preds = np.where(
        targets >= 1, rng.random(targets.shape) < 0.7, rng.random(targets.shape) < 0.02
    )
    return preds.astype(np.int64), targets


def reference(preds: np.ndarray, targets: np.ndarray) -> tuple[float, list]:
    ds, ps = [], []
    for m, p in zip(targets, preds):
        if not (m == 2).any():
            continue
        if (m == 1).any():
            d = distance_transform_cdt(m != 1, metric="taxicab").astype(np.float64)
        else:  # cv2 returns huge values when there is no zero pixel
            d = np.full(m.shape, 1e9)
        ds.append(d[m == 2])
        ps.append(p[m == 2])
    d, p = np.concatenate(ds), np.concatenate(ps)
    keep = d < 8192
    d, p = d[keep], p[keep]
    dwr = recall_score(np.ones_like(p), p, sample_weight=d)
    bins = np.logspace(0, np.log10(d.max() + 1), num=20)
    curve = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & (d < hi)
        if sel.any():
            curve.append((lo, int(sel.sum()), float((p[sel] == 1).mean())))
    return float(dwr), curve


def geoemb_path(
    preds: np.ndarray, targets: np.ndarray, batch: int, device: str
) -> tuple[float, list]:
    dwr, cur = DistanceWeightedRecall().to(device), DistanceBinnedRecall().to(device)
    for s in range(0, len(preds), batch):
        p = torch.from_numpy(preds[s : s + batch]).to(device)
        t = torch.from_numpy(targets[s : s + batch]).to(device)
        dwr.update(p, t)
        cur.update(p, t)
    c = cur.compute()
    curve = [
        (float(a), int(b), float(r)) for a, b, r in zip(c["bin_left"], c["count"], c["recall"])
    ]
    return float(dwr.compute()), curve


def geoemb_hist(
    preds: np.ndarray, targets: np.ndarray, batch: int, device: str
) -> tuple[float, list]:
    cur = DistanceBinnedRecall().to(device)
    for s in range(0, len(preds), batch):
        cur.update(
            torch.from_numpy(preds[s : s + batch]).to(device),
            torch.from_numpy(targets[s : s + batch]).to(device),
        )
    c = cur.compute()
    curve = [
        (float(a), int(b), float(r)) for a, b, r in zip(c["bin_left"], c["count"], c["recall"])
    ]
    return float(cur.dwr()), curve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    n = 32 if args.quick else args.n
    preds, targets = make_inputs(n, args.size)
    print(
        f"{n} patches of {args.size}x{args.size}, TC pixels {(targets == 2).sum()}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    geoemb_path(preds[:2], targets[:2], args.batch, args.device)  # warm-up
    t0 = time.perf_counter()
    ref_dwr, ref_curve = reference(preds, targets)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    our_dwr, our_curve = geoemb_path(preds, targets, args.batch, args.device)
    t_our = time.perf_counter() - t0
    t0 = time.perf_counter()
    h_dwr, h_curve = geoemb_hist(preds, targets, args.batch, args.device)
    t_h = time.perf_counter() - t0
    same_bins = (
        [(a, b) for a, b, _ in ref_curve]
        == [(a, b) for a, b, _ in our_curve]
        == [(a, b) for a, b, _ in h_curve]
    )
    max_dr = max(
        max(abs(r1 - r2), abs(r1 - r3))
        for (_, _, r1), (_, _, r2), (_, _, r3) in zip(ref_curve, our_curve, h_curve)
    )
    print()
    print("| path | seconds | patches/s | DWR | curve bins | speed vs reference (>1 = faster) |")
    print("|---|---|---|---|---|---|")
    print(
        f"| reference (scipy cdt + sklearn, per patch) | {t_ref:.3f} | {n / t_ref:.1f} | {ref_dwr:.10f} | {len(ref_curve)} | 1.00x |"
    )
    print(
        f"| geoemb (torch L1 DT, torchmetrics, batch {args.batch}) | {t_our:.3f} | {n / t_our:.1f} | {our_dwr:.10f} | {len(our_curve)} | {t_ref / t_our:.2f}x |"
    )
    print(
        f"| geoemb (one DistanceBinnedRecall: curve + .dwr()) | {t_h:.3f} | {n / t_h:.1f} | {h_dwr:.10f} | {len(h_curve)} | {t_ref / t_h:.2f}x |"
    )
    print()
    print(
        f"|DWR difference| = {max(abs(ref_dwr - our_dwr), abs(ref_dwr - h_dwr)):.2e}; identical bin edges and counts: {same_bins}; "
        f"max |recall difference| over bins = {max_dr:.2e}"
    )
    if not same_bins or max(abs(ref_dwr - our_dwr), abs(ref_dwr - h_dwr)) > 1e-12 or max_dr > 1e-12:
        raise SystemExit("MISMATCH between reference and geoemb")


if __name__ == "__main__":
    main()
