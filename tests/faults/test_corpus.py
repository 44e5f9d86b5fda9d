"""Corpus build as a hostile user runs it: kill -9 + resume (same / other arguments, changed
input), two builds at once, NaN/inf and truncated inputs, missing ids and points."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import geoemb
from geoemb.errors import InputError, ResumeMismatchError
from geoemb.retrieval.__main__ import main, run
from geoemb.retrieval.build import BuildLockedError, CorpusBuilder, CorpusIntegrityError
from geoemb.retrieval.store import CorpusStore
from geoemb.synthetic.retrieval_corpus import generate

pytestmark = pytest.mark.faults

N, DIM = 1200, 32
SRC = str(Path(geoemb.__file__).resolve().parents[1])

# a build-corpus process that sleeps after each completed part, so a test can kill it mid-build
SLOW = """
import sys, time
import geoemb.retrieval.build as b
orig = b.CorpusBuilder.write_part
def slow(self, *a, **k):
    out = orig(self, *a, **k)
    time.sleep(float(sys.argv[1]))
    return out
b.CorpusBuilder.write_part = slow
from geoemb.retrieval.__main__ import run
sys.exit(run(sys.argv[2:]))
"""


def _args(src, out, batch_rows=100, *extra):
    return ["build-corpus", "--input", str(src), "--out", str(out), "--dim", str(DIM),
            "--precision", "1", "--max-rows", "150", "--batch-rows", str(batch_rows), "--quiet",
            *extra]  # fmt: skip


def _spawn(args, delay=0.4):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SLOW, str(delay), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_parts(out, n, proc, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(list((Path(out) / "_parts").glob("part-*.json"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"build ended early: {proc.returncode} {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("build did not reach the kill point in time")


def _kill_after(args, out, parts=3):
    proc = _spawn(args)
    _wait_parts(out, parts, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (Path(out) / "manifest.parquet").exists()


def _snapshot(root):
    store = CorpusStore(root, verify=True)
    t = store.read()
    man = store.manifest.sort_by("path")
    return {"n_rows": store.info["n_rows"], "ids": t["id"].to_pylist(), "codes": store.codes(t),
            "lonlat": (t["lon"].to_pylist(), t["lat"].to_pylist()),
            "shards": man.select(["path", "rows", "sha256"]).to_pylist()}  # fmt: skip


def _same(a, b):
    assert a["n_rows"] == b["n_rows"] == N and a["ids"] == b["ids"] == list(range(N))
    np.testing.assert_array_equal(a["codes"], b["codes"])
    assert a["lonlat"] == b["lonlat"] and a["shards"] == b["shards"]


@pytest.fixture(scope="module")
def corpus_input(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    src = generate(base / "in", n=N, dim=DIM, parts=3, seed=0)
    main(_args(src, base / "ref"))
    return src, _snapshot(base / "ref")


@pytest.mark.slow
def test_kill9_then_resume_equals_uninterrupted_or_refuses(corpus_input, tmp_path, capsys):
    src, ref = corpus_input
    out = tmp_path / "c"
    _kill_after(_args(src, out), out)
    # other batching (the bug: 14,000 of 20,000 rows, or duplicates): refused, naming it
    assert run(_args(src, out, 400)) == 2
    err = capsys.readouterr().err
    assert "batch_rows: 100 (existing build) vs 400 (this run)" in err
    assert not (out / "manifest.parquet").exists()
    with pytest.raises(ResumeMismatchError, match="max_rows_per_shard"):
        main([*_args(src, out), "--max-rows", "99"])
    # same arguments: the resumed corpus is the uninterrupted one (rows, ids, codes, shard bytes)
    main(_args(src, out))
    _same(_snapshot(out), ref)
    assert not list(out.glob("geohash=*/.*tmp*"))


@pytest.mark.slow
def test_resume_after_the_input_changed_refuses(corpus_input, tmp_path):
    src, _ = corpus_input
    mine = tmp_path / "in"
    mine.mkdir()
    for f in sorted(Path(src).glob("part-*.parquet")):
        (mine / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "c"
    _kill_after(_args(mine, out), out, parts=2)
    victim = sorted(mine.glob("part-*.parquet"))[1]
    t = pq.read_table(victim)
    pq.write_table(t.slice(0, t.num_rows - 7), victim)  # fewer rows, same name
    with pytest.raises(ResumeMismatchError, match=f"inputs\\[{victim.resolve()}\\]"):
        main(_args(mine, out))
    (mine / "part-00003.parquet").write_bytes((Path(src) / "part-00000.parquet").read_bytes())
    with pytest.raises(ResumeMismatchError, match="only in this run"):
        main(_args(mine, out))


@pytest.mark.slow
def test_two_builds_into_one_root_one_refuses(corpus_input, tmp_path):
    src, ref = corpus_input
    out = tmp_path / "c"
    proc = _spawn(_args(src, out), delay=0.5)
    _wait_parts(out, 1, proc)
    for args in (_args(src, out), _args(src, out, 400)):  # same or other arguments
        with pytest.raises(BuildLockedError, match=f"another build is writing to {out}.*pid"):
            main(args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{N} rows" in stdout
    _same(_snapshot(out), ref)  # the refused builds touched nothing


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embedding_names_file_and_row(tmp_path, bad):
    src = generate(tmp_path / "in", n=300, dim=DIM, parts=2, seed=1)
    f = src / "part-00001.parquet"
    t = pq.read_table(f)
    emb = np.asarray(t["embedding"].combine_chunks().flatten()).reshape(-1, DIM).copy()
    emb[37, 5] = bad
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM)
    pq.write_table(t.set_column(t.schema.get_field_index("embedding"), "embedding", col), f)
    with pytest.raises(InputError, match=rf"{re.escape(str(f))} row 37 \(id 187\).*NaN/inf"):
        main(_args(src, tmp_path / "c", 1000))
    assert not (tmp_path / "c" / "manifest.parquet").exists()
    lat = np.asarray(t["lat"]).copy()
    lat[3] = np.nan
    pq.write_table(t.set_column(t.schema.get_field_index("lat"), "lat", pa.array(lat)), f)
    with pytest.raises(InputError, match=r"row 3 .*lon/lat"):
        main(_args(src, tmp_path / "c2", 1000))


def test_truncated_or_foreign_input_is_named_before_any_work(tmp_path, capsys):
    src = generate(tmp_path / "in", n=300, dim=DIM, parts=2, seed=1)
    f = src / "part-00001.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(InputError, match=f"cannot read input Parquet file {f.resolve()}"):
        main(_args(src, tmp_path / "c"))
    assert not (tmp_path / "c").exists()  # refused before the output was even created
    f.write_text("id,lon,lat\n1,2,3\n")
    assert run(_args(src, tmp_path / "c")) == 2
    assert f"cannot read input Parquet file {f.resolve()}" in capsys.readouterr().err
    assert run(_args(tmp_path / "nothing-here", tmp_path / "c")) == 2


def test_library_build_refuses_a_corpus_that_does_not_match_its_input(tmp_path):
    rng = np.random.default_rng(0)

    def batch(ids):
        n = len(ids)
        return {"id": ids, "lon": rng.uniform(-50, 50, n), "lat": rng.uniform(-50, 50, n),
                "code": rng.integers(0, 256, (n, 4), dtype=np.uint8)}  # fmt: skip

    parts = [(p, batch(np.arange(p * 50, p * 50 + 50))) for p in range(4)]
    CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1).build(parts, progress=False)
    assert CorpusStore(tmp_path).info["n_rows"] == 200
    # the same root fed 2 of the 4 parts: the other two are not this input's
    with pytest.raises(CorpusIntegrityError, match="not produced by it: \\[2, 3\\]"):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1).build(parts[:2], progress=False)
    # a completed part fed other rows: refused, naming the part
    other = [(0, batch(np.arange(10)))] + parts[1:]
    with pytest.raises(ResumeMismatchError, match="part 0 was built from .*50 rows"):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1).build(other, progress=False)
    # same part numbers and sizes, other rows (e.g. a predict job resumed on another world size)
    swapped = [(p, parts[3 - p][1]) for p in range(4)]
    with pytest.raises(ResumeMismatchError, match="part 0 was built from .*ids"):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1).build(swapped, progress=False)
    with pytest.raises(CorpusIntegrityError, match="hold 200 rows but the input has 250"):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1).build(
            parts, progress=False, expected_rows=250
        )
    with pytest.raises(InputError, match="part 9 row 1 .*NaN/inf"):
        emb = np.ones((3, DIM), np.float32)
        emb[1, 0] = np.inf
        CorpusBuilder(tmp_path / "e", dim=DIM).write_part(
            9, {"id": [1, 2, 3], "lon": [0.0] * 3, "lat": [0.0] * 3, "embedding": emb}
        )
    with pytest.raises(InputError, match="duplicate ids"):
        CorpusBuilder(tmp_path / "d", dim=DIM).write_part(0, {**batch(np.array([4, 4]))})
    (tmp_path / "_build.json").write_text("{trunc")
    with pytest.raises(InputError, match="_build.json: unreadable"):
        CorpusBuilder(tmp_path, dim=DIM, geohash_precision=1)


def test_query_missing_id_point_outside_and_negative_coordinates(corpus_input, tmp_path, capsys):
    src, _ = corpus_input
    root = Path(src).parent / "ref"
    assert run(["query", "--corpus", str(root), "--id", "987654"]) == 2
    assert "id 987654 is not in the corpus" in capsys.readouterr().err
    assert run(["query", "--corpus", str(root), "--point", "0.0001,-89.9"]) == 2
    assert "no row of the corpus" in capsys.readouterr().err
    store = CorpusStore(root)
    row = store.read().slice(5, 1)
    lon, lat = row["lon"][0].as_py(), row["lat"][0].as_py()
    ok = ["exemplar", "--corpus", str(root), "--pos", f"{lon},{lat}", "--k", "3"]
    assert run([*ok, "--neg", "-0.0001,-89.9"]) == 2  # negative point parsed, not in the corpus
    assert "exemplar point (-0.0001, -89.9): no row" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # NaN coordinates never reach a lookup
        main([*ok, "--neg", "nan,1"])
    assert "finite LON,LAT" in capsys.readouterr().err
    assert run([*ok, "--neg-id", "42424242"]) == 2
    assert "exemplar ids not in the corpus" in capsys.readouterr().err
    assert run(ok) == 0 and "3 rows" in capsys.readouterr().out
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.parquet").write_bytes(b"PAR1 truncated")
    assert run(["query", "--corpus", str(tmp_path / "m"), "--id", "1"]) == 2
    assert "cannot read corpus manifest" in capsys.readouterr().err
    assert json.loads((root / "_build.json").read_text())["source"]["batch_rows"] == 100


def test_careless_arguments_are_refused_before_anything_is_written(corpus_input, tmp_path, capsys):
    src, _ = corpus_input
    out = tmp_path / "c"
    for bad in (["--batch-rows", "0"], ["--max-rows", "-1"], ["--dim", "0"]):
        assert run([*_args(src, out), *bad]) == 2
        assert "must be >= 1" in capsys.readouterr().err
    assert run([*_args(src, out), "--dim", "64"]) == 2  # 32-d embeddings, 64 code bits
    assert "has width 32 but --dim 64 needs 64" in capsys.readouterr().err
    assert run(_args(src, src)) == 2  # the corpus would land among (and glob) its inputs
    assert "is the folder of the input file" in capsys.readouterr().err
    assert not out.exists() and not (Path(src) / "_build.json").exists()


def test_a_first_try_that_completed_nothing_is_not_a_resume(tmp_path):
    src = generate(tmp_path / "in", n=300, dim=DIM, parts=2, seed=1)
    f = src / "part-00000.parquet"
    good = f.read_bytes()
    t = pq.read_table(f)
    lat = np.asarray(t["lat"]).copy()
    lat[0] = np.inf
    pq.write_table(t.set_column(t.schema.get_field_index("lat"), "lat", pa.array(lat)), f)
    with pytest.raises(InputError, match="row 0"):
        main(_args(src, tmp_path / "c"))
    f.write_bytes(good)  # the user fixes the input (new mtime/footer) and reruns
    main(_args(src, tmp_path / "c"))
    assert CorpusStore(tmp_path / "c").info["n_rows"] == 300
