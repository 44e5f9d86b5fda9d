"""Retrieval evaluator wiring: data node, run context, renamed keys, Hydra composition."""

from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest

from geoemb.data.embedding_corpus import EmbeddingCorpusSource
from geoemb.errors import DataNotFoundError, InputError
from geoemb.evaluation.retrieval import RetrievalEvaluator
from geoemb.run.context import RunContext
from geoemb.utils.run_logger import RunLogger
from tests.helpers import compose_cfg


def test_evaluator_runs_on_an_npy_corpus_with_the_run_seed(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ev = RetrievalEvaluator(EmbeddingCorpusSource(path=tmp_path / "x.npy"), methods=["binary"],
                            backends=["hamming_numpy", "float_cdist"], ks=[1, 10],
                            metrics=["l2"], n_queries=15)  # fmt: skip
    logger = RunLogger(None)
    m1 = ev.run(RunContext.local(tmp_path / "a", seed=3, logger=logger))
    assert m1["test/n_corpus"] == 300 and 0 < m1["test/recall@10/l2/binary"] <= 1
    assert {"test/qps/hamming_numpy", "test/qps/float_cdist"} <= set(m1)
    assert (tmp_path / "a" / "data_source.txt").read_text() == "real\n"
    rec = pd.read_csv(tmp_path / "a" / "retrieval_recall.csv")
    # the queries are drawn with the run's seed: same seed, same recall; the table is the library's
    m2 = ev.run(RunContext.local(tmp_path / "b", seed=3))
    assert m2["test/recall@10/l2/binary"] == m1["test/recall@10/l2/binary"]
    assert pd.read_csv(tmp_path / "b" / "retrieval_recall.csv")["recall@1"].equals(rec["recall@1"])


def test_renamed_keys_and_missing_data(tmp_path):
    data = EmbeddingCorpusSource(path=tmp_path / "none.npy")
    for key, new in [("embeddings_path", "data.path"), ("n_corpus", "data.synthetic_kwargs.n"),
                     ("dim", "data.synthetic_kwargs.dim")]:  # fmt: skip
        with pytest.raises(InputError, match=f"evaluation.{key} was renamed: use {new}"):
            compose_cfg("eval", ["experiment=retrieval", f"evaluation.{key}=5"], tmp_path)
    with pytest.raises(InputError, match="evaluation.data is not set"):
        RetrievalEvaluator(None)
    with pytest.raises(InputError, match="cannot be timed"):
        RetrievalEvaluator(data, backends=["dequantized"])
    cfg = compose_cfg("eval", ["experiment=retrieval"], tmp_path)
    assert cfg.data.synthetic is False
    ev = hydra.utils.instantiate(cfg.evaluation, _convert_="partial")
    with pytest.raises(DataNotFoundError, match=r"embedding_corpus.*data\.synthetic=true"):
        ev.run(RunContext.local(tmp_path / "run"))
    with pytest.raises(InputError, match="use data.path"):
        compose_cfg("eval", ["experiment=retrieval", "evaluation.embeddings_path=/x.npy"], tmp_path)


@pytest.mark.slow
def test_evaluate_py_experiment_retrieval_synthetic(tmp_path):
    from geoemb.tasks import evaluate

    cfg = compose_cfg("eval", [
        "experiment=retrieval", "data.synthetic=true", "data.synthetic_kwargs.n=600",
        "data.synthetic_kwargs.dim=32", "evaluation.n_queries=20", "evaluation.ks=[1,10]",
        "evaluation.methods=[binary,int8]", "evaluation.backends=[hamming_numpy,float_torch]",
        "logger=none",
    ], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["test/n_corpus"] == 600 and 0 < metrics["test/recall@10/cosine/int8"] <= 1
    out = Path(cfg.paths.output_dir)
    assert (out / "retrieval_recall.md").exists() and (out / "data_source.txt").read_text() == (
        "synthetic\n"
    )
