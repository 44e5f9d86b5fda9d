"""Hamming kNN (the one Hamming top-k, on the search backends) vs brute force and FAISS."""

import numpy as np
import pytest

from geoemb.retrieval.knn import hamming_distances, hamming_knn, hamming_knn_classify, majority_vote


@pytest.mark.parametrize("dim", [13, 64, 100])
def test_hamming_distances_equal_unpacked_brute_force(dim):
    rng = np.random.default_rng(dim)
    a = rng.integers(0, 2, (30, dim)).astype(np.uint8)
    b = rng.integers(0, 2, (50, dim)).astype(np.uint8)
    ref = (a[:, None, :] != b[None, :, :]).sum(-1)
    np.testing.assert_array_equal(hamming_distances(np.packbits(a, 1), np.packbits(b, 1)), ref)


@pytest.mark.parametrize("dim", [12, 64])
def test_hamming_knn_equals_brute_force_with_index_tie_break(dim):
    rng = np.random.default_rng(dim + 1)
    db = rng.integers(0, 2, (700, dim)).astype(np.uint8)
    q = rng.integers(0, 2, (40, dim)).astype(np.uint8)
    ref_d = (q[:, None, :] != db[None]).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(700), ref_d.shape), ref_d), axis=1)[:, :7]
    d, i = hamming_knn(np.packbits(q, 1), np.packbits(db, 1), 7, query_batch=16, db_batch=128)
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(d, np.take_along_axis(ref_d, order, 1))
    # vs FAISS's exhaustive binary search (distances only: FAISS tie order may differ)
    import faiss

    if dim % 8 == 0:
        fd, _ = faiss.knn_hamming(np.packbits(q, 1), np.packbits(db, 1), 7)
        np.testing.assert_array_equal(d, fd)


def test_hamming_knn_classify_matches_brute_force_vote():
    rng = np.random.default_rng(3)
    dim = 24
    tr = rng.integers(0, 2, (300, dim)).astype(np.uint8)
    te = rng.integers(0, 2, (60, dim)).astype(np.uint8)
    y = rng.integers(0, 4, 300)
    ref_d = (te[:, None, :] != tr[None]).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(300), ref_d.shape), ref_d), axis=1)[:, :5]
    ref = [np.bincount(y[o], minlength=4).argmax() for o in order]
    got = hamming_knn_classify(np.packbits(tr, 1), y, np.packbits(te, 1), k=5)
    np.testing.assert_array_equal(got, ref)
    assert majority_vote(np.array([[2, 1, 1, 2, 0]]))[0] == 1  # ties -> smallest label


@pytest.mark.parametrize("backend", ["hamming_numpy", "hamming_numba", None])
def test_hamming_knn_excludes_each_querys_own_row(backend):
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, (400, 40)).astype(np.uint8)
    bits[200:260] = bits[:60]  # exact duplicates: ties at distance 0 with other ids
    db = np.packbits(bits, 1)
    own = np.arange(0, 80)
    ref_d = (bits[own][:, None, :] != bits[None]).sum(-1).astype(np.int64)
    ref_d[np.arange(80), own] = 10**6  # the excluded row never appears
    order = np.lexsort((np.broadcast_to(np.arange(400), ref_d.shape), ref_d), axis=1)[:, :6]
    d, i = hamming_knn(db[own], db, 6, exclude=own, backend=backend, query_batch=32, db_batch=96)
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(d, np.take_along_axis(ref_d, order, 1))
    assert d.dtype == np.int32 and i.dtype == np.int64
    with pytest.raises(ValueError, match="k=400 must be in"):
        hamming_knn(db[own], db, 400, exclude=own)
