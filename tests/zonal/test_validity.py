"""Invalid pixels are never data: NaN/±inf in any band, declared nodata (also NaN), GDAL mask
bands. They are excluded from every statistic and from ``pixel_count``; a tile whose pixels under
the polygons are all invalid warns."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from geoemb.zonal import feature_names, zonal_stats
from geoemb.zonal.checks import ZonalWarning
from tests.zonal.zonal_helpers import oracle_pixels, write_tile

CRS = "EPSG:32633"
T = from_origin(500_000, 5_000_000, 10, 10)
POLYS = gpd.GeoDataFrame(
    {"name": ["a", "b", "c"]},
    geometry=[
        box(500_003, 4_999_803, 500_147, 4_999_997),  # over the invalid pixels
        box(500_053, 4_999_703, 500_191, 4_999_851),
        box(500_103, 4_999_903, 500_197, 4_999_997),  # invalid-only corner (see data)
    ],
    crs=CRS,
)


def _data(d: int = 3) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(d, 30, 30)).astype(np.float32)
    x[0, 2, 2] = np.nan  # NaN in one band only
    x[1, 3, 4] = np.inf
    x[2, 5, 1] = -np.inf
    x[:, 7, 7] = np.nan  # all bands
    x[:, 8:10, 0:5] = -9999.0  # declared nodata
    x[:, 0:10, 10:20] = np.nan  # polygon "c" sees only invalid pixels
    x[1, 12, 12] = 3.0e38  # huge but finite: valid
    return x


def _check(out, tile, method="stats"):
    d = 3
    cols = feature_names(method, d, 4 * d)
    for _, row in out.iterrows():
        ref, _ = oracle_pixels(row.geometry, out.crs, [tile])
        assert np.isfinite(ref).all()
        assert row["pixel_count"] == len(ref), row["name"]
        got = row[cols].to_numpy(dtype=float)
        if not len(ref):
            assert np.isnan(got).all()
            continue
        want = np.concatenate([ref.min(0), ref.max(0), ref.mean(0), ref.std(0)])
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=row["name"])


@pytest.mark.parametrize("declared", [-9999.0, float("nan"), None])
def test_nan_inf_and_nodata_pixels_are_excluded(tmp_path, declared):
    x = _data()
    if declared is None:  # no nodata declared: -9999 is data, NaN/inf still invalid
        x[:, 8:10, 0:5] = 1.5
    tile = write_tile(tmp_path / "f.tif", x, CRS, T, declared)
    out = zonal_stats(POLYS, tiles=[tile], method="stats", land_column=None, progress=False)
    _check(out, tile)
    by = out.set_index("name")
    assert by.loc["c", "pixel_count"] == 0 and by.loc["a", "pixel_count"] > 0
    # the invalid pixels really lie under "a": a NaN-blind count would be larger
    n_cells = len(oracle_pixels(POLYS.geometry[0], CRS, [write_tile(tmp_path / "z.tif",
                  np.zeros_like(x), CRS, T)])[0])  # fmt: skip
    assert by.loc["a", "pixel_count"] < n_cells


def test_tile_all_nodata_under_polygons_warns(tmp_path):
    tile = write_tile(tmp_path / "f.tif", _data(), CRS, T, -9999.0)
    with pytest.warns(ZonalWarning, match="all 100 pixels under the polygons are nodata"):
        out = zonal_stats(POLYS.iloc[[2]], tiles=[tile], land_column=None, progress=False)
    assert out.pixel_count.iloc[0] == 0 and out.filter(like="emb_").isna().all(axis=None)


def test_gdal_mask_band_is_honoured(tmp_path):
    x = np.random.default_rng(3).normal(size=(3, 30, 30)).astype(np.float32)
    mask = np.full((30, 30), 255, np.uint8)
    mask[0:6, 0:8] = 0
    path = tmp_path / "m.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=30, height=30, count=3,
                           dtype="float32", crs=CRS, transform=T) as dst:  # fmt: skip
            dst.write(x)
            dst.write_mask(mask)
    out = zonal_stats(POLYS.iloc[[0]], tiles=[path], method="stats", land_column=None,
                      progress=False)  # fmt: skip
    r0, c0 = 0, 0  # polygon "a": rows 0..19, cols 0..14 (pixel centres inside)
    inside = np.zeros((30, 30), bool)
    inside[r0:20, c0:15] = True
    ok = inside & (mask > 0)
    ref = x[:, ok].T.astype(np.float64)
    assert out.pixel_count.iloc[0] == ok.sum() < inside.sum()
    want = np.concatenate([ref.min(0), ref.max(0), ref.mean(0), ref.std(0)])
    np.testing.assert_allclose(out.filter(like="emb_").to_numpy()[0], want, rtol=1e-5)
