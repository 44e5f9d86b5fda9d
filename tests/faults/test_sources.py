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


# --------------------------------------------------------------------------- embedding tables


def _clay_rows(n=6, d=4, seed=0, **extra):
    rng = np.random.default_rng(seed)
    boxes = [shapely.box(i, 0, i + 0.1, 0.1) for i in range(n)]
    cols = {
        "chips_id": [f"c{seed}-{i}" for i in range(n)],
        "embedding": list(rng.normal(size=(n, d))),
    }
    cols.update(extra)
    return gpd.GeoDataFrame(cols, geometry=boxes, crs="OGC:CRS84")


def _write(gdf, path):
    gdf.to_parquet(path)
    return path


def _raises(path, match, product="clay", **kw):
    from geoemb.sources import table_source

    with pytest.raises(InputError, match=match) as e:
        table_source(product, path=path, **kw).read()
    return str(e.value)


def test_table_missing_embedding_column(tmp_path):
    _clay_rows().drop(columns="embedding").to_parquet(tmp_path / "a.parquet")
    msg = _raises(tmp_path, r"no embedding column 'embedding' or 'embeddings'")
    assert str(tmp_path / "a.parquet") in msg


def test_table_ragged_list_column(tmp_path):
    g = _clay_rows()
    g["embedding"] = [np.ones(4)] * 3 + [np.ones(3)] + [np.ones(4)] * 2
    g.to_parquet(tmp_path / "a.parquet")
    msg = _raises(tmp_path, r"row 3: field 'embedding' has 3 values; expected 4")
    assert "a.parquet" in msg


def test_table_non_float_and_nan_embeddings(tmp_path):
    g = _clay_rows()
    g["embedding"] = [["a", "b"]] * 6
    g.to_parquet(tmp_path / "s.parquet")
    _raises(tmp_path / "s.parquet", r"field 'embedding' is list<element: string>; expected a list")
    x = np.ones((6, 4))
    x[2, 1] = np.nan
    t = pq.read_table(_write(_clay_rows().drop(columns="embedding"), tmp_path / "n.parquet"))
    pq.write_table(
        t.append_column("embedding", pa.FixedSizeListArray.from_arrays(x.ravel(), 4)),
        tmp_path / "n.parquet",
    )  # a real NaN (pandas would turn it into a null)
    _raises(tmp_path / "n.parquet", r"n.parquet row 2: field 'embedding' has NaN/inf")
    g = _clay_rows()
    g.loc[3, "embedding"][1] = np.nan  # pandas -> pyarrow: a null inside the list
    g.to_parquet(tmp_path / "m.parquet")
    _raises(tmp_path / "m.parquet", r"m.parquet row 3: field 'embedding' has a null value")


def test_table_geometry_without_crs(tmp_path):
    g = _clay_rows()
    pq.write_table(
        pa.Table.from_pandas(g.to_wkb(), preserve_index=False), tmp_path / "plain.parquet"
    )
    _raises(
        tmp_path / "plain.parquet", r"field 'geometry' has no CRS: the file has no GeoParquet 'geo'"
    )
    g.set_crs(None, allow_override=True).to_parquet(tmp_path / "null.parquet")
    _raises(tmp_path / "null.parquet", r"field 'geometry' has no CRS \('crs': null")


def test_table_partition_with_another_schema(tmp_path):
    a, b = tmp_path / "geohash_l2=u0" / "year=2024", tmp_path / "geohash_l2=u1" / "year=2024"
    a.mkdir(parents=True), b.mkdir(parents=True)
    _clay_rows().to_parquet(a / "p.parquet")
    g = _clay_rows(seed=1)
    g["embedding"] = [
        np.asarray(v, np.float32) for v in g["embedding"]
    ]  # list<float> vs list<double>
    g.to_parquet(b / "p.parquet")
    msg = _raises(
        tmp_path, r"field 'embedding' is list<element: float> here but list<element: double>"
    )
    assert str(b / "p.parquet") in msg and str(a / "p.parquet") in msg
    (b / "p.parquet").unlink()
    other = tmp_path / "geohash_l2=u2"
    other.mkdir()
    _clay_rows(seed=2).to_parquet(other / "p.parquet")
    _raises(tmp_path, r"Hive partition keys \['geohash_l2'\] differ from \['geohash_l2', 'year'\]")


def test_table_truncated_file_and_duplicate_ids(tmp_path):
    _clay_rows().to_parquet(tmp_path / "a.parquet")
    data = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(data[: len(data) // 2])
    _raises(tmp_path, r"b.parquet: cannot read it as Parquet")
    (tmp_path / "b.parquet").unlink()
    _clay_rows().to_parquet(tmp_path / "c.parquet")  # same chips_id values again
    msg = _raises(tmp_path, r"id -?\d+ appears at rows \[\d, \d+\].*'chips_id'")
    a, b = map(int, msg.split("rows [")[1].split("]")[0].split(", "))
    assert b - a == 6


def test_table_null_or_empty_geometry(tmp_path):
    g = _clay_rows()
    g.loc[4, "geometry"] = shapely.Polygon()
    g.to_parquet(tmp_path / "e.parquet")
    _raises(tmp_path / "e.parquet", r"e.parquet row 4: field 'geometry' is an empty geometry")


def test_build_corpus_bad_table_writes_nothing(tmp_path):
    from geoemb.retrieval.cli import run as retrieval_cli

    g = _clay_rows()
    g["embedding"] = [np.ones(4)] * 5 + [np.ones(5)]
    g.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "corpus"
    rc = retrieval_cli(["build-corpus", "--input", str(tmp_path / "in.parquet"), "--out", str(out),
                        "--dim", "4", "--quiet", "--source", "clay"])  # fmt: skip
    assert rc == 2 and not (out / "manifest.parquet").exists()
    _clay_rows().drop(columns="embedding").to_parquet(tmp_path / "in.parquet")
    rc = retrieval_cli(["build-corpus", "--input", str(tmp_path / "in.parquet"), "--out",
                        str(tmp_path / "c2"), "--dim", "4", "--quiet", "--source", "clay"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "c2").exists()


# --------------------------------------------------------------------------- chips at labelled points


def _label_points(xy, labels, crs="EPSG:32610"):
    return gpd.GeoDataFrame(
        {"label": labels}, geometry=gpd.points_from_xy(*np.asarray(xy).T), crs=crs
    )


def test_point_chips_bad_labels_empty_chips_and_decodes(tmp_path):
    from geoemb.data.eurosat_files import CLASSES
    from geoemb.sources.points import write_point_chips

    t = str(tile(tmp_path / "t.tif"))
    src = raster_source("aef", tiles=[t], decode="raw")
    inside = [(500_105.0, 5_299_895.0), (500_205.0, 5_299_795.0)]  # pixel centres
    with pytest.raises(InputError, match=r"labels \['Farm'\] are not class names"):
        write_point_chips(
            src, _label_points(inside, ["Forest", "Farm"]), tmp_path / "a", classes=CLASSES
        )
    far = [*inside, (600_000.0, 5_200_000.0)]
    with pytest.raises(InputError, match=r"labelled points \[2\] \(of 3\) have no valid pixel"):
        write_point_chips(
            src, _label_points(far, ["Forest"] * 3), tmp_path / "b", classes=CLASSES, size=4
        )
    decoded = raster_source("aef", tiles=[t])  # aef_power floats, not the int8 codes
    with pytest.raises(InputError, match=r"read the rasters with a raw decode"):
        write_point_chips(
            decoded, _label_points(inside, ["Forest"] * 2), tmp_path / "c", classes=CLASSES, size=4
        )
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written
    out = write_point_chips(src, _label_points(inside, ["Forest", "River"]), tmp_path / "d",
                            classes=CLASSES, size=4)  # fmt: skip
    with (
        rasterio.open(out / "eurosat-aef" / "River" / "River_1.tif") as ds,
        rasterio.open(t) as full,
    ):
        assert ds.count == 64 and ds.dtypes[0] == "uint8" and ds.nodata == 255
        r, c = full.index(*inside[1])
        want = full.read(window=((r - 2, r + 2), (c - 2, c + 2))).astype(int) + 127
        np.testing.assert_array_equal(ds.read().astype(int), want)
