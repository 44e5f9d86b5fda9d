"""Effective receptive field (ERF) by gradient attribution (Luo et al. 2016; RSC blog 2026).

No public code exists for the blog's ERF numbers (reference/chesapeake_rsc.md §7); this module is
the reconstruction of §7.2 with every open choice fixed and documented:

* **Logit**: the *pre-softmax* logit of ``class_index`` (road = 1), raw (not a difference).
  Pixel mode takes ``logits[b, class_index, y, x]``; block mode sums it over a ``block×block`` output
  block (the explorer's 8×8 blocks) and centres the radius at the block centre ``(y0 + (block-1)/2, ...)``.
* **Attribution**: ``a = Σ_c |∂logit/∂x_c|`` (absolute gradient summed over input channels) w.r.t.
  the input fed to ``model`` (for geoemb segmentation modules: the raw image; the ``/255`` is a
  constant factor and does not change mass fractions). The model is put in ``eval()`` mode.
* **Radius**: Euclidean distance ``r`` of each input pixel centre from the output pixel (block) centre.
* **Cumulative mass**: ``M(ρ) = Σ_{r ≤ ρ} a / Σ a``. **Border handling**: the total is the gradient mass
  *inside the image* (circles clipped by the image border are renormalised); pixels near the border
  are kept (pass ``border`` to :func:`sample_output_pixels` to exclude them instead).
* **Radius at p**: ``ρ_p = min{ρ : M(ρ) ≥ p}`` evaluated exactly on the sorted pixel radii of each
  output pixel; diameter ``= 2·ρ_p``.
* **Aggregation** (per true class of the output pixel): ``mean_curve`` is the mean of the per-pixel
  ``M`` curves on a 1-px radius grid and ``radius_p`` is read from that mean curve (primary numbers);
  the median of the per-pixel exact radii is reported beside it (``median_radius_p``).
* Output pixels with zero total gradient (dead units) are dropped and counted.
* Sampling: :func:`sample_output_pixels` draws up to ``n_per_class`` pixels per true class per image
  with a seeded generator.

Batched: the image is replicated once per sampled output pixel (model in eval mode, so samples are
independent) and one backward pass gives all attribution maps of a chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "ERFResult",
    "attribution_maps",
    "cumulative_mass",
    "erf_analysis",
    "radius_at",
    "recommended_overlap",
    "sample_output_pixels",
]

DEFAULT_PERCENTILES = (0.5, 0.9, 0.99)


def sample_output_pixels(
    mask: Tensor,
    n_per_class: int,
    classes: tuple[int, ...] = (0, 1, 2),
    border: int = 0,
    seed: int = 0,
) -> list[tuple[int, int, int]]:
    """Sample ``(y, x, class)`` output locations stratified by the true class.

    Parameters
    ----------
    mask : ``(H, W)`` long (3-class view).
    n_per_class : max samples per class (fewer if the class has fewer pixels).
    border : pixels closer than this to the image edge are not sampled.
    seed : seed of the ``torch.Generator`` (CPU).
    """
    g = torch.Generator().manual_seed(seed)
    m = mask.cpu()
    h, w = m.shape
    valid = torch.zeros_like(m, dtype=torch.bool)
    valid[border : h - border, border : w - border] = True
    out = []
    for c in classes:
        ys, xs = torch.nonzero((m == c) & valid, as_tuple=True)
        if ys.numel() == 0:
            continue
        perm = torch.randperm(ys.numel(), generator=g)[:n_per_class]
        out += [(int(ys[i]), int(xs[i]), int(c)) for i in perm]
    return out


def attribution_maps(
    model: nn.Module,
    image: Tensor,
    points: list[tuple[int, int]],
    class_index: int = 1,
    block: int = 1,
    chunk: int = 16,
) -> Tensor:
    """``|∂ logit / ∂ input|`` summed over channels for each output location.

    Parameters
    ----------
    model : maps ``(B, C, H, W)`` → logits ``(B, K, H, W)``; evaluated in ``eval()`` mode.
    image : ``(C, H, W)`` input on the model's device.
    points : ``(y, x)`` output pixels (pixel mode) or block top-left corners (``block > 1``).
    class_index : logit channel (road = 1).
    block : output block side (1 = single pixel; 8 = the blog explorer's 8×8 blocks).
    chunk : output locations per backward pass.

    Returns
    -------
    ``(N, H, W)`` float tensor of attributions on the image's device.
    """
    was_training = model.training
    model.eval()
    maps = []
    try:
        for s in range(0, len(points), chunk):
            pts = points[s : s + chunk]
            x = image.detach().unsqueeze(0).repeat(len(pts), 1, 1, 1).requires_grad_(True)
            logits = model(x)
            sel = torch.stack(
                [
                    logits[i, class_index, y : y + block, xx : xx + block].sum()
                    for i, (y, xx) in enumerate(pts)
                ]
            )
            (grad,) = torch.autograd.grad(sel.sum(), x)
            maps.append(grad.abs().sum(1).detach())
    finally:
        model.train(was_training)
    if not maps:
        return torch.zeros(0, *image.shape[-2:], device=image.device)
    return torch.cat(maps)


def _radii(h: int, w: int, cy: float, cx: float, device) -> Tensor:
    ys = torch.arange(h, device=device, dtype=torch.float64).view(h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float64).view(1, w)
    return torch.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)


def cumulative_mass(
    attr: Tensor, centers: list[tuple[float, float]], grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-location cumulative mass curves and exact radii.

    Parameters
    ----------
    attr : ``(N, H, W)`` non-negative attributions.
    centers : ``N`` ``(cy, cx)`` centres (float for block centres).
    grid : radius grid ``(R,)`` at which ``M`` is evaluated.

    Returns
    -------
    curves : ``(N', R)`` ``M(grid)`` for locations with positive mass.
    sorted_r, sorted_cum : lists (object arrays) of each location's sorted radii and cumulative mass
        (for exact percentile radii, see :func:`radius_at`).
    keep : ``(N,)`` bool, False where the total attribution is 0.
    """
    n, h, w = attr.shape
    curves, keep, exact = [], np.zeros(n, bool), []
    g = torch.as_tensor(grid, dtype=torch.float64, device=attr.device)
    for i in range(n):
        a = attr[i].double().reshape(-1)
        tot = a.sum()
        if not tot > 0:
            continue
        keep[i] = True
        r = _radii(h, w, *centers[i], attr.device).reshape(-1)
        order = torch.argsort(r)
        rs, cum = r[order], torch.cumsum(a[order], 0) / tot
        idx = torch.searchsorted(rs, g, right=True)  # number of pixels with r <= grid
        m = torch.where(idx > 0, cum[(idx - 1).clamp(min=0)], torch.zeros_like(g))
        curves.append(m.cpu().numpy())
        exact.append((rs.cpu().numpy(), cum.cpu().numpy()))
    curves_arr = np.stack(curves) if curves else np.zeros((0, len(grid)))
    return curves_arr, exact, keep


def radius_at(sorted_r: np.ndarray, sorted_cum: np.ndarray, p: float) -> float:
    """Smallest radius whose enclosed mass fraction is ``>= p`` (exact, on the pixel radii).

    A tolerance of 1e-9 absorbs floating-point round-off in the cumulative sum.
    """
    k = int(np.searchsorted(sorted_cum, p - 1e-9, side="left"))
    k = min(k, len(sorted_r) - 1)
    # all pixels at the same radius enter the circle together
    return float(sorted_r[k])


def _radius_from_curve(curve: np.ndarray, grid: np.ndarray, p: float) -> float:
    hit = np.nonzero(curve >= p - 1e-9)[0]
    return float(grid[hit[0]]) if hit.size else float("nan")


@dataclass
class ERFResult:
    """ERF summary per true class (``"background"``, ``"road"``, ``"tc"``, ``"all"``).

    ``grid``: radius grid (px); ``mean_curve[name]``: ``(R,)`` mean ``M`` curve; ``radius[name][p]``:
    radius read from the mean curve; ``median_radius[name][p]``: median of exact per-pixel radii;
    ``n[name]``: pixels used; ``n_dead``: locations with zero gradient (dropped).
    """

    grid: np.ndarray
    mean_curve: dict[str, np.ndarray] = field(default_factory=dict)
    radius: dict[str, dict[float, float]] = field(default_factory=dict)
    median_radius: dict[str, dict[float, float]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    n_dead: int = 0

    def table(self):
        """pandas DataFrame: class, p, radius, diameter, median_radius, n."""
        import pandas as pd

        rows = []
        for name, rad in self.radius.items():
            for p, r in rad.items():
                rows.append(
                    {
                        "class": name,
                        "percentile": p,
                        "radius_px": r,
                        "diameter_px": 2 * r,
                        "median_radius_px": self.median_radius[name][p],
                        "n_pixels": self.n[name],
                    }
                )
        return pd.DataFrame(rows)

    def curves_frame(self):
        """pandas DataFrame with ``radius`` and one mean-curve column per class."""
        import pandas as pd

        df = pd.DataFrame({"radius": self.grid})
        for name, c in self.mean_curve.items():
            df[name] = c
        return df


CLASS_NAMES = {0: "background", 1: "road", 2: "tc"}


def erf_analysis(
    model: nn.Module,
    images: list[Tensor] | Tensor,
    masks: list[Tensor] | Tensor,
    n_per_class: int = 8,
    class_index: int = 1,
    block: int = 1,
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES,
    border: int = 0,
    seed: int = 0,
    chunk: int = 16,
    grid_step: float = 1.0,
) -> ERFResult:
    """ERF over several images, stratified by the true class of the output pixel.

    Parameters
    ----------
    model : ``(B, C, H, W)`` → logits ``(B, K, H, W)``.
    images : ``N`` images ``(C, H, W)`` (or a ``(N, C, H, W)`` tensor) on the model's device.
    masks : ``N`` 3-class masks ``(H, W)`` (true class of each output pixel).
    n_per_class, border, seed : see :func:`sample_output_pixels` (seed + image number).
    class_index, block, chunk : see :func:`attribution_maps`. In block mode the sampled pixel is
        the block's top-left corner (blocks are clipped to the image) and its class is that pixel's.
    percentiles : mass fractions for radii.
    grid_step : spacing (px) of the radius grid of the mean curves.
    """
    h, w = images[0].shape[-2:]
    grid = np.arange(0.0, math.hypot(h, w) + grid_step, grid_step)
    per_class_curves: dict[str, list[np.ndarray]] = {}
    per_class_exact: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    n_dead = 0
    for k in range(len(images)):
        pts = sample_output_pixels(masks[k], n_per_class, border=border, seed=seed + k)
        if not pts:
            continue
        attr = attribution_maps(
            model, images[k], [(y, x) for y, x, _ in pts], class_index, block, chunk
        )
        centers = []
        for y, x, _ in pts:
            bh, bw = min(block, h - y), min(block, w - x)
            centers.append((y + (bh - 1) / 2, x + (bw - 1) / 2))
        curves, exact, keep = cumulative_mass(attr, centers, grid)
        n_dead += int((~keep).sum())
        kept_classes = [c for (_, _, c), kp in zip(pts, keep) if kp]
        for c, curve, ex in zip(kept_classes, curves, exact):
            for name in (CLASS_NAMES.get(c, str(c)), "all"):
                per_class_curves.setdefault(name, []).append(curve)
                per_class_exact.setdefault(name, []).append(ex)
    res = ERFResult(grid=grid, n_dead=n_dead)
    for name, cs in per_class_curves.items():
        mean = np.mean(np.stack(cs), 0)
        res.mean_curve[name] = mean
        res.radius[name] = {p: _radius_from_curve(mean, grid, p) for p in percentiles}
        res.median_radius[name] = {
            p: float(np.median([radius_at(r, c, p) for r, c in per_class_exact[name]]))
            for p in percentiles
        }
        res.n[name] = len(cs)
    return res


def recommended_overlap(
    erf: ERFResult | float,
    percentile: float = 0.99,
    cls: str = "road",
    multiple: int = 2,
    tile_size: int | None = None,
) -> int:
    """Stitching overlap (px) for gridded inference, derived from the ERF.

    Convention (what ``infer.py`` should do): adjacent tiles overlap by ``overlap`` pixels and each
    tile keeps only its central part, discarding ``overlap // 2`` pixels at every interior edge. A
    kept pixel then has at least ``overlap // 2`` pixels of real context on every side, so choosing
    ``overlap = 2·ceil(ρ_p)`` guarantees that the fraction ``p`` of its gradient mass (ERF radius at
    percentile ``p``) lies inside the tile, exactly as in whole-image inference.

    Parameters
    ----------
    erf : :class:`ERFResult` (uses ``erf.radius[cls][percentile]``) or a radius in pixels.
    percentile : ERF mass fraction to protect (default 99 %).
    cls : class whose ERF is used (road has the widest ERF in the blog).
    multiple : round the overlap up to a multiple of this (e.g. 32 for U-Net-friendly tiles).
    tile_size : if given, the overlap must be < tile_size (else ``ValueError``: use larger tiles).
    """
    if isinstance(erf, ERFResult):
        if cls not in erf.radius or percentile not in erf.radius[cls]:
            raise ValueError(
                f"recommended_overlap: ERF has no radius for class {cls!r} at p={percentile}"
            )
        radius = erf.radius[cls][percentile]
    else:
        radius = float(erf)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"recommended_overlap: radius must be finite and >= 0, got {radius}")
    overlap = 2 * math.ceil(radius)
    overlap = int(math.ceil(overlap / multiple) * multiple) if multiple > 1 else overlap
    if tile_size is not None and overlap >= tile_size:
        raise ValueError(
            f"recommended_overlap: overlap {overlap} px (ERF radius {radius:.1f} px at p={percentile}) "
            f"does not fit tiles of {tile_size} px; use tiles larger than {overlap} px"
        )
    return overlap
