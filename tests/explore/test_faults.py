"""Hostile conditions for the explorer: broken shards, stale caches, concurrent clients."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from geoemb.explore import create_app
from geoemb.explore.basemap import Basemap
from geoemb.explore.index import CorpusIndex

pytestmark = pytest.mark.faults
BASE = "http://127.0.0.1"


@pytest.fixture
def corpus_copy(small_corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(small_corpus, copy, ignore=shutil.ignore_patterns("_explore"))
    return copy


def _shard_at(corpus, lon, lat):
    m = pq.read_table(corpus / "manifest.parquet").to_pylist()
    for r in m:
        if r["xmin"] <= lon <= r["xmax"] and r["ymin"] <= lat <= r["ymax"]:
            return r
    raise AssertionError("no shard")


def _damage(path, how):
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "delete":
        path.unlink()
    else:
        t = pq.read_table(path)
        pq.write_table(t.slice(0, max(1, t.num_rows - 1)), path)


@pytest.mark.parametrize("damage", ["truncate", "delete", "other_rows"])
def test_broken_shard_is_a_clear_error_and_server_survives(corpus_copy, tmp_path, damage):
    cache = tmp_path / "cache"
    create_app(corpus_copy, cache_dir=cache)  # basemap PCA fitted and cached on the intact corpus
    shard = _shard_at(corpus_copy, 5.0, 45.0)
    _damage(corpus_copy / shard["path"], damage)
    app = create_app(corpus_copy, cache_dir=cache)  # PCA from cache: no shard read yet
    idx = app.state.index
    bad = idx.paths.index(shard["path"])
    far = [15.5, 40.2, 19.5, 41.0]
    assert bad not in set(idx.prune(far))
    with TestClient(app, base_url=BASE) as c:
        body = {"bbox": [shard["xmin"], shard["ymin"], shard["xmax"], shard["ymax"]],
                "positives": [{"id": 0}]}  # fmt: skip
        r = c.post("/search", json=body)
        assert r.status_code == 500 and r.json()["error"]["code"] == "corpus_error"
        assert shard["path"] in r.json()["error"]["message"]
        assert c.post("/search", json=body).status_code == 500  # still refused, not half-loaded
        row = idx.rows(far)
        ref = {"id": int(row.ids[0]), "lon": float(row.lon[0]), "lat": float(row.lat[0])}
        ok = c.post("/search", json={"bbox": far, "positives": [ref]})  # hint: no full scan
        assert ok.status_code == 200 and ok.json()["n_candidates"] == len(row)


def test_broken_shard_at_start_up_is_one_clear_error(corpus_copy, tmp_path, capsys):
    from geoemb.explore import main

    shard = _shard_at(corpus_copy, 5.0, 45.0)
    _damage(corpus_copy / shard["path"], "truncate")
    assert main([str(corpus_copy), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert shard["path"] in err and "cannot read corpus shard" in err


def test_stale_cache_of_another_corpus_is_refitted(corpus_copy, small_corpus, tmp_path):
    idx = CorpusIndex(corpus_copy)
    first = Basemap(idx, cache_root=tmp_path)
    npz = tmp_path / idx.manifest_sha256 / "basemap.npz"
    with np.load(npz) as z:
        fake = {k: z[k] for k in z.files}
    fake["manifest_sha256"] = np.array("0" * 64)
    fake["components"] = -fake["components"]
    np.savez(npz, **fake)
    again = Basemap(CorpusIndex(corpus_copy), cache_root=tmp_path)
    np.testing.assert_allclose(again.model.components, first.model.components)


def test_unwritable_cache_dir_still_serves(corpus_copy, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    app = create_app(corpus_copy, cache_dir=blocker)
    with TestClient(app, base_url=BASE) as c:
        assert c.get("/tiles/5/16/11.png").status_code == 200


def test_concurrent_clients_get_consistent_answers(client):
    bodies = [{"bbox": [x, 40.0, x + 6.0, 50.0], "positives": [{"id": i}], "k": 20}
              for i, x in enumerate(np.linspace(0, 14, 8))]  # fmt: skip
    seq = [client.post("/search", json=b).json()["results"] for b in bodies]
    tiles = [f"/tiles/6/{x}/{y}.png" for x in range(32, 36) for y in range(22, 24)]
    with ThreadPoolExecutor(8) as pool:
        par = list(pool.map(lambda b: client.post("/search", json=b).json()["results"], bodies * 2))
        imgs = list(pool.map(lambda u: client.get(u).status_code, tiles))
    assert par == seq * 2
    assert set(imgs) == {200}
