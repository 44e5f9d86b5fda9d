"""Pool a dataset split with many methods at once, fitting the parametric ones on its train part.

:func:`pool_split` is the GeoPool protocol as a library routine (no Hydra, no Lightning): for one
train/test pair of datasets (items ``{"image": (D, H, W), "mask": (H, W) bool, "label": ()}``):

1. methods found in the :class:`~geoemb.pooling.cache.SplitCache` are read back;
2. one streaming pass over train pools every training-free method (``kind="free"`` in the pooling
   registry) — plus ``mean`` when a method is fitted on mean vectors;
3. parametric methods are fitted on the **train split only**, as their registry metadata says:
   ``fit_on="mean"`` (``pca_<k>``) on the float64 train mean vectors, ``fit_on="pixels"``
   (``bovw_<K>``) by streaming the train pixels (mini-batches of ``batch_size`` patches);
4. one pass over test pools every method with the fitted states; entries are written to the cache.

A method fitted on mean vectors whose output has more dimensions than ``D`` or than there are
train samples is skipped with a warning (the reference skips ``pca_64`` for ``D < 64``).
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

import geoemb.pooling as _pooling
from geoemb.pooling import ALL_METHODS, TRAINING_FREE, fit_parametric, output_dim, pool, pool_many
from geoemb.pooling.cache import SplitCache
from geoemb.utils.registry import Registry

__all__ = ["METHODS", "PoolOptions", "expand_methods", "iter_batches", "method_meta", "pool_split"]

log = logging.getLogger(__name__)


def _registry_shim() -> Registry:
    """The pooling registry's metadata contract (``kind``, ``fit_on``) until
    ``geoemb.pooling.METHODS`` exists (issue 11, registry package); deleted then."""
    reg = Registry("pooling method")
    for m in TRAINING_FREE:
        reg.add(m, lambda _m=m, **kw: _m, output_dim=lambda D, _m=m: output_dim(_m, D), kind="free")
    reg.add("pca_<k>", lambda k: f"pca_{k}", pattern=r"pca_(?P<k>\d+)",
            output_dim=lambda D, k: k, kind="parametric", fit_on="mean")  # fmt: skip
    reg.add("bovw_<K>", lambda k: f"bovw_{k}", pattern=r"bovw_(?P<k>\d+)",
            output_dim=lambda D, k: k, kind="parametric", fit_on="pixels")  # fmt: skip
    return reg


#: The pooling registry (names, ``output_dim``, ``meta["kind"]``, ``meta["fit_on"]``).
METHODS: Registry = getattr(_pooling, "METHODS", None) or _registry_shim()


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


def _stream(ds: Dataset, methods: list[str], states: dict, opts: PoolOptions,
            device: torch.device, desc: str) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    feats: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    ys = []
    with torch.no_grad():
        for x, mk, y in iter_batches(ds, opts, device, desc):
            res = pool_many(x, methods, mask=mk, states=states)
            for m in methods:
                feats[m].append(res[m].float().cpu().numpy())
            ys.append(y.numpy())
    out = {m: np.concatenate(v).astype(np.float32, copy=False) for m, v in feats.items()}
    for m, f in out.items():
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            log.warning("pooling %r of %s: %d of %d feature rows are non-finite (overflow in "
                        "pooling); the probes replace them by 0 as the reference does",
                        m, desc, int(bad.sum()), len(f))  # fmt: skip
    return out, np.concatenate(ys).astype(np.int64)


def _vectors(means: np.ndarray) -> torch.Tensor:
    """(N, D) mean vectors as (N, D, 1, 1) float64 rasters (pooling a 1x1 raster is exact)."""
    return torch.from_numpy(np.asarray(means, dtype=np.float64))[:, :, None, None]


def _skip_reason(method: str, D: int, n_train: int) -> str | None:  # noqa: N803
    meta = method_meta(method)
    if meta.get("kind") != "parametric" or meta.get("fit_on") != "mean":
        return None
    k = METHODS.output_dim(method, D)
    if k > D:
        return f"{k} components > D={D} (as the reference)"
    if k > n_train:
        return f"{k} components > {n_train} train samples"
    return None


def pool_split(
    train: Dataset,
    test: Dataset,
    methods: Sequence[str],
    opts: PoolOptions,
    device: torch.device,
    cache: SplitCache | None = None,
    desc: str = "",
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
        reason = _skip_reason(m, D, len(train))
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
    groups: dict[str, list[str]] = {"free": [], "mean": [], "pixels": []}
    for m in todo:
        meta = method_meta(m)
        group = "free" if meta.get("kind") == "free" else str(meta.get("fit_on"))
        if group not in groups:
            raise ValueError(
                f"pooling method {m!r}: registry metadata kind={meta.get('kind')!r}, "
                f"fit_on={meta.get('fit_on')!r}; expected free, or fit_on mean|pixels"
            )
        groups[group].append(m)
    on_mean, on_pixels = groups["mean"], groups["pixels"]
    first = list(dict.fromkeys(groups["free"] + (["mean"] if on_mean else [])))
    tr, ytr = _stream(train, first, {}, opts, device, f"{desc}/train") if first else ({}, None)
    states: dict[str, Any] = {}
    for m in on_mean:
        states[m] = fit_parametric(m, _vectors(tr["mean"]), seed=opts.seed)
    for m in on_pixels:
        batches = ((x, mk) for x, mk, _ in iter_batches(train, opts, device, f"{desc}/fit {m}"))
        states[m] = fit_parametric(m, batches, seed=opts.seed)
    if on_pixels:
        tr_p, ytr = _stream(train, on_pixels, states, opts, device, f"{desc}/train {on_pixels}")
        tr.update(tr_p)
    for m in on_mean:
        feats = pool(_vectors(tr["mean"]), m, state=states[m].to("cpu"))
        tr[m] = feats.float().numpy()
    te, yte = _stream(test, todo, states, opts, device, f"{desc}/test")
    for m in todo:
        rec = {"x_train": tr[m], "y_train": ytr, "x_test": te[m], "y_test": yte}
        if cache is not None:
            cache.put(m, rec, extra[m])
        out[m] = rec
    return out
