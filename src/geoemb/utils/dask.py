"""Where a data pipeline runs: in this process, on a local Dask cluster, or on a running scheduler.

Every pipeline that can run on Dask (corpus build, zonal statistics, pooling caches, compression
sweeps) takes one ``dask`` spec and calls :func:`dask_client`; the same function then runs its tasks
through the client, or in-process when the spec is ``None``. Outputs must not depend on the spec
(each pipeline tests that row by row).

Spec grammar (command line ``--dask SPEC``, Hydra ``dask.scheduler=SPEC``):

``None`` / ``""`` / ``"none"``
    no Dask: the pipeline's single-process path.
``"local"`` / ``"local:N"``
    a ``distributed.LocalCluster`` with ``N`` worker processes (default: the machine's cores), one
    thread each, memory limit ``memory_limit`` per worker; closed when the block exits. Scheduler,
    workers and dashboard listen on 127.0.0.1 only (the dashboard on a free port, its link logged;
    the plots need ``bokeh``).
``"tcp://host:port"`` (or any address ``distributed.Client`` accepts, e.g. ``tls://``)
    an existing scheduler (a SLURM/Kubernetes/dask-jobqueue cluster); left running on exit. An
    unreachable address is a :class:`~geoemb.errors.InputError` naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from geoemb.errors import InputError

__all__ = ["DaskSpec", "dask_client", "parse_dask_spec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaskSpec:
    """A parsed ``dask`` spec: ``kind`` is ``"none"``, ``"local"`` or ``"address"``."""

    kind: str
    n_workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.n_workers}"
        return self.address or "none"


def parse_dask_spec(spec: str | DaskSpec | None) -> DaskSpec:
    """Parse the ``dask`` spec (see the module docstring); bad specs raise :class:`InputError`."""
    if isinstance(spec, DaskSpec):
        return spec
    s = "" if spec is None else str(spec).strip()
    if s.lower() in ("", "none", "null", "false", "off"):
        return DaskSpec("none")
    if s.lower() == "local" or s.lower().startswith("local:"):
        _, _, n = s.partition(":")
        try:
            workers = int(n) if n else (os.cpu_count() or 1)
        except ValueError:
            workers = 0
        if workers < 1:
            raise InputError(f"dask spec {spec!r}: expected local:N with N >= 1 worker processes")
        return DaskSpec("local", n_workers=workers)
    if "://" in s:
        return DaskSpec("address", address=s)
    raise InputError(
        f"dask spec {spec!r}: expected none, local, local:N or a scheduler address such as "
        "tcp://host:8786"
    )


@contextlib.contextmanager
def dask_client(
    spec: str | DaskSpec | None,
    *,
    memory_limit: str = "auto",
    timeout: float = 10.0,
    dashboard: str = "127.0.0.1:0",
) -> Iterator[object | None]:
    """Yield a ``distributed.Client`` for ``spec`` (``None`` when the spec is ``none``).

    Parameters
    ----------
    spec
        See the module docstring.
    memory_limit
        Per-worker memory limit of a ``local`` cluster (Dask's own grammar, e.g. ``"4GiB"``).
    timeout
        Seconds to wait for a remote scheduler before the clear error.
    dashboard
        ``host:port`` of a ``local`` cluster's dashboard (default: a free port on 127.0.0.1). The
        link (of a remote scheduler's dashboard too) is logged at INFO when there is one.
    """
    parsed = parse_dask_spec(spec)
    if parsed.kind == "none":
        yield None
        return
    from distributed import Client, LocalCluster  # heavy: only when Dask is asked for

    if parsed.kind == "local":
        with (
            LocalCluster(
                n_workers=parsed.n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit,
                host="127.0.0.1",
                dashboard_address=dashboard,
            ) as cluster,
            Client(cluster) as client,
        ):
            _log_dashboard(client)
            yield client
        return
    try:
        client = Client(parsed.address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise InputError(
            f"cannot reach the Dask scheduler at {parsed.address} (waited {timeout:g} s): {e}. "
            "Start it (dask scheduler / your cluster's launcher) or use dask=local."
        ) from e
    _log_dashboard(client)
    try:
        yield client
    finally:
        client.close()


def _log_dashboard(client: object) -> None:
    link = getattr(client, "dashboard_link", None)
    if link:
        log.info("Dask dashboard: %s", link)
