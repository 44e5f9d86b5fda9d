"""Atomic outputs (geoemb.utils.io.atomic_path): success, failure, fsync order, odd names, stale temps."""

from __future__ import annotations

import os

import pytest

from geoemb.utils.io import atomic_path, atomic_write_text


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            assert tmp.suffix == ".txt" and tmp.parent == target.parent
            raise RuntimeError("interrupted")
    assert target.read_text() == "hello", "an interrupted write must not replace the target"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"], "no temp file left"


def test_atomic_path_fsyncs_file_then_renames_then_fsyncs_dir(tmp_path, monkeypatch):
    """Regression: the temp file was renamed without fsync (a power loss could leave an empty or
    partial file under the final name) and the directory entry was never made durable."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(a), str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "o.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x" * 10)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1] == str(tmp) and events[1][1:] == (str(tmp), str(target))
    assert events[2][1] == str(tmp_path)
    assert target.read_bytes() == b"x" * 10


def test_atomic_path_refuses_unusable_targets_before_the_work(tmp_path):
    from geoemb.errors import OutputError

    ran = []
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is an existing directory"):
        with atomic_path(tmp_path / "d"):
            ran.append(1)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot create output directory"):
        with atomic_path(tmp_path / "f" / "out.tif"):
            ran.append(1)
    assert ran == []
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "empty.txt"):
            pass
    assert not (tmp_path / "empty.txt").exists()


@pytest.mark.parametrize("name", ["a b ü 日本.tif", "[x]*?.csv", "n" * 250 + ".txt"])
def test_atomic_path_odd_names(tmp_path, name):
    target = tmp_path / name
    atomic_write_text(target, "ok")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            (tmp.parent / (tmp.name + ".aux.xml")).write_text("sidecar")
            raise RuntimeError
    assert target.read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_atomic_path_removes_only_dead_writers_temps(tmp_path):
    import subprocess
    import sys

    from geoemb.utils.io import remove_stale_temps, writer_tag

    target = tmp_path / "out.tif"
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(p.stdout)  # exited: its PID is free (reuse within this test is negligible)
    host = writer_tag().split("-")[0]
    dead = tmp_path / f".out.tif.{host}-{dead_pid}-0.0123abcd.tmp.tif"
    dead_side = tmp_path / (dead.name + ".aux.xml")
    alive = tmp_path / f".out.tif.{writer_tag(os.getppid())}.0123abcd.tmp.tif"
    foreign = tmp_path / f".out.tif.ffffffff-{dead_pid}-0.0123abcd.tmp.tif"  # another host
    other_target = tmp_path / f".out.tiff.{host}-{dead_pid}-0.0123abcd.tmp.tiff"
    legacy = tmp_path / ".out.k2j3h4.tmp.tif"  # unknown writer: never guessed at
    for f in (dead, dead_side, alive, foreign, other_target, legacy):
        f.write_text("x")
    assert sorted(remove_stale_temps(target)) == sorted([dead, dead_side])
    assert all(f.exists() for f in (alive, foreign, other_target, legacy))
