"""GPU batch augmentations for Chesapeake RSC (Kornia), applied in ``on_after_batch_transfer``.

Reference (``isaaccorley/ChesapeakeRSC`` ``src/datamodules.py``): ``/255`` → optional
``K.RandomErasing(value=0)`` cutout → ``K.RandomRotation(degrees=90, p=0.5)`` (an arbitrary angle in
[-90°, 90°], not multiples of 90°) → horizontal and vertical flips (p = 0.5). Val/test: ``/255`` only.
Cutout is an *intensity* augmentation: masks are not erased. Geometric ops move the masks with
nearest-neighbour resampling; pixels rotated in from outside become 0 (background), as in the reference.

Here the ``/255`` lives in the model (:class:`Scale` as the module's ``preprocess``) so that a
checkpoint applied to raw NAIP tiles reproduces training; erasing to ``0`` is identical before or
after the scaling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CUTOUT_PRESETS", "FixedSquareCutout", "RSCAugmentation", "Scale", "build_cutout"]

#: The reference cutout presets (``--cutout``): area-fraction scale of the image, aspect ratio, p, count.
CUTOUT_PRESETS: dict[str, dict] = {
    "small": {"scale": (0.02, 0.06), "ratio": (0.3, 3.3), "p": 0.5, "count": 1},
    "medium": {"scale": (0.10, 0.25), "ratio": (0.3, 3.3), "p": 0.5, "count": 1},
    "large": {"scale": (0.25, 0.50), "ratio": (0.3, 3.3), "p": 0.75, "count": 1},
    "multi": {"scale": (0.02, 0.08), "ratio": (0.5, 2.0), "p": 0.7, "count": 3},
}


class Scale(nn.Module):
    """``x / divisor`` (default 255: uint8 NAIP → [0, 1]); a checkpointable ``preprocess``."""

    def __init__(self, divisor: float = 255.0) -> None:
        super().__init__()
        if divisor == 0:
            raise ValueError("Scale.divisor must be non-zero")
        self.divisor = float(divisor)

    def forward(self, x: Tensor) -> Tensor:
        return x / self.divisor


class FixedSquareCutout(nn.Module):
    """Erase ``count`` axis-aligned ``size×size`` squares per image (the blog's "64×64 cutout").

    Each square is applied independently with probability ``p``; its top-left corner is uniform
    over positions that keep the square inside the image. Images only (masks untouched).

    Parameters
    ----------
    size : int
        Square side in pixels (clipped to the image size).
    p : float
        Probability per square.
    count : int
        Squares per image.
    value : float
        Fill value (0 as in the reference RandomErasing).
    """

    def __init__(self, size: int = 64, p: float = 0.5, count: int = 1, value: float = 0.0) -> None:
        super().__init__()
        if size <= 0 or count <= 0 or not 0 <= p <= 1:
            raise ValueError(
                f"FixedSquareCutout: need size > 0, count > 0, 0 <= p <= 1; got {size=}, {count=}, {p=}"
            )
        self.size, self.p, self.count, self.value = int(size), float(p), int(count), float(value)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, C, H, W)`` → same shape with squares erased."""
        b, _, h, w = x.shape
        sh, sw = min(self.size, h), min(self.size, w)
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        erase = torch.zeros(b, h, w, dtype=torch.bool, device=x.device)
        for _ in range(self.count):
            on = torch.rand(b, device=x.device) < self.p
            y0 = torch.randint(0, h - sh + 1, (b,), device=x.device).view(b, 1, 1)
            x0 = torch.randint(0, w - sw + 1, (b,), device=x.device).view(b, 1, 1)
            box = (ys >= y0) & (ys < y0 + sh) & (xs >= x0) & (xs < x0 + sw)
            erase |= box & on.view(b, 1, 1)
        return torch.where(erase.unsqueeze(1), torch.full_like(x, self.value), x)


def build_cutout(cutout: str | None) -> list[nn.Module]:
    """Modules for a cutout preset: ``None``/``"none"``, ``small|medium|large|multi`` (reference
    ``K.RandomErasing``) or ``square<N>`` (e.g. ``square64``: :class:`FixedSquareCutout`, p = 0.5)."""
    import kornia.augmentation as K

    if cutout is None or cutout == "none":
        return []
    if cutout in CUTOUT_PRESETS:
        c = CUTOUT_PRESETS[cutout]
        return [
            K.RandomErasing(scale=c["scale"], ratio=c["ratio"], p=c["p"], value=0.0)
            for _ in range(c["count"])
        ]
    if cutout.startswith("square") and cutout[6:].isdigit():
        return [FixedSquareCutout(size=int(cutout[6:]), p=0.5)]
    raise ValueError(
        f"cutout must be None, one of {sorted(CUTOUT_PRESETS)} or 'square<N>' (e.g. square64); got {cutout!r}"
    )


class RSCAugmentation(nn.Module):
    """Training augmentation: cutout (image only) → random rotation → h/v flips (image + masks).

    Parameters
    ----------
    rotation_degrees : float
        ``K.RandomRotation(degrees)`` range (reference 90, p = 0.5); 0 disables.
    flips : bool
        Random horizontal and vertical flips (p = 0.5 each).
    cutout : str | None
        See :func:`build_cutout`.
    """

    def __init__(
        self, rotation_degrees: float = 90.0, flips: bool = True, cutout: str | None = None
    ) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.cutout = nn.ModuleList(build_cutout(cutout))
        geo: list[nn.Module] = []
        if rotation_degrees:
            geo.append(K.RandomRotation(degrees=rotation_degrees, p=0.5))
        if flips:
            geo += [K.RandomHorizontalFlip(p=0.5), K.RandomVerticalFlip(p=0.5)]
        self.geo = geo
        self._geo = nn.ModuleList(geo)

    @torch.no_grad()
    def forward(self, image: Tensor, masks: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``image`` ``(B, C, H, W)`` float; ``masks`` name → ``(B, H, W)`` long. Returns both augmented."""
        import kornia.augmentation as K

        for m in self.cutout:
            image = m(image)
        if not self.geo:
            return image, masks
        names = list(masks)
        seq = K.AugmentationSequential(*self.geo, data_keys=["input"] + ["mask"] * len(names))
        stacked = [masks[n].unsqueeze(1).to(image.dtype) for n in names]
        out = seq(image, *stacked)
        if not isinstance(out, (list, tuple)):
            out = [out]
        image = out[0]
        res = {n: out[i + 1].squeeze(1).round().to(masks[n].dtype) for i, n in enumerate(names)}
        return image, res
