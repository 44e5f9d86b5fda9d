"""Test helpers: compose geoemb configs exactly as the entry points do."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from geoemb.run.renamed import check_renamed

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_cfg(
    config_name: str,
    overrides: list[str],
    tmp_path: Path | None = None,
    data_dir: Path | None = None,
    *,
    tombstones: bool = False,
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides``; run dir under ``tmp_path``.

    Like every task, it then refuses a renamed key that is set and drops the ``null`` tombstones
    (:func:`geoemb.run.renamed.check_renamed`), so ``cfg.evaluation`` instantiates as in a run;
    ``tombstones=True`` returns the composed config as Hydra hands it to the task (no check).
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.paths.data_dir = str(data_dir or tmp_path / "data")
            cfg.paths.work_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    if not tombstones:
        check_renamed(cfg)
    return cfg


def eval_experiments() -> set[str]:
    """Experiments that run an evaluator (composed with eval.yaml, not train.yaml)."""
    out = set()
    for p in (CONF_DIR / "experiment").glob("*.yaml"):
        if "/evaluation" in p.read_text():
            out.add(p.stem)
    return out
