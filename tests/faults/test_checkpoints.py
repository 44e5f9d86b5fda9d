"""Hostile checkpoints: a pickle that carries code, a ``_target_`` that writes a file, truncated and
foreign files -- through every entry point that reads a checkpoint (train resume, train test-only,
evaluate, infer, GeoPool heads, rsc_analysis). Each gives one clear geoemb error; the payload never
runs (its marker file is never created)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from geoemb import tasks
from geoemb.errors import CheckpointError, InputError, UntrustedCheckpointError
from geoemb.run.allowlist import check_target, check_tree
from geoemb.run.checkpoints import load_checkpoint, read_checkpoint
from geoemb.synthetic.earth_surface_water import write_scene_geotiff
from tests.helpers import compose_cfg

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "experiment=water_seg_demo",
    "model/net=tiny_cnn",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
    "callbacks.log_predictions=null",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.train_length=8",
    "data.val_length=2",
    "+trainer.enable_model_summary=false",
]


class ScaledCE(nn.CrossEntropyLoss):
    """A user's own (harmless) loss outside the allowlist: loads only with trust_checkpoint=true."""


class _Payload:
    """Pickles as ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("esw_data")


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory, data_dir) -> Path:
    """A genuine 1-epoch checkpoint of the tiny ESW recipe."""
    tmp = tmp_path_factory.mktemp("good")
    cfg = compose_cfg("train", [*FAST, "trainer.max_epochs=1", "test=false"], tmp, data_dir)
    tasks.train(cfg)
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("scene")
    return write_scene_geotiff(
        tmp / "s.tif", (48, 48), crs="EPSG:32633", origin=(500000.0, 5000000.0), seed=3
    )


def _variant(good: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def evil_pickle(good: Path, dst: Path, marker: Path) -> Path:
    def edit(ck):
        ck["geoemb"]["wandb_id"] = _Payload(marker)

    return _variant(good, dst, edit)


def evil_target(good: Path, dst: Path, marker: Path) -> Path:
    """``hyper_parameters.preprocess`` = ``pathlib.Path(marker).write_text("pwned")``."""

    def edit(ck):
        ck["hyper_parameters"]["preprocess"] = {
            "_target_": "pathlib.Path.write_text",
            "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "pwned"],
        }

    return _variant(good, dst, edit)


def run_entry(entry: str, ckpt: Path, tmp: Path, data_dir: Path, scene: Path, *extra: str):
    """Call one checkpoint-reading entry point in-process."""
    if entry == "train_resume":
        return tasks.train(
            compose_cfg("train", [*FAST, f"ckpt_path={ckpt}", *extra], tmp, data_dir)
        )
    if entry == "train_test_only":
        over = [*FAST, f"ckpt_path={ckpt}", "train=false", "test=true", *extra]
        return tasks.train(compose_cfg("train", over, tmp, data_dir))
    if entry == "evaluate":
        over = [f"ckpt_path={ckpt}", "logger=csv", *extra]
        return tasks.evaluate(compose_cfg("eval", over, tmp, data_dir))
    if entry == "infer":
        over = [
            f"ckpt_path={ckpt}",
            f"input={scene}",
            "tile_size=32",
            "stride=32",
            "progress=false",
        ]
        return tasks.infer(compose_cfg("infer", [*over, *extra], tmp))
    if entry == "geopool_heads":
        from geoemb.evaluation.geopool import evaluate_head_checkpoint
        from geoemb.run.context import RunContext

        ctx = RunContext.local(tmp, trust_checkpoint="trust_checkpoint=true" in extra)
        return evaluate_head_checkpoint(ckpt, ctx)
    if entry == "rsc_analysis":
        over = ["experiment=rsc_analysis", f"ckpt_path={ckpt}", "logger=none", *extra]
        return tasks.evaluate(compose_cfg("eval", over, tmp, data_dir))
    raise AssertionError(entry)


ENTRIES = ["train_resume", "train_test_only", "evaluate", "infer", "geopool_heads", "rsc_analysis"]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("attack", ["pickle", "target"])
def test_malicious_checkpoint_never_runs(entry, attack, good_ckpt, tmp_path, data_dir, scene):
    marker = tmp_path / "pwned.txt"
    make = evil_pickle if attack == "pickle" else evil_target
    ckpt = make(good_ckpt, tmp_path / "evil.ckpt", marker)
    with pytest.raises(UntrustedCheckpointError) as info:
        run_entry(entry, ckpt, tmp_path / "run_dir", data_dir, scene)
    assert not marker.exists(), "the checkpoint's payload ran"
    msg = str(info.value)
    assert str(ckpt) in msg
    if attack == "target":
        assert "hyper_parameters.preprocess._target_='pathlib.Path.write_text'" in msg
        assert "trust_checkpoint=true" in msg
    else:
        assert "GLOBAL io.open" in msg and "weights_only=True" in msg


def test_trust_skips_allowlist_but_never_unpickles_code(good_ckpt, tmp_path, data_dir, scene):
    """A user's own loss class loads with trust_checkpoint=true; a code pickle never does."""

    def own_loss(ck):
        ck["hyper_parameters"]["loss"] = {"_target_": f"{__name__}.ScaledCE"}

    mine = _variant(good_ckpt, tmp_path / "mine.ckpt", own_loss)
    with pytest.raises(UntrustedCheckpointError, match=r"hyper_parameters\.loss\._target_="):
        run_entry("evaluate", mine, tmp_path / "e0", data_dir, scene)
    trusted = run_entry("evaluate", mine, tmp_path / "e1", data_dir, scene, "trust_checkpoint=true")
    plain = run_entry("evaluate", good_ckpt, tmp_path / "e2", data_dir, scene)
    assert trusted["test/iou"] == pytest.approx(plain["test/iou"], abs=1e-6)
    assert type(load_checkpoint(mine, trust_checkpoint=True).module.loss_fn) is ScaledCE

    marker = tmp_path / "pwned.txt"
    evil = evil_pickle(good_ckpt, tmp_path / "evil.ckpt", marker)
    for entry in ("evaluate", "infer"):
        with pytest.raises(UntrustedCheckpointError):
            run_entry(entry, evil, tmp_path / entry, data_dir, scene, "trust_checkpoint=true")
    assert not marker.exists()


def _bad_files(good: Path, tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    trunc = tmp / "truncated.ckpt"
    trunc.write_bytes(data[: len(data) // 2])
    text = tmp / "notes.ckpt"
    text.write_text("this is not a checkpoint\n" * 50)
    empty = tmp / "empty.ckpt"
    empty.write_bytes(b"")
    folder = tmp / "folder.ckpt"
    folder.mkdir()
    return {
        "truncated": trunc,
        "text": text,
        "empty": empty,
        "directory": folder,
        "missing": tmp / "nope.ckpt",
    }


def test_unreadable_files_give_one_clear_error(good_ckpt, tmp_path):
    for kind, path in _bad_files(good_ckpt, tmp_path).items():
        with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
            read_checkpoint(path)
        assert str(path) in str(info.value), kind
        assert "Errno 22" not in str(info.value), kind


@pytest.mark.parametrize("entry", ["train_resume", "evaluate", "infer", "geopool_heads"])
def test_unreadable_files_through_entry_points(entry, good_ckpt, tmp_path, data_dir, scene):
    for kind in ("truncated", "text", "directory"):
        path = _bad_files(good_ckpt, tmp_path / kind)[kind]
        with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}"):
            run_entry(entry, path, tmp_path / f"run_{kind}", data_dir, scene)


def test_checkpoint_without_geoemb_block(good_ckpt, tmp_path, data_dir, scene):
    plain = _variant(good_ckpt, tmp_path / "plain.ckpt", lambda ck: ck.pop("geoemb"))
    with pytest.raises(CheckpointError, match="no 'geoemb' metadata"):
        run_entry("infer", plain, tmp_path / "i", data_dir, scene)


# ----------------------------------------------------------------------------- the allowlist
ALLOWED = [
    "torch.nn.CrossEntropyLoss",
    "torch.nn.modules.loss.BCEWithLogitsLoss",
    "torch.optim.Adam",
    "torch.optim.AdamW",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
    "geoemb.data.transforms.SpectralPreprocess",
    "geoemb.data.augment.Scale",
    "geoemb.segmentation.losses.DistanceAwareCELoss",
    "geoemb.segmentation.module.SegmentationModule",
    "geoemb.data.earth_surface_water.EarthSurfaceWaterDataModule",
    "geoemb.segmentation.models.build_net",
    "segmentation_models_pytorch.Unet",
    "timm.create_model",
    "torchmetrics.classification.MulticlassAccuracy",
    "kornia.augmentation.RandomHorizontalFlip",
]
REFUSED = [
    "pathlib.Path.write_text",
    "os.system",
    "builtins.eval",
    "subprocess.Popen",
    "torch.save",
    "torch.load",
    "torch.hub.load",
    "torch.jit.load",
    "torch.nn.Module.register_forward_hook",
    "torch.utils.data.DataLoader",
    "geoemb.tasks.train",
    "geoemb.tasks.os.system",
    "geoemb.utils.io.atomic_write_text",
    "geoemb.callbacks.LogPredictions",
    "hydra.utils.instantiate",
    "lightning.pytorch.trainer.Trainer",
    "os:system",
    "__import__",
    "",
]


@pytest.mark.parametrize("target", ALLOWED)
def test_allowlist_accepts(target):
    assert check_target(target) is None


@pytest.mark.parametrize("target", REFUSED)
def test_allowlist_refuses(target):
    assert check_target(target) is not None


def test_allowlist_never_imports_foreign_packages(tmp_path, monkeypatch):
    pkg = tmp_path / "evil_pkg_geoemb_test"
    pkg.mkdir()
    marker = tmp_path / "imported.txt"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "not imported" in check_target("evil_pkg_geoemb_test.M")
    assert not marker.exists()


def test_allowlist_walks_nested_args_and_interpolations():
    tree = {
        "net": {"name": "tiny_cnn"},
        "loss": {"_target_": "torch.nn.CrossEntropyLoss", "weight": None, "_partial_": False},
        "head": {"_target_": "torch.nn.Sequential", "_args_": [{"_target_": "os.system"}]},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": "${oc.env:HOME}"},
        "bad_args": {"_target_": "torch.nn.Identity", "_args_": "oops"},
        "class_weights": {0: 1.0, 1: 2.0},
    }
    problems = check_tree(tree, "hyper_parameters")
    joined = "\n".join(problems)
    assert "hyper_parameters.head._args_[0]._target_='os.system'" in joined
    assert "hyper_parameters.scheduler.step_size=" in joined and "interpolation" in joined
    assert "hyper_parameters.bad_args._args_=" in joined
    assert len(problems) == 3, problems


def test_trust_flag_reaches_checkpoint_evaluators(tmp_path):
    """evaluate.py hands the top-level trust_checkpoint to evaluators that read checkpoints: through
    the RunContext whose ``load_module`` they load with (they hold no trust flag of their own)."""
    import hydra

    from geoemb.run.context import RunContext
    from geoemb.utils.run_logger import RunLogger

    for experiment in ("rsc_analysis", "geopool"):
        cfg = compose_cfg(
            "eval", [f"experiment={experiment}", "ckpt_path=x.ckpt", "trust_checkpoint=true"]
        )
        evaluator = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
        assert not hasattr(evaluator, "trust_checkpoint")
        ctx = RunContext.from_config(cfg, tmp_path / experiment, RunLogger(None))
        assert ctx.trust_checkpoint is True


# ----------------------------------------------------------------------------- run log
@pytest.mark.slow
def test_failed_run_writes_traceback_to_its_log(tmp_path):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "evaluate.py",
        f"ckpt_path={bad}",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    text = (run_dir / "evaluate.log").read_text()
    assert f"cannot read checkpoint {bad}" in text and "Traceback" in text


def test_checkpoint_data_config_cannot_wipe_a_folder(good_ckpt, tmp_path, data_dir, scene):
    """A checkpoint's data config is data too: ``synthetic_root`` pointing at real data (a folder
    the generator did not write) is refused instead of being regenerated (= rmtree'd)."""
    victim = tmp_path / "my_real_esw"
    (victim / "dset-s2" / "tra_scene").mkdir(parents=True)
    precious = victim / "dset-s2" / "tra_scene" / "precious.tif"
    precious.write_bytes(b"real data")

    def edit(ck):
        ck["geoemb"]["data"]["synthetic_root"] = str(victim)

    evil = _variant(good_ckpt, tmp_path / "wipe.ckpt", edit)
    with pytest.raises(InputError, match="refusing to generate into it"):
        run_entry("evaluate", evil, tmp_path / "e", data_dir, scene)
    assert precious.read_bytes() == b"real data"


# ----------------------------------------------------------------------------- genuine files load
def test_every_training_experiment_passes_the_allowlist(tmp_path):
    """Whatever a shipped experiment puts into a checkpoint (model/data configs, module class,
    the ESW preprocessing) is buildable from it without trust_checkpoint."""
    from lightning import LightningModule

    from geoemb.data.transforms import SpectralPreprocess
    from geoemb.run.allowlist import check_class
    from tests.helpers import eval_experiments

    names = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    train_experiments = [n for n in names if n not in eval_experiments()]
    assert "water_seg" in train_experiments and "pool_attention" in train_experiments
    pre = SpectralPreprocess(scale=1e-4, indices=[[1, 3]], mean=[0.0] * 7, std=[1.0] * 7)
    for name in train_experiments:
        cfg = compose_cfg("train", [f"experiment={name}"], tmp_path / name)
        plain = OmegaConf.to_container(cfg, resolve=True)
        tree = {"model": plain["model"], "data": plain["data"], "preprocess": pre.to_config()}
        assert check_tree(tree, name) == [], name
        assert check_class(plain["model"]["_target_"], LightningModule) is None, name


@pytest.mark.slow
def test_genuine_head_checkpoint_evaluates(tmp_path, data_dir):
    """GeoPool ``evaluation.heads``: a real PoolingClassifier checkpoint, read once through the safe
    loader, gives the accuracy Lightning's own test loop gave on the same split."""
    from geoemb.evaluation.geopool import evaluate_head_checkpoint
    from geoemb.run.context import RunContext

    over = [
        "experiment=pool_attention", "data.synthetic=true", "data.synthetic_kwargs.n_per_class=5",
        "data.batch_size=16", "trainer.max_epochs=1", "logger=csv",
        "callbacks.rich_progress_bar=null", "callbacks.log_predictions=null",
    ]  # fmt: skip
    metrics = tasks.train(compose_cfg("train", over, tmp_path, data_dir))
    ctx = RunContext.local(tmp_path / "heads")
    row = evaluate_head_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", ctx)
    assert row["probe"] == "end2end" and row["pool"] == "attention_mil"
    assert row["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


def test_checkpoint_save_is_atomic(tmp_path):
    """A save that dies half-way leaves the previous checkpoint intact and no temporary file."""
    from geoemb.run.checkpoints import SafeCheckpointIO

    io = SafeCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "x": _Unpicklable()}, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    assert torch.equal(read_checkpoint(target)["state_dict"]["w"], torch.ones(3))
