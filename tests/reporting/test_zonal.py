"""Zonal report and figures: tables, plots, and the synthetic tag on everything made from stand-ins."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

import geoemb.reporting.zonal as rz
from geoemb.errors import OutputError
from geoemb.zonal import CensusAnalysis, evaluate_features, pca_rgb_raster


@pytest.fixture
def titles(monkeypatch):
    """Titles of every figure saved by geoemb.reporting.zonal (file name -> axes titles)."""
    seen: dict[str, list[str]] = {}
    save = rz._save

    def spy(fig, path):
        seen[path.name] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        return save(fig, path)

    monkeypatch.setattr(rz, "_save", spy)
    return seen


def _evaluation(n_splits=5):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    t = pd.DataFrame({"log_land_area": X[:, 0] + rng.normal(0, 0.3, 120),
                      "urban": (X[:, 1] > 0).astype(float)})  # fmt: skip
    return evaluate_features(X, t, "urban", pca_k=3, n_pcs=2, n_splits=n_splits)


def _features(tmp_path, source):
    rng = np.random.default_rng(1)
    n = 40
    gdf = gpd.GeoDataFrame(
        {"ALAND20": rng.integers(1e4, 1e6, n), "POP20": rng.integers(0, 300, n),
         "UR20": np.where(np.arange(n) % 2, "U", "R"),
         **{f"emb_mean_{i:02d}": rng.normal(size=n) for i in range(4)}},
        geometry=[box(500_000 + 100 * i, 5e6, 500_000 + 100 * i + 90, 5e6 + 90) for i in range(n)],
        crs="EPSG:32610",
    )  # fmt: skip
    gdf.attrs["zonal"] = {"feature_columns": [f"emb_mean_{i:02d}" for i in range(4)],
                          "data_source": source}  # fmt: skip
    return gdf


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_report_and_plots_carry_the_data_source(tmp_path, titles, source):
    ev = _evaluation()
    ev.data_source = source
    report = rz.write_report(ev, tmp_path / "r").read_text()
    suffix = rz.SYNTHETIC_SUFFIX
    assert set(titles) == {"r2.png", "pc_scatter.png"}
    assert all(t.endswith(suffix) == (source == "synthetic") for ts in titles.values() for t in ts)
    assert report.startswith(
        "# Zonal embedding statistics" + (suffix if source == "synthetic" else "\n")
    )
    assert ("data_source=synthetic" in report) == (source == "synthetic")
    for name in ("r2.csv", "r2.md", "r2.tex", "classification.csv", "pc_correlations.md"):
        assert (tmp_path / "r" / name).exists(), name
    assert "![r2](r2.png)" in report and "![pc_scatter](pc_scatter.png)" in report


def test_classification_header_names_the_folds(tmp_path):
    # regression: the header said "5-fold" whatever n_splits was
    report = rz.write_report(_evaluation(n_splits=3), tmp_path).read_text()
    assert "stratified 3-fold CV" in report and "5-fold" not in report


def test_pca_rgb_raster_and_preview_tagged_from_the_features(tmp_path, titles):
    feats = _features(tmp_path, "synthetic")
    tif = pca_rgb_raster(feats, tmp_path / "rgb.tif", 30.0)
    with rasterio.open(tif) as ds:
        assert ds.tags()["data_source"] == "synthetic"
    rz.pca_rgb_preview(tif, tmp_path / "rgb.png", "PCA-3 RGB")
    assert titles["rgb.png"] == ["PCA-3 RGB (synthetic data)"]
    real = pca_rgb_raster(_features(tmp_path, "real"), tmp_path / "real.tif", 30.0)
    with rasterio.open(real) as ds:
        assert ds.tags()["data_source"] == "real"
    rz.pca_rgb_preview(real, tmp_path / "real.png")
    assert titles["real.png"] == ["PCA-3 RGB"]
    # an explicit tag wins over the record (the evaluator knows it runs on the stand-in)
    forced = pca_rgb_raster(_features(tmp_path, "real"), tmp_path / "f.tif", 30.0,
                            data_source="synthetic")  # fmt: skip
    with rasterio.open(forced) as ds:
        assert ds.tags()["data_source"] == "synthetic"


def test_evaluate_file_reports_synthetic_features_and_refuses_a_file_as_folder(tmp_path):
    ev = rz.evaluate_file(_features(tmp_path, "synthetic"), tmp_path / "e",
                          CensusAnalysis(pca_k=2, n_pcs=2, n_splits=2))  # fmt: skip
    assert ev.data_source == "synthetic"
    assert "data_source=synthetic" in (tmp_path / "e" / "report.md").read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="existing file"):
        rz.evaluate_file(_features(tmp_path, "real"), tmp_path / "file")


def test_preview_of_an_untagged_raster_is_untitled_suffix(tmp_path, titles):
    p = tmp_path / "plain.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint8",
                       crs="EPSG:32610", transform=from_origin(0, 40, 10, 10)) as dst:  # fmt: skip
        dst.write(np.zeros((3, 4, 4), np.uint8))
    rz.pca_rgb_preview(p, tmp_path / "plain.png", "map")
    assert titles["plain.png"] == ["map"]
