"""PoolingClassifier: fast_dev_run with every head, checkpoint round trip, results via its callback."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from geoemb.data.eurosat_embed import EuroSATEmbedDataModule


def _dm(root, encoder="aef", split="standard"):
    return EuroSATEmbedDataModule(
        root=str(root), encoder=encoder, split=split, batch_size=8, synthetic=False
    )


@pytest.mark.parametrize("head", ["attention_mil", "gem", "pma", "lowrank_bilinear"])
def test_pooling_classifier_fast_dev_run(syn_root, tmp_path, head):
    import lightning as L

    from geoemb.classification import PoolingClassifier

    kw = {"pma": {"num_seeds": 2, "dim": 16, "num_heads": 2}, "attention_mil": {"hidden": 16},
          "lowrank_bilinear": {"rank": 4}}.get(head, {})  # fmt: skip
    model = PoolingClassifier(
        head={"name": head, **kw},
        num_classes=10,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True,
                   "step_size": 1, "monitor": "val/loss"},
    )  # fmt: skip
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    dm = _dm(syn_root)
    trainer.fit(model, datamodule=dm)
    assert model.hparams.in_dim == 64  # taken from the files
    res = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"test/acc", "test/f1", "test/loss"} <= set(res)
    rows = pd.read_csv(tmp_path / "geopool_head_results.csv")
    assert rows.iloc[0]["pool"] == head and rows.iloc[0]["probe"] == "end2end"
    assert rows.iloc[0]["encoder"] == "aef" and rows.iloc[0]["split_type"] == "standard"
    if head == "gem":  # checkpoint alone rebuilds the model
        ckpt = tmp_path / "m.ckpt"
        trainer.save_checkpoint(ckpt)
        back = PoolingClassifier.load_from_checkpoint(ckpt, weights_only=False).eval()
        model.eval()
        x = torch.randn(2, 64, 8, 8)
        torch.testing.assert_close(back(x), model(x))


@pytest.mark.slow
def test_pooling_classifier_learns(syn_root):
    """A few epochs of attention-MIL on the synthetic tree beat chance on val."""
    import lightning as L

    from geoemb.classification import PoolingClassifier

    torch.manual_seed(0)
    model = PoolingClassifier(head={"name": "attention_mil", "hidden": 16}, in_dim=128,
                              optimizer={"_target_": "torch.optim.AdamW", "_partial_": True,
                                         "lr": 1e-2}, write_results=False)  # fmt: skip
    trainer = L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    dm = _dm(syn_root, "olmoearth-nano")
    trainer.fit(model, datamodule=dm)
    acc = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/acc"]
    assert acc > 0.3  # chance = 0.1


def test_pooling_classifier_bad_config():
    from geoemb.classification import PoolingClassifier

    with pytest.raises(ValueError, match="model.head must be a dict"):
        PoolingClassifier(head="gem")
    with pytest.raises(ValueError, match="unknown head"):
        PoolingClassifier(head={"name": "nope"}, in_dim=8)


def test_results_file_is_written_by_the_callback_not_the_module(syn_root, tmp_path):
    import lightning as L

    from geoemb.callbacks import GeoPoolHeadResults
    from geoemb.classification import PoolingClassifier

    def run(write_results, root):
        model = PoolingClassifier(head={"name": "gem"}, in_dim=64, write_results=write_results)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=root, limit_test_batches=2)  # fmt: skip
        trainer.test(model, datamodule=_dm(syn_root), verbose=False)
        return model, trainer

    model, trainer = run(False, tmp_path / "off")
    assert not (tmp_path / "off").exists() or not any((tmp_path / "off").rglob("*.csv"))
    y_true, y_pred = model.test_outputs()
    n_test = min(16, len(_dm(syn_root).dataset("test")))  # at most 2 batches of 8
    assert y_true.shape == y_pred.shape == (n_test,)  # exposed for the callbacks
    model, trainer = run(True, tmp_path / "on")
    assert any(isinstance(cb, GeoPoolHeadResults) for cb in trainer.callbacks)
    row = pd.read_csv(tmp_path / "on" / "geopool_head_results.csv").iloc[0]
    y_true, y_pred = model.test_outputs()
    assert row["accuracy"] == pytest.approx(float((y_true == y_pred).float().mean()))
    assert row["data_source"] == "real" and row["values"] == "raw"  # the datamodule's own tags


def test_data_config_comes_from_the_checkpoint(syn_root):
    from geoemb.classification import PoolingClassifier

    model = PoolingClassifier(head={"name": "gem"}, in_dim=64)
    assert model.data_config is None
    with pytest.raises(ValueError, match="no data config"):
        model.trained_datamodule()
    data = {"_target_": "geoemb.data.eurosat_embed.EuroSATEmbedDataModule",
            "root": str(syn_root), "encoder": "tessera", "split": "spatial"}  # fmt: skip
    model.on_load_checkpoint({"geoemb": {"data": data}})
    dm = model.trained_datamodule()
    assert dm.encoder == "tessera" and dm.split == "spatial"
