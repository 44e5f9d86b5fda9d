"""GeoParquet 1.1 output, PCA-RGB GeoTIFF, and the evaluation numbers vs sklearn/scipy."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from geoemb.zonal import (
    census_targets,
    cv_logistic_accuracy,
    majority_baseline,
    ols_r2,
    pc_correlations,
    pca_colors,
    pca_rgb_raster,
    read_features,
    write_geoparquet,
    zonal_stats,
)


@pytest.fixture(scope="module")
def features(two_zone):
    return zonal_stats(
        two_zone["polygons"],
        tiles=list(two_zone["tiles"].values()),
        land_column=None,
        progress=False,
    )


def test_geoparquet_1_1_round_trip(features, tmp_path):
    path = write_geoparquet(features, tmp_path / "f.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]  # no temp files left
    meta = pq.read_schema(path).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and set(col["geometry_types"]) <= {"Polygon", "MultiPolygon"}
    assert col["covering"]["bbox"] == {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}
    table = pq.read_table(path)
    bbox = table.column("bbox").to_pylist()
    for b, g in zip(bbox, features.geometry, strict=True):
        np.testing.assert_allclose(
            [b["xmin"], b["ymin"], b["xmax"], b["ymax"]], g.bounds, rtol=0, atol=1e-5
        )
    back, cols = read_features(path)
    assert (
        back.crs == features.crs and back.geometry.geom_equals_exact(features.geometry, 1e-12).all()
    )
    assert cols == features.attrs["zonal"]["feature_columns"] and len(cols) == 10
    pd.testing.assert_frame_equal(
        pd.DataFrame(back.drop(columns="geometry")),
        pd.DataFrame(features.drop(columns="geometry")).reset_index(drop=True),
        check_dtype=False,
    )
    assert back.attrs["zonal"]["method"] == "mean_std"


def test_pca_rgb_geotiff(features, tmp_path):
    gdf = features.dropna(subset=["emb_mean_00"]).to_crs("EPSG:32610")
    out = pca_rgb_raster(gdf, tmp_path / "rgb.tif", resolution=7.0)
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3 and ds.nodata == 0
        assert ds.crs.to_epsg() == 32610 and ds.res == (7.0, 7.0)
        minx, miny, maxx, maxy = gdf.total_bounds
        assert ds.bounds.left <= minx and ds.bounds.top >= maxy
        assert ds.bounds.right >= maxx and ds.bounds.bottom <= miny
        assert ds.bounds.left % 7.0 == 0 and ds.bounds.right - maxx < 7.0
        img = ds.read()
        colors, evr = pca_colors(
            gdf[[c for c in gdf.columns if c.startswith("emb_")]].to_numpy(), 3
        )
        for k, geom in enumerate(gdf.geometry):
            p = geom.representative_point()
            r, c = ds.index(p.x, p.y)
            np.testing.assert_array_equal(img[:, r, c], colors[k])
        assert (img == 0).all(axis=0).any()  # outside the polygons is nodata
    assert colors.min() >= 1 and 0 < evr.sum() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb.tif"]


def _toy(seed=0, n=150, f=12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = X @ rng.normal(size=f) + rng.normal(size=n) * 2
    yb = (X[:, 0] + 0.8 * rng.normal(size=n) > 0.3).astype(int)
    return X, y, yb


def test_r2_and_cv_accuracy_equal_sklearn():
    for seed in (1, 2):
        X, y, yb = _toy(seed)
        want = LinearRegression().fit(X, y).score(X, y)
        assert ols_r2(X, y) == pytest.approx(want, abs=1e-10)
        mean, std, folds = cv_logistic_accuracy(X, yb, n_splits=5, seed=seed)
        sk = cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            X,
            yb,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
        )
        np.testing.assert_allclose(folds, sk)
        assert mean == pytest.approx(sk.mean()) and std == pytest.approx(sk.std())
        assert majority_baseline(yb) == pytest.approx(max(yb.mean(), 1 - yb.mean()))
    # collinear features: R² still equals sklearn's
    X, y, _ = _toy(3)
    X = np.hstack([X, X[:, :2] * 2.0])
    assert ols_r2(X, y) == pytest.approx(LinearRegression().fit(X, y).score(X, y), abs=1e-8)


def test_pc_correlations_and_census_targets():
    X, y, yb = _toy(4)
    df = pd.DataFrame(
        {
            "POP20": [0, 10, 100, 5],
            "HOUSING20": [0, 4, 40, 2],
            "ALAND20": [1e6, 2e6, 0, 5e5],
            "AWATER20": [0, 1e6, 3e6, 5e5],
            "UR20": ["R", "U", "U", "R"],
        }
    )
    t = census_targets(df)
    np.testing.assert_allclose(t["log_population"], np.log1p([0, 10, 100, 5]))
    np.testing.assert_allclose(t["water_fraction"], [0, 1 / 3, 1, 0.5])
    np.testing.assert_allclose(t["pop_density"], [0, 5, np.nan, 10])
    assert np.isnan(t["log_land_area"][2]) and list(t["urban"]) == [0, 1, 1, 0]
    targets = pd.DataFrame({"y": y, "yb": yb.astype(float)})
    Z = X[:, :3]
    tab = pc_correlations(Z, targets, n_pcs=3)
    for i, name in enumerate(["y", "yb"]):
        for j in range(3):
            assert tab.loc[i, f"PC{j + 1}"] == pytest.approx(
                pearsonr(Z[:, j], targets[name]).statistic
            )


def test_geoparquet_features_readable_with_plain_geopandas(features, tmp_path):
    path = write_geoparquet(features, tmp_path / "g.parquet")
    g = gpd.read_parquet(path, bbox=features.total_bounds)  # uses the covering bbox column
    assert len(g) == len(features)
