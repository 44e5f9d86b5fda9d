"""The GeoPool experiments compose and instantiate (learnable heads, the benchmark evaluator)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _compose(config_name, overrides):
    from hydra import compose, initialize_config_dir

    from geoemb.run.renamed import check_renamed

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    check_renamed(cfg)  # as every task does first
    return cfg


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
    assert ev.encoders == ["aef"] and ev.methods == ["mean", "stats"] and ev.probe.C is None
    full = _compose("eval", ["experiment=geopool"])
    ev2 = hydra.utils.instantiate(full.evaluation, _convert_="partial")
    assert len(ev2.methods) == 13 and ev2.data.hparams["values"] == "raw"
    assert not ev2.source.synthetic  # real data by default (the one clear error if absent)


@pytest.mark.parametrize(
    "override, new",
    [("evaluation.synthetic=true", "data.synthetic=true"),
     ("evaluation.linear_C=1.0", "evaluation.probe.C"),
     ("evaluation.cache_dir=/tmp/x", "evaluation.cache.dir"),
     ("evaluation.device=cpu", "device")],
)  # fmt: skip
def test_old_spellings_name_the_new_one(override, new, tmp_path):
    from geoemb.errors import InputError

    with pytest.raises(InputError, match=rf"was renamed: use {new}"):
        _compose("eval", ["experiment=geopool", override, f"paths.data_dir={tmp_path}"])


@pytest.mark.slow
def test_evaluate_geopool_on_the_synthetic_stand_in(tmp_path):
    """``evaluate.py experiment=geopool data.synthetic=true`` (made small): the one switch
    generates the stand-in with the evaluator's encoders and tags everything synthetic."""
    import pandas as pd

    from geoemb import tasks
    from tests.helpers import compose_cfg

    over = ["experiment=geopool", "data.synthetic=true", "data.synthetic_kwargs.n_per_class=5",
            "+data.synthetic_kwargs.size=16", "data.size=16", "evaluation.encoders=[aef,tessera]",
            "evaluation.methods=[mean,stats]", "evaluation.probe.C=1.0", "evaluation.progress=false",
            "logger=none"]  # fmt: skip
    metrics = tasks.evaluate(compose_cfg("eval", over, tmp_path))
    df = pd.read_csv(tmp_path / "run" / "geopool_results.csv")
    assert set(df["encoder"]) == {"aef", "tessera"} and (df["data_source"] == "synthetic").all()
    assert metrics["data_source_synthetic"] == 1.0
    assert (tmp_path / "data" / "synthetic" / "eurosat_embed").is_dir()
