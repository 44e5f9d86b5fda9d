"""QPS harness: warm-up, query batches, index build excluded, CUDA synchronised."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Timing:
    """Result of :func:`measure_qps`."""

    qps: float
    seconds: float
    n_queries: int
    result: tuple[Any, Any]


def _sync(x: Any) -> None:
    if isinstance(x, torch.Tensor) and x.is_cuda:
        torch.cuda.synchronize(x.device)


def measure_qps(
    search: Callable[[Any, int], tuple[Any, Any]],
    queries: np.ndarray | torch.Tensor,
    k: int,
    batch_size: int | None = None,
    warmup: int = 1,
    repeats: int = 1,
) -> Timing:
    """Time ``search(queries_batch, k)`` over all queries (best of ``repeats``).

    Parameters
    ----------
    search:
        Callable such as ``index.search`` (index construction is done before and not timed).
    queries:
        ``(nq, ...)`` queries (numpy or torch; torch CUDA timings are synchronised).
    batch_size:
        Queries per call (``None``: all at once).
    warmup:
        Untimed calls on the first batch (JIT compilation, caches, CUDA context).
    """
    nq = len(queries)
    bs = nq if batch_size is None else int(batch_size)
    for _ in range(warmup):
        _sync(search(queries[: min(bs, nq)], k)[0])
    best = float("inf")
    result: tuple[Any, Any] = (None, None)
    for _ in range(max(1, repeats)):
        _sync(queries)
        t0 = time.perf_counter()
        ds, is_ = [], []
        for s in range(0, nq, bs):
            d, i = search(queries[s : s + bs], k)
            ds.append(d)
            is_.append(i)
        _sync(ds[-1])
        dt = time.perf_counter() - t0
        if dt < best:
            best = dt
            cat = torch.cat if isinstance(ds[0], torch.Tensor) else np.concatenate
            result = (cat(ds), cat(is_))
    return Timing(qps=nq / best, seconds=best, n_queries=nq, result=result)
