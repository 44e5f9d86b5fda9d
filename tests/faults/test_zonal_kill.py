"""kill -9 during ``python -m geoemb.zonal stats`` and two runs on one output: never a half file
under the final name, and a rerun gives exactly the bytes of an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import geoemb
from geoemb.synthetic.zonal import generate
from geoemb.zonal import zonal_stats
from geoemb.zonal.__main__ import main

pytestmark = pytest.mark.faults

SRC = str(Path(geoemb.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Dies like kill -9 at a chosen point of the atomic write: inside the Parquet write (half a
# file on disk) or just before the rename (a complete temporary file).
DRIVER = r"""
import os, signal, sys
import pyarrow.parquet as pq
where = sys.argv[1]
if where == "write":
    real = pq.write_table
    def dying(table, path, *a, **k):
        real(table.slice(0, table.num_rows // 2), path, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    pq.write_table = dying
else:
    real_replace = os.replace
    def dying_replace(src, dst, *a, **k):
        if str(dst).endswith(".parquet"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *a, **k)
    os.replace = dying_replace
from geoemb.zonal.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("zonal_kill"), tile_size=64, n_bands=8,
                    min_block_px=6, seed=3)  # fmt: skip
    ref = tmp_path_factory.mktemp("zonal_kill_ref") / "ref.parquet"
    zonal_stats(root / "blocks.gpkg", tile_index=root / "aef_index.gpkg", decode="aef",
                num_workers=1, progress=False, output=ref)  # fmt: skip
    return root, ref


def _args(root: Path, out: Path) -> list[str]:
    return ["stats", str(root / "blocks.gpkg"), "--tile-index", str(root / "aef_index.gpkg"),
            "--decode", "aef", "-o", str(out), "--workers", "1", "--chunk-size", "32"]  # fmt: skip


def _rerun_equals_reference(root: Path, out: Path, ref: Path) -> None:
    """The rerun (in-process, to spare an interpreter start) writes the reference's bytes."""
    assert main([*_args(root, out), "--no-progress"]) == 0
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.slow
def test_kill9_mid_computation(data, tmp_path):
    root, ref = data
    out = tmp_path / "f.parquet"
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "geoemb.zonal", *_args(root, out)],
                                env=ENV, stderr=fh, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = re.findall(r"(\d+)/(\d+) \[", err.read_text(errors="replace"))
            if done and 0 < int(done[-1][0]) < int(done[-1][1]):
                break
            assert proc.poll() is None, "finished before it could be killed: " + err.read_text()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    _rerun_equals_reference(root, out, ref)


@pytest.mark.parametrize("where", ["write", "rename"])
def test_kill9_inside_the_atomic_write(data, tmp_path, where):
    root, ref = data
    out = tmp_path / "f.parquet"
    out.write_bytes(b"previous result")  # an older output must survive a killed rewrite
    r = subprocess.run([sys.executable, "-c", DRIVER, where, *_args(root, out), "--no-progress"],
                       env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert out.read_bytes() == b"previous result"
    _rerun_equals_reference(root, out, ref)


@pytest.mark.slow
def test_two_runs_on_one_output(data, tmp_path):
    root, ref = data
    out = tmp_path / "f.parquet"
    cmd = [sys.executable, "-m", "geoemb.zonal", *_args(root, out), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, e = p.communicate(timeout=600)
        assert p.returncode == 0, e[-3000:]
    assert out.read_bytes() == ref.read_bytes()
    assert not [p.name for p in tmp_path.iterdir() if p.name != "f.parquet"]
