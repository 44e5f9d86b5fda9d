"""LightningModule for semantic segmentation (Earth Surface Water, Chesapeake RSC, ...).

The module is rebuilt from its checkpoint alone: every part (net, loss, optimizer, scheduler,
input preprocessing) is a plain config dict stored by ``save_hyperparameters`` and instantiated
here, so ``SegmentationModule.load_from_checkpoint(path)`` needs no extra arguments. The input
preprocessing (reflectance scaling, spectral indices, normalization statistics) lives inside the
module: ``forward`` takes *raw* imagery as stored on disk, so gridded inference on a new scene
applies exactly the training transforms.
"""

from __future__ import annotations

from typing import Any

import hydra
import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from geoemb.metrics.water import PerBatchMeanIoU, PerBatchMeanOA
from geoemb.segmentation.models import build_net
from geoemb.parts import build_optimization, instantiate_part
from geoemb.parts import plain as _plain


class SegmentationModule(LightningModule):
    """Semantic segmentation task.

    Parameters
    ----------
    net:
        ``{"name": <geoemb.segmentation.NETS key>, **kwargs}`` or a ``_target_`` config that
        receives ``in_channels`` and ``num_classes``.
    num_classes, in_channels:
        Output classes and channels *after* preprocessing (ESW: 6 bands + 3 indices = 9).
    loss:
        ``_target_`` config of a loss called as ``loss(logits, target)``; default cross-entropy.
    optimizer, scheduler:
        ``_partial_`` configs; ``scheduler`` may carry ``monitor`` and ``interval`` keys.
    preprocess:
        ``_target_`` config of an ``nn.Module`` applied to raw input inside :meth:`forward`
        (e.g. :class:`geoemb.data.transforms.SpectralPreprocess`); ``None`` = identity.
    ignore_index:
        Target value excluded from loss and metrics.
    positive_class:
        Class whose IoU is reported as ``<stage>/iou`` (the tutorial's binary Jaccard).
    """

    def __init__(
        self,
        net: dict,
        num_classes: int = 2,
        in_channels: int = 9,
        loss: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        preprocess: dict | None = None,
        ignore_index: int | None = None,
        positive_class: int = 1,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        # plain containers only in hparams: checkpoints then load with torch's weights_only=True
        net, loss, optimizer, scheduler, preprocess = (
            _plain(net),
            _plain(loss),
            _plain(optimizer),
            _plain(scheduler),
            _plain(preprocess),
        )
        class_names = list(class_names) if class_names is not None else None
        self.save_hyperparameters()
        hp = self.hparams
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.positive_class = positive_class
        self.preprocess = instantiate_part(hp.preprocess) or nn.Identity()
        self.net = self._build_net(_plain(hp.net), in_channels, num_classes)
        self.loss_fn = self._build_loss(_plain(hp.loss))
        self.configure_stage_metrics()

    # ------------------------------------------------------------------ construction hooks
    @staticmethod
    def _build_net(cfg: dict, in_channels: int, num_classes: int) -> nn.Module:
        cfg = dict(cfg)
        if "_target_" in cfg:
            return instantiate_part(cfg, in_channels=in_channels, num_classes=num_classes)
        if "name" not in cfg:
            raise ValueError(f"model.net needs a 'name' (registry key) or '_target_', got {cfg}")
        name = cfg.pop("name")
        return build_net(name, in_channels=in_channels, num_classes=num_classes, **cfg)

    def _build_loss(self, cfg: dict | None) -> nn.Module:
        """Instantiate the loss; ``ignore_index`` is passed on when the loss takes one."""
        if cfg is None:
            cfg = {"_target_": "torch.nn.CrossEntropyLoss"}
        cfg = dict(cfg)
        if self.ignore_index is not None and "ignore_index" not in cfg:
            import inspect

            target = hydra.utils.get_object(cfg["_target_"])
            if "ignore_index" in inspect.signature(target).parameters:
                cfg["ignore_index"] = self.ignore_index
        return instantiate_part(cfg)

    def configure_stage_metrics(self) -> None:
        """Create ``self.metrics[stage]`` collections (override to add task metrics)."""
        ii = self.ignore_index
        base = MetricCollection(
            {
                "oa": MulticlassAccuracy(self.num_classes, average="micro", ignore_index=ii),
                "miou": MulticlassJaccardIndex(self.num_classes, average="macro", ignore_index=ii),
                "iou_per_class": MulticlassJaccardIndex(
                    self.num_classes, average="none", ignore_index=ii
                ),
                "oa_batchmean": PerBatchMeanOA(ignore_index=ii),
                "iou_batchmean": PerBatchMeanIoU(pos_label=self.positive_class, ignore_index=ii),
            },
            compute_groups=False,  # the two per-batch means have same-named states: never share
        )
        self.set_stage_metrics({s: base.clone(prefix=f"{s}/") for s in ("train", "val", "test")})

    def set_stage_metrics(self, collections: dict[str, MetricCollection]) -> None:
        """Register per-stage metric collections; ``self.metrics[stage]`` returns them.

        (A ``ModuleDict`` keyed ``train`` would shadow ``nn.Module.train``, hence the suffix.)
        """
        self._stage_metrics = nn.ModuleDict({f"{k}_metrics": v for k, v in collections.items()})
        self.metrics = {k: self._stage_metrics[f"{k}_metrics"] for k in collections}

    # ------------------------------------------------------------------ forward / steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw imagery ``(B, C_raw, H, W)`` → logits ``(B, K, H, W)``."""
        return self.net(self.preprocess(x))

    def compute_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Loss between logits ``(B, K, H, W)`` and ``batch["mask"]`` ``(B, H, W)``."""
        return self.loss_fn(logits, batch["mask"])

    def update_metrics(self, stage: str, logits: torch.Tensor, batch: dict) -> None:
        """Update ``self.metrics[stage]`` with argmax predictions."""
        self.metrics[stage].update(logits.argmax(1), batch["mask"])

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.compute_loss(logits, batch)
        bs = batch["image"].shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage != "test",
            batch_size=bs,
            sync_dist=stage != "train",
        )
        with torch.no_grad():
            self.update_metrics(stage, logits.detach(), batch)
        if stage == "val":
            self._last_val = (batch, logits.detach())
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch["image"]).argmax(1)

    def _log_epoch_metrics(self, stage: str) -> None:
        values = self.metrics[stage].compute()
        flat: dict[str, torch.Tensor] = {}
        for name, v in values.items():
            if v.ndim == 0:
                flat[name] = v
            else:
                names = self.hparams.class_names or [str(i) for i in range(v.numel())]
                for i, vi in enumerate(v):
                    flat[f"{name}_{names[i]}"] = vi
        per_class = values.get(f"{stage}/iou_per_class")
        if per_class is not None and per_class.numel() > self.positive_class:
            flat[f"{stage}/iou"] = per_class[self.positive_class]
        self.log_dict(flat, sync_dist=True)
        self.metrics[stage].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        return build_optimization(
            self.parameters(),
            self.hparams.optimizer,
            self.hparams.scheduler,
            default_optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4},
        )
