"""Classification metrics with sklearn's defaults (labels = union of true and predicted,
``zero_division`` -> 0)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["classification_metrics"]


def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro/weighted F1, macro precision and recall (sklearn semantics).

    Parameters
    ----------
    y_true, y_pred : (N,) integer labels (array or tensor)
    num_classes : int, optional
        If given, labels ``0..num_classes-1`` are all averaged over (absent classes score 0);
        otherwise the union of labels in ``y_true`` and ``y_pred`` (sklearn's default).

    Returns
    -------
    dict with keys accuracy, f1_macro, f1_weighted, precision_macro, recall_macro (floats).
    """
    yt = torch.as_tensor(np.asarray(y_true) if not isinstance(y_true, Tensor) else y_true)
    yp = torch.as_tensor(np.asarray(y_pred) if not isinstance(y_pred, Tensor) else y_pred)
    yt = yt.detach().cpu().long().reshape(-1)
    yp = yp.detach().cpu().long().reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError(
            f"classification_metrics: y_true has {yt.numel()} labels, y_pred {yp.numel()}"
        )
    if yt.numel() == 0:
        raise ValueError("classification_metrics: empty label arrays")
    if num_classes is None:
        labels = torch.unique(torch.cat([yt, yp]), sorted=True)
    else:
        labels = torch.arange(num_classes)
        if (
            (yt.min() < 0)
            or (yt.max() >= num_classes)
            or (yp.min() < 0)
            or (yp.max() >= num_classes)
        ):
            raise ValueError(
                f"classification_metrics: labels outside 0..{num_classes - 1} with num_classes set"
            )
    t_idx = torch.searchsorted(labels, yt)
    p_idx = torch.searchsorted(labels, yp)
    n_l = labels.numel()
    cm = torch.bincount(t_idx * n_l + p_idx, minlength=n_l * n_l).reshape(n_l, n_l).double()
    tp = cm.diag()
    support = cm.sum(1)
    pred_count = cm.sum(0)

    def safe_div(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(b > 0, a / b.clamp_min(1e-300), torch.zeros_like(a))

    precision = safe_div(tp, pred_count)
    recall = safe_div(tp, support)
    f1 = safe_div(2 * tp, 2 * tp + (pred_count - tp) + (support - tp))
    total = support.sum()
    return {
        "accuracy": float(tp.sum() / yt.numel()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support).sum() / total) if total > 0 else 0.0,
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
    }
