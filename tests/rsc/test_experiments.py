"""Every RSC experiment fast_dev_runs on the synthetic stand-in; the analysis evaluator runs end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from geoemb import tasks
from geoemb.segmentation import models
from geoemb.utils.registry import Registry
from tests.helpers import compose_cfg

SMALL = [
    "data.synthetic=true",
    "data.synthetic_kwargs.size=32",
    "data.synthetic_kwargs.n_train=2",
    "data.synthetic_kwargs.n_val=1",
    "data.synthetic_kwargs.n_test=2",
    "data.batch_size=2",
    "data.num_workers=0",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rsc_data")


def _one_by_one(in_channels: int, num_classes: int, **kw) -> nn.Module:
    return nn.Conv2d(in_channels, num_classes, 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment, real_net",
    [
        ("rsc_unet_r18", True),
        ("rsc_segformer_b0", True),
        ("rsc_unet_r18_cutout", False),
        ("rsc_segformer_b2", False),
        ("rsc_unet_r18_distloss", False),
    ],
)
def test_experiment_fast_dev_run(experiment, real_net, tmp_path, data_dir, monkeypatch):
    cfg = compose_cfg(
        "train", [f"experiment={experiment}", "debug=fdr", *SMALL], tmp_path, data_dir
    )
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW" and cfg.model.optimizer.lr == 1e-3
    assert cfg.model.scheduler.T_max == 50 and cfg.model.in_channels == 4
    if not real_net:  # keep the slow nets out of the 4-minute budget: same config, 1x1 conv net
        nets = Registry(models.NETS.family)  # the same names, this one built as a 1x1 conv
        for e in models.NETS:
            nets.add(e.name, _one_by_one if e.name == cfg.model.net.name else e.builder)
        monkeypatch.setattr(models, "NETS", nets)
    metrics = tasks.train(cfg)
    for k in ("test/dwr", "test/road_recall", "test/road_precision", "test/tc_recall", "val/dwr"):
        assert k in metrics
    if experiment == "rsc_unet_r18_cutout":
        assert cfg.data.augment.cutout == "square64"
    if experiment == "rsc_unet_r18_distloss":
        assert cfg.model.loss_target == "mask_3class"


@pytest.mark.slow
def test_train_then_rsc_analysis(tmp_path, data_dir):
    run = tmp_path / "train"
    cfg = compose_cfg(
        "train",
        [
            "experiment=rsc_unet_r18",
            "model/net=tiny_cnn",
            "logger=csv",
            "callbacks.rich_progress_bar=null",
            "callbacks.log_predictions=null",
            "trainer.max_epochs=1",
            "trainer.min_epochs=1",
            "trainer.accelerator=cpu",
            *SMALL,
        ],
        run,
        data_dir,
    )
    tasks.train(cfg)
    ckpts = sorted((run / "run").rglob("*.ckpt"))
    assert ckpts, "training must write a checkpoint"
    ev = tmp_path / "eval"
    cfg = compose_cfg(
        "eval",
        [
            "experiment=rsc_analysis",
            f"ckpt_path={ckpts[-1]}",
            f"+evaluation.compare={{baseline: '{ckpts[0]}'}}",
            "evaluation.erf_images=2",
            "evaluation.erf_per_class=2",
            "evaluation.trf_max_input_size=64",
            "evaluation.device=cpu",
            "logger=none",
        ],
        ev,
        data_dir,
    )
    metrics = tasks.evaluate(cfg)
    out = ev / "run"
    for f in (
        "rsc_metrics.csv",
        "distance_curve.csv",
        "distance_curve.png",
        "erf_radii.csv",
        "erf.png",
        "trf.csv",
    ):
        assert (out / f).exists(), f
    assert metrics["trf_px"] == 7.0  # tiny_cnn: 3 3x3 convs
    assert {"test/dwr", "baseline/test/dwr", "erf/road_r50", "recommended_overlap_px"} <= set(
        metrics
    )
    table = pd.read_csv(out / "rsc_metrics.csv")
    assert list(table["model"]) == ["model", "baseline"]
    assert torch.isfinite(torch.tensor(metrics["erf/all_r50"]))
