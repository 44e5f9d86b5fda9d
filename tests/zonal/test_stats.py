"""Per-polygon features vs a brute-force rasterise-and-pool oracle; empties; filters; errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from geoemb.zonal import apply_filters, decode_values, feature_names, zonal_stats
from tests.zonal.zonal_helpers import NODATA, D, reference_pixels, write_tile


def _run(two_zone, **kw):
    kw.setdefault("land_column", None)
    kw.setdefault("progress", False)
    kw.setdefault("num_workers", 2)
    return zonal_stats(two_zone["polygons"], **kw)


@pytest.mark.parametrize("all_touched", [False, True])
@pytest.mark.parametrize("source", ["tiles", "index"])
def test_mean_std_matches_bruteforce(two_zone, all_touched, source):
    kw = (
        {"tiles": list(two_zone["tiles"].values())}
        if source == "tiles"
        else {"tile_index": two_zone["index"], "index_filter": {"year": 2020}}
    )
    out = _run(two_zone, all_touched=all_touched, chunk_size=3, **kw)
    names = feature_names("mean_std", D, 2 * D)
    assert names[0] == "emb_mean_00" and names[-1] == f"emb_std_{D - 1:02d}"
    assert list(out["name"]) == list(two_zone["polygons"]["name"])
    for _, row in out.iterrows():
        ref = reference_pixels(row.geometry, two_zone["tiles"].values(), all_touched)
        assert row["pixel_count"] == len(ref), row["name"]
        got = row[names].to_numpy(dtype=float)
        if len(ref) == 0:
            assert np.isnan(got).all(), row["name"]
        else:
            want = np.concatenate([ref.mean(0), ref.std(0)])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=row["name"])
    by = out.set_index("name")
    # the designed cases really exercise tile boundaries and the two CRSs
    assert by.loc["A_B", "tile_count"] == 2 and by.loc["tri_3", "tile_count"] == 3
    assert by.loc["A_A2", "tile_count"] == 2 and by.loc["multi", "tile_count"] == 2
    assert by.loc["outside", "pixel_count"] == 0 and by.loc["nodata_only", "pixel_count"] == 0
    assert by.loc["inside_A", "pixel_count"] > 0
    assert out.crs.to_epsg() == 4326 and out.geometry.equals(two_zone["polygons"].geometry)


def test_stats_method_and_single_thread_identical(two_zone):
    tiles = list(two_zone["tiles"].values())
    a = _run(two_zone, tiles=tiles, method="stats", num_workers=1)
    b = _run(two_zone, tiles=tiles, method="stats", num_workers=3, chunk_size=2)
    cols = feature_names("stats", D, 4 * D)
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())
    row = a.set_index("name").loc["tri_3"]
    ref = reference_pixels(row.geometry, tiles, False)
    want = np.concatenate([ref.min(0), ref.max(0), ref.mean(0), ref.std(0)])
    np.testing.assert_allclose(row[cols].to_numpy(dtype=float), want, rtol=1e-5, atol=1e-5)


def test_all_invalid_polygons_give_nan_rows(two_zone):
    out = _run(two_zone, tiles=list(two_zone["tiles"].values())).set_index("name")
    feats = out.filter(like="emb_")
    for name in ("outside", "nodata_only"):
        assert feats.loc[name].isna().all() and out.loc[name, "pixel_count"] == 0
    assert feats.drop(index=["outside", "nodata_only"]).notna().all().all()
    assert out.attrs["zonal"]["n_empty"] == 2


def test_aef_decoding_uint8_int8_and_nodata_override(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 255, size=(4, 10, 10), dtype=np.uint8)
    codes[:, 0, :] = 255  # nodata row, declared only through the override
    t = from_origin(500000, 5000000, 10, 10)
    p8 = write_tile(tmp_path / "u8.tif", codes, "EPSG:32633", t)
    pi = write_tile(
        tmp_path / "i8.tif", (codes.astype(np.int16) - 127).astype(np.int8), "EPSG:32633", t
    )
    poly = gpd.GeoDataFrame(geometry=[box(500000, 4999900, 500100, 5000000)], crs="EPSG:32633")
    q = codes[:, 1:, :].reshape(4, -1).T.astype(np.float64) - 127
    x = np.sign(q) * (np.abs(q) / 127.5) ** 2
    want = np.concatenate([x.mean(0), x.std(0)])
    for path, nd in ((p8, 255), (pi, -128)):  # code 255 - 127 = 128 wraps to -128 as int8
        out = zonal_stats(
            poly, tiles=[path], decode="aef", nodata=nd, land_column=None, progress=False
        )
        assert out.pixel_count.iloc[0] == 90
        np.testing.assert_allclose(
            out.filter(like="emb_").to_numpy()[0], want, rtol=1e-5, atol=1e-6
        )
    raw = zonal_stats(poly, tiles=[p8], decode="raw", land_column=None, progress=False)
    assert raw.pixel_count.iloc[0] == 100
    np.testing.assert_allclose(raw["emb_mean_00"].iloc[0], codes[0].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="decode"):
        decode_values(np.zeros(3, np.float32), "aef", "float32")


def test_filters_as_the_post():
    gdf = gpd.GeoDataFrame(
        {"ALAND20": [0, 10_000, 25_000_000, 25_000_001, 5]},
        geometry=[box(i, 0, i + 1, 1) for i in range(5)],
        crs="EPSG:4326",
    )
    kept, counts = apply_filters(gdf)
    assert list(kept.index) == [1, 2, 4]
    assert counts == {"input": 5, "all_water": 1, "oversized": 1, "kept": 3}
    kept, _ = apply_filters(gdf, max_land_km2=None, drop_zero_land=False)
    assert len(kept) == 5
    kept, c = apply_filters(gdf, bbox=(0.5, 0.2, 1.5, 0.8))
    assert list(kept.index) == [1] and c["outside_bbox"] == 3
    with pytest.raises(ValueError, match="AREA"):
        apply_filters(gdf, land_column="AREA")
    assert len(apply_filters(gdf, land_column=None)[0]) == 5


def test_clear_errors(two_zone, tmp_path):
    polys = two_zone["polygons"]
    # the index's 2019 row points to a missing file
    with pytest.raises(FileNotFoundError, match="missing_2019.tif"):
        zonal_stats(polys, tile_index=two_zone["index"], land_column=None, progress=False)
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        zonal_stats(polys, tiles=[tmp_path / "nope.tif"], land_column=None, progress=False)
    with pytest.raises(ValueError, match="no CRS"):
        zonal_stats(
            polys.set_crs(None, allow_override=True),
            tiles=list(two_zone["tiles"].values()),
            progress=False,
        )
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(
        nocrs, "w", driver="GTiff", width=4, height=4, count=D, dtype="float32"
    ) as dst:
        dst.write(np.zeros((D, 4, 4), np.float32))
    with pytest.raises(ValueError, match="nocrs.tif has no CRS"):
        zonal_stats(polys, tiles=[nocrs], land_column=None, progress=False)
    nocrs_poly = tmp_path / "p.gpkg"
    polys.to_file(nocrs_poly)
    with pytest.raises(FileNotFoundError, match="absent.gpkg"):
        zonal_stats(tmp_path / "absent.gpkg", tiles=[nocrs], progress=False)
    with pytest.raises(ValueError, match="path column"):
        zonal_stats(polys, tile_index=polys.assign(foo=1), land_column=None, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        zonal_stats(polys, land_column=None, progress=False)
    with pytest.raises(ValueError):
        zonal_stats(
            polys,
            tiles=list(two_zone["tiles"].values()),
            method="nope",
            land_column=None,
            progress=False,
        )
    assert NODATA < 0
