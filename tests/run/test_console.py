"""A real `train.py` run prints each log line once (console and `<run>/<task>.log`), without the
library chatter it used to trigger, and writes nothing (no `wandb/`) into the current directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]\[([^\]]+)\]\[([A-Z]+)\] - (.*)$")

NOISE = (
    "💡 Tip",  # Lightning's litlogger advertisement
    "isinstance(treespec, LeafSpec)",  # torch deprecation raised by Lightning's CombinedLoader
    "anonymous setting has no effect",  # W&B warning on Lightning's anonymous=None
    "swigfaiss_avx2",  # FAISS loader fallback chatter
    "setup plugin alembic",  # Optuna's alembic import
)


def messages(text: str) -> list[str]:
    """``logger: message`` of every Hydra-formatted log line (timestamps stripped)."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            out.append(f"{m.group(1)}: {m.group(3)}")
    return out


def duplicates(lines: list[str]) -> dict[str, int]:
    return {k: n for k, n in Counter(lines).items() if n > 1}


def run_entry(args: list[str], cwd: Path, data_dir: Path, timeout: int = 900):
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("WANDB_DIR", None)
    cmd = [sys.executable, str(ROOT / args[0]), *args[1:], f"paths.data_dir={data_dir}",
           f"paths.log_dir={cwd / 'logs'}"]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_each_line_once_no_library_noise(tmp_path):
    """`debug=fdr` on the synthetic ESW stand-in with the W&B logger (offline)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = run_entry(
        ["train.py", "debug=fdr", "experiment=water_seg_demo", "model/net=tiny_cnn",
         "data.patch_size=64", "data.batch_size=2", "logger=wandb"],
        cwd, tmp_path / "data",
    )  # fmt: skip
    console = res.stdout + res.stderr
    assert res.returncode == 0, console[-4000:]

    # Lightning's own handler printed "INFO: <msg>" beside Hydra's "[...][logger][INFO] - <msg>"
    assert not [ln for ln in console.splitlines() if ln.startswith("INFO: ")], console[-3000:]
    shown = messages(console)
    assert duplicates(shown) == {}, duplicates(shown)
    assert sum("GPU available" in m for m in shown) == 1
    for text in NOISE:
        assert text not in console, text

    (log_file,) = (cwd / "logs" / "debug" / "water_seg_demo").glob("*/debug.log")
    logged = messages(log_file.read_text())
    assert duplicates(logged) == {}, duplicates(logged)
    # the Lightning lines reach the run's log file too, each once, as on the console
    assert [m for m in logged if m.startswith("lightning")] == [
        m for m in shown if m.startswith("lightning")
    ]
    assert any("Trainer.fit` stopped" in m for m in logged)

    assert sorted(p.name for p in cwd.iterdir()) == ["logs"]  # no ./wandb, nothing else
    assert len(list((log_file.parent / "wandb").glob("offline-run-*"))) == 1
