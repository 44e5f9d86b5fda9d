"""Lightning callbacks: the file/W&B side effects of the LightningModules, run metadata, resume state.

LightningModules only compute and log metrics; what goes to disk (and to W&B as tables/images) is
written here, through :mod:`geoemb.reporting`:

* :class:`LogPredictions`: ``image | truth | prediction`` panels of validation chips
  (:mod:`geoemb.reporting.water`);
* :class:`GeoPoolHeadResults`: the ``geopool_head_results.csv`` row of a learnable pooling head's
  test run (:mod:`geoemb.reporting.geopool`);
* :class:`RSCDistanceCurve`: the RSC test distance-recall curve (:mod:`geoemb.reporting.rsc`).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, ListConfig, OmegaConf

from geoemb.metrics.rsc import distance_curve_frame
from geoemb.reporting.geopool import HEAD_RESULTS_FILE, append_results_row, end2end_row
from geoemb.reporting.rsc import write_distance_curves
from geoemb.reporting.water import prediction_panel, save_prediction_panels

log = logging.getLogger(__name__)


def _is_synthetic(trainer: Trainer) -> bool:
    return getattr(getattr(trainer, "datamodule", None), "data_source", "real") == "synthetic"


def _wandb_loggers(trainer: Trainer) -> list:
    return [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]


class LogPredictions(Callback):
    """Log ``image | truth | prediction`` panels of the last validation batch every N epochs.

    Goes to every :class:`~lightning.pytorch.loggers.WandbLogger` via ``log_image`` (torchgeo and
    TerraTorch only plot to TensorBoard) and always to ``<run>/predictions/epoch_XXX.png``.
    Panels (:func:`geoemb.reporting.water.prediction_panel`) use one colour per class in truth and
    prediction, a legend with the module's ``class_names``, grey for nodata/``ignore_index`` pixels
    and the synthetic tag for stand-in data. The module must set ``_last_val = (batch, logits)`` in
    ``validation_step`` (as :class:`geoemb.segmentation.module.SegmentationModule` does).
    """

    def __init__(
        self, num_samples: int = 4, every_n_epochs: int = 1, rgb_bands: list[int] | None = None
    ) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.rgb_bands = list(rgb_bands or [2, 1, 0])

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last = getattr(pl_module, "_last_val", None)
        if last is None or trainer.sanity_checking or trainer.fast_dev_run:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not trainer.is_global_zero:
            return
        batch, logits = last
        if "mask" not in batch:
            return
        n = min(self.num_samples, batch["image"].shape[0])
        images = batch["image"][:n].float().cpu().numpy()
        targets = batch["mask"][:n].cpu().numpy()
        preds = logits[:n].argmax(1).cpu().numpy()
        hp = getattr(pl_module, "hparams", {})
        synthetic = _is_synthetic(trainer)
        panels = [
            prediction_panel(images[i], targets[i], preds[i], self.rgb_bands,
                             class_names=hp.get("class_names"),
                             num_classes=getattr(pl_module, "num_classes", None),
                             ignore_index=getattr(pl_module, "ignore_index", None),
                             synthetic=synthetic,
                             title=f"epoch {trainer.current_epoch}, validation chip {i}")
            for i in range(n)
        ]  # fmt: skip
        target = Path(trainer.default_root_dir) / "predictions"
        save_prediction_panels(panels, target / f"epoch_{trainer.current_epoch:03d}.png")
        for lg in _wandb_loggers(trainer):
            lg.log_image(
                key="val/predictions",
                images=list(panels),
                caption=[
                    f"epoch {trainer.current_epoch} sample {i}: image | truth | prediction"
                    for i in range(n)
                ],
            )


class GeoPoolHeadResults(Callback):
    """On test end, append the GeoPool results row of a ``PoolingClassifier`` to
    ``<log dir>/geopool_head_results.csv`` (``pool`` = head name, ``probe`` = ``end2end``, plus
    ``encoder``/``split_type``/``data_source``/``values`` of the datamodule) for the GeoPool tables.
    """

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        outputs = getattr(pl_module, "test_outputs", lambda: None)()
        if outputs is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        dm = getattr(trainer, "datamodule", None)
        row = end2end_row(
            *outputs, pl_module.num_classes, pool=pl_module.head_name,
            split_type=getattr(dm, "split", ""), encoder=getattr(dm, "encoder", ""),
            train_samples=len(dm.dataset("train")) if hasattr(dm, "dataset") else "",
            data_source=getattr(dm, "data_source", ""), values=getattr(dm, "values", ""),
        )  # fmt: skip
        out_dir = Path(trainer.log_dir or trainer.default_root_dir)
        append_results_row(out_dir / HEAD_RESULTS_FILE, row)


class RSCDistanceCurve(Callback):
    """Write the RSC test distance-recall curve of an ``RSCSegmentationModule`` to
    ``<run dir>/rsc/test_distance_curve.{csv,png}`` and log it to W&B (``test/distance_curve``
    table, ``test/distance_curve_plot`` image). Skipped under ``fast_dev_run``."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        curve = getattr(pl_module, "distance_curves", {}).get("test")
        if curve is None or not trainer.is_global_zero or trainer.fast_dev_run:
            return
        stem = Path(trainer.default_root_dir) / "rsc" / "test_distance_curve"
        _, png, _ = write_distance_curves({"model": curve}, stem, title="test split",
                                          synthetic=_is_synthetic(trainer), model_column=False)  # fmt: skip
        for lg in _wandb_loggers(trainer):
            if getattr(lg, "experiment", None) is None:
                continue
            import wandb

            lg.experiment.log({"test/distance_curve": wandb.Table(dataframe=distance_curve_frame(curve)),
                               "test/distance_curve_plot": wandb.Image(str(png))})  # fmt: skip


def _plain_tree(obj: Any) -> Any:
    """Recursively turn OmegaConf containers into plain dicts/lists (and AttributeDicts into dicts)."""
    if isinstance(obj, DictConfig | ListConfig):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {k: _plain_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain_tree(v) for v in obj)
    return obj


class RunMetadata(Callback):
    """Store what rebuilds the run in every checkpoint: module class, data config, full config.

    ``evaluate.py ckpt_path=...`` and ``infer.py ckpt_path=...`` read ``checkpoint["geoemb"]`` so no
    override has to be repeated.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._run: tuple[Trainer, LightningModule] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._run = (trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.fill(trainer, pl_module, checkpoint)

    def complete(self, checkpoint: dict[str, Any]) -> None:
        """Fill a checkpoint Lightning saved without calling callbacks (``save_weights_only``).

        Called by :class:`~geoemb.run.checkpoints.SafeCheckpointIO` before every write, so a
        weights-only checkpoint still loads with ``weights_only=True`` and still rebuilds its run.
        """
        if "geoemb" not in checkpoint and self._run is not None:
            self.fill(*self._run, checkpoint)

    def fill(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        cls = type(pl_module)
        # OmegaConf containers in hparams would make torch.load(weights_only=True) refuse the file
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = _plain_tree(checkpoint[key])
        checkpoint["geoemb"] = {
            "module_class": f"{cls.__module__}.{cls.__qualname__}",
            "data": self.config.get("data"),
            "config": self.config,
            "torch": str(torch.__version__),
            "wandb_id": next(
                (str(lg.version) for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"),
                None,
            ),
        }


# ----------------------------------------------------------------------------- resume state
def collect_rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every initialised CUDA device) RNG states as plain data.

    Plain containers and tensors only (numpy's key array becomes an int64 tensor), so a checkpoint
    holding them still loads with ``torch.load(weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`collect_rng_states` returned."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "numpy" in states:
        s = states["numpy"]
        keys = np.asarray(torch.as_tensor(s["keys"]).numpy(), dtype=np.uint32)
        np.random.set_state(
            (
                s["bit_generator"],
                keys,
                int(s["pos"]),
                int(s["has_gauss"]),
                float(s["cached_gaussian"]),
            )
        )
    if "torch" in states:
        torch.set_rng_state(torch.as_tensor(states["torch"], dtype=torch.uint8).cpu())
    cuda = states.get("torch.cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in cuda])


class ResumeState(Callback):
    """What a resumed run needs beyond Lightning's own state to equal the uninterrupted run.

    - The global RNG states (python, numpy, torch CPU/CUDA) are saved in every checkpoint and
      restored when Lightning restores the callbacks (before its RNG-isolated sanity check and
      before the first resumed epoch's loader draws its seeds). Plain shuffled DataLoaders and
      dropout draw from torch's global RNG, so this also restores their sampling.
    - ``ReduceLROnPlateau``: a checkpoint written at the end of an epoch (``ModelCheckpoint`` saves
      in ``on_train_epoch_end``) precedes that epoch's plateau step, and Lightning skips the step
      on resume (the monitored value is not in its checkpoint). The value is stored here and the
      step is replayed, so the LR schedule continues as uninterrupted.
    - ``ModelCheckpoint`` state written in another run directory (a resumed run gets a new one)
      is re-targeted to this run's ``dirpath``: Lightning would otherwise drop the best score and
      top-k list, and the first resumed epoch would become the "best" checkpoint whatever its
      score. Old files stay where they are (Lightning never deletes outside its ``dirpath``).

    Single-process guarantee: with several ranks only rank 0's RNG states are in the checkpoint.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._trainer: Trainer | None = None
        self.restored = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _plateau_state(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_progress.total
        values = []
        for i, config in enumerate(trainer.lr_scheduler_configs):
            if config.reduce_on_plateau and config.interval == "epoch":
                v = trainer.callback_metrics.get(config.monitor)
                values.append({"index": i, "value": None if v is None else float(v)})
        return {
            "epoch": int(trainer.current_epoch),
            "epoch_end_pending": progress.processed == progress.completed + 1,
            "values": values,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states(), "plateau": self._plateau_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning calls this before the (RNG-isolated) sanity check and before the first resumed
        # epoch's train iterator draws its seeds (in ``fit_loop.setup_data``): the RNG must be
        # back to its checkpointed state by then. The plateau step waits for ``on_train_start``
        # (the scheduler state is restored after the callbacks).
        self._pending = dict(state_dict)
        if state_dict.get("rng") is not None:
            set_rng_states(state_dict["rng"])
            self.restored = True

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("callbacks") or {}
        for cb in trainer.checkpoint_callbacks:
            if not isinstance(cb, ModelCheckpoint) or cb.dirpath is None:
                continue
            state = states.get(cb.state_key)
            if isinstance(state, dict) and state.get("dirpath") not in (None, cb.dirpath):
                state["dirpath"] = cb.dirpath
        if self.state_key not in states:
            log.warning(
                "the checkpoint has no RNG state (written before geoemb stored it): the resumed "
                "run may differ from an uninterrupted one"
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        plateau = pending.get("plateau") or {}
        if plateau.get("epoch_end_pending"):
            configs = trainer.lr_scheduler_configs
            for item in plateau.get("values", []):
                config = configs[item["index"]] if item["index"] < len(configs) else None
                if config is None or not config.reduce_on_plateau or item["value"] is None:
                    continue
                if (int(plateau["epoch"]) + 1) % config.frequency == 0:
                    pl_module.lr_scheduler_step(config.scheduler, torch.tensor(item["value"]))
