"""Resume = uninterrupted: ``kill -9`` after a checkpoint + resume ends with the same weights,
optimizer/scheduler state and metrics as a run that was never killed (ESW random-chip sampler,
cosine and plateau schedules; EuroSAT-Embed shuffled loader + dropout). A resume whose
result-affecting config differs from the checkpoint's is refused, naming each key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning import Callback
from omegaconf import OmegaConf

from geoemb import tasks
from geoemb.errors import ResumeMismatchError
from geoemb.run.resume import is_plumbing_key, resume_config
from tests.helpers import compose_cfg

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
PLUMBING = [
    "logger=csv",
    "callbacks.rich_progress_bar=null",
    "callbacks.log_predictions=null",
    "+trainer.enable_model_summary=false",
    "test=false",
]
ESW = [
    "experiment=water_seg_demo",
    "model/net=tiny_cnn",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.train_length=12",
    "data.val_length=2",
    *PLUMBING,
]
SCHEDULERS = {
    "cosine": ["model/scheduler=cosine"],
    "plateau": ["model/scheduler=plateau", "model.scheduler.patience=0"],  # halves LR often
}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Bitwise equality needs the same float reduction order in every run: the in-process runs and
    the killed subprocess all use one intra-op thread (whatever earlier tests in this process set)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    yield
    torch.set_num_threads(old)


class KillAt(Callback):
    """Test-only: SIGKILL this process at ``batch`` of epoch ``epoch`` (after the previous
    epoch's checkpoint is on disk), as a crash or an OOM-killer would."""

    def __init__(self, epoch: int, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _last(run: Path) -> dict:
    return torch.load(
        run / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )


def assert_same_run(a: dict, b: dict) -> None:
    """Two final checkpoints hold the same training state, bit for bit."""
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pa, pb in zip(sa["state"].values(), sb["state"].values(), strict=True):
            for key in pa:
                assert torch.equal(torch.as_tensor(pa[key]), torch.as_tensor(pb[key])), key
        assert sa["param_groups"] == sb["param_groups"]
    assert a["lr_schedulers"] == b["lr_schedulers"]
    cb_a = {k: v for k, v in a["callbacks"].items() if k.startswith("EarlyStopping")}
    cb_b = {k: v for k, v in b["callbacks"].items() if k.startswith("EarlyStopping")}
    assert cb_a.keys() == cb_b.keys()
    for k in cb_a:
        assert str(cb_a[k]) == str(cb_b[k])


@pytest.mark.slow
@pytest.mark.parametrize("schedule", sorted(SCHEDULERS))
def test_kill9_then_resume_equals_uninterrupted(schedule, tmp_path, data_dir):
    over = [*ESW, *SCHEDULERS[schedule], "trainer.max_epochs=3"]
    metrics_a = tasks.train(compose_cfg("train", over, tmp_path / "a", data_dir))

    killed = tmp_path / "b"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable, "train.py", *over, f"paths.data_dir={data_dir}",
        f"paths.log_dir={killed}/logs", f"hydra.run.dir={killed}/run",
        f"+callbacks.kill._target_={__name__}.KillAt", "+callbacks.kill.epoch=1",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    last = killed / "run" / "checkpoints" / "last.ckpt"
    assert _last(killed)["epoch"] == 0

    # the README's resume line: no data/model overrides repeated (taken from the checkpoint)
    resume = [f"ckpt_path={last}", "trainer.max_epochs=3", *PLUMBING]
    metrics_c = tasks.train(compose_cfg("train", resume, tmp_path / "c", data_dir))
    assert_same_run(_last(tmp_path / "a"), _last(tmp_path / "c"))
    assert metrics_a == metrics_c
    # the best checkpoint is chosen over the whole run, not only over the resumed epochs
    mc = [k for k in _last(tmp_path / "a")["callbacks"] if k.startswith("ModelCheckpoint")]
    score_a = _last(tmp_path / "a")["callbacks"][mc[0]]["best_model_score"]
    score_c = _last(tmp_path / "c")["callbacks"][mc[0]]["best_model_score"]
    assert torch.equal(score_a, score_c)


@pytest.mark.slow
def test_resume_restores_shuffle_and_dropout_rng(tmp_path, data_dir):
    """EuroSAT-Embed: a plain shuffled DataLoader and dropout draw from torch's global RNG; the
    RNG state stored in the checkpoint makes the resumed epochs equal the uninterrupted ones."""
    over = [
        "experiment=pool_attention", "data.synthetic=true", "data.synthetic_kwargs.n_per_class=5",
        "data.batch_size=8", "model.dropout=0.3", *PLUMBING,
    ]  # fmt: skip
    tasks.train(compose_cfg("train", [*over, "trainer.max_epochs=3"], tmp_path / "a", data_dir))
    tasks.train(compose_cfg("train", [*over, "trainer.max_epochs=1"], tmp_path / "b", data_dir))
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    torch.manual_seed(1234)  # whatever the process did in between
    resume = [*over, f"ckpt_path={last}", "trainer.max_epochs=3"]
    tasks.train(compose_cfg("train", resume, tmp_path / "c", data_dir))
    assert_same_run(_last(tmp_path / "a"), _last(tmp_path / "c"))


# ----------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory, data_dir) -> Path:
    tmp = tmp_path_factory.mktemp("one_epoch")
    tasks.train(compose_cfg("train", [*ESW, "trainer.max_epochs=1"], tmp, data_dir))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.patch_size=48", "data.patch_size: checkpoint=32 now=48"),
        ("data.train_length=20", "data.train_length: checkpoint=12 now=20"),
        ("seed=7", "seed: checkpoint=0 now=7"),
        ("model.optimizer.lr=0.5", "model.optimizer.lr: checkpoint=0.001 now=0.5"),
        ("model/net=unet_resnet18", "model.net.name: checkpoint='tiny_cnn' now='unet_resnet18'"),
        ("trainer.precision=64-true", "trainer.precision: checkpoint='32-true' now='64-true'"),
        ("data.synthetic_kwargs.n_val=5", "data.synthetic_kwargs.n_val: checkpoint=2 now=5"),
    ],
)
def test_resume_with_changed_config_refuses(override, expected, one_epoch, tmp_path, data_dir):
    cfg = compose_cfg(
        "train", [f"ckpt_path={one_epoch}", "trainer.max_epochs=2", *PLUMBING, override],
        tmp_path, data_dir,
    )  # fmt: skip
    with pytest.raises(ResumeMismatchError) as info:
        tasks.train(cfg)
    assert expected in str(info.value) and str(one_epoch) in str(info.value)
    assert "allow_resume_mismatch=true" in str(info.value)
    assert not (tmp_path / "run" / "config.yaml").exists(), "refused before any work"


def test_resume_accepts_plumbing_overrides_and_the_opt_out(one_epoch, tmp_path, data_dir):
    moved = tmp_path / "moved_data_root"
    ok = [f"ckpt_path={one_epoch}", "trainer.max_epochs=2", *PLUMBING, "data.num_workers=0",
          f"data.root={moved}", "data.patch_size=32"]  # fmt: skip
    tasks.train(compose_cfg("train", ok, tmp_path / "ok", data_dir))
    assert _last(tmp_path / "ok")["epoch"] == 1  # last.ckpt = the last epoch (index 1)
    stored = OmegaConf.load(tmp_path / "ok" / "run" / "config.yaml")
    assert stored.data.patch_size == 32 and stored.model.net.name == "tiny_cnn"
    assert stored.data.root == str(moved)

    forced = [f"ckpt_path={one_epoch}", "trainer.max_epochs=2", *PLUMBING, "data.train_length=4",
              "allow_resume_mismatch=true"]  # fmt: skip
    tasks.train(compose_cfg("train", forced, tmp_path / "forced", data_dir))
    assert _last(tmp_path / "forced")["geoemb"]["config"]["data"]["train_length"] == 4


def test_resume_config_without_known_overrides():
    """Outside Hydra (a notebook), every composed value counts as explicit: differences refuse."""
    stored = {"model": {"a": 1}, "data": {"b": 2, "num_workers": 4, "root": "/x"}, "seed": 0}
    same = OmegaConf.create({**stored, "data": {"b": 2, "num_workers": 0, "root": "/y"}})
    out = resume_config(same, stored, "c.ckpt", overrides=None)
    assert out.data.root == "/y" and out.model.a == 1
    with pytest.raises(ResumeMismatchError, match=r"data\.b: checkpoint=2 now=3"):
        resume_config(OmegaConf.create({**stored, "data": {"b": 3}}), stored, "c.ckpt", None)
    with pytest.raises(ResumeMismatchError, match="no geoemb run config"):
        resume_config(same, None, "c.ckpt", overrides=[])
    assert is_plumbing_key("data.synthetic_root") and not is_plumbing_key("data.patch_size")
