"""geoemb.run.csv_logger: metrics.csv stays whole when a second writer (another stage or process)
adds columns to a file it did not start — the ``trainer=ddp_sim`` test-stage crash."""

from __future__ import annotations

import copy
import csv
import pickle

import pytest
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from geoemb.run.csv_logger import CSVLogger, MergingCSVWriter


def _read(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _two_stages(writer_cls, log_dir):
    """The ddp_spawn sequence: the parent's fresh writer is copied into the fit worker, which
    writes train/val rows; a second copy of the *parent's* writer (still empty) then logs test."""
    parent = writer_cls(log_dir=str(log_dir))
    fit = pickle.loads(pickle.dumps(parent))
    fit.log_metrics({"train/loss": 0.7, "epoch": 0}, step=0)
    fit.log_metrics({"val/loss": 0.6, "val/iou": 0.3, "epoch": 0}, step=0)
    fit.save()
    test = pickle.loads(pickle.dumps(parent))
    test.log_metrics({"test/iou": 0.25, "epoch": 1}, step=1)
    test.save()
    return parent.metrics_file_path


def test_lightning_writer_loses_header_between_stages(tmp_path):
    """The root cause, on Lightning's own writer (if this stops failing, Lightning fixed it)."""
    with pytest.raises(ValueError, match="dict contains fields not in fieldnames"):
        _two_stages(ExperimentWriter, tmp_path / "lightning")


def test_merging_writer_keeps_every_column_and_row(tmp_path):
    path = _two_stages(MergingCSVWriter, tmp_path / "ours")
    header, rows = _read(path)
    assert header == sorted(["epoch", "step", "train/loss", "val/iou", "val/loss", "test/iou"])
    assert [r["train/loss"] for r in rows] == ["0.7", "", ""]
    assert [r["val/iou"] for r in rows] == ["", "0.3", ""]
    assert [r["test/iou"] for r in rows] == ["", "", "0.25"]
    assert [r["step"] for r in rows] == ["0", "0", "1"]
    leftovers = [p.name for p in (tmp_path / "ours").iterdir() if p.name != "metrics.csv"]
    assert leftovers == []


def test_no_new_key_but_stale_header_does_not_shift_columns(tmp_path):
    """A writer whose key list is a superset of the file's header (the file was rewritten by
    another writer) must not append rows under a header they do not match."""
    a = MergingCSVWriter(log_dir=str(tmp_path))
    a.log_metrics({"x": 1.0}, step=0)
    a.log_metrics({"y": 2.0}, step=1)
    a.save()  # header: step,x,y
    b = copy.deepcopy(a)
    with open(a.metrics_file_path, "w", newline="") as f:  # another writer restarted the file
        csv.writer(f).writerows([["step", "x"], ["5", "9.0"]])
    b.log_metrics({"x": 3.0}, step=2)  # no key new to b, but y is missing from the file
    b.save()
    header, rows = _read(a.metrics_file_path)
    assert header == ["step", "x", "y"]
    assert [(r["step"], r["x"], r["y"]) for r in rows] == [("5", "9.0", ""), ("2", "3.0", "")]


def test_csv_logger_uses_the_merging_writer(tmp_path):
    logger = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    assert isinstance(logger.experiment, MergingCSVWriter)
    logger.log_metrics({"val/loss": 1.0}, step=0)
    logger.save()
    assert _read(tmp_path / "csv" / "metrics.csv")[0] == ["step", "val/loss"]
