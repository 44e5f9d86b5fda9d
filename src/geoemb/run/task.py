"""What every task does around its work: seeding, the run directory, the resolved config, the
failure log and the value returned to Hydra sweepers."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from geoemb.run.instantiate import finish_wandb
from geoemb.run.renamed import check_renamed
from geoemb.utils.io import atomic_write_text

log = logging.getLogger("geoemb.tasks")

__all__ = [
    "data_tags",
    "log_failure_to_files",
    "output_dir",
    "save_resolved_config",
    "scalar_metrics",
    "seed_all",
    "sweep_value",
    "task_wrapper",
]


def seed_all(seed: int) -> None:
    """Seed Python ``random``, numpy and torch (all devices) and dataloader workers."""
    from lightning import seed_everything

    random.seed(seed)
    np.random.seed(seed % 2**32)
    seed_everything(seed, workers=True, verbose=False)


def log_failure_to_files(task: str, err: BaseException) -> list[str]:
    """Write ``err`` with its traceback to every log *file* of this process (``<run>/<task>.log``).

    Hydra prints a failing job's exception to stderr only; the run's log file would end without a
    word. Console handlers are skipped (the traceback reaches stderr anyway). Returns the files.
    """
    record = logging.LogRecord(
        log.name, logging.ERROR, __file__, 0, "task %s failed: %s: %s",
        (task, type(err).__name__, err), (type(err), err, err.__traceback__),
    )  # fmt: skip
    written = []
    seen: set[int] = set()
    for logger in (logging.getLogger(), log, logging.getLogger("geoemb")):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                try:
                    handler.handle(record)
                    handler.flush()
                    written.append(handler.baseFilename)
                except Exception:  # noqa: BLE001 - logging must not hide the real error
                    pass
    return written


def task_wrapper(fn: Callable[[DictConfig], dict]) -> Callable[[DictConfig], dict]:
    """Run a task: refuse renamed config keys first; log a failure (with traceback) to the run's
    log file; always finish W&B."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> dict:
        try:
            check_renamed(cfg)
            return fn(cfg)
        except Exception as err:
            log_failure_to_files(fn.__name__, err)
            raise
        finally:
            finish_wandb()

    return wrapped


def sweep_value(cfg: DictConfig, metrics: Any) -> float | None:
    """The value a Hydra sweeper (Optuna) optimises: ``metrics[cfg.optimized_metric]`` if present."""
    metric = cfg.get("optimized_metric")
    if metric and isinstance(metrics, dict) and metric in metrics:
        return float(metrics[metric])
    return None


def output_dir(cfg: DictConfig) -> Path:
    """The run directory (``paths.output_dir``), created if needed."""
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_resolved_config(cfg: DictConfig, path: Path) -> None:
    """Write the fully resolved config (``config.yaml`` in the run dir)."""
    atomic_write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def data_tags(cfg: DictConfig) -> list[str]:
    """The run's tags plus ``data_source=synthetic`` when the data config says so."""
    tags = [str(t) for t in (cfg.get("tags") or [])]
    if cfg.get("data") is not None and cfg.data.get("synthetic", False):
        tags.append("data_source=synthetic")
    return tags


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalars of a metrics dict (one-element tensors and numbers) as floats."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, int | float):
            out[k] = float(v)
    return out
