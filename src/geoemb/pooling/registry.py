"""Pooling registry: method keys (the GeoPool seed keys) -> callables and output dims."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import Tensor

from geoemb.pooling import functional as F
from geoemb.pooling import parametric as P

TRAINING_FREE: list[str] = list(F.TRAINING_FREE)
PARAMETRIC: list[str] = list(P.PARAMETRIC)
ALL_METHODS: list[str] = TRAINING_FREE + PARAMETRIC

#: name -> callable(x, mask=None, empty="raise") for the training-free methods
REGISTRY: dict[str, Callable[..., Tensor]] = {m: getattr(F, f"pool_{m}") for m in TRAINING_FREE}


def _parametric_kind(method: str) -> tuple[str, int] | None:
    kind, _, num = method.partition("_")
    if kind in ("pca", "bovw") and num.isdigit():
        return kind, int(num)
    return None


def output_dim(method: str, D: int) -> int:  # noqa: N803 - D is the conventional name
    """Pooled feature dimension of ``method`` for embedding dimension ``D``.

    ``pca_<k>`` -> k, ``bovw_<K>`` -> K (as the reference's ``get_output_dim``).
    """
    if method in TRAINING_FREE:
        return F.training_free_dim(method, D)
    pk = _parametric_kind(method)
    if pk is not None:
        return pk[1]
    raise ValueError(F.unknown_method_message(method))


def pool(
    x: Tensor | np.ndarray,
    method: str,
    mask: Tensor | np.ndarray | None = None,
    state: P.PCAState | P.BoVWState | None = None,
    empty: str = "raise",
) -> Tensor:
    """Pool an embedding raster batch.

    Parameters
    ----------
    x : Tensor (B, D, H, W)
        Embedding rasters (any float or integer dtype; integers are read as float32).
    method : str
        One of :data:`ALL_METHODS` (``pca_<k>``/``bovw_<K>`` also accepted with a state).
    mask : bool Tensor (B, H, W), optional
        True = valid pixel; statistics use only valid pixels.
    state : PCAState or BoVWState
        Required for the parametric methods (from :func:`fit_parametric`).
    empty : {"raise", "nan"}
        A sample without valid pixels raises ValueError naming its batch index, or gives a NaN
        row.

    Returns
    -------
    Tensor (B, output_dim(method, D)), float32 (float64 for float64 input), on x's device.
    """
    if method in TRAINING_FREE:
        return F.pool_training_free_many(x, [method], mask=mask, empty=empty)[method]
    pk = _parametric_kind(method)
    if pk is None:
        raise ValueError(F.unknown_method_message(method))
    kind, _ = pk
    expected = P.PCAState if kind == "pca" else P.BoVWState
    if state is None:
        raise ValueError(
            f"pool({method!r}) is parametric: pass state=fit_parametric({method!r}, x_train)"
        )
    if not isinstance(state, expected):
        raise ValueError(
            f"pool({method!r}): state must be a {expected.__name__}, got {type(state).__name__}"
        )
    x = F.as_raster(x)
    mask = F.check_mask(mask, x)
    if kind == "pca":
        return P.transform_pca(x, state, mask=mask, empty=empty)
    return P.transform_bovw(x, state, mask=mask, empty=empty)


def pool_many(
    x: Tensor | np.ndarray,
    methods: Sequence[str],
    mask: Tensor | np.ndarray | None = None,
    states: dict[str, P.PCAState | P.BoVWState] | None = None,
    empty: str = "raise",
) -> dict[str, Tensor]:
    """Pool with several methods at once, sharing statistics (one sort, one mean, ...).

    Parameters
    ----------
    x : Tensor (B, D, H, W)
    methods : sequence of method keys
    mask : bool Tensor (B, H, W), optional
    states : dict method -> fitted state, for parametric methods
    empty : {"raise", "nan"}

    Returns
    -------
    dict method -> Tensor (B, F_method)
    """
    states = states or {}
    for m in methods:
        if m not in TRAINING_FREE and _parametric_kind(m) is None:
            raise ValueError(F.unknown_method_message(m))
    free = [m for m in methods if m in TRAINING_FREE]
    out = F.pool_training_free_many(x, free, mask=mask, empty=empty) if free else {}
    for m in methods:
        if m not in TRAINING_FREE:
            out[m] = pool(x, m, mask=mask, state=states.get(m), empty=empty)
    return {m: out[m] for m in methods}


def fit_parametric(
    name: str,
    x_train,
    mask_train: Tensor | None = None,
    seed: int = 0,
    **kw,
) -> P.PCAState | P.BoVWState:
    """Fit ``pca_64`` / ``bovw_128`` on train data (see :func:`geoemb.pooling.parametric.fit_parametric`)."""
    return P.fit_parametric(name, x_train, mask_train=mask_train, seed=seed, **kw)


__all__ = [
    "ALL_METHODS",
    "PARAMETRIC",
    "REGISTRY",
    "TRAINING_FREE",
    "fit_parametric",
    "output_dim",
    "pool",
    "pool_many",
]
