"""Instantiators for the run's Lightning pieces and the W&B policy.

Callbacks and loggers are dicts of named ``_target_`` entries (each can be switched off with
``callbacks.<name>=null``); W&B is offline unless ``WANDB_MODE`` says otherwise and is skipped when
``WANDB_MODE=disabled``; a run resumed from a checkpoint re-attaches its W&B run id.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

__all__ = [
    "finish_wandb",
    "instantiate_callbacks",
    "instantiate_loggers",
    "run_name",
    "wandb_mode",
]


def wandb_mode() -> str:
    """W&B mode: ``WANDB_MODE`` if set, else offline (never online by default)."""
    return os.environ.get("WANDB_MODE", "offline")


def finish_wandb() -> None:
    """Close any active W&B run (needed between Hydra multirun jobs).

    A run can only exist if ``wandb`` was imported: a process that never did is not made to
    import it (seconds) just to find out.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_name(cfg: DictConfig) -> str:
    """``<experiment_name>`` plus the sweep overrides in a multirun (``lr=0.001,batch_size=8``)."""
    from hydra.core.hydra_config import HydraConfig

    name = str(cfg.get("experiment_name") or "default")
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode is not None and hc.mode.name == "MULTIRUN" and hc.job.override_dirname:
            name = f"{name}/{hc.job.override_dirname}"
    return name


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool = True) -> list[Any]:
    """Instantiate every ``_target_`` entry of the ``callbacks`` group (``null`` entries skipped).

    Without any logger (``logger=none``, ``debug=fdr``) the LR monitor is dropped: Lightning
    refuses it then.
    """
    out = []
    for _, cb in (cfg or {}).items():
        if isinstance(cb, DictConfig) and "_target_" in cb:
            if not has_logger and cb._target_.endswith("LearningRateMonitor"):
                continue
            out.append(hydra.utils.instantiate(cb))
    return out


def instantiate_loggers(
    cfg: DictConfig | None, name: str, tags: list[str], wandb_id: str | None = None
) -> list[Any]:
    """Instantiate loggers; W&B is offline unless ``WANDB_MODE=online`` and dropped if disabled.

    ``wandb_id`` (from a checkpoint being resumed) re-attaches the W&B run unless
    ``logger.wandb.id`` is set explicitly.
    """
    out = []
    mode = wandb_mode()
    for _key, lg in (cfg or {}).items():
        if not (isinstance(lg, DictConfig) and "_target_" in lg):
            continue
        is_wandb = "Wandb" in str(lg._target_)
        if is_wandb:
            if mode == "disabled":
                log.debug("WANDB_MODE=disabled: W&B logger skipped")
                continue
            lg = lg.copy()
            with open_dict(lg):
                lg.offline = mode != "online"
                lg.name = lg.get("name") or name
                lg.tags = list(dict.fromkeys(list(lg.get("tags") or []) + tags))
                if wandb_id and not lg.get("id"):
                    lg.id = wandb_id
                    lg.resume = "allow"
        logger = hydra.utils.instantiate(lg)
        if is_wandb:
            _wandb_init_hygiene(logger)
        out.append(logger)
    return out


def _wandb_init_hygiene(logger: Any) -> None:
    """Fix the ``wandb.init`` arguments of a Lightning ``WandbLogger`` before its run starts.

    - Lightning always passes ``anonymous=None``; W&B >= 0.19 warns that the setting "has no
      effect and will be removed" for any value it is given, so an unset one is dropped.
    - The run's files go to ``save_dir`` (the run directory): a missing one is created, because
      W&B falls back to the current directory (or a temporary one) when it does not exist.
    - ``settings`` from the config (``logger.wandb.settings.quiet``) reach W&B as a plain dict.
    """
    init = getattr(logger, "_wandb_init", None)
    if not isinstance(init, dict):  # not Lightning's WandbLogger layout: leave it alone
        return
    if init.get("anonymous") is None:
        init.pop("anonymous", None)
    if OmegaConf.is_config(init.get("settings")):
        init["settings"] = OmegaConf.to_container(init["settings"], resolve=True)
    if init.get("dir"):
        os.makedirs(init["dir"], exist_ok=True)
