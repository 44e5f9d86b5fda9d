"""API tests without a browser: every endpoint, against the library as the oracle, and every error."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from geoemb.retrieval.exemplar import exemplar_query, score_raster
from geoemb.utils.geoparquet import validate_geoparquet

VIEW = [0.0, 40.0, 20.0, 50.0]


def _ids(store, n=5, seed=0):
    t = store.read(bbox=VIEW, columns=["id", "lon", "lat"])
    rng = np.random.default_rng(seed)
    return t.take(rng.choice(t.num_rows, n, replace=False)).to_pylist()


def _err(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


# ---------------------------------------------------------------- info / exemplar


def test_info_matches_manifest(client, store):
    info = client.get("/info").json()
    assert info["n_rows"] == store.info["n_rows"] == 3000
    assert info["n_shards"] == store.manifest.num_rows
    assert info["dim"] == 64 and info["code_bytes"] == 8
    w, s, e, n = info["extent"]
    assert w <= 0.0 + 0.2 and e >= 20.0 - 0.2 and s <= 40.2 and n >= 49.8


def test_exemplar_point_equals_library_lookup(client, store):
    rng = np.random.default_rng(1)
    hits = misses = 0
    for lon, lat in zip(rng.uniform(0, 20, 40), rng.uniform(40, 50, 40)):
        lib = store.lookup_point(float(lon), float(lat))
        r = client.post("/exemplar", json={"lon": lon, "lat": lat})
        if lib.num_rows:
            hits += 1
            assert r.status_code == 200, r.text
            assert r.json()["id"] == lib["id"][0].as_py()
        else:
            misses += 1
            assert "no corpus row covers" in _err(r, 404, "not_found")
    assert hits and misses  # both branches exercised on this sparse corpus


def test_exemplar_tolerance_snaps_to_nearest_centroid(client, store):
    t = store.read(bbox=VIEW, columns=["id", "lon", "lat"]).to_pandas()
    rng = np.random.default_rng(2)
    checked = 0
    for lon, lat in zip(rng.uniform(0, 20, 60), rng.uniform(40, 50, 60)):
        if store.lookup_point(float(lon), float(lat)).num_rows:
            continue  # covered points resolve exactly (tested above)
        tol = 0.3
        near = t[(abs(t.lon - lon) <= tol) & (abs(t.lat - lat) <= tol)]
        r = client.post("/exemplar", json={"lon": lon, "lat": lat, "tolerance_deg": tol})
        if len(near) == 0:
            _err(r, 404, "not_found")
            continue
        d2 = (near.lon - lon) ** 2 + (near.lat - lat) ** 2
        best = near.assign(d2=d2).sort_values(["d2", "id"]).iloc[0]
        assert r.json()["id"] == int(best.id)
        checked += 1
    assert checked > 5


def test_exemplar_by_id(client, store):
    row = _ids(store, 1)[0]
    for body in ({"id": row["id"]}, {"id": row["id"], "lon": row["lon"], "lat": row["lat"]}):
        r = client.post("/exemplar", json=body)
        assert r.status_code == 200 and r.json()["id"] == row["id"]
        assert r.json()["lon"] == pytest.approx(row["lon"])


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"id": 10**9}, 404, "not_found"),
        ({"lon": -120.0, "lat": -30.0}, 404, "not_found"),
        ({}, 422, "invalid_request"),
        ({"lon": 10.0}, 422, "invalid_request"),
        ({"lon": 200.0, "lat": 0.0}, 422, "invalid_request"),
        ({"lon": 10.0, "lat": 45.0, "tolerance_deg": 50}, 422, "invalid_request"),
        ({"id": 1, "path": "/etc/passwd"}, 422, "invalid_request"),
        ({"id": "one"}, 422, "invalid_request"),
    ],
)
def test_exemplar_errors(client, body, status, code):
    _err(client.post("/exemplar", json=body), status, code)


def test_malformed_json_and_nan(client):
    for path in ("/exemplar", "/search", "/export"):
        r = client.post(path, content=b'{"lon": 1,', headers={"content-type": "application/json"})
        _err(r, 400, "malformed_json")
    # Python's json accepts NaN literals; the API must not
    r = client.post("/exemplar", content=b'{"lon": NaN, "lat": 45}',
                    headers={"content-type": "application/json"})  # fmt: skip
    _err(r, 422, "invalid_request")


# ---------------------------------------------------------------- search


def _search(client, pos, neg=(), **kw):
    body = {"bbox": kw.pop("bbox", VIEW), "positives": [{"id": i} for i in pos],
            "negatives": [{"id": i} for i in neg], **kw}  # fmt: skip
    r = client.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    "combine,invert",
    [("mean", False), ("and", False), ("or", False), ("xor", False), ("majority", False),
     ("mean", True), ("xor", True)],
)  # fmt: skip
def test_search_topk_equals_library(client, store, combine, invert):
    rows = _ids(store, 4, seed=3)
    pos, neg = [r["id"] for r in rows[:3]], [rows[3]["id"]]
    bbox = [2.0, 41.0, 15.0, 48.0]
    got = _search(client, pos, neg, bbox=bbox, combine=combine, invert=invert, k=25)
    lib = exemplar_query(store, positive_ids=pos, negative_ids=neg, bbox=bbox, combine=combine,
                         invert=invert, view="topk", k=25)  # fmt: skip
    assert [r["id"] for r in got["results"]] == lib["id"].to_pylist()
    assert [r["score"] for r in got["results"]] == pytest.approx(lib["score"].to_pylist())
    assert got["n_candidates"] == store.read(bbox=bbox).num_rows


def test_search_threshold_equals_library(client, store):
    pos = [r["id"] for r in _ids(store, 2, seed=4)]
    full = exemplar_query(store, positive_ids=pos, bbox=VIEW, view="full")
    thr = float(np.quantile(full["score"].to_numpy(), 0.05))
    got = _search(client, pos, threshold=thr)
    lib = exemplar_query(store, positive_ids=pos, bbox=VIEW, view="threshold", threshold=thr)
    assert got["view"] == "threshold" and got["n_results"] == lib.num_rows > 0
    assert [r["id"] for r in got["results"]] == lib["id"].to_pylist()


def test_search_histogram_heat_timing(client, store):
    pos = [r["id"] for r in _ids(store, 2, seed=5)]
    got = _search(client, pos, width=200, height=120, bins=30, k=5)
    assert sum(got["histogram"]["counts"]) == got["n_candidates"] == 3000
    assert len(got["histogram"]["edges"]) == 31
    png = got["heat"]["png"]
    assert png.startswith("data:image/png;base64,")
    import base64

    im = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGBA")
    assert im.size == (200, 120)
    alpha = np.asarray(im)[..., 3]
    assert 0 < (alpha > 0).mean() < 1
    # the best row's pixel is opaque (it holds the lowest score of the view)
    from geoemb.explore.render import project

    top = got["results"][0]
    row = store.lookup_ids([top["id"]])
    b = row["bbox"][0].as_py()
    x0, y0, x1, y1 = project(
        np.array([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]]]), VIEW, 200, 120
    )
    cx, cy = int((x0[0] + x1[0]) / 2), int((y0[0] + y1[0]) / 2)
    assert alpha[cy, cx] > 200
    t = got["timing_ms"]
    for key in ("resolve_ms", "prune_ms", "load_ms", "filter_ms", "score_ms", "rank_ms", "heat_ms"):
        assert t[key] >= 0
    assert t["total_ms"] >= t["score_ms"]


def test_search_exemplars_excluded_and_resolved(client, store):
    rows = _ids(store, 2, seed=6)
    body = {"bbox": VIEW, "positives": [{"lon": rows[0]["lon"], "lat": rows[0]["lat"]}],
            "negatives": [{"id": rows[1]["id"], "lon": rows[1]["lon"], "lat": rows[1]["lat"]}],
            "k": 3000}  # fmt: skip
    got = client.post("/search", json=body).json()
    pos_id = got["exemplars"]["positives"][0]["id"]
    assert pos_id == store.lookup_point(rows[0]["lon"], rows[0]["lat"])["id"][0].as_py()
    ids = {r["id"] for r in got["results"]}
    assert pos_id not in ids and rows[1]["id"] not in ids and len(ids) == 2998


def test_search_antimeridian_view(antimeridian_corpus, tmp_path):
    from fastapi.testclient import TestClient

    from geoemb.explore import create_app
    from geoemb.retrieval.store import CorpusStore

    store = CorpusStore(antimeridian_corpus)
    app = create_app(antimeridian_corpus, cache_dir=tmp_path)
    bbox = [178.0, -3.0, -178.0, 3.0]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        got = c.post("/search", json={"bbox": bbox, "positives": [{"id": 0}], "k": 10}).json()
    lib = exemplar_query(store, positive_ids=[0], bbox=bbox, k=10)
    assert [r["id"] for r in got["results"]] == lib["id"].to_pylist()
    lons = np.array([r["lon"] for r in got["results"]])
    assert (lons > 0).any() and (lons < 0).any()  # both sides of the antimeridian
    assert got["n_candidates"] == store.read(bbox=bbox).num_rows


@pytest.mark.parametrize(
    "patch,status,code,needle",
    [
        ({"positives": []}, 422, "invalid_request", "positives"),
        ({"bbox": [0, 40, 20]}, 422, "invalid_request", "bbox"),
        ({"bbox": [0, 50, 20, 40]}, 422, "invalid_request", "south"),
        ({"bbox": [0, 40, 200, 50]}, 422, "invalid_request", "west/east"),
        ({"k": 0}, 422, "invalid_request", "k"),
        ({"k": 10**6}, 422, "invalid_request", "k"),
        ({"combine": "nand"}, 422, "invalid_request", "combine"),
        ({"width": 100000}, 422, "invalid_request", "width"),
        ({"positives": [{"id": 10**9}]}, 404, "not_found", "not in the corpus"),
        ({"negatives": [{"lon": -100, "lat": 0}]}, 404, "not_found", "no corpus row"),
        ({"corpus": "/etc"}, 422, "invalid_request", "corpus"),
    ],
)
def test_search_errors(client, store, patch, status, code, needle):
    body = {"bbox": VIEW, "positives": [{"id": _ids(store, 1)[0]["id"]}], **patch}
    assert needle in _err(client.post("/search", json=body), status, code)


def test_search_duplicate_exemplar_refused(client, store):
    i = _ids(store, 1)[0]["id"]
    body = {"bbox": VIEW, "positives": [{"id": i}], "negatives": [{"id": i}]}
    assert "given twice" in _err(client.post("/search", json=body), 422, "invalid_input")


def test_bbox_too_large(small_corpus, tmp_path):
    from fastapi.testclient import TestClient

    from geoemb.explore import create_app

    app = create_app(small_corpus, cache_dir=tmp_path, max_view_rows=500)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        body = {"bbox": VIEW, "positives": [{"id": 0}]}
        msg = _err(c.post("/search", json=body), 422, "bbox_too_large")
        assert "3000 corpus rows" in msg and "zoom in" in msg
        _err(c.post("/export", json={**body, "format": "geoparquet"}), 422, "bbox_too_large")
        small = {"bbox": [5.0, 44.0, 6.0, 45.0], "positives": [{"id": 0}]}
        assert c.post("/search", json=small).status_code == 200


# ---------------------------------------------------------------- export


def test_export_geoparquet_roundtrip(client, store, tmp_path):
    pos = [r["id"] for r in _ids(store, 2, seed=8)]
    body = {"bbox": VIEW, "positives": [{"id": i} for i in pos], "k": 40, "format": "geoparquet"}
    r = client.post("/export", json=body)
    assert r.status_code == 200, r.text
    assert 'filename="geoemb-results.parquet"' in r.headers["content-disposition"]
    path = tmp_path / "res.parquet"
    path.write_bytes(r.content)
    geo = validate_geoparquet(path)
    assert geo["version"] == "1.1.0"
    t = pq.read_table(path)
    shown = _search(client, pos, k=40)
    assert t["id"].to_pylist() == [x["id"] for x in shown["results"]]
    meta = json.loads(t.schema.metadata[b"geoemb:query"])
    assert meta["k"] == 40 and meta["corpus_manifest_sha256"] == client.get("/info").json()[
        "manifest_sha256"]  # fmt: skip
    import geopandas as gpd

    gdf = gpd.read_parquet(path)
    assert len(gdf) == 40 and gdf.geometry.notna().all()


def test_export_geotiff_equals_library_raster(client, store, tmp_path):
    import rasterio

    pos = [r["id"] for r in _ids(store, 1, seed=9)]
    bbox = [2.0, 42.0, 12.0, 47.0]
    body = {"bbox": bbox, "positives": [{"id": pos[0]}], "format": "geotiff", "resolution": 0.5}
    r = client.post("/export", json=body)
    assert r.status_code == 200, r.text
    path = tmp_path / "s.tif"
    path.write_bytes(r.content)
    full = exemplar_query(store, positive_ids=pos, bbox=bbox, view="full")
    grid, transform = score_raster(full["lon"].to_numpy(), full["lat"].to_numpy(),
                                   full["score"].to_numpy(), 0.5, bounds=bbox)  # fmt: skip
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.shape == grid.shape == (10, 20)
        np.testing.assert_array_equal(ds.read(1), grid)
        assert tuple(ds.transform)[:6] == pytest.approx(transform)


@pytest.mark.parametrize(
    "patch,status,code",
    [
        ({"format": "shapefile"}, 422, "invalid_request"),
        ({"format": "geotiff", "resolution": 1e-5}, 422, "invalid_input"),
        ({"format": "geotiff", "bbox": [170, -5, -170, 5]}, 422, "invalid_input"),
        ({"format": "geotiff", "bbox": [-100, 0, -90, 5]}, 404, "not_found"),
        ({"format": "geoparquet", "path": "/tmp/x.parquet"}, 422, "invalid_request"),
    ],
)
def test_export_errors(client, patch, status, code):
    body = {"bbox": VIEW, "positives": [{"id": 0}], **patch}
    _err(client.post("/export", json=body), status, code)


# ---------------------------------------------------------------- tiles, hosts, staleness


def test_tiles(client):
    r = client.get("/tiles/5/16/11.png")  # covers lon 0..11.25, lat 40.98..48.92
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    a = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    assert a.shape == (256, 256, 4) and 0.1 < (a[..., 3] > 0).mean() < 1
    empty = client.get("/tiles/5/2/20.png")  # South Pacific: transparent
    assert (np.asarray(Image.open(io.BytesIO(empty.content)).convert("RGBA"))[..., 3] == 0).all()
    for bad in ("/tiles/5/32/0.png", "/tiles/-1/0/0.png", "/tiles/30/0/0.png", "/tiles/1/0/x.png"):
        assert client.get(bad).status_code in (404, 422)


def test_host_header_guard(client):
    assert client.get("/info", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/info", headers={"host": "localhost:8000"}).status_code == 200


def test_security_headers_and_page(client):
    r = client.get("/")
    assert r.status_code == 200 and "leaflet.js" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_corpus_rebuilt_under_the_server_is_refused(small_corpus, tmp_path):
    import os
    import shutil

    from fastapi.testclient import TestClient

    from geoemb.explore import create_app

    copy = tmp_path / "corpus"
    shutil.copytree(small_corpus, copy, ignore=shutil.ignore_patterns("_explore"))
    app = create_app(copy, cache_dir=tmp_path / "cache")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/info").status_code == 200
        m = copy / "manifest.parquet"
        st = m.stat()
        os.utime(m, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert "changed on disk" in _err(c.get("/info"), 409, "corpus_changed")
        _err(c.post("/search", json={"bbox": VIEW, "positives": [{"id": 0}]}), 409,
             "corpus_changed")  # fmt: skip
