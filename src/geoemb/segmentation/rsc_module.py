"""Chesapeake RSC LightningModule: trains on the 2-class view, evaluates the reference's 3-class metrics.

Training follows the reference (binary road vs background, TC merged into road, CE). Validation and
test additionally accumulate, from ``batch["mask_3class"]`` and the binary argmax:

``<stage>/road_recall``, ``road_precision`` (TC predicted as road = FP), ``tc_recall``, ``bg_recall``,
``bg_precision``, ``dwr`` (distance-weighted recall), ``dwr_n_pixels``, and the 19-bin
distance-recall curve as ``<stage>/dist_recall/bin<k>`` scalars (so the curve is in the metrics CSV).

The module writes no files: the last curve of each stage is kept in :attr:`distance_curves`, and
:class:`geoemb.callbacks.RSCDistanceCurve` (attached by :meth:`configure_callbacks`, so every test
run — train.py or ``evaluate.py ckpt_path=…`` — gets it) writes the test curve to
``<run dir>/rsc/test_distance_curve.{csv,png}`` (and logs it to W&B as a table + image). A module
rebuilt from a train.py checkpoint knows its data config (:attr:`data_config`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback
from torch import nn

from geoemb.callbacks import RSCDistanceCurve
from geoemb.metrics.rsc import DistanceBinnedRecall, RSCConfusionMatrix
from geoemb.segmentation.module import SegmentationModule

__all__ = ["RSCSegmentationModule"]


class RSCSegmentationModule(SegmentationModule):
    """:class:`~geoemb.segmentation.module.SegmentationModule` + RSC metrics.

    Extra parameters
    ----------------
    loss_target : ``"mask"`` (2-class view; CE as the reference) or ``"mask_3class"`` (for losses that
        need the canopy label, e.g. :class:`geoemb.segmentation.losses.DistanceAwareCELoss`).
    rsc_stages : stages that accumulate the RSC metrics (distance transforms cost a little).
    """

    def __init__(
        self,
        net: dict,
        num_classes: int = 2,
        in_channels: int = 4,
        loss: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        preprocess: dict | None = None,
        ignore_index: int | None = None,
        positive_class: int = 1,
        class_names: list[str] | None = None,
        loss_target: str = "mask",
        rsc_stages: tuple[str, ...] | list[str] = ("val", "test"),
    ) -> None:
        if loss_target not in ("mask", "mask_3class"):
            raise ValueError(f"loss_target must be 'mask' or 'mask_3class', got {loss_target!r}")
        self.loss_target = loss_target
        self.rsc_stages = tuple(rsc_stages)
        super().__init__(
            net=net,
            num_classes=num_classes,
            in_channels=in_channels,
            loss=loss,
            optimizer=optimizer,
            scheduler=scheduler,
            preprocess=preprocess,
            ignore_index=ignore_index,
            positive_class=positive_class,
            class_names=class_names,
        )
        self.save_hyperparameters()
        #: ``{stage: DistanceBinnedRecall.compute()}`` of the last epoch of each stage (CPU)
        self.distance_curves: dict[str, dict[str, torch.Tensor]] = {}
        #: the train.py data config this model was trained on (set from a checkpoint)
        self.data_config: dict | None = None

    def configure_stage_metrics(self) -> None:
        super().configure_stage_metrics()
        # keys suffixed: a ModuleDict key "train" would shadow nn.Module.train
        self._rsc = nn.ModuleDict(
            {
                f"{s}_rsc": nn.ModuleDict(
                    {
                        "cnf": RSCConfusionMatrix(),
                        # one L1 transform per batch: DWR is read from the curve's histogram
                        "curve": DistanceBinnedRecall(),
                    }
                )
                for s in self.rsc_stages
            }
        )

    def rsc_metrics(self, stage: str) -> nn.ModuleDict:
        """The RSC metrics (``cnf``, ``dwr``, ``curve``) of ``stage``."""
        return self._rsc[f"{stage}_rsc"]

    def compute_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.loss_fn(logits, batch[self.loss_target])

    def update_metrics(self, stage: str, logits: torch.Tensor, batch: dict) -> None:
        super().update_metrics(stage, logits, batch)
        if stage in self.rsc_stages and "mask_3class" in batch:
            preds = logits.argmax(1) >= 1
            for m in self.rsc_metrics(stage).values():
                m.update(preds, batch["mask_3class"])

    def _log_rsc(self, stage: str) -> None:
        if stage not in self.rsc_stages:
            return
        ms = self.rsc_metrics(stage)
        if int(ms["cnf"].cnf.sum()) == 0 and not ms["cnf"]._update_count:
            return
        values = {f"{stage}/{k}": v for k, v in ms["cnf"].compute().items()}
        values[f"{stage}/dwr"] = ms["curve"].dwr().float()
        values[f"{stage}/dwr_n_pixels"] = ms["curve"].count.sum().float()
        curve = ms["curve"].compute()
        for k, r in zip(curve["bin_index"].tolist(), curve["recall"]):
            values[f"{stage}/dist_recall/bin{k:02d}"] = r.float()
        self.log_dict(values, sync_dist=True)
        self.distance_curves[stage] = {k: v.detach().cpu() for k, v in curve.items()}
        for m in ms.values():
            m.reset()

    def configure_callbacks(self) -> list[Callback]:
        """The callback that writes the test distance curve (CSV, PNG, W&B)."""
        return [RSCDistanceCurve()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        meta = checkpoint.get("geoemb")
        data = meta.get("data") if isinstance(meta, dict) else None
        self.data_config = dict(data) if isinstance(data, dict) else None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_rsc("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_rsc("test")
