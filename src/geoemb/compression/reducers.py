"""Dimensionality reducers (fit on training rows only) and reducer+quantizer pipelines.

A reducer is itself a :class:`~geoemb.compression.base.Compressor` whose codes are the reduced
float32 vectors ``(N, k)`` (``4·k`` bytes). ``decode`` maps back to ``(N, D)`` (PCA/SVD inverse,
random-projection pseudo-inverse, train means for dropped features); ``decode_features`` returns the
reduced ``(N, k)`` vectors, which is what probes use.

- ``pca<k>``: exact centred PCA (:func:`pca_basis`; equals ``sklearn.decomposition.PCA(k)``).
- ``svd<k>``: ``sklearn.decomposition.TruncatedSVD(k)`` (no centring).
- ``rp<k>``: ``sklearn.random_projection.GaussianRandomProjection(k)``.
- ``topvar<k>``: keep the ``k`` dims with the largest train variance (geoemb's "feature selection").
- ``randsel<k>``: keep ``k`` random dims (baseline for feature selection).
"""

from __future__ import annotations

import hashlib

import numpy as np

from geoemb.compression.base import Compressor


class Reducer(Compressor):
    """Base class: subclasses implement ``_fit``, ``transform``, ``inverse_transform``."""

    kind = "reducer"

    def __init__(self, k: int, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or f"{self.kind}{k}")
        if int(k) < 1:
            raise ValueError(f"{self.name}: number of components must be >= 1, got {k}")
        self.k = int(k)
        self.seed = int(seed)

    #: whether the number of train rows also bounds ``k`` (PCA/SVD: rank <= min(N, D))
    rank_limited = False

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        if self.k > dim:
            return f"k={self.k} exceeds input dimension {dim}"
        if self.rank_limited and self.k > n_rows:
            return (
                f"k={self.k} components but only {n_rows} training rows (rank <= min(N, D); "
                f"X_train shape ({n_rows}, {dim}))"
            )
        return None

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(N, D)`` → ``(N, k)`` float32."""
        raise NotImplementedError

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """``(N, k)`` → ``(N, D)`` float32 reconstruction."""
        raise NotImplementedError

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.transform(X), dtype=np.float32)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self.inverse_transform(codes)

    def decode_features(self, codes: np.ndarray) -> np.ndarray:
        self._check_fitted("decode_features")
        return np.ascontiguousarray(self._check_codes(codes), dtype=np.float32)

    @property
    def out_dim(self) -> int:
        return self.k

    def _bytes_per_vector(self) -> float:
        return 4.0 * self.k

    def _code_shape(self):
        return self.k, np.dtype(np.float32)


_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def pca_basis(X: np.ndarray, center: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact full PCA of ``X (N, D)``: ``(mean (D,), components (r, D), explained_variance (r,))``.

    Components are sorted by decreasing variance with sklearn's sign convention (largest
    absolute loading positive). Computed in float64 from the ``D × D`` covariance (``eigh``) when
    ``N > 2D`` and from the thin SVD otherwise. Cached on the array's content (sha1), so sweeping
    ``pca128/pca64/pca32/…`` on the same train rows decomposes once. ``center=False`` gives the
    uncentred basis of truncated SVD (``explained_variance`` is then the mean squared projection).
    """
    X = np.ascontiguousarray(X)
    key = hashlib.sha1(X.view(np.uint8).reshape(-1)).hexdigest() + str(X.dtype) + str(center)
    n, d = X.shape
    if key in _CACHE:
        return _CACHE[key]
    Xd = X.astype(np.float64)
    mean = Xd.mean(axis=0) if center else np.zeros(d)
    Xc = Xd - mean
    if n > 2 * d:
        ev, vecs = np.linalg.eigh(Xc.T @ Xc / (n - 1))
        order = np.argsort(ev)[::-1]
        ev, comps = np.clip(ev[order], 0, None), vecs[:, order].T
    else:
        _, sv, comps = np.linalg.svd(Xc, full_matrices=False)
        ev = sv**2 / (n - 1)
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    _CACHE[key] = (mean, comps, ev)
    while len(_CACHE) > 4:
        _CACHE.pop(next(iter(_CACHE)))
    return mean, comps, ev


class PCAReducer(Reducer):
    """Centred PCA (exact, float64), components of :func:`pca_basis`."""

    kind = "pca"
    rank_limited = True

    def _fit(self, X: np.ndarray) -> None:
        mean, comps, ev = pca_basis(X)
        self.mean = mean
        self.components = comps[: self.k].copy()
        self.explained_variance = ev[: self.k].copy()
        self.explained_variance_ratio = ev[: self.k] / ev.sum()

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X.astype(np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return (np.asarray(Z, np.float64) @ self.components + self.mean).astype(np.float32)


class SVDReducer(PCAReducer):
    """Truncated SVD (no centring): top-``k`` right singular vectors of the train rows (exact)."""

    kind = "svd"

    def _fit(self, X: np.ndarray) -> None:
        mean, comps, ev = pca_basis(X, center=False)
        self.mean = mean  # zeros
        self.components = comps[: self.k].copy()
        self.explained_variance = ev[: self.k].copy()
        self.explained_variance_ratio = ev[: self.k] / ev.sum()


class RandomProjectionReducer(Reducer):
    kind = "rp"

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.random_projection import GaussianRandomProjection

        self.model = GaussianRandomProjection(
            n_components=self.k, random_state=self.seed, compute_inverse_components=True
        ).fit(X)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.transform(X), dtype=np.float32)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.inverse_transform(Z), dtype=np.float32)


class _SelectReducer(Reducer):
    def _select(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, X: np.ndarray) -> None:
        self.indices = np.sort(self._select(X)).astype(np.intp)
        self.fill = X.mean(axis=0, dtype=np.float64).astype(np.float32)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.indices].astype(np.float32)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        out = np.repeat(self.fill[None, :], Z.shape[0], axis=0)
        out[:, self.indices] = Z
        return out


class TopVarianceSelector(_SelectReducer):
    """Keep the ``k`` highest-variance train dimensions (stable order on ties)."""

    kind = "topvar"

    def _select(self, X: np.ndarray) -> np.ndarray:
        var = X.var(axis=0, dtype=np.float64)
        return np.argsort(-var, kind="stable")[: self.k]


class RandomSubsetSelector(_SelectReducer):
    """Keep ``k`` uniformly random dimensions (seeded)."""

    kind = "randsel"

    def _select(self, X: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.seed).choice(X.shape[1], self.k, replace=False)


class Pipeline(Compressor):
    """``reducer`` then ``quantizer`` (e.g. ``pca64+int8``); both fit on train rows only.

    ``encode`` gives the quantizer's codes of the reduced vectors; ``decode_features`` gives the
    decoded reduced vectors ``(N, k)``; ``decode`` maps them back to ``(N, D)``.
    """

    def __init__(self, reducer: Reducer, quantizer: Compressor, name: str | None = None) -> None:
        super().__init__(name or f"{reducer.name}+{quantizer.name}")
        self.reducer = reducer
        self.quantizer = quantizer
        self.hamming_compatible = quantizer.hamming_compatible

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        reason = self.reducer._infeasible(n_rows, dim)
        if reason is None:
            reason = self.quantizer._infeasible(n_rows, self.reducer.k)
        return reason

    def _fit(self, X: np.ndarray) -> None:
        self.reducer.fit(X)
        self.quantizer.fit(self.reducer.transform(X))

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return self.quantizer.encode(self.reducer.transform(X))

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes)  # the quantizer validates

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self.reducer.inverse_transform(self.quantizer.decode(codes))

    def decode_features(self, codes: np.ndarray) -> np.ndarray:
        self._check_fitted("decode_features")
        return self.quantizer.decode_features(codes)

    @property
    def out_dim(self) -> int:
        return self.quantizer.out_dim

    def _bytes_per_vector(self) -> float:
        return self.quantizer.bytes_per_vector
