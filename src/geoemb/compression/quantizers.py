"""Scalar and vector quantizers (fit on training rows only).

Formulas follow ``reference/compression_retrieval.md`` §3 (TerraBit ``quantization.py``) with the
part-1 rule that calibration uses the *training* rows only:

- ``int8``: per-dim min–max affine, ``s_j = (max_j - min_j)/255`` (``1`` if zero), ``z_j = min_j``,
  ``q = clip(round((x - z)/s) - 128, -128, 127)`` (int8), ``x̂ = (q + 128)·s + z``.
- ``int{2,3,4}``: ``L = 2^b - 1``, ``q = clip(round((x - z)/s), 0, L)``, bit-packed MSB-first along the
  feature axis (dim 0 in the high bits of byte 0; 3-bit codes cross byte boundaries).
- ``binary`` / ``binary_median`` / ``binary_mean``: ``bit = x > t`` with ``t`` = 0 / train median /
  train mean, ``np.packbits`` layout; decoding replaces a bit by the per-dimension centroid of the
  train values on that side of the threshold (the blog's reconstruction).
- ``ternary`` (geoemb's choice, the blog gives no formula): per-dim thresholds at the train 1/3 and
  2/3 quantiles → {-1, 0, +1}, 2 bits/dim packed MSB-first, decoded to per-bin train centroids.
  ``ternary_twn``: TWN thresholds ``μ ± 0.7·E|x - μ|`` decoded to ``μ + {-α, 0, +α}``.
- ``pq_<M>x<b>``: FAISS ``IndexPQ(D, M, b)`` trained on the train rows (``sa_encode``/``sa_decode``).
- ``fp16`` / ``float32``: casts.
"""

from __future__ import annotations

import math

import numpy as np

from geoemb.compression.base import Compressor
from geoemb.compression.bitpack import pack_bits, unpack_bits

# ---------------------------------------------------------------------------- b-bit packing


def packed_width(dim: int, bits: int) -> int:
    """Bytes per row for ``dim`` codes of ``bits`` bits each: ``ceil(dim·bits/8)``."""
    return (dim * bits + 7) // 8


def pack_uint(q: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``(N, D)`` integer codes in ``[0, 2^bits)`` MSB-first into ``(N, ceil(D·bits/8))`` uint8.

    Dimension 0 occupies the most significant ``bits`` bits of byte 0 (TerraBit layout); codes of
    widths that do not divide 8 (e.g. 3) cross byte boundaries; the tail of the last byte is 0.
    """
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"pack_uint expects (N, D) codes, got shape {q.shape}")
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    n, d = q.shape
    q = q.astype(np.uint8, copy=False)
    if bits == 8:
        return np.ascontiguousarray(q)
    if 8 % bits == 0:  # fast path: whole codes per byte
        per = 8 // bits
        pad = (-d) % per
        if pad:
            q = np.concatenate([q, np.zeros((n, pad), np.uint8)], axis=1)
        q = q.reshape(n, -1, per)
        out = np.zeros(q.shape[:2], np.uint8)
        for i in range(per):
            out |= q[:, :, i] << np.uint8(8 - bits * (i + 1))
        return out
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    b = (q[:, :, None] >> shifts) & np.uint8(1)
    return pack_bits(b.reshape(n, d * bits))


def unpack_uint(codes: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: ``(N, ceil(dim·bits/8))`` uint8 → ``(N, dim)`` uint8."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"unpack_uint expects (N, B) uint8, got {codes.dtype} {codes.shape}")
    if codes.shape[1] != packed_width(dim, bits):
        raise ValueError(
            f"codes have {codes.shape[1]} bytes/row; dim={dim} at {bits} bits needs "
            f"{packed_width(dim, bits)}"
        )
    n = codes.shape[0]
    if bits == 8:
        return codes.copy()
    if 8 % bits == 0:
        per = 8 // bits
        mask = np.uint8((1 << bits) - 1)
        out = np.empty((n, codes.shape[1], per), np.uint8)
        for i in range(per):
            out[:, :, i] = (codes >> np.uint8(8 - bits * (i + 1))) & mask
        return np.ascontiguousarray(out.reshape(n, -1)[:, :dim])
    b = unpack_bits(codes, dim * bits).reshape(n, dim, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (b * weights).sum(axis=2, dtype=np.uint16).astype(np.uint8)


# ---------------------------------------------------------------------------- simple casts


class Float32(Compressor):
    """Identity baseline: codes are the float32 vectors themselves, ``4·D`` bytes."""

    def __init__(self, name: str = "float32") -> None:
        super().__init__(name)

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return X.astype(np.float32, copy=True)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return codes

    def _bytes_per_vector(self) -> float:
        return 4.0 * self.dim

    def _code_shape(self):
        return self.dim, np.dtype(np.float32)


class Float16(Compressor):
    """IEEE half precision: codes ``(N, D)`` float16, ``2·D`` bytes."""

    def __init__(self, name: str = "fp16") -> None:
        super().__init__(name)

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return X.astype(np.float16)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float32)

    def _bytes_per_vector(self) -> float:
        return 2.0 * self.dim

    def _code_shape(self):
        return self.dim, np.dtype(np.float16)


# ---------------------------------------------------------------------------- affine


class AffineQuantizer(Compressor):
    """Per-dimension min–max affine quantizer with ``bits`` ∈ {2, 3, 4, 8} (module doc formulas).

    Codes: ``bits=8`` → ``(N, D)`` int8 (offset −128); otherwise ``(N, ceil(D·bits/8))`` uint8,
    MSB-first. Values outside the train range are clipped. Within the train range the
    reconstruction error per dimension is at most ``s_j/2``.
    """

    def __init__(self, bits: int = 8, name: str | None = None) -> None:
        if bits not in (1, 2, 3, 4, 5, 6, 7, 8):
            raise ValueError(f"affine quantizer bits must be in 1..8, got {bits}")
        super().__init__(name or f"int{bits}")
        self.bits = int(bits)
        self.levels = (1 << self.bits) - 1
        self.scale: np.ndarray | None = None
        self.zero: np.ndarray | None = None

    def _fit(self, X: np.ndarray) -> None:
        lo = X.min(axis=0).astype(np.float64)
        hi = X.max(axis=0).astype(np.float64)
        s = (hi - lo) / self.levels
        s[s == 0] = 1.0
        self.scale = s.astype(np.float32)
        self.zero = lo.astype(np.float32)

    def quantize(self, X: np.ndarray) -> np.ndarray:
        """Unpacked integer levels ``(N, D)`` in ``[0, 2^bits - 1]`` (uint8)."""
        self._check_fitted("quantize")
        X = self._as_2d(X, "X")
        q = np.rint((X - self.zero) / self.scale)
        return np.clip(q, 0, self.levels).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """``(N, D)`` levels → float32 ``q·s + z``."""
        return q.astype(np.float32) * self.scale + self.zero

    def _encode(self, X: np.ndarray) -> np.ndarray:
        q = self.quantize(X)
        if self.bits == 8:
            return (q.astype(np.int16) - 128).astype(np.int8)
        return pack_uint(q, self.bits)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        if self.bits == 8:
            q = codes.astype(np.int16) + 128
        else:
            q = unpack_uint(codes, self.bits, self.dim)
        return self.dequantize(q)

    def _bytes_per_vector(self) -> float:
        return float(packed_width(self.dim, self.bits))

    def _code_shape(self):
        if self.bits == 8:
            return self.dim, np.dtype(np.int8)
        return packed_width(self.dim, self.bits), np.dtype(np.uint8)


# ---------------------------------------------------------------------------- binary / ternary


class BinaryQuantizer(Compressor):
    """Sign binarization ``bit = x > t``; codes ``(N, ceil(D/8))`` uint8 in ``np.packbits`` layout.

    Parameters
    ----------
    threshold : {"zero", "median", "mean"}
        Per-dimension threshold ``t`` (train statistics for median/mean).
    reconstruct : {"centroid", "sign"}
        ``centroid``: each bit → mean of the train values on that side of ``t`` in that dimension
        (the blog's reconstruction). ``sign``: ±1 (TerraBit ``2·bit − 1``).
    """

    hamming_compatible = True

    def __init__(
        self, threshold: str = "zero", reconstruct: str = "centroid", name: str | None = None
    ) -> None:
        if threshold not in ("zero", "median", "mean"):
            raise ValueError(f"binary threshold must be zero|median|mean, got {threshold!r}")
        if reconstruct not in ("centroid", "sign"):
            raise ValueError(f"binary reconstruct must be centroid|sign, got {reconstruct!r}")
        default = {"zero": "binary", "median": "binary_median", "mean": "binary_mean"}[threshold]
        super().__init__(name or default)
        self.threshold = threshold
        self.reconstruct = reconstruct

    def _fit(self, X: np.ndarray) -> None:
        if self.threshold == "zero":
            t = np.zeros(X.shape[1], np.float32)
        elif self.threshold == "median":
            t = np.median(X, axis=0).astype(np.float32)
        else:
            t = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.t = t
        above = X > t
        n_above = above.sum(axis=0)
        n_below = X.shape[0] - n_above
        s_above = np.where(above, X, 0).sum(axis=0, dtype=np.float64)
        s_below = X.sum(axis=0, dtype=np.float64) - s_above
        with np.errstate(invalid="ignore", divide="ignore"):
            hi = np.where(n_above > 0, s_above / np.maximum(n_above, 1), t)
            lo = np.where(n_below > 0, s_below / np.maximum(n_below, 1), t)
        self.centroid_hi = hi.astype(np.float32)
        self.centroid_lo = lo.astype(np.float32)
        self.p_one = (n_above / X.shape[0]).astype(np.float64)

    def bits(self, X: np.ndarray) -> np.ndarray:
        """Unpacked sign bits ``(N, D)`` uint8."""
        self._check_fitted("bits")
        return (self._as_2d(X, "X") > self.t).astype(np.uint8)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return pack_bits(X > self.t)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        b = unpack_bits(codes, self.dim).astype(bool)
        if self.reconstruct == "sign":
            return np.where(b, 1.0, -1.0).astype(np.float32)
        return np.where(b, self.centroid_hi, self.centroid_lo)

    def _bytes_per_vector(self) -> float:
        return float((self.dim + 7) // 8)

    def _code_shape(self):
        return (self.dim + 7) // 8, np.dtype(np.uint8)


class TernaryQuantizer(Compressor):
    """Ternary {-1, 0, +1} codes, 2 bits/dim packed MSB-first (code = symbol + 1).

    ``variant="quantile"`` (``ternary``): thresholds at the train 1/3 and 2/3 quantiles per dim,
    decode to per-bin train centroids. ``variant="twn"`` (``ternary_twn``): ``Δ = 0.7·E|x − μ|``
    around the train mean μ, decode to ``μ + symbol·α`` with ``α`` = mean ``|x − μ|`` over
    ``|x − μ| > Δ``.
    """

    def __init__(self, variant: str = "quantile", name: str | None = None) -> None:
        if variant not in ("quantile", "twn"):
            raise ValueError(f"ternary variant must be quantile|twn, got {variant!r}")
        super().__init__(name or ("ternary" if variant == "quantile" else "ternary_twn"))
        self.variant = variant

    def _fit(self, X: np.ndarray) -> None:
        if self.variant == "quantile":
            lo, hi = np.quantile(X, [1 / 3, 2 / 3], axis=0)
            self.lo, self.hi = lo.astype(np.float32), hi.astype(np.float32)
            sym = self._symbols(X)
            vals = np.empty((3, X.shape[1]), np.float32)
            for s in range(3):
                m = sym == s
                cnt = m.sum(axis=0)
                tot = np.where(m, X, 0).sum(axis=0, dtype=np.float64)
                fallback = (lo, (lo + hi) / 2, hi)[s]
                vals[s] = np.where(cnt > 0, tot / np.maximum(cnt, 1), fallback)
            self.values = vals
        else:
            mu = X.mean(axis=0, dtype=np.float64)
            dev = np.abs(X - mu)
            delta = 0.7 * dev.mean(axis=0)
            big = dev > delta
            alpha = np.where(
                big.sum(0) > 0, np.where(big, dev, 0).sum(0) / np.maximum(big.sum(0), 1), delta
            )
            self.lo = (mu - delta).astype(np.float32)
            self.hi = (mu + delta).astype(np.float32)
            self.values = np.stack([mu - alpha, mu, mu + alpha]).astype(np.float32)

    def _symbols(self, X: np.ndarray) -> np.ndarray:
        return ((X > self.lo).astype(np.uint8) + (X > self.hi).astype(np.uint8)).astype(np.uint8)

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return pack_uint(self._symbols(X), 2)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        s = unpack_uint(codes, 2, self.dim)
        if s.max(initial=0) > 2:
            raise ValueError(f"{self.name}: invalid ternary code 3 in input")
        return self.values[s.astype(np.intp), np.arange(self.dim)[None, :]]

    def _bytes_per_vector(self) -> float:
        return float(packed_width(self.dim, 2))

    def _code_shape(self):
        return packed_width(self.dim, 2), np.dtype(np.uint8)


# ---------------------------------------------------------------------------- product quantization


class ProductQuantizer(Compressor):
    """FAISS ``IndexPQ(D, M, nbits)``: ``M`` sub-vectors, ``2^nbits`` centroids each.

    Codes ``(N, ceil(M·nbits/8))`` uint8 (FAISS ``sa_encode`` layout). ``D % M == 0`` is required.
    """

    def __init__(self, m: int = 8, nbits: int = 8, seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or f"pq_{m}x{nbits}")
        if m < 1 or not 1 <= nbits <= 16:
            raise ValueError(
                f"{self.name}: need M >= 1 and 1 <= nbits <= 16, got M={m}, nbits={nbits}"
            )
        self.m, self.nbits, self.seed = int(m), int(nbits), int(seed)

    def _infeasible(self, n_rows: int, dim: int) -> str | None:
        if dim % self.m:
            return f"D={dim} is not divisible by M={self.m} (IndexPQ needs D % M == 0)"
        if n_rows < (1 << self.nbits):
            return f"{n_rows} training rows < 2^nbits={1 << self.nbits} centroids"
        return None

    def _fit(self, X: np.ndarray) -> None:
        import faiss

        d = X.shape[1]
        index = faiss.IndexPQ(d, self.m, self.nbits)
        index.pq.cp.seed = self.seed
        index.pq.cp.max_points_per_centroid = 10**9  # use every train row, no subsampling warning
        index.pq.cp.min_points_per_centroid = 1  # few rows per centroid: allowed, no FAISS warning
        index.train(np.ascontiguousarray(X, dtype=np.float32))
        self.index = index
        self.code_size = int(index.sa_code_size())

    def _encode(self, X: np.ndarray) -> np.ndarray:
        return self.index.sa_encode(np.ascontiguousarray(X, dtype=np.float32))

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        return self.index.sa_decode(np.ascontiguousarray(codes))

    def _bytes_per_vector(self) -> float:
        return float(self.code_size)

    def _code_shape(self):
        return self.code_size, np.dtype(np.uint8)


def bits_for_levels(levels: int) -> int:
    """Smallest number of bits holding ``levels`` distinct codes."""
    return max(1, math.ceil(math.log2(levels)))
