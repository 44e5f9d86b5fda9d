"""Synthetic class-structured embedding tables with a planted low intrinsic dimension.

:func:`make_table` draws ``(N, D)`` float32 embeddings from a ``K``-class mixture on an
``m``-dimensional latent space (``m`` = planted intrinsic dimension), mapped into ``D`` dims by a
random linear map with decaying singular values plus a mild smooth non-linearity, a per-dimension
offset (so sign/mean/median thresholds differ) and small isotropic noise.

:func:`generate` writes the GeoPool pooled-feature cache layout
``<root>/embeddings/<encoder>/<method>/{standard,spatial}.npz`` (arrays ``x_train, y_train,
x_test, y_test``; ``reference/geopool.md``) for a few stand-in encoders, so the compression study
runs end to end without real data. Outputs are labelled synthetic (``data_source`` in ``meta.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from geoemb.utils.io import atomic_path, atomic_write_text

#: Stand-in encoders: name -> (D, planted intrinsic dim). Dimensions follow the blog's models.
DEFAULT_ENCODERS: dict[str, tuple[int, int]] = {
    "aef": (64, 10),
    "olmoearth-nano": (128, 8),
    "tessera": (512, 6),
    "dinov3": (1024, 16),
}

#: EuroSAT random split as GeoPool uses it (train / test only).
EUROSAT_TRAIN, EUROSAT_TEST = 16_200, 5_400
#: Bumped when the generated data change for the same parameters (invalidates old caches).
#: 2: each table is seeded by (seed, encoder, method, split) *names*, not list positions.
GENERATOR_VERSION = 2


def table_seed(seed: int, encoder: str, method: str, split: str) -> int:
    """Stable 64-bit seed of one table from its names (not Python's salted ``hash()``).

    An encoder's stand-in data are therefore identical whichever other encoders (or pooling
    methods) are generated with it.
    """
    key = json.dumps([int(seed), str(encoder), str(method), str(split)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def make_table(
    n_train: int,
    n_test: int,
    dim: int,
    num_classes: int = 10,
    intrinsic_dim: int = 8,
    noise: float = 0.05,
    class_sep: float | None = None,
    shift: float = 0.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Return ``{"x_train" (n_train, dim) f32, "y_train" (n_train,) i64, "x_test", "y_test"}``.

    ``class_sep`` (default ``4.2/√m``) scales the class means. ``shift`` moves the test distribution along a random latent direction (a stand-in for the
    spatial split's domain shift).
    """
    if not 1 <= intrinsic_dim <= dim:
        raise ValueError(f"intrinsic_dim must be in [1, dim={dim}], got {intrinsic_dim}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    m = intrinsic_dim
    if class_sep is None:  # keeps float32 kNN accuracy near EuroSAT's ~90-95 % for any m
        class_sep = 4.2 / np.sqrt(m)
    means = rng.standard_normal((num_classes, m)) * class_sep
    spread = rng.uniform(0.6, 1.2, size=(num_classes, m))
    # linear map with decaying spectrum
    u, _ = np.linalg.qr(rng.standard_normal((dim, m)))
    sv = 1.0 / np.sqrt(1.0 + np.arange(m))
    W = (u * sv).T * np.sqrt(dim / m)  # (m, dim)
    W2 = rng.standard_normal((m, dim)) / np.sqrt(m)
    offset = rng.normal(0.0, 0.3, size=dim)
    direction = rng.standard_normal(m)
    direction /= np.linalg.norm(direction)
    probs = rng.dirichlet(np.full(num_classes, 8.0))

    def draw(n: int, sh: float) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(num_classes, size=n, p=probs)
        z = means[y] + rng.standard_normal((n, m)) * spread[y] + sh * direction
        x = z @ W + 0.3 * np.sin(z @ W2) + offset + noise * rng.standard_normal((n, dim))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train, 0.0)
    x_test, y_test = draw(n_test, shift)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def generate(
    root: str | Path,
    encoders: dict[str, tuple[int, int]] | None = None,
    n_train: int = EUROSAT_TRAIN,
    n_test: int = EUROSAT_TEST,
    methods: tuple[str, ...] = ("mean",),
    num_classes: int = 10,
    seed: int = 0,
) -> Path:
    """Write ``<root>/embeddings/<encoder>/<method>/{standard,spatial}.npz``; return ``<root>/embeddings``.

    Skips the work when ``<root>/embeddings/.complete`` exists with the same parameters. Each
    table is seeded by :func:`table_seed` from its encoder/method/split names, so an encoder's data
    do not depend on which other encoders are requested.
    """
    encoders = dict(DEFAULT_ENCODERS if encoders is None else encoders)
    out = Path(root) / "embeddings"
    params = {
        "generator_version": GENERATOR_VERSION,
        "encoders": {k: list(v) for k, v in encoders.items()},
        "n_train": n_train,
        "n_test": n_test,
        "methods": list(methods),
        "num_classes": num_classes,
        "seed": seed,
        "data_source": "synthetic",
    }
    marker = out / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return out
    for enc, (dim, m) in encoders.items():
        for method in methods:
            for split, shift in (("standard", 0.0), ("spatial", 0.8)):
                tab = make_table(
                    n_train, n_test, dim, num_classes, m, shift=shift,
                    seed=table_seed(seed, enc, method, split),
                )  # fmt: skip
                target = out / enc / method / f"{split}.npz"
                with atomic_path(target) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **tab)
    atomic_write_text(out / "meta.json", json.dumps(params, indent=2))
    atomic_write_text(marker, json.dumps(params))
    return out
