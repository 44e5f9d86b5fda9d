"""DataModule plumbing: ``num_workers: null`` resolves to what the machine has."""

from __future__ import annotations

import pytest

from geoemb.data import base
from geoemb.data.chesapeake_rsc import ChesapeakeRSCDataModule
from geoemb.errors import InputError


@pytest.mark.parametrize("cpus,expected", [(1, 0), (2, 1), (4, 3), (16, 8), (64, 8)])
def test_auto_workers_leave_one_core_and_cap_at_8(monkeypatch, cpus, expected):
    monkeypatch.setattr(base, "usable_cpus", lambda: cpus)
    assert base.resolve_num_workers(None) == expected
    assert base.resolve_num_workers("auto") == expected
    assert base.resolve_num_workers(5) == 5 and base.resolve_num_workers(0) == 0


@pytest.mark.parametrize("bad", [-1, "many", 1.5, True])
def test_bad_worker_count_names_the_key(bad):
    with pytest.raises(InputError, match="data.num_workers"):
        base.resolve_num_workers(bad)


def test_usable_cpus_is_at_most_the_affinity_mask():
    import os

    n = base.usable_cpus()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_datamodule_loaders_use_the_resolved_count(monkeypatch, tmp_path):
    """Regression: ``num_workers: 8`` on a 2-core machine (4 warnings per run); ``null`` now
    asks for what the machine has."""
    monkeypatch.setattr(base, "usable_cpus", lambda: 2)
    dm = ChesapeakeRSCDataModule(root=str(tmp_path), num_workers=None)
    assert dm.num_workers == 1
    monkeypatch.setattr(base, "usable_cpus", lambda: 1)
    assert dm.num_workers == 0
