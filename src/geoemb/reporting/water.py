"""Segmentation prediction panels (Earth Surface Water and any per-pixel classifier).

One panel per sample: ``image | truth | prediction`` with

* the same colour for a class in truth and prediction (:func:`class_colors`), a legend naming the
  classes, and
* nodata / ignored pixels in grey with their own legend entry: labels equal to ``ignore_index``
  and image pixels with no valid band (all bands 0 — the warp fill of reprojected scenes — or a
  non-finite band) are nodata in all three panels;
* the title says ``(synthetic data)`` when the chips come from the synthetic stand-in.

:func:`prediction_panel` returns a uint8 RGB array (what W&B's ``log_image`` takes);
:func:`save_prediction_panels` stacks panels into one PNG (atomically). Plain matplotlib/numpy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from geoemb.utils.io import atomic_path

__all__ = [
    "NODATA_COLOR",
    "class_colors",
    "nodata_mask",
    "prediction_figure",
    "prediction_panel",
    "save_prediction_panels",
    "stretch_rgb",
]

NODATA_COLOR = (0.62, 0.62, 0.62)
#: class 0 (background/land) light sand, class 1 (water/road) blue, then tab10's distinct colours
_PALETTE = ["#e3d7b8", "#1f5fae", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22"]  # fmt: skip


def class_colors(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` RGB in [0, 1]: one fixed colour per class id (truth = prediction)."""
    from matplotlib.colors import to_rgb

    return np.array([to_rgb(_PALETTE[i % len(_PALETTE)]) for i in range(num_classes)])


def stretch_rgb(image: np.ndarray, bands: Sequence[int], valid: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, 3)`` in [0, 1]: 2-98 % stretch per band over the valid pixels."""
    idx = [b for b in bands if b < image.shape[0]] or [0]
    while len(idx) < 3:
        idx.append(idx[-1])
    rgb = np.moveaxis(np.asarray(image, dtype=np.float64)[idx[:3]], 0, -1)
    out = np.zeros(rgb.shape, dtype=np.float32)
    for c in range(3):
        vals = rgb[..., c][valid]
        lo, hi = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
        out[..., c] = np.clip((rgb[..., c] - lo) / max(hi - lo, 1e-6), 0, 1)
    out[~valid] = NODATA_COLOR
    return out


def nodata_mask(image: np.ndarray, target: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """``(H, W)`` bool: label == ``ignore_index``, or no valid band (all 0, or non-finite)."""
    image = np.asarray(image)
    bad = ~np.isfinite(image).all(axis=0) | (image == 0).all(axis=0)
    if ignore_index is not None:
        bad |= np.asarray(target) == ignore_index
    return bad


def _labels_rgb(labels: np.ndarray, colors: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    ids = np.clip(np.asarray(labels, dtype=np.int64), 0, len(colors) - 1)
    out = colors[ids].astype(np.float32)
    out[invalid] = NODATA_COLOR
    return out


def prediction_panel(*args: Any, **kwargs: Any) -> np.ndarray:
    """:func:`prediction_figure` rendered to a uint8 ``(H', W', 3)`` RGB array (same arguments)."""
    import matplotlib.pyplot as plt

    fig = prediction_figure(*args, **kwargs)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def prediction_figure(
    image: np.ndarray,
    target: np.ndarray,
    pred: np.ndarray,
    rgb_bands: Sequence[int] = (2, 1, 0),
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    synthetic: bool = False,
    title: str = "",
) -> Any:
    """One ``image | truth | prediction`` figure (three axes, a class legend, a title).

    Parameters
    ----------
    image : ``(C, H, W)`` raw bands; target, pred : ``(H, W)`` class ids.
    rgb_bands : bands shown as R, G, B (2-98 % stretch over valid pixels).
    class_names, num_classes : legend names (default ``class <i>``) and palette size.
    ignore_index : label id shown as nodata.
    synthetic : add ``(synthetic data)`` to the title.
    """
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    target, pred = np.asarray(target), np.asarray(pred)
    seen = [int(v) for v in np.unique(np.concatenate([target.ravel(), pred.ravel()]))
            if v != ignore_index]  # fmt: skip
    n = max([num_classes or 0, len(class_names or []), *(v + 1 for v in seen)] or [1])
    names = list(class_names or []) + [f"class {i}" for i in range(len(class_names or []), n)]
    colors = class_colors(n)
    invalid = nodata_mask(image, target, ignore_index)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.9))
    parts = (
        ("image", stretch_rgb(image, rgb_bands, ~invalid)),
        ("truth", _labels_rgb(target, colors, invalid)),
        ("prediction", _labels_rgb(pred, colors, invalid)),
    )
    for ax, (name, arr) in zip(axes, parts):
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    handles = [Patch(facecolor=colors[i], edgecolor="k", lw=0.5, label=names[i]) for i in range(n)]
    handles.append(Patch(facecolor=NODATA_COLOR, edgecolor="k", lw=0.5, label="nodata / ignored"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9,
               frameon=False)  # fmt: skip
    head = (title or "image | truth | prediction") + (" (synthetic data)" if synthetic else "")
    fig.suptitle(head, fontsize=11, color="crimson" if synthetic else "black")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def save_prediction_panels(panels: Sequence[np.ndarray], path: str | os.PathLike) -> Path:
    """Stack panels (uint8 RGB arrays of one width) vertically into one PNG, atomically."""
    import matplotlib.pyplot as plt

    width = max(p.shape[1] for p in panels)
    rows = []
    for p in panels:
        pad = np.full((p.shape[0], width - p.shape[1], 3), 255, dtype=np.uint8)
        rows += [np.concatenate([p, pad], axis=1), np.full((6, width, 3), 255, dtype=np.uint8)]
    path = Path(path)
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.concatenate(rows[:-1], axis=0), format="png")
    return path
