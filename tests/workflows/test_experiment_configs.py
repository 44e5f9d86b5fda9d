"""Experiment files that inherit from a sibling compose exactly as the sibling plus what differs.

``pool_gem/pma/bilinear`` inherit from ``pool_attention`` and ``rsc_segformer_b0/b2`` from
``rsc_unet_r18`` (issue 11: they were near-copies). Each must compose to its parent's config with
only the intended keys changed — the head/net, ``experiment_name`` and ``tags``. (When the files were
rewritten, all nine training experiments were also checked against a snapshot of the copies'
composed configs: identical.) The evaluators' renamed-key tombstones are checked in
``tests/run/test_renamed.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_cfg

CHILDREN = {
    "pool_gem": ("pool_attention", "model/head=gem", "model.head"),
    "pool_pma": ("pool_attention", "model/head=pma", "model.head"),
    "pool_bilinear": ("pool_attention", "model/head=lowrank_bilinear", "model.head"),
    "rsc_segformer_b0": ("rsc_unet_r18", "model/net=segformer_mit_b0", "model.net"),
    "rsc_segformer_b2": ("rsc_unet_r18", "model/net=segformer_mit_b2", "model.net"),
}


def _compose(root: str, overrides: list[str]) -> dict:
    cfg = compose_cfg(root, overrides, Path("/T"), Path("/D"))
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_child_is_its_parent_plus_the_intended_keys(child):
    parent, override, _ = CHILDREN[child]
    got = _compose("train", [f"experiment={child}"])
    want = _compose("train", [f"experiment={parent}", override])
    part = override.split("=")[1]
    assert got["tags"] == want["tags"][:-1] + [part]  # the last tag names the head/net
    assert got["experiment_name"] == child and want["experiment_name"] == parent
    for k in ("tags", "experiment_name"):
        got.pop(k), want.pop(k)
    assert got == want


def test_inheriting_files_set_only_what_differs():
    conf = Path(__file__).resolve().parents[2] / "conf" / "experiment"
    for name, (parent, _, _) in CHILDREN.items():
        lines = [ln for ln in (conf / f"{name}.yaml").read_text().splitlines()
                 if not ln.lstrip().startswith("#")]  # fmt: skip
        assert f"  - {parent}" in lines, name
        assert not any(ln.startswith(("trainer:", "monitor", "model:", "data:")) for ln in lines)
