"""Run the zonal partitions in this process (threads) or on Dask, and assemble them.

Polygons are partitioned spatially: by their first candidate tile, then in raster order inside
it, at most ``chunk_size`` polygons per partition, so each task reads only the windows of its own
tiles. The same partitions run in-process (a thread pool) or as Dask tasks
(:func:`geoemb.utils.dask.dask_client`: ``local:N`` or a scheduler address); results are placed by
global row id, so the output is identical row by row whatever the layout. A partition whose result
does not have exactly its rows and the expected columns/dtypes is an error naming the partition,
never a short output; a worker that dies is retried by Dask (``distributed.scheduler.
allowed-failures``), and when the retries are used up the run fails naming the partition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import geopandas as gpd
import numpy as np
from tqdm.auto import tqdm

from geoemb.errors import GeoembError
from geoemb.utils.dask import dask_client, parse_dask_spec
from geoemb.zonal.engine import Job, PartResult, run_partition

__all__ = ["DaskPartitionError", "Partition", "plan_partitions", "run_partitions"]


class DaskPartitionError(GeoembError):
    """A partition failed on Dask (worker killed too often, or a malformed result)."""


@dataclasses.dataclass(frozen=True)
class Partition:
    """One task: global row ids (ascending within raster order) and a name for messages."""

    key: int
    rows: np.ndarray
    name: str


def plan_partitions(
    geoms_cat: np.ndarray,
    pairs: dict[int, list[int]],
    metas: dict[int, Any],
    chunk_size: int,
) -> list[Partition]:
    """Partitions of the polygons that meet a tile.

    Parameters
    ----------
    geoms_cat:
        All polygons (shapely array) in the catalogue CRS (used for the raster order only).
    pairs:
        Row -> candidate tile ids, ascending.
    metas:
        Tile headers by tile id (names in messages).
    chunk_size:
        Maximum polygons per partition.
    """
    rows = np.asarray(sorted(pairs), dtype=np.int64)
    if not len(rows):
        return []
    first = np.asarray([pairs[i][0] for i in rows.tolist()], dtype=np.int64)
    b = np.asarray([g.bounds for g in geoms_cat[rows]], dtype=np.float64)
    order = np.lexsort((b[:, 0], -b[:, 3], first))  # tile, then north -> south, west -> east
    out: list[Partition] = []
    for j in np.unique(first):
        sel = rows[order][first[order] == j]
        for s in range(0, len(sel), max(1, chunk_size)):
            part = sel[s : s + chunk_size]
            k = len(out)
            tile = metas[int(j)].path
            out.append(Partition(k, part, f"partition {k} ({len(part)} polygons of tile {tile})"))
    return out


def _check(part: Partition, res: Any, job: Job) -> PartResult:
    """Refuse a result that is not exactly the partition's rows with the expected schema."""
    if not isinstance(res, PartResult):
        raise DaskPartitionError(f"{part.name}: the task returned {type(res).__name__}, "
                                 "expected a PartResult (mixed geoemb versions on the workers?)")  # fmt: skip
    n = len(part.rows)
    got = {
        "rows": (res.rows.dtype, res.rows.shape), "feats": (res.feats.dtype, res.feats.shape),
        "counts": (res.counts.dtype, res.counts.shape),
        "ntiles": (res.ntiles.dtype, res.ntiles.shape),
    }  # fmt: skip
    want = {
        "rows": (np.dtype(np.int64), (n,)), "feats": (np.dtype(np.float32), (n, job.out_dim)),
        "counts": (np.dtype(np.int64), (n,)), "ntiles": (np.dtype(np.int64), (n,)),
    }  # fmt: skip
    bad = {k: got[k] for k in want if got[k] != want[k]}
    if bad:
        expected = {k: want[k] for k in bad}
        raise DaskPartitionError(
            f"{part.name}: result (dtype, shape) {bad} differs from the expected {expected} "
            "(mixed geoemb versions on the workers?)"
        )
    if not np.array_equal(res.rows, part.rows):
        raise DaskPartitionError(
            f"{part.name}: the task returned rows {res.rows[:5].tolist()}… instead of its "
            f"{n} rows {part.rows[:5].tolist()}…; refusing a short or shuffled output"
        )
    return res


def run_partitions(
    polygons: gpd.GeoSeries,
    pairs: dict[int, list[int]],
    parts: list[Partition],
    job: Job,
    *,
    dask: Any = None,
    threads: int = 1,
    progress: bool = False,
    on_result: Callable[[PartResult], None],
) -> None:
    """Run every partition and hand each checked :class:`PartResult` to ``on_result``.

    Parameters
    ----------
    polygons:
        All (repaired) polygons in their source CRS, indexed by row id.
    dask:
        ``None``/``"none"``: in this process with ``threads`` threads; a spec (``local:2``,
        ``tcp://…``) or an existing ``distributed.Client``: one Dask task per partition.
    """
    total = sum(len(p.rows) for p in parts)
    bar = tqdm(total=total, desc=f"zonal {job.method}", unit="poly", disable=not progress)

    def args(p: Partition) -> tuple[gpd.GeoSeries, dict[int, list[int]]]:
        sub = polygons.loc[p.rows]
        return sub, {int(i): pairs[int(i)] for i in p.rows}

    try:
        client_given = hasattr(dask, "submit")  # an existing distributed.Client
        if not parts or (not client_given and parse_dask_spec(dask).kind == "none"):
            if max(1, threads) == 1:  # in this thread: a fresh pool thread would open its own
                for p in parts:  # PROJ context and database (~0.1 s per call, per partition)
                    on_result(_check(p, run_partition(*args(p), job), job))
                    bar.update(len(p.rows))
                return
            with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
                futs = [(p, ex.submit(run_partition, *args(p), job)) for p in parts]
                for p, f in futs:
                    on_result(_check(p, f.result(), job))
                    bar.update(len(p.rows))
            return
        if client_given:
            _run_dask(dask, polygons, parts, args, job, on_result, bar)
            return
        with dask_client(dask) as client:
            _run_dask(client, polygons, parts, args, job, on_result, bar)
    finally:
        bar.close()


def _run_dask(client, polygons, parts, args, job, on_result, bar) -> None:  # noqa: ANN001
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    [job_f] = client.scatter([job], broadcast=True)
    futs = {}
    for p in parts:
        sub, pr = args(p)
        f = client.submit(run_partition, sub, pr, job_f, pure=False, key=f"zonal-part-{p.key}-"
                          f"{id(parts):x}")  # fmt: skip
        futs[f.key] = (p, f)
    by_key = {k: p for k, (p, _) in futs.items()}
    try:
        for f in as_completed([f for _, f in futs.values()]):
            p = by_key[f.key]
            try:
                res = f.result()
            except KilledWorker as e:
                raise DaskPartitionError(
                    f"{p.name}: the Dask workers running it died too often ({e}); nothing was "
                    "written. Check the workers' memory (a per-worker memory limit) and rerun"
                ) from e
            on_result(_check(p, res, job))
            bar.update(len(p.rows))
    finally:
        for _, f in futs.values():
            f.release()
