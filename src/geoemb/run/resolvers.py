"""OmegaConf resolvers that geoemb's configs use; registered on import, before ``@hydra.main``.

``${geoemb.run_id:}``
    A run identifier unique across processes and machines:
    ``<YYYY-mm-dd_HH-MM-SS-mmm>_<6 hex>`` (local time to the millisecond, then 24 random bits from
    :mod:`secrets`), e.g. ``2025-01-31_14-03-07-512_9f3a2c``. It sorts by start time like Hydra's
    ``${now:%Y-%m-%d_%H-%M-%S}`` did, but two runs started in the same second (or millisecond) get
    different ids.

``${geoemb.run_dir:<base>}``
    ``<base>/<run id>`` (``conf/hydra/default.yaml`` uses it for ``hydra.run.dir`` and
    ``hydra.sweep.dir``). Before returning it checks, without creating anything, that the run
    directory can be created under ``base``, so an unwritable log directory is one
    :class:`~geoemb.errors.OutputError` naming it instead of a traceback from Hydra's ``mkdir``.

Both values are cached per config, like Hydra's ``now``: every interpolation in one run resolves to
the same directory, and Hydra copies that cache into every multirun job's config (and ships the
registered resolvers to joblib/submitit workers with its singleton state), so all jobs of one sweep
share one sweep directory while two sweeps started in the same second do not.

The entry points (``train.py``, ``evaluate.py``, ``infer.py``) import this module before
``@hydra.main`` composes a config; :func:`register` is idempotent.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

from hydra.errors import CompactHydraException
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from geoemb.errors import OutputError

__all__ = [
    "RUN_DIR_RESOLVER",
    "RUN_ID_RESOLVER",
    "RunDirError",
    "check_creatable",
    "make_run_id",
    "register",
]

RUN_ID_RESOLVER = "geoemb.run_id"
RUN_DIR_RESOLVER = "geoemb.run_dir"


class RunDirError(OutputError, InterpolationResolutionError, CompactHydraException):
    """The run directory cannot be created. Also an OmegaConf resolution error (so OmegaConf passes
    it through unwrapped) and a compact Hydra error (so the entry point prints the message alone,
    without a traceback of Hydra internals)."""


def make_run_id(now: datetime | None = None) -> str:
    """A fresh run id ``<YYYY-mm-dd_HH-MM-SS-mmm>_<6 hex>`` (see the module docstring)."""
    now = now or datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}-{now.microsecond // 1000:03d}_{secrets.token_hex(3)}"


def check_creatable(path: str | os.PathLike) -> None:
    """Raise :class:`RunDirError` (an :class:`OutputError`) unless directory ``path`` exists or can be created (no side
    effects: the nearest existing ancestor must be a writable, searchable directory)."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        if probe.is_symlink():  # dangling link
            raise RunDirError(f"cannot create run directory {p}: {probe} is a broken symlink")
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirError(
            f"cannot create run directory {p}: {probe} is a file, not a directory; "
            f"set paths.log_dir (or GEOEMB_LOG_DIR) to a writable directory"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(
            f"cannot create run directory {p}: {probe} is not writable; "
            f"set paths.log_dir (or GEOEMB_LOG_DIR) to a writable directory"
        )


def make_run_dir(base: str) -> str:
    """``<base>/<run id>`` after :func:`check_creatable` on ``base``."""
    check_creatable(base)
    return str(Path(str(base)) / make_run_id())


def register() -> None:
    """Register geoemb's resolvers (idempotent: an existing registration is kept)."""
    if not OmegaConf.has_resolver(RUN_ID_RESOLVER):
        OmegaConf.register_new_resolver(RUN_ID_RESOLVER, make_run_id, use_cache=True)
    if not OmegaConf.has_resolver(RUN_DIR_RESOLVER):
        OmegaConf.register_new_resolver(RUN_DIR_RESOLVER, make_run_dir, use_cache=True)


register()
