"""Independent numpy/scipy/sklearn re-implementation of the reference RSC evaluation
(``eval.py`` + ``notebooks/eval_over_distance.ipynb``), one patch at a time, used as the test oracle."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_cdt
from sklearn.metrics import recall_score


def reference_distance(m: np.ndarray) -> np.ndarray:
    """cv2.distanceTransform((m != 1), DIST_L1, 3) equivalent; no road -> 1e9 (cv2 gives huge values)."""
    if not (m == 1).any():
        return np.full(m.shape, 1e9)
    return distance_transform_cdt(m != 1, metric="taxicab").astype(np.float64)


def reference_eval(preds: np.ndarray, target: np.ndarray):
    """Return (ratios dict, dwr, d, p) exactly as the reference notebooks compute them."""
    cnf = np.zeros((3, 2), np.int64)
    for t in range(3):
        for p in range(2):
            cnf[t, p] = np.sum((target == t) & (preds == p))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = {
            "road_recall": cnf[1, 1] / (cnf[1, 0] + cnf[1, 1]),
            "road_precision": cnf[1, 1] / (cnf[0, 1] + cnf[1, 1] + cnf[2, 1]),
            "tc_recall": cnf[2, 1] / (cnf[2, 0] + cnf[2, 1]),
            "bg_recall": cnf[0, 0] / (cnf[0, 0] + cnf[0, 1]),
            "bg_precision": cnf[0, 0] / (cnf[0, 0] + cnf[1, 0] + cnf[2, 0]),
        }
    ds, ps = [], []
    for m, pr in zip(target, preds):
        if not (m == 2).any():
            continue
        d = reference_distance(m)
        ds.append(d[m == 2])
        ps.append(pr[m == 2])
    d = np.concatenate(ds) if ds else np.zeros(0)
    p = np.concatenate(ps) if ps else np.zeros(0)
    keep = d < 8192
    d, p = d[keep], p[keep]
    if d.sum() > 0:
        dwr = recall_score(np.ones_like(p), p, sample_weight=d, zero_division=np.nan)
    else:
        dwr = float("nan")
    return ratios, dwr, d, p


def reference_curve(d: np.ndarray, p: np.ndarray):
    """19 log bins as the notebook; empty bins skipped. Returns list of (left, right, n, recall)."""
    if d.size == 0:
        return []
    bins = np.logspace(0, np.log10(d.max() + 1), num=20)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (d >= lo) & (d < hi)
        if sel.sum() == 0:
            continue
        out.append((lo, hi, int(sel.sum()), float((p[sel] == 1).mean())))
    return out
