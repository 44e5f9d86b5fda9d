"""Compaction as a hostile user runs it: kill -9 mid-compaction + resume equals the uninterrupted
build; a resume with another --compact-rows refuses; a corrupt spill file is a clear error."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import geoemb
from geoemb.errors import InputError, ResumeMismatchError
from geoemb.retrieval.__main__ import main
from geoemb.retrieval.store import CorpusStore
from geoemb.synthetic.retrieval_corpus import generate

pytestmark = pytest.mark.faults

DIM = 32
SRC = str(Path(geoemb.__file__).resolve().parents[1])

# a build whose compaction works in small groups and sleeps after each, so it can be killed there
SLOW = """
import sys, time
import geoemb.retrieval.compact as c
c.GROUP_ROWS = 300
orig = c.compact_cells
def slow(*a, **k):
    orig(*a, **k)
    time.sleep(float(sys.argv[1]))
c.compact_cells = slow
from geoemb.retrieval.__main__ import run
sys.exit(run(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("in"), n=2400, dim=DIM, parts=2, seed=7)


def _args(src, out, compact="500"):
    return ["build-corpus", "--input", str(src), "--out", str(out), "--dim", str(DIM),
            "--precision", "1", "--batch-rows", "400", "--compact-rows", compact, "--quiet"]  # fmt: skip


def _files(root):
    return {p.relative_to(root).as_posix(): pq.read_table(p)
            for p in sorted(Path(root).glob("geohash=*/*.parquet"))}  # fmt: skip


def test_kill_during_compaction_then_resume_equals_uninterrupted(tmp_path, src):
    ref = tmp_path / "ref"
    main(_args(src, ref))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW, "0.5", *_args(src, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    t0 = time.time()
    while not list((out / "_compact").glob("*.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 300, "compaction did not start in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "manifest.parquet").exists()
    assert list((out / "_spill").glob("*.arrow"))  # spill files kept until every cell is done
    with pytest.raises(ResumeMismatchError, match="compact_rows"):
        main(_args(src, out, compact="900"))
    main(_args(src, out))
    a, b = _files(ref), _files(out)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equals(b[k]), k
    assert CorpusStore(out).manifest.equals(CorpusStore(ref).manifest)
    assert not list((out / "_spill").glob("*")) and not list(out.glob("geohash=*/*.tmp"))


def test_corrupt_spill_file_is_a_clear_error(tmp_path, src, monkeypatch):
    import geoemb.retrieval.build as b

    out = tmp_path / "out"
    orig = b.compact

    def stop(*a, **k):
        raise RuntimeError("stopped before compaction")

    monkeypatch.setattr(b, "compact", stop)
    with pytest.raises(RuntimeError, match="stopped"):
        main(_args(src, out))  # parts written, no compaction
    monkeypatch.setattr(b, "compact", orig)
    spill = sorted((out / "_spill").glob("*.arrow"))[0]
    spill.write_bytes(spill.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read shard"):
        main(_args(src, out))
    assert not (out / "manifest.parquet").exists()
