"""The three tasks behind the entry points: ``train(cfg)``, ``evaluate(cfg)``, ``infer(cfg)``.

These are the only functions that read whole configs. Each returns a dict of metrics (or output
info) so Hydra sweepers (Optuna) and notebooks can use them directly. Entry points
(``train.py``, ``evaluate.py``, ``infer.py``) are thin ``@hydra.main`` wrappers. What surrounds a
task (seeding, run directory, failure log, W&B, checkpoints, resume, the evaluators' context) lives
in :mod:`geoemb.run`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import InputError
from geoemb.run.context import RunContext
from geoemb.run.device import resolve_device
from geoemb.run.instantiate import instantiate_callbacks, instantiate_loggers, run_name
from geoemb.run.task import (
    data_tags,
    output_dir,
    save_resolved_config,
    scalar_metrics,
    seed_all,
    sweep_value,
    task_wrapper,
)
from geoemb.utils.run_logger import RunLogger

log = logging.getLogger(__name__)

__all__ = ["evaluate", "infer", "sweep_value", "train"]


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
    tags = data_tags(cfg)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()  # missing data is one clear error before any logger/W&B run starts

    model_cfg = cfg.model.copy()
    resume_hp = (resume_ckpt or {}).get("hyper_parameters") or {}
    resume_meta = (resume_ckpt or {}).get("geoemb") or {}
    if "preprocess" in model_cfg and model_cfg.preprocess is None:
        if resume_hp.get("preprocess") is not None:
            # resuming: keep exactly the preprocessing (normalization stats) the run started with
            with open_dict(model_cfg):
                model_cfg.preprocess = resume_hp["preprocess"]
        elif hasattr(datamodule, "preprocess_config"):
            with open_dict(model_cfg):
                model_cfg.preprocess = datamodule.preprocess_config()
    log.info("Instantiating model <%s>", model_cfg._target_)
    model = hydra.utils.instantiate(model_cfg)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_loggers(
        cfg.get("logger"), run_name(cfg), tags, wandb_id=resume_meta.get("wandb_id")
    )
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    metadata = RunMetadata(resolved)
    callbacks = ensure_last_epoch_checkpoint(callbacks) + [metadata, ResumeState()]
    trainer: Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    safe_io = install_safe_io(trainer, trust_checkpoint=trust)
    safe_io.before_save = metadata.complete
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
    metrics = scalar_metrics(trainer.callback_metrics)

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
        metrics.update(scalar_metrics(trainer.callback_metrics))
    log.info("metrics: %s", metrics)
    return metrics


# --------------------------------------------------------------------------- evaluate
@task_wrapper
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Run ``cfg.evaluation`` (an :class:`~geoemb.evaluation.base.Evaluator`), or test a checkpoint.

    With ``ckpt_path`` and no evaluator, the model and the data config are rebuilt from the
    checkpoint; ``data.*`` overrides given on the command line are merged on top.
    """
    seed_all(int(cfg.seed))
    out = output_dir(cfg)
    save_resolved_config(cfg, out)
    tags = data_tags(cfg)

    if cfg.get("evaluation") is not None:
        evaluator = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
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
            metrics = evaluator.run(RunContext.from_config(cfg, out, logger))
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
    metrics = scalar_metrics(trainer.callback_metrics)
    log.info("metrics: %s", metrics)
    return metrics


# --------------------------------------------------------------------------- infer
@task_wrapper
def infer(cfg: DictConfig) -> dict[str, Any]:
    """Stream a checkpoint over a scene and write a georeferenced class-map GeoTIFF.

    ``overlap`` (pixels) overrides ``stride``: use the ERF-derived ``recommended_overlap_px`` of
    ``evaluate.py experiment=rsc_analysis`` so tile seams stay invisible.
    Returns ``{"output": path, "width": W, "height": H, "stride": s, "seconds": t}``.
    """
    from geoemb.inference import check_output, open_source, predict_raster
    from geoemb.run.checkpoints import load_checkpoint

    seed_all(int(cfg.seed))
    check_output(cfg.output, cfg.input)  # refuse output == input / a directory before any work
    device = resolve_device(cfg.device)
    loaded = load_checkpoint(cfg.ckpt_path, bool(cfg.get("trust_checkpoint", False)))
    model = loaded.module.eval().to(device)
    expected = getattr(model.preprocess, "in_channels", None)
    # the class map says what its model learned from (the scene itself is the user's)
    trained_on = (loaded.meta.get("data") or {}).get("synthetic")
    source = {True: "synthetic", False: "real"}.get(trained_on, "unknown")  # never guessed
    tags = {"training_data_source": source}

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
            tags=tags,
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
