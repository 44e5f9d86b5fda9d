"""Shared DataModule plumbing: the data source every DataModule holds, worker counts, split loaders."""

from __future__ import annotations

import os
from pathlib import Path

from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from geoemb.data.source import DataSource
from geoemb.errors import InputError

__all__ = ["MAX_AUTO_WORKERS", "SourcedDataModule", "SplitDataModule", "resolve_num_workers"]

MAX_AUTO_WORKERS = 8
"""Upper bound of ``num_workers: null`` (the reference recipes' 8)."""


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (else ``os.cpu_count()``), capped by a cgroup
    v2 CPU quota (``/sys/fs/cgroup/cpu.max``, e.g. a container limited to 2 of 64 cores)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n


def resolve_num_workers(value: int | str | None) -> int:
    """DataLoader workers for a ``data.num_workers`` setting.

    ``None`` or ``"auto"`` -> ``min(8, usable CPUs - 1)`` (one core left to the training process;
    0 on a single core), so no machine is asked for more workers than it has (PyTorch and Lightning
    warn about that on every loader). An integer >= 0 is taken as is.

    Raises
    ------
    InputError for anything else (naming ``data.num_workers``).
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return max(0, min(MAX_AUTO_WORKERS, usable_cpus() - 1))
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or isinstance(value, bool) or (isinstance(value, float) and value != n):
        raise InputError(f"data.num_workers={value!r}: expected an integer >= 0, null or 'auto'")
    return n


class SourcedDataModule(LightningDataModule):
    """A DataModule that reads the folder its :class:`~geoemb.data.source.DataSource` resolves.

    Subclasses set ``self.source`` in ``__init__``. :meth:`check` (= ``source.resolve()``) checks
    the real data or generates the stand-in; it is cheap once done, so ``tasks.train`` calls it
    before loggers start and ``prepare_data``/``setup`` call it again.
    """

    source: DataSource

    @property
    def data_source(self) -> str:
        """``"synthetic"`` or ``"real"`` (runs, tables, figures and rasters are tagged with it)."""
        return self.source.data_source

    @property
    def synthetic(self) -> bool:
        """True when reading the synthetic stand-in."""
        return self.source.synthetic

    @property
    def synthetic_root(self) -> str:
        """Parent folder of the content-keyed stand-ins."""
        return str(self.source.synthetic_root)

    def check(self) -> Path:
        """The folder to read: the real root (checked: one clear error) or the stand-in (generated)."""
        return self.source.resolve()

    def prepare_data(self) -> None:
        """Generate the synthetic stand-in once (rank 0 of each node); check the real data exists."""
        self.check()


class SplitDataModule(SourcedDataModule):
    """A DataModule whose subclass provides ``dataset(split)``; the loaders come from here.

    Uses ``hparams.batch_size``, ``hparams.eval_batch_size`` (optional, for val/test/predict),
    ``self.num_workers`` (resolved from ``hparams.num_workers``) and ``hparams.pin_memory``;
    training batches are shuffled and ``predict`` runs over the test split.
    """

    def dataset(self, split: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_workers(self) -> int:
        """DataLoader workers (``data.num_workers``; ``null`` = what the machine has)."""
        return resolve_num_workers(self.hparams.get("num_workers"))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        bs = hp.batch_size if split == "train" else (hp.get("eval_batch_size") or hp.batch_size)
        workers = self.num_workers
        return DataLoader(
            self.dataset(split),
            batch_size=bs,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=hp.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
