"""The configs that use the embedding products compose and run on their stand-ins (tiny sizes):
`evaluate.py experiment=retrieval data=clay|majortom data.synthetic=true`, and the raster
workflows (zonal_stats data=aef|tessera, geopool data=aef_points)."""

from __future__ import annotations

import pytest

from geoemb.tasks import evaluate
from tests.helpers import compose_cfg

QUICK_RETRIEVAL = ["evaluation.n_queries=10", "evaluation.methods=[binary,int8]",
                   "evaluation.backends=[hamming_numpy]", "evaluation.ks=[1,10]",
                   "~logger"]  # fmt: skip


@pytest.mark.parametrize(("data", "kw"), [
    ("clay", "data.synthetic_kwargs.dim=32"),
    ("clay", "+data.synthetic_kwargs.version=v0"),
    ("majortom", "data.synthetic_kwargs.dim=24"),
])  # fmt: skip
def test_retrieval_on_table_stand_ins(tmp_path, data, kw):
    cfg = compose_cfg("eval", ["experiment=retrieval", f"data={data}", "data.synthetic=true",
                               "data.synthetic_kwargs.n=300", kw, *QUICK_RETRIEVAL], tmp_path)  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["test/n_corpus"] > 200
    # int8 keeps the neighbours of a learnable corpus; binary less so, but far above chance
    assert metrics["test/recall@10/cosine/int8"] > 0.9
    assert metrics["test/recall@10/cosine/binary"] > 10 / metrics["test/n_corpus"] * 3
    assert (tmp_path / "run" / "data_source.txt").read_text().strip() == "synthetic"
