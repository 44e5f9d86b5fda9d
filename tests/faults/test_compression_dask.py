"""Compression sweep with one Dask task per config: the results table equals the in-process
run's; a failing config fails the run naming it (with its ``failed`` row, the rows before it and
none after, as in-process); a worker killed (SIGKILL) mid-config is retried with identical rows,
or — retries used up — fails naming the config. One ``LocalCluster`` for the module."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import geoemb.compression.study as study_mod
from geoemb.compression.base import ConfigFailedError
from geoemb.compression.study import StudyConfig, run_study
from geoemb.probes import ProbeConfig
from geoemb.synthetic.embedding_table import make_table
from tests.faults.dask_kill import die_once_or_always, set_allowed_failures

pytestmark = pytest.mark.faults

CONFIGS = ["float32", "int8", "binary", "pq_64x8", "pca4+int4", "int4"]  # pq_64x8: skipped
TIMING = {"fit_s", "encode_s", "decode_s", "knn_s", "linear_s", "hamming_s", "total_s"}
STUDY = StudyConfig(probe=ProbeConfig(knn_k=(5,), linear=True, C=1.0, max_iter=200), bootstrap_resamples=99,
                    parquet=True)  # fmt: skip


@pytest.fixture(scope="module")
def tables():
    return {"aef": make_table(120, 50, 16, num_classes=4, intrinsic_dim=4, seed=1),
            "dino": make_table(120, 50, 24, num_classes=4, intrinsic_dim=6, seed=2)}  # fmt: skip


def _rows(results_dir) -> pd.DataFrame:
    files = sorted((results_dir / "rows").glob("*.csv"))
    df = pd.concat([pd.read_csv(f).assign(file=f.name) for f in files], ignore_index=True)
    return df.drop(columns=[c for c in df.columns if c in TIMING])


def _run(tables, results_dir, dask=None, configs=CONFIGS):
    return run_study(tables, configs, STUDY, results_dir, data_source="synthetic", dask=dask)


@pytest.fixture(scope="module")
def reference(tables, tmp_path_factory):
    rd = tmp_path_factory.mktemp("compression_ref")
    out = _run(tables, rd)
    return out, _rows(rd)


def _same(got, ref) -> None:
    pd.testing.assert_frame_equal(got, ref, check_exact=True)


def test_local_cluster_rows_identical(client, tables, reference, tmp_path):
    ref_out, ref = reference
    out = _run(tables, tmp_path / "d", dask=client)
    _same(_rows(tmp_path / "d"), ref)
    assert out.metrics == ref_out.metrics and out.skipped == ref_out.skipped
    assert set(ref.status) == {"ok", "skipped"} and len(ref) == 2 * len(CONFIGS)


def test_spec_string_connects_to_the_scheduler(client, tables, reference, tmp_path):
    """A spec string (the shared cluster's ``tcp://127.0.0.1:…`` address, as a user passes
    ``dask.scheduler=tcp://…``) opens its own client; same rows."""
    _, ref = reference
    _run(tables, tmp_path / "d", dask=client.scheduler.address)
    _same(_rows(tmp_path / "d"), ref)


def _install_failure(config: str) -> int:
    """Make ``evaluate_config`` raise for ``config`` (in this process or on a worker)."""
    import geoemb.compression.study as sm

    real = getattr(sm, "_real_evaluate_config", sm.evaluate_config)
    sm._real_evaluate_config = real

    def failing(cfg, *a, **k):
        if cfg == config:
            raise FloatingPointError(f"synthetic failure of {cfg}")
        return real(cfg, *a, **k)

    sm.evaluate_config = failing
    return os.getpid()


def _uninstall() -> None:
    import geoemb.compression.study as sm

    if hasattr(sm, "_real_evaluate_config"):
        sm.evaluate_config = sm._real_evaluate_config
        del sm._real_evaluate_config


@pytest.mark.parametrize("where", ["none", "dask"])
def test_failing_config_fails_the_run_naming_it(client, tables, tmp_path, monkeypatch, where):
    monkeypatch.setattr(study_mod, "evaluate_config", study_mod.evaluate_config)  # restored after
    (_install_failure if where == "none" else lambda c: client.run(_install_failure, c))("binary")
    try:
        with pytest.raises(ConfigFailedError, match=r"config 'binary' failed on encoder 'aef'"):
            _run(tables, tmp_path / "r", dask=None if where == "none" else client)
    finally:
        _uninstall()
        client.run(_uninstall)
    rows = _rows(tmp_path / "r")
    # the same rows as in-process: the configs before 'binary', then its failed row, nothing after
    # (skipped rows are decided, and written, before any config runs)
    assert list(rows.config) == ["binary", "float32", "int8", "pq_64x8"]  # file-name order
    assert rows.set_index("config").loc["binary", "status"] == "failed"
    assert "synthetic failure of binary" in rows.set_index("config").loc["binary", "skip_reason"]


def _install_killer(marker: str | None) -> int:
    """The worker's next ``int8`` evaluation kills its process (SIGKILL): once across all
    workers when ``marker`` is a path (an ``O_EXCL`` file), every time when ``None``."""
    import geoemb.compression.study as sm

    real = sm.__dict__.setdefault("_real_evaluate_config", sm.evaluate_config)

    def dying(cfg, *a, **k):
        if cfg == "int8":
            die_once_or_always(marker)
        return real(cfg, *a, **k)

    sm.evaluate_config = dying
    return os.getpid()


@pytest.mark.slow
@pytest.mark.parametrize("kill_every_time", [False, True])
def test_worker_killed_mid_config(client, tables, reference, tmp_path, kill_every_time):
    _, ref = reference
    marker = None if kill_every_time else str(tmp_path / "killed_once")
    pids = client.run(_install_killer, marker)
    old = client.run_on_scheduler(set_allowed_failures, 0 if kill_every_time else 3)
    try:
        if kill_every_time:
            with pytest.raises(ConfigFailedError, match=r"config 'int8' failed on encoder 'aef'"
                               r".*died too often"):  # fmt: skip
                _run(tables, tmp_path / "r", dask=client)
            rows = _rows(tmp_path / "r")
            assert list(rows.config) == ["float32", "int8", "pq_64x8"]
            assert rows.set_index("config").loc["int8", "status"] == "failed"
            return
        _run(tables, tmp_path / "r", dask=client)
        assert os.path.exists(marker)  # a worker really was killed mid-task
        _same(_rows(tmp_path / "r"), ref)
    finally:
        client.run_on_scheduler(set_allowed_failures, old)
        client.run(_uninstall)  # (workers restarted by their nanny have none)
        client.wait_for_workers(2, timeout=300)
    assert set(client.run(os.getpid).values()) != set(pids.values())
