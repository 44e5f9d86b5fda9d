"""Renamed config keys: one table (:data:`geoemb.run.renamed.RENAMED`), checked once by every task.

Each old spelling is a ``null`` tombstone in its evaluator's yaml (so Hydra accepts the override);
setting it stops the run before any work with one :class:`InputError` naming the new key, and a
``null`` tombstone never reaches a constructor.
"""

from __future__ import annotations

import copy
import inspect
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import InputError
from geoemb.run.renamed import RENAMED, check_renamed, renamed_for
from tests.helpers import compose_cfg

ROOT = Path(__file__).resolve().parents[2]

#: evaluator experiment -> the evaluator it runs (every evaluator scope of the table has one)
EXPERIMENTS = {
    "compression": "geoemb.evaluation.compression.CompressionEvaluator",
    "geopool": "geoemb.evaluation.geopool.GeoPoolEvaluator",
    "retrieval": "geoemb.evaluation.retrieval.RetrievalEvaluator",
    "rsc_analysis": "geoemb.evaluation.rsc_analysis.RSCAnalysis",
    "zonal_stats": "geoemb.evaluation.zonal.ZonalStatsEvaluator",
}

#: the old spellings issue 11 names, as a user would type them -> the new spelling
ISSUE_11 = [
    ("compression", "evaluation.synthetic=true", "data.synthetic=true"),
    ("geopool", "evaluation.synthetic=true", "data.synthetic=true"),
    ("zonal_stats", "evaluation.synthetic=true", "data.synthetic=true"),
    ("retrieval", "evaluation.embeddings_path=/x/emb.npy", "data.path"),
    ("compression", "evaluation.linear_Cs=[1.0]", "evaluation.probe.Cs"),
    ("compression", "evaluation.linear_cv=5", "evaluation.probe.cv"),
    ("compression", "evaluation.linear_C=1.0", "evaluation.probe.C"),
    ("geopool", "evaluation.Cs=[1.0]", "evaluation.probe.Cs"),
    ("geopool", "evaluation.cv=5", "evaluation.probe.cv"),
    ("geopool", "evaluation.linear_C=1.0", "evaluation.probe.C"),
]

#: old evaluator arguments that tasks.py used to inject (never a yaml key; `+evaluation.x=` is caught)
NEVER_IN_YAML = {"evaluation.trust_checkpoint"}


_COMPOSED: dict[str, DictConfig] = {}


def _raw(experiment: str, overrides: list[str] = (), tmp_path: Path | None = None) -> DictConfig:
    """The config as Hydra hands it to the task (tombstones in place); plain ones composed once."""
    if overrides or tmp_path is not None:
        return compose_cfg("eval", [f"experiment={experiment}", *overrides], tmp_path,
                           tombstones=True)  # fmt: skip
    if experiment not in _COMPOSED:
        _COMPOSED[experiment] = compose_cfg("eval", [f"experiment={experiment}"], tombstones=True)
    return copy.deepcopy(_COMPOSED[experiment])


def test_every_evaluator_scope_has_an_experiment():
    assert set(RENAMED) - {"*"} == set(EXPERIMENTS.values())


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_table_and_yaml_tombstones_agree(experiment):
    """Every table entry is a ``null`` tombstone of the yaml and no live parameter; every key of the
    evaluation node is a constructor parameter or a tombstone; every new spelling exists."""
    cfg = _raw(experiment)
    assert cfg.evaluation._target_ == EXPERIMENTS[experiment]
    table = renamed_for(cfg)
    params = set(inspect.signature(hydra.utils.get_class(EXPERIMENTS[experiment])).parameters)
    node = OmegaConf.to_container(cfg.evaluation, resolve=False)
    for old, new in table.items():
        leaf = old.split(".", 1)[1]
        if old in NEVER_IN_YAML:  # was passed by code, never a yaml key: only `+old=...` reaches it
            assert leaf not in node, old
        else:
            assert leaf in node and node[leaf] is None, old  # Hydra accepts the override
        assert leaf not in params, old  # a tombstone is never a live knob
        target = new.split("=")[0].split(" ")[0]
        parts = target.split(".")[:2]  # data.synthetic_kwargs.n: the node exists (may be null)
        assert OmegaConf.select(cfg, ".".join(parts), default="MISSING") != "MISSING", (old, new)
    orphans = set(node) - params - {"_target_"} - {k.split(".", 1)[1] for k in table}
    if experiment == "geopool":  # and the user's `+` spelling is caught too
        with pytest.raises(InputError, match="trust_checkpoint was renamed: use trust_checkpoint"):
            check_renamed(_raw(experiment, ["+evaluation.trust_checkpoint=true"]))
    assert not orphans, orphans


@pytest.mark.parametrize(
    "experiment, old",
    [(e, k) for e, t in EXPERIMENTS.items() for k in RENAMED[t]],
)
def test_every_old_spelling_names_the_new_one(experiment, old):
    cfg = _raw(experiment)
    check_renamed(copy.deepcopy(cfg))  # the yaml's null tombstones pass
    with open_dict(cfg):
        OmegaConf.update(cfg, old, 1, force_add=True)
    new = RENAMED[EXPERIMENTS[experiment]][old]
    with pytest.raises(InputError) as err:
        check_renamed(cfg)
    assert str(err.value) == f"{old} was renamed: use {new}"


@pytest.mark.parametrize("experiment, override, new", ISSUE_11)
def test_issue_11_spellings_stop_the_task_before_any_work(experiment, override, new, tmp_path):
    """The real task refuses the override the user typed, before the run dir is made."""
    from geoemb import tasks

    cfg = _raw(experiment, [override, "logger=none"], tmp_path)
    with pytest.raises(InputError, match=rf"{override.split('=')[0]} was renamed: use {new}"):
        tasks.evaluate(cfg)
    assert not Path(cfg.paths.output_dir).exists()
    with pytest.raises(InputError, match="was renamed"):  # the test helper composes the same way
        compose_cfg("eval", [f"experiment={experiment}", override], tmp_path)


def test_null_tombstones_are_dropped_and_live_namesakes_kept():
    """``evaluation.pooling`` is zonal's live node but compression's tombstone; ``device`` is live
    for compression and a tombstone for geopool."""
    zonal, comp, geo = _raw("zonal_stats"), _raw("compression"), _raw("geopool")
    for cfg in (zonal, comp, geo):
        check_renamed(cfg)
    assert zonal.evaluation.pooling.method == "mean_std" and "synthetic" not in zonal.evaluation
    assert "pooling" not in comp.evaluation and comp.evaluation.device == "cpu"
    assert "device" not in geo.evaluation and "Cs" in geo.evaluation.probe
    assert hydra.utils.instantiate(comp.evaluation, _convert_="partial").study.probe.cv == 3


def test_all_hits_in_one_error():
    cfg = _raw("compression", ["evaluation.synthetic=true", "evaluation.linear_cv=5"])
    with pytest.raises(InputError) as err:
        check_renamed(cfg)
    msg = str(err.value)
    assert "evaluation.synthetic was renamed: use data.synthetic=true" in msg
    assert "evaluation.linear_cv was renamed: use evaluation.probe.cv" in msg


@pytest.mark.slow
def test_entry_point_prints_the_new_spelling(tmp_path):
    """``python evaluate.py experiment=compression evaluation.synthetic=true`` exits non-zero with
    the error naming ``data.synthetic=true`` and writes nothing."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT / "src")}
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "experiment=compression", "evaluation.synthetic=true",
         "logger=none", f"paths.output_dir={run}", f"hydra.run.dir={run}",
         f"paths.data_dir={tmp_path / 'data'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "evaluation.synthetic was renamed: use data.synthetic=true" in proc.stderr + proc.stdout
    assert not (run / "results.csv").exists() and not (tmp_path / "data").exists()
