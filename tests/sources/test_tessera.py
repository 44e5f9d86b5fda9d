"""Tessera as geotessera lays it out: grid conventions, NPY/GeoTIFF tiles written by hand with
plain numpy/rasterio following geotessera's code (not our writer), per-zone VRT mosaics where
every pixel is counted once, scaled/unscaled decodes, years and versions, the stand-in."""

from __future__ import annotations

import shutil

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from pyproj import Transformer

from geoemb.errors import InputError
from geoemb.sources import raster_source, read_chips
from geoemb.sources.tessera import cell_grid, discover, grid_name, tile_from_world
from geoemb.sources.tessera_vrt import build_mosaics
from geoemb.zonal import zonal_stats

C = 128  # channels, as the product
HALF = 60  # hand-made tiles are cut to ±HALF px around a point (real ones cover their whole cell)


def test_grid_conventions_match_geotessera():
    # geotessera.registry docstrings: tile_from_world(0.17, 52.23) == (0.15, 52.25) …
    assert tile_from_world(0.17, 52.23) == (0.15, 52.25)
    assert tile_from_world(-0.12, -0.03) == (-0.15, -0.05)
    assert (
        grid_name(0.15, 52.05) == "grid_0.15_52.05"
        and grid_name(-50.55, -20.65) == "grid_-50.55_-20.65"
    )


def hand_tile(root, lon, lat, year, rng, around, fmt="npy", scales_3d=False, version="v1"):
    """One tile in geotessera's layout, written the way geotessera's code reads/writes it; its
    grid is the cell's, cut to ±HALF px around the lon/lat point ``around``."""
    epsg, t, h, w = cell_grid(lon, lat)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(*around)
    c, r = (~t) * (x, y)
    r0, r1 = max(0, int(r) - HALF), min(h, int(r) + HALF)
    c0, c1 = max(0, int(c) - HALF), min(w, int(c) + HALF)
    t = t * rasterio.Affine.translation(c0, r0)
    h, w = r1 - r0, c1 - c0
    q = rng.integers(-127, 128, (h, w, C), dtype=np.int8)
    s = rng.uniform(0.01, 0.1, (h, w, C) if scales_3d else (h, w)).astype(np.float32)
    name = f"grid_{lon:.2f}_{lat:.2f}"
    d = root / "global_0.1_degree_representation" / str(year) / name
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(d / f"{name}.npy", q)
        np.save(d / f"{name}_scales.npy", s)
        lm = root / "global_0.1_degree_tiff_all" / f"{name}.tiff"
        lm.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(lm, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                           crs=f"EPSG:{epsg}", transform=t) as dst:  # fmt: skip
            dst.write(np.ones((1, h, w), np.uint8))
    else:  # export_embedding_geotiffs: float32, band descriptions, tags
        deq = q.astype(np.float32) * (s if scales_3d else s[..., None])
        with rasterio.open(d / f"{name}_{year}.tiff", "w", driver="GTiff", width=w, height=h,
                           count=C, dtype="float32", crs=f"EPSG:{epsg}", transform=t,
                           compress="lzw", tiled=True, blockxsize=256, blockysize=256) as dst:  # fmt: skip
            dst.write(np.moveaxis(deq, -1, 0))
            dst.update_tags(TESSERA_DATASET_VERSION=version, TESSERA_YEAR=str(year))
    return {"q": q, "s": s, "t": t, "epsg": epsg, "lon": lon, "lat": lat}


def owned_pixels(tile, polygon_utm):
    """Oracle, tile by tile: pixel centres inside the polygon and inside the tile's 0.1° cell."""
    h, w = tile["q"].shape[:2]
    inside = rasterio.features.geometry_mask([polygon_utm], (h, w), tile["t"], invert=True)
    rows, cols = np.nonzero(inside)
    x, y = tile["t"] * (cols + 0.5, rows + 0.5)
    lon, lat = Transformer.from_crs(tile["epsg"], 4326, always_xy=True).transform(x, y)
    own = ((lon >= tile["lon"] - 0.05) & (lon < tile["lon"] + 0.05)
           & (lat >= tile["lat"] - 0.05) & (lat < tile["lat"] + 0.05))  # fmt: skip
    s = tile["s"][rows[own], cols[own]]
    q = tile["q"][rows[own], cols[own]].astype(np.float32)
    return q * (s if s.ndim == 2 else s[:, None]), q


@pytest.fixture(scope="module")
def two_tiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("tessera_hand")
    rng = np.random.default_rng(0)
    at = (-122.3, 47.55)
    tiles = [hand_tile(root, -122.35, 47.55, 2024, rng, at),
             hand_tile(root, -122.25, 47.55, 2024, rng, at, scales_3d=True)]  # fmt: skip
    return root, tiles


def test_mosaic_counts_each_pixel_once_and_decodes_like_geotessera(two_tiles, tmp_path):
    root, tiles = two_tiles
    found = discover(root)
    assert [(t.name, t.fmt, t.year) for t in found] == [
        ("grid_-122.35_47.55", "npy", 2024), ("grid_-122.25_47.55", "npy", 2024)]  # fmt: skip
    # the two UTM grids overlap around the -122.3° meridian
    a, b = (shapely.box(*rasterio.transform.array_bounds(*t["q"].shape[:2], t["t"])) for t in tiles)
    assert a.intersection(b).area > 1e5
    to_utm = Transformer.from_crs(4326, 32610, always_xy=True)
    x, y = to_utm.transform(-122.3, 47.55)
    polys = [
        shapely.box(x - 213, y - 207, x + 187, y + 193),  # across the meridian
        shapely.box(x - 511, y + 103, x - 307, y + 407),  # one tile only
    ]  # one tile only
    gdf = gpd.GeoDataFrame({"i": [0, 1]}, geometry=polys, crs="EPSG:32610")
    for decode in ("tessera_scaled", "tessera_unscaled"):
        src = raster_source("tessera", root=root, decode=decode,
                            options={"cache_dir": tmp_path / "vrt"})  # fmt: skip
        out = zonal_stats(gdf, src.resolve(), land_column=None, progress=False, method="mean",
                          num_workers=1)  # fmt: skip
        for k, poly in enumerate(polys):
            parts = [owned_pixels(t, poly) for t in tiles]
            pix = np.concatenate([p[0 if decode == "tessera_scaled" else 1] for p in parts])
            assert out.pixel_count.iloc[k] == len(pix) > 100  # each pixel once
            cols = out.attrs["zonal"]["feature_columns"]
            np.testing.assert_allclose(out[cols].iloc[k].to_numpy(), pix.astype(float).mean(0),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        assert out.attrs["zonal"]["data_source"] == "real"
    # chips across the meridian: whole, from both tiles
    ch = read_chips(raster_source("tessera", root=root, options={"cache_dir": tmp_path / "vrt"}),
                    np.array([[-122.3, 47.55]]), 6)  # fmt: skip
    assert ch.mask.all() and ch.values.shape == (1, C, 6, 6)


def test_geotiff_exports_and_their_limits(tmp_path):
    rng = np.random.default_rng(1)
    tile = hand_tile(tmp_path / "a", -0.05, 52.05, 2024, rng, (-0.05, 52.05), fmt="tiff")
    src = raster_source("tessera", root=tmp_path / "a", options={"cache_dir": tmp_path / "vrt"})
    pt = np.array([[-0.05, 52.05]])
    ch = read_chips(src, pt, 4)
    x, y = Transformer.from_crs(4326, tile["epsg"], always_xy=True).transform(-0.05, 52.05)
    c, r = (~tile["t"]) * (x, y)
    r, c = int(r), int(c)
    want = (
        tile["q"][r - 2 : r + 2, c - 2 : c + 2].astype(np.float32)
        * tile["s"][r - 2 : r + 2, c - 2 : c + 2, None]
    )
    np.testing.assert_allclose(ch.values[0], np.moveaxis(want, -1, 0), rtol=1e-6)
    with pytest.raises(InputError, match="tessera_unscaled. needs the int8 codes.*--format npy"):
        raster_source("tessera", root=tmp_path / "a", decode="tessera_unscaled",
                      options={"cache_dir": tmp_path / "vrt"}).resolve()  # fmt: skip
    # never mix dataset versions
    hand_tile(tmp_path / "a", 0.05, 52.05, 2024, rng, (0.05, 52.05), fmt="tiff", version="v2")
    with pytest.raises(InputError, match=r"different dataset versions \(v1: .*v2: .*never mix"):
        raster_source(
            "tessera", root=tmp_path / "a", options={"cache_dir": tmp_path / "vrt"}
        ).resolve()
    with pytest.raises(InputError, match=r"expected one version \(v3\)"):
        raster_source("tessera", root=tmp_path / "a",
                      options={"cache_dir": tmp_path / "vrt", "version": "v3"}).resolve()  # fmt: skip


def test_years_must_be_one(two_tiles, tmp_path):
    root, _ = two_tiles
    rng = np.random.default_rng(2)
    hand_tile(root, -122.35, 47.65, 2023, rng, (-122.35, 47.65))
    try:
        kw = {"options": {"cache_dir": tmp_path / "vrt"}}
        with pytest.raises(InputError, match=r"several years \[2023, 2024\].*\{year: 2024\}"):
            raster_source("tessera", root=root, **kw).resolve()
        got = raster_source("tessera", root=root, index_filter={"year": 2023}, **kw).resolve()
        assert len(got.tiles) == 1
        with pytest.raises(InputError, match=r"no Tessera tiles of year 2022 .*\[2023, 2024\]"):
            raster_source("tessera", root=root, index_filter={"year": 2022}, **kw).resolve()
    finally:
        shutil.rmtree(root / "global_0.1_degree_representation" / "2023")


def test_not_the_product_is_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(3)
    hand_tile(tmp_path, 10.05, 45.05, 2024, rng, (10.05, 45.05))
    d = tmp_path / "global_0.1_degree_representation" / "2024" / "grid_10.05_45.05"
    kw = {"options": {"cache_dir": tmp_path / "vrt"}}
    q = np.load(d / "grid_10.05_45.05.npy")
    np.save(d / "grid_10.05_45.05.npy", q.astype(np.float32))
    with pytest.raises(InputError, match=r"grid_10.05_45.05.npy: float32.*expected C-ordered int8"):
        raster_source("tessera", root=tmp_path, **kw).resolve()
    np.save(d / "grid_10.05_45.05.npy", q)
    np.save(d / "grid_10.05_45.05_scales.npy", np.ones((q.shape[0] + 1, q.shape[1]), np.float32))
    with pytest.raises(
        InputError, match=r"_scales.npy: float32.*expected C-ordered float32 of shape"
    ):
        raster_source("tessera", root=tmp_path, **kw).resolve()
    (d / "grid_10.05_45.05_scales.npy").unlink()
    with pytest.raises(InputError, match="has no scales file .*grid_10.05_45.05_scales.npy"):
        raster_source("tessera", root=tmp_path, **kw).resolve()
    # band count of the real product (128) is checked
    np.save(d / "grid_10.05_45.05_scales.npy", np.ones(q.shape[:2], np.float32))
    np.save(d / "grid_10.05_45.05.npy", q[..., :64])
    with pytest.raises(InputError, match="64 channels; expected 128"):
        raster_source("tessera", root=tmp_path, **kw).resolve()
    np.save(d / "grid_10.05_45.05.npy", q)
    assert len(build_mosaics(discover(tmp_path), tmp_path / "vrt", bands=128)) == 1


def test_stand_in_census_workflow(tmp_path):
    small = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2}
    src = raster_source("tessera", root=tmp_path / "tessera", synthetic=True,
                        synthetic_root=tmp_path / "syn", synthetic_kwargs=small,
                        options={"cache_dir": tmp_path / "vrt"})  # fmt: skip
    got = src.resolve()
    folder = src.stand_in_polygons().parent
    tiles = discover(folder)
    assert len(tiles) == 2 and {t.fmt for t in tiles} == {"npy"}  # the scene crosses -122.3°
    out = zonal_stats(src.stand_in_polygons(), got, land_column=None, progress=False, num_workers=1)
    assert out.attrs["zonal"]["data_source"] == "synthetic"
    assert (out.pixel_count > 0).mean() > 0.95 and out.attrs["zonal"]["input_dim"] == 8
    # every block's pixels, tile by tile (oracle: the .npy arrays and the landmasks' grids)
    hand = []
    for t in tiles:
        with rasterio.open(t.landmask) as ds:
            tr, epsg = ds.transform, ds.crs.to_epsg()
        hand.append({"q": np.load(t.embedding), "s": np.load(t.scales), "t": tr, "epsg": epsg,
                     "lon": t.lon, "lat": t.lat})  # fmt: skip
    blocks = gpd.read_file(folder / "blocks.gpkg").to_crs(32610)
    cols = out.attrs["zonal"]["feature_columns"][:8]  # the means
    both = 0
    for k in range(len(blocks)):
        parts = [owned_pixels(t, blocks.geometry.iloc[k]) for t in hand]
        both += all(len(p[0]) for p in parts)
        pix = np.concatenate([p[0] for p in parts])
        assert out.pixel_count.iloc[k] == len(pix)
        if len(pix):
            np.testing.assert_allclose(out[cols].iloc[k].to_numpy(), pix.mean(0), rtol=1e-4,
                                       atol=1e-5)  # fmt: skip
    assert both  # some checked block takes pixels from both tiles
