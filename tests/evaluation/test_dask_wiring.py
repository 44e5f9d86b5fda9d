"""``dask=local`` / ``dask.scheduler=…`` reach the GeoPool and compression evaluators (Hydra), a
bad spec is one clear error before any work, and the GeoPool evaluator's job tables on a local
cluster equal the in-process ones."""

from __future__ import annotations

import pandas as pd
import pytest

from geoemb.data.eurosat_embed import EuroSATEmbedDataModule
from geoemb.errors import InputError
from geoemb.evaluation.compression import CompressionEvaluator
from geoemb.evaluation.geopool import GeoPoolEvaluator
from geoemb.run.context import RunContext
from geoemb.utils.dask import DaskSpec
from tests.helpers import compose_cfg


@pytest.mark.parametrize("experiment", ["geopool", "compression"])
@pytest.mark.parametrize("overrides, want", [([], "none"), (["dask=local"], "local:2"),
                                             (["dask=local", "dask.scheduler=tcp://h:8786"],
                                              "tcp://h:8786")])  # fmt: skip
def test_hydra_dask_reaches_the_evaluator(tmp_path, experiment, overrides, want):
    cfg = compose_cfg("eval", [f"experiment={experiment}", "data.synthetic=true", *overrides],
                      tmp_path)  # fmt: skip
    assert str(cfg.evaluation.dask) == want


def test_bad_spec_is_one_clear_error(tmp_path):
    dm = EuroSATEmbedDataModule(root=str(tmp_path), batch_size=16)
    with pytest.raises(InputError, match="local:N"):
        GeoPoolEvaluator(dm, dask="locale")
    with pytest.raises(InputError, match="patches per task"):
        GeoPoolEvaluator(dm, chunk_size=0)
    with pytest.raises(InputError, match="local:N"):
        CompressionEvaluator(mode="aggregate", dask="local:0")
    assert GeoPoolEvaluator(dm, dask="local:3").dask == DaskSpec("local", n_workers=3)


@pytest.mark.slow
def test_geopool_jobs_on_a_local_cluster_equal_in_process(syn_root, tmp_path, dask_local2):
    def run(name, dask):
        dm = EuroSATEmbedDataModule(root=str(syn_root), batch_size=16)
        ev = GeoPoolEvaluator(dm, encoders=["aef"], methods=["mean", "stats", "pca_8"],
                              probe={"C": 1.0}, progress=False, dask=dask, chunk_size=16,
                              aggregate=False)  # fmt: skip
        ev.run(RunContext.local(tmp_path / name, seed=0, device="cpu"))
        return {p.name: pd.read_csv(p) for p in sorted((tmp_path / name / "jobs").glob("*.csv"))}

    ref, got = run("none", None), run("dask", dask_local2.scheduler.address)
    assert list(got) == list(ref) == ["aef__mean.csv", "aef__pca_8.csv", "aef__stats.csv"]
    for k in ref:
        pd.testing.assert_frame_equal(got[k], ref[k], check_exact=True)
