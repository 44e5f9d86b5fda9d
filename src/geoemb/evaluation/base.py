"""Evaluator protocol: what ``geoemb.tasks.evaluate`` instantiates from ``cfg.evaluation``."""

from __future__ import annotations

import abc
from pathlib import Path

from geoemb.utils.run_logger import RunLogger


class Evaluator(abc.ABC):
    """A self-contained evaluation (benchmark, analysis) configured by Hydra.

    ``conf/evaluation/<name>.yaml`` holds ``_target_: geoemb.evaluation.<name>.<Class>`` plus its
    arguments; ``evaluate.py experiment=<name>`` instantiates it and calls :meth:`run`.
    """

    @abc.abstractmethod
    def run(self, output_dir: Path, logger: RunLogger) -> dict[str, float]:
        """Run the evaluation, write outputs under ``output_dir`` and return scalar metrics."""
