"""Exact L1 (taxicab / city-block) distance transform in torch (CPU and CUDA).

The L1 distance transform is separable: ``d(y, x) = min_{y'} (|y - y'| + min_{x'} (|x - x'| + f(y', x')))``
with ``f = 0`` on feature pixels and ``+inf`` elsewhere. Each 1-D pass is a min-plus convolution
with the kernel ``|t|``, computed exactly with ``ceil(log2(n))`` vectorised "doubling" steps: after
the step with shift ``s = 2**k`` every offset ``|t| < 2**(k+1)`` has been relaxed, because any such
offset is ``s + t'`` with ``|t'| < s`` already relaxed at the neighbour. Every update is a valid path
length, so values never undershoot. Integers throughout: the result is bit-identical to
``scipy.ndimage.distance_transform_cdt(metric="taxicab")`` and ``cv2.distanceTransform(...,
cv2.DIST_L1, 3)`` whenever the patch has at least one feature pixel.
"""

from __future__ import annotations

import torch

#: Distance given to every pixel of a patch that has no feature pixel at all.
NO_FEATURE = 2**30


def _doubling_1d(d: torch.Tensor, dim: int) -> torch.Tensor:
    """Exact ``out[i] = min_j d[j] + |i - j|`` along ``dim`` in ``ceil(log2 n)`` vectorised steps.

    Used on accelerators (few large kernels). Step ``s`` relaxes from ``i - s`` then from ``i + s``
    in place; values only ever decrease to other valid path lengths, so the result is exact.
    """
    n = d.shape[dim]
    s = 1
    while s < n:
        d.narrow(dim, s, n - s).clamp_(max=d.narrow(dim, 0, n - s) + s)
        d.narrow(dim, 0, n - s).clamp_(max=d.narrow(dim, s, n - s) + s)
        s *= 2
    return d


def _scan_1d(d: torch.Tensor, dim: int) -> torch.Tensor:
    """Exact 1-D L1 transform by the classic forward/backward scans (``+1`` per step).

    Used on CPU: the scanned axis is moved to the front so every step touches one contiguous slab.
    """
    t = d.movedim(dim, 0).contiguous()
    n = t.shape[0]
    tmp = torch.empty_like(t[0])
    for i in range(1, n):
        torch.add(t[i - 1], 1, out=tmp)
        torch.minimum(t[i], tmp, out=t[i])
    for i in range(n - 2, -1, -1):
        torch.add(t[i + 1], 1, out=tmp)
        torch.minimum(t[i], tmp, out=t[i])
    return t.movedim(0, dim)


def l1_distance_transform(features: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Exact L1 distance of every pixel to the nearest feature pixel of its own image.

    Parameters
    ----------
    features:
        ``(B, H, W)`` or ``(H, W)`` bool (or 0/1) tensor; True marks feature pixels (e.g. visible road).
    method:
        ``"scan"`` (sequential forward/backward scans; fastest on CPU), ``"doubling"`` (log-step
        min-plus relaxation; fastest on GPU) or ``"auto"`` (scan on CPU, doubling elsewhere).
        Both are exact and give identical results.

    Returns
    -------
    torch.Tensor
        ``(B, H, W)`` (or ``(H, W)``) ``int32`` distances on the input's device; 0 on feature pixels.
        Images without any feature pixel get :data:`NO_FEATURE` (``2**30``) everywhere.
    """
    if features.ndim not in (2, 3):
        raise ValueError(f"features must be (H, W) or (B, H, W), got shape {tuple(features.shape)}")
    if method == "auto":
        method = "scan" if features.device.type == "cpu" else "doubling"
    if method not in ("scan", "doubling"):
        raise ValueError(f"method must be 'auto', 'scan' or 'doubling', got {method!r}")
    squeeze = features.ndim == 2
    f = features.bool()
    if squeeze:
        f = f.unsqueeze(0)
    h, w = f.shape[-2:]
    # int16 halves memory traffic when every finite distance and the sentinel fit
    small = 2 * (h + w) + 2**14 < 2**15 - 1
    dtype, sentinel = (torch.int16, 2**14) if small else (torch.int32, NO_FEATURE)
    d = (~f).to(dtype) * sentinel
    one_d = _scan_1d if method == "scan" else _doubling_1d
    d = one_d(d, 2)
    d = one_d(d, 1)
    d = d.to(torch.int32)
    # pixels of a feature-less image carry sentinel + offsets; reset them to NO_FEATURE
    d = torch.where(d >= sentinel, torch.full_like(d, NO_FEATURE), d)
    return d.squeeze(0) if squeeze else d
