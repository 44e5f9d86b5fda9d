"""Fused exemplar scoring: one numba pass per exemplar set instead of a ``(n, m)`` distance matrix.

:func:`exemplar_scores` returns exactly (bit for bit) what
:func:`geoemb.retrieval.exemplar.exemplar_scores` returns — same composition (library
``compose``), same inversion (library ``invert_codes``), same float arithmetic (integer sums
divided by the exemplar count, as ``np.mean`` of the integer matrix does) — but sums
``popcount(c XOR e)`` over the exemplars in one compiled loop over the candidate rows (hardware
popcount, threads over rows), about 10× faster than the library's word-by-word numpy kernel on
1M candidates. It belongs in ``geoemb.retrieval.exemplar`` later.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

from geoemb.retrieval.exemplar import COMBINE, compose
from geoemb.retrieval.hamming import check_codes, invert_codes, to_words


@intrinsic
def _popcount64(typingctx, x):  # noqa: ARG001
    if isinstance(x, types.Integer) and x.bitwidth == 64:

        def codegen(context, builder, sig, args):  # noqa: ARG001
            return builder.ctpop(args[0])

        return x(x), codegen
    return None


@nb.njit(parallel=True, nogil=True, cache=True)
def hamming_sums(db, ex, out):  # pragma: no cover - jitted
    """``out[r] = Σ_e popcount(db[r] XOR ex[e])``; db ``(n, W)``, ex ``(m, W)`` uint64."""
    n, w = db.shape
    m = ex.shape[0]
    for r in nb.prange(n):
        s = 0
        for e in range(m):
            for j in range(w):
                s += _popcount64(db[r, j] ^ ex[e, j])
        out[r] = s


def _words(codes: np.ndarray) -> np.ndarray:
    if codes.shape[1] % 8 == 0 and codes.flags.c_contiguous:
        return codes.view(np.uint64)  # zero copy
    return np.ascontiguousarray(to_words(codes))


def _mean_dist(cand_words: np.ndarray, ex: np.ndarray) -> np.ndarray:
    out = np.empty(len(cand_words), np.int64)
    hamming_sums(cand_words, np.ascontiguousarray(to_words(ex)), out)
    return out / len(ex)


def exemplar_scores(candidates: np.ndarray, positives: np.ndarray, dim: int,
                    negatives: np.ndarray | None = None, combine: str = "mean",
                    invert: bool = False) -> np.ndarray:  # fmt: skip
    """Drop-in for the library's ``exemplar_scores``: ``(n,)`` float64, lower = more similar."""
    nbytes = (dim + 7) // 8
    candidates = check_codes(candidates, nbytes, "candidate codes")
    positives = check_codes(positives, nbytes, "positive exemplar codes")
    if len(positives) == 0:
        raise ValueError("exemplar query needs at least one positive exemplar")
    if combine not in COMBINE:
        raise ValueError(f"unknown combine {combine!r}; expected one of {COMBINE}")
    pos = positives if combine == "mean" else compose(positives, combine, dim)
    neg = (
        None
        if negatives is None or len(negatives) == 0
        else check_codes(negatives, nbytes, "negative exemplar codes")
    )
    if invert:
        pos = invert_codes(pos, dim)
        neg = None if neg is None else invert_codes(neg, dim)
    if len(candidates) == 0:
        return np.zeros(0)
    words = _words(candidates)
    score = _mean_dist(words, pos)
    if neg is not None:
        score = score - _mean_dist(words, neg)
    return score


def warmup() -> None:
    """Compile (or load the cached compilation of) the kernel."""
    z = np.zeros((2, 1), np.uint64)
    hamming_sums(z, z, np.empty(2, np.int64))
