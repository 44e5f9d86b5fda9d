"""Remote reads end to end against a range-serving HTTP server on 127.0.0.1: one window of a
real-size COG fetches a small fraction of it, headers are read once per file (LRU cache),
HTTP errors are one clear error naming the URL, zonal statistics over URLs equal local ones."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from geoemb.errors import InputError
from geoemb.sources import raster_source, read_chips
from geoemb.sources.aef import quantize, write_aef_cog
from geoemb.sources.loopback import RangeServer
from geoemb.sources.remote import RasterCache, remote_env
from geoemb.sources.stand_ins import aef_stand_in
from geoemb.zonal import RasterInputs, zonal_stats
from geoemb.zonal.sources import TileNotFoundError, read_tile_meta

pytestmark = pytest.mark.loopback

ORIGIN = (500_000.0, 5_300_000.0)
CONTENT = [(r, c) for r in (2, 3) for c in (2, 3, 4, 5)]  # 8 of 64 1024-px tiles hold data


def content_block(seed: int = 0) -> np.ndarray:
    """One 1024² × 64 block of embedding-like codes (32-px patches + sparse ±1 noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 32, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=0)
    codes = np.repeat(np.repeat(quantize(x), 32, 1), 32, 2)
    flip = rng.integers(0, 16, codes.shape, dtype=np.int8) == 0  # ±1 on 1/16 of the values
    return np.where(flip & (codes < 127), codes + 1, codes).astype(np.int8)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    blk = content_block()
    big = root / "2024" / "10N" / "big.tiff"
    big.parent.mkdir(parents=True)
    write_aef_cog(big, dict.fromkeys(CONTENT, blk), epsg=32610, origin=ORIGIN, overviews="empty")
    scene = {"tile_size": 32, "n_bands": 8, "min_block_px": 10, "n_tiles_x": 2, "n_tiles_y": 2,
             "cog_tile": 256}  # fmt: skip
    aef_stand_in(root / "aef", **scene)
    with RangeServer(root) as srv:
        yield {"root": root, "srv": srv, "big": big, "blk": blk}


def _tile_bytes(path, row, col) -> int:
    """Compressed bytes of the level-0 blocks (all bands) of tile (row, col), from the file."""
    with rasterio.open(path) as ds:
        return sum(int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=b))
                   for b in range(1, ds.count + 1))  # fmt: skip


def test_one_window_fetches_a_small_fraction(served):
    srv, big = served["srv"], served["big"]
    url = srv.url("2024/10N/big.tiff")
    size = big.stat().st_size
    srv.reset()
    with remote_env(), rasterio.open(url) as ds:
        header = srv.bytes_sent
        got = ds.read(window=Window(2 * 1024 + 100, 3 * 1024 + 200, 64, 64))
    fetched = srv.bytes_sent
    np.testing.assert_array_equal(got, served["blk"][:, 200:264, 100:164])
    touched = _tile_bytes(big, 3, 2)
    # the header, the blocks touched (one per band), GDAL's 16 KiB range granularity around each
    assert fetched <= header + touched + 64 * 2 * 16384 + 65536
    assert fetched < 0.15 * size, (fetched, size)  # 1 of the 8 data tiles (+ header)
    assert header < 0.01 * size
    # chips over HTTP equal chips from the local file
    pt = gpd.GeoSeries(shapely.points([(ORIGIN[0] + 2 * 10240 + 1005, ORIGIN[1] - 3 * 10240 - 2005)]),
                       crs="EPSG:32610")  # fmt: skip
    remote = read_chips(RasterInputs(tiles=[url], decode="aef_power"), pt, 16)
    local = read_chips(RasterInputs(tiles=[str(big)], decode="aef_power"), pt, 16)
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.mask.all()


def test_headers_are_read_once_per_file(served):
    srv = served["srv"]
    url = srv.url("2024/10N/big.tiff")
    windows = [Window(2 * 1024 + 64 * k, 2 * 1024 + 37 * k, 32, 32) for k in range(12)]
    srv.reset()
    with remote_env(), RasterCache(maxsize=4) as cache:
        for w in windows:
            cache.get(url).read(1, window=w)
        assert cache.opens == 1
    cached = srv.stats()
    srv.reset()
    opens = 0
    with remote_env(CPL_VSIL_CURL_NON_CACHED=url.replace("http://", "/vsicurl/http://")):
        for w in windows:  # naive: open the file for every window
            with rasterio.open(url) as ds:
                opens += 1
                ds.read(1, window=w)
    naive = srv.stats()
    assert opens == len(windows)
    assert naive["requests"] > cached["requests"] and naive["bytes_sent"] > cached["bytes_sent"]
    # the LRU stays bounded: old datasets are closed
    with RasterCache(maxsize=1) as cache:
        a = cache.get(str(served["big"]))
        cache.get(str(next(served["root"].glob("aef/2020/10N/*.tiff"))))
        assert a.closed and cache.opens == 2


def test_http_errors_name_the_url(served):
    srv = served["srv"]
    with pytest.raises(
        TileNotFoundError, match=r"http://127\.0\.0\.1:\d+/nope\.tiff does not exist"
    ):
        read_tile_meta(srv.url("nope.tiff"))
    srv.fail("2024/10N/big.tiff", 416)
    try:
        with pytest.raises(InputError, match=r"big\.tiff: HTTP 416 Range Not Satisfiable"):
            read_tile_meta(srv.url("2024/10N/big.tiff"))
    finally:
        srv.fail("2024/10N/big.tiff", None)
    srv.fail("2024/10N/big.tiff", 403)
    try:
        with pytest.raises(InputError, match=r"big\.tiff: access denied \(HTTP 403\)"):
            read_chips(RasterInputs(tiles=[srv.url("2024/10N/big.tiff")]), np.zeros((1, 2)), 4)
    finally:
        srv.fail("2024/10N/big.tiff", None)
    srv.fail("aef/aef_index.parquet", 403)
    try:
        with pytest.raises(InputError, match=r"aef_index\.parquet: HTTP 403"):
            raster_source("aef", tile_index=srv.url("aef/aef_index.parquet")).resolve()
    finally:
        srv.fail("aef/aef_index.parquet", None)
    with pytest.raises(FileNotFoundError, match=r"gone\.parquet does not exist \(HTTP 404\)"):
        raster_source("aef", tile_index=srv.url("aef/gone.parquet")).resolve()


def test_zonal_over_urls_equals_local(served):
    root, srv = served["root"], served["srv"]
    kw = {"land_column": None, "progress": False, "num_workers": 2, "method": "mean"}
    local = zonal_stats(root / "aef" / "blocks.gpkg", tile_index=root / "aef" / "aef_index.parquet",
                        decode="aef_power", **kw)  # fmt: skip
    # the index itself over HTTP: its relative hrefs resolve beside it on the server
    rasters = RasterInputs(tile_index=srv.url("aef/aef_index.parquet"), decode="aef_power")
    srv.reset()
    remote = zonal_stats(root / "aef" / "blocks.gpkg", rasters, **kw)
    cols = local.attrs["zonal"]["feature_columns"]
    np.testing.assert_array_equal(remote[cols].to_numpy(), local[cols].to_numpy())
    assert sum(v[1] for k, v in srv.per_path.items() if k.endswith(".tiff")) > 0
    # as a product source, the index's first tile is checked: this 8-band stand-in is not AEF
    with pytest.raises(InputError, match=r"\.tiff \(first of http://.*: 8 bands; expected 64"):
        raster_source("aef", tile_index=srv.url("aef/aef_index.parquet")).resolve()
