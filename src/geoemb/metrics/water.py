"""The TorchGeo ESW tutorial's per-batch metrics (OA and binary IoU averaged over batches)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class _PerBatchMean(Metric):
    """Mean over ``update`` calls of a per-batch score (subclasses define :meth:`batch_score`)."""

    full_state_update = False

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def batch_score(
        self, preds: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor | None:
        """Score of one batch (float64 scalar), or ``None`` to skip the batch."""
        raise NotImplementedError

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds`` and ``target``: ``(B, H, W)`` class ids."""
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        score = self.batch_score(preds, target, valid)
        if score is None:
            return
        self.total += score
        self.batches += 1

    def compute(self) -> torch.Tensor:
        return (self.total / self.batches.clamp_min(1)).float()


class PerBatchMeanOA(_PerBatchMean):
    """Mean over ``update`` calls of the batch overall accuracy ``count(y == ŷ) / numel(y)``.

    This is the tutorial's OA; the dataset-level OA is ``torchmetrics`` ``Accuracy(average="micro")``.
    Batches without a valid pixel are skipped.
    """

    def batch_score(self, preds, target, valid):
        n = valid.sum()
        if n == 0:
            return None
        return ((preds == target) & valid).sum().double() / n


class PerBatchMeanIoU(_PerBatchMean):
    """Mean over batches of binary Jaccard (positive class ``pos_label``), ``zero_division=1``.

    Equals ``mean(sklearn.metrics.jaccard_score(y.flatten(), ŷ.flatten(), zero_division=1.0))`` over
    the validation batches, as in the tutorial.
    """

    def __init__(self, pos_label: int = 1, ignore_index: int | None = None) -> None:
        super().__init__(ignore_index=ignore_index)
        self.pos_label = pos_label

    def batch_score(self, preds, target, valid):
        p = (preds == self.pos_label) & valid
        t = (target == self.pos_label) & valid
        union = (p | t).sum()
        if union == 0:
            return torch.tensor(1.0, dtype=torch.float64, device=preds.device)
        return (p & t).sum().double() / union.double()
