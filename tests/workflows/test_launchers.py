"""Sweeps through submitit: `hydra/launcher=slurm` resources from `conf/local/` (checked down to the
sbatch script submitit would submit) and a real 2-job multirun through `hydra/launcher=local`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import hydra
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from geoemb.run import resolvers  # noqa: F401  (${geoemb.run_dir:} in hydra.sweep.dir)
from tests.run.test_console import duplicates, messages, run_entry

ROOT = Path(__file__).resolve().parents[2]


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


class _Submitted(Exception):
    pass


def _sbatch_text(cfg, monkeypatch, tmp_path: Path) -> str:
    """Run the launcher as Hydra would, up to the submission; return the sbatch script text."""
    import submitit

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    srun = fake_bin / "srun"  # submitit only checks that srun exists
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    seen = {}

    def fake_map_array(self, fn, *iterable):
        seen["executor"] = self
        raise _Submitted

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(_Submitted):
        launcher.launch([["model.optimizer.lr=0.001"]], initial_job_idx=0)
    return seen["executor"]._executor._make_submission_file_text("python -c pass", "uid")


def test_slurm_launcher_reads_local_cluster_settings(tmp_path, monkeypatch):
    """conf/local/example.yaml (as conf/local/default.yaml would be) sets the sbatch resources."""
    example = yaml.safe_load((ROOT / "conf" / "local" / "example.yaml").read_text())["cluster"]
    cfg = _compose(
        ["hydra/launcher=slurm", "local=example", "experiment=water_seg_demo",
         f"paths.log_dir={tmp_path}/logs", "cluster.constraint=a100", "cluster.account=proj"]
    )  # fmt: skip
    text = _sbatch_text(cfg, monkeypatch, tmp_path)
    assert f"#SBATCH --partition={example['partition']}" in text
    assert f"#SBATCH --time={example['timeout_min']}" in text
    assert f"#SBATCH --gpus-per-task={example['gpus_per_task']}" in text
    assert f"#SBATCH --cpus-per-task={example['cpus_per_task']}" in text
    assert f"#SBATCH --mem={example['mem_gb']}GB" in text
    assert "#SBATCH --constraint=a100" in text and "#SBATCH --account=proj" in text
    assert f"{tmp_path}/logs/train/water_seg_demo/multiruns/" in text  # submitit files in the sweep


def test_slurm_launcher_defaults_without_local_settings(tmp_path, monkeypatch):
    cfg = _compose(["hydra/launcher=slurm", f"paths.log_dir={tmp_path}/logs"])
    text = _sbatch_text(cfg, monkeypatch, tmp_path)
    assert "#SBATCH --time=240" in text and "#SBATCH --gpus-per-task=1" in text
    assert "--partition" not in text  # the cluster's default partition (or SBATCH_PARTITION)
    assert "--account" not in text


def test_local_launcher_config_composes(tmp_path):
    cfg = _compose(["hydra/launcher=local", "+cluster.timeout_min=5"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("LocalLauncher")
    assert (launcher.timeout_min, launcher.gpus_per_node) == (5, 0)


@pytest.mark.slow
def test_two_job_multirun_through_submitit_local(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = run_entry(
        ["train.py", "-m", "hydra/launcher=local", "debug=fdr", "experiment=water_seg_demo",
         "model/net=tiny_cnn", "data.patch_size=64", "data.batch_size=2", "logger=wandb",
         "model.optimizer.lr=0.001,0.0001"],
        cwd, tmp_path / "data",
    )  # fmt: skip
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    (sweep,) = (cwd / "logs" / "debug" / "water_seg_demo" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    lrs = set()
    for job in jobs:
        run = sweep / job
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        lrs.add(cfg["model"]["optimizer"]["lr"])
        logged = messages((run / "debug.log").read_text())
        assert duplicates(logged) == {}, duplicates(logged)
        assert sum(m.startswith("geoemb.tasks: metrics:") for m in logged) == 1
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # W&B inside the job dir
    assert lrs == {0.001, 0.0001}
    # each job's console (submitit's log) shows submitit's own lines once, not twice
    for out in sweep.glob(".submitit/*/*_log.out"):
        text = out.read_text()
        assert text.count("Job completed successfully") == 1, text[-2000:]
    assert sorted(p.name for p in cwd.iterdir()) == ["logs"]
