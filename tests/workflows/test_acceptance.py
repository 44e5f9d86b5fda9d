"""Issue 11 acceptance: one switch, ``data.synthetic=true``, and no other override.

``evaluate.py experiment=<geopool|compression|retrieval|zonal_stats> data.synthetic=true`` and
``train.py experiment=<water_seg|rsc_unet_r18|pool_attention> data.synthetic=true`` compose, pass
the renamed-key check, and build their evaluator / DataModule + model exactly as the task does.
The slow test runs each task end to end with only size overrides (epochs, counts) to stay fast.
"""

from __future__ import annotations

import warnings

import hydra
import pytest

from geoemb.evaluation.base import Evaluator
from tests.helpers import compose_cfg

EVALUATE = ["geopool", "compression", "retrieval", "zonal_stats"]
TRAIN = ["water_seg", "rsc_unet_r18", "pool_attention"]

#: small sizes for the end-to-end run (the plain commands are checked by hand: see the report)
SMALL = {
    "geopool": ["data.synthetic_kwargs.n_per_class=5", "+data.synthetic_kwargs.size=16",
                "evaluation.encoders=[aef]", "evaluation.methods=[mean,stats]",
                "evaluation.split_types=[standard]", "evaluation.probe.C=1.0",
                "evaluation.progress=false"],
    "compression": ["data.encoders=[aef]", "evaluation.configs=[int8,binary]",
                    "evaluation.probe.C=1.0", "evaluation.bootstrap_resamples=99",
                    "data.synthetic_kwargs.n_train=200", "data.synthetic_kwargs.n_test=60",
                    "evaluation.spectra.id_max_rows=150",
                    "evaluation.spectra.local_pca_neighbors=20"],
    "retrieval": ["data.synthetic_kwargs.n=2000", "data.synthetic_kwargs.dim=64",
                  "evaluation.n_queries=20", "evaluation.methods=[binary,int8]",
                  "evaluation.backends=[hamming_numpy,float_torch]"],
    "zonal_stats": ["evaluation.pooling.progress=false"],
    "water_seg": ["trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                  "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
                  "data.patch_size=128", "data.train_length=4"],
    "rsc_unet_r18": ["trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                     "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"],
    "pool_attention": ["trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                       "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"],
}  # fmt: skip


@pytest.mark.parametrize("experiment", EVALUATE)
def test_evaluate_experiment_builds_with_the_one_switch(experiment, tmp_path):
    cfg = compose_cfg("eval", [f"experiment={experiment}", "data.synthetic=true"], tmp_path)
    assert cfg.data.synthetic is True
    ev = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
    assert isinstance(ev, Evaluator)
    assert getattr(ev, "source", None) is None or ev.source.synthetic


@pytest.mark.parametrize("experiment", TRAIN)
def test_train_experiment_builds_with_the_one_switch(experiment, tmp_path):
    cfg = compose_cfg("train", [f"experiment={experiment}", "data.synthetic=true"], tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.source.synthetic
    hydra.utils.instantiate(cfg.model)
    if experiment == "water_seg":  # the recipe's 512 px chips: the stand-in's scenes fit them
        dm.prepare_data()
        dm.setup("fit")
        x = next(iter(dm.train_dataloader()))["image"]
        assert tuple(x.shape[-2:]) == (512, 512)


#: the other five run end to end as README commands (tests/test_readme.py, `# readme-run`)
NOT_IN_README_RUNS = ["geopool", "pool_attention"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", NOT_IN_README_RUNS)
def test_task_runs_on_the_stand_in(experiment, tmp_path):
    from geoemb import tasks

    root = "train" if experiment in TRAIN else "eval"
    over = [f"experiment={experiment}", "data.synthetic=true", "logger=csv", *SMALL[experiment]]
    cfg = compose_cfg(root, over, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = (tasks.train if root == "train" else tasks.evaluate)(cfg)
    assert metrics, experiment
