"""geoemb.pooling: pixel-to-patch pooling of embedding rasters (B, D, H, W) -> (B, F).

Training-free methods (GeoPool seed keys), parametric ``pca_64`` / ``bovw_128`` fitted on train
data, and learnable heads (:mod:`geoemb.pooling.heads`, registry ``HEADS``). Every method name is
resolved by :data:`METHODS` (:mod:`geoemb.pooling.registry`); ``print(METHODS.describe())`` lists
them.

Examples
--------
>>> import torch
>>> from geoemb.pooling import METHODS, pool, output_dim
>>> x = torch.randn(2, 64, 8, 8)
>>> pool(x, "stats").shape == (2, output_dim("stats", 64))
True
>>> METHODS.resolve("pca_16").meta["fit_on"], METHODS.resolve("bovw_32").meta["fit_on"]
('mean', 'pixels')
"""

from geoemb.pooling.parametric import BoVWState, PCAState
from geoemb.pooling.registry import (
    ALL_METHODS,
    METHODS,
    PARAMETRIC,
    TRAINING_FREE,
    fit_from_pooled,
    fit_parametric,
    infeasible_reason,
    output_dim,
    pool,
    pool_many,
    transform_pooled,
)

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "PARAMETRIC",
    "TRAINING_FREE",
    "BoVWState",
    "PCAState",
    "fit_from_pooled",
    "fit_parametric",
    "infeasible_reason",
    "output_dim",
    "pool",
    "pool_many",
    "transform_pooled",
]
