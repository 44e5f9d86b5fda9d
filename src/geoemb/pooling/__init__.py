"""geoemb.pooling: pixel-to-patch pooling of embedding rasters (B, D, H, W) -> (B, F).

Training-free methods (GeoPool seed keys), parametric ``pca_64`` / ``bovw_128`` fitted on train
data, and learnable heads (:mod:`geoemb.pooling.heads`).

Examples
--------
>>> import torch
>>> from geoemb.pooling import pool, output_dim
>>> x = torch.randn(2, 64, 8, 8)
>>> pool(x, "stats").shape == (2, output_dim("stats", 64))
True
"""

from geoemb.pooling.parametric import BoVWState, PCAState
from geoemb.pooling.registry import (
    ALL_METHODS,
    PARAMETRIC,
    REGISTRY,
    TRAINING_FREE,
    fit_parametric,
    output_dim,
    pool,
    pool_many,
)

__all__ = [
    "ALL_METHODS",
    "PARAMETRIC",
    "REGISTRY",
    "TRAINING_FREE",
    "BoVWState",
    "PCAState",
    "fit_parametric",
    "output_dim",
    "pool",
    "pool_many",
]
