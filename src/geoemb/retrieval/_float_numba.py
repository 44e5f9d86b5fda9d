"""Running top-k over a float GEMM block, fused with the L2 key (numba; CPU ``float_torch``).

The CPU path of :class:`~geoemb.retrieval.search.FloatTorchIndex` computes one BLAS GEMM per
(query batch, database block) and hands the block to :func:`topk_update`, which turns each inner
product into the search key in the same float32 operations the torch path uses (L2:
``max((-2·g + ‖x‖²) + ‖q‖², 0)``; IP / cosine: ``-g``) and keeps a sorted top-k per query by
insertion, while the block is still in cache: no ``(nq, n)`` key matrix, no separate passes for
the L2 terms, the top-k and the merge. Rows are visited in increasing id and only a strictly
smaller key displaces an entry, so ties are broken by smaller id (as every backend does).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["topk_update", "warmup"]


@nb.njit(parallel=True, cache=True, nogil=True)
def topk_update(g, xsq, qsq, l2, id_offset, out_d, out_i):  # pragma: no cover - jitted
    """Merge block ``g`` (nq, nb) float32 inner products into the running (out_d, out_i).

    xsq: (nb,) float32 squared norms of the block's rows and qsq: (nq,) float32 squared query
    norms (used when ``l2``); out_d: (nq, k) float32 keys sorted ascending (init +inf);
    out_i: (nq, k) int64 ids (init -1). Block row j is database id ``id_offset + j``.
    """
    nq, nb_ = g.shape
    k = out_d.shape[1]
    m2 = np.float32(-2.0)
    zero = np.float32(0.0)
    for qi in nb.prange(nq):
        row = g[qi]
        dq = out_d[qi]
        iq = out_i[qi]
        kth = dq[k - 1]
        qs = qsq[qi] if l2 else zero
        for j in range(nb_):
            if l2:
                d = (m2 * row[j] + xsq[j]) + qs
                if d < zero:
                    d = zero
            else:
                d = -row[j]
            if d < kth:
                pos = k - 1
                while pos > 0 and dq[pos - 1] > d:
                    dq[pos] = dq[pos - 1]
                    iq[pos] = iq[pos - 1]
                    pos -= 1
                dq[pos] = d
                iq[pos] = j + id_offset
                kth = dq[k - 1]


def warmup() -> None:
    """Compile (or load the cached compilation of) the kernel."""
    g = np.zeros((2, 3), np.float32)
    v = np.zeros(3, np.float32)
    for l2 in (True, False):
        topk_update(g, v, v[:2], l2, 0, np.full((2, 1), np.inf, np.float32), np.full((2, 1), -1))
