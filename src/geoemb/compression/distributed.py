"""Run the configs of a compression sweep in this process or as one Dask task each.

:func:`config_runner` opens the place the configs run (:func:`geoemb.utils.dask.dask_client`:
``none``, ``local:N``, a scheduler address, or an existing ``distributed.Client``) and yields a
*runner*: ``runner(fn, configs, shared)`` returns an iterator of ``(result, error)`` in **config
order**, ``result = fn(config, *shared)``. On Dask the shared arguments (the feature table, the
baseline predictions, the study config) are scattered to every worker once, not shipped with each
task, and every config is submitted at once; results are still consumed in config order, so the rows
written (and a failure's place in them) are those of the in-process run. A task whose workers died
too often (``distributed.scheduler.allowed-failures``) comes back as a :class:`DaskTaskError`
naming the config; the caller turns any error into its ``failed`` row and stops (the remaining
tasks are cancelled).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from geoemb.errors import GeoembError
from geoemb.utils.dask import dask_client, parse_dask_spec

__all__ = ["DaskTaskError", "Runner", "config_runner"]

#: ``runner(fn, configs, shared) -> iterator of (result | None, exception | None)``.
Runner = Callable[
    [Callable[..., Any], Sequence[str], tuple], Iterator[tuple[Any, BaseException | None]]
]


class DaskTaskError(GeoembError):
    """A config's Dask task could not finish (its workers died too often)."""


def _in_process(fn: Callable[..., Any], configs: Sequence[str], shared: tuple):  # noqa: ANN202
    for cfg in configs:
        try:
            yield fn(cfg, *shared), None
        except Exception as e:  # the caller records it as the config's failed row
            yield None, e
            return


def _call(fn: Callable[..., Any], cfg: str, shared: tuple) -> Any:
    return fn(cfg, *shared)


def _on_dask(client: Any) -> Runner:
    def run(fn: Callable[..., Any], configs: Sequence[str], shared: tuple):  # noqa: ANN202
        from distributed.scheduler import KilledWorker

        if not configs:
            return
        tag = uuid.uuid4().hex[:8]
        [shared_f] = client.scatter([shared], broadcast=True, hash=False)  # once, not per task
        futs = [client.submit(_call, fn, cfg, shared_f, pure=False,
                              key=f"compression-{cfg}-{i}-{tag}")
                for i, cfg in enumerate(configs)]  # fmt: skip
        try:
            for cfg, f in zip(configs, futs):
                try:
                    res = f.result()
                except KilledWorker as e:
                    client.cancel(futs)  # before the caller raises (this generator is left open)
                    yield (
                        None,
                        DaskTaskError(
                            f"the Dask workers running config {cfg!r} died too often ({e}); check "
                            "the workers' memory (a per-worker memory limit) and rerun"
                        ),
                    )
                    return
                except Exception as e:  # raised by fn on the worker
                    client.cancel(futs)
                    yield None, e
                    return
                yield res, None
        finally:
            client.cancel(futs)
            shared_f.release()

    return run


@contextlib.contextmanager
def config_runner(dask: Any = None) -> Iterator[Runner]:
    """Yield the runner for ``dask`` (a spec or an existing ``distributed.Client``)."""
    if hasattr(dask, "submit"):
        yield _on_dask(dask)
        return
    if parse_dask_spec(dask).kind == "none":
        yield _in_process
        return
    with dask_client(dask) as client:
        yield _on_dask(client)
