"""Bit packing in ``np.packbits`` layout (MSB-first within each byte, zero-padded last byte)."""

from __future__ import annotations

import numpy as np


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a ``(N, D)`` array of {0,1} (or bool) into ``(N, ceil(D/8))`` uint8, MSB first.

    Identical to ``np.packbits(bits, axis=1)``: bit ``j`` of a row lands in byte ``j // 8`` at
    position ``7 - j % 8``; padding bits of the last byte are 0.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"pack_bits expects a (N, D) array, got shape {bits.shape}")
    return np.packbits(bits.astype(bool), axis=1)


def unpack_bits(codes: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(N, ceil(D/8))`` uint8 → ``(N, dim)`` uint8 {0,1}."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise ValueError(f"unpack_bits expects (N, B) uint8 codes, got {codes.dtype} {codes.shape}")
    if codes.shape[1] != (dim + 7) // 8:
        raise ValueError(
            f"codes have {codes.shape[1]} bytes per row but dim={dim} needs {(dim + 7) // 8}"
        )
    return np.unpackbits(codes, axis=1, count=dim)


def padding_mask(dim: int) -> np.ndarray:
    """``(ceil(dim/8),)`` uint8 mask with 1-bits at valid positions and 0 at padding bits."""
    return pack_bits(np.ones((1, dim), dtype=bool))[0]
