"""Hostile inputs to the embedding-raster sources: each is one clear error naming the file/URL,
the field and what was expected — raised before any output is written."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from geoemb.errors import InputError
from geoemb.evaluation.zonal import ZonalStatsEvaluator
from geoemb.run.context import RunContext
from geoemb.sources import raster_source, read_chips
from geoemb.sources.aef import quantize
from geoemb.zonal import RasterInputs
from geoemb.zonal.sources import TileNotFoundError

pytestmark = pytest.mark.faults

T = from_origin(500_000.0, 5_300_000.0, 10.0, 10.0)


def tile(path, count=64, dtype="int8", nodata=-128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 32, 32))
    data = quantize(x / np.linalg.norm(x, axis=0)).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=count, dtype=dtype,
                       crs="EPSG:32610", transform=T, nodata=nodata) as dst:  # fmt: skip
        dst.write(data)
    return path


def index(path, rows):
    with rasterio.open(rows[0]["file"]) as ds:
        fp = gpd.GeoSeries([shapely.box(*ds.bounds)], crs=ds.crs).to_crs(4326).iloc[0]
    gdf = gpd.GeoDataFrame({"path": [r["path"] for r in rows], "year": [r["year"] for r in rows]},
                           geometry=[fp] * len(rows), crs="EPSG:4326")  # fmt: skip
    gdf.to_parquet(path)
    return path


def test_wrong_band_count_and_dtype(tmp_path):
    index(tmp_path / "aef_index.parquet", [{"file": tile(tmp_path / "a.tif", count=8),
                                             "path": "a.tif", "year": 2024}])  # fmt: skip
    with pytest.raises(
        InputError, match=r"a\.tif \(first of .*aef_index\.parquet\): 8 bands; expected 64"
    ):
        raster_source("aef", root=tmp_path).resolve()
    tile(tmp_path / "b.tif", dtype="uint8", nodata=None)
    with pytest.raises(
        InputError, match=r"decode='aef_power' expects int8 codes; tile .*b\.tif is uint8"
    ):
        raster_source("aef", tiles=[tmp_path / "b.tif"]).resolve()
    assert raster_source("aef", tiles=[tmp_path / "b.tif"], decode="aef_uint8").resolve().tiles


def test_index_with_another_schema(tmp_path):
    tile(tmp_path / "a.tif")
    gpd.GeoDataFrame({"name": ["a.tif"]}, geometry=[shapely.box(0, 0, 1, 1)],
                     crs="EPSG:4326").to_parquet(tmp_path / "x.parquet")  # fmt: skip
    with pytest.raises(
        InputError, match=r"x\.parquet: no path column found .*STAC assets.*columns: \['name'"
    ):
        raster_source("aef", tile_index=tmp_path / "x.parquet").resolve()
    # a STAC item without a data asset
    pq.write_table(pa.table({"id": ["a"], "datetime": ["2024-01-01T00:00:00Z"],
                             "assets": [{"thumbnail": {"href": "t.png"}, "cog": {"href": "a.tif"}}],
                             "geometry": [shapely.to_wkb(shapely.box(0, 0, 1, 1))]}),
                   tmp_path / "items.parquet")  # fmt: skip
    with pytest.raises(
        InputError, match=r"STAC item 0 has no asset 'data' .*\['cog', 'thumbnail'\]"
    ):
        raster_source("aef", tile_index=tmp_path / "items.parquet").resolve()
    # a parquet that is no GeoParquet and no STAC table
    pq.write_table(pa.table({"path": ["a.tif"]}), tmp_path / "plain.parquet")
    with pytest.raises(InputError, match=r"cannot read tile index .*plain\.parquet"):
        raster_source("aef", tile_index=tmp_path / "plain.parquet").resolve()


def test_mixed_years_and_missing_files(tmp_path):
    tile(tmp_path / "a.tif")
    rows = [{"file": tmp_path / "a.tif", "path": "a.tif", "year": 2023},
            {"file": tmp_path / "a.tif", "path": "gone.tif", "year": 2024}]  # fmt: skip
    index(tmp_path / "aef_index.parquet", rows)
    with pytest.raises(
        InputError, match=r"several years \[2023, 2024\].*index_filter=\{year: 2024\}"
    ):
        raster_source("aef", root=tmp_path).resolve()
    # the 2024 entry's file is missing: an error as soon as a point needs it, naming the entry
    src = raster_source("aef", root=tmp_path, index_filter={"year": 2024})
    pt = gpd.GeoSeries(shapely.points([(T.c + 155, T.f - 155)]), crs="EPSG:32610")
    with pytest.raises(
        TileNotFoundError, match=r"point 0 .*entry 0, whose tile .*gone\.tif does not exist"
    ):
        read_chips(src, pt, 4)
    # and in the zonal workflow, before any output is written
    polys = gpd.GeoDataFrame(geometry=[shapely.box(T.c + 20, T.f - 200, T.c + 200, T.f - 20)],
                             crs="EPSG:32610")  # fmt: skip
    polys.to_file(tmp_path / "p.gpkg")
    ev = ZonalStatsEvaluator(data=src, polygons=str(tmp_path / "p.gpkg"),
                             filters={"land_column": None}, pooling={"progress": False})  # fmt: skip
    with pytest.raises(TileNotFoundError, match=r"gone\.tif"):
        ev.run(RunContext.local(tmp_path / "run"))
    assert not (tmp_path / "run" / "features.parquet").exists()


def test_truncated_cog_and_bad_points(tmp_path):
    p = tile(tmp_path / "a.tif")
    data = p.read_bytes()
    (tmp_path / "t.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.tif"):
        read_chips(RasterInputs(tiles=[tmp_path / "t.tif"], decode="aef_power"),
                   np.array([[-123.0, 47.8]]), 4)  # fmt: skip
    src = RasterInputs(tiles=[p], decode="aef_power")
    with pytest.raises(InputError, match="points .*NaN"):
        read_chips(src, np.array([[np.nan, 1.0]]), 4)
    with pytest.raises(InputError, match="lon/lat in degrees"):
        read_chips(src, np.array([[500_100.0, 5_299_900.0]]), 4)
    with pytest.raises(InputError, match="Point geometries"):
        read_chips(src, gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4326), 4)
    with pytest.raises(InputError, match="size must be >= 1"):
        read_chips(src, np.zeros((1, 2)), 0)
