"""The compression study ("Compressing Earth Embeddings", part 1) as a library routine.

For each encoder's pooled-feature table (``x_train, y_train, x_test, y_test``) and each compression
config (:func:`geoemb.compression.build` names), :func:`evaluate_config`:

1. fits the compressor on ``x_train`` only, encodes train and test, decodes to features;
2. runs the probes (:func:`geoemb.probes.run_probes`: kNN k=5 cosine and the linear probe) on the
   decoded features; for sign-bit codes also Hamming kNN on the raw packed bits
   (:func:`geoemb.retrieval.knn.hamming_knn_classify`);
3. compares with the float32 baseline: exact McNemar, paired percentile-bootstrap 95 % CI of the
   accuracy difference, per-class F1 drop and worst class;
4. records payload bytes/vector, measured Parquet+zstd bytes/vector and reconstruction error.

:func:`run_study` loops encoders × configs and writes one CSV row per (encoder, config) under
``<results_dir>/rows/`` (so a Hydra multirun can write in parallel); per encoder it also writes the
PCA spectrum and intrinsic dimension. :mod:`geoemb.reporting.compression` aggregates the rows.

Trust rules: the float32 baseline (``baseline/``) and the spectra (``spectra/``) cached in
``results_dir`` are keyed by a fingerprint of the features and the protocol, so a run on other data
never reuses them; every row carries ``data_fingerprint`` and ``protocol``. A config infeasible by
construction (the compressor's ``check_feasible``, e.g. ``pq_8x8`` on 180 rows) is recorded as
``skipped`` with its reason; any other failure records a ``failed`` row and raises
:class:`~geoemb.compression.base.ConfigFailedError`.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoemb.analysis.intrinsic_dim import (
    dimension_balance,
    intrinsic_dimension_report,
    pca_spectrum,
)
from geoemb.analysis.stats import f1_drop, mcnemar_exact, paired_bootstrap_ci
from geoemb.compression.base import ConfigFailedError, InfeasibleConfigError
from geoemb.compression.bitpack import unpack_bits
from geoemb.compression.cache import fingerprint, read_npz_cache, write_npz_cache
from geoemb.compression.registry import build, nominal_bits
from geoemb.compression.storage import parquet_bytes_per_vector
from geoemb.errors import InputError
from geoemb.probes import ProbeConfig, run_probes
from geoemb.retrieval.knn import hamming_knn_classify
from geoemb.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_KEYS",
    "SpectraConfig",
    "StudyConfig",
    "StudyOutcome",
    "baseline_predictions",
    "evaluate_config",
    "run_study",
    "spectra",
    "write_row",
]

FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Row metrics also returned as scalars (``compression/<encoder>/<config>/<name>``).
SCALARS = ("knn_acc", "linear_acc", "hamming_knn_acc", "bytes_payload", "bytes_parquet_zstd",
           "knn_mcnemar_p")  # fmt: skip


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


@dataclass(frozen=True)
class SpectraConfig:
    """PCA spectrum + intrinsic dimension of each encoder's ``x_train`` (``evaluation.spectra``)."""

    enabled: bool = True
    components: tuple[int, ...] = (4, 8, 16, 32, 64, 256)
    id_max_rows: int = 3000
    id_neighbors: int = 20
    local_pca_neighbors: int = 100

    @classmethod
    def from_config(cls, node: SpectraConfig | Mapping[str, Any] | bool | None) -> SpectraConfig:
        """From a config node; ``true``/``false`` toggles the defaults."""
        if isinstance(node, SpectraConfig):
            return node
        if node is None or isinstance(node, bool):
            return cls(enabled=node is not False)
        kw = dict(node)
        unknown = sorted(set(kw) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"evaluation.spectra: unknown key(s) {unknown}; valid: "
                             f"{list(cls.__dataclass_fields__)}")  # fmt: skip
        if "components" in kw:
            kw["components"] = tuple(int(c) for c in kw["components"])
        return cls(**kw)


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines one results table (its rows must share it).

    Attributes
    ----------
    probe : ProbeConfig
        Probes on the decoded features; exactly one kNN ``k`` (also used for Hamming kNN).
    hamming : bool
        Hamming kNN on raw bits for sign-bit codes.
    parquet : bool
        Measure Parquet+zstd bytes/vector.
    bootstrap_resamples : int
        Paired bootstrap resamples of the accuracy difference.
    spectra : SpectraConfig
    pooling, split : str
        Which tables (part of the cache keys and row file names).
    device : str
        Torch device of the probes (``"cpu"``: bit-identical to sklearn's kNN).
    """

    probe: ProbeConfig = field(default_factory=ProbeConfig)
    hamming: bool = True
    parquet: bool = True
    bootstrap_resamples: int = 9999
    spectra: SpectraConfig = field(default_factory=SpectraConfig)
    pooling: str = "mean"
    split: str = "standard"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if len(self.probe.knn_k) != 1:
            raise InputError(
                f"evaluation.probe.knn_k={list(self.probe.knn_k)}: the compression study "
                "compares one kNN probe with the float32 baseline; give one k (e.g. [5])"
            )

    @property
    def knn_k(self) -> int:
        return self.probe.knn_k[0]

    @property
    def seed(self) -> int:
        return self.probe.seed

    def protocol(self) -> dict[str, Any]:
        """Parameters every row of one results table must share (baseline + comparison)."""
        return {**self.probe.as_dict(), "bootstrap_resamples": self.bootstrap_resamples,
                "device": str(self.device), "pooling": self.pooling, "split": self.split}  # fmt: skip


def _probe(x_train, y_train, x_test, study: StudyConfig) -> tuple[dict[str, np.ndarray], Any]:
    """``{"knn": preds, ["linear": preds]}`` and the probe result."""
    res = run_probes(x_train, y_train, x_test, None, study.probe, device=study.device)
    preds = {"knn": res.preds[f"knn_{study.knn_k}"]}
    if study.probe.linear:
        preds["linear"] = res.preds["linear"]
    return preds, res


def baseline_predictions(
    data: Mapping[str, np.ndarray], study: StudyConfig, cache_dir: Path, name: str,
    data_fp: str | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """float32 kNN/linear predictions on the test rows, cached as
    ``<cache_dir>/<name>__<pooling>__<split>__<key>.npz`` keyed by the data and the protocol."""
    data_fp = data_fp or fingerprint({k: data[k] for k in FEATURE_KEYS})
    params = {k: v for k, v in study.protocol().items() if k != "bootstrap_resamples"}
    key = fingerprint(params={"data": data_fp, **params})
    path = Path(cache_dir) / f"{_safe(name)}__{study.pooling}__{study.split}__{key}.npz"
    base = read_npz_cache(path, key)
    if base is not None:
        return base
    base, res = _probe(data["x_train"], data["y_train"], data["x_test"], study)
    if study.probe.linear:
        base["linear_C"] = np.array(res.C)
    write_npz_cache(path, key, base)
    return base


def spectra(
    encoder: str, x_train: np.ndarray, cfg: SpectraConfig, cache_dir: Path, data_fp: str,
    seed: int = 0, pooling: str = "mean", split: str = "standard",
) -> Path:  # fmt: skip
    """PCA spectrum + intrinsic dimension of ``x_train``: one CSV keyed by data and parameters
    (``<cache_dir>/<encoder>__<pooling>__<split>__<key>.csv``), computed once."""
    params = {"components": list(cfg.components), "id_neighbors": cfg.id_neighbors,
              "local_pca_neighbors": cfg.local_pca_neighbors, "id_max_rows": cfg.id_max_rows,
              "seed": seed}  # fmt: skip
    key = fingerprint(params={"data": data_fp, **params})
    path = Path(cache_dir) / f"{_safe(encoder)}__{pooling}__{split}__{key}.csv"
    if path.exists():
        try:
            if list(pd.read_csv(path).get("spectra_key", [])) == [key]:
                return path
        except (OSError, ValueError, pd.errors.ParserError) as e:
            log.warning("spectra cache %s unreadable (%s); recomputing it", path, e)
    row: dict[str, Any] = {"encoder": encoder, "dim": x_train.shape[1], "n_train": x_train.shape[0],
                           "data_fingerprint": data_fp, "spectra_key": key}  # fmt: skip
    for k, v in pca_spectrum(x_train, cfg.components).items():
        row[f"var@{k}"] = v
    row.update(intrinsic_dimension_report(x_train, cfg.id_neighbors, cfg.local_pca_neighbors,
                                          cfg.id_max_rows, seed))  # fmt: skip
    with atomic_path(path) as tmp:
        pd.DataFrame([row]).to_csv(tmp, index=False)
    return path


def _compare(row: dict, prefix: str, y: np.ndarray, pred: np.ndarray, base: np.ndarray,
             classes: Sequence[str], study: StudyConfig) -> None:  # fmt: skip
    acc = float(np.mean(pred == y))
    row[f"{prefix}_acc"] = acc
    row[f"{prefix}_delta"] = acc - float(np.mean(base == y))
    mc = mcnemar_exact(y, base, pred)
    row[f"{prefix}_mcnemar_b"], row[f"{prefix}_mcnemar_c"] = mc.b, mc.c
    row[f"{prefix}_mcnemar_p"] = mc.pvalue
    ci = paired_bootstrap_ci(pred == y, base == y, study.bootstrap_resamples, seed=study.seed)
    row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"] = ci.low, ci.high
    drop = f1_drop(y, base, pred, len(classes))
    worst = int(np.argmin(drop))
    row[f"{prefix}_worst_class"] = classes[worst]
    row[f"{prefix}_worst_f1_drop"] = float(drop[worst])
    for name, v in zip(classes, drop):
        row[f"{prefix}_f1_drop/{name}"] = float(v)


def evaluate_config(
    config: str,
    data: Mapping[str, np.ndarray],
    baseline: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    study: StudyConfig | None = None,
) -> dict[str, Any]:
    """Evaluate one compression config; return one result row (dict).

    ``baseline`` holds the float32 predictions ``knn`` and (if the linear probe runs) ``linear``
    on the same test set. The compressor sees ``data["x_train"]`` only at fit time.
    """
    study = study or StudyConfig()
    xtr, ytr, xte, yte = (data[k] for k in FEATURE_KEYS)
    for name, pred in baseline.items():
        if name in ("knn", "linear") and len(pred) != len(yte):
            raise ValueError(
                f"baseline {name!r} has {len(pred)} predictions for {len(yte)} test rows: it was "
                "computed on other data"
            )
    d = xtr.shape[1]
    comp = build(config, seed=study.seed)
    t0 = time.perf_counter()
    comp.fit(xtr)  # train rows only
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    c_tr, c_te = comp.encode(xtr), comp.encode(xte)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    f_tr, f_te = comp.decode_features(c_tr), comp.decode_features(c_te)
    t_dec = time.perf_counter() - t0
    rec = comp.decode(c_te)
    err = rec.astype(np.float64) - xte
    num = np.sum(rec * xte, axis=1)
    den = np.linalg.norm(rec, axis=1) * np.linalg.norm(xte, axis=1)
    row: dict[str, Any] = {
        "config": config, "dim": d, "out_dim": comp.out_dim, "bits": nominal_bits(config),
        "bytes_payload": comp.bytes_per_vector, "bytes_float32": 4.0 * d,
        "compression_ratio": 4.0 * d / comp.bytes_per_vector,
        "recon_rel_mse": float(np.sum(err**2) / max(np.sum(xte.astype(np.float64) ** 2), 1e-30)),
        "recon_cosine": float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 0.0))),
        "fit_s": t_fit, "encode_s": t_enc, "decode_s": t_dec,
    }  # fmt: skip
    if study.parquet:
        row["bytes_parquet_zstd"] = parquet_bytes_per_vector(np.concatenate([c_tr, c_te]))
    preds, res = _probe(f_tr, ytr, f_te, study)
    _compare(row, "knn", yte, preds["knn"], baseline["knn"], class_names, study)
    row["knn_s"] = res.seconds[f"knn_{study.knn_k}"]
    if study.probe.linear:
        _compare(row, "linear", yte, preds["linear"], baseline["linear"], class_names, study)
        row["linear_C"], row["linear_s"] = res.C, res.seconds["linear"]
    if comp.hamming_compatible:
        row["dimension_balance"] = dimension_balance(unpack_bits(c_tr, comp.out_dim))
        if study.hamming:
            t0 = time.perf_counter()
            pred = hamming_knn_classify(c_tr, ytr, c_te, study.knn_k)
            _compare(row, "hamming_knn", yte, pred, baseline["knn"], class_names, study)
            row["hamming_s"] = time.perf_counter() - t0
    return row


def write_row(results_dir: Path, encoder: str, config: str, study: StudyConfig, row: dict) -> Path:
    """Write one result row to ``<results_dir>/rows/<encoder>__<config>__<pooling>__<split>.csv``."""
    name = f"{_safe(encoder)}__{_safe(config)}__{study.pooling}__{study.split}.csv"
    buf = io.StringIO()
    pd.DataFrame([row]).to_csv(buf, index=False)
    return atomic_write_text(Path(results_dir) / "rows" / name, buf.getvalue())


@dataclass
class StudyOutcome:
    """What :func:`run_study` did: scalar metrics and the configs skipped (with reasons)."""

    metrics: dict[str, float] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _evaluate_timed(config, data, baseline, class_names, study) -> dict[str, Any]:
    """:func:`evaluate_config` plus ``total_s`` (what one Dask task runs)."""
    t0 = time.perf_counter()
    row = evaluate_config(config, data, baseline, class_names, study)
    return {**row, "total_s": time.perf_counter() - t0}


def run_study(
    tables: Mapping[str, Mapping[str, np.ndarray]],
    configs: Sequence[str],
    study: StudyConfig,
    results_dir: str | Path,
    class_names: Callable[[int], Sequence[str]] = lambda k: [f"class{i}" for i in range(k)],
    data_source: str = "real",
    on_row: Callable[[dict[str, float]], None] | None = None,
    dask: Any = None,
) -> StudyOutcome:
    """Run every config on every encoder's table; write rows, baselines and spectra.

    Parameters
    ----------
    tables : {encoder: {"x_train", "y_train", "x_test", "y_test"}}
        Validated tables (:func:`geoemb.data.embedding_table.load_features`).
    configs : compression config names
    study : StudyConfig
    results_dir : folder shared by the jobs of a sweep (``rows/``, ``baseline/``, ``spectra/``)
    class_names : ``k -> names`` of labels ``0..k-1``
    data_source : ``"real"`` or ``"synthetic"`` (a column of every row)
    on_row : called with each finished row's scalar metrics (logging)
    dask : ``None``/``"none"``: every config in this process, one after the other; a spec
        (``local:2``, ``tcp://host:8786``, :func:`geoemb.utils.dask.dask_client`) or an existing
        ``distributed.Client``: one Dask task per feasible config (see
        :mod:`geoemb.compression.distributed`). Rows are written in config order either way, so
        the results table is the same (timing columns aside).

    Raises
    ------
    ConfigFailedError
        A config failed for a reason other than infeasibility (after recording a ``failed`` row),
        or its Dask task's workers died too often.
    """
    from geoemb.compression.distributed import config_runner

    results_dir = Path(results_dir)
    protocol = fingerprint(params=study.protocol())
    out = StudyOutcome()
    with config_runner(dask) as runner:
        for enc, data in tables.items():
            k = int(max(data["y_train"].max(), data["y_test"].max()) + 1)
            classes = list(class_names(k))
            data_fp = fingerprint({key: data[key] for key in FEATURE_KEYS})
            base = baseline_predictions(data, study, results_dir / "baseline", enc, data_fp)
            if study.spectra.enabled:
                spectra(enc, data["x_train"], study.spectra, results_dir / "spectra", data_fp,
                        study.seed, study.pooling, study.split)  # fmt: skip
            ident = {"encoder": enc, "pooling": study.pooling, "split": study.split,
                     "data_source": data_source, "data_fingerprint": data_fp,
                     "protocol": protocol}  # fmt: skip
            n_train, dim = data["x_train"].shape
            feasible: list[str] = []
            for cfg in configs:
                try:  # infeasible by construction (the blog's "—" cells): skipped with its reason
                    build(cfg).check_feasible(n_train, dim)
                except InfeasibleConfigError as e:
                    log.warning("skipping %s on %s: %s", cfg, enc, e)
                    out.skipped.append({"encoder": enc, "config": cfg, "reason": str(e)})
                    write_row(results_dir, enc, cfg, study, {**ident, "config": cfg, "dim": dim,
                              "status": "skipped", "skip_reason": str(e)})  # fmt: skip
                    continue
                feasible.append(cfg)
            results = runner(_evaluate_timed, feasible, (data, base, classes, study))
            try:
                for cfg, (row, err) in zip(feasible, results):  # config order, lazily
                    if err is not None:
                        # record the failure under the row's name (so no older row of this config
                        # survives and no later aggregate builds a table without it), then fail
                        msg = f"{type(err).__name__}: {err}"
                        write_row(results_dir, enc, cfg, study, {**ident, "config": cfg, "dim": dim,
                                  "status": "failed", "skip_reason": msg})  # fmt: skip
                        raise ConfigFailedError(
                            f"compression config {cfg!r} failed on encoder {enc!r}: {msg}"
                        ) from err
                    row = {**ident, **{k: v for k, v in row.items() if k != "total_s"},
                           "status": "ok", "total_s": row["total_s"]}  # fmt: skip
                    write_row(results_dir, enc, cfg, study, row)
                    scal = {f"compression/{enc}/{cfg}/{k}": float(row[k])
                            for k in SCALARS if k in row and row[k] is not None}  # fmt: skip
                    out.metrics.update(scal)
                    if on_row is not None:
                        on_row(scal)
                    log.info("%s %s: knn=%.4f bytes=%.1f", enc, cfg, row["knn_acc"],
                             row["bytes_payload"])  # fmt: skip
            finally:
                results.close()  # the runner's clean-up (cancel pending tasks) now
    return out
