"""Distance-aware losses for Chesapeake RSC (the blog's suggested next step).

:class:`DistanceAwareCELoss` is cross-entropy on the binary (road vs background) task in which each
tree-canopy-over-road (TC) pixel is up-weighted by its L1 distance ``d`` to the nearest visible road
pixel of its patch (the same distance as DWR, computed on the batch's device):

    w = 1                                         for non-TC pixels
    w = min(1 + alpha · f(d), max_weight)         for TC pixels, f = d (linear) | log1p(d) (log) | 0 (none)

    L_ce = Σ w · CE / Σ w

Patches without visible road give their TC pixels weight ``1 + alpha · f(no_road_distance)`` capped by
``max_weight`` (far = hard). Optionally an auxiliary **connectivity** term (soft-clDice centreline
recall, Shit et al. 2021) rewards predicting road along the centreline of the *whole* road network,
visible and under canopy:

    L = L_ce + connectivity_weight · (1 - Σ skel(y) · p_road / Σ skel(y))

with ``skel`` the soft skeleton (iterated min/max pooling) of the 2-class road target and ``p_road``
the softmax road probability. The target must be the 3-class view (``mask_3class``): 0 bg, 1 road,
2 TC; the model is trained on 2 classes (TC = road).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoemb.metrics.distance import l1_distance_transform

__all__ = ["DistanceAwareCELoss", "distance_weights", "soft_skeleton"]


def distance_weights(
    target3: Tensor,
    alpha: float = 0.1,
    mode: str = "linear",
    max_weight: float = 20.0,
    no_road_distance: float = 128.0,
) -> Tensor:
    """Per-pixel CE weights ``(B, H, W)`` float from a 3-class target (see module docstring)."""
    if mode not in ("linear", "log", "none"):
        raise ValueError(f"distance weight mode must be 'linear', 'log' or 'none', got {mode!r}")
    d = l1_distance_transform(target3 == 1).float()
    has_road = (target3 == 1).flatten(1).any(1).view(-1, 1, 1)
    d = torch.where(has_road, d, torch.full_like(d, float(no_road_distance)))
    f = d if mode == "linear" else torch.log1p(d) if mode == "log" else torch.zeros_like(d)
    w_tc = torch.clamp(1.0 + alpha * f, max=max_weight)
    return torch.where(target3 == 2, w_tc, torch.ones_like(w_tc))


def _soft_erode(x: Tensor) -> Tensor:
    p1 = -F.max_pool2d(-x, (3, 1), 1, (1, 0))
    p2 = -F.max_pool2d(-x, (1, 3), 1, (0, 1))
    return torch.minimum(p1, p2)


def _soft_dilate(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 3, 1, 1)


def soft_skeleton(x: Tensor, iterations: int = 5) -> Tensor:
    """Soft morphological skeleton of ``x`` ``(B, 1, H, W)`` in [0, 1] (clDice)."""
    img = x
    skel = F.relu(img - _soft_dilate(_soft_erode(img)))
    for _ in range(iterations):
        img = _soft_erode(img)
        delta = F.relu(img - _soft_dilate(_soft_erode(img)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


class DistanceAwareCELoss(nn.Module):
    """Distance-weighted CE (+ optional connectivity term); called as ``loss(logits, target3)``.

    Parameters
    ----------
    alpha, mode, max_weight, no_road_distance : see :func:`distance_weights`.
    connectivity_weight : weight of the soft-clDice centreline-recall term (0 = off).
    skeleton_iterations : soft-skeleton iterations (≈ half the widest road in px).
    """

    def __init__(
        self,
        alpha: float = 0.1,
        mode: str = "linear",
        max_weight: float = 20.0,
        no_road_distance: float = 128.0,
        connectivity_weight: float = 0.0,
        skeleton_iterations: int = 5,
    ) -> None:
        super().__init__()
        distance_weights(torch.zeros(1, 1, 1, dtype=torch.long), alpha, mode)  # validate mode
        self.alpha, self.mode, self.max_weight = float(alpha), mode, float(max_weight)
        self.no_road_distance = float(no_road_distance)
        self.connectivity_weight = float(connectivity_weight)
        self.skeleton_iterations = int(skeleton_iterations)

    def forward(self, logits: Tensor, target3: Tensor) -> Tensor:
        """``logits`` ``(B, 2, H, W)``, ``target3`` ``(B, H, W)`` in {0, 1, 2} → scalar loss."""
        if logits.ndim != 4 or target3.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"DistanceAwareCELoss: logits must be (B, K, H, W) and target (B, H, W); got "
                f"{tuple(logits.shape)} and {tuple(target3.shape)}"
            )
        target3 = target3.long()
        target2 = target3.clamp(max=1)
        with torch.no_grad():
            w = distance_weights(
                target3, self.alpha, self.mode, self.max_weight, self.no_road_distance
            )
        ce = F.cross_entropy(logits, target2, reduction="none")
        loss = (w * ce).sum() / w.sum()
        if self.connectivity_weight > 0:
            p_road = logits.softmax(1)[:, 1:2]
            skel = soft_skeleton(target2.unsqueeze(1).float(), self.skeleton_iterations)
            denom = skel.sum()
            if denom > 0:
                tsens = (skel * p_road).sum() / denom
                loss = loss + self.connectivity_weight * (1.0 - tsens)
        return loss
