"""The three tasks behind the entry points: ``train(cfg)``, ``evaluate(cfg)``, ``infer(cfg)``.

These are the only functions that read whole configs. Each returns a dict of metrics (or output
info) so Hydra sweepers (Optuna) and notebooks can use them directly. Entry points
(``train.py``, ``evaluate.py``, ``infer.py``) are thin ``@hydra.main`` wrappers.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import InputError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers
def seed_all(seed: int) -> None:
    """Seed Python ``random``, numpy and torch (all devices) and dataloader workers."""
    from lightning import seed_everything

    random.seed(seed)
    np.random.seed(seed % 2**32)
    seed_everything(seed, workers=True, verbose=False)


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
    """Run a task; log a failure (with traceback) to the run's log file; always finish W&B."""

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> dict:
        try:
            return fn(cfg)
        except Exception as err:
            log_failure_to_files(fn.__name__, err)
            raise
        finally:
            finish_wandb()

    return wrapped


def run_name(cfg: DictConfig) -> str:
    """``<experiment_name>`` plus the sweep overrides in a multirun (``lr=0.001,batch_size=8``)."""
    name = str(cfg.get("experiment_name") or "default")
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if hc.mode is not None and hc.mode.name == "MULTIRUN" and hc.job.override_dirname:
            name = f"{name}/{hc.job.override_dirname}"
    except (ValueError, AttributeError):
        pass
    return name


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
    from geoemb.utils.io import atomic_write_text

    atomic_write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool = True) -> list:
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
) -> list:
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
                log.info("WANDB_MODE=disabled: W&B logger skipped")
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


def _data_tags(cfg: DictConfig) -> list[str]:
    tags = [str(t) for t in (cfg.get("tags") or [])]
    if cfg.get("data") is not None and cfg.data.get("synthetic", False):
        tags.append("data_source=synthetic")
    return tags


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, int | float):
            out[k] = float(v)
    return out


# --------------------------------------------------------------------------- train
def _check_ignore_index(cfg: DictConfig) -> None:
    """``data.fill_ignore_index`` labels pixels the model must ignore: the two must agree."""
    data, model = cfg.get("data"), cfg.get("model")
    if data is None or model is None:
        return
    fill = data.get("fill_ignore_index")
    if fill is not None and "ignore_index" in model and model.get("ignore_index") != fill:
        raise InputError(
            f"data.fill_ignore_index={fill} labels invalid pixels (warp fill, NaN/inf) with {fill}, "
            f"but model.ignore_index={model.get('ignore_index')}: the loss would train on them as a "
            f"class. Set model.ignore_index={fill} (or data.fill_ignore_index=null)."
        )


@task_wrapper
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data`` (optionally resuming from ``cfg.ckpt_path``), then test.

    Resuming reads the checkpoint once through the safe loader (``weights_only=True``, ``_target_``
    allowlist unless ``trust_checkpoint=true``), takes its model/data/seed config (explicit
    command-line overrides on top; a result-affecting difference is refused, see
    :mod:`geoemb.run.resume`) and restores RNG and sampler state, so the resumed run ends as the
    uninterrupted one would. Returns the trainer's callback metrics (``train/*``, ``val/*``,
    ``test/*``) as floats.
    """
    from lightning import Trainer

    from geoemb.callbacks import ResumeState, RunMetadata
    from geoemb.run.checkpoints import ensure_last_epoch_checkpoint, install_safe_io
    from geoemb.run.resume import prepare_resume

    cfg, resume_ckpt = prepare_resume(cfg)
    _check_ignore_index(cfg)
    trust = bool(cfg.get("trust_checkpoint", False))
    seed_all(int(cfg.seed))
    out = output_dir(cfg)
    save_resolved_config(cfg, out)
    tags = _data_tags(cfg)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)

    model_cfg = cfg.model.copy()
    resume_hp = (resume_ckpt or {}).get("hyper_parameters") or {}
    resume_meta = (resume_ckpt or {}).get("geoemb") or {}
    if "preprocess" in model_cfg and model_cfg.preprocess is None:
        if resume_hp.get("preprocess") is not None:
            # resuming: keep exactly the preprocessing (normalization stats) the run started with
            with open_dict(model_cfg):
                model_cfg.preprocess = resume_hp["preprocess"]
        elif hasattr(datamodule, "preprocess_config"):
            datamodule.prepare_data()
            with open_dict(model_cfg):
                model_cfg.preprocess = datamodule.preprocess_config()
    log.info("Instantiating model <%s>", model_cfg._target_)
    model = hydra.utils.instantiate(model_cfg)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_loggers(
        cfg.get("logger"), run_name(cfg), tags, wandb_id=resume_meta.get("wandb_id")
    )
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    callbacks = ensure_last_epoch_checkpoint(callbacks) + [RunMetadata(resolved), ResumeState()]
    trainer: Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    safe_io = install_safe_io(trainer, trust_checkpoint=trust)
    if resume_ckpt is not None:
        safe_io.preload(cfg.ckpt_path, resume_ckpt)  # Lightning reuses it: one read of the file
        del resume_ckpt, resume_hp
    for lg in loggers:
        lg.log_hyperparams(
            {
                "config": resolved,
                "data_source": "synthetic" if "data_source=synthetic" in tags else "real",
            }
        )

    if cfg.get("train", True):
        trainer.fit(
            model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
        )
    metrics = _scalar_metrics(trainer.callback_metrics)

    if cfg.get("test", False):
        ckpt = None
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "best_model_path", ""):
            ckpt = cb.best_model_path
        elif cfg.get("ckpt_path") and not cfg.get("train", True):
            ckpt = cfg.ckpt_path
        if ckpt is None:
            log.warning("no best checkpoint found: testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        metrics.update(_scalar_metrics(trainer.callback_metrics))
    log.info("metrics: %s", metrics)
    return metrics


def _run_context(cfg: DictConfig, out: Path, logger: Any):
    """The :class:`~geoemb.run.context.RunContext` handed to evaluators (built from Hydra once)."""
    from hydra.core.hydra_config import HydraConfig

    from geoemb.run.context import RunContext

    shared, multirun, job = None, False, None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
        if multirun:
            shared, job = Path(hc.sweep.dir), hc.job.get("num")
    data = cfg.get("data")
    return RunContext(
        output_dir=out,
        shared_dir=shared,
        logger=logger,
        seed=int(cfg.seed),
        device=str(cfg.get("device") or "auto"),
        trust_checkpoint=bool(cfg.get("trust_checkpoint", False)),
        is_multirun=multirun,
        job_num=job,
        data_source="synthetic" if data is not None and data.get("synthetic", False) else "real",
    )


# --------------------------------------------------------------------------- evaluate
def _trust_kwargs(cfg: DictConfig, node: DictConfig) -> dict[str, bool]:
    """``{"trust_checkpoint": ...}`` for an evaluator that reads checkpoints (takes the argument)."""
    import inspect

    if "trust_checkpoint" in node:
        return {}
    try:
        params = inspect.signature(hydra.utils.get_class(str(node._target_))).parameters
    except Exception:  # noqa: BLE001 - let instantiate report a bad target
        return {}
    if "trust_checkpoint" in params:
        return {"trust_checkpoint": bool(cfg.get("trust_checkpoint", False))}
    return {}


@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Run ``cfg.evaluation`` (an :class:`~geoemb.evaluation.base.Evaluator`), or test a checkpoint.

    With ``ckpt_path`` and no evaluator, the model and the data config are rebuilt from the
    checkpoint; ``data.*`` overrides given on the command line are merged on top.
    """
    from geoemb.utils.run_logger import RunLogger

    seed_all(int(cfg.seed))
    out = output_dir(cfg)
    save_resolved_config(cfg, out)
    tags = _data_tags(cfg)

    if cfg.get("evaluation") is not None:
        evaluator = hydra.utils.instantiate(
            cfg.evaluation, _convert_="partial", **_trust_kwargs(cfg, cfg.evaluation)
        )
        wb = cfg.get("logger") or {}
        wb_cfg = wb.get("wandb") if isinstance(wb, DictConfig) else None
        logger = RunLogger.create(
            enabled=wb_cfg is not None,
            project=wb_cfg.get("project", "geoemb") if wb_cfg is not None else "geoemb",
            name=run_name(cfg),
            group=str(cfg.get("experiment_name")),
            save_dir=out,
            config=OmegaConf.to_container(cfg, resolve=True),
            tags=tags,
        )
        try:
            import inspect

            if "ctx" in inspect.signature(evaluator.run).parameters:  # new protocol (issue 11)
                metrics = evaluator.run(_run_context(cfg, out, logger))
            else:  # transitional: evaluators not yet moved to run(ctx)
                metrics = evaluator.run(output_dir=out, logger=logger)
        finally:
            logger.finish()
        log.info("metrics: %s", metrics)
        return metrics

    if not cfg.get("ckpt_path"):
        raise ValueError(
            "evaluate.py needs either experiment=<evaluator experiment> or ckpt_path=<checkpoint>"
        )
    from lightning import Trainer

    from geoemb.run.checkpoints import install_safe_io, load_checkpoint

    trust = bool(cfg.get("trust_checkpoint", False))
    loaded = load_checkpoint(cfg.ckpt_path, trust_checkpoint=trust)
    model, meta = loaded.module, loaded.meta
    data_cfg = OmegaConf.create(meta["data"])
    if cfg.get("data") is not None:
        data_cfg = OmegaConf.merge(data_cfg, cfg.data)
    datamodule = hydra.utils.instantiate(data_cfg)
    if data_cfg.get("synthetic", False) and "data_source=synthetic" not in tags:
        tags.append("data_source=synthetic")
    loggers = instantiate_loggers(cfg.get("logger"), run_name(cfg), tags)
    trainer: Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers)),
        logger=loggers or False,
    )
    install_safe_io(trainer, trust_checkpoint=trust)
    trainer.test(model=model, datamodule=datamodule, weights_only=True)
    metrics = _scalar_metrics(trainer.callback_metrics)
    log.info("metrics: %s", metrics)
    return metrics


# --------------------------------------------------------------------------- infer
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@task_wrapper
def infer(cfg: DictConfig) -> dict[str, Any]:
    """Stream a checkpoint over a scene and write a georeferenced class-map GeoTIFF.

    ``overlap`` (pixels) overrides ``stride``: use the ERF-derived ``recommended_overlap_px`` of
    ``evaluate.py experiment=rsc_analysis`` so tile seams stay invisible.
    Returns ``{"output": path, "width": W, "height": H, "stride": s, "seconds": t}``.
    """
    import time

    from geoemb.inference import check_output, open_source, predict_raster
    from geoemb.run.checkpoints import load_module

    seed_all(int(cfg.seed))
    check_output(cfg.output, cfg.input)  # refuse output == input / a directory before any work
    device = _device(str(cfg.device))
    model = load_module(cfg.ckpt_path, bool(cfg.get("trust_checkpoint", False)))
    model = model.eval().to(device)
    expected = getattr(model.preprocess, "in_channels", None)

    def predict_fn(x: torch.Tensor) -> torch.Tensor:
        return model(x)  # logits; predict_raster applies the softmax

    t0 = time.perf_counter()
    bands = list(cfg.bands) if cfg.get("bands") else None
    stride = int(cfg.stride)
    if cfg.get("overlap") is not None:
        overlap = int(cfg.overlap)
        if not 0 <= overlap < int(cfg.tile_size):
            raise ValueError(f"overlap={overlap} must be in [0, tile_size={cfg.tile_size})")
        stride = int(cfg.tile_size) - overlap
    with open_source(cfg.input, bands=bands) as src:
        path = predict_raster(
            src,
            predict_fn,
            cfg.output,
            num_classes=int(model.num_classes),
            tile_size=int(cfg.tile_size),
            stride=stride,
            batch_size=int(cfg.batch_size),
            merge=str(cfg.merge),
            write_probabilities=bool(cfg.write_probabilities),
            device=str(device),
            progress=bool(cfg.progress),
            activation="softmax",
            in_channels=expected,
        )
        width, height = src.width, src.height
    seconds = time.perf_counter() - t0
    log.info("wrote %s (%dx%d) in %.1fs", path, width, height, seconds)
    print(f"prediction GeoTIFF: {path}")
    return {
        "output": str(path),
        "width": width,
        "height": height,
        "stride": stride,
        "seconds": seconds,
    }
