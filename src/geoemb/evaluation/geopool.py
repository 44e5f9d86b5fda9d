"""GeoPool benchmark evaluator: pool EuroSAT-Embed, probe (kNN + linear), write paper tables.

``evaluate.py experiment=geopool [data.synthetic=true]`` runs, for each encoder x split type
(standard = random, spatial = longitude), every pooling method through three library routines:

1. :func:`geoemb.pooling.features.pool_split` pools train and test (parametric methods fitted on
   the train part of the **same split type**), reading/writing the content-keyed pooled-feature
   cache :mod:`geoemb.pooling.cache` (``<cache dir>/<encoder>/<method>/<split>.npz``);
2. :func:`probe_rows` runs the probes of ``evaluation.probe`` (:class:`geoemb.probes.ProbeConfig`);
3. :mod:`geoemb.reporting.geopool` writes ``<results_dir>/jobs/<encoder>__<method>.csv`` (one file
   per encoder x method, so multirun jobs never write the same file) and aggregates every job
   found there (plus learnable-head results) into the paper tables and the random-vs-spatial plot.

The data is ``data: ${data}`` (``conf/data/eurosat_embed.yaml``): its source gives the root (or the
synthetic stand-in, generated once with this evaluator's encoders), ``values`` and ``size``.
Learnable heads trained with ``train.py experiment=pool_*`` enter the same tables either as
checkpoints (``heads=[...]``, read and verified before any pooling, tested on their own encoder/split)
or as the ``geopool_head_results.csv`` files their runs write (``extra_results=[...]``, globs ok).
"""

from __future__ import annotations

import dataclasses
import glob
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoemb.data.eurosat_embed import (
    ENCODER_FORMATS,
    SPLIT_TYPES,
    EuroSATEmbedDataset,
    encoder_dir,
    is_synthetic,
    split_file,
)
from geoemb.data.source import DataSource
from geoemb.errors import CheckpointError, InputError
from geoemb.evaluation.base import Evaluator
from geoemb.pooling.cache import PooledFeatureCache, SplitCache, files_digest
from geoemb.pooling.features import PoolOptions, expand_methods, pool_split
from geoemb.probes import ProbeConfig, run_probes
from geoemb.reporting import geopool as report
from geoemb.run.context import RunContext
from geoemb.utils.dask import dask_client, parse_dask_spec

__all__ = ["CacheOptions", "GeoPoolEvaluator", "evaluate_head_checkpoint", "probe_rows"]

log = logging.getLogger(__name__)

PROBE_METRICS = report.PROBE_METRICS


def sanitize(x: np.ndarray) -> np.ndarray:
    """Non-finite -> 0 (the reference's ``sanitize_features``)."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def probe_rows(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    device: str | torch.device = "cpu",
    probe: ProbeConfig | None = None,
) -> list[dict[str, Any]]:
    """Run the probes (:func:`geoemb.probes.run_probes`); return results rows (reference columns,
    no encoder/pool)."""
    probe = probe or ProbeConfig()
    res = run_probes(sanitize(x_train), np.asarray(y_train, dtype=np.int64), sanitize(x_test),
                     np.asarray(y_test, dtype=np.int64), probe, device=device)  # fmt: skip
    n = len(y_train)
    rows = []
    for k in probe.knn_k:
        m = res.metrics[f"knn_{k}"]
        rows.append({"probe": f"knn_{k}", "train_samples": n, "k": int(k), "C": "", **_m(m)})
    if probe.linear:
        m = res.metrics["linear"]
        rows.append({"probe": "linear", "train_samples": n, "k": "", "C": float(res.C), **_m(m)})
    return rows


def _m(m: dict) -> dict[str, float]:
    return {k: float(m[k]) for k in PROBE_METRICS}


# ---------------------------------------------------------------------------------- heads
def load_head(path: str, ctx: RunContext) -> Any:
    """Read and verify a ``PoolingClassifier`` checkpoint (``ctx.load_module``: the safe loader)."""
    model = ctx.load_module(path)
    if not hasattr(model, "head_name") or getattr(model, "data_config", None) is None:
        raise CheckpointError(f"{path}: not a PoolingClassifier checkpoint of train.py "
                              f"({type(model).__name__}, no data config)")  # fmt: skip
    return model


def evaluate_head(model: Any, device: torch.device) -> dict[str, Any]:
    """Test a loaded ``PoolingClassifier`` on the test split of the data config it was trained on;
    one results row (``probe = end2end``)."""
    dm = model.trained_datamodule()
    dm.prepare_data()
    dm.setup("test")
    y_true, y_pred = model.predict_loader(dm.test_dataloader(), device)
    return report.end2end_row(y_true, y_pred, model.num_classes, pool=model.head_name,
                              encoder=dm.encoder, split_type=dm.split,
                              train_samples=len(dm.dataset("train")),
                              data_source=dm.data_source, values=dm.values)  # fmt: skip


def evaluate_head_checkpoint(path: str, ctx: RunContext) -> dict[str, Any]:
    """:func:`load_head` + :func:`evaluate_head` on ``ctx.device``."""
    return evaluate_head(load_head(path, ctx), ctx.device)


# ---------------------------------------------------------------------------------- evaluator
@dataclasses.dataclass(frozen=True)
class CacheOptions:
    """``evaluation.cache``: the pooled-feature cache (``dir`` default ``<results_dir>/embeddings``;
    ``trust_unkeyed`` also reuses npz files without a geoemb sidecar, e.g. reference archives)."""

    enabled: bool = True
    dir: str | None = None
    trust_unkeyed: bool = False

    @classmethod
    def from_config(cls, node: Any) -> CacheOptions:
        return cls(enabled=bool(node)) if isinstance(node, bool) else cls(**dict(node or {}))


class GeoPoolEvaluator(Evaluator):
    """The GeoPool benchmark: pooling methods x encoders x random/spatial splits x probes.

    Parameters
    ----------
    data : the EuroSAT-Embed DataModule (``data: ${data}``): source, ``values``, ``size``,
        ``batch_size``/``num_workers`` of the pooling passes.
    encoders, methods, split_types : what to run (``methods``: pooling registry names or ``all``).
    probe : ``evaluation.probe`` (:class:`~geoemb.probes.ProbeConfig`; the seed is the run's).
    cache : ``evaluation.cache`` (:class:`CacheOptions`; ``false`` disables it).
    results_dir : jobs/tables/plots; default the run's shared dir (the sweep dir in a multirun).
    table_k : the kNN k shown in the tables.
    aggregate : rebuild tables/plot after this job (``python -m geoemb.reporting.geopool`` also can).
    extra_results : more results CSVs (paths/globs), e.g. heads' ``geopool_head_results.csv``.
    heads : PoolingClassifier checkpoints (paths/globs) to evaluate into the same tables.
    progress : progress bars for the pooling passes.
    dask : where the pooling passes run (``dask.scheduler`` from ``conf/dask/``: ``none``,
        ``local:N`` or a scheduler address): one Dask task per chunk of ``chunk_size`` patches ×
        pass, with resumable chunk files beside the cache; features bitwise the in-process ones.
    chunk_size : patches per Dask task (rounded up to a multiple of ``data.batch_size``).
    """

    def __init__(
        self,
        data: Any,
        encoders: Sequence[str] = ("aef", "olmoearth-nano", "tessera"),
        methods: Sequence[str] | str = "all",
        split_types: Sequence[str] = ("standard", "spatial"),
        probe: ProbeConfig | Mapping[str, Any] | None = None,
        cache: CacheOptions | Mapping[str, Any] | bool | None = None,
        results_dir: str | None = None,
        table_k: int = 5,
        aggregate: bool = True,
        extra_results: Sequence[str] = (),
        heads: Sequence[str] = (),
        progress: bool = True,
        dask: str | None = None,
        chunk_size: int = 1024,
    ) -> None:
        if not (isinstance(getattr(data, "source", None), DataSource) and hasattr(data, "hparams")):
            raise InputError("evaluation.data: expected the EuroSAT-Embed DataModule "
                             "(data=eurosat_embed; experiment=geopool sets it)")  # fmt: skip
        self.encoders = [encoders] if isinstance(encoders, str) else list(encoders)
        bad = [e for e in self.encoders if e not in ENCODER_FORMATS]
        if bad:
            raise InputError(f"evaluation.encoders: {bad} not in {sorted(ENCODER_FORMATS)}")
        try:
            self.methods = expand_methods(methods)
        except InputError as e:
            raise InputError(f"evaluation.methods: {e}") from e
        self.split_types = [split_types] if isinstance(split_types, str) else list(split_types)
        if set(self.split_types) - set(SPLIT_TYPES):
            raise InputError(f"evaluation.split_types: {self.split_types} not in {SPLIT_TYPES}")
        self.data, self.source = data, data.source
        if self.source.synthetic:  # the stand-in holds this evaluator's encoders
            kw = {**self.source.synthetic_kwargs, "encoders": list(self.encoders)}
            self.source = dataclasses.replace(self.source, synthetic_kwargs=kw)
        self.probe = ProbeConfig.from_config(probe)
        self.cache = cache if isinstance(cache, CacheOptions) else CacheOptions.from_config(
            True if cache is None else cache)  # fmt: skip
        self.results_dir = Path(results_dir) if results_dir else None
        self.table_k, self.aggregate, self.progress = int(table_k), bool(aggregate), bool(progress)
        self.extra_results, self.heads = list(extra_results or []), list(heads or [])
        self.dask = parse_dask_spec(dask)  # a bad spec fails before any data is read
        if int(chunk_size) < 1:
            raise InputError(f"evaluation.chunk_size={chunk_size}: expected >= 1 patches per task")
        self.chunk_size = int(chunk_size)

    def data_root(self) -> Path:
        """The folder to read (real root checked per encoder, or the stand-in generated once)."""
        root = self.source.resolve()
        for e in self.encoders:
            if not encoder_dir(root, e).is_dir():
                raise self.source.not_found(f"no folder {encoder_dir(root, e)} (encoder {e!r})")
        return root

    def data_source(self, root: Path) -> str:
        """``synthetic`` for the stand-in (``data.synthetic=true`` or a generated tree), else ``real``."""
        return "synthetic" if self.source.synthetic or is_synthetic(root) else "real"

    def _pool(self, root: Path, enc: str, st: str, ctx: RunContext, cache, memo,
              client=None) -> dict:  # fmt: skip
        hp = self.data.hparams
        train, test = (EuroSATEmbedDataset(root, enc, s, st, hp["values"], hp["size"])
                       for s in ("train", "test"))  # fmt: skip
        opts = PoolOptions(int(hp["batch_size"]), int(hp["num_workers"]), self.progress, ctx.seed)
        slot = None
        if cache is not None:
            files = [split_file(root, "train", st), split_file(root, "test", st),
                     *train.paths, *test.paths]  # fmt: skip
            info = {"data_source": self.data_source(root), "n_train": len(train),
                    "n_test": len(test)}  # fmt: skip
            slot = SplitCache(cache, enc, st, files_digest(files, memo),
                              {"values": hp["values"], "size": int(hp["size"])}, info)  # fmt: skip
        return pool_split(train, test, self.methods, opts, ctx.device, slot, f"{enc}/{st}",
                          dask=client, chunk_size=self.chunk_size)  # fmt: skip

    def run(self, ctx: RunContext) -> dict[str, float]:
        """Pool, probe, write ``jobs/*.csv`` and (optionally) the aggregated tables/plot."""
        paths = list(dict.fromkeys(p for pat in self.heads
                                   for p in sorted(glob.glob(str(pat), recursive=True)) or [pat]))  # fmt: skip
        heads = [load_head(p, ctx) for p in paths]  # every checkpoint read and checked first
        root = self.data_root()
        source = self.data_source(root)
        rd = self.results_dir or ctx.shared_dir
        cache = None
        if self.cache.enabled:
            cache = PooledFeatureCache(Path(self.cache.dir or rd / "embeddings"),
                                       self.cache.trust_unkeyed)  # fmt: skip
        probe = dataclasses.replace(self.probe, seed=ctx.seed)
        tags = {"data_source": source, "values": self.data.hparams["values"]}
        log.info("GeoPool: encoders=%s methods=%s data_source=%s -> %s",
                 self.encoders, self.methods, tags["data_source"], rd)  # fmt: skip
        metrics: dict[str, float] = {}
        memo: dict[str, str] = {}
        with dask_client(self.dask) as client:  # one cluster for every encoder x split
            for enc in self.encoders:
                per_method: dict[str, list[dict]] = {m: [] for m in self.methods}
                for st in self.split_types:
                    pooled = self._pool(root, enc, st, ctx, cache, memo, client)
                    for m, rec in pooled.items():
                        rows = probe_rows(rec["x_train"], rec["y_train"], rec["x_test"],
                                          rec["y_test"], device=ctx.device, probe=probe)  # fmt: skip
                        for r in rows:
                            r.update(encoder=enc, pool=m, split_type=st, **tags)
                            metrics[f"test/{r['probe']}_acc/{st}/{enc}/{m}"] = r["accuracy"]
                        per_method[m] += rows
                for m, rows in per_method.items():
                    report.write_job(rd, f"{enc}__{m}", rows)
        head_rows = [evaluate_head(model, ctx.device) for model in heads]
        for r in head_rows:
            metrics[f"test/end2end_acc/{r['split_type']}/{r['encoder']}/{r['pool']}"] = r[
                "accuracy"
            ]
        report.write_job(rd, "heads", head_rows)
        ctx.logger.log_metrics(metrics)
        if self.aggregate:
            out = report.aggregate(rd, extra=self.extra_results, k=self.table_k, logger=ctx.logger)
            metrics.update(report.table_metrics(out["linear_table"]))
            log.info("GeoPool tables: %s", out["linear_paths"]["md"])
        metrics["data_source_synthetic"] = float(source == "synthetic")
        return metrics
