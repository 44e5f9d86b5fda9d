"""Shared fixtures: small synthetic EuroSAT-Embed trees (generated once per session).

Test packages that need them import the fixtures in their ``conftest.py``.
"""

from __future__ import annotations

import pytest
import torch

from geoemb.synthetic.eurosat_embed import generate


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


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster on the shared 2-core CI box (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _one_torch_thread_auto(one_torch_thread):
    """Autouse form of :func:`one_torch_thread` for packages that import it."""
    yield
