"""ANN backends (FAISS binary IVF / HNSW, float IVF-PQ): recall against the exact scan, the
(distance, id) contract, persistence keyed by content and parameters."""

import numpy as np
import pytest

from geoemb.compression.bitpack import pack_bits
from geoemb.errors import InputError, ResumeMismatchError
from geoemb.retrieval import BACKENDS, build_index, recall_at_k
from geoemb.retrieval.ann import load_ann
from geoemb.retrieval.search import ANN_BACKENDS, HAMMING_BACKENDS
from geoemb.synthetic.retrieval_corpus import make_embeddings

DIM = 128


@pytest.fixture(scope="module")
def data():
    x, _, _ = make_embeddings(8200, DIM, seed=3)
    codes = pack_bits(x > 0)
    return x[:8000], codes[:8000], x[8000:], codes[8000:]


def _exact(codes, q, k=10):
    return build_index("hamming_numpy", codes, dim=DIM).search(q, k)


def test_registry_marks_ann_backends():
    assert set(ANN_BACKENDS) == {"binary_ivf", "binary_hnsw", "float_ivfpq"}
    assert not set(ANN_BACKENDS) & set(HAMMING_BACKENDS)
    for name in ANN_BACKENDS:
        assert BACKENDS.get(name).meta["exact"] is False


@pytest.mark.parametrize(
    "name,kw,floor",
    [("binary_ivf", {"nprobe": 8}, 0.9), ("binary_hnsw", {"ef_search": 128}, 0.9)],
)
def test_binary_ann_recall_vs_exact(data, name, kw, floor):
    _, codes, _, q = data
    d_ex, i_ex = _exact(codes, q)
    idx = build_index(name, codes, dim=DIM, **kw)
    d, i = idx.search(q, 10)
    assert recall_at_k(i_ex, i, 10) >= floor
    # returned distances are true Hamming distances of the returned ids, sorted by (d, id)
    ref = np.bitwise_count(np.bitwise_xor(codes[i], q[:, None, :])).sum(-1)
    np.testing.assert_array_equal(d, ref)
    assert (np.diff(d, axis=1) >= 0).all()
    tie = np.diff(d, axis=1) == 0
    assert (np.diff(i, axis=1)[tie] > 0).all()
    # never better than exact
    assert (d[:, -1] >= d_ex[:, -1]).all()


def test_binary_ivf_full_probe_is_exact(data):
    _, codes, _, q = data
    d_ex, i_ex = _exact(codes, q)
    idx = build_index("binary_ivf", codes, dim=DIM, nlist=16, nprobe=16)
    d, i = idx.search(q, 10)
    np.testing.assert_array_equal(d, d_ex)
    # rows strictly closer than the k-th distance are the exact ones; which of the rows tied at
    # the k-th distance FAISS keeps is its own choice (documented)
    inner = d < d[:, -1:]
    np.testing.assert_array_equal(i[inner], i_ex[inner])


def test_binary_ivf_puts_each_code_in_a_nearest_cell(data):
    """Cells are assigned by geoemb's popcount scan: every code sits in a cell whose centroid is at
    its minimum Hamming distance (numpy oracle over all centroids); ids are the row positions."""
    import faiss

    _, codes, _, _ = data
    idx = build_index("binary_ivf", codes, dim=DIM, nlist=37)
    ivf = idx._index
    cents = faiss.vector_to_array(faiss.downcast_IndexBinary(ivf.quantizer).xb).reshape(37, -1)
    dist = np.bitwise_count(np.bitwise_xor(codes[:, None, :], cents[None])).sum(-1)
    seen = []
    for c in range(37):
        n = ivf.invlists.list_size(c)
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(c), n).copy()
        seen.append(ids)
        np.testing.assert_array_equal(dist[ids, c], dist[ids].min(1))
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(codes)))


def test_recall_grows_with_nprobe(data):
    _, codes, _, q = data
    d_ex, i_ex = _exact(codes, q)
    idx = build_index("binary_ivf", codes, dim=DIM, nlist=64)
    rec = []
    for p in (1, 4, 64):
        idx.set_search_params(nprobe=p)
        d, i = idx.search(q, 10)
        rec.append(recall_at_k(i_ex, i, 10))
    assert rec[0] < rec[1] <= rec[2]
    np.testing.assert_array_equal(d, d_ex)  # all cells probed: exact distances
    with pytest.raises(ValueError, match="ef_search"):
        idx.set_search_params(ef_search=3)


def test_float_ivfpq_vs_faiss_flat(data):
    x, _, xq, _ = data
    gt = build_index("float_faiss", x, metric="cosine").search(xq, 10)[1]
    idx = build_index("float_ivfpq", x, metric="cosine", nlist=32, m=16, nprobe=32)
    d, i = idx.search(xq, 10)
    assert recall_at_k(gt, i, 10) >= 0.5  # PQ codes of 16 bytes, no rerank
    assert (np.diff(d, axis=1) <= 1e-6).all()  # similarities, descending


def test_missing_slots_are_minus_one_and_last(data):
    _, codes, _, q = data
    idx = build_index("binary_ivf", codes[:40], dim=DIM, nlist=20, nprobe=1)
    d, i = idx.search(q[:5], 10)
    # a probed cell of ~2 rows cannot fill 10 slots: padding ids are -1, sorted after real rows
    assert (i == -1).any()
    for row_d, row_i in zip(d, i):
        real = row_i >= 0
        assert real[: real.sum()].all() and (row_d[~real] == np.iinfo(np.int64).max).all()


def test_bad_input(data):
    _, codes, _, _ = data
    with pytest.raises(InputError, match="no codes"):
        build_index("binary_ivf", codes[:0], dim=DIM)
    x = np.ones((50, 16), np.float32)
    x[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        build_index("float_ivfpq", x, nlist=2, m=4, nbits=4)


@pytest.mark.parametrize("name", ["binary_ivf", "binary_hnsw"])
def test_save_load_roundtrip_and_content_key(tmp_path, data, name):
    _, codes, _, q = data
    idx = build_index(name, codes, dim=DIM)
    ref = idx.search(q, 10)
    path = idx.save(tmp_path / f"{name}.faiss")
    back = load_ann(path, codes)
    for a, b in zip(ref, back.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    assert back.key() == idx.key()
    other = codes.copy()
    other[5, 0] ^= 1  # one bit of one code differs
    with pytest.raises(ResumeMismatchError, match="content_sha256"):
        load_ann(path, other)
    with pytest.raises(ResumeMismatchError, match="ntotal"):
        load_ann(path, codes[:-1])


def test_load_refuses_other_params_and_tampered_file(tmp_path, data):
    _, codes, _, q = data
    idx = build_index("binary_ivf", codes, dim=DIM, nlist=32)
    path = idx.save(tmp_path / "ivf.faiss")
    with pytest.raises(ResumeMismatchError, match=r"params.nlist: 32 .* vs 64"):
        load_ann(path, codes, nlist=64)
    back = load_ann(path, codes, nlist=32, nprobe=32)  # query knobs are applied, not compared
    assert back.nprobe == 32
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ResumeMismatchError, match="index_sha256"):
        load_ann(path, codes)


def test_float_ivfpq_save_load(tmp_path, data):
    x, _, xq, _ = data
    idx = build_index("float_ivfpq", x, metric="l2", nlist=16, m=8, nbits=6)
    ref = idx.search(xq, 5)
    path = idx.save(tmp_path / "pq.faiss")
    back = load_ann(path, x, nprobe=16)
    for a, b in zip(ref, back.search(xq, 5)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ResumeMismatchError, match="metric"):
        load_ann(path, x, metric="cosine")
