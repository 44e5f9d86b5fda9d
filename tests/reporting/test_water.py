"""Prediction panels: one colour per class in truth and prediction, nodata grey, legend, tag."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from geoemb.reporting import water as W


def _sample():
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 2000, size=(4, 16, 16)).astype(np.float32)
    image[:, :3, :] = 0.0  # warp-fill rows (all bands 0)
    image[1, 5, 5] = np.nan  # a non-finite band
    target = (np.arange(16)[None, :] >= 8).repeat(16, 0).astype(np.int64)
    target[15, :] = 255  # ignored label
    pred = 1 - target.clip(0, 1)  # every valid pixel wrong: colours must swap, not differ
    return image, target, pred


def test_nodata_mask_covers_fill_nonfinite_and_ignore():
    image, target, _ = _sample()
    bad = W.nodata_mask(image, target, ignore_index=255)
    assert bad[:3].all() and bad[5, 5] and bad[15].all()
    assert bad.sum() == 3 * 16 + 1 + 16
    assert not W.nodata_mask(image, target, None)[15, 4]  # no ignore index: label 255 is a class


def test_truth_and_prediction_share_colours_and_nodata_is_grey():
    image, target, pred = _sample()
    fig = W.prediction_figure(image, target, pred, rgb_bands=[2, 1, 0], class_names=["land", "water"],
                              num_classes=2, ignore_index=255, synthetic=True, title="chip 0")  # fmt: skip
    img_ax, truth_ax, pred_ax = fig.axes[:3]
    truth = truth_ax.images[0].get_array()
    predicted = pred_ax.images[0].get_array()
    colors = W.class_colors(2)
    np.testing.assert_allclose(truth[8, 0], colors[0], atol=1e-6)  # land in truth
    np.testing.assert_allclose(predicted[8, 8], colors[0], atol=1e-6)  # land in prediction
    np.testing.assert_allclose(truth[8, 8], colors[1], atol=1e-6)
    for arr in (img_ax.images[0].get_array(), truth, predicted):
        np.testing.assert_allclose(arr[0, 0], W.NODATA_COLOR, atol=1e-6)  # fill
        np.testing.assert_allclose(arr[15, 9], W.NODATA_COLOR, atol=1e-6)  # ignored label
        np.testing.assert_allclose(arr[5, 5], W.NODATA_COLOR, atol=1e-6)  # non-finite band
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["land", "water", "nodata / ignored"]
    assert fig._suptitle.get_text() == "chip 0 (synthetic data)"
    assert [a.get_title() for a in (img_ax, truth_ax, pred_ax)] == ["image", "truth", "prediction"]
    plt.close(fig)


def test_panels_to_png(tmp_path):
    image, target, pred = _sample()
    panels = [W.prediction_panel(image, target, pred, num_classes=2, ignore_index=255)
              for _ in range(2)]  # fmt: skip
    assert panels[0].dtype == np.uint8 and panels[0].shape[2] == 3
    png = W.save_prediction_panels(panels, tmp_path / "predictions" / "epoch_000.png")
    back = plt.imread(png)
    assert back.shape[0] == 2 * panels[0].shape[0] + 6
