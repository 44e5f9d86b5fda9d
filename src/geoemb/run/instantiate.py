"""Instantiators for the run's Lightning pieces and the W&B policy.

Callbacks and loggers are dicts of named ``_target_`` entries (each can be switched off with
``callbacks.<name>=null``); W&B is offline unless ``WANDB_MODE`` says otherwise and is skipped when
``WANDB_MODE=disabled``; a run resumed from a checkpoint re-attaches its W&B run id.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

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
    """Close any active W&B run (needed between Hydra multirun jobs)."""
    try:
        import wandb
    except ImportError:  # pragma: no cover
        return
    if wandb.run is not None:
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
        if "Wandb" in str(lg._target_):
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
        out.append(hydra.utils.instantiate(lg))
    return out
