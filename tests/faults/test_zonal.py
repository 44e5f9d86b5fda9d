"""Zonal statistics as a hostile user drives them: damaged files, odd CRSs, NaN tiles, bad output
paths, odd geometries. Each case gives a correct result or ONE geoemb error naming the file and
what was expected, raised before any pixel is read. (kill -9 cases: test_zonal_kill.py.)"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import GeometryCollection, Point, Polygon, box

import geoemb.zonal.distributed as zdist
from geoemb.errors import InputError, OutputError
from geoemb.zonal import feature_names, zonal_stats
from geoemb.zonal.__main__ import main
from geoemb.zonal.checks import ZonalWarning
from tests.zonal.zonal_helpers import oracle_pixels, write_tile

pytestmark = pytest.mark.faults

CRS = "EPSG:32633"
D = 3
X0, Y0 = 500_000.0, 5_000_000.0
KW = {"land_column": None, "progress": False, "num_workers": 2}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Tiles A | B side by side (64² px, 10 m, tiled + deflate) and polygons across them."""
    root = tmp_path_factory.mktemp("zonal_faults")
    rng = np.random.default_rng(11)
    tiles = []
    for k in range(2):
        x = rng.normal(size=(D, 64, 64)).astype(np.float32) + k
        with rasterio.open(root / f"t{k}.tif", "w", driver="GTiff", width=64, height=64, count=D,
                           dtype="float32", crs=CRS, nodata=-9999.0, tiled=True, blockxsize=16,
                           blockysize=16, compress="deflate",
                           transform=from_origin(X0 + 640 * k, Y0, 10, 10)) as dst:  # fmt: skip
            dst.write(x)
        tiles.append(root / f"t{k}.tif")
    polys = gpd.GeoDataFrame(
        {"name": ["a", "ab", "b"]},
        geometry=[
            box(X0 + 33, Y0 - 297, X0 + 211, Y0 - 103),
            box(X0 + 587, Y0 - 401, X0 + 713, Y0 - 305),
            box(X0 + 901, Y0 - 599, X0 + 1003, Y0 - 451),
        ],  # fmt: skip
        crs=CRS,
    ).to_crs("EPSG:4326")
    polys.to_file(root / "polys.gpkg")
    polys.to_parquet(root / "polys.parquet")
    index = gpd.GeoDataFrame(
        {"path": ["t0.tif", "t1.tif"], "year": [2020, 2020]},
        geometry=[box(*rasterio.open(t).bounds) for t in tiles],
        crs=CRS,
    ).to_crs("EPSG:4326")
    index.to_file(root / "index.gpkg")
    index.to_parquet(root / "index.parquet")
    return {"root": root, "tiles": tiles, "polys": polys}


@pytest.fixture
def no_pixel_work(monkeypatch):
    """Fail the test if any pixel is read: errors must come before the expensive part."""

    def boom(*a, **k):
        raise AssertionError("pixel work started before the error")

    monkeypatch.setattr(zdist, "run_partition", boom)


def _truncate(src, dst, frac):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: int(len(data) * frac)])
    return dst


# --- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize("frac", [0.6, 0.01])
def test_truncated_tile(small, tmp_path, frac, no_pixel_work):
    bad = _truncate(small["tiles"][1], tmp_path / "t1.tif", frac)
    with pytest.raises(InputError, match=r"t1\.tif.*(truncated|cannot read)"):
        zonal_stats(small["polys"], tiles=[small["tiles"][0], bad], **KW)


def test_corrupt_block_inside_tile(small, tmp_path):
    """Damage the cheap up-front check cannot see: the error comes from the read, still one
    InputError naming the tile and the window, not a rasterio traceback from a thread."""
    src = small["tiles"][0]
    data = bytearray(open(src, "rb").read())
    with rasterio.open(src) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        n = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    data[off : off + n] = b"\x00" * n
    (tmp_path / "t0.tif").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"cannot read embedding tile .*t0\.tif \(rows"):
        zonal_stats(small["polys"], tiles=[tmp_path / "t0.tif"], **KW)


@pytest.mark.parametrize("name", ["polys.gpkg", "polys.parquet"])
def test_truncated_polygon_file(small, tmp_path, name, no_pixel_work):
    bad = _truncate(small["root"] / name, tmp_path / name, 0.5)
    with pytest.raises(InputError, match=rf"cannot read polygon file .*{name}"):
        zonal_stats(bad, tiles=small["tiles"], **KW)


@pytest.mark.parametrize("name", ["index.gpkg", "index.parquet"])
def test_truncated_tile_index(small, tmp_path, name, no_pixel_work):
    bad = _truncate(small["root"] / name, tmp_path / name, 0.5)
    with pytest.raises(InputError, match=rf"cannot read tile index .*{name}"):
        zonal_stats(small["polys"], tile_index=bad, **KW)


def test_polygon_path_is_a_directory(small, tmp_path, no_pixel_work):
    with pytest.raises(InputError, match="is a directory"):
        zonal_stats(tmp_path, tiles=small["tiles"], **KW)


# --- CRS ---------------------------------------------------------------------------------------

ENGINEERING = (
    'ENGCRS["site grid",EDATUM["local"],CS[Cartesian,2],AXIS["x",east],AXIS["y",north],'
    'LENGTHUNIT["metre",1]]'
)


@pytest.mark.parametrize("crs", [ENGINEERING, "IAU_2015:49900"])  # local grid; Mars
def test_untransformable_polygon_crs(small, tmp_path, crs, no_pixel_work):
    path = tmp_path / "p.gpkg"
    small["polys"].set_crs(crs, allow_override=True).to_file(path)
    with pytest.raises(InputError, match=r"polygons .*p\.gpkg is in CRS .*cannot be transformed"):
        zonal_stats(path, tiles=small["tiles"], **KW)


def test_polygon_file_without_crs(small, tmp_path, no_pixel_work):
    path = tmp_path / "nocrs.parquet"
    small["polys"].set_crs(None, allow_override=True).to_parquet(path)
    with pytest.raises(InputError, match=r"nocrs\.parquet have no CRS"):
        zonal_stats(path, tiles=small["tiles"], **KW)


def test_metres_labelled_as_degrees(small, no_pixel_work):
    wrong = small["polys"].to_crs(CRS).set_crs("EPSG:4326", allow_override=True)
    with pytest.raises(InputError, match="projected coordinates labelled"):
        zonal_stats(wrong, tiles=small["tiles"], **KW)


# --- NaN / nodata / decode ----------------------------------------------------------------------


def test_all_nan_tile_gives_nan_rows_and_a_warning(small, tmp_path):
    tile = write_tile(tmp_path / "nan.tif", np.full((D, 64, 64), np.nan, np.float32), CRS,
                      from_origin(X0, Y0, 10, 10))  # fmt: skip
    with pytest.warns(ZonalWarning, match="nan.tif: all .* pixels under the polygons are nodata"):
        out = zonal_stats(small["polys"], tiles=[tile], **KW)
    assert (out.pixel_count == 0).all() and out.filter(like="emb_").isna().all(axis=None)


def test_nodata_override_the_dtype_cannot_hold(small, tmp_path, no_pixel_work):
    codes = np.zeros((D, 64, 64), np.int8)
    tile = write_tile(tmp_path / "i8.tif", codes, CRS, from_origin(X0, Y0, 10, 10))
    with pytest.raises(InputError, match=r"nodata 255.* int8 tile .*i8\.tif"):
        zonal_stats(small["polys"], tiles=[tile], nodata=255, **KW)


def test_aef_decode_of_float_tiles_refused_up_front(small, no_pixel_work):
    with pytest.raises(InputError, match="t0.tif is float32"):
        zonal_stats(small["polys"], tiles=small["tiles"], decode="aef", **KW)


# --- output paths -------------------------------------------------------------------------------


def test_output_is_an_existing_directory(small, tmp_path, no_pixel_work):
    with pytest.raises(OutputError, match="is an existing directory"):
        zonal_stats(small["polys"], tiles=small["tiles"], output=tmp_path, **KW)


@pytest.mark.parametrize("which", ["polygons", "index"])
def test_output_is_an_input(small, tmp_path, which, no_pixel_work):
    import shutil

    for f in ("polys.parquet", "index.parquet", "t0.tif", "t1.tif"):
        shutil.copy(small["root"] / f, tmp_path / f)
    target = tmp_path / ("polys.parquet" if which == "polygons" else "index.parquet")
    before = target.read_bytes()
    with pytest.raises(OutputError, match="is the input"):
        zonal_stats(tmp_path / "polys.parquet", tile_index=tmp_path / "index.parquet",
                    output=target, **KW)  # fmt: skip
    assert target.read_bytes() == before


def test_output_path_under_a_file_or_wrong_suffix(small, tmp_path, no_pixel_work):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        zonal_stats(small["polys"], tiles=small["tiles"], output=tmp_path / "f" / "o.parquet", **KW)
    with pytest.raises(OutputError, match=r"\.parquet"):
        zonal_stats(small["polys"], tiles=small["tiles"], output=tmp_path / "o.gpkg", **KW)


def test_cli_errors_are_one_line(small, tmp_path, capsys, no_pixel_work):
    rc = main(["stats", str(small["root"] / "polys.gpkg"), "--tiles", *map(str, small["tiles"]),
               "-o", str(tmp_path), "--land-column", "none", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "existing directory" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    feats = tmp_path / "f.parquet"
    feats.write_bytes(b"")
    assert main(["pca-rgb", str(feats), "-o", str(tmp_path), "--resolution", "10"]) == 2
    assert main(["evaluate", str(feats), "-o", str(feats)]) == 2  # report folder is a file


# --- tiles and index ----------------------------------------------------------------------------


def test_same_tile_twice_is_refused(small, no_pixel_work):
    t0 = small["tiles"][0]
    with pytest.raises(InputError, match="given twice"):
        zonal_stats(small["polys"], tiles=[t0, t0.parent / "." / t0.name], **KW)


def test_index_with_several_years_needs_a_filter(small, tmp_path):
    idx = gpd.read_file(small["root"] / "index.gpkg")
    both = gpd.GeoDataFrame(
        {
            "path": [str(small["root"] / p) for p in idx.path] * 2,
            "year": [2020, 2020, 2021, 2021],
        },
        geometry=list(idx.geometry) * 2,
        crs=idx.crs,
    )
    with pytest.raises(InputError, match=r"overlap .*--year"):
        zonal_stats(small["polys"], tile_index=both, **KW)
    out = zonal_stats(small["polys"], tile_index=both, index_filter={"year": 2021}, **KW)
    assert (out.pixel_count > 0).all()
    with pytest.raises(
        InputError, match=r"no entry has year == 2030; expected one of \['2020', '2021'\]"
    ):
        zonal_stats(small["polys"], tile_index=both, index_filter={"year": 2030}, **KW)


def test_index_entry_with_missing_tile(small):
    idx = gpd.read_file(small["root"] / "index.gpkg")
    idx["path"] = [str(small["root"] / "t0.tif"), str(small["root"] / "gone.tif")]
    with pytest.raises(FileNotFoundError, match=r"entry 1 names tile .*gone\.tif.*does not exist"):
        zonal_stats(small["polys"], tile_index=idx, **KW)
    # not needed by any polygon: no error, the polygon on t0 is computed
    out = zonal_stats(small["polys"].iloc[[0]], tile_index=idx, **KW)
    assert out.pixel_count.iloc[0] > 0


# --- polygons -----------------------------------------------------------------------------------


def test_empty_polygon_set(small, tmp_path):
    empty = small["polys"].iloc[:0]
    with pytest.warns(ZonalWarning, match="no polygon left"):
        out = zonal_stats(empty, tiles=small["tiles"], output=tmp_path / "e.parquet", **KW)
    assert len(out) == 0 and "emb_mean_00" in out.columns
    assert len(gpd.read_parquet(tmp_path / "e.parquet")) == 0


def test_polygons_far_away(small):
    far = small["polys"].translate(40.0, 0.0)  # 40° east
    with pytest.warns(ZonalWarning, match="intersects any tile"):
        out = zonal_stats(gpd.GeoDataFrame(geometry=far, crs=far.crs), tiles=small["tiles"], **KW)
    assert (out.pixel_count == 0).all() and out.filter(like="emb_").isna().all(axis=None)


def test_invalid_empty_and_null_geometries(small):
    u = small["polys"].to_crs(CRS)
    bow = Polygon([(X0 + 23, Y0 - 23), (X0 + 197, Y0 - 211), (X0 + 197, Y0 - 23),
                   (X0 + 23, Y0 - 211)])  # fmt: skip  # self-intersecting "bowtie"
    geoms = [bow, Polygon(), None, u.geometry.iloc[1]]
    g = gpd.GeoDataFrame({"name": ["bow", "empty", "null", "ok"]}, geometry=geoms, crs=CRS)
    with pytest.warns(ZonalWarning, match=r"1 invalid geometries \(rows \[0\]\) repaired"):
        out = zonal_stats(g, tiles=small["tiles"], **KW).set_index("name")
    assert out.loc["empty", "pixel_count"] == 0 and out.loc["null", "pixel_count"] == 0
    # the bowtie gets the pixels of its two triangles (what GDAL's even-odd fill burns)
    ref, _ = oracle_pixels(
        Polygon([(X0 + 23, Y0 - 23), (X0 + 110, Y0 - 117), (X0 + 23, Y0 - 211)]), CRS,
        small["tiles"])  # fmt: skip
    ref2, _ = oracle_pixels(
        Polygon([(X0 + 197, Y0 - 23), (X0 + 110, Y0 - 117), (X0 + 197, Y0 - 211)]), CRS,
        small["tiles"])  # fmt: skip
    assert out.loc["bow", "pixel_count"] == len(ref) + len(ref2) > 0
    cols = feature_names("mean_std", D, 2 * D)
    both = np.concatenate([ref, ref2])
    want = np.concatenate([both.mean(0), both.std(0)])
    np.testing.assert_allclose(out.loc["bow", cols].to_numpy(float), want, rtol=1e-5)
    assert out.loc["ok", "pixel_count"] > 0 and out.geometry["bow"].equals(bow)  # kept as given


def test_attribute_clashes_and_unknown_method(small, no_pixel_work):
    for col in ("bbox", "pixel_count", "emb_mean_00"):
        with pytest.raises(InputError, match=rf"attributes \['{col}'\] clash"):
            zonal_stats(small["polys"].assign(**{col: 1}), tiles=small["tiles"], **KW)
    with pytest.raises(InputError, match="pooling method 'nope'"):
        zonal_stats(small["polys"], tiles=small["tiles"], method="nope", **KW)


@pytest.mark.parametrize(
    "geom", [Point(X0 + 50, Y0 - 50), GeometryCollection([box(X0, Y0 - 100, X0 + 100, Y0)])]
)
def test_non_polygon_geometry_is_refused(small, geom, no_pixel_work):
    g = gpd.GeoDataFrame(geometry=[box(X0 + 10, Y0 - 90, X0 + 90, Y0 - 10), geom], crs=CRS)
    with pytest.raises(InputError, match=r"expected Polygon/MultiPolygon.*rows \[1\]"):
        zonal_stats(g, tiles=small["tiles"], **KW)


def test_nan_coordinates_are_refused(small, no_pixel_work):
    nan_poly = Polygon([(X0 + 10, Y0 - 10), (np.nan, Y0 - 50), (X0 + 90, Y0 - 90)])
    g = gpd.GeoDataFrame(geometry=[box(X0 + 10, Y0 - 90, X0 + 90, Y0 - 10), nan_poly], crs=CRS)
    with pytest.raises(InputError, match=r"rows \[1\] have NaN/inf vertex"):
        zonal_stats(g, tiles=small["tiles"], **KW)


def test_bottom_up_tile_matches_oracle(small, tmp_path):
    """AEF's Source Cooperative COGs are bottom-up (positive y resolution)."""
    x = np.random.default_rng(5).normal(size=(D, 64, 64)).astype(np.float32)
    t = rasterio.Affine(10.0, 0.0, X0, 0.0, 10.0, Y0 - 640)  # origin bottom-left, rows go north
    tile = write_tile(tmp_path / "up.tif", x, CRS, t)
    out = zonal_stats(small["polys"].iloc[[0]], tiles=[tile], **KW)
    ref, _ = oracle_pixels(out.geometry.iloc[0], out.crs, [tile])
    assert out.pixel_count.iloc[0] == len(ref) > 0
    np.testing.assert_allclose(out["emb_mean_00"].iloc[0], ref[:, 0].mean(), rtol=1e-5)
