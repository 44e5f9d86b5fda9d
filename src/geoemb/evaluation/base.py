"""Evaluator protocol: what ``geoemb.tasks.evaluate`` instantiates from ``cfg.evaluation``."""

from __future__ import annotations

import abc

from geoemb.run.context import RunContext


class Evaluator(abc.ABC):
    """A self-contained evaluation (benchmark, analysis) configured by Hydra.

    ``conf/evaluation/<name>.yaml`` holds ``_target_: geoemb.evaluation.<name>.<Class>``, its
    arguments and ``data: ${data}`` (the data source composed from ``conf/data/``);
    ``evaluate.py experiment=<name>`` instantiates it and calls :meth:`run` with the run's
    :class:`~geoemb.run.context.RunContext`. Evaluators are thin: they wire a data source, a library
    routine and a report together, and never read Hydra's global state.
    """

    @abc.abstractmethod
    def run(self, ctx: RunContext) -> dict[str, float]:
        """Run the evaluation, write outputs under ``ctx.output_dir``/``ctx.shared_dir`` and
        return scalar metrics."""
