"""Overlap merging of tile predictions into a bounded rolling row buffer.

The scene is processed in vertical *stripes* (block-aligned column ranges; usually one stripe
covering the whole width) and, inside a stripe, tile row by tile row. A :class:`RowBandMerger`
holds only the rows that the current tile row touches (``tile_size`` rows x stripe width); rows
above the current tile row are final and are handed to the writer. Memory is therefore
``O(tile_size x stripe_width)`` and never depends on the scene height; the stripe width is capped
so that it does not depend on the scene width either.

Two merge policies:

* ``"center"``: keep-centre crop (rslearn ``RasterMerger``): every output pixel comes from exactly
  one tile, the one whose centre region contains it. With ``overlap >= 2 x`` the receptive-field
  radius this equals a single pass of the model over the whole scene, bit for bit.
* ``"cosine"``: weighted average of overlapping tiles with raised-cosine ramps over each overlap
  (TerraTorch ``get_blend_mask`` style, no border crop); probabilities are blended, then argmax.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from geoemb.inference.tiling import center_cuts, cosine_ramp_weights

__all__ = ["MERGE_METHODS", "RowBandMerger"]

MERGE_METHODS = ("center", "cosine")

#: emit(row0, class_map (h, w) int, probs (P, h, w) float32 | None, valid (h, w) bool)
EmitFn = Callable[[int, np.ndarray, np.ndarray | None, np.ndarray], None]


class RowBandMerger:
    """Merge tile outputs of one column stripe, tile row by tile row.

    Parameters
    ----------
    row_starts, col_starts : np.ndarray of int
        Global tile starts along rows / columns (:func:`~geoemb.inference.tiling.axis_starts`).
    height, width : int
        Scene size.
    tile_size : int
    c0, c1 : int
        Column range of this stripe, ``0 <= c0 < c1 <= width``.
    merge : {"center", "cosine"}
    num_prob_channels : int
        Channels of the probability maps passed to :meth:`add` (0 when only classes are merged,
        which is allowed for ``"center"`` only).
    class_dtype : numpy dtype
    emit : callable
        Receives final rows: ``emit(row0, classes (h, w), probs (P, h, w) or None, valid (h, w))``
        in increasing ``row0`` order.
    """

    def __init__(
        self,
        row_starts: np.ndarray,
        col_starts: np.ndarray,
        height: int,
        width: int,
        tile_size: int,
        c0: int,
        c1: int,
        merge: str,
        num_prob_channels: int,
        class_dtype: np.dtype,
        emit: EmitFn,
    ) -> None:
        if merge not in MERGE_METHODS:
            raise ValueError(f"merge must be one of {MERGE_METHODS}, got {merge!r}")
        if merge == "cosine" and num_prob_channels < 1:
            raise ValueError("cosine merge needs probability maps (num_prob_channels >= 1)")
        self.merge = merge
        self.rows, self.cols = row_starts, col_starts
        self.height, self.width, self.tile = height, width, tile_size
        self.c0, self.c1 = c0, c1
        self.emit = emit
        self.P = num_prob_channels
        sw = c1 - c0
        t = tile_size
        self.valid = np.zeros((t, sw), dtype=bool)
        self.classes = np.zeros((t, sw), dtype=class_dtype) if merge == "center" else None
        self.probs = np.zeros((self.P, t, sw), dtype=np.float32) if self.P else None
        self.wsum = np.zeros((t, sw), dtype=np.float32) if merge == "cosine" else None
        if merge == "center":
            self.row_cuts = center_cuts(row_starts, t, height)
            self.col_cuts = center_cuts(col_starts, t, width)
        else:
            self.row_w = cosine_ramp_weights(row_starts, t, height)
            self.col_w = cosine_ramp_weights(col_starts, t, width)
        self.base = 0  # global row of buffer row 0
        self.emitted = 0  # global rows [0, emitted) have been emitted

    # -- which tiles a stripe needs -----------------------------------------------------------
    @staticmethod
    def needed_columns(
        col_starts: np.ndarray, tile_size: int, width: int, c0: int, c1: int, merge: str
    ) -> list[int]:
        """Tile-column indices whose contribution intersects columns ``[c0, c1)``."""
        if merge == "center":
            cuts = center_cuts(col_starts, tile_size, width)
            return [j for j in range(len(col_starts)) if cuts[j] < c1 and cuts[j + 1] > c0]
        return [j for j, s in enumerate(col_starts) if s < c1 and min(s + tile_size, width) > c0]

    # -- streaming ----------------------------------------------------------------------------
    def _advance_to(self, row0: int) -> None:
        """Emit rows ``[base, row0)`` (final: no later tile touches them) and shift the buffer."""
        d = min(row0, self.height) - self.base
        if d <= 0:
            return
        self._emit_rows(d)
        t = self.tile
        for buf in (self.valid, self.classes, self.wsum):
            if buf is not None:
                buf[: t - d] = buf[d:] if d < t else buf[:0]
                buf[max(t - d, 0) :] = 0
        if self.probs is not None:
            if d < t:
                self.probs[:, : t - d] = self.probs[:, d:]
            self.probs[:, max(t - d, 0) :] = 0
        self.base += d

    def _emit_rows(self, d: int) -> None:
        d = min(d, self.tile, self.height - self.base)
        if d <= 0:
            return
        valid = self.valid[:d]
        if self.merge == "center":
            probs = self.probs[:, :d] if self.probs is not None else None
            classes = self.classes[:d]
        else:
            w = self.wsum[:d]
            probs = self.probs[:, :d] / np.where(w > 0, w, 1.0)[None]
            classes = self._argmax(probs)
        self.emit(self.base, classes.copy(), None if probs is None else probs.copy(), valid.copy())
        self.emitted = self.base + d

    def _argmax(self, probs: np.ndarray) -> np.ndarray:
        dtype = self.classes.dtype if self.classes is not None else np.uint16
        if probs.shape[0] == 1:  # single sigmoid channel
            return (probs[0] > 0.5).astype(dtype)
        return probs.argmax(axis=0).astype(dtype)

    def add(
        self,
        i: int,
        j: int,
        classes: np.ndarray | None,
        probs: np.ndarray | None,
        valid: np.ndarray,
    ) -> None:
        """Merge the prediction of tile ``(i, j)`` (tile row i, tile column j).

        Tiles must arrive in row-major order of ``i``.

        Parameters
        ----------
        classes : (T, T) int array or None
            Per-tile class map (used by ``"center"``).
        probs : (P, T, T) float32 or None
            Per-tile probabilities (required when ``num_prob_channels > 0``).
        valid : (T, T) bool
            Input validity of the tile's pixels.
        """
        r0 = int(self.rows[i])
        self._advance_to(r0)
        cs = int(self.cols[j])
        if self.merge == "center":
            gr0, gr1 = int(self.row_cuts[i]), int(self.row_cuts[i + 1])
            gc0 = max(int(self.col_cuts[j]), self.c0)
            gc1 = min(int(self.col_cuts[j + 1]), self.c1)
        else:
            gr0, gr1 = r0, min(r0 + self.tile, self.height)
            gc0, gc1 = max(cs, self.c0), min(cs + self.tile, self.width, self.c1)
        if gr1 <= gr0 or gc1 <= gc0:
            return
        tr = slice(gr0 - r0, gr1 - r0)  # tile-local rows
        tc = slice(gc0 - cs, gc1 - cs)
        br = slice(gr0 - self.base, gr1 - self.base)  # buffer rows
        bc = slice(gc0 - self.c0, gc1 - self.c0)
        self.valid[br, bc] = valid[tr, tc]
        if self.merge == "center":
            if classes is None:
                classes = self._argmax(probs)
            self.classes[br, bc] = classes[tr, tc]
            if self.probs is not None:
                self.probs[:, br, bc] = probs[:, tr, tc]
        else:
            w = np.outer(self.row_w[i][tr], self.col_w[j][tc])
            self.probs[:, br, bc] += probs[:, tr, tc] * w[None]
            self.wsum[br, bc] += w

    def skip(self, i: int) -> None:
        """Account for a tile of tile row ``i`` that was not predicted (all input nodata)."""
        self._advance_to(int(self.rows[i]))

    def finish(self) -> None:
        """Emit all remaining rows of the stripe."""
        self._emit_rows(self.height - self.base)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        bufs = (self.valid, self.classes, self.probs, self.wsum)
        return sum(b.nbytes for b in bufs if b is not None)
