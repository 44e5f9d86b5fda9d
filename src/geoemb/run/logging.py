"""Console and log-file hygiene for geoemb runs: each line once, no library chatter we trigger.

Hydra configures the root logger of every job (a console handler and ``<run>/<task>.log``).
Lightning, on import, adds its own console handler to the ``lightning`` logger (and, if the root
logger had no handler yet, to ``lightning.pytorch``/``lightning.fabric`` with ``propagate=False``),
so every Lightning INFO line used to be printed twice (``INFO: ...`` and Hydra's format) or never
reached the log file; submitit does the same in its jobs. :func:`configure_logging` routes those
loggers to the root handlers instead: each line is printed once and written once to the run's log
file.

It also drops, by exact logger name and message (never by level or module alone), the library
chatter our runs trigger (:data:`NOISE`), and ignores the deprecation warnings that libraries raise
against each other on our calls (:data:`WARNING_RULES`). Real warnings are untouched.

:class:`LoggingCallback` is the Hydra callback (``conf/hydra/default.yaml``) that applies all of this
in every job, including Lightning DDP worker processes (which re-run the entry point) and submitit
jobs; on ranks other than 0 it keeps only warnings and errors (rank 0 already reports). With
``quiet_jobs=true`` (``hparams_search=…``) a sweep's jobs print only warnings and errors to the
console (their INFO lines still go to each job's log file) and one summary line per finished job.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

__all__ = [
    "NOISE",
    "WARNING_RULES",
    "LoggingCallback",
    "NoiseFilter",
    "NoiseRule",
    "configure_logging",
    "ignore_library_warnings",
    "job_summary",
    "process_rank",
    "route_to_root",
]

SWEEP_LOGGER = "geoemb.sweep"
"""Logger of the one line per finished sweep job (shown on the console even in quiet jobs)."""

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
ROUTED_LOGGERS = (*LIGHTNING_LOGGERS, "pytorch_lightning", "lightning_fabric", "submitit")
"""Loggers that attach their own console handlers on import (Lightning; submitit in its jobs)."""


@dataclass(frozen=True)
class NoiseRule:
    """Drop records of logger ``logger`` at ``max_level`` or below whose message matches ``pattern``
    (``re.match``, i.e. anchored at the start)."""

    logger: str
    pattern: str
    max_level: int = logging.INFO
    why: str = ""


NOISE: tuple[NoiseRule, ...] = (
    NoiseRule(
        "lightning.pytorch.utilities.rank_zero",
        r"💡 Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\]",
        why="advertisement printed by every Trainer without a LitLogger",
    ),
    NoiseRule(
        "faiss.loader",
        r"(Loading faiss( with \S+ support)?\.|Successfully loaded faiss( with \S+ support)?\.|"
        r"Could not load library with \S+ support due to:)",
        why="FAISS tries its AVX2/AVX512 builds first; pip wheels without them log a "
        "ModuleNotFoundError('No module named faiss.swigfaiss_avx2') and fall back (INFO only: "
        "a real load failure is an ImportError)",
    ),
    NoiseRule(
        "alembic.runtime.plugins",
        r"setup plugin alembic\.",
        why="Optuna imports alembic, which logs each of its plugins at INFO",
    ),
)
"""Library log records we drop (exact logger, message prefix, INFO or below)."""


WARNING_RULES: tuple[tuple[str, type[Warning], str], ...] = (
    (
        # torch >= 2.10 deprecated LeafSpec(); Lightning <= 2.6 still builds one in CombinedLoader
        # for every dataloader our Trainer.fit/validate/test wraps (nothing in geoemb calls it).
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
)
"""``(message regex, category, module regex)`` of warnings ignored (libraries deprecating each
other's calls on our behalf; our own deprecated calls are fixed, not filtered)."""


class NoiseFilter(logging.Filter):
    """A logging filter that drops the records matched by ``rules`` (default :data:`NOISE`)."""

    def __init__(self, rules: tuple[NoiseRule, ...] = NOISE) -> None:
        super().__init__()
        self._rules: dict[str, list[tuple[re.Pattern, int]]] = {}
        for r in rules:
            self._rules.setdefault(r.logger, []).append((re.compile(r.pattern), r.max_level))

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging API
        rules = self._rules.get(record.name)
        if not rules:
            return True
        msg = record.getMessage()
        return not any(record.levelno <= lvl and rx.match(msg) for rx, lvl in rules)


class _MinLevelFilter(logging.Filter):
    """Pass records at ``level`` or above, and any record of the ``allow`` loggers."""

    def __init__(self, level: int, allow: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.level, self.allow = level, allow

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging API
        return record.levelno >= self.level or record.name in self.allow


def process_rank() -> int:
    """This process's distributed rank from the environment, read as Lightning reads it
    (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``); 0 when none is set."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return 0


def route_to_root() -> bool:
    """Remove the console handlers that Lightning (and submitit, in its jobs) attach to their own
    loggers, and let those loggers propagate to the root handlers (Hydra's console and log file).

    Imports ``lightning`` first (its import adds the handlers, so a later import cannot re-add
    them). Does nothing when the root logger has no handler (a plain script or notebook: Lightning's
    handlers are then the only way its INFO lines are shown). Returns whether it rerouted.
    """
    import lightning  # noqa: F401  (its import-time handler set-up must have run)

    if not logging.getLogger().handlers:
        return False
    for name in ROUTED_LOGGERS:
        if name not in logging.Logger.manager.loggerDict:
            continue
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:  # their console handlers (not file/user ones)
                lg.removeHandler(h)
        lg.propagate = True
    return True


def _add_filter_once(target: logging.Filterer, flt: logging.Filter) -> None:
    if not any(type(f) is type(flt) for f in target.filters):
        target.addFilter(flt)


def _console_handlers() -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def ignore_library_warnings() -> None:
    """Ignore the warnings of :data:`WARNING_RULES` (exact message, category and module)."""
    for message, category, module in WARNING_RULES:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def configure_logging(quiet_console: bool = False) -> None:
    """Apply geoemb's logging policy to this process (idempotent; call after Hydra configured the
    root logger, as :class:`LoggingCallback` does).

    Parameters
    ----------
    quiet_console
        Console handlers show only warnings, errors and the :data:`SWEEP_LOGGER` summary lines
        (the log file keeps everything).
    """
    route_to_root()
    noise = NoiseFilter()
    for name in {r.logger for r in NOISE}:
        _add_filter_once(logging.getLogger(name), noise)
    ignore_library_warnings()
    if process_rank() != 0:  # DDP workers: rank 0 reports, the others only warn
        for h in logging.getLogger().handlers:
            _add_filter_once(h, _MinLevelFilter(logging.WARNING))
    elif quiet_console:
        for h in _console_handlers():
            _add_filter_once(h, _MinLevelFilter(logging.WARNING, allow=(SWEEP_LOGGER,)))


class LoggingCallback(Callback):
    """Hydra callback: :func:`configure_logging` in every job; W&B files under the job's run dir.

    Parameters
    ----------
    quiet_jobs
        In a multirun, each job's console shows only warnings/errors and, when it ends, one line
        (``SWEEP_LOGGER``) with its number, return value, overrides and run directory.
    """

    def __init__(self, quiet_jobs: bool = False) -> None:
        self.quiet_jobs = bool(quiet_jobs)
        self._wandb_dir: list[str | None] = []

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        configure_logging()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        configure_logging()  # before the sweeper is built (Optuna imports alembic then)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        configure_logging(quiet_console=self.quiet_jobs and _is_multirun(config))
        # W&B writes under WANDB_DIR when no dir is passed (e.g. a process that attaches to a run
        # started elsewhere): never the current directory.
        self._wandb_dir.append(os.environ.get("WANDB_DIR"))
        os.environ["WANDB_DIR"] = str(config.hydra.runtime.output_dir)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        previous = self._wandb_dir.pop() if self._wandb_dir else None
        if previous is None:
            os.environ.pop("WANDB_DIR", None)
        else:
            os.environ["WANDB_DIR"] = previous
        if self.quiet_jobs and _is_multirun(config):
            logging.getLogger(SWEEP_LOGGER).info("%s", job_summary(config, job_return))


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.get("mode") == RunMode.MULTIRUN


def job_summary(config: DictConfig, job_return: Any) -> str:
    """One line for a finished sweep job: number, status, the optimised value (or the error), the
    swept parameters (``hydra.sweeper.params`` keys when the sweeper has them, else every
    override) and the run directory."""
    status = getattr(getattr(job_return, "status", None), "name", "?")
    try:
        value = job_return.return_value  # re-raises the job's exception when it failed
    except Exception as err:  # noqa: BLE001 - report it, Hydra/the sweeper handle the failure
        value = err
    if isinstance(value, BaseException):
        shown = (f"{type(value).__name__}: {value}".splitlines() or [""])[0][:200]
    elif isinstance(value, int | float):
        shown = f"{config.get('optimized_metric') or 'value'}={value:.6g}"
    else:
        shown = f"value={value!r}"[:200]
    swept = set((config.hydra.sweeper.get("params") or {}).keys())
    overrides = [str(o) for o in (getattr(job_return, "overrides", None) or [])]
    if swept:
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    return (
        f"job {config.hydra.job.num} [{status}] {shown} | {' '.join(overrides)} -> "
        f"{config.hydra.runtime.output_dir}"
    )
