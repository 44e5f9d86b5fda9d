"""``weighting="coverage"`` against exactextract (an independent implementation of fractional
pixel coverage) on random polygons, and the numpy pixel-centre scanline against GDAL's
rasterisation (``rasterio.features.geometry_mask``)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin

from geoemb.errors import InputError
from geoemb.zonal import zonal_stats
from geoemb.zonal.masks import centre_mask, coverage_fractions, to_pixel_space
from tests.zonal.zonal_helpers import write_tile

exactextract = pytest.importorskip("exactextract")

CRS = "EPSG:32633"
X0, Y0, RES, N, D = 500_000.0, 5_000_000.0, 10.0, 96, 3
KW = {"land_column": None, "progress": False, "num_workers": 1}


def random_polygons(rng: np.random.Generator, n: int, rmin: float, rmax: float) -> list:
    """Star-shaped random polygons (some with a hole, some multi-part) inside the tile."""
    out = []
    while len(out) < n:
        cx, cy = X0 + rng.uniform(60, N * RES - 60), Y0 - rng.uniform(60, N * RES - 60)
        k = int(rng.integers(3, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(rmin, rmax) * rng.uniform(0.4, 1.0, k)
        g = shapely.make_valid(
            shapely.Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
        )
        if len(out) % 4 == 1:
            g = g.difference(shapely.Point(cx, cy).buffer(rad.min() * 0.3))
        if len(out) % 5 == 2:
            g = g.union(shapely.box(cx + 25, cy + 3, cx + 31.7, cy + 9.1))
        if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0:
            out.append(g)
    return out


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    rng = np.random.default_rng(2026)
    data = rng.normal(size=(D, N, N)).astype(np.float32) * 3 + 1
    data[:, 5:8, 5:8] = -9999.0  # nodata pixels are excluded by both
    path = tmp_path_factory.mktemp("coverage") / "t.tif"
    return write_tile(path, data, CRS, from_origin(X0, Y0, RES, RES), -9999.0)


def _exactextract(tile, gdf: gpd.GeoDataFrame, ops: list[str]):
    return exactextract.exact_extract(str(tile), gdf, ops, output="pandas")


def test_coverage_mean_std_equal_exactextract(tile):
    rng = np.random.default_rng(7)  # not tuned: any seed must pass
    small = random_polygons(rng, 40, 2.0, 9.0)  # smaller than a pixel: often no pixel centre
    large = random_polygons(rng, 40, 15.0, 120.0)
    gdf = gpd.GeoDataFrame({"i": range(80)}, geometry=small + large, crs=CRS)
    ours = zonal_stats(gdf, tiles=[tile], method="mean_std", weighting="coverage", **KW)
    ref = _exactextract(tile, gdf, ["mean", "stdev"])
    for b in range(D):
        np.testing.assert_allclose(ours[f"emb_mean_{b:02d}"], ref[f"band_{b + 1}_mean"],
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(ours[f"emb_std_{b:02d}"], ref[f"band_{b + 1}_stdev"],
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
    # the coverage fractions themselves (exactextract stores them as float32)
    cov = exactextract.exact_extract(str(tile), gdf.iloc[:10], ["coverage"], output="pandas")
    with rasterio.open(tile) as ds:
        for k in range(10):
            geom = gdf.geometry.iloc[k]
            r = sorted(cov["band_1_coverage"].iloc[k])[::-1]
            f = coverage_fractions(to_pixel_space(geom, ds.transform, 0, 0), N, N)
            mine = sorted(f[f > 0].tolist())[::-1]
            np.testing.assert_allclose(mine, r, rtol=0, atol=1e-7)
    centre = zonal_stats(gdf, tiles=[tile], method="mean_std", **KW)
    no_centre = centre.pixel_count.to_numpy() == 0
    assert no_centre.sum() >= 5  # small polygons without a pixel centre: NaN in centre mode ...
    assert centre.loc[no_centre, "emb_mean_00"].isna().all()
    assert ours.loc[no_centre, "emb_mean_00"].notna().all()  # ... a value with coverage
    assert (ours.pixel_count >= centre.pixel_count).all()


def test_coverage_refuses_other_methods_and_all_touched(tile):
    gdf = gpd.GeoDataFrame(geometry=[shapely.box(X0 + 100, Y0 - 300, X0 + 300, Y0 - 100)], crs=CRS)
    with pytest.raises(InputError, match="weighting='coverage' supports"):
        zonal_stats(gdf, tiles=[tile], method="median_iqr", weighting="coverage", **KW)
    with pytest.raises(InputError, match="all_touched must be false"):
        zonal_stats(gdf, tiles=[tile], weighting="coverage", all_touched=True, **KW)
    with pytest.raises(InputError, match="weighting must be"):
        zonal_stats(gdf, tiles=[tile], weighting="area", **KW)


@pytest.mark.parametrize("seed", [0, 1])
def test_centre_scanline_equals_gdal(seed):
    rng = np.random.default_rng(seed)
    t = from_origin(X0, Y0, RES, RES)
    polys = random_polygons(rng, 150, 3.0, 200.0)
    for k in range(60):  # ties: axis-aligned boxes with edges on pixel centres
        x0, y0 = rng.integers(0, 80, 2) * 0.5
        w, h = rng.integers(1, 30, 2) * 0.5
        polys.append(shapely.box(X0 + x0 * RES, Y0 - (y0 + h) * RES, X0 + (x0 + w) * RES,
                                 Y0 - y0 * RES))  # fmt: skip
        if k % 2:
            polys[-1] = polys[-1].reverse()
    for g in polys:
        gdal = rasterio.features.geometry_mask([g], out_shape=(N, N), transform=t, invert=True)
        np.testing.assert_array_equal(centre_mask(to_pixel_space(g, t, 0, 0), N, N), gdal)


def _grid_polygons(rng: np.random.Generator, n: int) -> list:
    """Polygons on pixel edges (pixel space): grid-aligned boxes, triangles with grid-corner
    vertices, a box with a grid-aligned hole, multi-part grids, some reaching out of the window."""
    out = []
    for k in range(n):
        x0, y0 = rng.integers(-3, 20, 2).astype(float)
        w, h = rng.integers(1, 8, 2).astype(float)
        if k % 4 == 0:
            g = shapely.box(x0, y0, x0 + w, y0 + h)
        elif k % 4 == 1:
            g = shapely.Polygon([(x0, y0), (x0 + w, y0), (x0, y0 + h)])
        elif k % 4 == 2:
            g = shapely.box(x0, y0, x0 + w + 2, y0 + h + 2).difference(
                shapely.box(x0 + 1, y0 + 1, x0 + w + 1, y0 + h + 1))  # fmt: skip
        else:
            g = shapely.MultiPolygon([shapely.box(x0, y0, x0 + 1, y0 + 1),
                                      shapely.box(x0 + 2, y0 + 0.5, x0 + 3.5, y0 + h)])  # fmt: skip
        out.append(g.reverse() if k % 3 == 0 else g)
    return out


def test_coverage_fractions_equal_geos_areas():
    """Every pixel's fraction equals the GEOS area of polygon ∩ pixel (an independent exact
    clip) on random, sub-pixel, holed, multi-part, pixel-edge and partly-outside polygons."""
    rng = np.random.default_rng(11)
    h, w = 17, 23
    polys = _grid_polygons(rng, 24)
    for k in range(60):
        cx, cy = rng.uniform(-2, 25), rng.uniform(-2, 19)
        kk = int(rng.integers(3, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, kk))
        rad = rng.uniform(0.05, 9.0) * rng.uniform(0.4, 1.0, kk)
        g = shapely.make_valid(shapely.Polygon(np.c_[cx + rad * np.cos(ang),
                                                     cy + rad * np.sin(ang)]))  # fmt: skip
        if k % 3 == 0:
            g = g.difference(shapely.Point(cx, cy).buffer(rad.min() * 0.4))
        if k % 4 == 0:
            g = g.union(shapely.box(cx + 9.3, cy + 0.2, cx + 10.1, cy + 2.7))
        polys.append(g)
    cc, rr = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    cells = shapely.box(cc, rr, cc + 1, rr + 1)
    for g in polys:
        ref = shapely.area(shapely.intersection(g, cells))
        np.testing.assert_allclose(coverage_fractions(g, h, w), ref, rtol=0, atol=1e-12)


def test_coverage_on_pixel_edges_equals_exactextract(tile):
    t = from_origin(X0, Y0, RES, RES)
    rng = np.random.default_rng(5)
    polys = [shapely.transform(g, lambda xy: np.c_[X0 + (xy[:, 0] + 30) * RES,
                                                   Y0 - (xy[:, 1] + 30) * RES])
             for g in _grid_polygons(rng, 40)]  # fmt: skip
    polys += [
        shapely.box(X0 + 400.0, Y0 - 405.0, X0 + 405.0, Y0 - 400.0),  # a quarter pixel
        shapely.box(X0 + 40.0, Y0 - 40.0, X0 + 60.0, Y0 - 30.0),
    ]  # beside nodata
    gdf = gpd.GeoDataFrame({"i": range(len(polys))}, geometry=polys, crs=CRS)
    ours = zonal_stats(gdf, tiles=[tile], method="mean_std", weighting="coverage", **KW)
    ref = _exactextract(tile, gdf, ["mean", "stdev"])
    with rasterio.open(tile) as ds:
        assert ds.transform == t
    for b in range(D):
        np.testing.assert_allclose(ours[f"emb_mean_{b:02d}"], ref[f"band_{b + 1}_mean"],
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(ours[f"emb_std_{b:02d}"], ref[f"band_{b + 1}_stdev"],
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
