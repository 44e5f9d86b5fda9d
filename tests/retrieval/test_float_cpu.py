"""CPU path of ``float_torch`` (BLAS GEMM blocks + fused numba top-k) vs the torch path and FAISS."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from geoemb.errors import InputError
from geoemb.retrieval.search import build_index


def _torch_path(idx, q, k):
    """The generic torch path (matmul + topk + merge), reached with a query that needs grad."""
    qt = torch.from_numpy(q).requires_grad_(True)
    d, i = idx.search(qt, k)
    return d.detach().numpy(), i.numpy()


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize(("block", "k"), [(7, 5), (64, 40), (4096, 10)])
def test_cpu_blocks_equal_torch_path(metric, block, k):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((300, 17)).astype(np.float32)
    x[100:160] = x[40]  # exact duplicates across block boundaries: ties must go to smaller ids
    x = np.round(x * 4) / 4  # coarse grid -> many exactly equal distances
    q = np.round(rng.standard_normal((23, 17)).astype(np.float32) * 4) / 4
    q[3] = x[40]
    idx = build_index("float_torch", x, metric=metric, chunk_size=50)
    idx.cpu_block = block
    d, i = idx.search(q, k)
    rd, ri = _torch_path(idx, q, k)
    if metric != "cosine":  # quarter-integer grid: every product and sum is exact in float32
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, rd)
    else:  # normalised products round per GEMM kernel (torch vs BLAS, position in the block)
        np.testing.assert_allclose(d, rd, rtol=1e-6, atol=1e-6)
        gap = np.diff(rd, axis=1, prepend=np.inf, append=-np.inf)
        clear = (np.abs(gap[:, :-1]) > 1e-5) & (np.abs(gap[:, 1:]) > 1e-5)
        clear[:, -1] = False  # the k-th may tie (to rounding) with unseen rows beyond k
        np.testing.assert_array_equal(i[clear], ri[clear])
        assert clear.mean() > 0.3
    if metric != "cosine":
        assert i[3, 0] == 40 and list(i[3, 1 : min(k, 61)]) == list(range(100, min(k, 61) + 99))


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_cpu_path_matches_faiss(metric):
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2000, 48)).astype(np.float32)
    q = rng.standard_normal((50, 48)).astype(np.float32)
    fi = faiss.IndexFlatL2(48) if metric == "l2" else faiss.IndexFlatIP(48)
    fi.add(x)
    fd, fidx = fi.search(q, 10)
    idx = build_index("float_torch", x, metric=metric)
    idx.cpu_block = 300
    d, i = idx.search(q, 10)
    np.testing.assert_array_equal(i, fidx)  # random data: no ties
    np.testing.assert_allclose(d, fd, rtol=1e-4, atol=1e-3)


def test_k_larger_than_database_and_torch_queries():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    idx = build_index("float_torch", x, metric="l2")
    idx.cpu_block = 4
    d, i = idx.search(torch.from_numpy(x[:2]), 50)
    assert isinstance(i, torch.Tensor) and i.shape == (2, 6)
    assert i[0].tolist() == [0, 1, 2, 3, 4, 5] and i[1].tolist() == [1, 0, 2, 3, 4, 5]
    assert d[0, 0] == 0 and d[0, 1] == 8


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vectors_are_one_clear_error(bad):
    x = np.ones((10, 3), np.float32)
    x[7, 1] = bad
    with pytest.raises(InputError, match="database vectors.*row 7"):
        build_index("float_torch", x)
    idx = build_index("float_torch", np.ones((10, 3), np.float32))
    with pytest.raises(InputError, match="query vectors.*row 7"):
        idx.search(x, 3)
