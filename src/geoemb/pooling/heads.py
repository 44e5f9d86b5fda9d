"""Learnable pooling heads: (B, D, H, W) embedding rasters + validity mask -> (B, out_dim).

Every head is an ``nn.Module`` with ``forward(x, mask=None)`` and an ``out_dim`` attribute, and
is mask-aware: invalid pixels (mask False) have no influence on the output or the gradients
(they are replaced with zeros before any arithmetic, so NaN nodata cannot leak, and are
excluded from every sum, mean and softmax).  A sample without any valid pixel raises
``ValueError`` naming its batch index.

Names for :func:`build_head` (the :data:`HEADS` registry):

``attention_mil``
    Gated attention MIL pooling (Ilse, Tomczak & Welling, ICML 2018):
    ``a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i)))``, ``z = sum_i a_i h_i``; out_dim = D
    (or ``proj_dim`` if an input projection is requested).
``gem``
    Learnable signed generalised mean: ``m = mean_i(sign(x_i)|x_i|^p)``,
    ``out = sign(m)|m|^(1/p)`` with ``p = softplus(theta)`` (scalar or per channel); with p fixed
    at 3 it equals the training-free ``gem``.  out_dim = D.
``pma``
    Pooling by multihead attention (Set Transformer, Lee et al., ICML 2019): k learned seed
    vectors attend over the (projected) pixels, ``H = LN(S + MHA(S, rFF(X), rFF(X)))``,
    ``O = LN(H + rFF(H))``; out_dim = k * dim.
``lowrank_bilinear``
    Learned low-rank second-order pooling: pixels projected to rank r, output
    ``[mean(z), triu(cov(z))]`` (ddof=1 over valid pixels), optionally signed-sqrt + L2
    normalised; out_dim = r + r(r+1)/2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from geoemb.pooling.functional import as_raster, check_empty, check_mask
from geoemb.utils.registry import Registry


def _pixels_and_mask(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B, D, H, W), mask -> pixels (B, N, D) with invalid rows zeroed, valid (B, N) bool."""
    if not torch.is_floating_point(x):
        x = as_raster(x)
    elif x.ndim != 4:
        as_raster(x)  # raises the standard shape error
    mask = check_mask(mask, x)
    b, d, h, w = x.shape
    pix = x.reshape(b, d, h * w).transpose(1, 2)
    if mask is None:
        valid = torch.ones((b, h * w), dtype=torch.bool, device=x.device)
        return pix, valid
    valid = mask.reshape(b, h * w)
    check_empty(valid.sum(1), "raise")
    pix = torch.where(valid[:, :, None], pix, pix.new_zeros(()))
    return pix, valid


def _masked_mean(z: Tensor, valid: Tensor) -> Tensor:
    """z (B, N, C) zeroed at invalid rows -> (B, C) mean over valid rows."""
    n = valid.sum(1, keepdim=True).clamp_min(1).to(z.dtype)
    return z.sum(1) / n


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class AttentionMILHead(nn.Module):
    """Gated attention-MIL pooling (Ilse et al. 2018).

    Parameters
    ----------
    in_dim : int
        Embedding dimension D.
    hidden : int
        Attention hidden size L.
    proj_dim : int, optional
        If given, pixels are first mapped by Linear(D, proj_dim) + ReLU and out_dim = proj_dim.
    dropout : float
        Dropout on the attention hidden layer.
    gated : bool
        Gated (tanh * sigmoid) or plain (tanh) attention.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        proj_dim: int | None = None,
        dropout: float = 0.0,
        gated: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.proj = nn.Sequential(nn.Linear(in_dim, proj_dim), nn.ReLU()) if proj_dim else None
        feat = proj_dim or in_dim
        self.attn_v = nn.Linear(feat, hidden)
        self.attn_u = nn.Linear(feat, hidden) if gated else None
        self.attn_w = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)
        self.out_dim = feat

    def attention(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attention weights (B, H, W), zero at invalid pixels, summing to 1 per sample."""
        b, _, h, w = x.shape
        pix, valid = _pixels_and_mask(x, mask)
        a = self._weights(self._features(pix), valid)
        return a.reshape(b, h, w)

    def _features(self, pix: Tensor) -> Tensor:
        return self.proj(pix) if self.proj is not None else pix

    def _weights(self, feats: Tensor, valid: Tensor) -> Tensor:
        hid = torch.tanh(self.attn_v(feats))
        if self.attn_u is not None:
            hid = hid * torch.sigmoid(self.attn_u(feats))
        logits = self.attn_w(self.drop(hid))[..., 0]  # (B, N)
        logits = logits.masked_fill(~valid, -math.inf)
        return torch.softmax(logits, dim=1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, D, H, W), mask (B, H, W) bool|None -> (B, out_dim)."""
        pix, valid = _pixels_and_mask(x, mask)
        feats = self._features(pix)
        a = self._weights(feats, valid)
        feats = torch.where(valid[:, :, None], feats, feats.new_zeros(()))
        return torch.bmm(a[:, None, :], feats)[:, 0]


class GeMHead(nn.Module):
    """Learnable signed GeM pooling.

    Parameters
    ----------
    in_dim : int
    p_init : float
        Initial exponent (3 = the reference GeM).
    learn_p : bool
        If False, p is a fixed buffer.
    per_channel : bool
        One exponent per embedding channel instead of a shared scalar.
    eps : float
        Lower clamp of |x| and |m| inside the powers (keeps gradients finite; negligible).
    """

    def __init__(
        self,
        in_dim: int,
        p_init: float = 3.0,
        learn_p: bool = True,
        per_channel: bool = False,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if p_init <= 0:
            raise ValueError(f"GeMHead: p_init must be > 0, got {p_init}")
        self.in_dim = in_dim
        self.out_dim = in_dim
        self.eps = eps
        theta = torch.full((in_dim if per_channel else 1,), _inv_softplus(p_init))
        if learn_p:
            self.theta = nn.Parameter(theta)
        else:
            self.register_buffer("theta", theta)

    @property
    def p(self) -> Tensor:
        """Current exponent(s), shape (1,) or (D,)."""
        return F.softplus(self.theta)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, D, H, W), mask (B, H, W) bool|None -> (B, D)."""
        pix, valid = _pixels_and_mask(x, mask)
        p = self.p.to(pix.dtype)
        powed = torch.sign(pix) * pix.abs().clamp_min(self.eps).pow(p)
        powed = torch.where(valid[:, :, None], powed, powed.new_zeros(()))
        m = _masked_mean(powed, valid)
        return torch.sign(m) * m.abs().clamp_min(self.eps).pow(1.0 / p)


class PMAHead(nn.Module):
    """Pooling by multihead attention (Set Transformer PMA) with k learned seeds.

    Parameters
    ----------
    in_dim : int
    num_seeds : int
        k; out_dim = k * dim.
    dim : int
        Model width (pixels are projected D -> dim).
    num_heads : int
    dropout : float
    """

    def __init__(
        self,
        in_dim: int,
        num_seeds: int = 4,
        dim: int = 128,
        num_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_seeds = num_seeds
        self.out_dim = num_seeds * dim
        self.inp = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.seeds = nn.Parameter(torch.randn(1, num_seeds, dim) / math.sqrt(dim))
        self.mha = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ln0 = nn.LayerNorm(dim)
        self.ln1 = nn.LayerNorm(dim)
        self.rff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, D, H, W), mask (B, H, W) bool|None -> (B, num_seeds * dim)."""
        pix, valid = _pixels_and_mask(x, mask)
        kv = self.inp(pix)
        seeds = self.seeds.expand(pix.shape[0], -1, -1)
        att, _ = self.mha(seeds, kv, kv, key_padding_mask=~valid, need_weights=False)
        hid = self.ln0(seeds + att)
        out = self.ln1(hid + self.rff(hid))
        return out.flatten(1)


class LowRankBilinearHead(nn.Module):
    """Learned low-rank covariance (second-order) pooling.

    Parameters
    ----------
    in_dim : int
    rank : int
        r; out_dim = r + r(r+1)/2.
    normalize : bool
        Signed square root then L2 normalisation of the output (bilinear-CNN style).
    """

    def __init__(self, in_dim: int, rank: int = 16, normalize: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.rank = rank
        self.normalize = normalize
        self.proj = nn.Linear(in_dim, rank, bias=False)
        self.out_dim = rank + rank * (rank + 1) // 2
        iu = torch.triu_indices(rank, rank)
        self.register_buffer("_flat", iu[0] * rank + iu[1], persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, D, H, W), mask (B, H, W) bool|None -> (B, r + r(r+1)/2)."""
        pix, valid = _pixels_and_mask(x, mask)
        z = self.proj(pix)
        z = torch.where(valid[:, :, None], z, z.new_zeros(()))
        mu = _masked_mean(z, valid)
        c = torch.where(valid[:, :, None], z - mu[:, None, :], z.new_zeros(()))
        n = valid.sum(1).to(z.dtype)
        cov = torch.bmm(c.transpose(1, 2), c) / (n - 1).clamp_min(1)[:, None, None]
        out = torch.cat([mu, cov.flatten(1)[:, self._flat]], dim=1)
        if self.normalize:
            out = torch.sign(out) * torch.sqrt(out.abs() + 1e-12)
            out = F.normalize(out, dim=1)
        return out


class PooledClassifier(nn.Module):
    """A pooling head followed by a linear classifier: (B, D, H, W), mask -> logits (B, K)."""

    def __init__(self, head: nn.Module, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.head = head
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(head.out_dim, num_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.fc(self.drop(self.head(x, mask)))


#: Learnable pooling heads: name -> ``cls(in_dim, **kw)`` (the width is the module's ``out_dim``).
HEADS = Registry("head")
HEADS.add(
    "attention_mil",
    AttentionMILHead,
    description="gated attention-MIL pooling (Ilse et al. 2018); out_dim D or proj_dim",
)
HEADS.add("gem", GeMHead, description="learnable signed GeM, p = softplus(theta); out_dim D")
HEADS.add(
    "pma", PMAHead, description="pooling by multihead attention (Set Transformer); out_dim k * dim"
)
HEADS.add(
    "lowrank_bilinear",
    LowRankBilinearHead,
    description="learned low-rank second-order pooling; out_dim r + r(r+1)/2",
)


def build_head(name: str, in_dim: int, **kw) -> nn.Module:
    """Build a learnable pooling head by name.

    Parameters
    ----------
    name : a :data:`HEADS` name (``attention_mil``, ``gem``, ``pma``, ``lowrank_bilinear``)
    in_dim : int
        Embedding dimension D.
    **kw : head-specific arguments (see the classes).

    Returns
    -------
    nn.Module with ``forward(x (B, D, H, W), mask (B, H, W)|None) -> (B, out_dim)``.

    Raises
    ------
    UnknownNameError
        ``name`` is not a head (a ``ValueError``; the message lists the valid names).
    """
    return HEADS.build(name, in_dim=in_dim, **kw)


__all__ = [
    "HEADS",
    "AttentionMILHead",
    "GeMHead",
    "LowRankBilinearHead",
    "PMAHead",
    "PooledClassifier",
    "build_head",
]
