"""Stream a EuroSAT-Embed split through pooling: batches on a device, pooled features, a summary.

Used by the GeoPool evaluator (training-free pooling + probes); plain torch, no Lightning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from geoemb.synthetic.eurosat_embed import MARKER as SYNTHETIC_MARKER

log = logging.getLogger(__name__)

__all__ = ["dataset_summary", "iter_batches", "pool_dataset"]


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def iter_batches(
    dataset: Dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "pool",
):
    """Yield ``(image (B,D,H,W), mask (B,H,W) | None, label (B,))`` on ``device``.

    ``mask`` is ``None`` when every pixel of the batch is valid (the reference path).
    """
    pin = torch.device(device).type == "cuda"
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, pin_memory=pin
    )
    for batch in _progress(loader, len(loader), desc, progress):
        x = batch["image"].to(device, non_blocking=True)
        m = batch["mask"]
        m = None if bool(m.all()) else m.to(device, non_blocking=True)
        yield x, m, batch["label"]


def pool_dataset(
    dataset: Dataset,
    methods: str | Sequence[str],
    states: dict[str, Any] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    pool_fn: Callable | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Stream a whole split through :func:`geoemb.pooling.pool` (one read for all methods).

    Parameters
    ----------
    dataset:
        A :class:`EuroSATEmbedDataset` (or any dataset of such dicts).
    methods:
        Pooling registry keys; parametric ones need their fitted state in ``states``.
    states:
        ``method -> state`` from :func:`geoemb.pooling.fit_parametric`.
    device:
        Where pooling runs (``"cuda"`` for GPU batching).
    pool_fn:
        Replacement for :func:`geoemb.pooling.pool` (``pool_fn(x, method, mask=, state=)``);
        default: :func:`geoemb.pooling.pool_many` (statistics shared across methods).

    Returns
    -------
    features:
        ``method -> (N, F)`` float32 numpy arrays. Non-finite values (overflow in pooling; input
        NaN/inf pixels are masked before pooling) are kept as computed and reported with one
        warning per method naming how many rows hold them; the probes sanitise them.
    labels:
        ``(N,)`` int64.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    states = states or {}
    if pool_fn is None:
        from geoemb.pooling import pool_many

        def many(x, mask):  # one pass shares statistics (mean, sort, ...) across methods
            return pool_many(x, methods, mask=mask, states=states)
    else:

        def many(x, mask):
            return {m: pool_fn(x, m, mask=mask, state=states.get(m)) for m in methods}

    feats: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    labels = []
    desc = getattr(dataset, "encoder", "pool")
    with torch.no_grad():
        for x, mk, y in iter_batches(dataset, batch_size, num_workers, device, progress, desc):
            res = many(x, mk)
            for meth in methods:
                feats[meth].append(res[meth].float().cpu().numpy())
            labels.append(y.numpy())
    out = {k: np.concatenate(v, 0).astype(np.float32, copy=False) for k, v in feats.items()}
    for meth, f in out.items():
        bad = ~np.isfinite(f).all(axis=1) if f.ndim == 2 else ~np.isfinite(f)
        if bad.any():
            log.warning(
                "pooling %r of %s: %d of %d feature rows are non-finite (overflow in pooling of "
                "finite inputs; first at row %d); the probes replace them by 0 as the reference does",
                meth,
                getattr(dataset, "dir", desc),
                int(bad.sum()),
                len(f),
                int(np.flatnonzero(bad)[0]),
            )
    return out, np.concatenate(labels).astype(np.int64)


def dataset_summary(ds: Any) -> str:
    """JSON string describing where a dataset came from (for cache sidecars and logs)."""
    return json.dumps(
        {
            "root": str(ds.root.resolve()),
            "encoder": ds.encoder,
            "split": ds.split,
            "split_type": ds.split_type,
            "values": ds.values,
            "size": ds.size,
            "n": len(ds),
            "data_source": "synthetic" if (ds.root / SYNTHETIC_MARKER).is_file() else "real",
        },
        sort_keys=True,
    )
