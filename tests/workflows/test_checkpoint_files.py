"""What a training run keeps on disk (conf/callbacks/model_checkpoint.yaml): the best epoch and
``last.ckpt`` (= the final epoch, full state for resuming) and nothing else; a sweep's knob
``save_top_k=0`` keeps neither; an Optuna sweep keeps each trial's best weights only, and they
still evaluate."""

from __future__ import annotations

import pytest
import torch

from geoemb import tasks
from tests.helpers import compose_cfg

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
    "data.synthetic_kwargs.n_train=1",
    "data.synthetic_kwargs.n_val=1",
    "trainer.max_epochs=3",
    "test=false",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.slow
def test_run_keeps_best_and_last_only(tmp_path, data_dir):
    cfg = compose_cfg("train", FAST, tmp_path, data_dir)
    tasks.train(cfg)
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert len(files) == 2 and "last.ckpt" in files and files[0].startswith("epoch_")
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["optimizer_states"]  # the final epoch, resumable
    assert "geoemb" in last


@pytest.mark.slow
def test_sweep_knob_keeps_no_checkpoint(tmp_path, data_dir):
    over = [
        *FAST,
        "callbacks.model_checkpoint.save_top_k=0",
        "callbacks.last_checkpoint.save_top_k=0",
    ]
    tasks.train(compose_cfg("train", over, tmp_path, data_dir))
    folder = tmp_path / "run" / "checkpoints"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.slow
def test_optuna_sweep_keeps_best_weights_only_and_they_evaluate(tmp_path, data_dir):
    cfg = compose_cfg("train", [*FAST, "hparams_search=water_seg_optuna"], tmp_path, data_dir)
    assert cfg.callbacks.model_checkpoint.save_weights_only is True
    assert cfg.callbacks.last_checkpoint.save_top_k == 0
    # the same two knobs on a plain run (a multirun's sweeper is not started by tasks.train)
    over = [
        *FAST,
        "callbacks.model_checkpoint.save_weights_only=true",
        "callbacks.last_checkpoint.save_top_k=0",
    ]
    tasks.train(compose_cfg("train", over, tmp_path, data_dir))
    (best,) = (tmp_path / "run" / "checkpoints").iterdir()
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert best.name.startswith("epoch_") and "optimizer_states" not in ckpt
    full = 4 * sum(v.numel() for v in ckpt["state_dict"].values())
    assert best.stat().st_size < 1.5 * full + 200_000  # weights (+ configs), no optimizer slots
    ev = compose_cfg("eval", [f"ckpt_path={best}", "logger=csv"], tmp_path / "ev", data_dir)
    metrics = tasks.evaluate(ev)
    assert any(k.startswith("test/") for k in metrics)
