"""Chesapeake RSC figures and files: distance-recall curves, ERF curves, the analysis tables.

(The curve's table form, :func:`geoemb.metrics.rsc.distance_curve_frame`, stays with the metric.)

Every figure has a title, axis ranges fitted to the data (points at 100 % are drawn whole) and,
for data from the synthetic stand-in, ``(synthetic data)`` in its title. Plain matplotlib/pandas:
the RSC module's callback (:class:`geoemb.callbacks.RSCDistanceCurve`) and the ``rsc_analysis``
evaluator both write through here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from geoemb.metrics.rsc import distance_curve_frame
from geoemb.reporting.tables import write_table
from geoemb.utils.io import atomic_path, atomic_write_text

__all__ = ["distance_curve_figure", "erf_figure", "plot_distance_curves", "plot_erf",
           "synthetic_title", "write_distance_curves", "write_erf"]  # fmt: skip

CURVE_TITLE = "TC-over-road recall vs distance to visible road"


def synthetic_title(title: str, synthetic: bool) -> str:
    """``title`` with the synthetic tag appended for stand-in data."""
    return f"{title} (synthetic data)" if synthetic else title


def _to_numpy(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _fitted(lo: float, hi: float, floor: float, ceil: float, pad: float) -> tuple[float, float]:
    return max(floor, lo - pad), min(ceil, hi + pad)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def plot_distance_curves(
    curves: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    title: str | None = None,
    synthetic: bool = False,
) -> Path:
    """:func:`distance_curve_figure` as a PNG at ``path`` (atomically)."""
    return _save(distance_curve_figure(curves, title, synthetic), path)


def distance_curve_figure(
    curves: Mapping[str, Mapping[str, Any]], title: str | None = None, synthetic: bool = False
) -> Any:
    """Recall (%) vs L1 distance (log x, points at the left bin edge) per model."""
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs, ys = [], []
    for name, c in curves.items():
        x, y = _to_numpy(c["bin_left"]).astype(float), 100 * _to_numpy(c["recall"]).astype(float)
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], marker="o", label=name, clip_on=False, zorder=3)
        xs += list(x[ok]) + list(_to_numpy(c["bin_right"]).astype(float)[ok])
        ys += list(y[ok])
    ax.set_xscale("log")
    if xs:
        ax.set_xlim(max(min(x for x in xs if x > 0) / 1.4, 0.5), max(xs) * 1.2)
        lo, hi = _fitted(min(ys), max(ys), -2.0, 102.0, 4.0)
        ax.set_ylim(min(lo, max(-2.0, hi - 25.0)), hi)  # at least 25 pp: small gaps stay small
    else:
        ax.text(0.5, 0.5, "no canopy-over-road pixels", ha="center", transform=ax.transAxes)
    ax.set_xlabel("L1 distance to nearest visible road pixel (px)")
    ax.set_ylabel("TC-over-road recall (%)")
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1 or xs:
        ax.legend(title="model")
    head = CURVE_TITLE if not title else f"{CURVE_TITLE}: {title}"
    ax.set_title(synthetic_title(head, synthetic), fontsize=10,
                 color="crimson" if synthetic else "black")  # fmt: skip
    fig.tight_layout()
    return fig


def write_distance_curves(
    curves: Mapping[str, Mapping[str, Any]],
    stem: str | os.PathLike,
    title: str | None = None,
    synthetic: bool = False,
    model_column: bool = True,
) -> tuple[Path, Path, pd.DataFrame]:
    """``<stem>.csv`` (bins of every model) and ``<stem>.png``; returns both paths and the frame."""
    stem = Path(stem)
    frame = pd.concat([distance_curve_frame(c, n if model_column else None) for n, c in curves.items()],
                      ignore_index=True)  # fmt: skip
    csv = atomic_write_text(stem.with_suffix(".csv"), frame.to_csv(index=False))
    png = plot_distance_curves(curves, stem.with_suffix(".png"), title, synthetic)
    return csv, png, frame


def plot_erf(
    erf: Any, path: str | os.PathLike, title: str | None = None, synthetic: bool = False
) -> Path:
    """:func:`erf_figure` as a PNG at ``path`` (atomically)."""
    return _save(erf_figure(erf, title, synthetic), path)


def erf_figure(erf: Any, title: str | None = None, synthetic: bool = False) -> Any:
    """ERF cumulative gradient mass vs radius per true class (an
    :class:`~geoemb.analysis.erf.ERFResult`), dashed 50/90/99 % radii of the road class."""
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, c in erf.mean_curve.items():
        ax.plot(erf.grid, c, label=f"{name} (n={erf.n.get(name, 0)})")
    key = "road" if "road" in erf.radius else next(iter(erf.radius), None)
    finite = []
    if key is not None:
        for p, r in erf.radius[key].items():
            if np.isfinite(r):
                finite.append(r)
                ax.axvline(r, ls="--", lw=0.8, color="gray")
                ax.text(r, 0.02, f"{key} {int(round(p * 100))}%", rotation=90, fontsize=7)
    grid = np.asarray(erf.grid, dtype=float)
    if grid.size:
        ax.set_xlim(0, max(float(grid.max()), *(r * 1.05 for r in finite)))
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("radius from output pixel (px)")
    ax.set_ylabel("cumulative gradient mass")
    ax.grid(alpha=0.3)
    if erf.mean_curve:
        ax.legend(title="true class")
    head = "Effective receptive field" + (f": {title}" if title else "")
    ax.set_title(synthetic_title(head, synthetic), fontsize=10,
                 color="crimson" if synthetic else "black")  # fmt: skip
    fig.tight_layout()
    return fig


def write_erf(
    erf: Any, out_dir: str | os.PathLike, title: str | None = None, synthetic: bool = False
) -> dict[str, Path]:
    """``erf_radii.{csv,md,tex}``, ``erf_curves.csv`` and ``erf.png`` of an ERF result."""
    out_dir = Path(out_dir)
    paths = write_table(erf.table(), out_dir / "erf_radii", floatfmt=".2f")
    paths["curves"] = atomic_write_text(out_dir / "erf_curves.csv",
                                        erf.curves_frame().to_csv(index=False))  # fmt: skip
    paths["png"] = plot_erf(erf, out_dir / "erf.png", title, synthetic)
    return paths
