"""Overlap merging of tile predictions into a bounded rolling row buffer.

The scene is processed in vertical *stripes* (block-aligned column ranges; usually one stripe
covering the whole width) and, inside a stripe, tile row by tile row. A :class:`RowBandMerger`
holds only the rows that the current tile row touches (``tile_size`` rows x stripe width); rows
above the current tile row are final and are handed to the writer. Memory is therefore
``O(tile_size x stripe_width)`` and never depends on the scene height; the stripe width is capped
so that it does not depend on the scene width either.

How overlapping tiles become one output pixel is a :class:`MergePolicy`, resolved once by name
from :data:`MERGE_POLICIES`:

* ``"center"`` (:class:`CenterMerge`): keep-centre crop (rslearn ``RasterMerger``): every output
  pixel comes from exactly one tile, the one whose centre region contains it. With
  ``overlap >= 2 x`` the receptive-field radius this equals a single pass of the model over the
  whole scene, bit for bit.
* ``"cosine"`` (:class:`CosineMerge`): weighted average of overlapping tiles with raised-cosine
  ramps over each overlap (TerraTorch ``get_blend_mask`` style, no border crop); probabilities are
  blended, then argmax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from geoemb.inference.tiling import center_cuts, cosine_ramp_weights
from geoemb.utils.registry import Registry

__all__ = [
    "MERGE_METHODS",
    "MERGE_POLICIES",
    "CenterMerge",
    "CosineMerge",
    "MergePolicy",
    "RowBandMerger",
    "merge_policy",
]

#: emit(row0, class_map (h, w) int, probs (P, h, w) float32 | None, valid (h, w) bool)
EmitFn = Callable[[int, np.ndarray, np.ndarray | None, np.ndarray], None]

#: Rolling buffers of one stripe, by name; rows are axis -2 of every buffer.
Buffers = dict[str, np.ndarray]


def _argmax(probs: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Class map of probabilities ``(P, h, w)``: ``p > 0.5`` for one sigmoid channel."""
    if probs.shape[0] == 1:  # single sigmoid channel
        return (probs[0] > 0.5).astype(dtype)
    return probs.argmax(axis=0).astype(dtype)


class MergePolicy:
    """How the predictions of overlapping tiles become one output pixel.

    A policy is stateless; the per-stripe state lives in :class:`RowBandMerger`, which asks the
    policy which pixels a tile contributes (:meth:`extents`, :meth:`weights`), which buffers to
    hold (:meth:`buffers`), how to add a tile into them (:meth:`accumulate`) and how to turn
    final buffer rows into output (:meth:`finalise`).

    Attributes
    ----------
    name : str
        Registry name.
    tile_classes : bool
        Merges per-tile class maps: ``predict_fn``'s argmax is taken per tile (on logits) and
        probabilities are needed only when they are written.
    blends : bool
        Blends per-tile probabilities: probabilities are always computed and buffered.
    """

    name: ClassVar[str] = ""
    tile_classes: ClassVar[bool] = False
    blends: ClassVar[bool] = False

    # -- geometry ------------------------------------------------------------------------------
    def extents(self, starts: np.ndarray, tile_size: int, length: int) -> np.ndarray:
        """Global ``[start, stop)`` that each tile contributes along one axis, shape (n, 2)."""
        raise NotImplementedError

    def weights(self, starts: np.ndarray, tile_size: int, length: int) -> list[np.ndarray] | None:
        """Per-tile 1-D blend weights along one axis (each ``(tile_size,)``), or None."""
        return None

    def needed_tiles(
        self, starts: np.ndarray, tile_size: int, length: int, c0: int, c1: int
    ) -> list[int]:
        """Indices of the tiles whose contribution intersects ``[c0, c1)`` along one axis."""
        ext = self.extents(starts, tile_size, length)
        return [j for j in range(len(starts)) if ext[j, 0] < c1 and ext[j, 1] > c0]

    # -- sizes ---------------------------------------------------------------------------------
    def prob_channels(self, num_classes: int, write_probabilities: bool) -> int:
        """Probability channels the merger buffers (0: class maps only)."""
        return num_classes if (self.blends or write_probabilities) else 0

    def bytes_per_pixel(self, class_dtype: np.dtype, prob_channels: int) -> int:
        """Buffered bytes per pixel of a stripe: validity, classes, probabilities (+ weights)."""
        return 1 + np.dtype(class_dtype).itemsize + 4 * prob_channels

    def check(self, prob_channels: int) -> None:
        """Raise ``ValueError`` if the policy cannot merge with ``prob_channels`` channels."""

    # -- accumulation --------------------------------------------------------------------------
    def buffers(self, rows: int, cols: int, prob_channels: int, class_dtype: np.dtype) -> Buffers:
        """Zeroed rolling buffers for a ``rows x cols`` band (besides the validity mask)."""
        raise NotImplementedError

    def accumulate(
        self,
        bufs: Buffers,
        dst: tuple[slice, slice],
        src: tuple[slice, slice],
        classes: np.ndarray | None,
        probs: np.ndarray | None,
        weight: np.ndarray | None,
    ) -> None:
        """Add tile pixels ``src`` (tile-local rows, cols) into buffer pixels ``dst``.

        ``classes`` (T, T) and ``probs`` (P, T, T) are the tile's outputs; ``weight`` is the
        ``dst``-shaped product of the tile's :meth:`weights` (None if the policy has none).
        """
        raise NotImplementedError

    def finalise(
        self, bufs: Buffers, rows: int, class_dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Output of the first ``rows`` buffer rows: class map (rows, w) and probabilities."""
        raise NotImplementedError


class CenterMerge(MergePolicy):
    """Keep-centre crop: each pixel comes from the one tile whose centre region contains it."""

    name = "center"
    tile_classes = True

    def extents(self, starts: np.ndarray, tile_size: int, length: int) -> np.ndarray:
        cuts = center_cuts(starts, tile_size, length)
        return np.stack([cuts[:-1], cuts[1:]], axis=1)

    def buffers(self, rows: int, cols: int, prob_channels: int, class_dtype: np.dtype) -> Buffers:
        bufs = {"classes": np.zeros((rows, cols), dtype=class_dtype)}
        if prob_channels:
            bufs["probs"] = np.zeros((prob_channels, rows, cols), dtype=np.float32)
        return bufs

    def accumulate(self, bufs, dst, src, classes, probs, weight) -> None:
        (br, bc), (tr, tc) = dst, src
        if classes is None:
            classes = _argmax(probs, bufs["classes"].dtype)
        bufs["classes"][br, bc] = classes[tr, tc]
        if "probs" in bufs:
            bufs["probs"][:, br, bc] = probs[:, tr, tc]

    def finalise(self, bufs, rows, class_dtype):
        probs = bufs["probs"][:, :rows] if "probs" in bufs else None
        return bufs["classes"][:rows], probs


class CosineMerge(MergePolicy):
    """Raised-cosine weighted average of the overlapping tiles' probabilities, then argmax."""

    name = "cosine"
    blends = True

    def extents(self, starts: np.ndarray, tile_size: int, length: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        return np.stack([starts, np.minimum(starts + tile_size, length)], axis=1)

    def weights(self, starts: np.ndarray, tile_size: int, length: int) -> list[np.ndarray]:
        return cosine_ramp_weights(starts, tile_size, length)

    def bytes_per_pixel(self, class_dtype: np.dtype, prob_channels: int) -> int:
        return super().bytes_per_pixel(class_dtype, prob_channels) + 4  # float32 weight sum

    def check(self, prob_channels: int) -> None:
        if prob_channels < 1:
            raise ValueError("cosine merge needs probability maps (num_prob_channels >= 1)")

    def buffers(self, rows: int, cols: int, prob_channels: int, class_dtype: np.dtype) -> Buffers:
        return {
            "probs": np.zeros((prob_channels, rows, cols), dtype=np.float32),
            "wsum": np.zeros((rows, cols), dtype=np.float32),
        }

    def accumulate(self, bufs, dst, src, classes, probs, weight) -> None:
        (br, bc), (tr, tc) = dst, src
        bufs["probs"][:, br, bc] += probs[:, tr, tc] * weight[None]
        bufs["wsum"][br, bc] += weight

    def finalise(self, bufs, rows, class_dtype):
        w = bufs["wsum"][:rows]
        probs = bufs["probs"][:, :rows] / np.where(w > 0, w, 1.0)[None]
        return _argmax(probs, class_dtype), probs


#: Merge policies by name: ``MERGE_POLICIES.build(name)`` returns a :class:`MergePolicy`.
MERGE_POLICIES = Registry("merge policy")
MERGE_POLICIES.add(
    "center",
    CenterMerge,
    description="keep-centre crop: one tile per pixel (= a single pass with enough overlap)",
)
MERGE_POLICIES.add(
    "cosine",
    CosineMerge,
    description="raised-cosine blend of overlapping probabilities, then argmax",
)
MERGE_METHODS: tuple[str, ...] = tuple(MERGE_POLICIES.names())


def merge_policy(merge: str | MergePolicy) -> MergePolicy:
    """The :class:`MergePolicy` named ``merge`` (a policy is returned as is).

    Raises
    ------
    UnknownNameError
        Unknown name (a ``ValueError``; the message lists :data:`MERGE_POLICIES`).
    """
    if isinstance(merge, MergePolicy):
        return merge
    return MERGE_POLICIES.build(merge)


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
    merge : MergePolicy or str
        A policy or a :data:`MERGE_POLICIES` name (``"center"``, ``"cosine"``).
    num_prob_channels : int
        Channels of the probability maps passed to :meth:`add` (0 when only classes are merged,
        which the blending policies refuse).
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
        merge: str | MergePolicy,
        num_prob_channels: int,
        class_dtype: np.dtype,
        emit: EmitFn,
    ) -> None:
        self.policy = merge_policy(merge)
        self.policy.check(num_prob_channels)
        self.rows, self.cols = row_starts, col_starts
        self.height, self.width, self.tile = height, width, tile_size
        self.c0, self.c1 = c0, c1
        self.emit = emit
        self.class_dtype = np.dtype(class_dtype)
        t, sw = tile_size, c1 - c0
        self.valid = np.zeros((t, sw), dtype=bool)
        self.bufs = self.policy.buffers(t, sw, num_prob_channels, self.class_dtype)
        self.row_ext = self.policy.extents(row_starts, t, height)
        self.col_ext = self.policy.extents(col_starts, t, width)
        self.row_w = self.policy.weights(row_starts, t, height)
        self.col_w = self.policy.weights(col_starts, t, width)
        self.base = 0  # global row of buffer row 0
        self.emitted = 0  # global rows [0, emitted) have been emitted

    # -- which tiles a stripe needs -----------------------------------------------------------
    @staticmethod
    def needed_columns(
        col_starts: np.ndarray,
        tile_size: int,
        width: int,
        c0: int,
        c1: int,
        merge: str | MergePolicy,
    ) -> list[int]:
        """Tile-column indices whose contribution intersects columns ``[c0, c1)``."""
        return merge_policy(merge).needed_tiles(col_starts, tile_size, width, c0, c1)

    # -- streaming ----------------------------------------------------------------------------
    def _advance_to(self, row0: int) -> None:
        """Emit rows ``[base, row0)`` (final: no later tile touches them) and shift the buffer."""
        d = min(row0, self.height) - self.base
        if d <= 0:
            return
        self._emit_rows(d)
        t = self.tile
        for buf in (self.valid, *self.bufs.values()):  # rows are axis -2
            if d < t:
                buf[..., : t - d, :] = buf[..., d:, :]
            buf[..., max(t - d, 0) :, :] = 0
        self.base += d

    def _emit_rows(self, d: int) -> None:
        d = min(d, self.tile, self.height - self.base)
        if d <= 0:
            return
        classes, probs = self.policy.finalise(self.bufs, d, self.class_dtype)
        valid = self.valid[:d]
        self.emit(self.base, classes.copy(), None if probs is None else probs.copy(), valid.copy())
        self.emitted = self.base + d

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
            Per-tile class map (used by policies with ``tile_classes``).
        probs : (P, T, T) float32 or None
            Per-tile probabilities (required when ``num_prob_channels > 0``).
        valid : (T, T) bool
            Input validity of the tile's pixels.
        """
        r0 = int(self.rows[i])
        self._advance_to(r0)
        cs = int(self.cols[j])
        gr0, gr1 = int(self.row_ext[i, 0]), int(self.row_ext[i, 1])
        gc0 = max(int(self.col_ext[j, 0]), self.c0)
        gc1 = min(int(self.col_ext[j, 1]), self.c1)
        if gr1 <= gr0 or gc1 <= gc0:
            return
        tr = slice(gr0 - r0, gr1 - r0)  # tile-local rows
        tc = slice(gc0 - cs, gc1 - cs)
        br = slice(gr0 - self.base, gr1 - self.base)  # buffer rows
        bc = slice(gc0 - self.c0, gc1 - self.c0)
        self.valid[br, bc] = valid[tr, tc]
        weight = None
        if self.row_w is not None:
            weight = np.outer(self.row_w[i][tr], self.col_w[j][tc])
        self.policy.accumulate(self.bufs, (br, bc), (tr, tc), classes, probs, weight)

    def skip(self, i: int) -> None:
        """Account for a tile of tile row ``i`` that was not predicted (all input nodata)."""
        self._advance_to(int(self.rows[i]))

    def finish(self) -> None:
        """Emit all remaining rows of the stripe."""
        self._emit_rows(self.height - self.base)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return self.valid.nbytes + sum(b.nbytes for b in self.bufs.values())
