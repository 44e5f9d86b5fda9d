"""Compaction (few files per cell, order independent of batching) and the build on Dask (identical
to the single-process build, row by row)."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from geoemb.retrieval.__main__ import main
from geoemb.retrieval.store import CorpusStore
from geoemb.synthetic.retrieval_corpus import generate

DIM = 32


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("in"), n=4000, dim=DIM, parts=3, seed=4)


def _build(src, out, *extra):
    main(["build-corpus", "--input", str(src), "--out", str(out), "--dim", str(DIM),
          "--precision", "1", "--max-rows", "100", "--quiet", *extra])  # fmt: skip
    return CorpusStore(out, verify=True)


def _files(root):
    return {p.relative_to(root).as_posix(): pq.read_table(p)
            for p in sorted(Path(root).glob("geohash=*/*.parquet"))}  # fmt: skip


def test_compaction_few_files_per_cell_same_rows(tmp_path, src):
    plain = _build(src, tmp_path / "plain", "--batch-rows", "500", "--compact-rows", "0")
    comp = _build(src, tmp_path / "comp", "--batch-rows", "500", "--compact-rows", "700")
    assert comp.read().equals(plain.read())  # same rows (read sorts by id)
    man = comp.manifest.to_pandas()
    per_cell = man.groupby("cell")["rows"].agg(["count", "sum"])
    assert (per_cell["count"] == np.ceil(per_cell["sum"] / 700)).all()
    assert plain.manifest.num_rows > 3 * comp.manifest.num_rows
    assert not list((tmp_path / "comp").glob("geohash=*/part-*.parquet"))  # inputs removed
    # rows of a cell file are sorted by the finer geohash, then id; row groups carry bbox stats
    f = pq.ParquetFile(tmp_path / "comp" / man["path"][0])
    assert f.metadata.row_group(0).column(f.schema_arrow.names.index("id")).statistics is not None


def test_bbox_read_prunes_row_groups(tmp_path, src, monkeypatch):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    import geoemb.retrieval.compact as c

    monkeypatch.setattr(c, "ROW_GROUP_ROWS", 20)
    plain = _build(src, tmp_path / "plain", "--compact-rows", "0")
    comp = _build(src, tmp_path / "comp", "--compact-rows", "100000")
    big = comp.manifest.sort_by([("rows", "descending")])
    w, s, e, n = (big[k][0].as_py() for k in ("xmin", "ymin", "xmax", "ymax"))
    box = (w + 0.4 * (e - w), s + 0.4 * (n - s), w + 0.45 * (e - w), s + 0.45 * (n - s))
    assert comp.read(bbox=box).equals(plain.read(bbox=box))
    frag = next(iter(ds.dataset(str(tmp_path / "comp" / big["path"][0].as_py())).get_fragments()))
    expr = ((pc.field("bbox", "xmax") >= box[0]) & (pc.field("bbox", "xmin") <= box[2])
            & (pc.field("bbox", "ymax") >= box[1]) & (pc.field("bbox", "ymin") <= box[3]))  # fmt: skip
    groups = frag.metadata.num_row_groups
    assert groups >= 8 and len(frag.split_by_row_group(filter=expr)) <= groups // 2


def test_compacted_output_independent_of_batching(tmp_path, src):
    a = _build(src, tmp_path / "a", "--batch-rows", "300", "--compact-rows", "700")
    b = _build(src, tmp_path / "b", "--batch-rows", "1000", "--compact-rows", "700")
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].equals(fb[k]), k
    assert a.manifest.select(["path", "rows", "sha256"]).equals(
        b.manifest.select(["path", "rows", "sha256"]))  # fmt: skip


def test_rerun_after_compaction_is_a_noop(tmp_path, src):
    a = _build(src, tmp_path / "a", "--compact-rows", "700")
    before = a.manifest
    again = _build(src, tmp_path / "a", "--compact-rows", "700")
    assert again.manifest.equals(before)


@pytest.mark.slow
def test_dask_build_identical_row_by_row(tmp_path, src):
    one = _build(src, tmp_path / "one", "--batch-rows", "500", "--compact-rows", "700")
    two = _build(src, tmp_path / "two", "--batch-rows", "500", "--compact-rows", "700",
                 "--dask", "local:2")  # fmt: skip
    f1, f2 = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert f1.keys() == f2.keys()
    for k in f1:
        assert f1[k].equals(f2[k]), k
    assert one.manifest.equals(two.manifest)
    for p in sorted((tmp_path / "one" / "_parts").glob("*.json")):
        assert json.loads(p.read_text())["rows"] == json.loads(
            (tmp_path / "two" / "_parts" / p.name).read_text())["rows"]  # fmt: skip
    assert (tmp_path / "two" / "id_index.parquet").read_bytes() == (
        tmp_path / "one" / "id_index.parquet").read_bytes()  # fmt: skip


def test_record_being_written_by_another_task_is_not_read(tmp_path, src):
    """Regression: on Dask, a compaction task listed ``_compact/*.json`` while another task was
    writing its record; pathlib's ``*`` matched that task's temporary ``.<cell>.json.<..>.tmp.json``
    (empty) → JSONDecodeError. Records are listed without dot files."""
    import geoemb.retrieval.compact as c

    real = c.atomic_write_text

    def with_a_temp_beside(path, text, *a, **k):  # another writer's temp file, still empty
        (Path(path).parent / f".{Path(path).name}.host-1-2.abcd.tmp.json").write_text("")
        return real(path, text, *a, **k)

    c.atomic_write_text = with_a_temp_beside
    try:
        store = _build(src, tmp_path / "c", "--compact-rows", "700")
    finally:
        c.atomic_write_text = real
    assert store.info["n_rows"] == 4000


def test_shard_footer_hash_and_id_index_match_independent_oracles(tmp_path, src):
    """The builder writes geometry, GeoParquet footer, SHA-256 and id index from what it holds in
    memory (no WKB parse, no re-read); each equals what shapely / ``with_geo_metadata`` /
    hashlib over the file / the id index read from the shards give."""
    import hashlib

    import shapely

    from geoemb.retrieval.corpus_index import ID_INDEX, write_id_index
    from geoemb.utils.geoparquet import with_geo_metadata

    for extra in (("--compact-rows", "700"), ("--compact-rows", "0")):
        root = tmp_path / extra[1]
        store = _build(src, root, "--batch-rows", "700", *extra)
        man = store.manifest.to_pylist()
        for rec in man:
            p = root / rec["path"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == rec["sha256"]
            t = pq.read_table(p)
            want = with_geo_metadata(t.replace_schema_metadata(None)).schema.metadata[b"geo"]
            assert t.schema.metadata[b"geo"] == want, rec["path"]
            b = [t["bbox"].combine_chunks().field(f).to_numpy() for f in ("xmin", "ymin",
                                                                          "xmax", "ymax")]  # fmt: skip
            boxes = shapely.to_wkb(shapely.box(*b, ccw=True))
            assert t["geometry"].to_pylist() == list(boxes)
        got = (root / ID_INDEX).read_bytes()
        write_id_index(root, store.manifest)  # the oracle: ids read back from every shard
        assert (root / ID_INDEX).read_bytes() == got
    assert not list((tmp_path / "700" / "_compact").glob("*.ids.npy"))  # folded into the index
