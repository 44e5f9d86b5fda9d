"""``geoemb explore`` entry point: argument errors, and a real server process on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from geoemb.explore import main
from geoemb.explore.cli import _is_loopback

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "explore" in out and "--basemap-url" in out and "127.0.0.1" in out


def test_bad_inputs_exit_2(tmp_path, small_corpus, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a geoemb corpus" in capsys.readouterr().err
    url_args = ["--basemap-url", "file:///etc/passwd/{z}/{x}/{y}", "--cache-dir", str(tmp_path)]
    assert main([str(small_corpus), *url_args]) == 2
    assert "--basemap-url" in capsys.readouterr().err
    assert main([str(small_corpus), "--basemap-url", "https://tiles.example/a.png"]) == 2
    assert "{z}" in capsys.readouterr().err


def test_is_loopback():
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")


@pytest.mark.loopback
@pytest.mark.slow
def test_server_process_prints_url_and_serves(small_corpus, tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "geoemb.explore", str(small_corpus),
                             "--cache-dir", str(tmp_path), "--basemap-url",
                             "http://127.0.0.1:9/{z}/{x}/{y}.png"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert "geoemb explore:" in line and "3000 rows" in line, (line, proc.stderr.read())
        url = line.strip().split(" at ")[-1]
        assert url.startswith("http://127.0.0.1:")
        t0 = time.time()
        while True:
            try:
                info = httpx.get(url + "info", timeout=5).json()
                break
            except httpx.ConnectError:
                assert time.time() - t0 < 30
                time.sleep(0.2)
        assert info["n_rows"] == 3000 and info["basemap_url"].startswith("http://127.0.0.1:9/")
        page = httpx.get(url, timeout=5)
        assert "img-src 'self' data: http://127.0.0.1:9" in page.headers["content-security-policy"]
    finally:
        proc.terminate()
        proc.wait(10)
