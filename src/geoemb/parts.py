"""Build a LightningModule's parts (net, loss, optimizer, scheduler, preprocessing) from plain configs.

Wiring layer (it instantiates through Hydra). LightningModules keep their parts (net, head, loss, optimizer, scheduler, preprocessing) as plain
config dicts in their hyperparameters and build them here, so a checkpoint alone rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def plain(cfg: Any) -> Any:
    """OmegaConf containers → plain dicts/lists (other values unchanged)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def instantiate_part(cfg: dict | None, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` config dict (``None`` → ``None``)."""
    if cfg is None:
        return None
    import hydra
    from omegaconf import OmegaConf

    return hydra.utils.instantiate(OmegaConf.create(plain(cfg)), **kwargs)


def build_optimization(
    params: Iterable[torch.nn.Parameter],
    optimizer: dict | None,
    scheduler: dict | None,
    default_optimizer: dict,
) -> Any:
    """What ``configure_optimizers`` returns, from ``_partial_`` optimizer/scheduler configs.

    ``scheduler`` may carry ``monitor`` (default ``val/loss``) and ``interval`` (default ``epoch``)
    keys, which go to Lightning's scheduler dict rather than to the scheduler itself.
    """
    opt = instantiate_part(plain(optimizer) or default_optimizer)(params=params)
    sched_cfg = plain(scheduler)
    if not sched_cfg:
        return opt
    sched_cfg = dict(sched_cfg)
    monitor = sched_cfg.pop("monitor", "val/loss")
    interval = sched_cfg.pop("interval", "epoch")
    sched = instantiate_part(sched_cfg)(optimizer=opt)
    return {
        "optimizer": opt,
        "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": interval},
    }
