"""Tile grids over a scene and the per-tile merge regions/weights.

All positions are integer pixel offsets on the input grid. Along each axis the tile starts are
``0, stride, 2*stride, ...`` plus a last tile aligned to the far edge, so every pixel is covered
(torchgeo #431); an axis shorter than a tile gets one tile at 0 that is zero-padded on read
(torchgeo #2714).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Tile",
    "axis_starts",
    "batches_of",
    "center_cuts",
    "cosine_ramp_weights",
    "plan_stripes",
    "recommended_stride",
    "tile_grid",
]


def recommended_stride(tile_size: int, overlap: int) -> int:
    """Stride giving ``overlap`` pixels of overlap between neighbouring tiles.

    For the keep-centre merge to match a single pass exactly, use ``overlap >= 2 * radius`` of
    the model's receptive field (each tile gives up ``overlap // 2`` pixels per inner side).
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    return tile_size - overlap


def axis_starts(length: int, tile_size: int, stride: int) -> np.ndarray:
    """Tile start offsets along one axis.

    Parameters
    ----------
    length : int
        Axis length in pixels (>= 1).
    tile_size, stride : int
        Tile size and step, ``1 <= stride <= tile_size``.

    Returns
    -------
    np.ndarray of int64, shape (n,)
        Strictly increasing starts; the last tile ends exactly at ``length`` when
        ``length >= tile_size``; a single start 0 otherwise.
    """
    if tile_size < 1 or not 1 <= stride <= tile_size:
        raise ValueError(
            f"need 1 <= stride <= tile_size, got tile_size={tile_size}, stride={stride}"
        )
    if length <= tile_size:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, length - tile_size + 1, stride))
    if starts[-1] + tile_size < length:
        starts.append(length - tile_size)
    return np.asarray(starts, dtype=np.int64)


def center_cuts(starts: np.ndarray, tile_size: int, length: int) -> np.ndarray:
    """Boundaries of the keep-centre regions along one axis (rslearn ``RasterMerger`` style).

    Tile ``i`` keeps global pixels ``[cuts[i], cuts[i+1])``: the cut between two neighbours is the
    middle of their overlap, so each gives up half of it (the far tile gets the odd pixel).

    Returns
    -------
    np.ndarray of int64, shape (n + 1,)
        ``cuts[0] = 0``, ``cuts[-1] = length``.
    """
    n = len(starts)
    cuts = np.empty(n + 1, dtype=np.int64)
    cuts[0], cuts[-1] = 0, length
    for i in range(n - 1):
        cuts[i + 1] = (starts[i + 1] + starts[i] + tile_size) // 2
    return cuts


def _ramp(n: int) -> np.ndarray:
    """Raised-cosine ramp of ``n`` samples rising from ~0 to ~1; ``r + r[::-1] == 1``."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * t)


def cosine_ramp_weights(starts: np.ndarray, tile_size: int, length: int) -> list[np.ndarray]:
    """Per-tile 1-D cosine blend weights along one axis.

    Each tile is weighted 1 except over its overlap with a neighbour, where it ramps down with a
    raised cosine while the neighbour ramps up (the two sum to 1). Outer sides at the scene edge
    are not tapered. Padding beyond ``length`` gets weight 0.

    Returns
    -------
    list of np.ndarray float32, each shape (tile_size,)
    """
    n = len(starts)
    out = []
    for i in range(n):
        w = np.ones(tile_size, dtype=np.float64)
        if i > 0:
            ov = int(starts[i - 1] + tile_size - starts[i])
            if ov > 0:
                w[:ov] *= _ramp(ov)
        if i < n - 1:
            ov = int(starts[i] + tile_size - starts[i + 1])
            if ov > 0:
                w[tile_size - ov :] *= _ramp(ov)[::-1]
        end = length - int(starts[i])
        if end < tile_size:
            w[end:] = 0.0
        out.append(w.astype(np.float32))
    return out


def tile_grid(height: int, width: int, tile_size: int, stride: int) -> list[tuple[int, int]]:
    """All tile offsets ``(row_off, col_off)`` in row-major order (see :func:`axis_starts`)."""
    rows = axis_starts(height, tile_size, stride)
    cols = axis_starts(width, tile_size, stride)
    return [(int(r), int(c)) for r in rows for c in cols]


@dataclass(frozen=True)
class Tile:
    """One tile of a streaming prediction: its column stripe, grid indices and pixel offsets."""

    stripe: int
    i: int  # tile row index
    j: int  # tile column index
    row: int  # row offset
    col: int  # column offset


def plan_stripes(
    width: int, block_size: int, bytes_per_column: int, max_buffer_bytes: int
) -> list[tuple[int, int]]:
    """Block-aligned column stripes whose buffers fit ``max_buffer_bytes``."""
    max_cols = max(
        block_size, (max_buffer_bytes // max(bytes_per_column, 1)) // block_size * block_size
    )
    if width <= max_cols:
        return [(0, width)]
    n = math.ceil(width / max_cols)
    # spread the block columns evenly over n stripes
    nblocks = math.ceil(width / block_size)
    per = math.ceil(nblocks / n)
    return [(b * block_size, min((b + per) * block_size, width)) for b in range(0, nblocks, per)]


def batches_of(items: Sequence[Tile], size: int) -> Iterator[list[Tile]]:
    """Consecutive batches of ``size`` tiles (the last one shorter)."""
    for k in range(0, len(items), size):
        yield list(items[k : k + size])
