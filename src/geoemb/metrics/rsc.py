"""Chesapeake RSC metrics (reference: ``isaaccorley/ChesapeakeRSC`` ``eval.py`` and
``notebooks/eval_over_distance.ipynb``), as torchmetrics ``Metric`` objects.

Conventions (all from the reference code):

* ``preds`` ``(B, H, W)`` in {0 = not road, 1 = road} (a binary model's argmax). Logits
  ``(B, K, H, W)`` are accepted too and argmax-ed; for a 3-class model, class 2 counts as road.
* ``target`` ``(B, H, W)`` in {0 = background, 1 = visible road, 2 = tree canopy over road (TC)}.
* A 3×2 confusion matrix ``cnf[true ∈ {bg, road, tc}, pred ∈ {bg, road}]`` is pooled over all pixels:
  ``road R = cnf[1,1] / (cnf[1,0] + cnf[1,1])`` (visible road only), ``road P = cnf[1,1] /
  (cnf[0,1] + cnf[1,1] + cnf[2,1])`` (TC predicted as road is a false positive), ``TC R = cnf[2,1] /
  (cnf[2,0] + cnf[2,1])``, ``bg R = cnf[0,0] / (cnf[0,0] + cnf[0,1])``, ``bg P = cnf[0,0] / cnf[:,0].sum()``.
* DWR: for each TC pixel, ``d`` = L1 distance to the nearest visible-road pixel of its patch
  (``cv2.DIST_L1``); pixels with ``d >= 8192`` (patches without visible road) are dropped;
  ``DWR = Σ d·[p = 1] / Σ d`` pooled over all pixels of all patches (not a per-image mean).
* Distance-binned recall: edges ``np.logspace(0, log10(d.max() + 1), 20)`` over the kept TC distances,
  19 half-open bins ``[b_k, b_{k+1})``, recall = mean of ``p == 1`` in a bin, empty bins skipped.

Every metric keeps a fixed-size state (a 3×2 matrix, two integer sums, or a per-integer-distance
histogram of ``max_distance`` bins), so memory is O(1) in the number of batches and the results are
exact integers until the final division. Distances are computed on the input's device: on CPU by a
fused numba kernel that reads each batch once and transforms only the rows holding TC pixels
(``geoemb.metrics._rsc_numba``; identical to the reference's ``cv2.distanceTransform`` L1 call,
which is the fallback without numba), elsewhere with
:func:`geoemb.metrics.distance.l1_distance_transform`. A batch's distances are computed once and
shared by every distance metric updated with that batch (a content-keyed one-entry cache).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchmetrics import Metric

from geoemb.metrics.distance import cached_transform

__all__ = [
    "RSCConfusionMatrix",
    "RoadRecall",
    "RoadPrecision",
    "TCRecall",
    "BackgroundRecall",
    "BackgroundPrecision",
    "DistanceWeightedRecall",
    "DistanceBinnedRecall",
    "tc_distances",
    "reference_distance_bins",
    "distance_curve_frame",
    "write_distance_curve_csv",
    "plot_distance_curves",
]

#: The reference drops TC pixels with ``d >= 8192`` (cv2's value for patches without visible road).
REFERENCE_MAX_DISTANCE = 8192


def _shapes(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits → road map, 2-D → batch of one, shape check; bool/float targets → int64."""
    if preds.ndim == 4:  # logits (B, K, H, W)
        preds = preds.argmax(1) >= 1
    if target.ndim == 2:
        target = target.unsqueeze(0)
    if preds.ndim == 2:
        preds = preds.unsqueeze(0)
    if preds.shape != target.shape or target.ndim != 3:
        raise ValueError(
            f"preds must be (B, H, W) (or logits (B, K, H, W)) and target (B, H, W) of the same "
            f"shape; got preds {tuple(preds.shape)}, target {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        target = target.long()
    return preds, target


def _range_error(what: str, lo: int, hi: int) -> ValueError:
    meaning = (
        "0 = background, 1 = road, 2 = canopy over road"
        if what == "target"
        else "0 = not road, 1 = road (binary model argmax)"
    )
    return ValueError(f"{what} must hold {meaning}; got values in [{lo}, {hi}]")


def _check(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and normalise ``preds`` to a ``(B, H, W)`` bool road map and ``target`` to integers
    (torch, any device; one ``aminmax`` pass per integer input)."""
    preds, target = _shapes(preds, target)
    if target.numel():
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi > 2:
            raise _range_error("target", lo, hi)
    if preds.dtype != torch.bool:
        if preds.numel():
            lo, hi = (int(v) for v in torch.aminmax(preds))
            if lo < 0 or hi > 1:
                raise _range_error("preds", lo, hi)
        preds = preds != 0
    return preds, target


def _numba_kernel():
    """The fused CPU kernel module, or None when numba is not installed."""
    try:
        from geoemb.metrics import _rsc_numba
    except ImportError:
        return None
    return _rsc_numba


def _tc_distances_cpu(
    kernel, preds: torch.Tensor, target: torch.Tensor, max_distance: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CPU path of :func:`_tc_distances`: one fused numba pass per patch (see ``_rsc_numba``)."""
    t, p = target.numpy(), preds.numpy()
    d, hit, n_tc, bad = kernel.tc_distances_cpu(t, p, max_distance)
    if bad >= 0:  # name the offending input with its real range (slow path, error only)
        for what, x, top in (("target", t[bad], 2), ("preds", p[bad], 1)):
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi > top:
                raise _range_error(what, lo, hi)
    return torch.from_numpy(d), torch.from_numpy(hit), n_tc


def _tc_distances(
    preds: torch.Tensor, target: torch.Tensor, max_distance: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`tc_distances` on inputs normalised by :func:`_shapes`; validates them and also returns
    the number of TC pixels before the ``d < max_distance`` filter."""
    if target.device.type == "cpu" and preds.device.type == "cpu":
        kernel = _numba_kernel()
        if kernel is not None:
            return _tc_distances_cpu(kernel, preds, target, max_distance)
    preds, target = _check(preds, target)
    tc_all = target == 2
    has_tc = tc_all.flatten(1).any(1)
    if not bool(has_tc.all()):  # the reference only transforms patches that contain TC
        preds, target, tc_all = preds[has_tc], target[has_tc], tc_all[has_tc]
    if target.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=target.device)
        return empty, empty.bool(), 0
    n_tc = int(tc_all.sum())
    dist = cached_transform(target == 1)
    tc = tc_all & (dist < max_distance)
    return dist[tc].long(), preds[tc], n_tc


def tc_distances(
    preds: torch.Tensor, target: torch.Tensor, max_distance: int = REFERENCE_MAX_DISTANCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 distances and hits of the TC pixels of a batch (the reference's ``d_i``, ``p_i``).

    On CPU a fused numba kernel computes the exact L1 distances of the TC pixels only (identical
    to the reference's ``cv2.distanceTransform(..., DIST_L1, 3)``; without numba, OpenCV); on other
    devices :func:`~geoemb.metrics.distance.l1_distance_transform`. Either way one computation
    per batch is shared by every distance metric updated with it (a content-keyed cache).

    Parameters
    ----------
    preds, target:
        ``(B, H, W)``, see the module docstring.
    max_distance:
        TC pixels with ``d >= max_distance`` are dropped (reference: 8192, i.e. patches without
        visible road).

    Returns
    -------
    (d, hit):
        1-D ``int64`` distances and 1-D bool hits, in row-major order over ``(B, H, W)``.
    """
    preds, target = _shapes(preds, target)
    d, hit, _ = _tc_distances(preds, target, max_distance)
    return d.clone(), hit.clone()  # the cache keeps the originals


class RSCConfusionMatrix(Metric):
    """3×2 confusion matrix ``cnf[true ∈ {bg, road, tc}, pred ∈ {bg, road}]`` and its ratios.

    ``compute()`` returns a dict with ``road_recall``, ``road_precision``, ``tc_recall``,
    ``bg_recall``, ``bg_precision`` (0-d float tensors; NaN when a denominator is 0).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("cnf", default=torch.zeros(3, 2, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate ``preds`` ``(B, H, W)`` {0, 1} against ``target`` ``(B, H, W)`` {0, 1, 2}."""
        preds, target = _check(preds, target)
        idx = target.reshape(-1).long() * 2 + preds.reshape(-1)
        self.cnf += torch.bincount(idx, minlength=6).reshape(3, 2)

    @staticmethod
    def ratios(cnf: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's five ratios from a 3×2 confusion matrix."""
        c = cnf.double()

        def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a / b).float() if b > 0 else torch.tensor(float("nan"), device=c.device)

        return {
            "road_recall": div(c[1, 1], c[1, 0] + c[1, 1]),
            "road_precision": div(c[1, 1], c[:, 1].sum()),
            "tc_recall": div(c[2, 1], c[2, 0] + c[2, 1]),
            "bg_recall": div(c[0, 0], c[0, 0] + c[0, 1]),
            "bg_precision": div(c[0, 0], c[:, 0].sum()),
        }

    def compute(self) -> dict[str, torch.Tensor]:
        return self.ratios(self.cnf)


class _RatioMetric(RSCConfusionMatrix):
    _key = ""

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return self.ratios(self.cnf)[self._key]


class RoadRecall(_RatioMetric):
    """Recall on visible road: ``cnf[1,1] / (cnf[1,0] + cnf[1,1])``."""

    _key = "road_recall"


class RoadPrecision(_RatioMetric):
    """Road precision with TC predicted as road counted as FP: ``cnf[1,1] / cnf[:,1].sum()``."""

    _key = "road_precision"


class TCRecall(_RatioMetric):
    """Recall on tree canopy over road: ``cnf[2,1] / (cnf[2,0] + cnf[2,1])``."""

    _key = "tc_recall"


class BackgroundRecall(_RatioMetric):
    """Background recall ``cnf[0,0] / (cnf[0,0] + cnf[0,1])``."""

    _key = "bg_recall"


class BackgroundPrecision(_RatioMetric):
    """Background precision ``cnf[0,0] / cnf[:,0].sum()``."""

    _key = "bg_precision"


class DistanceWeightedRecall(Metric):
    """Distance-weighted recall on canopy-over-road pixels (exactly the reference notebook's DWR).

    ``update(preds (B,H,W) {0,1}, target (B,H,W) {0,1,2})``; ``compute()`` → 0-d float64 tensor
    ``Σ d·[p=1] / Σ d`` (NaN if no TC pixel was kept). Also tracks ``n_pixels`` (kept TC pixels) and
    ``n_dropped`` (TC pixels with ``d >= max_distance``, i.e. in patches without visible road).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, max_distance: int = REFERENCE_MAX_DISTANCE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_distance = int(max_distance)
        for name in ("weighted_hits", "weight_total", "n_pixels", "n_dropped"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = _shapes(preds, target)
        d, hit, n_tc = _tc_distances(preds, target, self.max_distance)
        self.weighted_hits += (d * hit).sum()
        self.weight_total += d.sum()
        self.n_pixels += d.numel()
        self.n_dropped += n_tc - d.numel()

    def compute(self) -> torch.Tensor:
        if self.weight_total == 0:
            return torch.tensor(float("nan"), device=self.weight_total.device)
        return self.weighted_hits.double() / self.weight_total.double()


def reference_distance_bins(d_max: int, num_edges: int = 20) -> np.ndarray:
    """The reference's log bin edges ``np.logspace(0, log10(d_max + 1), num=20)`` (float64)."""
    return np.logspace(0, np.log10(d_max + 1), num=num_edges)


class DistanceBinnedRecall(Metric):
    """TC recall as a function of L1 distance to visible road (the reference's 19 log bins).

    State: per-integer-distance histograms ``count[d]`` and ``hits[d]`` for ``d < max_distance``
    (fixed size), so the data-dependent reference bins are reproduced exactly at ``compute()``.

    ``compute()`` returns a dict of 1-D tensors over the non-empty bins: ``bin_index`` (0..18),
    ``bin_left``, ``bin_right``
    (float64 edges), ``count``, ``hits``, ``recall``. :meth:`per_distance` gives the per-integer curve.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self, max_distance: int = REFERENCE_MAX_DISTANCE, num_edges: int = 20, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.max_distance = int(max_distance)
        self.num_edges = int(num_edges)
        z = torch.zeros(self.max_distance, dtype=torch.long)
        self.add_state("count", default=z.clone(), dist_reduce_fx="sum")
        self.add_state("hits", default=z.clone(), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        d, hit = tc_distances(preds, target, self.max_distance)
        self.count += torch.bincount(d, minlength=self.max_distance)
        self.hits += torch.bincount(d[hit], minlength=self.max_distance)

    def per_distance(self) -> dict[str, np.ndarray]:
        """Per-integer-distance curve: ``distance``, ``count``, ``hits``, ``recall`` (non-empty d)."""
        count = self.count.cpu().numpy()
        hits = self.hits.cpu().numpy()
        nz = np.nonzero(count)[0]
        return {
            "distance": nz,
            "count": count[nz],
            "hits": hits[nz],
            "recall": hits[nz] / count[nz],
        }

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.cpu().numpy()
        hits = self.hits.cpu().numpy()
        nz = np.nonzero(count)[0]
        out = {k: [] for k in ("bin_index", "bin_left", "bin_right", "count", "hits", "recall")}
        if nz.size:
            edges = reference_distance_bins(int(nz.max()), self.num_edges)
            dist = np.arange(count.size, dtype=np.float64)
            for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
                sel = (dist >= lo) & (dist < hi)
                n = int(count[sel].sum())
                if n == 0:
                    continue
                h = int(hits[sel].sum())
                out["bin_index"].append(k)
                out["bin_left"].append(lo)
                out["bin_right"].append(hi)
                out["count"].append(n)
                out["hits"].append(h)
                out["recall"].append(h / n)
        return {
            "bin_index": torch.tensor(out["bin_index"], dtype=torch.long),
            "bin_left": torch.tensor(out["bin_left"], dtype=torch.float64),
            "bin_right": torch.tensor(out["bin_right"], dtype=torch.float64),
            "count": torch.tensor(out["count"], dtype=torch.long),
            "hits": torch.tensor(out["hits"], dtype=torch.long),
            "recall": torch.tensor(out["recall"], dtype=torch.float64),
        }

    def dwr(self) -> torch.Tensor:
        """DWR from the histogram, ``Σ_d d·hits[d] / Σ_d d·count[d]`` — identical to
        :class:`DistanceWeightedRecall` (one distance transform serves both)."""
        d = torch.arange(self.max_distance, device=self.count.device)
        den = (d * self.count).sum()
        if den == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.count.device)
        return (d * self.hits).sum().double() / den.double()

    def distance_percentiles(self, q: tuple[float, ...] = (50, 95, 98, 99)) -> dict[str, float]:
        """TC→road distance percentiles (numpy 'linear' interpolation) from the histogram."""
        count = self.count.cpu().numpy()
        n = int(count.sum())
        if n == 0:
            return {f"p{g:g}": float("nan") for g in q}
        cum = np.cumsum(count)
        res = {}
        for g in q:
            pos = (n - 1) * g / 100.0
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            v_lo = int(np.searchsorted(cum, lo, side="right"))
            v_hi = int(np.searchsorted(cum, hi, side="right"))
            res[f"p{g:g}"] = float(v_lo + (v_hi - v_lo) * (pos - lo))
        return res


def distance_curve_frame(curve: dict[str, torch.Tensor], model: str | None = None):
    """``DistanceBinnedRecall.compute()`` output → pandas DataFrame (one row per non-empty bin)."""
    import pandas as pd

    df = pd.DataFrame({k: v.cpu().numpy() for k, v in curve.items()})
    if model is not None:
        df.insert(0, "model", model)
    return df


def write_distance_curve_csv(
    curve: dict[str, torch.Tensor], path: str | os.PathLike, model: str | None = None
) -> Path:
    """Write a distance curve as CSV (atomically); return the path."""
    from geoemb.utils.io import atomic_write_text

    return atomic_write_text(path, distance_curve_frame(curve, model).to_csv(index=False))


def plot_distance_curves(
    curves: dict[str, dict[str, torch.Tensor]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Plot recall vs distance (log x, points at the left bin edge, xlim [0.7, 1024]) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geoemb.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    xmax = 1024.0
    for name, c in curves.items():
        x = c["bin_left"].cpu().numpy()
        if x.size:
            xmax = max(xmax, float(c["bin_right"].max()))
        ax.plot(x, 100 * c["recall"].cpu().numpy(), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlim(0.7, xmax)
    ax.set_ylim(0, 100)
    ax.set_xlabel("L1 distance to nearest visible road pixel (px)")
    ax.set_ylabel("TC-over-road recall (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
