"""`trainer=ddp_sim` (2 CPU processes) fits and tests with the default loggers (CSV + W&B offline):
the CSV log keeps every stage's columns, W&B writes under the run dir only, rank 1 stays quiet."""

from __future__ import annotations

import csv

import pytest

from tests.run.test_console import duplicates, messages, run_entry


@pytest.mark.slow
def test_ddp_sim_fit_and_test(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = run_entry(
        ["train.py", "trainer=ddp_sim", "experiment=water_seg_demo", "model/net=tiny_cnn",
         "callbacks.rich_progress_bar=null", "data.patch_size=64", "data.batch_size=4",
         "data.train_length=8", "trainer.max_epochs=1", "trainer.log_every_n_steps=1"],
        cwd, tmp_path / "data",
    )  # fmt: skip
    console = res.stdout + res.stderr
    assert res.returncode == 0, console[-5000:]

    (run,) = (cwd / "logs" / "train" / "water_seg_demo").iterdir()
    with open(run / "csv" / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames or [], list(reader)
    assert {"train/loss", "val/loss", "val/iou", "test/iou", "test/loss"} <= set(header)
    assert [r for r in rows if r["test/iou"]] and [r for r in rows if r["val/iou"]]
    assert (run / "checkpoints" / "last.ckpt").is_file()

    # W&B: one offline run, under the run dir; nothing written into the working directory
    assert sorted(p.name for p in cwd.iterdir()) == ["logs"]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1

    # both ranks ran (rank 1 re-ran the entry point) but only rank 0 reports
    shown = messages(console)
    assert duplicates(shown) == {}, duplicates(shown)
    assert sum(m.startswith("geoemb.tasks: Instantiating datamodule") for m in shown) == 1
    assert sum(m.startswith("geoemb.tasks: metrics:") and "test/iou" in m for m in shown) == 1
    logged = messages((run / "train.log").read_text())
    assert duplicates(logged) == {}, duplicates(logged)
    assert any("GLOBAL_RANK: 0, MEMBER: 1/2" in m for m in logged)
