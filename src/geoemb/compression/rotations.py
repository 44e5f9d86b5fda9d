"""Random-rotation quantizers: blog ``rotate_affine``, paper TurboQuant, FAISS RaBitQ.

Two different things are called "TurboQuant" (``reference/compression_retrieval.md`` §4):

- :class:`RotateAffine` (``rotate_affine_int<b>``) is the blog / TerraBit code: a Haar rotation
  ``Q`` (QR of a Gaussian matrix with the sign fix), then the per-dimension **min–max affine**
  quantizer of :mod:`~geoemb.compression.quantizers` fitted on the rotated train rows.
  :class:`RotateSign` (``rotate_sign``) is TerraBit's ``turbo1``: sign bits of ``x @ Q``.
- :class:`TurboQuantMSE` (``turboquant_mse_<b>``) is the paper (Zandieh et al., arXiv:2504.19874,
  Alg. 1): store ``‖x‖``, rotate the unit vector, quantize every coordinate with a **fixed,
  data-oblivious Lloyd–Max codebook** for the coordinate density of a uniform point on
  ``S^{d-1}``. :class:`TurboQuantProd` (``turboquant_prod_<b>``, Alg. 2) uses ``b-1`` bits of
  TurboQuant-MSE plus a 1-bit QJL sketch of the residual, which makes inner products unbiased.
- :class:`RaBitQ` (``rabitq``) wraps FAISS ``IndexRaBitQ`` behind a ``RandomRotationMatrix``
  pre-transform (Gao & Long 2024); codes include FAISS' per-vector factors. Only 1-bit codes:
  FAISS's ``sa_decode`` ignores the extra bits of multi-bit RaBitQ codes.

Rotation matrices are generated once from ``seed`` at fit time and *stored* on the object (a seed
re-generated with another LAPACK build need not reproduce ``Q`` bit-exactly).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import gammaln

from geoemb.compression.base import Compressor
from geoemb.compression.bitpack import pack_bits, unpack_bits
from geoemb.compression.quantizers import AffineQuantizer, pack_uint, packed_width, unpack_uint


def haar_rotation(d: int, seed: int = 0) -> np.ndarray:
    """Haar-distributed orthogonal ``(d, d)`` float64 matrix: QR of N(0,1) with ``Q *= sign(diag R)``.

    Cached per ``(d, seed)`` within a process (a fresh copy is returned).
    """
    return _haar_cached(int(d), int(seed)).copy()


@functools.lru_cache(maxsize=16)
def _haar_cached(d: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((d, d))
    q, r = np.linalg.qr(z)
    return q * np.sign(np.diag(r))[None, :]


# ---------------------------------------------------------------------------- Lloyd–Max codebooks


def sphere_coordinate_pdf(x: np.ndarray, d: int) -> np.ndarray:
    """Density of one coordinate of a uniform point on ``S^{d-1}``:
    ``Γ(d/2)/(√π Γ((d-1)/2)) (1 - x²)^{(d-3)/2}`` on ``[-1, 1]``."""
    x = np.asarray(x, dtype=np.float64)
    logc = gammaln(d / 2) - 0.5 * np.log(np.pi) - gammaln((d - 1) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.exp(logc + (d - 3) / 2 * np.log1p(-(x**2)))
    return np.where(np.abs(x) < 1, out, 0.0)


@functools.lru_cache(maxsize=64)
def lloyd_max_codebook(d: int, bits: int, grid: int = 100_001, iters: int = 2000) -> tuple:
    """Lloyd–Max (1-D continuous k-means) codebook for :func:`sphere_coordinate_pdf` at dim ``d``.

    Returns ``(levels (2^b,), thresholds (2^b - 1,), mse_per_coordinate)``, levels sorted ascending
    and symmetric about 0. Solved numerically on a dense grid (``d >= 3``).
    """
    if d < 3:
        raise ValueError(f"TurboQuant codebook needs d >= 3, got d={d}")
    if not 1 <= bits <= 8:
        raise ValueError(f"TurboQuant bits must be in 1..8, got {bits}")
    half = min(1.0, 14.0 / np.sqrt(d))
    x = np.linspace(-half, half, grid)
    w = sphere_coordinate_pdf(x, d)
    w /= w.sum()
    n = 1 << bits
    sigma = 1.0 / np.sqrt(d)
    # initialise at Gaussian quantile midpoints
    from scipy.stats import norm

    levels = norm.ppf((np.arange(n) + 0.5) / n) * sigma
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwx = np.concatenate([[0.0], np.cumsum(w * x)])
    for _ in range(iters):
        thr = (levels[1:] + levels[:-1]) / 2
        edges = np.concatenate([[0], np.searchsorted(x, thr), [grid]])
        mass = cw[edges[1:]] - cw[edges[:-1]]
        first = cwx[edges[1:]] - cwx[edges[:-1]]
        new = np.where(mass > 0, first / np.maximum(mass, 1e-300), levels)
        new = (new - new[::-1]) / 2  # enforce symmetry
        if np.max(np.abs(new - levels)) < 1e-9 * sigma:
            levels = new
            break
        levels = new
    thr = (levels[1:] + levels[:-1]) / 2
    idx = np.searchsorted(thr, x)
    mse = float(np.sum(w * (x - levels[idx]) ** 2))
    return levels.astype(np.float64), thr.astype(np.float64), mse


def _norm_bytes(v: np.ndarray) -> np.ndarray:
    """``(N,)`` float → ``(N, 4)`` uint8 (little-endian float32)."""
    return np.ascontiguousarray(v.astype("<f4")).view(np.uint8).reshape(-1, 4)


def _bytes_norm(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f4").reshape(-1).astype(np.float32)


# ---------------------------------------------------------------------------- blog variants


class RotateAffine(Compressor):
    """Blog/TerraBit "TurboQuant": ``x @ Q`` then per-dim min–max affine ``bits``-bit quantizer.

    Codes as :class:`~geoemb.compression.quantizers.AffineQuantizer`; decode ``dequant(q) @ Qᵀ``.
    """

    def __init__(self, bits: int = 4, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or f"rotate_affine_int{bits}")
        self.bits, self.seed = int(bits), int(seed)
        self.affine = AffineQuantizer(self.bits)

    def _fit(self, X: np.ndarray) -> None:
        self.Q = haar_rotation(X.shape[1], self.seed).astype(np.float32)
        self.affine.fit(X @ self.Q)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return self.affine.encode(X @ self.Q)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self.affine.decode(codes) @ self.Q.T

    def _bytes_per_vector(self) -> float:
        return self.affine.bytes_per_vector

    def _code_shape(self):
        return self.affine._code_shape()


class RotateSign(Compressor):
    """TerraBit ``turbo1``: packed sign bits of ``x @ Q``; decode ``sign(x @ Q) @ Qᵀ``."""

    hamming_compatible = True

    def __init__(self, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or "rotate_sign")
        self.seed = int(seed)

    def _fit(self, X: np.ndarray) -> None:
        self.Q = haar_rotation(X.shape[1], self.seed).astype(np.float32)
        self.p_one = ((X @ self.Q) > 0).mean(axis=0)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return pack_bits((X @ self.Q) > 0)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        s = unpack_bits(codes, self.dim).astype(np.float32) * 2 - 1
        return s @ self.Q.T

    def _bytes_per_vector(self) -> float:
        return float((self.dim + 7) // 8)

    def _code_shape(self):
        return (self.dim + 7) // 8, np.dtype(np.uint8)


# ---------------------------------------------------------------------------- paper variants


class TurboQuantMSE(Compressor):
    """Paper TurboQuant_mse (Alg. 1), ``bits`` per coordinate + the float32 norm.

    Encode: ``n = ‖x‖``, ``y = (x/n) @ Q``, ``idx_j = argmin_k |y_j - c_k|`` with the Lloyd–Max
    codebook ``c`` of :func:`lloyd_max_codebook` (data-oblivious: ``fit`` only draws ``Q``).
    Codes ``(N, ceil(D·b/8) + 4)`` uint8: packed indices (MSB-first) then the norm as float32
    (omitted with ``store_norm=False``, in which case decode returns unit vectors).
    """

    def __init__(
        self, bits: int = 4, seed: int = 0, store_norm: bool = True, name: str | None = None
    ) -> None:
        super().__init__(name or f"turboquant_mse_{bits}")
        if not 1 <= int(bits) <= 8:
            raise ValueError(f"{self.name}: bits must be in 1..8, got {bits}")
        self.bits, self.seed, self.store_norm = int(bits), int(seed), bool(store_norm)

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        return None if dim >= 3 else f"the Lloyd–Max codebook needs D >= 3, got D={dim}"

    def _fit(self, X: np.ndarray) -> None:
        d = X.shape[1]
        self.Q = haar_rotation(d, self.seed).astype(np.float32)
        levels, thr, self.coord_mse = lloyd_max_codebook(d, self.bits)
        self.levels = levels.astype(np.float32)
        self.thresholds = thr.astype(np.float32)

    def _unit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.linalg.norm(X.astype(np.float64), axis=1)
        u = X / np.where(n > 0, n, 1.0)[:, None]
        return u.astype(np.float32), n

    def indices(self, U: np.ndarray) -> np.ndarray:
        """Codebook indices ``(N, D)`` uint8 of unit rows ``U``."""
        return np.searchsorted(self.thresholds, U @ self.Q).astype(np.uint8)

    def reconstruct_unit(self, idx: np.ndarray) -> np.ndarray:
        """``(N, D)`` indices → reconstructed unit-norm-ish rows ``levels[idx] @ Qᵀ``."""
        return self.levels[idx] @ self.Q.T

    def _encode(self, X: np.ndarray) -> np.ndarray:
        u, n = self._unit(X)
        parts = [pack_uint(self.indices(u), self.bits)]
        if self.store_norm:
            parts.append(_norm_bytes(n))
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        w = packed_width(self.dim, self.bits)
        x = self.reconstruct_unit(unpack_uint(codes[:, :w], self.bits, self.dim))
        if self.store_norm:
            x = x * _bytes_norm(codes[:, w : w + 4])[:, None]
        return x

    def _bytes_per_vector(self) -> float:
        return float(packed_width(self.dim, self.bits) + 4 * self.store_norm)

    def _code_shape(self):
        return int(self._bytes_per_vector()), np.dtype(np.uint8)


class TurboQuantProd(Compressor):
    """Paper TurboQuant_prod (Alg. 2): ``b-1``-bit TurboQuant_mse + 1-bit QJL on the residual.

    For unit ``u``: ``ũ_mse`` from ``b-1`` bits (zero when ``b = 1``), ``r = u - ũ_mse``,
    ``qjl = sign(S r)`` with ``S ∈ R^{D×D}`` i.i.d. N(0,1), ``γ = ‖r‖``; decode
    ``ũ = ũ_mse + (√(π/2)/D)·γ·Sᵀ qjl`` (unbiased for inner products), times the stored norm.
    Codes: packed MSE indices | packed QJL bits | norm (f32) | γ (f32).
    """

    def __init__(self, bits: int = 4, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or f"turboquant_prod_{bits}")
        if not 1 <= int(bits) <= 9:
            raise ValueError(f"{self.name}: bits must be in 1..9, got {bits}")
        self.bits, self.seed = int(bits), int(seed)
        self.mse = TurboQuantMSE(self.bits - 1, seed=seed, store_norm=False) if bits > 1 else None

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        return None if self.mse is None else self.mse._infeasible(n_rows, dim)

    def _fit(self, X: np.ndarray) -> None:
        d = X.shape[1]
        if self.mse is not None:
            self.mse.fit(X)
        self.S = np.random.default_rng(self.seed + 1).standard_normal((d, d)).astype(np.float32)

    def _widths(self) -> tuple[int, int]:
        wm = packed_width(self.dim, self.bits - 1) if self.mse is not None else 0
        return wm, (self.dim + 7) // 8

    def _encode(self, X: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(X.astype(np.float64), axis=1)
        u = (X / np.where(n > 0, n, 1.0)[:, None]).astype(np.float32)
        parts = []
        if self.mse is not None:
            idx = self.mse.indices(u)
            parts.append(pack_uint(idx, self.bits - 1))
            r = u - self.mse.reconstruct_unit(idx)
        else:
            r = u
        parts.append(pack_bits((r @ self.S.T) >= 0))
        parts += [_norm_bytes(n), _norm_bytes(np.linalg.norm(r, axis=1))]
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        wm, wq = self._widths()
        d = self.dim
        u = np.zeros((codes.shape[0], d), np.float32)
        if self.mse is not None:
            u += self.mse.reconstruct_unit(unpack_uint(codes[:, :wm], self.bits - 1, d))
        signs = unpack_bits(codes[:, wm : wm + wq], d).astype(np.float32) * 2 - 1
        norm = _bytes_norm(codes[:, wm + wq : wm + wq + 4])
        gamma = _bytes_norm(codes[:, wm + wq + 4 : wm + wq + 8])
        u += (np.sqrt(np.pi / 2) / d) * gamma[:, None] * (signs @ self.S)
        return u * norm[:, None]

    def _bytes_per_vector(self) -> float:
        wm, wq = self._widths()
        return float(wm + wq + 8)

    def _code_shape(self):
        return int(self._bytes_per_vector()), np.dtype(np.uint8)


# ---------------------------------------------------------------------------- RaBitQ (FAISS)


class RaBitQ(Compressor):
    """FAISS ``IndexPreTransform(RandomRotationMatrix(D, D), IndexRaBitQ(D, L2, nb_bits))``.

    Codes are FAISS ``sa_encode`` rows (sign/multi-bit codes plus per-vector float factors);
    ``decode`` is FAISS ``sa_decode``. Requires faiss-cpu with RaBitQ (>= 1.11).
    """

    def __init__(self, bits: int = 1, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or ("rabitq" if bits == 1 else f"rabitq_{bits}"))
        if not 1 <= int(bits) <= 9:
            raise ValueError(f"{self.name}: bits must be in 1..9, got {bits}")
        if int(bits) > 1:
            # faiss-cpu 1.15.1: IndexRaBitQ(d, L2, nb_bits).sa_decode reconstructs from the sign
            # bits only (measured: identical reconstructions for nb_bits = 1, 2, 4, 8), so a
            # multi-bit config would report more bytes at 1-bit quality.
            raise ValueError(
                f"{self.name}: multi-bit RaBitQ is not supported: FAISS's IndexRaBitQ.sa_decode "
                "ignores the extra bits (faiss-cpu 1.15.1); use 'rabitq' (1 bit)"
            )
        self.bits, self.seed = int(bits), int(seed)

    def _fit(self, X: np.ndarray) -> None:
        import faiss

        if not hasattr(faiss, "IndexRaBitQ"):
            raise RuntimeError(f"{self.name}: this faiss build has no IndexRaBitQ (need >= 1.11)")
        d = X.shape[1]
        rot = faiss.RandomRotationMatrix(d, d)
        rot.init(self.seed)
        inner = faiss.IndexRaBitQ(d, faiss.METRIC_L2, self.bits)
        self.index = faiss.IndexPreTransform(rot, inner)
        self.index.train(np.ascontiguousarray(X, dtype=np.float32))
        self._rot, self._inner = rot, inner  # keep SWIG owners alive
        self.code_size = int(self.index.sa_code_size())

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return self.index.sa_encode(np.ascontiguousarray(X, dtype=np.float32))

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self.index.sa_decode(np.ascontiguousarray(codes))

    def _bytes_per_vector(self) -> float:
        return float(self.code_size)

    def _code_shape(self):
        return self.code_size, np.dtype(np.uint8)
