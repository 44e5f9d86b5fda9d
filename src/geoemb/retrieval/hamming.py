"""Hamming-distance kernels on packed bit codes (``np.packbits`` layout).

All kernels compute the full ``(nq, n)`` distance block between packed query codes ``(nq, B)`` and
packed database codes ``(n, B)`` (``B = ceil(L / 8)`` bytes, ``L`` bits). Padding bits of the last
byte must be zero in both (``pack_bits`` guarantees that); ``invert_codes`` keeps them zero.

Kernels
-------
- :func:`hamming_reference`: unpack to {0,1} and count mismatches (oracle, slow).
- :func:`hamming_numpy`: XOR + ``np.bitwise_count`` on uint64 words (numpy >= 2.0).
- :func:`hamming_torch_swar`: XOR + SWAR popcount on int64 words (torch has no popcount op).
- :func:`hamming_torch_gemm`: unpack to ±1 and use ``H = (L - s·t) / 2`` (GPU friendly, exact).
- :mod:`geoemb.retrieval._numba`: fused blocked scan with running top-k (optional numba).
"""

from __future__ import annotations

import numpy as np
import torch

from geoemb.compression.bitpack import padding_mask, unpack_bits

_M1 = 0x5555555555555555
_M2 = 0x3333333333333333
_M4 = 0x0F0F0F0F0F0F0F0F
_M8 = 0x00FF00FF00FF00FF
_H0001 = 0x0001000100010001


def _as_i64(v: int) -> int:
    """Reinterpret an unsigned 64-bit constant as a signed int64 Python int."""
    return v - (1 << 64) if v >= (1 << 63) else v


def check_codes(codes: np.ndarray, nbytes: int | None = None, name: str = "codes") -> np.ndarray:
    """Validate packed codes: 2-D uint8 with ``nbytes`` bytes per row; return a C-contiguous array."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected packed codes (N, B) uint8, got {codes.dtype} {codes.shape}"
        )
    if nbytes is not None and codes.shape[1] != nbytes:
        raise ValueError(
            f"{name}: code width mismatch, got {codes.shape[1]} bytes per row but the index holds "
            f"{nbytes}-byte codes ({nbytes * 8} bits incl. padding)"
        )
    return np.ascontiguousarray(codes)


def to_words(codes: np.ndarray) -> np.ndarray:
    """``(N, B)`` uint8 → ``(N, ceil(B/8))`` uint64, zero-padding each row to a multiple of 8 bytes."""
    codes = check_codes(codes)
    n, b = codes.shape
    w = (b + 7) // 8
    if b % 8:
        padded = np.zeros((n, w * 8), dtype=np.uint8)
        padded[:, :b] = codes
        codes = padded
    return codes.view(np.uint64).reshape(n, w)


def hamming_reference(queries: np.ndarray, database: np.ndarray, dim: int) -> np.ndarray:
    """Oracle: ``(nq, n)`` int64 Hamming distances from unpacked {0,1} bits.

    Parameters
    ----------
    queries, database:
        Packed codes ``(nq, B)`` and ``(n, B)`` uint8 with ``B = ceil(dim / 8)``.
    dim:
        Number of valid bits ``L``.
    """
    a = unpack_bits(np.asarray(queries), dim).astype(np.int64)
    b = unpack_bits(np.asarray(database), dim).astype(np.int64)
    return a @ (1 - b).T + (1 - a) @ b.T


def hamming_numpy(
    queries: np.ndarray, database_words: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``(nq, n)`` uint16 Hamming distances with XOR + ``np.bitwise_count`` on uint64 words.

    Parameters
    ----------
    queries:
        ``(nq, W)`` uint64 words (see :func:`to_words`).
    database_words:
        ``(W, n)`` uint64, word-major (transposed) database block, C-contiguous.
    out:
        Optional ``(nq, n)`` uint16 accumulator to reuse.
    """
    nq, w = queries.shape
    n = database_words.shape[1]
    acc = np.zeros((nq, n), dtype=np.uint16) if out is None else out
    if out is not None:
        acc.fill(0)
    buf = np.empty((nq, n), dtype=np.uint64)
    cnt = np.empty((nq, n), dtype=np.uint8)
    for j in range(w):
        np.bitwise_xor(queries[:, j : j + 1], database_words[j][None, :], out=buf)
        np.bitwise_count(buf, out=cnt)
        np.add(acc, cnt, out=acc)
    return acc


def words_to_torch(words: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint64 words → int64 tensor (bit-identical view)."""
    return torch.from_numpy(np.ascontiguousarray(words).view(np.int64)).to(device)


def hamming_torch_swar(queries: torch.Tensor, database_words: torch.Tensor) -> torch.Tensor:
    """``(nq, n)`` int64 Hamming distances with XOR + SWAR popcount on int64 words.

    Parameters
    ----------
    queries:
        ``(nq, W)`` int64 words.
    database_words:
        ``(W, n)`` int64 word-major database block (same device).

    Notes
    -----
    Per word the first three SWAR steps leave per-byte counts (<= 8) in each byte; up to 31 words
    are summed byte-wise, then folded to 16-bit fields and summed horizontally (multiply by
    0x0001000100010001, shift 48), which removes the 64-bit multiply from the per-word work.
    """
    nq, w = queries.shape
    n = database_words.shape[1]
    m1, m2, m4, m8, h0001 = (_as_i64(v) for v in (_M1, _M2, _M4, _M8, _H0001))
    total = torch.zeros((nq, n), dtype=torch.int64, device=queries.device)
    byte_acc = torch.zeros((nq, n), dtype=torch.int64, device=queries.device)
    x = torch.empty((nq, n), dtype=torch.int64, device=queries.device)
    t = torch.empty_like(x)
    pending = 0
    for j in range(w):
        torch.bitwise_xor(queries[:, j : j + 1], database_words[j][None, :], out=x)
        torch.bitwise_right_shift(x, 1, out=t)
        t.bitwise_and_(m1)
        x.sub_(t)
        torch.bitwise_right_shift(x, 2, out=t)
        t.bitwise_and_(m2)
        x.bitwise_and_(m2).add_(t)
        torch.bitwise_right_shift(x, 4, out=t)
        x.add_(t).bitwise_and_(m4)
        byte_acc.add_(x)
        pending += 1
        if pending == 31 or j == w - 1:
            # bytes (<= 248 each) -> 16-bit fields (<= 496) -> horizontal sum via multiply
            torch.bitwise_right_shift(byte_acc, 8, out=t)
            t.bitwise_and_(m8)
            byte_acc.bitwise_and_(m8).add_(t)
            byte_acc.mul_(h0001)
            torch.bitwise_right_shift(byte_acc, 48, out=t)
            total.add_(t.bitwise_and_(0xFFFF))
            byte_acc.zero_()
            pending = 0
    return total


def unpack_pm1(codes: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Packed ``(N, B)`` uint8 tensor → ``(N, dim)`` ±1 tensor of ``dtype`` on the same device."""
    shifts = torch.arange(7, -1, -1, device=codes.device, dtype=torch.uint8)
    bits = (codes.unsqueeze(-1) >> shifts).bitwise_and_(1).reshape(codes.shape[0], -1)[:, :dim]
    return bits.to(dtype).mul_(2).sub_(1)


def hamming_torch_gemm(queries_pm1: torch.Tensor, database_pm1: torch.Tensor) -> torch.Tensor:
    """``(nq, n)`` int64 Hamming distances from ±1 matrices: ``H = (L - s·tᵀ) / 2``.

    Exact in float32 for ``L < 2**24``, in fp16 for ``L <= 2048`` and in bf16 for ``L <= 256``
    (the largest integers those formats hold exactly); both operands must share one dtype.
    """
    dim = queries_pm1.shape[1]
    dots = queries_pm1 @ database_pm1.T
    return ((dim - dots.float()) * 0.5).round_().to(torch.int64)


def invert_codes(codes: np.ndarray, dim: int) -> np.ndarray:
    """Bitwise NOT of packed codes with padding bits kept at zero, so ``H(¬a, b) = L - H(a, b)``."""
    codes = check_codes(codes, (dim + 7) // 8)
    return np.bitwise_xor(codes, padding_mask(dim)[None, :])
