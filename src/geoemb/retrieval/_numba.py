"""Fused, cache-blocked Hamming top-k scan compiled with numba (optional dependency).

One pass over the database computes ``popcount(q XOR x)`` on uint64 words with the hardware
``popcnt`` instruction (LLVM ``ctpop``) and keeps a sorted top-k per query by insertion, so no
``(nq, n)`` distance matrix is materialised. Queries are split across threads; the database is
walked in L2-sized blocks that every query of the thread reuses. Rows are visited in increasing id
and only a strictly smaller distance displaces an entry, so ties are broken by smaller id.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic


@intrinsic
def _popcount64(typingctx, x):  # noqa: ARG001
    if isinstance(x, types.Integer) and x.bitwidth == 64:

        def codegen(context, builder, sig, args):  # noqa: ARG001
            return builder.ctpop(args[0])

        return x(x), codegen
    return None


@nb.njit(parallel=True, cache=True, nogil=True)
def hamming_topk_update(
    q, db, id_offset, block, nthreads, out_d, out_i
):  # pragma: no cover - jitted
    """Merge the top-k of ``db`` rows into the running ``(out_d, out_i)`` (sorted ascending).

    q: (nq, W) uint64; db: (n, W) uint64; out_d: (nq, k) int64 (init large); out_i: (nq, k) int64.
    """
    nq, w = q.shape
    n = db.shape[0]
    k = out_d.shape[1]
    for t in nb.prange(nthreads):
        q0 = t * nq // nthreads
        q1 = (t + 1) * nq // nthreads
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            for qi in range(q0, q1):
                qrow = q[qi]
                kth = out_d[qi, k - 1]
                for r in range(b0, b1):
                    row = db[r]
                    d = 0
                    for j in range(w):
                        d += _popcount64(qrow[j] ^ row[j])
                    if d < kth:
                        pos = k - 1
                        while pos > 0 and out_d[qi, pos - 1] > d:
                            out_d[qi, pos] = out_d[qi, pos - 1]
                            out_i[qi, pos] = out_i[qi, pos - 1]
                            pos -= 1
                        out_d[qi, pos] = d
                        out_i[qi, pos] = r + id_offset
                        kth = out_d[qi, k - 1]


def warmup() -> None:
    """Compile (or load the cached compilation of) the kernel."""
    q = np.zeros((2, 2), dtype=np.uint64)
    out_d = np.full((2, 1), np.iinfo(np.int64).max, dtype=np.int64)
    out_i = np.full((2, 1), -1, dtype=np.int64)
    hamming_topk_update(q, q, 0, 64, 2, out_d, out_i)
