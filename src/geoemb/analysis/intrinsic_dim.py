"""Intrinsic-dimension estimators, PCA spectra and bit-balance statistics (numpy + sklearn).

Definitions follow scikit-dimension (``reference/compression_retrieval.md`` §9), which the tests use
as the oracle:

- :func:`mle_id` — Levina–Bickel MLE with neighbourhood size ``n_neighbors`` (excluding the point):
  ``d_i = (k − 1) / Σ_{j≤k} log(R_k / R_j)``; aggregated by the harmonic mean ``1/mean(1/d_i)``
  (``comb="mle"``, MacKay–Ghahramani), or ``"mean"`` / ``"median"``. (skdim's ``MLE(K=…)`` does
  not set the neighbourhood size; pass ``n_neighbors``.)
- :func:`twonn_id` — Facco et al. TwoNN: ``μ_i = r₂/r₁``, keep the smallest ``⌊N(1−f)⌋``,
  ``F_i = i/N``, least squares of ``−log(1−F)`` on ``log μ`` through the origin.
- :func:`lpca_id` — global PCA estimator (``ver="FO"``: #{λ > α·λ₁}; ``"ratio"``,
  ``"participation_ratio"``, ``"maxgap"``, ``"Kaiser"``).
- :func:`local_pca_id` — local PCA: the global estimator on each point's ``n_neighbors`` nearest
  neighbours (point excluded), then mean/median (skdim ``lPCA().fit_pw``).
- :func:`pca_spectrum` — cumulative explained-variance ratio at given component counts.
- :func:`dimension_balance` — mean over dimensions of ``|P(bit = 1) − 1/2|`` for binary codes
  (our reading of the blog's "average imbalance"; 0 = perfectly balanced).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors


def _as_2d(X, field: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3:
        raise ValueError(f"{field} must be (N >= 3, D), got shape {X.shape}")
    return X


def knn_distances(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances/indices ``(N, k)`` to the ``k`` nearest neighbours, excluding self."""
    X = _as_2d(X)
    if k >= X.shape[0]:
        raise ValueError(f"k={k} neighbours needs more than {X.shape[0]} rows")
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    return nn.kneighbors()


def mle_id(
    X: np.ndarray,
    n_neighbors: int = 20,
    comb: str = "mle",
    unbiased: bool = False,
    return_pointwise: bool = False,
):
    """Levina–Bickel MLE intrinsic dimension (skdim ``MLE().fit(X, n_neighbors=k, comb=comb)``)."""
    dists, _ = knn_distances(X, n_neighbors)
    if np.any(dists[:, 0] <= 0):
        raise ValueError("mle_id: duplicate rows (zero neighbour distance); deduplicate first")
    k = dists.shape[1]
    kfac = k - 2 if unbiased else k - 1
    rk = dists[:, -1:]
    pw = kfac / np.sum(np.log(rk / dists), axis=1)
    if comb == "mle":
        d = 1.0 / np.mean(1.0 / pw)
    elif comb == "mean":
        d = float(np.mean(pw))
    elif comb == "median":
        d = float(np.median(pw))
    else:
        raise ValueError(f"comb must be 'mle', 'mean' or 'median', got {comb!r}")
    return (float(d), pw) if return_pointwise else float(d)


def twonn_id(X: np.ndarray, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension (skdim ``TwoNN(discard_fraction).fit(X).dimension_``)."""
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    dists, _ = knn_distances(X, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = dists[:, 1] / dists[:, 0]
    mu = mu[np.isfinite(mu)]
    n = len(mu)
    n_keep = int(n * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError("twonn_id: fewer than 2 points left after discarding")
    mu = np.sort(mu)[:n_keep]
    femp = np.arange(1, n_keep + 1) / n
    x = np.log(mu)
    y = -np.log(1 - femp)
    return float(np.dot(x, y) / np.dot(x, x))


def _spectrum_rule(ev: np.ndarray, ver: str, alpha: float) -> float:
    ev = np.asarray(ev, dtype=np.float64)
    if ver == "FO":
        return float(np.sum(ev > alpha * ev[0]))
    if ver == "ratio":
        cs = np.cumsum(ev)
        return float(np.sum(cs / cs[-1] < alpha) + 1)
    if ver == "participation_ratio":
        return float(ev.sum() ** 2 / np.sum(ev**2))
    if ver == "maxgap":
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.nanargmax(ev[:-1] / ev[1:]) + 1)
    if ver == "Kaiser":
        return float(np.sum(ev > ev.mean()))
    raise ValueError(f"lPCA ver must be FO|ratio|participation_ratio|maxgap|Kaiser, got {ver!r}")


def pca_eigenvalues(X: np.ndarray) -> np.ndarray:
    """Sorted (descending) covariance eigenvalues (``ddof=1``), as ``PCA().explained_variance_``."""
    X = _as_2d(X)
    Xc = X - X.mean(axis=0)
    if X.shape[0] > 2 * X.shape[1]:  # tall: eigenvalues of the D x D covariance are cheaper
        ev = np.linalg.eigvalsh(Xc.T @ Xc / (X.shape[0] - 1))[::-1]
        return np.clip(ev, 0, None)
    s = np.linalg.svd(Xc, compute_uv=False)
    return s**2 / (X.shape[0] - 1)


def lpca_id(X: np.ndarray, ver: str = "FO", alpha: float | None = None) -> float:
    """Global PCA ID (skdim ``lPCA(ver=…).fit(X)``). ``alpha``: FO 0.05 / ratio 0.05 by default."""
    a = 0.05 if alpha is None else alpha
    return _spectrum_rule(pca_eigenvalues(X), ver, a)


def local_pca_id(
    X: np.ndarray,
    n_neighbors: int = 100,
    ver: str = "FO",
    alpha: float | None = None,
    comb: str = "mean",
    batch: int = 256,
    return_pointwise: bool = False,
):
    """Local PCA ID: :func:`lpca_id` on each point's kNN (point excluded), then mean/median.

    Eigenvalues are computed from the ``k × k`` Gram matrix of each centred neighbourhood (same
    non-zero spectrum as the ``D × D`` covariance), batched.
    """
    X = _as_2d(X)
    a = 0.05 if alpha is None else alpha
    _, idx = knn_distances(X, n_neighbors)
    pw = np.empty(X.shape[0])
    for s in range(0, X.shape[0], batch):
        nb = X[idx[s : s + batch]]  # (B, k, D)
        nb = nb - nb.mean(axis=1, keepdims=True)
        gram = nb @ nb.transpose(0, 2, 1) / (n_neighbors - 1)
        ev = np.linalg.eigvalsh(gram)[:, ::-1]
        ev = ev[:, : min(n_neighbors, X.shape[1])]
        pw[s : s + batch] = [_spectrum_rule(e, ver, a) for e in ev]
    if comb == "mean":
        d = float(np.mean(pw))
    elif comb == "median":
        d = float(np.median(pw))
    else:
        raise ValueError(f"comb must be 'mean' or 'median', got {comb!r}")
    return (d, pw) if return_pointwise else d


def pca_spectrum(
    X: np.ndarray, components: Sequence[int] = (4, 8, 16, 32, 64, 256)
) -> dict[int, float]:
    """Cumulative explained-variance ratio of the top-k PCA components, for each k.

    Entries with ``k > min(N, D)`` are NaN (the blog's "—" cells).
    """
    ev = pca_eigenvalues(X)
    cum = np.cumsum(ev) / ev.sum()
    d = min(X.shape)
    return {
        int(k): (float(cum[k - 1]) if k <= min(d, len(cum)) else float("nan")) for k in components
    }


def dimension_balance(bits: np.ndarray) -> float:
    """Mean over dimensions of ``|P(bit=1) − 1/2|`` for ``(N, D)`` {0,1} bits (0 = balanced)."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"bits must be (N, D), got shape {bits.shape}")
    return float(np.mean(np.abs(bits.mean(axis=0) - 0.5)))


def bit_entropy(bits: np.ndarray) -> float:
    """Mean per-dimension binary entropy (bits) of ``(N, D)`` {0,1} codes."""
    p = np.clip(np.asarray(bits).mean(axis=0), 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


def intrinsic_dimension_report(
    X: np.ndarray,
    n_neighbors: int = 20,
    local_neighbors: int = 100,
    max_rows: int | None = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """MLE, TwoNN, global lPCA (FO, participation ratio) and local PCA on (a sample of) ``X``."""
    X = _as_2d(X)
    if max_rows is not None and X.shape[0] > max_rows:
        X = X[np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))]
    X = np.unique(X, axis=0)
    ln = min(local_neighbors, X.shape[0] - 1)
    return {
        "id_mle": mle_id(X, n_neighbors),
        "id_twonn": twonn_id(X),
        "id_lpca_fo": lpca_id(X, "FO"),
        "id_participation_ratio": lpca_id(X, "participation_ratio"),
        "id_local_pca": local_pca_id(X, ln),
        "id_rows": float(X.shape[0]),
    }
