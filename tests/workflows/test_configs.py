"""Every root config and every experiment composes and resolves; every _target_ imports."""

from __future__ import annotations

import hydra
import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF_DIR, compose_cfg, eval_experiments

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def _targets(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_":
                yield path, v
            else:
                yield from _targets(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{path}[{i}]")


def _check_targets(cfg):
    container = OmegaConf.to_container(cfg, resolve=True)
    found = list(_targets(container))
    for where, target in found:
        try:
            hydra.utils.get_object(target)
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"{where}: _target_ {target!r} does not import: {e}") from e
    return found


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment, tmp_path):
    root = "eval" if experiment in eval_experiments() else "train"
    cfg = compose_cfg(root, [f"experiment={experiment}"], tmp_path)
    found = _check_targets(cfg)
    assert found, "an experiment must instantiate something"
    assert cfg.experiment_name == experiment, "experiment files set experiment_name (run dirs, W&B)"


@pytest.mark.parametrize("root", ["train", "eval"])
def test_root_configs_compose(root, tmp_path):
    cfg = compose_cfg(root, [], tmp_path)
    _check_targets(cfg)
    assert cfg.paths.output_dir == str(tmp_path / "run")


def test_infer_config_requires_ckpt_and_input(tmp_path):
    cfg = compose_cfg("infer", [], tmp_path)
    assert OmegaConf.is_missing(cfg, "ckpt_path") and OmegaConf.is_missing(cfg, "input")
    assert cfg.stride < cfg.tile_size


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "debug"])
def test_every_group_option_composes(group, tmp_path):
    for p in sorted((CONF_DIR / group).glob("*.yaml")):
        cfg = compose_cfg("train", [f"{group}={p.stem}"], tmp_path)
        _check_targets(cfg)


def test_nested_model_groups(tmp_path):
    for net in sorted((CONF_DIR / "model" / "net").glob("*.yaml")):
        cfg = compose_cfg(
            "train",
            [f"model/net={net.stem}", "model/scheduler=cosine", "model/optimizer=adamw"],
            tmp_path,
        )
        assert cfg.model.net.name == net.stem
        assert cfg.model.scheduler.T_max == cfg.trainer.max_epochs
        assert cfg.model.optimizer._target_ == "torch.optim.AdamW"


def test_hparams_search_composes(tmp_path):
    cfg = compose_cfg(
        "train", ["experiment=water_seg", "hparams_search=water_seg_optuna"], tmp_path
    )
    assert cfg.optimized_metric == "val/iou"


def test_run_dir_pattern():
    text = (CONF_DIR / "hydra" / "default.yaml").read_text()
    assert "dir: ${geoemb.run_dir:${paths.log_dir}/${task_name}/${experiment_name}}" in text
    assert (
        "dir: ${geoemb.run_dir:${paths.log_dir}/${task_name}/${experiment_name}/multiruns}" in text
    )
