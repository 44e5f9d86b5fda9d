"""Fixtures for the Earth Surface Water tests: a small synthetic dataset, generated once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geoemb.synthetic import earth_surface_water as synth


@pytest.fixture(scope="session")
def esw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only shared synthetic ESW root (3 train + 2 val scenes, 256-320 px)."""
    root = tmp_path_factory.mktemp("esw") / "earth_surface_water"
    return synth.generate(root, seed=0)


@pytest.fixture()
def esw_copy(esw_root: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the synthetic root (for tests that break or touch files)."""
    dst = tmp_path / "esw"
    shutil.copytree(esw_root, dst)
    (dst / ".geoemb_esw_band_stats.json").unlink(missing_ok=True)
    for f in dst.rglob(".geoemb_esw_band_stats.json"):
        f.unlink()
    return dst


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """rasterio 1.4 + affine 3 emit PendingDeprecationWarning on every window op: silence here."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"))
