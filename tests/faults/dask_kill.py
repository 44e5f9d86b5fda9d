"""Helpers for the Dask worker-kill fault tests (pipelines' tasks killed with ``SIGKILL``)."""

from __future__ import annotations

import os
import signal


def die_once_or_always(marker: str | None) -> None:
    """``SIGKILL`` this (worker) process: every time when ``marker`` is ``None``; otherwise only
    for the first caller across all workers (the one that creates ``marker`` with ``O_EXCL``),
    returning normally for everyone after. Workers restarted by their nanny are fresh processes."""
    if marker is not None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def set_allowed_failures(n: int, dask_scheduler=None) -> int:
    """On the scheduler (``client.run_on_scheduler``): how many worker deaths a task survives;
    returns the previous value."""
    old = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = n
    return old


def install_killer(module: str, attr: str, marker: str | None) -> int:
    """On a worker (``client.run``): ``module.attr`` kills the process when next called (see
    :func:`die_once_or_always`); returns the worker's pid. Workers restarted by their nanny are
    fresh processes without the killer."""
    import importlib

    mod = importlib.import_module(module)
    real = getattr(mod, attr)

    def dying(*a, **k):
        die_once_or_always(marker)
        return real(*a, **k)

    setattr(mod, attr, dying)
    return os.getpid()
