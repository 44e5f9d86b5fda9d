"""Embedding tables: Clay v0/v1.5, Major TOM and any GeoParquet, read from files written by the
products' documented conventions with plain geopandas/pyarrow (not only by our stand-ins)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely

from geoemb.retrieval.cli import run as retrieval_cli
from geoemb.retrieval.store import CorpusStore
from geoemb.sources import SOURCES, TABLES, table_source
from geoemb.sources.tables import file_row_ids, string_ids
from geoemb.synthetic import clay, majortom


def _footprints(rng, n, crs_m=False):
    lon = rng.uniform(-20, 40, n)
    lat = rng.uniform(-40, 60, n)
    w = rng.uniform(0.01, 0.05, n)
    # irregular quadrilaterals: centroid != bbox centre, so the centroid rule is tested
    return [shapely.Polygon([(x - a, y - a), (x + 2 * a, y - a), (x + a, y + a), (x - a, y + 0.5 * a)])
            for x, y, a in zip(lon, lat, w, strict=True)]  # fmt: skip


def test_registry_names_tables():
    assert {"clay", "majortom", "geoparquet"} <= set(TABLES.names())
    assert (
        SOURCES.get("clay").meta["kind"] == "table" and SOURCES.get("aef").meta["kind"] == "raster"
    )


def test_clay_v15_hive_written_by_geopandas_and_pyarrow(tmp_path):
    """v1.5: geopandas GeoDataFrame -> Arrow -> pyarrow.dataset Hive partitions (geohash_l2/year/
    month), `embedding` list<float32>; location = shapely centroid, id = chips_id."""
    rng = np.random.default_rng(1)
    n, d = 240, 16
    geoms = _footprints(rng, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    gdf = gpd.GeoDataFrame({
        "chips_id": [f"chip-{i:04d}" for i in range(n)],
        "datetime": pd.to_datetime(["2024-06-15T10:00:00Z"] * n),
        "embedding": list(x),
        "geohash_l2": rng.choice(["u0", "sp", "kz"], n),
        "year": rng.choice([2024, 2025], n),
        "month": ["06"] * n,
    }, geometry=geoms, crs="OGC:CRS84")  # fmt: skip
    gdf.to_parquet(tmp_path / "whole.parquet")  # geopandas writes the GeoParquet metadata
    table = pq.read_table(tmp_path / "whole.parquet")
    ds.write_dataset(table, tmp_path / "clay", format="parquet",
                     partitioning=["geohash_l2", "year", "month"], partitioning_flavor="hive")  # fmt: skip
    t = table_source("clay", path=tmp_path / "clay")
    assert len(t.files) >= 6 and all("geohash_l2=" in str(f) for f in t.files)
    rows = t.read()
    order = np.argsort(rows.ids)
    ref = np.argsort(string_ids(gdf["chips_id"].tolist()))
    # same rows (whatever order the partitions are read in)
    np.testing.assert_array_equal(np.sort(rows.ids), np.sort(string_ids(gdf["chips_id"])))
    np.testing.assert_array_equal(rows.embeddings[order], x[ref])
    c = shapely.centroid(np.asarray(geoms))[ref]
    np.testing.assert_allclose(rows.lon[order], shapely.get_x(c), atol=1e-12)
    np.testing.assert_allclose(rows.lat[order], shapely.get_y(c), atol=1e-12)
    np.testing.assert_allclose(rows.bbox[order], shapely.bounds(np.asarray(geoms))[ref])


def test_clay_v0_gpq_fixed_shape_tensor(tmp_path):
    """v0 (Clay docs): `.gpq`, `embeddings` as a FixedShapeTensorArray, date32, source_url,
    GeoParquet 1.0 in OGC:CRS84; no id column -> file + row ids, stable across folders."""
    rng = np.random.default_rng(2)
    n, d = 50, 12
    geoms = _footprints(rng, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    gdf = gpd.GeoDataFrame({"source_url": ["s3://clay-tiles-02/02/27WXN/claytile.tif"] * n,
                            "date": pd.to_datetime(["2021-01-01"] * n).date},
                           geometry=geoms, crs="OGC:CRS84")  # fmt: skip
    gdf.to_parquet(tmp_path / "a.parquet")  # geopandas writes the geo metadata
    t = pq.read_table(tmp_path / "a.parquet")
    t = t.append_column("embeddings", pa.FixedShapeTensorArray.from_numpy_ndarray(x))
    folder = tmp_path / "v0"
    folder.mkdir()
    pq.write_table(t, folder / "27WXN_20200101_20231231_v001.gpq")
    rows = table_source("clay", path=folder).read()
    np.testing.assert_array_equal(rows.embeddings, x)
    np.testing.assert_array_equal(
        rows.ids, file_row_ids(folder / "27WXN_20200101_20231231_v001.gpq", 0, n)
    )
    alone = table_source("clay", path=folder / "27WXN_20200101_20231231_v001.gpq").read()
    np.testing.assert_array_equal(alone.ids, rows.ids)  # the file alone: same ids
    np.testing.assert_allclose(rows.lon, shapely.get_x(shapely.centroid(np.asarray(geoms))))


def test_majortom_card_layout(tmp_path):
    """Major TOM (dataset card): embeddings/*.parquet, unique_id, embedding, centre_lat/lon float32,
    WKB geometry (no geo metadata needed: the location is centre_lon/centre_lat, as torchgeo)."""
    rng = np.random.default_rng(3)
    n, d = 30, 8
    x = rng.normal(size=(n, d)).astype(np.float32)
    lat = rng.uniform(-60, 60, n).astype(np.float32)
    lon = rng.uniform(-180, 180, n).astype(np.float32)
    uid = [f"{i:064x}" for i in range(n)]
    t = pa.table({"unique_id": uid, "embedding": pa.array(list(x), pa.list_(pa.float32())),
                  "timestamp": ["20200328T104021"] * n, "grid_cell": ["1U_2R"] * n,
                  "grid_row_u": pa.array([1] * n, pa.int16()),
                  "geometry": pa.array(shapely.to_wkb(shapely.points(lon, lat)), pa.binary()),
                  "centre_lat": lat, "centre_lon": lon,
                  "pixel_bbox": pa.array([[0, 0, 1068, 1068]] * n, pa.list_(pa.int64()))})  # fmt: skip
    (tmp_path / "embeddings").mkdir()
    pq.write_table(t.slice(0, 20), tmp_path / "embeddings" / "part_00000.parquet")
    pq.write_table(t.slice(20), tmp_path / "embeddings" / "part_00001.parquet")
    rows = table_source("majortom", path=tmp_path).read()
    np.testing.assert_array_equal(rows.ids, string_ids(uid))
    np.testing.assert_array_equal(rows.lon, lon.astype(np.float64))
    np.testing.assert_array_equal(rows.lat, lat.astype(np.float64))
    np.testing.assert_array_equal(rows.embeddings, x)


def test_any_geoparquet_projected_points_and_lonlat(tmp_path):
    """Any table: point geometry in a projected CRS (reprojected to lon/lat by pyproj), a chosen
    embedding column and integer ids; or plain lon/lat columns."""
    rng = np.random.default_rng(4)
    n = 20
    lon, lat = rng.uniform(-122, -121, n), rng.uniform(37, 38, n)
    pts = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs=4326).to_crs(32610)
    gdf = gpd.GeoDataFrame({"pid": np.arange(100, 100 + n), "vec": list(rng.normal(size=(n, 4)))},
                           geometry=pts)  # fmt: skip
    gdf.to_parquet(tmp_path / "p.parquet")
    rows = table_source("geoparquet", path=tmp_path / "p.parquet", embedding_column="vec",
                        id_column="pid").read()  # fmt: skip
    np.testing.assert_allclose(rows.lon, lon, atol=1e-9)
    np.testing.assert_allclose(rows.lat, lat, atol=1e-9)
    np.testing.assert_array_equal(rows.ids, np.arange(100, 100 + n))
    pq.write_table(pa.table({"lon": lon, "lat": lat, "embedding": list(rng.normal(size=(n, 3)))}),
                   tmp_path / "ll.parquet")  # fmt: skip
    rows = table_source("geoparquet", path=tmp_path / "ll.parquet").read()
    np.testing.assert_array_equal(rows.lon, lon)


def test_antimeridian_footprint_centroid(tmp_path):
    box = shapely.Polygon([(179.9, 0), (-179.9, 0), (-179.9, 0.1), (179.9, 0.1)])
    gdf = gpd.GeoDataFrame({"embedding": [np.ones(3)]}, geometry=[box], crs="OGC:CRS84")
    gdf.to_parquet(tmp_path / "am.parquet")
    rows = table_source("clay", path=tmp_path / "am.parquet").read()
    assert abs(abs(rows.lon[0]) - 180.0) < 1e-9 and abs(rows.lat[0] - 0.05) < 1e-9


def test_stand_ins_read_back(tmp_path):
    clay.generate(tmp_path / "v15", n=300, dim=8)
    clay.generate_v0(tmp_path / "v0", n=100, dim=8)
    majortom.generate(tmp_path / "mt", n=200, dim=8)
    v15 = table_source("clay", path=tmp_path / "v15")
    assert v15.check()["embedding"] == "embedding" and v15.check()["id"] == "chips_id"
    assert len(v15.read().ids) == 300 and all("month=06" in str(f) for f in v15.files)
    v0 = table_source("clay", path=tmp_path / "v0")
    assert v0.check()["embedding"] == "embeddings" and all(f.suffix == ".gpq" for f in v0.files)
    assert v0.read().embeddings.shape == (100, 8)
    # geopandas reads every stand-in file (they are GeoParquet)
    for f in v15.files[:1] + v0.files[:1] + sorted((tmp_path / "mt" / "embeddings").glob("*")):
        assert gpd.read_parquet(f).crs.equals("OGC:CRS84")
    assert table_source("majortom", path=tmp_path / "mt").read().embeddings.shape[1] == 8


@pytest.mark.parametrize("source", ["auto", "clay"])
def test_build_corpus_from_clay_table(tmp_path, source):
    clay.generate(tmp_path / "v15", n=400, dim=16, seed=5)
    retrieval_cli(["build-corpus", "--input", str(tmp_path / "v15"), "--out", str(tmp_path / "c"),
                   "--dim", "16", "--precision", "2", "--quiet", "--source", source])  # fmt: skip
    store = CorpusStore(tmp_path / "c")
    rows = table_source("clay", path=tmp_path / "v15").read()
    got = store.lookup_ids(rows.ids[:5].tolist())
    assert got.num_rows == 5
    want = dict(zip(rows.ids.tolist(), zip(rows.lon, rows.lat, strict=True), strict=True))
    for i, lo, la in zip(
        got["id"].to_pylist(), got["lon"].to_pylist(), got["lat"].to_pylist(), strict=True
    ):
        assert want[i] == pytest.approx((lo, la))
    # a row found by a point inside its footprint (the polygon kept in the corpus)
    assert (
        store.lookup_point(float(rows.lon[0]), float(rows.lat[0]))["id"].to_pylist()[0]
        == rows.ids[0]
    )
