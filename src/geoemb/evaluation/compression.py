"""``evaluate.py experiment=compression``: the embedding compression study as an Evaluator.

Thin wiring: the pooled-feature tables come from ``data`` (an
:class:`~geoemb.data.embedding_table.EmbeddingTableSource`, ``conf/data/embedding_table.yaml``),
the study is :func:`geoemb.compression.study.run_study` (probes, statistics, content-keyed
baselines and spectra, one CSV row per encoder × config), and the tables and Pareto plots are
:func:`geoemb.reporting.compression.aggregate`. Rows go to ``results_dir`` (default: the sweep dir's
``compression/`` in a multirun, so parallel jobs share it; else the run dir); every job
re-aggregates, ``mode=aggregate`` only rebuilds the tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from geoemb.compression.registry import BLOG_CONFIGS, resolve
from geoemb.compression.study import SpectraConfig, StudyConfig, run_study
from geoemb.data.embedding_table import EmbeddingTableSource, as_list
from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.probes import ProbeConfig
from geoemb.reporting.compression import aggregate, main
from geoemb.run.context import RunContext
from geoemb.utils.dask import parse_dask_spec
from geoemb.utils.io import atomic_write_text

__all__ = ["CompressionEvaluator", "main"]


class CompressionEvaluator(Evaluator):
    """Compressors × encoders: accuracy vs bytes, significance, spectra, Pareto plots.

    Parameters
    ----------
    data : EmbeddingTableSource
        The pooled-feature tables (``data: ${data}``).
    configs : list or comma-separated str, optional
        Compression configs (``geoemb.compression.build`` names); default ``BLOG_CONFIGS``.
    probe : ProbeConfig or dict
        ``evaluation.probe`` (one kNN ``k``; the linear probe's ``C``/``Cs``/``cv``/``max_iter``).
    spectra : SpectraConfig, dict or bool
        ``evaluation.spectra``: PCA spectrum + intrinsic dimension per encoder.
    hamming, parquet : bool
        Hamming kNN on raw bits of sign codes; measured Parquet+zstd bytes.
    bootstrap_resamples : int
        Paired bootstrap resamples of the accuracy difference vs float32.
    results_dir : str, optional
        Shared folder of per-job rows (see module doc).
    mode : {"run", "aggregate"}
    aggregate, plots : bool
        Rebuild tables (and plots) after this job.
    device : str, optional
        Probes' torch device; ``null``/``auto`` = the run's device (``cpu`` is bit-identical to
        sklearn's kNN).
    dask : str, optional
        Where the configs run (``dask.scheduler`` from ``conf/dask/``: ``none``, ``local:N`` or a
        scheduler address): one Dask task per config; the rows equal the in-process run's.
    """

    def __init__(
        self,
        data: EmbeddingTableSource | None = None,
        configs: str | Sequence[str] | None = None,
        probe: ProbeConfig | Mapping[str, Any] | None = None,
        spectra: SpectraConfig | Mapping[str, Any] | bool | None = None,
        hamming: bool = True,
        parquet: bool = True,
        bootstrap_resamples: int = 9999,
        results_dir: str | None = None,
        mode: str = "run",
        aggregate: bool = True,
        plots: bool = True,
        device: str | None = "cpu",
        dask: str | None = None,
    ) -> None:
        if mode not in ("run", "aggregate"):
            raise InputError(f"evaluation.mode must be 'run' or 'aggregate', got {mode!r}")
        if mode == "run" and data is None:
            raise InputError("evaluation.data is not set: compose data=embedding_table "
                             "(experiment=compression does)")  # fmt: skip
        self.configs = as_list(configs) or list(BLOG_CONFIGS)
        for c in self.configs:  # fail fast on typos, before any data is read
            resolve(c)
        self.data = data
        self.study = StudyConfig(
            probe=ProbeConfig.from_config(probe), hamming=bool(hamming), parquet=bool(parquet),
            bootstrap_resamples=int(bootstrap_resamples), spectra=SpectraConfig.from_config(spectra),
        )  # fmt: skip
        self.results_dir, self.mode = results_dir, mode
        self.do_aggregate, self.plots, self.device = bool(aggregate), bool(plots), device
        self.dask = parse_dask_spec(dask)  # a bad spec fails before any data is read

    def results_path(self, ctx: RunContext) -> Path:
        """``results_dir``, else ``<sweep dir>/compression`` in a multirun, else the run dir."""
        if self.results_dir is not None:
            return Path(self.results_dir)
        return ctx.shared_dir / "compression" if ctx.is_multirun else ctx.output_dir

    def run(self, ctx: RunContext) -> dict[str, float]:
        results_dir = self.results_path(ctx)
        if self.mode == "aggregate":
            aggregate(results_dir, results_dir, ctx.logger, self.plots)
            return {}
        tables = self.data.load()  # every encoder read and validated before any work
        device = ctx.device if self.device in (None, "auto") else torch.device(self.device)
        study = replace(self.study, probe=replace(self.study.probe, seed=ctx.seed),
                        device=str(device), pooling=self.data.pooling, split=self.data.split)  # fmt: skip
        outcome = run_study(tables, self.configs, study, results_dir, self.data.class_names,
                            self.data.data_source, on_row=ctx.logger.log_metrics,
                            dask=self.dask)  # fmt: skip
        job = {"results_dir": str(results_dir), "encoders": list(tables), "configs": self.configs,
               "data_source": self.data.data_source, "skipped": outcome.skipped}  # fmt: skip
        atomic_write_text(ctx.output_dir / "compression_job.json", json.dumps(job, indent=2))
        if self.do_aggregate:
            aggregate(results_dir, results_dir, ctx.logger, self.plots)
        return outcome.metrics


if __name__ == "__main__":  # ``python -m geoemb.evaluation.compression aggregate <dir>`` (old CLI)
    raise SystemExit(main())
