"""Shared fixtures of the geoemb.data tests: small synthetic EuroSAT-Embed trees (once per session).

The Earth Surface Water fixtures are in ``tests/data/esw/conftest.py``.
"""

from __future__ import annotations

import pytest

from geoemb.data.synthetic.eurosat_embed import generate


@pytest.fixture(scope="session")
def syn_root(tmp_path_factory):
    """6 patches/class, aef + olmoearth-nano + tessera (uint8 128), 64x64 (+ one 63x64 file)."""
    root = tmp_path_factory.mktemp("eurosat_embed")
    return generate(root, n_per_class=6, encoders=("aef", "olmoearth-nano", "tessera"), seed=0)


@pytest.fixture(scope="session")
def syn_legacy(tmp_path_factory):
    """Other formats, tiny files: Tessera 512-d float32 (ICLR) and OlmoEarth-tiny, 16x16 files."""
    root = tmp_path_factory.mktemp("eurosat_embed_legacy")
    return generate(
        root, n_per_class=5, encoders=("tessera", "olmoearth-tiny"), tessera_bands=512, size=16
    )
