"""Benchmark: geoemb RSC DWR + distance curve vs the ChesapeakeRSC notebook's own code path.

Reference (``notebooks/eval_over_distance.ipynb``, run verbatim on numpy arrays): per patch with any
canopy-over-road (TC) pixel, ``cv2.distanceTransform((~(mask == 1)).astype(np.uint8), cv2.DIST_L1,
3)``, the TC distances and predictions concatenated over patches, the ``d < 8192`` filter,
``sklearn.metrics.recall_score(..., sample_weight=d)`` for DWR and the 19 log bins counted with numpy.

geoemb paths, same inputs, same process:

* ``separate``: ``DistanceWeightedRecall`` + ``DistanceBinnedRecall`` both updated batch by batch
  (they share one distance transform per batch through the content-keyed cache);
* ``one metric``: a single ``DistanceBinnedRecall`` (curve + ``.dwr()`` from its histogram).

Each path is timed ``--repeat`` times in interleaved order; the table shows the median and the ratio
reference / geoemb (> 1 = geoemb faster). Numbers must be identical (checked; exits non-zero if not).

    python benchmarks/rsc_metrics.py                      # 256 patches of 512x512, 5 repeats
    python benchmarks/rsc_metrics.py --quick              # 32 patches, 3 repeats
    python benchmarks/rsc_metrics.py --device cuda        # geoemb on the GPU (reference stays CPU)
    python benchmarks/rsc_metrics.py --device cuda --resident   # masks/preds already on the GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def make_inputs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` int64 3-class masks ``(n, size, size)`` (roads, canopy-over-road runs, one patch in 50
    without visible road) and binary predictions (70 % of road/TC hit, 2 % false positives).

    Self-contained numpy (no geoemb.data import) so the GPU script can run it on a bare machine.
    """
    rng = np.random.default_rng(seed)
    t = np.zeros((n, size, size), np.int64)
    for i in range(n):
        m = t[i]
        for _ in range(int(rng.integers(2, 4))):  # straight roads, width 2-4
            w = int(rng.integers(2, 5))
            if rng.random() < 0.5:
                y = int(rng.integers(0, size - w))
                m[y : y + w, :] = 1
                for _ in range(int(rng.integers(1, 4))):  # canopy runs over the road
                    x0, ln = int(rng.integers(0, size)), int(rng.integers(4, size // 3))
                    m[y : y + w, x0 : x0 + ln] = 2
            else:
                x = int(rng.integers(0, size - w))
                m[:, x : x + w] = 1
                for _ in range(int(rng.integers(1, 4))):
                    y0, ln = int(rng.integers(0, size)), int(rng.integers(4, size // 3))
                    m[y0 : y0 + ln, x : x + w] = 2
        if i % 10 == 5:  # a long canopy-covered road visible only at its top: d up to ~size
            x = int(rng.integers(0, size - 3))
            m[:, x : x + 3] = 2
            m[:4, x : x + 3] = 1
        if i % 50 == 49:  # canopy only: the reference's d >= 8192 filter
            m[m == 1] = 2
    preds = np.where(t >= 1, rng.random(t.shape) < 0.7, rng.random(t.shape) < 0.02)
    return preds.astype(np.int64), t


def reference(preds: np.ndarray, targets: np.ndarray) -> tuple[float, list]:
    """The notebook's loop (cv2 + sklearn + numpy counting), on numpy arrays."""
    import cv2
    from sklearn.metrics import recall_score

    dists, hits = [], []
    for i in range(targets.shape[0]):
        mask = targets[i]
        tree_canopy_over_road_mask = mask == 2
        if np.any(tree_canopy_over_road_mask):
            distance_to_road = cv2.distanceTransform(
                (~(mask == 1)).astype(np.uint8), cv2.DIST_L1, 3
            )
            dists.append(distance_to_road[tree_canopy_over_road_mask])
            hits.append(preds[i][tree_canopy_over_road_mask])
    p, d = np.concatenate(hits), np.concatenate(dists)
    good = d < 8192.0
    d, p = d[good], p[good]
    dwr = recall_score(np.ones_like(p), p, sample_weight=d)
    bins = np.logspace(0, np.log10(d.max() + 1), num=20)
    curve = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & (d < hi)
        if sel.sum() > 0:
            curve.append((float(lo), int(sel.sum()), float((p[sel] == 1).mean())))
    return float(dwr), curve


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _curve(c: dict) -> list:
    return [(float(a), int(b), float(r)) for a, b, r in zip(c["bin_left"], c["count"], c["recall"])]


def make_batches(preds, targets, batch: int, device: str = "cpu") -> list:
    """Batches of (preds, target) tensors; on ``device`` already when it is given (resident)."""
    return [
        (
            torch.from_numpy(preds[s : s + batch]).to(device),
            torch.from_numpy(targets[s : s + batch]).to(device),
        )
        for s in range(0, len(preds), batch)
    ]


def geoemb_separate(batches: list, device: str) -> tuple[float, list]:
    from geoemb.metrics import DistanceBinnedRecall, DistanceWeightedRecall

    dwr, cur = DistanceWeightedRecall().to(device), DistanceBinnedRecall().to(device)
    for p, t in batches:
        p, t = p.to(device), t.to(device)  # no-op when the batches are resident
        dwr.update(p, t)
        cur.update(p, t)
    out = float(dwr.compute()), _curve(cur.compute())
    _sync(device)
    return out


def geoemb_one(batches: list, device: str) -> tuple[float, list]:
    from geoemb.metrics import DistanceBinnedRecall

    cur = DistanceBinnedRecall().to(device)
    for p, t in batches:
        cur.update(p.to(device), t.to(device))
    out = float(cur.dwr()), _curve(cur.compute())
    _sync(device)
    return out


def run(
    n: int, size: int, batch: int, device: str, repeat: int, seed: int = 0, resident: bool = False
) -> dict:
    """Time the reference and the geoemb paths (median of ``repeat`` interleaved runs); verify
    identical numbers. ``resident``: the batches already sit on ``device`` (as a model's
    predictions and the batch masks do in an evaluation loop), else each batch is copied there
    inside the timed region.

    Returns a dict with ``rows`` [(name, median s, DWR, n bins, ratio)], ``identical`` and the
    largest differences.
    """
    preds, targets = make_inputs(n, size, seed)
    batches = make_batches(preds, targets, batch, device if resident else "cpu")
    geoemb_one(batches[:1], device)  # warm-up (imports, JIT caches, CUDA context)
    reference(preds[:2], targets[:2])
    where = f"{device}, resident" if resident and device != "cpu" else device
    paths = {
        "reference (notebook: cv2 + sklearn + numpy, per patch)": lambda: reference(preds, targets),
        f"geoemb DWR + curve metrics (batch {batch}, {where})": lambda: geoemb_separate(
            batches, device
        ),
        f"geoemb one DistanceBinnedRecall (+ .dwr(), {where})": lambda: geoemb_one(batches, device),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    results = {}
    for _ in range(repeat):
        for name, fn in paths.items():
            _sync(device)
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    names = list(paths)
    ref_dwr, ref_curve = results[names[0]]
    t_ref = statistics.median(times[names[0]])
    rows, max_ddwr, max_dr, max_edge, same = [], 0.0, 0.0, 0.0, True
    for name in names:
        dwr, curve = results[name]
        same &= [b for _, b, _ in curve] == [b for _, b, _ in ref_curve]
        max_ddwr = max(max_ddwr, abs(dwr - ref_dwr))
        for (a1, _, r1), (a2, _, r2) in zip(curve, ref_curve):
            max_dr = max(max_dr, abs(r1 - r2))
            max_edge = max(max_edge, abs(a1 - a2) / a2)
        t = statistics.median(times[name])
        rows.append((name, t, dwr, len(curve), t_ref / t))
    # the notebook's edges are float32 (np.logspace of float32 cv2 distances under NumPy 2);
    # geoemb's are float64: equal to float32 precision, same pixels in every bin
    identical = same and max_ddwr <= 1e-12 and max_dr <= 1e-12 and max_edge <= 1e-6
    return {
        "n": n,
        "size": size,
        "tc_pixels": int((targets == 2).sum()),
        "rows": rows,
        "times": times,
        "identical": identical,
        "max_dwr_diff": max_ddwr,
        "max_recall_diff": max_dr,
        "max_edge_rel_diff": max_edge,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="32 patches, 3 repeats")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--resident", action="store_true", help="batches already on --device (not timed copies)"
    )
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeat = 32, 3
    torch.set_num_threads(args.threads)
    r = run(args.n, args.size, args.batch, args.device, args.repeat, resident=args.resident)
    print(
        f"{r['n']} patches of {r['size']}x{r['size']}, TC pixels {r['tc_pixels']}, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeat} interleaved runs"
    )
    print()
    print("| path | median s | patches/s | DWR | curve bins | speed vs reference (>1 = faster) |")
    print("|---|---|---|---|---|---|")
    for name, t, dwr, nb, ratio in r["rows"]:
        print(f"| {name} | {t:.3f} | {r['n'] / t:.1f} | {dwr:.10f} | {nb} | {ratio:.2f}x |")
    print()
    print(
        f"|DWR difference| = {r['max_dwr_diff']:.2e}; max |recall difference| per bin = "
        f"{r['max_recall_diff']:.2e}; same bins and counts; max relative bin-edge difference = "
        f"{r['max_edge_rel_diff']:.1e} (notebook edges are float32); identical = {r['identical']}"
    )
    if not r["identical"]:
        raise SystemExit("MISMATCH between reference and geoemb")


if __name__ == "__main__":
    main()
