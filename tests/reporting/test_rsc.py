"""RSC figures: distance-recall curves and ERF curves (titles, fitted axes, synthetic tag, files)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from geoemb.analysis.erf import ERFResult
from geoemb.reporting import rsc as R


def _curve(recall):
    n = len(recall)
    left = torch.tensor([1, 2, 4, 8, 16][:n], dtype=torch.float64)
    return {"bin_index": torch.arange(n), "bin_left": left, "bin_right": left * 2 + 1,
            "recall": torch.tensor(recall, dtype=torch.float64),
            "count": torch.full((n,), 5)}  # fmt: skip


def test_distance_curve_figure_and_files(tmp_path):
    curves = {"model": _curve([1.0, 0.9, 0.6]), "baseline": _curve([1.0, 0.5, 0.2, 0.1])}
    fig = R.distance_curve_figure(curves, title="test split", synthetic=True)
    ax = fig.axes[0]
    assert ax.get_title().endswith("test split (synthetic data)")
    lo, hi = ax.get_ylim()
    assert hi > 100.0 and 0.0 < lo < 10.0  # 100 % points whole; range fitted to 10 %..100 %
    assert (
        ax.get_xlim()[0] > 0 and ax.get_xlim()[1] >= 17.0 * 1.2 - 1e-9
    )  # log x over the bins present
    assert all(line.get_clip_on() is False for line in ax.lines)
    plt.close(fig)
    csv, png, frame = R.write_distance_curves(curves, tmp_path / "distance_curve", "test split")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = pd.read_csv(csv)
    assert list(back["model"].unique()) == ["model", "baseline"] and len(back) == 7
    np.testing.assert_allclose(back["recall"], frame["recall"])
    # one model without the model column (the training callback's CSV, as before)
    csv1, _, _ = R.write_distance_curves({"model": curves["model"]}, tmp_path / "one",
                                         model_column=False)  # fmt: skip
    assert "model" not in pd.read_csv(csv1).columns


def test_erf_figure_and_files(tmp_path):
    grid = np.arange(0.0, 30.0)
    curve = np.clip(grid / 20.0, 0, 1)
    erf = ERFResult(grid=grid, mean_curve={"road": curve, "all": curve},
                    radius={"road": {0.5: 10.0, 0.99: 20.0}, "all": {0.5: 10.0, 0.99: 20.0}},
                    median_radius={"road": {0.5: 10.0, 0.99: 20.0}, "all": {0.5: 10.0, 0.99: 20.0}},
                    n={"road": 3, "all": 6})  # fmt: skip
    fig = R.erf_figure(erf, title="model, 2 images", synthetic=True)
    ax = fig.axes[0]
    assert "(synthetic data)" in ax.get_title() and ax.get_ylim()[1] > 1.0
    assert ax.get_xlim() == (0.0, 29.0)
    plt.close(fig)
    paths = R.write_erf(erf, tmp_path, "model")
    assert {p.name for p in tmp_path.iterdir()} >= {"erf_radii.csv", "erf_radii.md", "erf.png",
                                                    "erf_curves.csv"}  # fmt: skip
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
