"""``PoolingClassifier``: a learnable pooling head + linear classifier trained end-to-end.

Input batches are dicts ``image`` (B, D, H, W) embedding rasters, ``mask`` (B, H, W) bool validity
(True = valid) and ``label`` (B,) long, as :class:`geoemb.data.eurosat_embed.EuroSATEmbedDataModule`
yields. The head comes from :func:`geoemb.pooling.heads.build_head`; the whole model is rebuilt by
``PoolingClassifier.load_from_checkpoint(path)`` alone (parts are plain dict configs).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from geoemb.parts import build_optimization
from geoemb.parts import plain as _plain

log = logging.getLogger(__name__)

RESULTS_FILE = "geopool_head_results.csv"
"""Written into the trainer's log dir on test: reference results-CSV columns + encoder."""


class PoolingClassifier(L.LightningModule):
    """Learnable pooling head + dropout + linear layer, trained with cross-entropy.

    Parameters
    ----------
    head:
        ``{"name": "attention_mil" | "gem" | "pma" | "lowrank_bilinear", **head_kwargs}``.
    num_classes:
        Number of classes K.
    in_dim:
        Embedding dimension D; ``None`` takes it from the datamodule (``num_bands``) at setup and
        stores it in the hyperparameters, so checkpoints rebuild without the data.
    optimizer:
        ``_partial_`` optimizer config (default AdamW lr 1e-3, wd 1e-4).
    scheduler:
        ``_partial_`` LR-scheduler config; optional ``monitor`` / ``interval`` keys.
    dropout:
        Dropout before the linear layer.
    class_names:
        Optional names (for logs).
    input_norm:
        Standardise every embedding channel with a non-affine ``BatchNorm2d`` before the head
        (raw AEF/Tessera codes are offset integers in 0..255; heads train poorly on them).
    write_results:
        On test end, append a row with the GeoPool results-CSV columns (``pool`` = head name,
        ``probe`` = ``end2end``, plus ``encoder``/``split_type``/``data_source`` read from the
        datamodule) to ``<log_dir>/geopool_head_results.csv`` for the GeoPool tables.
    """

    def __init__(
        self,
        head: dict,
        num_classes: int = 10,
        in_dim: int | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        dropout: float = 0.0,
        class_names: list[str] | None = None,
        write_results: bool = True,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        head = _plain(head)
        if not isinstance(head, dict) or "name" not in head:
            raise ValueError(f"model.head must be a dict with a 'name' key, got {head!r}")
        self.head_name = str(head["name"])
        self.num_classes = int(num_classes)
        self.net: torch.nn.Module | None = None
        self.input_norm: torch.nn.Module | None = None
        if in_dim is not None:
            self._build(int(in_dim))
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self._test_preds: list[Tensor] = []
        self._test_targets: list[Tensor] = []

    def attached_trainer(self) -> L.Trainer | None:
        """The Trainer this module runs under, or ``None`` when detached.

        Lightning 2.x's public ``self.trainer`` raises ``RuntimeError`` when no Trainer is attached;
        this asks it (never the private ``_trainer``) and turns that case into ``None``.
        """
        try:
            return self.trainer
        except RuntimeError:
            return None

    # ------------------------------------------------------------------ model
    def _build(self, in_dim: int) -> None:
        from geoemb.pooling.heads import PooledClassifier, build_head

        kw = {k: v for k, v in _plain(self.hparams.head).items() if k != "name"}
        head = build_head(self.head_name, in_dim, **kw)
        self.net = PooledClassifier(head, self.num_classes, dropout=float(self.hparams.dropout))
        self.input_norm = (
            torch.nn.BatchNorm2d(in_dim, affine=False)
            if self.hparams.input_norm
            else torch.nn.Identity()
        )
        self.hparams["in_dim"] = in_dim

    def setup(self, stage: str) -> None:
        if self.net is not None:
            return
        dm = getattr(self.attached_trainer(), "datamodule", None)
        d = getattr(dm, "num_bands", None)
        if d is None:
            raise ValueError(
                "PoolingClassifier: model.in_dim is null and the datamodule has no num_bands; "
                "set model.in_dim to the embedding dimension D"
            )
        self._build(int(d))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits ``(B, K)`` for embedding rasters ``x (B, D, H, W)`` and ``mask (B, H, W)``."""
        if self.net is None:
            raise RuntimeError("PoolingClassifier is not built yet: set in_dim or call setup()")
        return self.net(self.input_norm(x), mask)

    def pooled(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The head's pooled features ``(B, out_dim)`` (for probing learned pools)."""
        return self.net.head(self.input_norm(x), mask)

    # ------------------------------------------------------------------ steps
    def _step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch["image"], batch["label"]
        mask = batch.get("mask")
        if mask is not None and bool(mask.all()):
            mask = None
        logits = self(x, mask)
        return F.cross_entropy(logits, y), logits, y

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _, y = self._step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, batch_size=len(y))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_metrics.update(logits, y)
        self._test_preds.append(logits.argmax(1).detach().cpu())
        self._test_targets.append(y.detach().cpu())
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y))
        self.log_dict(self.test_metrics, on_epoch=True, batch_size=len(y))

    def on_test_epoch_start(self) -> None:
        self._test_preds, self._test_targets = [], []

    def on_test_epoch_end(self) -> None:
        if (
            not self.hparams.write_results
            or not self._test_preds
            or self.attached_trainer() is None
        ):
            return
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return
        row = self.results_row(torch.cat(self._test_targets), torch.cat(self._test_preds))
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        append_results_row(out_dir / RESULTS_FILE, row)

    def results_row(self, y_true: Tensor, y_pred: Tensor) -> dict[str, Any]:
        """A GeoPool results-CSV row for predictions of this model on a test split."""
        from geoemb.probes import classification_metrics

        dm = getattr(self.attached_trainer(), "datamodule", None)
        m = classification_metrics(y_true, y_pred, num_classes=self.num_classes)
        return {
            "pool": self.head_name,
            "split_type": getattr(dm, "split", ""),
            "probe": "end2end",
            "train_samples": len(dm.dataset("train")) if hasattr(dm, "dataset") else "",
            **{
                k: float(m[k])
                for k in ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")
            },
            "k": "",
            "C": "",
            "encoder": getattr(dm, "encoder", ""),
            "data_source": getattr(dm, "data_source", ""),
            "values": getattr(dm, "values", ""),
        }

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> Any:
        return build_optimization(
            self.parameters(),
            self.hparams.optimizer,
            self.hparams.scheduler,
            default_optimizer={
                "_target_": "torch.optim.AdamW",
                "_partial_": True,
                "lr": 1e-3,
                "weight_decay": 1e-4,
            },
        )


def append_results_row(path: Path, row: dict[str, Any]) -> Path:
    """Append ``row`` to a CSV (header from the first row), rewriting the file atomically."""
    from geoemb.utils.io import atomic_write_text

    path = Path(path)
    rows: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    rows.append({k: row[k] for k in row})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path
