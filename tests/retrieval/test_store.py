"""Geohash, corpus shards + manifest pruning, builder resume, GeoParquet 1.1 export."""

import json

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq
import pygeohash
import pytest
import shapely

from geoemb.compression.bitpack import pack_bits
from geoemb.errors import ResumeMismatchError
from geoemb.retrieval import CorpusBuilder, CorpusStore, exemplar_query, export_geoparquet, geohash
from geoemb.utils.geoparquet import GeoParquetError, validate_geoparquet, write_geoparquet

DIM = 20


def test_geohash_known_vectors_and_pygeohash():
    assert geohash.encode(42.6, -5.6, 12) == "ezs42e44yx96"
    assert geohash.encode(42.6, -5.6, 5) == "ezs42"
    assert geohash.encode(57.64911, 10.40744, 11) == "u4pruydqqvj"
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-90, 90, 300), rng.uniform(-180, 180, 300)
    lat[:4], lon[:4] = [0, 90, -90, 45], [0, 180, -180, -90]
    for p in (1, 3, 7, 12):
        ours = geohash.encode(lat, lon, p)
        ref = [pygeohash.encode(a, o, precision=p) for a, o in zip(lat, lon)]
        assert list(ours) == ref
    x0, y0, x1, y1 = geohash.decode_bbox("u4pru")
    assert x0 <= 10.40744 <= x1 and y0 <= 57.64911 <= y1


def _rows(n, seed=0, span=(-180, -60, 180, 70)):
    rng = np.random.default_rng(seed)
    lon = rng.uniform(span[0], span[2], n)
    lat = rng.uniform(span[1], span[3], n)
    half = rng.uniform(0.01, 2.0, n)
    bbox = np.stack(
        [np.maximum(lon - half, -180), lat - half, np.minimum(lon + half, 180), lat + half], 1
    )
    codes = pack_bits(rng.random((n, DIM)) < 0.5)
    return {"id": np.arange(n), "lon": lon, "lat": lat, "bbox": bbox, "code": codes}


def _build(root, data, parts=4, **kw):
    b = CorpusBuilder(
        root, dim=DIM, geohash_precision=1, max_rows_per_shard=40, model={"name": "test"}, **kw
    )
    idx = np.array_split(np.arange(len(data["id"])), parts)
    return b, [(p, {k: v[i] for k, v in data.items()}) for p, i in enumerate(idx)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    data = _rows(600)
    b, parts = _build(root, data)
    b.build(parts, progress=False)
    return root, data


def _brute(data, w, s, e, n):
    bb = data["bbox"]
    boxes = [(w, s, 180, n), (-180, s, e, n)] if w > e else [(w, s, e, n)]
    hit = np.zeros(len(bb), bool)
    for a, b_, c, d in boxes:
        hit |= (bb[:, 2] >= a) & (bb[:, 0] <= c) & (bb[:, 3] >= b_) & (bb[:, 1] <= d)
    return set(np.nonzero(hit)[0].tolist())


@pytest.mark.parametrize("engine", ["pyarrow", "duckdb"])
def test_pruning_never_drops_a_matching_row(corpus, engine):
    root, data = corpus
    store = CorpusStore(root, engine=engine, verify=True)
    assert store.info["n_rows"] == 600 and store.quantization["method"] == "binary"
    rng = np.random.default_rng(1)
    for t in range(12):
        w = rng.uniform(-180, 180)
        e = rng.uniform(-180, 180) if t % 3 else w - rng.uniform(-30, 0)  # many W > E boxes
        s = rng.uniform(-70, 60)
        n = s + rng.uniform(0, 40)
        got = store.read(bbox=(w, s, e, n))
        assert set(got["id"].to_pylist()) == _brute(data, w, s, e, n)
        # pruning is a superset: every matching row's shard is kept
        kept = store.prune(bbox=(w, s, e, n))
        assert kept.num_rows <= store.manifest.num_rows
        assert int(pa.compute.sum(kept["rows"]).as_py() or 0) >= got.num_rows


def test_polygon_roi_and_point_lookup(corpus):
    root, data = corpus
    store = CorpusStore(root)
    poly = shapely.Polygon([(-20, -10), (40, -5), (10, 40)])
    got = store.read(polygon=poly)
    boxes = shapely.box(*data["bbox"].T)
    assert set(got["id"].to_pylist()) == set(
        np.nonzero(shapely.intersects(boxes, poly))[0].tolist()
    )
    row = store.lookup_point(data["lon"][7], data["lat"][7])
    assert row.num_rows == 1
    assert row["id"][0].as_py() in _brute(
        data, data["lon"][7], data["lat"][7], data["lon"][7], data["lat"][7]
    )


def test_empty_roi_and_search(corpus):
    root, data = corpus
    store = CorpusStore(root)
    empty = (10.0, 85.0, 10.001, 85.001)  # no rows up there
    assert store.read(bbox=empty).num_rows == 0
    assert store.search(data["code"][:2], 5, bbox=empty).num_rows == 0
    assert exemplar_query(store, positive_ids=[0], bbox=empty).num_rows == 0
    res = store.search(data["code"][:2], 5, bbox=(-180, -90, 180, 90))
    assert res.num_rows == 10 and res["id"][0].as_py() == 0 and res["distance"][0].as_py() == 0
    with pytest.raises(ValueError, match="query codes"):
        store.search(np.zeros((1, 9), np.uint8), 5)


def test_builder_interrupted_resumes_without_corrupt_shards(tmp_path):
    data = _rows(300, seed=3)
    b, parts = _build(tmp_path, data, parts=3)

    class Boom(RuntimeError):
        pass

    def gen():
        yield parts[0]
        yield parts[1]
        raise Boom("killed")

    with pytest.raises(Boom):
        b.build(gen(), progress=False)
    # crash in the middle of writing a part's shards
    import geoemb.retrieval.store as st

    real = st.pq.write_table
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("disk full")
        return real(*a, **k)

    st.pq.write_table = flaky
    try:
        with pytest.raises(Boom):
            CorpusBuilder(
                tmp_path,
                dim=DIM,
                geohash_precision=1,
                max_rows_per_shard=40,
                model={"name": "test"},
            ).write_part(2, parts[2][1])
    finally:
        st.pq.write_table = real
    # every file present under a final name is a complete, readable shard; no temp leftovers
    for f in tmp_path.glob("geohash=*/*"):
        assert not f.name.startswith(".")
        pq.read_table(f)
    assert not (tmp_path / "_parts" / "part-00002.json").exists()
    b2 = CorpusBuilder(
        tmp_path, dim=DIM, geohash_precision=1, max_rows_per_shard=40, model={"name": "test"}
    )
    assert b2.is_done(0) and b2.is_done(1) and not b2.is_done(2)
    b2.build(parts, progress=False)
    store = CorpusStore(tmp_path, verify=True)
    t = store.read()
    assert t["id"].to_pylist() == list(range(300))
    np.testing.assert_array_equal(store.codes(t), data["code"])
    assert store.manifest["rows"].to_numpy().sum() == 300
    with pytest.raises(
        ResumeMismatchError, match="different configuration(.|\n)*geohash_precision: 1"
    ):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=2)


def test_builder_errors(tmp_path):
    b = CorpusBuilder(tmp_path, dim=DIM)
    with pytest.raises(ValueError, match="'code'"):
        b.write_part(0, {"id": [0], "lon": [0.0], "lat": [0.0], "code": np.zeros((1, 5), np.uint8)})
    with pytest.raises(ValueError, match="required field 'lat'"):
        b.write_part(0, {"id": [0], "lon": [0.0]})


def test_shards_and_export_are_geoparquet_11(corpus, tmp_path):
    root, data = corpus
    store = CorpusStore(root)
    shard = root / store.manifest["path"][0].as_py()
    geo = validate_geoparquet(shard)
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == [
        "bbox",
        "xmin",
    ]
    meta = pq.read_schema(shard).metadata
    assert json.loads(meta[b"geoemb:model"]) == {"name": "test"}
    assert pq.read_schema(shard).field("code").type == pa.list_(pa.uint8(), 3)
    res = exemplar_query(
        store,
        positives=[(data["lon"][3], data["lat"][3])],
        negative_ids=[5],
        bbox=(-60, -50, 60, 50),
        k=50,
    )
    assert 3 not in res["id"].to_pylist() and len(res) == 50
    out = export_geoparquet(res, tmp_path / "res.parquet")
    validate_geoparquet(out)
    box = (-20, -20, 20, 20)
    g = gpd.read_parquet(out, bbox=box)
    gb = res["bbox"].combine_chunks()
    expect = {
        i
        for i, a, b_, c, d in zip(
            res["id"].to_pylist(),
            *(gb.field(f).to_numpy() for f in ("xmin", "ymin", "xmax", "ymax")),
        )
        if c >= box[0] and a <= box[2] and d >= box[1] and b_ <= box[3]
    }
    assert set(g["id"]) == expect and len(expect) > 0
    assert g.crs is not None and g.crs.to_string() == "OGC:CRS84"  # 'crs' absent => CRS84
    full = gpd.read_parquet(out)
    assert list(full["rank"]) == list(range(50))


def test_validator_rejects_bad_files(tmp_path):
    t = pa.table(
        {
            "id": [1],
            "geometry": pa.array([shapely.to_wkb(shapely.Point(0, 0))], pa.binary()),
            "bbox": pa.StructArray.from_arrays(
                [pa.array([0.0])] * 4, names=["xmin", "ymin", "xmax", "ymax"]
            ),
        }
    )
    write_geoparquet(t, tmp_path / "ok.parquet")
    validate_geoparquet(tmp_path / "ok.parquet")
    pq.write_table(t, tmp_path / "plain.parquet")
    with pytest.raises(GeoParquetError, match="missing 'geo'"):
        validate_geoparquet(tmp_path / "plain.parquet")
    bad = t.set_column(
        2,
        "bbox",
        pa.StructArray.from_arrays([pa.array([5.0])] * 4, names=["xmin", "ymin", "xmax", "ymax"]),
    )
    with pytest.raises(GeoParquetError, match="does not enclose|outside their covering bbox"):
        write_geoparquet(bad, tmp_path / "bad.parquet")
