"""Synthetic stand-in for a float32 embedding corpus (LGND Clay v1.5 style Parquet parts).

Layout written by :func:`generate` (what ``python -m geoemb.retrieval build-corpus`` reads)::

    root/part-00000.parquet ...   id int64, lon/lat float64 (chip centre), bbox struct<xmin, ymin,
                                  xmax, ymax> (chip footprint), embedding FixedSizeList<float32>[D]
    root/_SUCCESS                 completion marker

Embeddings have a low intrinsic dimension (``latent_dim``) and a spatial signal: each location
belongs to the nearest of ``n_clusters`` random "land-cover sites", whose latent centre it shares,
plus latent and ambient noise and a common offset (real embeddings are not centred).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geoemb.utils.io import atomic_path, atomic_write_text

MARKER = "_SUCCESS"


def make_embeddings(
    n: int,
    dim: int = 1024,
    latent_dim: int = 16,
    n_clusters: int = 64,
    noise: float = 0.25,
    seed: int = 0,
    bounds: tuple[float, float, float, float] = (-180.0, -60.0, 180.0, 75.0),
    chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(X (n, dim) float32, lon (n,), lat (n,))`` with a learnable spatial signal."""
    rng = np.random.default_rng(seed)
    w, s, e, nb = bounds
    lon = rng.uniform(w, e, n)
    lat = rng.uniform(s, nb, n)
    site_lon = rng.uniform(w, e, n_clusters)
    site_lat = rng.uniform(s, nb, n_clusters)
    scales = 1.0 / np.sqrt(1.0 + np.arange(latent_dim))
    centers = rng.standard_normal((n_clusters, latent_dim)) * scales
    mix = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
    offset = 0.3 * rng.standard_normal(dim)
    x = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        d2 = (lon[a:b, None] - site_lon[None]) ** 2 + (lat[a:b, None] - site_lat[None]) ** 2
        cl = np.argmin(d2, axis=1)
        z = centers[cl] + 0.5 * scales * rng.standard_normal((b - a, latent_dim))
        x[a:b] = z @ mix + offset + noise * rng.standard_normal((b - a, dim)) / np.sqrt(dim / 64)
    return x, lon, lat


def generate(
    root: str | os.PathLike,
    n: int = 20000,
    dim: int = 128,
    parts: int = 4,
    chip_deg: float = 0.05,
    seed: int = 0,
    bounds: tuple[float, float, float, float] = (-180.0, -60.0, 180.0, 75.0),
) -> Path:
    """Write ``parts`` Parquet files with ``n`` rows in total; skip if the marker exists."""
    root = Path(root)
    if (root / MARKER).exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    x, lon, lat = make_embeddings(n, dim, seed=seed, bounds=bounds)
    half = chip_deg / 2
    bounds_ = np.stack([np.clip(lon - half, -180, 180), np.clip(lat - half, -90, 90),
                        np.clip(lon + half, -180, 180), np.clip(lat + half, -90, 90)], 1)  # fmt: skip
    for p, idx in enumerate(np.array_split(np.arange(n), parts)):
        bbox = pa.StructArray.from_arrays(
            [pa.array(bounds_[idx, j]) for j in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
        )
        table = pa.table({
            "id": pa.array(idx.astype(np.int64)), "lon": pa.array(lon[idx]),
            "lat": pa.array(lat[idx]), "bbox": bbox,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[idx].reshape(-1)), dim),
        })  # fmt: skip
        with atomic_path(root / f"part-{p:05d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
    atomic_write_text(root / MARKER, "ok\n")
    return root
