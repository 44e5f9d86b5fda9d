"""What a training run keeps on disk (conf/callbacks/model_checkpoint.yaml): the best epoch and
``last.ckpt`` (= the final epoch, full state for resuming) and nothing else; a sweep's knob
``save_top_k=0`` keeps neither."""

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
