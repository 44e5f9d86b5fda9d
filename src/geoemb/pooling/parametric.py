"""Parametric pooling fitted on the train split: ``pca_64`` and ``bovw_128``.

Reference (``reference/geopool.md`` section 6):

* ``pca_64``: mean-pool every patch, fit a 64-component PCA on the **train** mean vectors,
  transform (centred projection, no whitening).  The reference uses sklearn's IncrementalPCA
  (batch 512); we solve the same problem exactly with one SVD in float64 and use sklearn's
  sign convention (the largest-|.| entry of each component is positive).
* ``bovw_128``: mini-batch k-means with 128 clusters, one pass over the train pixels: images in
  groups of 256, each group's pixels concatenated and shuffled, fed in chunks of 10,000; the
  first chunk initialises the centroids with greedy k-means++; each chunk is one mini-batch
  step (per-centre running means with cumulative counts, reassignment of centres whose count is
  below 1% of the largest); then every pixel is hard-assigned to its nearest centroid and the
  patch descriptor is the L1-normalised histogram ``bincount(labels, 128) / max(sum, 1)``.

The fitted state is a small picklable dataclass of tensors with ``.to(device)``; fitting and
pooling run on the device of the inputs.
Names (``pca_<k>``, ``bovw_<K>``) are resolved only in :mod:`geoemb.pooling.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from geoemb.pooling.functional import (
    as_raster,
    check_empty,
    check_mask,
    pool_training_free_many,
)


@dataclass
class PCAState:
    """Fitted PCA pooling.

    Attributes
    ----------
    mean : Tensor (D,)  train mean of the patch mean vectors
    components : Tensor (k, D)  principal axes (rows), sklearn sign convention
    explained_variance : Tensor (k,)
    name : registry key
    """

    mean: Tensor
    components: Tensor
    explained_variance: Tensor
    name: str = "pca_64"

    def to(self, device: torch.device | str) -> PCAState:
        return replace(
            self,
            mean=self.mean.to(device),
            components=self.components.to(device),
            explained_variance=self.explained_variance.to(device),
        )

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])


@dataclass
class BoVWState:
    """Fitted bag-of-visual-words pooling.

    Attributes
    ----------
    centroids : Tensor (K, D)
    counts : Tensor (K,)  cumulative mini-batch counts at the end of fitting
    name : registry key
    """

    centroids: Tensor
    counts: Tensor = field(default_factory=lambda: torch.zeros(0))
    name: str = "bovw_128"

    def to(self, device: torch.device | str) -> BoVWState:
        return replace(self, centroids=self.centroids.to(device), counts=self.counts.to(device))

    @property
    def out_dim(self) -> int:
        return int(self.centroids.shape[0])


# ----------------------------------------------------------------------------------------------
# batch iteration
# ----------------------------------------------------------------------------------------------
def _iter_batches(
    x_train: Tensor | Iterable, mask_train: Tensor | None, batch: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yield (x (b,D,H,W), mask (b,H,W)|None) from a tensor or an iterable of batches.

    An iterable may yield tensors, ``(x, mask)`` tuples or dicts with ``"x"``/``"mask"`` keys.
    """
    if isinstance(x_train, Tensor) or hasattr(x_train, "__array__"):
        x = as_raster(x_train, "x_train")
        m = check_mask(mask_train, x, "mask_train")
        for s in range(0, x.shape[0], batch):
            yield x[s : s + batch], None if m is None else m[s : s + batch]
        return
    if mask_train is not None:
        raise ValueError("fit_parametric: mask_train must be None when x_train is an iterable")
    for item in x_train:
        if isinstance(item, dict):
            xb, mb = item["x"], item.get("mask")
        elif isinstance(item, (tuple, list)):
            xb, mb = item[0], (item[1] if len(item) > 1 else None)
        else:
            xb, mb = item, None
        xb = as_raster(xb, "x_train batch")
        yield xb, check_mask(mb, xb, "mask_train batch")


def _pixels(x: Tensor, mask: Tensor | None) -> Tensor:
    """(b, D, H, W) -> (P, D) pixel rows in image, row, column order (valid pixels only)."""
    b, d, h, w = x.shape
    p = x.permute(0, 2, 3, 1).reshape(b * h * w, d)
    if mask is not None:
        p = p[mask.reshape(-1)]
    return p


# ----------------------------------------------------------------------------------------------
# PCA
# ----------------------------------------------------------------------------------------------
def fit_pca(
    x_train: Tensor | Iterable,
    mask_train: Tensor | None = None,
    n_components: int = 64,
    batch_size: int = 256,
) -> PCAState:
    """Fit PCA pooling on the train patches' mean vectors.

    Parameters
    ----------
    x_train : Tensor (N, D, H, W) or iterable of batches
    mask_train : bool Tensor (N, H, W), optional
    n_components : int
    batch_size : int
        Patches per mean-pooling step.

    Returns
    -------
    PCAState
    """
    means = [
        pool_training_free_many(xb, ["mean"], mask=mb)["mean"]
        for xb, mb in _iter_batches(x_train, mask_train, batch_size)
    ]
    if not means:
        raise ValueError("fit_parametric('pca'): x_train is empty")
    return fit_pca_vectors(torch.cat(means, 0), n_components)


def fit_pca_vectors(vectors: Tensor, n_components: int = 64) -> PCAState:
    """Fit PCA on already pooled vectors (N, D); exact SVD in float64."""
    v = vectors.to(torch.float64)
    n, d = v.shape
    if n_components > min(n, d):
        raise ValueError(
            f"fit_parametric('pca_{n_components}'): n_components={n_components} needs at least "
            f"that many train samples and dimensions, got N={n}, D={d} (the reference skips "
            "pca_64 when D < 64)"
        )
    mu = v.mean(0)
    _, s, vt = torch.linalg.svd(v - mu, full_matrices=False)
    idx = vt.abs().argmax(dim=1)
    signs = torch.sign(vt[torch.arange(vt.shape[0], device=vt.device), idx])
    signs[signs == 0] = 1
    vt = vt * signs[:, None]
    var = s**2 / max(n - 1, 1)
    dt = torch.float32 if vectors.dtype != torch.float64 else torch.float64
    return PCAState(
        mean=mu.to(dt),
        components=vt[:n_components].to(dt),
        explained_variance=var[:n_components].to(dt),
        name=f"pca_{n_components}",
    )


def transform_pca(
    x: Tensor, state: PCAState, mask: Tensor | None = None, empty: str = "raise"
) -> Tensor:
    """(B, D, H, W) -> (B, k): centred projection of the (masked) mean vectors."""
    m = pool_training_free_many(x, ["mean"], mask=mask, empty=empty)["mean"]
    return transform_pca_vectors(m, state)


def transform_pca_vectors(vectors: Tensor, state: PCAState) -> Tensor:
    """(N, D) mean vectors -> (N, k): centred projection in float64, cast back to their dtype."""
    if vectors.shape[1] != state.mean.shape[0]:
        raise ValueError(
            f"pool({state.name!r}): x has D={vectors.shape[1]} but the state was fit with "
            f"D={state.mean.shape[0]}"
        )
    st = state.to(vectors.device)
    out = (vectors.to(torch.float64) - st.mean.to(torch.float64)) @ st.components.to(
        torch.float64
    ).T
    return out.to(vectors.dtype)


# ----------------------------------------------------------------------------------------------
# k-means / BoVW
# ----------------------------------------------------------------------------------------------
def assign(pixels: Tensor, centroids: Tensor) -> Tensor:
    """Nearest-centroid labels (squared Euclidean), ties to the lowest index.

    Exact-arithmetic labels (see :mod:`geoemb.pooling._bovw`): the rule of ``np.argmin`` and of
    sklearn's ``KMeans.predict``, without their float32 rounding on near-equidistant pixels.

    Parameters
    ----------
    pixels : Tensor (P, D), finite
    centroids : Tensor (K, D)

    Returns
    -------
    LongTensor (P,)
    """
    c = centroids.detach().to(device=pixels.device, dtype=pixels.dtype)
    x = pixels.detach().T[None]  # (1, D, P) view, no copy
    from geoemb.pooling import _bovw  # numba, imported on first use

    if pixels.device.type == "cpu":
        lab, _, bad, _ = _bovw.assign_pixels(x.numpy(), c.numpy())
        labels, bad = torch.from_numpy(lab[0]), bool(bad[0])
    else:
        labels, nonfinite = _bovw.assign_torch(x, c)
        labels, bad = labels[0], bool(nonfinite.any())
    if bad:
        raise ValueError("bovw: assign() got non-finite pixels (NaN/inf are invalid data)")
    return labels


def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared distances (P, M) between rows of a (P, D) and b (M, D), clamped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0)


def kmeans_plusplus(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii; ``2 + floor(ln k)`` local trials).

    Parameters
    ----------
    x : Tensor (P, D)
    k : int
    gen : CPU torch.Generator

    Returns
    -------
    Tensor (k, D)
    """
    p, d = x.shape
    dev = x.device
    n_trials = 2 + int(math.log(k))
    centers = x.new_empty((k, d))
    first = int(torch.randint(p, (1,), generator=gen))
    centers[0] = x[first]
    closest = _sq_dist(x[first : first + 1], x)[0].to(torch.float64)
    pot = closest.sum()
    for c in range(1, k):
        r = torch.rand(n_trials, generator=gen, dtype=torch.float64).to(dev) * pot
        cand = torch.searchsorted(torch.cumsum(closest, 0), r).clamp_max(p - 1)
        d_cand = _sq_dist(x[cand], x).to(torch.float64)  # (trials, P)
        d_cand = torch.minimum(closest[None, :], d_cand)
        pots = d_cand.sum(1)
        best = int(pots.argmin())
        closest, pot = d_cand[best], pots[best]
        centers[c] = x[cand[best]]
    return centers


class MiniBatchKMeansTorch:
    """One-pass mini-batch k-means (Sculley 2010, sklearn ``partial_fit`` semantics).

    Parameters
    ----------
    n_clusters : int
    seed : int
    reassignment_ratio : float
        Centres whose cumulative count is below this fraction of the largest are moved to random
        pixels of the current chunk (every chunk once >= 10 * n_clusters pixels were seen).
    """

    def __init__(self, n_clusters: int = 128, seed: int = 0, reassignment_ratio: float = 0.01):
        self.k = n_clusters
        self.gen = torch.Generator().manual_seed(seed)
        self.ratio = reassignment_ratio
        self.centers: Tensor | None = None
        self.counts: Tensor | None = None
        self._since = 0

    def partial_fit(self, x: Tensor) -> MiniBatchKMeansTorch:
        """One mini-batch step on pixels x (P, D) (initialises on the first call)."""
        p = x.shape[0]
        if self.centers is None:
            if p < self.k:
                raise ValueError(
                    f"fit_parametric('bovw_{self.k}'): the first chunk has {p} pixels, fewer than "
                    f"n_clusters={self.k}"
                )
            self.centers = kmeans_plusplus(x, self.k, self.gen)
            self.counts = torch.zeros(self.k, dtype=torch.float64, device=x.device)
        labels = assign(x, self.centers)
        n_c = torch.bincount(labels, minlength=self.k).to(torch.float64)
        sums = torch.zeros_like(self.centers, dtype=torch.float64).index_add_(
            0, labels, x.to(torch.float64)
        )
        has = n_c > 0
        old = self.centers.to(torch.float64) * self.counts[:, None]
        new = (old + sums) / (self.counts + n_c).clamp_min(1)[:, None]
        self.centers = torch.where(has[:, None], new, self.centers.to(torch.float64)).to(x.dtype)
        self.counts = self.counts + n_c
        self._since += p
        if self.ratio > 0 and (bool((self.counts == 0).any()) or self._since >= 10 * self.k):
            self._since = 0
            to_re = self.counts < self.ratio * self.counts.max()
            n_re = int(to_re.sum())
            if n_re > 0.5 * p:
                idx = torch.nonzero(to_re).flatten()
                keep = torch.randperm(idx.numel(), generator=self.gen)[: int(0.5 * p)]
                to_re = torch.zeros_like(to_re)
                to_re[idx[keep.to(idx.device)]] = True
                n_re = int(to_re.sum())
            if n_re:
                pick = torch.randperm(p, generator=self.gen)[:n_re].to(x.device)
                self.centers[to_re] = x[pick]
                self.counts[to_re] = self.counts[~to_re].min()
        return self


def fit_bovw(
    x_train: Tensor | Iterable,
    mask_train: Tensor | None = None,
    n_clusters: int = 128,
    seed: int = 0,
    image_batch_size: int = 256,
    batch_size: int = 10_000,
) -> BoVWState:
    """Fit BoVW centroids with one shuffled mini-batch k-means pass over the train pixels.

    Parameters
    ----------
    x_train : Tensor (N, D, H, W) or iterable of batches
    mask_train : bool Tensor (N, H, W), optional; only valid pixels are used
    n_clusters : int
    seed : int
        Seeds the pixel shuffle, the k-means++ init and reassignments (the reference used 42).
    image_batch_size : int
        Images whose pixels are pooled and shuffled together (reference 256).
    batch_size : int
        Pixels per mini-batch step (reference 10,000).

    Returns
    -------
    BoVWState
    """
    km = MiniBatchKMeansTorch(n_clusters, seed=seed)
    shuffle_gen = torch.Generator().manual_seed(seed)
    for xb, mb in _iter_batches(x_train, mask_train, image_batch_size):
        pix = _pixels(xb, mb)
        if pix.shape[0] == 0:
            continue
        perm = torch.randperm(pix.shape[0], generator=shuffle_gen).to(pix.device)
        pix = pix[perm]
        for s in range(0, pix.shape[0], batch_size):
            km.partial_fit(pix[s : s + batch_size])
    if km.centers is None:
        raise ValueError("fit_parametric('bovw'): x_train has no valid pixel")
    return BoVWState(
        centroids=km.centers.clone(), counts=km.counts.clone(), name=f"bovw_{n_clusters}"
    )


def transform_bovw(
    x: Tensor,
    state: BoVWState,
    mask: Tensor | None = None,
    empty: str = "raise",
    chunk_size: int | None = None,
) -> Tensor:
    """(B, D, H, W) -> (B, K) L1-normalised histograms of nearest-centroid labels.

    Labels as :func:`assign` (exact nearest centroid, ties to the lowest index). On CPU one fused
    numba pass per block follows a BLAS ``C @ X`` on the band-major pixels (no transpose copy);
    elsewhere torch ops. A sample with a valid non-finite pixel gets a NaN row.
    """
    x = as_raster(x)
    mask = check_mask(mask, x)
    bsz, d, h, w = x.shape
    cen = state.centroids.detach().to(device=x.device, dtype=x.dtype)
    k = cen.shape[0]
    if cen.shape[1] != d:
        raise ValueError(
            f"pool({state.name!r}): x has D={d} but the state was fit with D={cen.shape[1]}"
        )
    if not bool(torch.isfinite(cen).all()):
        raise ValueError(f"pool({state.name!r}): the state's centroids are not all finite")
    n = h * w
    xv = x.detach().reshape(bsz, d, n)
    mv = None if mask is None else mask.reshape(bsz, n)
    from geoemb.pooling import _bovw  # numba, imported on first use

    if x.device.type == "cpu":
        _, counts_np, bad_np, _ = _bovw.assign_pixels(
            xv.numpy(), cen.numpy(), None if mv is None else mv.numpy()
        )
        counts, bad = torch.from_numpy(counts_np).to(x.dtype), torch.from_numpy(bad_np)
    else:
        step = chunk_size or max(1, (2**23) // max(n * k, 1))
        counts = x.new_zeros((bsz, k))
        bad = torch.zeros(bsz, dtype=torch.bool, device=x.device)
        for s in range(0, bsz, step):
            labels, nonfinite = _bovw.assign_torch(xv[s : s + step], cen)
            wts = torch.ones_like(labels, dtype=x.dtype) if mv is None else mv[s : s + step]
            wts = wts.to(x.dtype)
            bad[s : s + step] = (nonfinite & (wts > 0)).any(1)
            counts[s : s + step].scatter_add_(1, labels, wts.masked_fill(nonfinite, 0))
    tot = counts.sum(1, keepdim=True)
    hist = counts / tot.clamp_min(1)
    if mask is not None:
        empty_rows = check_empty(mv.sum(1), empty)
        if empty_rows is not None:
            hist = torch.where(empty_rows[:, None], hist.new_full((), math.nan), hist)
    if bool(bad.any()):
        hist = torch.where(bad[:, None], hist.new_full((), math.nan), hist)
    return hist
