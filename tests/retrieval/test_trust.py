"""Retrieval trust rules: GEMM Hamming dtypes, evaluator input validation and failure policy."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from geoemb.compression.bitpack import pack_bits
from geoemb.data.embedding_corpus import EmbeddingCorpusSource
from geoemb.errors import InputError
from geoemb.evaluation.retrieval import RetrievalEvaluator
from geoemb.retrieval import build_index
from geoemb.retrieval.hamming import hamming_reference
from geoemb.retrieval.search import HammingGemmIndex, gemm_dtype
from geoemb.retrieval.study import recall_table
from geoemb.run.context import RunContext
from geoemb.utils.run_logger import RunLogger

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _oracle(q, db, dim, k):
    ref = hamming_reference(q, db, dim)
    order = np.lexsort((np.broadcast_to(np.arange(ref.shape[1]), ref.shape), ref), axis=1)[:, :k]
    return np.take_along_axis(ref, order, 1), order


@pytest.mark.parametrize("dim", [2048, 2056, 4096])
@pytest.mark.parametrize("device", DEVICES)
def test_gemm_dtypes_agree_beyond_2048_bits(device, dim):
    """CUDA caches the ±1 database in its GEMM dtype; above 2048 bits that used to be fp16 while
    queries were fp32 (dtype error). On CPU the CUDA code path is emulated: the dtype CUDA picks
    (``gemm_dtype("cuda", dim)``) with the database cached unpacked, as on CUDA."""
    rng = np.random.default_rng(dim)
    db = pack_bits(rng.random((96, dim)) < 0.5)
    q = np.concatenate([pack_bits(rng.random((6, dim)) < 0.5), db[:3]])
    expect = torch.float16 if dim <= 2048 else torch.float32
    assert gemm_dtype("cuda", dim) == expect and gemm_dtype("cpu", dim) == torch.float32
    if device == "cuda":
        index = HammingGemmIndex(db, dim=dim, device="cuda", chunk_size=40)
    else:
        index = HammingGemmIndex(db, dim=dim, device="cpu", chunk_size=40, cache_unpacked=True,
                                 dtype=gemm_dtype("cuda", dim))  # fmt: skip
    assert index.dtype == expect and all(c.dtype == expect for c in index._chunks)
    d, i = index.search(q, 10)
    rd, ri = _oracle(q, db, dim, 10)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(d, rd)


def test_gemm_refuses_inexact_dtypes():
    db = pack_bits(np.random.default_rng(0).random((8, 4096)) < 0.5)
    with pytest.raises(ValueError, match="not exact for 4096-bit"):
        HammingGemmIndex(db, dim=4096, dtype=torch.float16)
    with pytest.raises(ValueError, match="not exact for 512-bit"):
        build_index("hamming_gemm", db[:, :64], dim=512, dtype=torch.bfloat16)


def _corpus(n=400, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + 0.3).astype(np.float32)


def _ev(path=None, n_corpus=400, dim=32, root=None, **kw):
    data = EmbeddingCorpusSource(path=path, synthetic=path is None, synthetic_root=root,
                                 synthetic_kwargs={"n": n_corpus, "dim": dim, "seed": 0})  # fmt: skip
    args = dict(data=data, n_queries=20, ks=(1, 10), methods=("binary", "int8"),
                backends=("hamming_numpy", "float_torch"))  # fmt: skip
    args.update(kw)
    return RetrievalEvaluator(**args)


def _ctx(path):
    return RunContext.local(path, logger=RunLogger(None))


def test_evaluator_refuses_wrong_shapes_and_dtypes(tmp_path):
    cases = {
        "one_d.npy": np.zeros(50, np.float32),
        "ints.npy": np.ones((50, 4), np.int64),
        "few.npy": _corpus(8),
        "strings.npy": np.array([["a", "b"]] * 20),
    }
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            _ev(str(tmp_path / name)).run(_ctx(tmp_path / "out"))
    with pytest.raises(InputError, match="recall_table x.*row 3"):
        x = _corpus()
        x[3, 0] = np.nan
        recall_table(x, np.arange(5), ["binary"], ks=(1,))


def test_unknown_names_fail_before_any_work():
    with pytest.raises(ValueError, match="compression config"):
        _ev(methods=("binary", "int9"))
    with pytest.raises(ValueError, match="backends"):
        _ev(backends=("hamming_nope",))
    with pytest.raises(ValueError, match="metrics"):
        _ev(metrics=("cosine", "hamming"))


def test_infeasible_method_is_skipped_with_reason(tmp_path, caplog):
    # pq_8x8 needs >= 256 train rows; the corpus has 200: skipped, reason in the table
    with caplog.at_level(logging.WARNING):
        m = _ev(n_corpus=200, methods=("binary", "pq_8x8"), metrics=("l2",),
                root=tmp_path / "data").run(_ctx(tmp_path))  # fmt: skip
    assert "skipping pq_8x8" in caplog.text
    rec = pd.read_csv(tmp_path / "retrieval_recall.csv")
    row = rec.set_index("method").loc["pq_8x8"]
    assert "200 training rows < 2^nbits=256" in row["skipped"] and np.isnan(row["recall@10"])
    assert "test/recall@10/l2/binary" in m and not any("pq_8x8" in k for k in m)


def test_failing_method_fails_the_run_and_writes_no_table(tmp_path, monkeypatch):
    import geoemb.compression.quantizers as qz

    def boom(self, X):
        raise ValueError("simulated failure inside int8")

    monkeypatch.setattr(qz.AffineQuantizer, "_fit", boom)
    with pytest.raises(ValueError, match="simulated failure"):
        _ev(root=tmp_path / "data").run(_ctx(tmp_path))
    assert not list(tmp_path.glob("retrieval_*"))
