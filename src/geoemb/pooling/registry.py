"""The pooling-method registry :data:`METHODS`: every pooling name is resolved here.

Entries (:class:`~geoemb.utils.registry.Registry`, exact and case-sensitive: the names are the
GeoPool seed keys and become dictionary keys and cache file names):

* training-free methods (``mean`` … ``flattened_cov``, :mod:`geoemb.pooling.functional`):
  ``meta(kind="free")``; ``METHODS.build(name)`` returns the pooling function
  ``fn(x (B, D, H, W), mask (B, H, W) | None, empty) -> (B, F)``.
* parametric patterns ``pca_<k>`` (``meta(kind="parametric", fit_on="mean")``: fitted on the
  train patches' mean vectors) and ``bovw_<K>`` (``fit_on="pixels"``: fitted on the train pixels),
  :mod:`geoemb.pooling.parametric`. ``METHODS.build("pca_16", x_train=…, mask_train=…, seed=…)``
  fits and returns the state; ``meta["state"]`` is the state class, ``meta["transform"]`` pools
  with a state, ``meta["default"]`` is the GeoPool seed key (``pca_64``, ``bovw_128``).

:func:`output_dim`, :func:`pool`, :func:`pool_many`, :func:`fit_parametric`,
:func:`infeasible_reason`, :func:`fit_from_pooled`/:func:`transform_pooled` and the lists
:data:`TRAINING_FREE`, :data:`PARAMETRIC`, :data:`ALL_METHODS` are all derived from it; nothing
else parses a pooling name. The implementations never import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from geoemb.pooling import functional as F
from geoemb.pooling import parametric as P
from geoemb.utils.registry import Registry, Resolved, UnknownNameError

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "PARAMETRIC",
    "TRAINING_FREE",
    "fit_from_pooled",
    "fit_parametric",
    "infeasible_reason",
    "output_dim",
    "pool",
    "pool_many",
    "transform_pooled",
    "unknown_method_message",
]

State = P.PCAState | P.BoVWState

METHODS = Registry("pooling method", case_sensitive=True)

_FREE_DESCRIPTIONS = {
    "mean": "per-band mean (D)",
    "max": "per-band max (D)",
    "std": "per-band population std, ddof=0 (D)",
    "gem": "signed generalised mean, p=3 (D)",
    "center_weighted_mean": "Gaussian centre-weighted mean, sigma=min(H,W)/4 (D)",
    "mean_std": "[mean, std] (2D)",
    "mean_max": "[mean, max] (2D)",
    "median_iqr": "[median, q75 - q25] (2D)",
    "stats": "[min, max, mean, std] (4D)",
    "percentiles": "[p10, p25, p50, p75, p90] (5D)",
    "flattened_cov": "covariance (ddof=1), upper triangle incl. diagonal (D(D+1)/2)",
}


def _free_entry(name: str) -> None:
    fn = getattr(F, f"pool_{name}")
    METHODS.add(
        name,
        lambda _fn=fn: _fn,
        output_dim=lambda D, _m=name: F.training_free_dim(_m, D),  # noqa: N803
        description=_FREE_DESCRIPTIONS[name],
        kind="free",
    )


for _name in F.TRAINING_FREE:
    _free_entry(_name)


def _fit_pca(k: int, x_train: Any, mask_train: Tensor | None = None, seed: int = 0, **kw):
    """Fit ``pca_<k>`` (deterministic: ``seed`` is accepted for a uniform signature)."""
    return P.fit_pca(x_train, mask_train, n_components=k, **kw)


def _fit_bovw(k: int, x_train: Any, mask_train: Tensor | None = None, seed: int = 0, **kw):
    return P.fit_bovw(x_train, mask_train, n_clusters=k, seed=seed, **kw)


def _pca_infeasible(D: int, n_train: int, k: int) -> str | None:  # noqa: N803
    if k > D:
        return f"{k} components > D={D} (as the reference)"
    if k > n_train:
        return f"{k} components > {n_train} train samples"
    return None


METHODS.add(
    "pca_<k>",
    _fit_pca,
    pattern=r"pca_(?P<k>[1-9]\d*)",
    output_dim=lambda D, k: k,  # noqa: N803
    description="k-component PCA of the patch mean vectors, fit on train (k)",
    kind="parametric",
    fit_on="mean",
    default="pca_64",
    state=P.PCAState,
    transform=P.transform_pca,
    fit_pooled=lambda pooled, k: P.fit_pca_vectors(pooled, n_components=k),
    transform_pooled=P.transform_pca_vectors,
    infeasible=_pca_infeasible,
)
METHODS.add(
    "bovw_<K>",
    _fit_bovw,
    pattern=r"bovw_(?P<k>[1-9]\d*)",
    output_dim=lambda D, k: k,  # noqa: N803
    description="bag of visual words: mini-batch k-means on train pixels, L1 histogram (K)",
    kind="parametric",
    fit_on="pixels",
    default="bovw_128",
    state=P.BoVWState,
    transform=P.transform_bovw,
)

TRAINING_FREE: list[str] = METHODS.names(kind="free")
PARAMETRIC: list[str] = [e.meta["default"] for e in METHODS if e.meta["kind"] == "parametric"]
ALL_METHODS: list[str] = TRAINING_FREE + PARAMETRIC


# ----------------------------------------------------------------------------------------------
# name resolution
# ----------------------------------------------------------------------------------------------
def unknown_method_message(method: object) -> str:
    """``pooling: unknown method 'x'; valid methods: mean, …, bovw_128 (parametric: pca_<k>, …)``."""
    patterns = ", ".join(METHODS.names(kind="parametric"))
    return (
        f"pooling: unknown method {method!r}; valid methods: {', '.join(ALL_METHODS)} "
        f"(parametric: {patterns})"
    )


def _resolve(method: str) -> Resolved:
    try:
        return METHODS.resolve(method)
    except UnknownNameError:
        raise UnknownNameError(unknown_method_message(method)) from None


def _resolve_parametric(method: str) -> Resolved:
    try:
        r = METHODS.resolve(method)
    except UnknownNameError:
        r = None
    if r is None or r.meta["kind"] != "parametric":
        patterns = ", ".join(METHODS.names(kind="parametric"))
        raise UnknownNameError(
            f"fit_parametric: unknown parametric method {method!r}; valid: "
            f"{', '.join(PARAMETRIC)} (or {patterns})"
        )
    return r


def output_dim(method: str, D: int) -> int:  # noqa: N803 - D is the conventional name
    """Pooled feature dimension of ``method`` for embedding dimension ``D``.

    ``pca_<k>`` -> k, ``bovw_<K>`` -> K (as the reference's ``get_output_dim``).
    """
    return _resolve(method).output_dim(D)


def infeasible_reason(method: str, D: int, n_train: int) -> str | None:  # noqa: N803
    """Why ``method`` cannot be fit on ``n_train`` samples of dimension ``D`` (None if it can).

    ``pca_<k>`` needs ``k <= D`` (the reference skips ``pca_64`` when D < 64) and
    ``k <= n_train``; the other methods are always feasible.
    """
    r = _resolve(method)
    check: Callable[..., str | None] | None = r.meta.get("infeasible")
    return None if check is None else check(D, n_train, **r.params)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
def _transform(
    r: Resolved,
    method: str,
    x: Tensor | np.ndarray,
    mask: Tensor | np.ndarray | None,
    state: State | None,
    empty: str,
) -> Tensor:
    expected = r.meta["state"]
    if state is None:
        raise ValueError(
            f"pool({method!r}) is parametric: pass state=fit_parametric({method!r}, x_train)"
        )
    if not isinstance(state, expected):
        raise ValueError(
            f"pool({method!r}): state must be a {expected.__name__}, got {type(state).__name__}"
        )
    x = F.as_raster(x)
    if state.out_dim != r.output_dim(x.shape[1]):
        raise ValueError(
            f"pool({method!r}): the state was fit as {state.name!r} ({state.out_dim} outputs), "
            f"not {method!r}"
        )
    mask = F.check_mask(mask, x)
    return r.meta["transform"](x, state, mask=mask, empty=empty)


def pool(
    x: Tensor | np.ndarray,
    method: str,
    mask: Tensor | np.ndarray | None = None,
    state: State | None = None,
    empty: str = "raise",
) -> Tensor:
    """Pool an embedding raster batch.

    Parameters
    ----------
    x : Tensor (B, D, H, W)
        Embedding rasters (any float or integer dtype; integers are read as float32).
    method : str
        A :data:`METHODS` name: one of :data:`TRAINING_FREE`, or ``pca_<k>``/``bovw_<K>`` with a
        state.
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
    r = _resolve(method)
    if r.meta["kind"] == "free":
        return F.pool_training_free_many(x, [r.name], mask=mask, empty=empty)[r.name]
    return _transform(r, method, x, mask, state, empty)


def pool_many(
    x: Tensor | np.ndarray,
    methods: Sequence[str],
    mask: Tensor | np.ndarray | None = None,
    states: dict[str, State] | None = None,
    empty: str = "raise",
) -> dict[str, Tensor]:
    """Pool with several methods at once, sharing statistics (one sort, one mean, ...).

    Parameters
    ----------
    x : Tensor (B, D, H, W)
    methods : sequence of method names (every name is checked before any work; repeats are
        computed once)
    mask : bool Tensor (B, H, W), optional
    states : dict method -> fitted state, for parametric methods
    empty : {"raise", "nan"}

    Returns
    -------
    dict method -> Tensor (B, F_method), in the order of ``methods``
    """
    states = states or {}
    resolved = {m: _resolve(m) for m in methods}
    free = list(dict.fromkeys(r.name for r in resolved.values() if r.meta["kind"] == "free"))
    done = F.pool_training_free_many(x, free, mask=mask, empty=empty) if free else {}
    out: dict[str, Tensor] = {}
    for m, r in resolved.items():
        if r.meta["kind"] == "free":
            out[m] = done[r.name]
        else:
            out[m] = _transform(r, m, x, mask, states.get(m), empty)
    return out


# ----------------------------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------------------------
def fit_parametric(
    name: str,
    x_train: Tensor | np.ndarray | Iterable,
    mask_train: Tensor | None = None,
    seed: int = 0,
    **kw: Any,
) -> State:
    """Fit a parametric pooling (``pca_<k>``, ``bovw_<K>``) on train data.

    Parameters
    ----------
    name : ``"pca_<k>"`` or ``"bovw_<K>"`` (the GeoPool keys are ``pca_64``, ``bovw_128``)
    x_train : Tensor (N, D, H, W) or iterable of batches (tensor, ``(x, mask)`` or dict)
    mask_train : bool Tensor (N, H, W), optional
    seed : int
        Used by BoVW (shuffle, init); PCA is deterministic.
    **kw : forwarded to :func:`~geoemb.pooling.parametric.fit_pca` /
        :func:`~geoemb.pooling.parametric.fit_bovw`

    Returns
    -------
    PCAState or BoVWState
    """
    r = _resolve_parametric(name)
    return r.build(x_train=x_train, mask_train=mask_train, seed=seed, **kw)


def _resolve_pooled(name: str) -> Resolved:
    r = _resolve_parametric(name)
    if "fit_pooled" not in r.meta:
        raise ValueError(
            f"{name!r} is fit on {r.meta['fit_on']}, not on pooled vectors: use fit_parametric"
        )
    return r


def fit_from_pooled(name: str, pooled: Tensor) -> State:
    """Fit a parametric method whose ``meta["fit_on"]`` is a pooling method (``pca_<k>``: the
    ``"mean"`` vectors) from those already pooled train vectors ``(N, D)``."""
    r = _resolve_pooled(name)
    return r.meta["fit_pooled"](pooled, **r.params)


def transform_pooled(name: str, pooled: Tensor, state: State) -> Tensor:
    """Apply a fitted ``fit_on``-pooled method to already pooled vectors ``(N, D) -> (N, k)``;
    equal to :func:`pool` on the rasters those vectors were pooled from."""
    return _resolve_pooled(name).meta["transform_pooled"](pooled, state)
