"""Pool a split's patches as Dask tasks over chunks, one chunk file per chunk × method.

:func:`pool_todo_dask` runs the passes of :func:`geoemb.pooling.features.pool_split` (train with
the training-free methods, fits, train with the pixel-fitted methods, test with every method) as
one Dask task per **chunk of patches × pass**. A chunk is ``chunk_size`` consecutive patches,
rounded up to a multiple of the batch size, so every task pools exactly the batches — and the
same group of methods (:func:`~geoemb.pooling.pool_many` shares statistics between methods) — as
the in-process stream: the assembled features are **bitwise** those of ``dask=none``.

Each task writes one file per method of its pass, atomically
(``<cache>/<encoder>/<method>/<split_type>.chunks/<part>-<start>-<stop>.npz``), holding the
features, the labels and the chunk's *key*: the entry's cache key (data digest, method,
parameters), the part, the row range and the method group. A rerun (after a crash, a killed
worker, Ctrl-C) reuses a chunk only when every file of its pass is readable, has that key and
the expected shapes/dtypes; anything else is recomputed and replaced (the cache's trust rules:
a foreign or damaged entry is a miss, never a hit). The final ``.npz`` entry is assembled only
when every chunk of both parts is present, then the chunk files are removed.

The bag-of-visual-words fits (``fit_on="pixels"``) stream the whole train split: one task each.
A task whose workers died too often (``distributed.scheduler.allowed-failures``) is a
:class:`PoolingChunkError` naming the chunk; nothing is assembled. Workers must see the dataset
files and the cache folder at the same paths (a shared file system on a real cluster).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from geoemb.errors import GeoembError
from geoemb.pooling import fit_from_pooled, fit_parametric, transform_pooled
from geoemb.utils.io import atomic_path

__all__ = ["Chunk", "PoolingChunkError", "plan_chunks", "pool_todo_dask"]

log = logging.getLogger(__name__)


class PoolingChunkError(GeoembError):
    """A pooling chunk's Dask task failed (its workers died too often)."""


@dataclass(frozen=True)
class Chunk:
    """One task's rows ``[start, stop)`` of ``part`` (``train``/``test``) for a method group."""

    part: str
    start: int
    stop: int
    methods: tuple[str, ...]
    desc: str = ""

    @property
    def name(self) -> str:
        return (f"{self.desc}/{self.part} chunk of patches [{self.start}, {self.stop}) "
                f"(methods {list(self.methods)})")  # fmt: skip

    def key(self, entry_key: str) -> str:
        blob = json.dumps([entry_key, self.part, self.start, self.stop, list(self.methods)])
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def plan_chunks(
    n: int, chunk_size: int, batch_size: int, part: str, methods: Sequence[str], desc: str = ""
) -> list[Chunk]:
    """Chunks of ``n`` patches: ``chunk_size`` rounded up to a multiple of ``batch_size``."""
    step = max(1, -(-max(1, int(chunk_size)) // batch_size)) * batch_size
    return [Chunk(part, s, min(s + step, n), tuple(methods), desc) for s in range(0, n, step)]


def _chunk_file(chunk_dir: Path, c: Chunk) -> Path:
    return chunk_dir / f"{c.part}-{c.start:010d}-{c.stop:010d}.npz"


def _read_chunk(path: Path, key: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x float32 (n, F), y int64 (n,))`` of a chunk file written under ``key``, else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                log.info("chunk %s was computed from other data or parameters: recomputing", path)
                return None
            x, y = z["x"], z["y"]
    except FileNotFoundError:
        return None
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        log.warning("chunk %s unreadable (%s): recomputing it", path, e)
        return None
    if (
        x.dtype != np.float32
        or x.ndim != 2
        or len(x) != n
        or y.dtype != np.int64
        or y.shape != (n,)
    ):
        log.warning("chunk %s holds %s %s / %s %s, not %d rows: recomputing it", path, x.dtype,
                    x.shape, y.dtype, y.shape, n)  # fmt: skip
        return None
    return x, y


def run_chunk(
    dataset: Dataset, c: Chunk, states: dict, opts: Any, device: str,
    files: dict[str, tuple[str, str]] | None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Pool one chunk (what a Dask task runs): reuse its files when all are valid, else pool the
    chunk's batches with its method group and write one file per method.

    ``files``: ``{method: (chunk file, chunk key)}`` (``None``: no cache, nothing written).
    """
    from geoemb.pooling.features import _stream

    n = c.stop - c.start
    if files:
        got = {m: _read_chunk(Path(p), k, n) for m, (p, k) in files.items()}
        if all(v is not None for v in got.values()):
            ys = [v[1] for v in got.values()]
            if all(np.array_equal(ys[0], y) for y in ys):
                return {m: v[0] for m, v in got.items()}, ys[0]
    sub = Subset(dataset, range(c.start, c.stop))
    local = replace(opts, num_workers=0, progress=False)  # no loader processes inside a worker
    feats, y = _stream(sub, list(c.methods), states, local, torch.device(device), c.name,
                       warn=False)  # fmt: skip
    for m, (p, k) in (files or {}).items():
        with atomic_path(Path(p)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=feats[m], y=y, key=np.array(k))
    return feats, y


def _fit_pixels(train: Dataset, m: str, opts: Any, device: str) -> Any:
    from geoemb.pooling.features import iter_batches

    local = replace(opts, num_workers=0, progress=False)
    batches = ((x, mk) for x, mk, _ in iter_batches(train, local, torch.device(device)))
    return fit_parametric(m, batches, seed=opts.seed)


class _Tasks:
    """Submit functions to a client and collect their results, naming what failed."""

    def __init__(self, client: Any) -> None:
        self.client, self.tag, self.futs = client, uuid.uuid4().hex[:8], []

    def submit(self, fn: Callable[..., Any], name: str, *args: Any) -> Any:
        f = self.client.submit(fn, *args, pure=False, key=f"pool-{len(self.futs)}-{self.tag}")
        self.futs.append(f)
        return f, name

    def result(self, item: tuple[Any, str]) -> Any:
        from distributed.scheduler import KilledWorker

        f, name = item
        try:
            return f.result()
        except KilledWorker as e:
            raise PoolingChunkError(
                f"{name}: the Dask workers running it died too often ({e}); nothing was "
                "assembled (finished chunks are kept for the rerun). Check the workers' memory "
                "and rerun"
            ) from e
        except Exception as e:
            e.add_note(f"while pooling {name} on Dask")
            raise

    def close(self) -> None:
        self.client.cancel(self.futs)


def pool_todo_dask(
    client: Any,
    train: Dataset,
    test: Dataset,
    todo: list[str],
    passes: dict[str, Any],
    opts: Any,
    device: torch.device,
    cache: Any,
    extra: dict[str, Any],
    desc: str,
    chunk_size: int,
) -> dict[str, dict[str, np.ndarray]]:
    """The ``todo`` methods of :func:`~geoemb.pooling.features.pool_split` on Dask.

    ``passes``: ``first`` (train pass 1 group), ``on_pixels``, ``on_pooled`` ({method: source})
    exactly as the in-process path plans them. Returns ``{method: rec}`` like it.
    """
    first, on_pixels, on_pooled = passes["first"], passes["on_pixels"], passes["on_pooled"]
    dev = str(device)
    tasks = _Tasks(client)
    ds_f = dict(zip(("train", "test"), client.scatter([train, test], broadcast=True, hash=False)))

    def files(c: Chunk) -> dict[str, tuple[str, str]] | None:
        if cache is None:
            return None
        return {m: (str(_chunk_file(cache.chunk_dir(m), c)),
                    c.key(cache.key(m, extra.get(m)))) for m in c.methods}  # fmt: skip

    def submit_pass(part: str, methods: list[str], states_f: Any) -> list[tuple[Chunk, Any]]:
        ds = train if part == "train" else test
        chunks = plan_chunks(len(ds), chunk_size, opts.batch_size, part, methods, desc)
        return [(c, tasks.submit(run_chunk, c.name, ds_f[part], c, states_f, opts, dev,
                                 files(c))) for c in chunks]  # fmt: skip

    def gather(items: list[tuple[Chunk, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        c0 = items[0][0]
        it: Any = items
        if opts.progress:
            from tqdm.auto import tqdm

            it = tqdm(items, desc=f"{desc}/{c0.part} {list(c0.methods)}", unit="chunk",
                      leave=False)  # fmt: skip
        res = [tasks.result(item) for _, item in it]
        methods = c0.methods
        feats = {m: np.concatenate([r[0][m] for r in res]) for m in methods}
        return feats, np.concatenate([r[1] for r in res]).astype(np.int64)

    try:
        pass1 = submit_pass("train", first, {}) if first else []
        fits = {m: tasks.submit(_fit_pixels, f"{desc}/fit {m}", ds_f["train"], m, opts, dev)
                for m in on_pixels}  # fmt: skip
        tr, ytr = gather(pass1) if pass1 else ({}, None)
        states: dict[str, Any] = {}
        for m, src in on_pooled.items():  # pca_<k>: fit on the float64 train mean vectors
            states[m] = fit_from_pooled(m, torch.from_numpy(tr[src]).double())
        for m, item in fits.items():
            states[m] = tasks.result(item)
        [states_f] = client.scatter([states], broadcast=True, hash=False)
        pass2 = submit_pass("train", on_pixels, states_f) if on_pixels else []
        pass3 = submit_pass("test", todo, states_f)
        if pass2:
            tr_p, ytr = gather(pass2)
            tr.update(tr_p)
        for m, src in on_pooled.items():
            tr[m] = (
                transform_pooled(m, torch.from_numpy(tr[src]).double(), states[m]).float().numpy()
            )
        te, yte = gather(pass3)
    finally:
        tasks.close()
    from geoemb.pooling.features import _warn_nonfinite

    _warn_nonfinite(tr, f"{desc}/train")
    _warn_nonfinite(te, f"{desc}/test")
    out = {}
    for m in todo:
        out[m] = {"x_train": tr[m], "y_train": ytr, "x_test": te[m], "y_test": yte}
        if cache is not None:
            cache.put(m, out[m], extra.get(m))
    if cache is not None:  # every entry is assembled: the chunks are no longer needed
        for m in dict.fromkeys([*first, *todo]):
            shutil.rmtree(cache.chunk_dir(m), ignore_errors=True)
    return out
