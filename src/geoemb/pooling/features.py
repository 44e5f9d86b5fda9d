"""Pool a dataset split with many methods at once, fitting the parametric ones on its train part.

:func:`pool_split` is the GeoPool protocol as a library routine (no Hydra, no Lightning): for one
train/test pair of datasets (items ``{"image": (D, H, W), "mask": (H, W) bool, "label": ()}``):

1. methods found in the :class:`~geoemb.pooling.cache.SplitCache` are read back;
2. one streaming pass over train pools every training-free method (``kind="free"`` in the pooling
   registry) — plus ``mean`` when a method is fitted on mean vectors;
3. parametric methods are fitted on the **train split only**, as their registry metadata
   (:data:`geoemb.pooling.METHODS`) says: ``fit_on="pixels"`` (``bovw_<K>``) by streaming the train
   pixels (mini-batches of ``batch_size`` patches), ``fit_on=<a pooling method>`` (``pca_<k>``:
   ``"mean"``) on the float64 train vectors of that method, which the first pass adds;
4. one pass over test pools every method with the fitted states; entries are written to the cache.

A method the registry calls infeasible for the split (:func:`geoemb.pooling.infeasible_reason`:
``pca_<k>`` with ``k > D`` or ``k >`` train samples) is skipped with a warning, as the reference
skips ``pca_64`` for ``D < 64``.
Pooled features that overflow to non-finite values are reported with one warning per method; they
are kept as computed (the probes zero them, as the reference's ``sanitize_features``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geoemb.pooling import (
    ALL_METHODS,
    METHODS,
    fit_from_pooled,
    fit_parametric,
    infeasible_reason,
    pool_many,
    transform_pooled,
)
from geoemb.pooling.cache import SplitCache
from geoemb.utils.dask import dask_client, parse_dask_spec

__all__ = ["PoolOptions", "expand_methods", "iter_batches", "method_meta", "pool_split"]

log = logging.getLogger(__name__)


def method_meta(name: str) -> Mapping[str, Any]:
    """Registry metadata of a pooling method (``UnknownNameError`` listing valid names)."""
    return METHODS.resolve(name).meta


def expand_methods(methods: str | Sequence[str]) -> list[str]:
    """``"all"`` -> the GeoPool methods; a name or list is checked against the registry."""
    if isinstance(methods, str):
        methods = list(ALL_METHODS) if methods == "all" else [methods]
    out = [str(m) for m in methods]
    for m in out:
        method_meta(m)
    return out


@dataclass(frozen=True)
class PoolOptions:
    """How a split is streamed: patches per batch, loader workers, progress bar, fitting seed."""

    batch_size: int = 64
    num_workers: int = 0
    progress: bool = False
    seed: int = 0


def iter_batches(
    dataset: Dataset, opts: PoolOptions, device: torch.device, desc: str = "pool"
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """Yield ``(image (B,D,H,W), mask (B,H,W) | None, label (B,))``, images on ``device``.

    ``mask`` is ``None`` when every pixel of the batch is valid (the reference path).
    """
    loader = DataLoader(dataset, batch_size=opts.batch_size, num_workers=opts.num_workers,
                        shuffle=False, pin_memory=device.type == "cuda")  # fmt: skip
    it: Any = loader
    if opts.progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, total=len(loader), desc=desc, unit="batch", leave=False)
    for batch in it:
        m = batch["mask"]
        yield (batch["image"].to(device, non_blocking=True),
               None if bool(m.all()) else m.to(device, non_blocking=True), batch["label"])  # fmt: skip


def _warn_nonfinite(feats: Mapping[str, np.ndarray], desc: str) -> None:
    for m, f in feats.items():
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            log.warning("pooling %r of %s: %d of %d feature rows are non-finite (overflow in "
                        "pooling); the probes replace them by 0 as the reference does",
                        m, desc, int(bad.sum()), len(f))  # fmt: skip


def _stream(ds: Dataset, methods: list[str], states: dict, opts: PoolOptions,
            device: torch.device, desc: str,
            warn: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    feats: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    ys = []
    with torch.no_grad():
        for x, mk, y in iter_batches(ds, opts, device, desc):
            res = pool_many(x, methods, mask=mk, states=states)
            for m in methods:
                feats[m].append(res[m].float().cpu().numpy())
            ys.append(y.numpy())
    out = {m: np.concatenate(v).astype(np.float32, copy=False) for m, v in feats.items()}
    if warn:
        _warn_nonfinite(out, desc)
    return out, np.concatenate(ys).astype(np.int64)


def pool_split(
    train: Dataset,
    test: Dataset,
    methods: Sequence[str],
    opts: PoolOptions,
    device: torch.device,
    cache: SplitCache | None = None,
    desc: str = "",
    dask: Any = None,
    chunk_size: int = 1024,
) -> dict[str, dict[str, np.ndarray]]:
    """Pooled ``{method: {"x_train", "y_train", "x_test", "y_test"}}`` of one train/test pair.

    Parameters
    ----------
    train, test : datasets of ``{"image": (D, H, W), "mask": (H, W), "label": ()}`` items.
    methods : pooling registry names (free and parametric).
    opts : batching, workers, progress and the seed of pixel-fitted methods.
    device : where pooling and fitting run.
    cache : read hits from / write new entries to this encoder x split type's cache.
    desc : label for progress bars and log lines (``"aef/spatial"``).
    dask : ``None``/``"none"``: the passes stream in this process; a spec (``local:2``,
        ``tcp://host:8786``: :func:`geoemb.utils.dask.dask_client`) or an existing
        ``distributed.Client``: one Dask task per chunk of ``chunk_size`` patches × pass, with
        resumable chunk files beside the cache (:mod:`geoemb.pooling.distributed`). The features
        are bitwise those of the in-process path.
    chunk_size : patches per Dask task (rounded up to a multiple of ``opts.batch_size``).

    Returns
    -------
    dict
        Features float32 ``(N, F_method)``, labels int64 ``(N,)``; skipped methods are absent.
    """
    D = int(train[0]["image"].shape[0])  # noqa: N806
    fitted = {"seed": opts.seed, "batch_size": opts.batch_size}
    extra = {m: fitted if method_meta(m).get("kind") == "parametric" else None for m in methods}
    out: dict[str, dict[str, np.ndarray]] = {}
    todo: list[str] = []
    for m in methods:
        reason = infeasible_reason(m, D, len(train))
        if reason is not None:
            log.warning("%s skipped for %s: %s", m, desc, reason)
            continue
        hit = cache.get(m, extra[m]) if cache is not None else None
        if hit is not None:
            out[m] = hit
        else:
            todo.append(m)
    if not todo:
        return out
    free = [m for m in todo if method_meta(m)["kind"] == "free"]
    on_pixels = [m for m in todo if m not in free and method_meta(m)["fit_on"] == "pixels"]
    on_pooled = {m: str(method_meta(m)["fit_on"]) for m in todo if m not in free + on_pixels}
    first = list(dict.fromkeys(free + list(on_pooled.values())))
    if hasattr(dask, "submit") or parse_dask_spec(dask).kind != "none":
        from geoemb.pooling.distributed import pool_todo_dask

        passes = {"first": first, "on_pixels": on_pixels, "on_pooled": on_pooled}
        if hasattr(dask, "submit"):  # an existing distributed.Client
            got = pool_todo_dask(dask, train, test, todo, passes, opts, device, cache, extra,
                                 desc, chunk_size)  # fmt: skip
        else:
            with dask_client(dask) as client:
                got = pool_todo_dask(client, train, test, todo, passes, opts, device, cache,
                                     extra, desc, chunk_size)  # fmt: skip
        return {**out, **got}
    tr, ytr = _stream(train, first, {}, opts, device, f"{desc}/train") if first else ({}, None)
    states: dict[str, Any] = {}
    for m, src in on_pooled.items():  # pca_<k>: fit on the float64 train mean vectors
        states[m] = fit_from_pooled(m, torch.from_numpy(tr[src]).double())
    for m in on_pixels:
        batches = ((x, mk) for x, mk, _ in iter_batches(train, opts, device, f"{desc}/fit {m}"))
        states[m] = fit_parametric(m, batches, seed=opts.seed)
    if on_pixels:
        tr_p, ytr = _stream(train, on_pixels, states, opts, device, f"{desc}/train {on_pixels}")
        tr.update(tr_p)
    for m, src in on_pooled.items():
        feats = transform_pooled(m, torch.from_numpy(tr[src]).double(), states[m])
        tr[m] = feats.float().numpy()
    te, yte = _stream(test, todo, states, opts, device, f"{desc}/test")
    for m in todo:
        rec = {"x_train": tr[m], "y_train": ytr, "x_test": te[m], "y_test": yte}
        if cache is not None:
            cache.put(m, rec, extra[m])
        out[m] = rec
    return out
