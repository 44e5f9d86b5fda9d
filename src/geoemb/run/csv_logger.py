"""Lightning's CSV logger with a writer that reconciles its header with the file on disk.

Lightning's CSV experiment writer keeps the ``metrics.csv`` header only in memory. A second writer
of the same file — the test stage after fit under ``strategy=ddp_spawn``, where each stage runs in
fresh worker processes that start from the parent's (empty) writer state — rewrote the file with
its own keys only and failed with ``ValueError: dict contains fields not in fieldnames: 'val/loss',
…`` (``trainer=ddp_sim`` crashed at the test stage). :class:`CSVLogger` (``conf/logger/csv.yaml``)
takes the union of the keys it has seen and the header on disk, and rewrites the file through a
temporary file when the header grows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _LightningCSVWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from geoemb.utils.io import atomic_path

__all__ = ["CSVLogger", "MergingCSVWriter"]


class MergingCSVWriter(_LightningCSVWriter):
    """Lightning's CSV experiment writer whose header is the union of the keys it has seen and the
    header of the file on disk (which another process or an earlier stage may have written)."""

    def _file_header(self) -> list[str]:
        if not self._fs.isfile(self.metrics_file_path):
            return []
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            return next(csv.reader(f), [])

    def save(self) -> None:
        """Append the buffered rows; rewrite the file first when its header lacks a key."""
        if not self.metrics:
            return
        header = self._file_header()
        keys = sorted(set(header) | set(self.metrics_keys) | set().union(*self.metrics))
        self.metrics_keys = keys
        if header and header != keys:
            self._rewrite_with_new_header(keys)
        with self._fs.open(self.metrics_file_path, "a" if header else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            if not header:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """Rewrite the file under the new header through a temporary file (never half-written)."""
        if not isinstance(self._fs, LocalFileSystem):  # remote (fsspec): Lightning's rewrite
            return super()._rewrite_with_new_header(fieldnames)
        path = Path(self.metrics_file_path)
        with path.open("r", newline="") as f:
            rows = list(csv.DictReader(f))
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(_LightningCSVLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.CSVLogger` with a header-merging writer (see
    the module docstring); same arguments, same files (``<save_dir>/<name>/<version>/metrics.csv``)."""

    @property
    def experiment(self) -> _LightningCSVWriter:
        if self._experiment is None and getattr(rank_zero_only, "rank", 0) == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = MergingCSVWriter(log_dir=self.log_dir)
        return super().experiment
