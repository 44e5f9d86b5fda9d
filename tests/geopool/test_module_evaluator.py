"""PoolingClassifier (fast_dev_run, checkpoint round trip), evaluator end to end, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geoemb.data.eurosat_embed import EuroSATEmbedDataModule

REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
def test_evaluator_end_to_end(syn_root, tmp_path, monkeypatch):
    from geoemb.evaluation.geopool import GeoPoolEvaluator
    from geoemb.utils.run_logger import RunLogger

    ev = GeoPoolEvaluator(
        root=str(tmp_path / "real"), synthetic=True, synthetic_root=str(syn_root),
        synthetic_kwargs={"n_per_class": 6, "encoders": ["aef", "olmoearth-nano", "tessera"]},
        encoders=["aef"], methods=["mean", "stats", "pca_64", "bovw_128"],
        linear_C=1.0, batch_size=16, device="cpu", progress=False, seed=0,
    )  # fmt: skip
    logger = RunLogger(None)
    metrics = ev.run(tmp_path / "run", logger)
    rd = tmp_path / "run"
    jobs = sorted(p.name for p in (rd / "jobs").glob("*.csv"))
    # pca_64 skipped: 40 train samples < 64 components
    assert jobs == ["aef__bovw_128.csv", "aef__mean.csv", "aef__stats.csv"]
    df = pd.read_csv(rd / "geopool_results.csv")
    assert (df["data_source"] == "synthetic").all()
    assert len(df) == 3 * 2 * 2  # methods x splits x probes
    stats_lin = df[(df.pool == "stats") & (df.probe == "linear")]["accuracy"]
    assert stats_lin.mean() > 0.4  # chance 0.1
    assert (df[df.probe == "knn_5"]["accuracy"] > 0.1).mean() > 0.5
    assert metrics["test/linear_acc/spatial/aef/stats"] == pytest.approx(
        df.query("pool=='stats' and probe=='linear' and split_type=='spatial' and encoder=='aef'")[
            "accuracy"
        ].item()
    )
    assert (rd / "tables" / "linear_table.tex").is_file() and (
        rd / "plots" / "random_vs_spatial.png"
    ).is_file()
    assert "geopool/linear_table" in logger.tables and "geopool/random_vs_spatial" in logger.images
    npz = rd / "embeddings" / "aef" / "stats" / "spatial.npz"
    with np.load(npz) as z:
        assert z["x_train"].shape == (40, 256) and z["x_test"].shape[1] == 256
    # second run uses the cache: pooling is never called
    import geoemb.pooling as P

    monkeypatch.setattr(P, "pool_many", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = ev.run(tmp_path / "run", RunLogger(None))
    assert (
        again["test/linear_acc/spatial/aef/stats"] == metrics["test/linear_acc/spatial/aef/stats"]
    )


def test_evaluator_bad_args(tmp_path):
    from geoemb.evaluation.geopool import GeoPoolEvaluator

    with pytest.raises(ValueError, match="unknown pooling method"):
        GeoPoolEvaluator(methods=["mean", "avg"])
    with pytest.raises(ValueError, match="evaluation.encoders"):
        GeoPoolEvaluator(encoders=["sentinel"])
    with pytest.raises(FileNotFoundError, match="evaluation.synthetic=true"):
        GeoPoolEvaluator(root=str(tmp_path), encoders=["aef"]).prepare()


def _compose(config_name, overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.skipif(not (REPO / "conf" / "train.yaml").is_file(), reason="no conf/train.yaml")
@pytest.mark.parametrize("exp,head", [("pool_attention", "attention_mil"), ("pool_gem", "gem"),
                                      ("pool_pma", "pma"), ("pool_bilinear", "lowrank_bilinear")])  # fmt: skip
def test_compose_pool_experiments(exp, head, tmp_path):
    import hydra
    from hydra.core.hydra_config import HydraConfig

    cfg = _compose(
        "train", [f"experiment={exp}", "data.synthetic=true", f"paths.data_dir={tmp_path}"]
    )
    HydraConfig().set_config(cfg)
    assert cfg.model.head.name == head and cfg.monitor == "val/acc"
    assert cfg.model._target_.endswith("PoolingClassifier")
    model = hydra.utils.instantiate(cfg.model)
    assert model.head_name == head and model.net is None
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.synthetic and str(dm.data_root).startswith(str(tmp_path))


@pytest.mark.skipif(not (REPO / "conf" / "eval.yaml").is_file(), reason="no conf/eval.yaml")
def test_compose_geopool_experiment(tmp_path):
    import hydra

    cfg = _compose("eval", ["experiment=geopool", "evaluation.encoders=[aef]",
                            "evaluation.methods=[mean,stats]", f"paths.data_dir={tmp_path}"])  # fmt: skip
    ev = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
    assert ev.encoders == ["aef"] and ev.methods == ["mean", "stats"] and ev.linear_C is None
    full = _compose("eval", ["experiment=geopool"])
    ev2 = hydra.utils.instantiate(full.evaluation, _convert_="partial")
    assert len(ev2.methods) == 13 and ev2.values == "raw"
