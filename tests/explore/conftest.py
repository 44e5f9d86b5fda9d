"""Small corpora for the explorer tests (built once per session with the library's builder)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest

from geoemb.compression.bitpack import pack_bits
from geoemb.retrieval.store import CorpusBuilder, iter_parquet_parts
from geoemb.synthetic.retrieval_corpus import generate

BASE = "http://127.0.0.1"


def build_synthetic(root: Path, n: int = 3000, dim: int = 64, seed: int = 3,
                    bounds=(0.0, 40.0, 20.0, 50.0), chip_deg: float = 0.2,
                    precision: int = 3) -> Path:  # fmt: skip
    """``generate`` (float32 parts) + ``CorpusBuilder`` (sign codes), as the CLI does."""
    src = generate(root / "src", n=n, dim=dim, parts=2, chip_deg=chip_deg, bounds=bounds, seed=seed)
    corpus = root / "corpus"
    CorpusBuilder(corpus, dim=dim, geohash_precision=precision).build(
        iter_parquet_parts(sorted(glob.glob(str(src / "*.parquet")))), progress=False
    )
    return corpus


def build_from_arrays(root: Path, lon: np.ndarray, lat: np.ndarray, bits: np.ndarray,
                      half: float = 0.0, precision: int = 2) -> Path:  # fmt: skip
    """A corpus from explicit centroids and ``(n, L)`` bits (footprints ``±half`` degrees)."""
    n = len(lon)
    bbox = np.stack([lon - half, lat - half, lon + half, lat + half], 1) if half else None
    batch = {"id": np.arange(n, dtype=np.int64), "lon": lon, "lat": lat, "code": pack_bits(bits)}
    if bbox is not None:
        batch["bbox"] = bbox
    CorpusBuilder(root, dim=bits.shape[1], geohash_precision=precision).build([batch],
                                                                             progress=False)  # fmt: skip
    return root


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    return build_synthetic(tmp_path_factory.mktemp("explore_corpus"))


@pytest.fixture(scope="session")
def antimeridian_corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    n = 400
    lon = np.where(rng.random(n) < 0.5, rng.uniform(175, 180, n), rng.uniform(-180, -175, n))
    lat = rng.uniform(-5, 5, n)
    bits = rng.random((n, 32)) < 0.5
    return build_from_arrays(tmp_path_factory.mktemp("explore_am"), lon, lat, bits, half=0.05)


@pytest.fixture(scope="session")
def app(small_corpus, tmp_path_factory):
    from geoemb.explore import create_app

    return create_app(small_corpus, cache_dir=tmp_path_factory.mktemp("explore_cache"))


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="session")
def store(small_corpus):
    from geoemb.retrieval.store import CorpusStore

    return CorpusStore(small_corpus)
