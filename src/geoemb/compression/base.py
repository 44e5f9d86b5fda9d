"""Common base class of every compressor (quantizer, reducer, rotation, pipeline).

A :class:`Compressor` maps float vectors ``X (N, D)`` to compact codes and back:

- :meth:`Compressor.fit` learns parameters on **training rows only** (``X_train (N, D)``).
- :meth:`Compressor.encode` turns ``(N, D)`` floats into codes (dtype/shape documented per class;
  binary codes are ``(N, ceil(D/8))`` uint8 in ``np.packbits`` layout).
- :meth:`Compressor.decode` turns codes back into ``(N, D)`` float32 vectors in the input space.
- :meth:`Compressor.decode_features` returns the vectors a probe should see: identical to
  :meth:`decode` except for pipelines with a reducer, where it returns the reduced ``(N, k)`` space
  (the blog evaluates ``PCA(64)+int8`` on the 64-d vectors, not on a 1024-d reconstruction).
"""

from __future__ import annotations

import abc

import numpy as np

from geoemb.errors import GeoembError, InputError


class NotFittedError(RuntimeError):
    """Raised when encode/decode is called before :meth:`Compressor.fit`."""


class InfeasibleConfigError(GeoembError, ValueError):
    """A compressor cannot run on data of this shape *by construction* (more reducer components
    than dimensions, PQ with fewer training rows than centroids or ``D % M != 0``…).

    Raised only by :meth:`Compressor.check_feasible`, from the shape ``(n_rows, dim)`` alone and
    before any fitting, so evaluators can skip such a config with its reason (the blog's "—"
    cells) while every other error still fails the run.
    """


class ConfigFailedError(GeoembError, RuntimeError):
    """A compression config failed (unexpectedly) or rows of failed configs are present."""


class Compressor(abc.ABC):
    """Abstract compressor. Subclasses implement ``_fit``, ``_encode``, ``_decode``.

    Attributes
    ----------
    name : str
        Registry name (e.g. ``"int8"``, ``"pca64+int8"``).
    dim : int | None
        Input dimension ``D`` seen at fit time (``None`` before fit).
    """

    #: True when codes are sign bits (packed, ``np.packbits`` layout) usable with Hamming distance.
    hamming_compatible: bool = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.dim: int | None = None
        self._fitted = False

    # ------------------------------------------------------------------ public API
    def fit(self, X_train: np.ndarray) -> Compressor:
        """Learn parameters from training rows ``X_train (N, D)``; returns ``self``."""
        X = self._as_2d(X_train, "X_train", check_dim=False)
        if X.shape[0] < 1:
            raise ValueError(
                f"{self.name}: X_train must have at least one row, got shape {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise InputError(f"{self.name}: X_train contains NaN or inf values")
        self.check_feasible(X.shape[0], X.shape[1])
        self.dim = int(X.shape[1])
        self._fit(X)
        self._fitted = True
        return self

    def check_feasible(self, n_rows: int, dim: int) -> None:
        """Raise :class:`InfeasibleConfigError` if this compressor cannot be fitted on
        ``n_rows`` training rows of dimension ``dim`` (a property of the shape, not the values).

        :meth:`fit` calls it first; call it yourself to decide before any work.
        """
        reason = self._infeasible(int(n_rows), int(dim))
        if reason is not None:
            raise InfeasibleConfigError(f"{self.name}: {reason}")

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Encode ``X (N, D)`` into codes (``(N, code_width)``, dtype per compressor)."""
        self._check_fitted("encode")
        X = self._as_2d(X, "X")
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():  # NaN would become an arbitrary code (int8: clip(NaN) -> 0), silently
            raise InputError(
                f"{self.name}: X has NaN/inf values (first: row {int(np.flatnonzero(bad)[0])}); "
                "non-finite embeddings cannot be encoded"
            )
        return self._encode(X)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Decode codes into ``(N, D)`` float32 reconstructions in the input space."""
        self._check_fitted("decode")
        codes = self._check_codes(codes)
        return np.ascontiguousarray(self._decode(codes), dtype=np.float32)

    def decode_features(self, codes: np.ndarray) -> np.ndarray:
        """Decode into the feature space probes use: ``(N, out_dim)`` float32 (see module doc)."""
        return self.decode(codes)

    @property
    def out_dim(self) -> int:
        """Dimension of :meth:`decode_features` output."""
        self._check_fitted("out_dim")
        return int(self.dim)  # type: ignore[arg-type]

    @property
    def bytes_per_vector(self) -> float:
        """Payload bytes per encoded vector (codes + per-vector side information such as norms)."""
        self._check_fitted("bytes_per_vector")
        return float(self._bytes_per_vector())

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self._fitted else "unfitted"
        return f"{type(self).__name__}(name={self.name!r}, {state})"

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def _fit(self, X: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _encode(self, X: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _decode(self, codes: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _bytes_per_vector(self) -> float: ...

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        """Why ``(n_rows, dim)`` training data cannot work by construction (``None``: it can)."""
        return None

    def _code_shape(self) -> tuple[int, np.dtype]:
        """(width, dtype) of one code row, used to validate ``decode`` input."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self, what: str) -> None:
        if not self._fitted:
            raise NotFittedError(
                f"compressor {self.name!r}: call fit(X_train) before {what}() "
                "(parameters are learned on training rows only)"
            )

    def _as_2d(self, X: np.ndarray, field: str, check_dim: bool = True) -> np.ndarray:
        if hasattr(X, "detach"):  # torch tensor
            X = X.detach().cpu().numpy()
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(
                f"{self.name}: {field} must be a 2-D (N, D) array, got shape {X.shape}"
            )
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{self.name}: {field} must be numeric, got dtype {X.dtype}")
        if check_dim and self.dim is not None and X.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: {field} has dimension {X.shape[1]} but the compressor was fitted "
                f"on D={self.dim}"
            )
        return np.ascontiguousarray(X, dtype=np.float32)

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        width, dtype = self._code_shape()
        if codes.ndim != 2 or codes.shape[1] != width:
            raise ValueError(
                f"{self.name}: codes must have shape (N, {width}) for D={self.dim}, "
                f"got {codes.shape}"
            )
        if codes.dtype != dtype:
            raise ValueError(f"{self.name}: codes must have dtype {dtype}, got {codes.dtype}")
        return codes
