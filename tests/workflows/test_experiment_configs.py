"""Experiment files that inherit from a sibling compose exactly as the copies they replaced.

``experiment_snapshot.json`` holds the composed (unresolved) configs taken before the experiment
files were rewritten to inherit (``pool_gem/pma/bilinear`` from ``pool_attention``,
``rsc_segformer_b0/b2`` from ``rsc_unet_r18``). Training experiments must compose identically; the
evaluator experiments changed only their ``evaluation`` node (new parameter objects, old keys kept
as ``null`` tombstones) and compose the ``data`` node.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_cfg

SNAPSHOT = json.loads((Path(__file__).with_name("experiment_snapshot.json")).read_text())


def _compose(key: str) -> dict:
    root, name = key.split(":")
    cfg = compose_cfg(root, [f"experiment={name}"], Path("/T"), Path("/D"))
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("key", sorted(k for k in SNAPSHOT if k.startswith("train:")))
def test_training_experiments_compose_as_before(key):
    assert _compose(key) == SNAPSHOT[key]


def test_inheriting_files_set_only_what_differs():
    conf = Path(__file__).resolve().parents[2] / "conf" / "experiment"
    for name, parent in (("pool_gem", "pool_attention"), ("pool_pma", "pool_attention"),
                         ("pool_bilinear", "pool_attention"), ("rsc_segformer_b0", "rsc_unet_r18"),
                         ("rsc_segformer_b2", "rsc_unet_r18")):  # fmt: skip
        lines = [ln for ln in (conf / f"{name}.yaml").read_text().splitlines()
                 if not ln.lstrip().startswith("#")]  # fmt: skip
        assert f"  - {parent}" in lines, name
        assert not any(ln.startswith(("trainer:", "monitor", "model:", "data:")) for ln in lines)


# (old evaluation key, new location) — the tombstone stays null, the value moved
MOVED = {
    "eval:geopool": {"knn_k": "probe.knn_k", "Cs": "probe.Cs", "cv": "probe.cv",
                     "root": "data.root", "synthetic_root": "data.synthetic_root",
                     "synthetic_kwargs": "data.synthetic_kwargs", "values": "data.values",
                     "batch_size": "data.batch_size", "num_workers": "data.num_workers"},
    "eval:rsc_analysis": {"erf_images": "erf.images", "erf_per_class": "erf.per_class",
                          "erf_block": "erf.block", "erf_border": "erf.border",
                          "erf_percentiles": "erf.percentiles",
                          "overlap_percentile": "erf.overlap_percentile",
                          "overlap_multiple": "erf.overlap_multiple",
                          "trf_input_size": "trf.input_size",
                          "trf_max_input_size": "trf.max_input_size"},
}  # fmt: skip


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("key", ["eval:geopool", "eval:rsc_analysis"])
def test_evaluator_experiments_changed_only_their_evaluation_and_data(key):
    new, old = _compose(key), SNAPSHOT[key]
    assert {k: v for k, v in new.items() if k not in ("evaluation", "data")} == {
        k: v for k, v in old.items() if k not in ("evaluation", "data")
    }
    ev_new, ev_old = new["evaluation"], old["evaluation"]
    for k, where in MOVED[key].items():
        assert ev_new[k] is None, k  # tombstone
        holder = new if where.startswith("data.") else ev_new
        assert _get(holder, where) == ev_old[k], (k, where)
    untouched = set(ev_old) - set(MOVED[key]) - {"device", "seed", "synthetic", "linear",
                                                   "linear_C", "cache", "cache_dir", "trust_cache",
                                                   "data", "trf"}  # fmt: skip
    assert {k: ev_new[k] for k in untouched} == {k: ev_old[k] for k in untouched}
