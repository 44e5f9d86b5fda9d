"""A stand-in generator killed with SIGKILL leaves no half stand-in under its final name; the
next run of the same stand-in removes the dead generator's temporary folder and generates one
complete copy."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from geoemb.data.source import MARKER, DataSource

pytestmark = pytest.mark.faults

HANG = {"on": False}  # set in the child only (not an argument: the stand-in key stays the same)


def _gen(folder: Path, n: int = 3) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"part{i}.bin").write_bytes(bytes(1000))
        if HANG["on"] and i == 0:
            time.sleep(600)  # SIGKILLed here


def _source(root: Path) -> DataSource:
    return DataSource("Toy", root, synthetic=True, generator=_gen)


def _child(root: str) -> None:
    HANG["on"] = True
    _source(Path(root)).resolve()


def test_kill9_during_generation_then_rerun_is_complete(tmp_path):
    root, parent = tmp_path / "toy", tmp_path / "synthetic" / "toy"
    child = mp.get_context("fork").Process(target=_child, args=(str(root),))
    child.start()
    deadline = time.time() + 120
    while not list(parent.glob(".*tmp*/part0.bin")):
        assert time.time() < deadline and child.is_alive(), "generator never started"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    src = _source(root)
    target = src.synthetic_dir()
    assert not target.exists() and not src.is_generated()  # nothing under the final name
    assert len(list(parent.glob(".*tmp*"))) == 1  # the dead generator's temporary folder
    out = src.resolve()
    assert out == target
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "part0.bin", "part1.bin", "part2.bin"]
    assert [p.name for p in parent.iterdir()] == [target.name]  # the dead temp is gone
