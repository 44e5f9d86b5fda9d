"""Earth Surface Water end to end: train → evaluate → infer, resume, checkpoint self-sufficiency,
CLI entry points with Hydra multirun, and the notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoemb import tasks
from geoemb.segmentation.module import SegmentationModule
from geoemb.synthetic.earth_surface_water import write_scene_geotiff, write_sentinel2_scene
from tests.helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "experiment=water_seg_demo",
    "model/net=tiny_cnn",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
    "data.patch_size=64",
    "data.batch_size=4",
    "data.train_length=16",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("esw_data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose_cfg("train", [*FAST, "trainer.max_epochs=3"], tmp, data_dir)
    metrics = tasks.train(cfg)
    return tmp, metrics


def _val_majority_accuracy(data_dir: Path) -> float:
    masks = sorted(Path(data_dir).rglob("val_truth/*.tif"))
    assert masks, "synthetic validation masks expected"
    values = np.concatenate([rasterio.open(m).read(1).ravel() for m in masks])
    frac = values.mean()
    return max(frac, 1 - frac)


def test_fast_dev_run_tutorial_recipe(tmp_path, data_dir):
    """The real recipe (DeepLabV3-ResNet50, 9 channels) trains one batch on the stand-in."""
    cfg = compose_cfg(
        "train",
        [
            "experiment=water_seg",
            "data.synthetic=true",
            "debug=fdr",
            "data.patch_size=64",
            "data.batch_size=2",
        ],
        tmp_path,
        data_dir,
    )
    assert cfg.model.net.name == "deeplabv3_resnet50" and cfg.model.in_channels == 9
    metrics = tasks.train(cfg)
    assert np.isfinite(metrics["train/loss"])
    assert "test/iou" in metrics and "test/oa_batchmean" in metrics


def test_round_trip_beats_chance(trained, data_dir, tmp_path):
    tmp, metrics = trained
    majority = _val_majority_accuracy(data_dir)
    assert metrics["test/oa"] > majority + 0.02, (metrics["test/oa"], majority)
    assert metrics["test/iou"] > 0.3
    ckpts = sorted((tmp / "run" / "checkpoints").glob("*.ckpt"))
    assert any(c.name == "last.ckpt" for c in ckpts)
    best = next(c for c in ckpts if c.name != "last.ckpt")

    # evaluate.py ckpt_path=<best> — no data/model overrides: rebuilt from the checkpoint
    ecfg = compose_cfg("eval", [f"ckpt_path={best}", "logger=csv"], tmp_path / "eval", data_dir)
    emetrics = tasks.evaluate(ecfg)
    assert emetrics["test/iou"] == pytest.approx(metrics["test/iou"], abs=1e-5)
    assert emetrics["test/oa"] == pytest.approx(metrics["test/oa"], abs=1e-5)

    # infer.py on a Sentinel-2 folder (B11/B12 at 20 m): output pixel-aligned with the 10 m grid
    scene = write_sentinel2_scene(tmp_path / "s2", size=(200, 232), seed=5)
    icfg = compose_cfg(
        "infer",
        [
            f"ckpt_path={best}",
            f"input={scene}",
            f"output={tmp_path}/pred.tif",
            "tile_size=64",
            "stride=48",
            "progress=false",
        ],
        tmp_path / "infer",
    )
    info = tasks.infer(icfg)
    (b02,) = sorted(Path(scene).rglob("*_B02*.tif"))
    with rasterio.open(b02) as ref, rasterio.open(info["output"]) as out:
        assert (out.crs, out.transform, out.width, out.height) == (
            ref.crs,
            ref.transform,
            ref.width,
            ref.height,
        )
        pred = out.read(1)
        # the model learned from the synthetic stand-in: the class map says so
        assert out.tags()["training_data_source"] == "synthetic"
    assert set(np.unique(pred)) <= {0, 1}
    truth_path = next(Path(scene).glob("*mask*.tif"), None)
    if truth_path is not None:  # rendering ground truth, when the generator writes one
        truth = rasterio.open(truth_path).read(1)
        assert (pred == truth).mean() > 0.6


def test_resume_from_last_ckpt(trained, tmp_path, data_dir):
    tmp, _ = trained
    last = tmp / "run" / "checkpoints" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    cfg = compose_cfg(
        "train",
        [*FAST, "trainer.max_epochs=4", f"ckpt_path={last}", "test=false"],
        tmp_path,
        data_dir,
    )
    tasks.train(cfg)
    after = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert before["epoch"] == 2 and after["epoch"] == 3, "resumed run continues at epoch 4 of 4"
    steps_per_epoch = before["global_step"] // 3
    assert after["global_step"] == before["global_step"] + steps_per_epoch


def test_checkpoint_alone_rebuilds_model(trained):
    tmp, _ = trained
    last = tmp / "run" / "checkpoints" / "last.ckpt"
    model = SegmentationModule.load_from_checkpoint(last, map_location="cpu").eval()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert "state_dict" in ckpt and ckpt["geoemb"]["module_class"].endswith("SegmentationModule")
    assert not any(isinstance(v, torch.nn.Module) for v in ckpt["hyper_parameters"].values())
    pre = ckpt["hyper_parameters"]["preprocess"]
    assert pre["scale"] == pytest.approx(1e-4) and len(pre["mean"]) == 9
    assert pre["mean"][6:] == [0.0, 0.0, 0.0] and pre["std"][6:] == [1.0, 1.0, 1.0]
    raw = torch.rand(1, 6, 32, 32) * 3000
    with torch.no_grad():
        assert model(raw).shape == (1, 2, 32, 32)


def test_infer_rejects_wrong_band_count(trained, tmp_path):
    tmp, _ = trained
    path = write_scene_geotiff(
        tmp_path / "four.tif", (64, 64), crs="EPSG:32633", origin=(500000.0, 5000000.0), seed=1
    )
    with rasterio.open(path) as src:
        data = src.read()[:4]
        profile = src.profile | {"count": 4}
    bad = tmp_path / "four_band.tif"
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data)
    icfg = compose_cfg(
        "infer",
        [f"ckpt_path={tmp / 'run/checkpoints/last.ckpt'}", f"input={bad}", "progress=false"],
        tmp_path / "i",
    )
    with pytest.raises(ValueError, match="4 bands"):
        tasks.infer(icfg)

    # overlap (e.g. rsc_analysis' recommended_overlap_px) sets the stride; nonsense is refused
    good = write_scene_geotiff(
        tmp_path / "six.tif", (90, 70), crs="EPSG:32633", origin=(500000.0, 5000000.0), seed=2
    )
    ckpt = tmp / "run/checkpoints/last.ckpt"
    ocfg = compose_cfg(
        "infer",
        [f"ckpt_path={ckpt}", f"input={good}", "tile_size=64", "overlap=24", "progress=false"],
        tmp_path / "o",
    )
    assert tasks.infer(ocfg)["stride"] == 40
    ocfg = compose_cfg(
        "infer",
        [f"ckpt_path={ckpt}", f"input={good}", "tile_size=64", "overlap=64"],
        tmp_path / "p",
    )
    with pytest.raises(ValueError, match="overlap=64"):
        tasks.infer(ocfg)


def test_evaluate_needs_evaluator_or_ckpt(tmp_path):
    cfg = compose_cfg("eval", ["logger=none"], tmp_path)
    with pytest.raises(ValueError, match="ckpt_path"):
        tasks.evaluate(cfg)


@pytest.mark.slow
def test_cli_multirun_sweep(tmp_path, data_dir):
    """`python train.py -m ...`: one run dir per job under logs/<task>/<experiment>/multiruns/."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        *FAST,
        "debug=fdr",
        "model.optimizer.lr=0.001,0.0001",
        f"paths.log_dir={tmp_path}/logs",
        f"paths.data_dir={data_dir}",
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "debug" / "water_seg_demo" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for j in jobs:
        text = (sweeps[0] / j / "config.yaml").read_text()
        assert "lr: 0.001" in text or "lr: 0.0001" in text


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "water_seg.ipynb", as_version=4)
    NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    outputs = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "test/iou" in outputs and "water.tif" in outputs


@pytest.mark.slow
def test_optuna_sweep_runs(tmp_path, data_dir):
    """`hparams_search=water_seg_optuna` runs trials and reports the best value of val/iou."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable, "train.py", *FAST, "hparams_search=water_seg_optuna", "debug=limit",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=1", "data.train_length=8",
        f"paths.log_dir={tmp_path}/logs", f"paths.data_dir={data_dir}",
    ]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (results,) = (tmp_path / "logs").rglob("optimization_results.yaml")
    text = results.read_text()
    assert "best_params" in text and "model.optimizer.lr" in text and "best_value" in text


REAL_S2 = ROOT / "tests" / "data" / "real" / "sentinel2"


@pytest.mark.real_data
@pytest.mark.skipif(
    not REAL_S2.is_dir(), reason="run `make real-data` (scripts/fetch_real_data.py)"
)
def test_infer_on_real_sentinel2_bands(trained, tmp_path):
    """infer.py on real BigEarthNet-S2 band files (B11/B12 at 20 m): output on the real 10 m grid."""
    tmp, _ = trained
    (scene,) = sorted(p for p in REAL_S2.iterdir() if p.is_dir())
    icfg = compose_cfg(
        "infer",
        [f"ckpt_path={tmp / 'run/checkpoints/last.ckpt'}", f"input={scene}", f"output={tmp_path}/real.tif",
         "tile_size=64", "stride=48", "progress=false"],
        tmp_path / "infer",
    )  # fmt: skip
    info = tasks.infer(icfg)
    (b02,) = sorted(scene.rglob("*_B02*.tif"))
    with rasterio.open(b02) as ref, rasterio.open(info["output"]) as out:
        assert (out.crs, out.transform, out.shape) == (ref.crs, ref.transform, ref.shape)
        assert out.crs.to_epsg() // 100 in (326, 327)  # real UTM
        pred = out.read(1)
    assert set(np.unique(pred)) <= {0, 1}


@pytest.mark.slow
def test_resume_reattaches_wandb_run(tmp_path, data_dir, monkeypatch):
    """W&B (offline) run id is stored in checkpoints and reused when resuming from last.ckpt."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = compose_cfg(
        "train",
        [*FAST, "logger=wandb", "trainer.max_epochs=1", "test=false"],
        tmp_path / "a",
        data_dir,
    )
    tasks.train(first)
    last = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    run_id = torch.load(last, map_location="cpu", weights_only=True)["geoemb"]["wandb_id"]
    assert run_id
    second = compose_cfg(
        "train",
        [*FAST, "logger=wandb", "trainer.max_epochs=2", "test=false", f"ckpt_path={last}"],
        tmp_path / "b",
        data_dir,
    )
    tasks.train(second)
    resumed = torch.load(
        tmp_path / "b" / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert resumed["geoemb"]["wandb_id"] == run_id
    assert (
        resumed["hyper_parameters"]["preprocess"]
        == torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["preprocess"]
    )
