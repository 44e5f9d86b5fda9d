"""benchmarks/gpu.sh on a machine without CUDA: a clear refusal, and every section runs on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _run(tmp_path: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), CUDA_VISIBLE_DEVICES="")
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_without_cuda_exits_2_with_a_clear_message(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides any GPU from the child, so this holds on GPU machines too
    r = _run(tmp_path, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no CUDA device:" in r.stdout and "nothing benchmarked" in r.stdout
    assert "--tiny --device cpu" in r.stdout  # says how to smoke-test instead
    assert not (tmp_path / "gpu_bench.md").exists()  # no half table


def test_cpu_without_tiny_is_refused(tmp_path):
    r = _run(tmp_path, "--device", "cpu", timeout=300)
    assert r.returncode == 2 and "--tiny" in r.stdout


@pytest.mark.slow
def test_tiny_smoke_run_on_cpu_runs_every_section(tmp_path):
    r = _run(tmp_path, "--tiny", "--device", "cpu", timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["failed"] == []
    sections = {row["section"] for row in data["rows"]}
    assert {"hamming", "float search", "dwr", "inference"} <= sections
    assert any(s.startswith("pooling") for s in sections)
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "| section | workload |" in md and "all 13 together" in md
    assert (tmp_path / "gpu_bench.log").stat().st_size > 0
    for row in data["rows"]:
        if row["section"] == "dwr":
            assert "identical numbers: True" in row["note"]
