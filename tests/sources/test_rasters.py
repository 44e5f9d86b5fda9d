"""Embedding-raster sources: the registry, real-data checks (one error), the cached stand-in."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest

from geoemb.data.source import MARKER
from geoemb.errors import DataNotFoundError, InputError
from geoemb.sources import AEF, RASTERS, SOURCES, EmbeddingRasters, raster_source
from geoemb.utils.registry import UnknownNameError
from geoemb.zonal import RasterInputs, zonal_stats

# a tiny census scene with the product's 64 bands (so a copy of it passes as real AEF data)
SMALL = {"tile_size": 16, "n_bands": 64, "min_block_px": 6, "n_tiles_x": 2, "n_tiles_y": 2,
         "cog_tile": 256}  # fmt: skip


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("aef_src")
    src = raster_source("aef", root=root / "aef", synthetic=True,
                        synthetic_root=root / "synthetic", synthetic_kwargs=SMALL)  # fmt: skip
    return src, src.resolve()


def test_registry_lists_and_builds_products():
    assert {"aef", "tessera"} <= set(RASTERS.names()) and RASTERS.get("aef").meta["product"] is AEF
    assert set(RASTERS.names()) < set(SOURCES.names()) and "tessera" in RASTERS.describe()
    src = raster_source("AEF", root="/nowhere")
    assert isinstance(src, EmbeddingRasters) and src.decode == "aef_power"
    assert src.data_source == "real"
    with pytest.raises(UnknownNameError, match="valid: aef, tessera"):
        raster_source("tesera")


def test_real_missing_index_is_one_error_with_where_to_get_it(tmp_path):
    src = raster_source("aef", root=tmp_path / "aef")
    with pytest.raises(DataNotFoundError) as e:
        src.resolve()
    msg = str(e.value)
    assert str(tmp_path / "aef") in msg and "aef_index.parquet, aef_index.gpkg" in msg
    assert "https://data.source.coop/tge-labs/aef" in msg and "data.synthetic=true" in msg
    # the caller's own missing inputs go into the same error, with their hint
    with pytest.raises(DataNotFoundError) as e:
        src.resolve(["evaluation.polygons is not set"], "TIGER from census.gov")
    msg = str(e.value)
    assert "aef_index.gpkg" in msg and "evaluation.polygons is not set" in msg
    assert "TIGER from census.gov" in msg and "data.synthetic=true" in msg
    gone = raster_source("aef", tile_index=tmp_path / "x" / "idx.gpkg")
    with pytest.raises(DataNotFoundError, match=r"tile index .*idx.gpkg does not exist"):
        gone.resolve()
    tiles = raster_source("aef", tiles=[tmp_path / "a.tif", str(tmp_path / "*.tif")])
    with pytest.raises(DataNotFoundError, match=r"a\.tif"):
        tiles.resolve()


def test_real_data_present_resolves_to_its_index(stand_in, tmp_path):
    _, syn = stand_in
    folder = syn.tile_index.parent  # a complete copy of the product's layout
    src = raster_source("aef", root=folder, index_filter={"year": 2020})
    got = src.resolve()
    assert isinstance(got, RasterInputs) and got.tile_index == folder / "aef_index.parquet"
    assert got.decode == "aef_power" and got.index_filter == {"year": 2020} and got.tiles is None
    assert src.data_source == "real"
    with pytest.raises(DataNotFoundError, match="real data"):
        src.stand_in_polygons()
    # the product's checks run on real data: an index of two years must be filtered
    two = gpd.read_parquet(folder / "aef_index.parquet")
    two = pd.concat([two, two.assign(year=2021)], ignore_index=True)
    two.to_parquet(tmp_path / "aef_index.parquet")
    for t in two.path.unique():
        (tmp_path / t).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / t).symlink_to(folder / t)
    with pytest.raises(
        InputError, match=r"several years \[2020, 2021\].*index_filter=\{year: 2021\}"
    ):
        raster_source("aef", root=tmp_path).resolve()
    assert (
        raster_source("aef", root=tmp_path, index_filter={"year": 2021}).resolve().tile_index
        is not None
    )
    tiles = sorted(str(p) for p in (folder / "2020").glob("*/*.tiff"))
    assert len(tiles) == 2
    got = raster_source("aef", tiles=tiles, decode="raw", nodata=0).resolve()
    assert got.tiles == tiles and got.tile_index is None and got.decode == "raw"
    assert got.nodata == 0.0


def test_stand_in_generated_once_content_keyed_and_tagged(stand_in, tmp_path):
    src, got = stand_in
    folder = got.tile_index.parent
    assert (folder / MARKER).is_file() and folder.parent.name == "synthetic"
    assert src.data_source == "synthetic" and got.decode == "aef_power"
    assert src.stand_in_polygons() == folder / "blocks.gpkg"
    mtime = got.tile_index.stat().st_mtime_ns
    again = raster_source("aef", root=folder.parent.parent / "aef", synthetic=True,
                          synthetic_root=folder.parent, synthetic_kwargs=SMALL)  # fmt: skip
    assert again.resolve().tile_index == got.tile_index
    assert got.tile_index.stat().st_mtime_ns == mtime  # cached, not regenerated
    other = raster_source("aef", synthetic=True, synthetic_root=folder.parent,
                          synthetic_kwargs={**SMALL, "seed": 1})  # fmt: skip
    assert other.resolve().tile_index.parent != folder  # other arguments: another stand-in
    out = zonal_stats(src.stand_in_polygons(), got, land_column=None, progress=False)
    assert out.attrs["zonal"]["data_source"] == "synthetic" and len(out) == len(
        gpd.read_file(folder / "blocks.gpkg")
    )


def test_bad_arguments_refused_up_front(tmp_path):
    with pytest.raises(InputError, match="decode='aef2' is not a decode of .*valid: aef_power"):
        raster_source("aef", decode="aef2")
    with pytest.raises(InputError, match="unknown key.*'landmsk'.*valid: \\['cache_dir'"):
        raster_source("tessera", options={"landmsk": True})
    with pytest.raises(InputError, match="index_filter"):
        raster_source("aef", index_filter=["year", 2020])
    with pytest.raises(InputError, match="both set"):
        raster_source("aef", tiles=["a.tif"], tile_index="i.gpkg")
    with pytest.raises(InputError, match="data.synthetic=true generates its own"):
        raster_source("aef", tile_index="i.gpkg", synthetic=True)
    with pytest.raises(DataNotFoundError, match="empty list"):
        raster_source("aef", tiles=[]).resolve()
