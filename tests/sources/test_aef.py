"""AEF as published: decodes, the sparse COG writer, the product's overview rule, the layout of
the stand-in, and conformance with files written by the product's documented conventions with
plain GDAL / geopandas / pyarrow (not our writer)."""

from __future__ import annotations

import struct

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import rasterio.shutil
import shapely
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoemb.errors import InputError
from geoemb.sources import raster_source, read_chips
from geoemb.sources.aef import AEF_BANDS, overview_levels, quantize, write_aef_cog
from geoemb.sources.stand_ins import aef_stand_in
from geoemb.synthetic.zonal import generate
from geoemb.zonal import RasterInputs, zonal_stats
from geoemb.zonal.decodes import decode_values
from geoemb.zonal.sources import catalog_from_index

SCENE = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}


def readme_dequantize(values: np.ndarray) -> np.ndarray:
    """Google's bucket README, section De-quantization, verbatim."""
    return ((values / 127.5) ** 2) * np.sign(values)


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=0, keepdims=True)


def test_decodes_match_the_readme_and_name_the_alternatives():
    q = np.arange(-128, 128, dtype=np.int8)
    got = decode_values(q, "aef_power", "int8")
    np.testing.assert_allclose(got[1:], readme_dequantize(q[1:].astype(np.float64)), rtol=1e-6)
    assert np.isnan(got[0])  # -128 is reserved for "no data": never a number
    np.testing.assert_allclose(decode_values(q, "linear_127", "int8")[1:], q[1:] / 127.0, 1e-6)
    u8 = np.arange(0, 255, dtype=np.uint8)  # EuroSAT-Embed: uint8, +127 offset
    np.testing.assert_allclose(decode_values(u8, "aef_uint8", "uint8"),
                               readme_dequantize(u8.astype(np.float64) - 127), rtol=1e-6)  # fmt: skip
    # quantize is the inverse: unit vectors come back unit length (README: length 1 after decode)
    x = unit(np.random.default_rng(0), 64, 500)
    back = decode_values(quantize(x), "aef_power", "int8")
    assert np.abs(back - x).max() < 0.02
    np.testing.assert_allclose(np.linalg.norm(back, axis=0), 1.0, atol=0.02)
    assert (quantize(np.array([np.nan, 1.0, -1.0])) == [-128, 127, -127]).all()


def _ifds(path) -> list[tuple[int, dict]]:
    """Walk a classic little-endian TIFF's IFD chain by hand: (offset, {tag: values})."""
    data = open(path, "rb").read()
    assert data[:4] == b"II*\0"
    fmt = {3: "H", 4: "I", 12: "d", 2: "s"}
    size = {3: 2, 4: 4, 12: 8, 2: 1}
    out, off = [], struct.unpack_from("<I", data, 4)[0]
    while off:
        n = struct.unpack_from("<H", data, off)[0]
        tags = {}
        for k in range(n):
            tag, typ, cnt, val = struct.unpack_from("<HHII", data, off + 2 + 12 * k)
            where = off + 2 + 12 * k + 8 if cnt * size[typ] <= 4 else val
            if typ == 2:
                tags[tag] = data[where : where + cnt]
            else:
                tags[tag] = struct.unpack_from(f"<{cnt}{fmt[typ]}", data, where)
        out.append((off, tags))
        off = struct.unpack_from("<I", data, off + 2 + 12 * n)[0]
    return out


@pytest.mark.parametrize("bottom_up", [False, True])
def test_real_size_cog_layout_and_overview_rule(tmp_path, bottom_up):
    rng = np.random.default_rng(1)
    d, tile, size = 8, 256, 8192
    a = quantize(unit(rng, d, tile, tile))
    a[:, :5, :7] = -128  # masked pixels are masked in every channel (README)
    b = quantize(unit(rng, d, tile, tile))
    blocks = {(3, 4): a, (3, 5): b, (30, 31): b}
    path = write_aef_cog(tmp_path / "x.tiff", blocks, epsg=32610, origin=(499_980.0, 5_300_040.0),
                         tile=tile, bottom_up=bottom_up, tags={"data_source": "synthetic"})  # fmt: skip
    with rasterio.open(path) as ds:  # GDAL reads it as the README describes the product
        assert (ds.width, ds.height, ds.count, ds.dtypes[0], ds.nodata) == (
            size,
            size,
            d,
            "int8",
            -128,
        )
        assert ds.descriptions == AEF_BANDS[:d] and ds.crs.to_epsg() == 32610
        assert ds.overviews(1) == [2**k for k in range(1, 14)]  # 4096² … 1 × 1
        assert ds.res == (10.0, 10.0) and ds.tags()["data_source"] == "synthetic"
        assert (ds.transform.e > 0) == bottom_up
        assert ds.profile["interleave"] == "band" and ds.block_shapes[0] == (tile, tile)
        # a north-up window of block (3, 4): rows 3*tile.. from the north edge
        r = 3 * tile if not bottom_up else size - 4 * tile
        got = ds.read(window=Window(4 * tile, r, tile, tile))
        np.testing.assert_array_equal(got[:, ::-1] if bottom_up else got, a)
        assert (ds.read(1, window=Window(0, 0, 64, 64)) == -128).all()  # sparse: nodata
        ov3 = ds.read(out_shape=(d, size // 8, size // 8))  # level 3 overview (8 × 8 means)
        top = ds.read(out_shape=(d, 1, 1))[:, 0, 0]
    # the overview rule by brute force: mean of the valid full-res vectors, re-normalised
    full = np.concatenate(
        [decode_values(x.reshape(d, -1), "aef_power", "int8") for x in (a, b, b)], 1
    )
    full = full[:, np.isfinite(full).all(0)].astype(np.float64).sum(1)
    np.testing.assert_array_equal(top, quantize(full / np.linalg.norm(full)))
    blk = decode_values(a[:, 8:16, 16:24], "aef_power", "int8").reshape(d, -1).astype(np.float64)
    m = blk[:, np.isfinite(blk).all(0)].sum(1)
    r8 = (3 * tile) // 8 + 1 if not bottom_up else (size - 4 * tile) // 8 + (tile // 8 - 2)
    np.testing.assert_array_equal(ov3[:, r8, (4 * tile) // 8 + 2], quantize(m / np.linalg.norm(m)))
    # the file is a COG: every IFD and tag array precedes the pixel data, overview data precedes
    # full-resolution data, sparse blocks have offset 0 (read by hand, not through our writer)
    ifds = _ifds(path)
    assert len(ifds) == 14 and [t[254][0] for _, t in ifds] == [0] + [1] * 13
    starts = [min(o for o in t[324] if o) for _, t in ifds]
    assert max(off for off, _ in ifds) < min(starts)
    assert starts[0] > max(starts[1:]) and t_sorted(starts[1:])
    assert ifds[0][1][34264][5] == (10.0 if bottom_up else -10.0)  # ModelTransformationTag
    assert sum(1 for o in ifds[0][1][324] if o) == 3 * d  # 3 blocks × d bands stored


def t_sorted(xs: list[int]) -> bool:
    return all(a > b for a, b in zip(xs, xs[1:], strict=False))  # smaller overviews first


def test_overview_levels_are_exact_for_ragged_data():
    rng = np.random.default_rng(2)
    codes = quantize(unit(rng, 3, 32, 32))
    codes[:, 5:, :] = -128  # an odd number of valid rows, offset bounding boxes
    codes[:, :, :3] = -128
    levels = overview_levels({(1, 0): codes}, 64, 32, 3)
    assert [lv.width for lv in levels] == [64, 32, 16, 8, 4, 2, 1]
    x = np.where((codes != -128).all(0), decode_values(codes, "aef_power", "int8"), 0).astype(float)
    full = np.zeros((3, 64, 64))
    full[:, 32:, :32] = x
    valid = np.zeros((64, 64))
    valid[32:, :32] = (codes != -128).all(0)
    for lv in levels[1:]:
        f = 64 // lv.width
        s = full.reshape(3, lv.width, f, lv.width, f).sum((2, 4))
        c = valid.reshape(lv.width, f, lv.width, f).sum((1, 3))
        want = np.where(c > 0, s / np.maximum(np.linalg.norm(s, axis=0), 1e-12), np.nan)
        got = np.full((3, lv.grid[0] * lv.tile, lv.grid[1] * lv.tile), -128, np.int8)
        for (r, cc), blk in lv.blocks.items():
            got[:, r * lv.tile : (r + 1) * lv.tile, cc * lv.tile : (cc + 1) * lv.tile] = blk
        np.testing.assert_array_equal(got[:, : lv.width, : lv.width], quantize(want))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The census scene in the old small-tile layout (the oracle) and in AEF's published layout
    (real-size COGs across a COG boundary), top-down and bottom-up."""
    root = tmp_path_factory.mktemp("aef_layout")
    old = generate(root / "old", dtype="int8", nodata=-128, **SCENE)
    new = aef_stand_in(root / "new", **SCENE)
    up = aef_stand_in(root / "up", bottom_up=True, cog_tile=256, **SCENE)
    return {"old": old, "new": new, "up": up}


def test_stand_in_is_the_published_layout(scene):
    new = scene["new"]
    files = sorted(p.relative_to(new).as_posix() for p in new.rglob("*.tiff"))
    assert len(files) == 2 and all(f.startswith("2020/10N/x") for f in files)
    assert [f[-27:] for f in files] == [
        "-0000000000-0000000000.tiff",
        "-0000000000-0000008192.tiff",
    ]
    idx = gpd.read_parquet(new / "aef_index.parquet")
    assert idx.geometry.name == "geom" and idx.crs.to_epsg() == 4326  # as on the mirror
    assert {"fid", "path", "year", "crs", "utm_zone", "utm_west", "utm_south", "utm_east",
            "utm_north", "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"} <= set(idx.columns)  # fmt: skip
    assert (
        sorted(idx.path) == files
        and set(idx["crs"]) == {"EPSG:32610"}
        and set(idx.utm_zone) == {"10N"}
    )
    # footprints follow the curved UTM edges (densified) and are clipped to the zone's longitudes
    assert (shapely.get_num_coordinates(idx.geometry.to_numpy()) > 20).all()
    assert idx.wgs84_east.max() <= -120.0 + 1e-9 and idx.wgs84_west.min() >= -126.0 - 1e-9
    gpkg = gpd.read_file(new / "aef_index.gpkg")
    assert sorted(gpkg.path) == files
    for f in files:
        with rasterio.open(new / f) as ds:
            assert ds.shape == (8192, 8192) and ds.dtypes[0] == "int8" and ds.nodata == -128


@pytest.mark.parametrize("layout", ["new", "up"])
def test_zonal_on_the_published_layout_equals_the_old_layout(scene, layout):
    # same codes, other files: a block split by the COG boundary gets its pixels from both COGs
    kw = {"land_column": None, "progress": False, "num_workers": 1, "method": "stats"}
    old = zonal_stats(scene["old"] / "blocks.gpkg", tile_index=scene["old"] / "aef_index.gpkg",
                      decode="aef", **kw)  # fmt: skip
    new = zonal_stats(scene[layout] / "blocks.gpkg", tile_index=scene[layout] / "aef_index.parquet",
                      decode="aef_power", **kw)  # fmt: skip
    cols = old.attrs["zonal"]["feature_columns"]
    np.testing.assert_allclose(new[cols].to_numpy(), old[cols].to_numpy(), rtol=1e-6, atol=1e-7)
    assert (new.pixel_count.to_numpy() == old.pixel_count.to_numpy()).all()
    assert new.tile_count.max() == 2 and new.attrs["zonal"]["data_source"] == "synthetic"


def test_read_chips_against_the_scene(scene):
    old = scene["old"]
    idx = gpd.read_file(old / "aef_index.gpkg")
    tiles = {}
    for p in idx.path:
        with rasterio.open(old / p) as ds:
            tiles[p] = (ds.transform, ds.read())
    # oracle: the scene mosaic as an array, decoded
    x0 = min(t.c for t, _ in tiles.values())
    y0 = max(t.f for t, _ in tiles.values())
    mosaic = np.full((8, 64, 64), -128, np.int8)
    for t, a in tiles.values():
        r, c = int((y0 - t.f) / 10), int((t.c - x0) / 10)
        mosaic[:, r : r + 32, c : c + 32] = a
    pts_utm = [(x0 + (c + 0.5) * 10, y0 - (r + 0.5) * 10) for r, c in [(20, 30), (1, 1), (40, 33)]]
    pts = gpd.GeoSeries(shapely.points(pts_utm), crs="EPSG:32610")
    for layout in ("new", "up"):
        rasters = RasterInputs(tile_index=scene[layout] / "aef_index.parquet", decode="aef_power")
        chips = read_chips(rasters, pts, 5)
        assert chips.values.shape == (3, 8, 5, 5)
        padded = np.pad(mosaic, ((0, 0), (8, 8), (8, 8)), constant_values=-128)
        for k, (r, c) in enumerate([(20, 30), (1, 1), (40, 33)]):
            want = padded[:, r + 6 : r + 11, c + 6 : c + 11]  # rows/cols r-2..r+2 of the scene
            ok = (want != -128).all(0)  # outside the scene: sparse (nodata) COG pixels
            np.testing.assert_array_equal(chips.mask[k], ok)
            np.testing.assert_allclose(
                chips.values[k][:, ok], decode_values(want, "aef_power", "int8")[:, ok]
            )
            assert np.isnan(chips.values[k][:, ~ok]).all()
        assert not chips.mask[1].all() and chips.mask[1].any()  # the scene's nodata corner
        # the chip at column 30..34 spans the COG boundary (at the scene's column 32): two files
        assert chips.mask[0].all()


def test_conformance_gdal_written_cog_and_pyarrow_stac_index(tmp_path):
    """Files written by the product's documented conventions with plain GDAL and pyarrow."""
    rng = np.random.default_rng(3)
    codes = quantize(unit(rng, 64, 512, 512))
    codes[:, 100:110, 240:254] = -128
    t = from_origin(600_000.0, 5_200_000.0, 10.0, 10.0)
    src = tmp_path / "src.tif"
    with rasterio.open(src, "w", driver="GTiff", width=512, height=512, count=64, dtype="int8",
                       crs="EPSG:32611", transform=t, nodata=-128) as dst:  # fmt: skip
        dst.write(codes)
        for i, name in enumerate(AEF_BANDS):
            dst.set_band_description(i + 1, name)
    rel = "2024/11N/xabc-0000000000-0000000000.tiff"
    (tmp_path / rel).parent.mkdir(parents=True)
    rasterio.shutil.copy(src, tmp_path / rel, driver="COG", blocksize=256, compress="DEFLATE",
                         overview_resampling="average")  # fmt: skip
    # a STAC item table, plain pyarrow (no GeoParquet metadata), href relative to the index
    with rasterio.open(tmp_path / rel) as ds:  # 4 corners: an approximate footprint
        foot = gpd.GeoSeries([shapely.box(*ds.bounds)], crs=ds.crs).to_crs(4326).iloc[0]
    bb = foot.bounds
    table = pa.table({
        "type": ["Feature"], "stac_version": ["1.0.0"], "id": ["xabc-0000000000-0000000000"],
        "datetime": ["2024-01-01T00:00:00Z"], "proj:epsg": ["EPSG:32611"],
        "bbox": [{"xmin": bb[0], "ymin": bb[1], "xmax": bb[2], "ymax": bb[3]}],
        "assets": [{"data": {"href": rel, "type": "image/tiff", "roles": ["data"]}}],
        "geometry": [shapely.to_wkb(foot)],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "items.parquet")
    cat = catalog_from_index(tmp_path / "items.parquet", filters={"year": 2024})
    assert list(cat.path) == [str(tmp_path / rel)] and list(cat["crs"]) == ["EPSG:32611"]
    with pytest.raises(InputError, match="no entry has year == 2023"):
        catalog_from_index(tmp_path / "items.parquet", filters={"year": 2023})
    # AEF's own schema written with plain geopandas (the README / aef-loader columns)
    own = gpd.GeoDataFrame({"path": [rel], "year": [2024], "crs": ["EPSG:32611"],
                            "utm_zone": ["11N"]}, geometry=[foot], crs="EPSG:4326")  # fmt: skip
    own.rename_geometry("geom").to_parquet(tmp_path / "own.parquet")
    pts = gpd.GeoSeries(shapely.points([(t.c + 255.5 * 10, t.f - 104.5 * 10)]), crs="EPSG:32611")
    for index in ("items.parquet", "own.parquet"):
        src_ = raster_source("aef", tile_index=tmp_path / index)
        ch = read_chips(src_, pts, 8)
        want = codes[:, 100:108, 251:259]
        ok = (want != -128).all(0)
        np.testing.assert_array_equal(ch.mask[0], ok)
        np.testing.assert_allclose(
            ch.values[0][:, ok], decode_values(want, "aef_power", "int8")[:, ok]
        )
        assert ok.sum() and (~ok).sum()  # both valid and masked pixels in the chip
