"""Search backends vs an unpacked brute-force oracle, FAISS, recall@k and identities."""

import faiss
import numpy as np
import pytest
import torch

from geoemb.compression.bitpack import pack_bits, unpack_bits
from geoemb.retrieval import (
    HAMMING_BACKENDS,
    build_index,
    exact_knn,
    invert_codes,
    recall_at_k,
    search_excluding,
    tie_aware_recall,
)
from geoemb.retrieval.exemplar import compose, exemplar_scores, hamming_matrix
from geoemb.retrieval.hamming import hamming_reference


def _oracle_topk(dist: np.ndarray, k: int, largest: bool = False):
    """Independent oracle: full stable sort by (distance, id)."""
    key = -dist if largest else dist
    order = np.lexsort((np.broadcast_to(np.arange(dist.shape[1]), dist.shape), key), axis=1)[:, :k]
    return np.take_along_axis(dist, order, 1), order


def _codes(rng, n, dim, dup_frac=0.3):
    bits = rng.random((n, dim)) < 0.5
    ndup = int(n * dup_frac)
    bits[n - ndup :] = bits[rng.integers(0, n - ndup, ndup)]  # exact duplicates -> ties
    return pack_bits(bits)


@pytest.mark.parametrize("dim", [7, 64, 100, 1024])
@pytest.mark.parametrize("backend", HAMMING_BACKENDS)
def test_hamming_backends_match_unpacked_oracle(backend, dim):
    rng = np.random.default_rng(dim)
    db = _codes(rng, 300, dim)
    q = np.concatenate([_codes(rng, 20, dim), db[:5]])
    ref = hamming_reference(q, db, dim)
    # second oracle: direct unpacked comparison
    ub, uq = unpack_bits(db, dim), unpack_bits(q, dim)
    assert np.array_equal(ref, (uq[:, None, :] != ub[None]).sum(-1))
    kw = {} if backend == "hamming_faiss" else {"chunk_size": 64}
    index = build_index(backend, db, dim=dim, **kw)
    for k in (1, 10, 300, 500):
        d, i = index.search(q, k)
        rd, ri = _oracle_topk(ref, min(k, 300))
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(np.asarray(d, dtype=np.int64), rd)


def test_torch_queries_return_torch():
    rng = np.random.default_rng(0)
    db = _codes(rng, 50, 40)
    for backend in ("hamming_torch", "hamming_gemm", "hamming_numpy"):
        d, i = build_index(backend, db, dim=40).search(torch.from_numpy(db[:3]), 4)
        assert isinstance(i, torch.Tensor) and i.dtype == torch.int64
        assert i[:, 0].tolist() == [0, 1, 2] or d[:, 0].tolist() == [0, 0, 0]


def test_hamming_faiss_intersection_and_knn_hamming():
    rng = np.random.default_rng(1)
    db = pack_bits(rng.random((500, 256)) < 0.5)
    q = pack_bits(rng.random((30, 256)) < 0.5)
    d, _ = build_index("hamming_numba", db, dim=256).search(q, 10)
    fd, _ = faiss.knn_hamming(q, db, 10)
    np.testing.assert_array_equal(d, fd)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("backend", ["float_torch", "float_cdist", "float_faiss"])
def test_float_backends_match_float64_oracle(backend, metric):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 33)).astype(np.float32)
    q = rng.standard_normal((25, 33)).astype(np.float32)
    if metric == "cdist" and backend == "float_cdist":
        pytest.skip()
    if backend == "float_cdist" and metric != "l2":
        pytest.skip("cdist is L2 only")
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 /= np.linalg.norm(x64, axis=1, keepdims=True)
        q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
    dist = ((q64[:, None] - x64[None]) ** 2).sum(-1) if metric == "l2" else q64 @ x64.T
    rd, ri = _oracle_topk(dist, 10, largest=metric != "l2")
    kw = {} if backend == "float_faiss" else {"chunk_size": 97}
    d, i = build_index(backend, x, metric=metric, **kw).search(q, 10)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-4, atol=1e-4)


def test_float_ties_broken_by_id():
    x = np.zeros((50, 4), np.float32)
    x[::2] = 1.0
    q = np.ones((2, 4), np.float32)
    for backend in ("float_torch", "float_faiss"):
        _, i = build_index(
            backend, x, metric="l2", **({"chunk_size": 7} if backend == "float_torch" else {})
        ).search(q, 5)
        np.testing.assert_array_equal(i, [[0, 2, 4, 6, 8]] * 2)


def test_recall_identity_and_faiss_intersection():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((600, 32)).astype(np.float32)
    qids = np.arange(0, 600, 13)
    for metric in ("l2", "cosine"):
        gd, gi = exact_knn(x, x[qids], 10, metric=metric, query_ids=qids)
        assert not np.any(gi == qids[:, None])  # self excluded
        _, pi = search_excluding(build_index("float_faiss", x, metric=metric), x[qids], 10, qids)
        assert recall_at_k(gi, pi, 10) == 1.0
        assert tie_aware_recall(gd, pi, x, x[qids], 10, metric=metric) == 1.0
    # a lossy result: compare with faiss's intersection measure
    codes = pack_bits(x > 0)
    _, bi = search_excluding(build_index("hamming_numpy", codes, dim=32), codes[qids], 10, qids)
    _, gi = exact_knn(x, x[qids], 10, metric="l2", query_ids=qids)
    r = recall_at_k(gi, bi, 10)
    assert 0 < r < 1
    assert r == pytest.approx(faiss.eval_intersection(gi[:, :10], bi[:, :10]) / (len(qids) * 10))


def test_tie_aware_recall_counts_tied_items():
    x = np.array([[0.0], [1.0], [-1.0], [5.0]], np.float32)
    q = np.array([[0.0]], np.float32)
    gd, gi = exact_knn(x, q, 2, metric="l2")  # 0 then 1 (tie with 2, smaller id)
    assert gi.tolist() == [[0, 1]]
    pred = np.array([[0, 2]])
    assert recall_at_k(gi, pred, 2) == 0.5
    assert tie_aware_recall(gd, pred, x, q, 2) == 1.0


@pytest.mark.parametrize("dim", [13, 64])
def test_inversion_identity(dim):
    rng = np.random.default_rng(dim)
    a = pack_bits(rng.random((20, dim)) < 0.5)
    b = pack_bits(rng.random((30, dim)) < 0.5)
    inv = invert_codes(a, dim)
    np.testing.assert_array_equal(hamming_matrix(inv, b), dim - hamming_matrix(a, b))
    # without masking the padding this identity fails when dim % 8 != 0
    raw = np.bitwise_not(a)
    if dim % 8:
        assert not np.array_equal(hamming_matrix(raw, b), dim - hamming_matrix(a, b))


def test_exemplar_scores_and_composition():
    rng = np.random.default_rng(5)
    dim = 21
    bits = rng.random((40, dim)) < 0.5
    c = pack_bits(bits)
    pos, neg = c[:3], c[3:5]
    ub = bits.astype(int)
    h = lambda A, B: (A[:, None] != B[None]).sum(-1)  # noqa: E731
    s = exemplar_scores(c, pos, dim, neg)
    np.testing.assert_allclose(s, h(ub, ub[:3]).mean(1) - h(ub, ub[3:5]).mean(1))
    for op, f in (("and", np.logical_and), ("or", np.logical_or), ("xor", np.logical_xor)):
        e = f.reduce(bits[:3], axis=0)
        np.testing.assert_array_equal(compose(pos, op), pack_bits(e[None]))
        np.testing.assert_allclose(
            exemplar_scores(c, pos, dim, combine=op), h(ub, e[None].astype(int))[:, 0]
        )
    # inversion: L - s without negatives, -s with negatives
    np.testing.assert_allclose(
        exemplar_scores(c, pos, dim, invert=True), dim - exemplar_scores(c, pos, dim)
    )
    np.testing.assert_allclose(exemplar_scores(c, pos, dim, neg, invert=True), -s)
    # mean distance = weighted Hamming to the majority code (+ const), reference identity
    n = 3
    kj = ub[:3].sum(0)
    m = (2 * kj > n).astype(int)
    ident = np.minimum(kj, n - kj).sum() + (np.abs(n - 2 * kj)[None] * (ub != m[None])).sum(1)
    np.testing.assert_allclose(exemplar_scores(c, pos, dim) * n, ident)


def test_binary_rerank_improves_recall():
    from geoemb.synthetic.retrieval_corpus import make_embeddings

    x, _, _ = make_embeddings(4000, 128, seed=1)
    qids = np.arange(0, 4000, 40)
    _, gi = exact_knn(x, x[qids], 10, metric="cosine", query_ids=qids)
    codes = pack_bits(x > 0)
    _, bi = search_excluding(build_index("hamming_numba", codes, dim=128), codes[qids], 10, qids)
    rr = build_index("binary_rerank", codes, rerank_vectors=x, dim=128, metric="cosine", m=10)
    _, ri = search_excluding(rr, x[qids], 10, qids)
    assert recall_at_k(gi, ri, 10) > recall_at_k(gi, bi, 10)
    assert recall_at_k(gi, ri, 10) >= 0.9


def test_clear_errors():
    db = pack_bits(np.zeros((5, 16), bool))
    with pytest.raises(ValueError, match="unknown search backend"):
        build_index("nope", db)
    idx = build_index("hamming_numpy", db, dim=16)
    with pytest.raises(ValueError, match="width mismatch"):
        idx.search(np.zeros((1, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="needs 3 bytes"):
        build_index("hamming_numpy", db, dim=20)
    with pytest.raises(ValueError, match="dimension mismatch"):
        build_index("float_torch", np.zeros((4, 8), np.float32)).search(
            np.zeros((1, 7), np.float32), 1
        )
    with pytest.raises(ValueError, match="positive integer"):
        idx.search(db, 0)
    with pytest.raises(ValueError, match="uint8"):
        idx.search(np.zeros((1, 2), np.int32), 1)
