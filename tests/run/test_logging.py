"""geoemb.run.logging: Lightning lines once, library chatter dropped by exact logger+message,
library-vs-library deprecation warnings ignored, DDP ranks > 0 quiet, sweep summary lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from geoemb.run import logging as runlog

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_logging():
    """Save and restore the global logging state this module touches."""
    names = ("", *runlog.LIGHTNING_LOGGERS, *(r.logger for r in runlog.NOISE))
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate,
            list(logging.getLogger(n).filters))
        for n in names
    }  # fmt: skip
    with warnings.catch_warnings():
        yield
    for n, (handlers, propagate, filters) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.filters[:] = filters


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record(name: str, msg: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_noise_filter_matches_exact_logger_message_and_level():
    f = runlog.NoiseFilter()
    avx2 = "Could not load library with AVX2 support due to:\nModuleNotFoundError(\"No module named 'faiss.swigfaiss_avx2'\")"  # noqa: E501
    assert not f.filter(_record("faiss.loader", avx2))
    assert not f.filter(_record("faiss.loader", "Successfully loaded faiss."))
    assert not f.filter(
        _record("alembic.runtime.plugins", "setup plugin alembic.autogenerate.types")
    )
    tip = (
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](x)"
    )
    assert not f.filter(_record("lightning.pytorch.utilities.rank_zero", tip))
    # the same text from another logger, a warning of the same logger, other messages: kept
    assert f.filter(_record("geoemb.tasks", avx2))
    assert f.filter(_record("faiss.loader", avx2, logging.WARNING))
    assert f.filter(_record("faiss.loader", "Failed to load GPU Faiss: x"))
    assert f.filter(_record("lightning.pytorch.utilities.rank_zero", "GPU available: False"))


def test_lightning_lines_reach_root_handlers_once(clean_logging):
    import lightning  # noqa: F401  (its import added its own console handler)

    root = logging.getLogger()
    cap = _Capture()
    root.addHandler(cap)
    try:
        assert runlog.route_to_root()
        for name in runlog.LIGHTNING_LOGGERS:
            lg = logging.getLogger(name)
            assert lg.propagate
            assert not [h for h in lg.handlers if type(h) is logging.StreamHandler], name
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("hello once")
        assert [r.getMessage() for r in cap.records].count("hello once") == 1
    finally:
        root.removeHandler(cap)


def test_without_root_handlers_lightning_keeps_its_own(clean_logging, monkeypatch):
    import lightning  # noqa: F401

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    before = list(logging.getLogger("lightning").handlers)
    assert not runlog.route_to_root()
    assert logging.getLogger("lightning").handlers == before


def test_library_deprecation_warning_ignored_but_others_kept(clean_logging):
    from lightning.pytorch.utilities._pytree import _tree_flatten

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tree_flatten(object())  # Lightning builds a deprecated LeafSpec (torch >= 2.10)
    if not any("LeafSpec" in str(w.message) for w in caught):
        pytest.skip("this torch/Lightning pair does not raise the LeafSpec deprecation")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runlog.ignore_library_warnings()
        _tree_flatten(object())
        warnings.warn("a real FutureWarning", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real FutureWarning"]


def test_rank_nonzero_keeps_only_warnings(clean_logging, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert runlog.process_rank() == 1
    cap = _Capture()
    logging.getLogger().addHandler(cap)
    try:
        runlog.configure_logging()
        logging.getLogger("geoemb.tasks").info("rank 1 info")
        logging.getLogger("geoemb.tasks").warning("rank 1 warning")
    finally:
        logging.getLogger().removeHandler(cap)
    assert [r.getMessage() for r in cap.records] == ["rank 1 warning"]


def test_quiet_console_passes_warnings_and_sweep_lines_only(clean_logging, monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    console, logfile = logging.StreamHandler(open(os.devnull, "w")), _Capture()  # noqa: SIM115
    seen: list[str] = []
    console.emit = lambda r: seen.append(r.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(logfile)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        runlog.configure_logging(quiet_console=True)
        logging.getLogger("geoemb.tasks").info("job info")
        logging.getLogger("geoemb.tasks").warning("job warning")
        logging.getLogger(runlog.SWEEP_LOGGER).info("job 0 [COMPLETED]")
    finally:
        root.removeHandler(console)
        root.removeHandler(logfile)
        root.setLevel(level)
        console.stream.close()
    assert seen == ["job warning", "job 0 [COMPLETED]"]
    assert [r.getMessage() for r in logfile.records] == [
        "job info", "job warning", "job 0 [COMPLETED]"
    ]  # fmt: skip


def _job_config(params: dict | None) -> OmegaConf:
    return OmegaConf.create(
        {
            "optimized_metric": "val/iou",
            "hydra": {
                "job": {"num": 3},
                "runtime": {"output_dir": "/runs/sweep/3"},
                "sweeper": {"params": params},
            },
        }
    )


def test_job_summary_one_line_with_value_swept_params_and_dir():
    ret = SimpleNamespace(
        status=JobStatus.COMPLETED,
        return_value=0.53125,
        overrides=["model.optimizer.lr=0.0003", "data.batch_size=8", "experiment=water_seg"],
    )
    line = runlog.job_summary(_job_config({"model.optimizer.lr": "x", "data.batch_size": "y"}), ret)
    assert line == (
        "job 3 [COMPLETED] val/iou=0.53125 | model.optimizer.lr=0.0003 data.batch_size=8"
        " -> /runs/sweep/3"
    )
    assert "experiment=water_seg" in runlog.job_summary(_job_config(None), ret)


def test_job_summary_of_a_failed_job_names_the_error():
    class Failed:
        status = JobStatus.FAILED
        overrides = ["a=1"]

        @property
        def return_value(self):
            raise ValueError("bad lr\nsecond line")

    line = runlog.job_summary(_job_config(None), Failed())
    assert line == "job 3 [FAILED] ValueError: bad lr | a=1 -> /runs/sweep/3"


def _import_noise(configure: bool) -> str:
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        + ("from geoemb.run.logging import configure_logging; configure_logging()\n" if configure
           else "")
        + "import faiss, optuna\n"
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout + res.stderr


@pytest.mark.slow
def test_faiss_loader_and_alembic_lines_silenced():
    raw = _import_noise(configure=False)
    if "swigfaiss_avx2" not in raw and "setup plugin alembic" not in raw:
        pytest.skip("this faiss/optuna build logs nothing at import")
    quiet = _import_noise(configure=True)
    for text in ("swigfaiss_avx2", "Loading faiss", "setup plugin alembic"):
        assert text not in quiet, quiet
