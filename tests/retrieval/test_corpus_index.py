"""Id index (query by id without a scan) and ANN indexes saved beside a corpus."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geoemb.compression.bitpack import pack_bits
from geoemb.errors import ResumeMismatchError
from geoemb.retrieval import corpus_index as ci
from geoemb.retrieval.build import CorpusBuilder, write_manifest
from geoemb.retrieval.store import CorpusStore
from geoemb.synthetic.retrieval_corpus import make_embeddings

N, DIM = 3000, 64


def _build(root, seed=0, n=N):
    x, lon, lat = make_embeddings(n, DIM, seed=seed)
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, n, replace=False)  # unsorted, sparse ids
    b = CorpusBuilder(root, dim=DIM, geohash_precision=1, max_rows_per_shard=400)
    parts = [(p, {"id": ids[s : s + 1000], "lon": lon[s : s + 1000], "lat": lat[s : s + 1000],
                  "code": pack_bits(x[s : s + 1000] > 0)}) for p, s in enumerate(range(0, n, 1000))]  # fmt: skip
    b.build(parts, progress=False)
    return CorpusStore(root), ids


def test_lookup_ids_through_index_equals_scan(tmp_path, monkeypatch):
    store, ids = _build(tmp_path / "c")
    assert (tmp_path / "c" / ci.ID_INDEX).exists()
    want = [int(ids[5]), int(ids[2999]), int(ids[1234]), -7]
    got = store.lookup_ids(want)
    monkeypatch.setattr(ci, "locate_ids", lambda *a, **k: None)
    import geoemb.retrieval.store as st

    monkeypatch.setattr(st, "locate_ids", lambda *a, **k: None)
    assert got.equals(store.lookup_ids(want))  # the full scan (old corpora) gives the same rows
    assert sorted(got["id"].to_pylist()) == sorted(want[:3])


def test_locate_ids_points_at_the_row(tmp_path):
    store, ids = _build(tmp_path / "c")
    loc = ci.locate_ids(store.root, store.manifest, ids[::97].tolist())
    assert loc.num_rows == len(ids[::97])
    for i, p, r in zip(*(loc[c].to_pylist() for c in ("id", "path", "row"))):
        assert pq.read_table(store.root / p, columns=["id"])["id"][r].as_py() == i


def test_id_lookup_reads_few_row_groups(tmp_path, monkeypatch):
    store, ids = _build(tmp_path / "c")
    monkeypatch.setattr(ci, "ID_ROW_GROUP", 100)
    ci.write_id_index(store.root, store.manifest)
    read = []
    orig = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, g, *a, **k: read.append(list(g)) or orig(self, g, *a, **k))  # fmt: skip
    ci.locate_ids(store.root, store.manifest, [int(ids[0])])
    assert pq.ParquetFile(store.root / ci.ID_INDEX).metadata.num_row_groups == 30
    assert len(read[0]) == 1  # one row group of 30 read, by its id statistics


def test_stale_id_index_is_refused(tmp_path):
    store, ids = _build(tmp_path / "a")
    other, _ = _build(tmp_path / "b", seed=1)
    (tmp_path / "a" / ci.ID_INDEX).write_bytes((tmp_path / "b" / ci.ID_INDEX).read_bytes())
    with pytest.raises(ResumeMismatchError, match="manifest digest"):
        CorpusStore(tmp_path / "a").lookup_ids([int(ids[0])])
    write_manifest(tmp_path / "a")  # rewriting the manifest rewrites the id index
    assert CorpusStore(tmp_path / "a").lookup_ids([int(ids[0])]).num_rows == 1


def test_query_by_id_cli_uses_index(tmp_path, monkeypatch, capsys):
    from geoemb.retrieval.__main__ import main

    store, ids = _build(tmp_path / "c")
    import geoemb.retrieval.store as st

    calls = []
    orig = st.locate_ids
    monkeypatch.setattr(st, "locate_ids", lambda *a, **k: calls.append(1) or orig(*a, **k))
    main(["query", "--corpus", str(tmp_path / "c"), "--id", str(ids[10]), "--k", "3"])
    assert calls and "rank" in capsys.readouterr().out


def test_corpus_ann_saved_reused_and_keyed(tmp_path):
    store, ids = _build(tmp_path / "c")
    q = store.codes(store.lookup_ids(ids[:20].tolist()))
    exact = store.search(q, 10, backend="hamming_numpy")
    ann = store.search(q, 10, backend="binary_ivf", ann_params={"nprobe": 64})  # all cells
    assert ann.schema == exact.schema
    np.testing.assert_array_equal(ann["distance"].to_numpy(), exact["distance"].to_numpy())
    np.testing.assert_array_equal(ann["query"].to_numpy(), exact["query"].to_numpy())
    saved = tmp_path / "c" / ci.ANN_DIR / "binary_ivf.faiss"
    mtime = saved.stat().st_mtime_ns
    low = store.search(q, 10, backend="binary_ivf", ann_params={"nprobe": 1})
    assert saved.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    hits = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(
        np.asarray(exact["id"]).reshape(20, 10), np.asarray(low["id"]).reshape(20, 10))])  # fmt: skip
    assert 0.3 < hits <= 1.0
    with pytest.raises(ResumeMismatchError, match=r"params.nlist"):
        store.ann("binary_ivf", nlist=7)
    # the same index file beside a corpus of other content is refused
    other, _ = _build(tmp_path / "d", seed=2)
    (tmp_path / "d" / ci.ANN_DIR).mkdir()
    for f in (tmp_path / "c" / ci.ANN_DIR).iterdir():
        (tmp_path / "d" / ci.ANN_DIR / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ResumeMismatchError, match="another corpus content"):
        other.search(q, 5, backend="binary_ivf")
    idx, _ = other.ann("binary_ivf", rebuild=True)
    assert idx.ntotal == N


def test_roi_search_with_ann_backend(tmp_path):
    store, ids = _build(tmp_path / "c")
    q = store.codes(store.lookup_ids(ids[:3].tolist()))
    res = store.search(q, 5, bbox=(-180, -60, 0, 75), backend="binary_hnsw")
    ex = store.search(q, 5, bbox=(-180, -60, 0, 75), backend="hamming_numpy")
    assert res.num_rows == ex.num_rows
    assert (res["lon"].to_numpy() <= 0).all()
    assert pa.compute.max(res["distance"]).as_py() >= pa.compute.max(ex["distance"]).as_py()
