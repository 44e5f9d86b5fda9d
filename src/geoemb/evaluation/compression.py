"""Embedding compression study ("Compressing Earth Embeddings", part 1) as an Evaluator.

For each encoder (a pooled-feature table ``(N, D)`` from the GeoPool cache
``<features_dir>/<encoder>/<pooling>/<split>.npz`` with ``x_train, y_train, x_test, y_test``, or the
synthetic stand-in) and each compression config (``geoemb.compression.build`` names):

1. fit the compressor on ``x_train`` only, encode train and test, decode to features;
2. kNN (k=5, cosine) and linear-probe accuracy on the decoded features (``geoemb.probes``); for
   sign-bit codes also Hamming kNN on the raw packed bits;
3. exact McNemar test and paired percentile-bootstrap 95 % CI of the accuracy difference vs the
   float32 baseline; per-class F1 drop and worst class;
4. payload bytes/vector and measured Parquet+zstd bytes/vector; reconstruction error;
5. per encoder: cumulative PCA variance (4/8/16/32/64/256) and intrinsic dimension (MLE, TwoNN,
   global/local PCA).

Each (encoder, config) result is one CSV under ``<results_dir>/rows/`` so a Hydra multirun over
encoders × configs can write in parallel; :func:`aggregate` (run at the end of every job, or with
``mode=aggregate``) builds ``results.csv``, the blog-layout tables (CSV/Markdown/LaTeX) and the
Pareto-front plots from whatever rows exist.

Trust rules: the float32 baseline and the spectra cached in ``results_dir`` are keyed by a
fingerprint of the features they were computed from and the protocol, so a run on other data
never reuses them; every row carries ``data_fingerprint`` and ``protocol`` and :func:`aggregate`
refuses rows of one encoder from different data. A config infeasible by construction (checked by
the compressor before fitting, e.g. ``pq_8x8`` on 180 rows) is skipped with its reason (warning,
``skipped`` table); any other failure records a ``failed`` row and fails the run, and
:func:`aggregate` refuses to build tables while a failed row is present.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoemb.compression.cache import fingerprint, read_npz_cache, write_npz_cache
from geoemb.errors import InputError
from geoemb.evaluation.base import Evaluator
from geoemb.reporting.compression import ConfigFailedError, aggregate, main, pareto_front
from geoemb.utils.io import atomic_path, atomic_write_text
from geoemb.utils.run_logger import RunLogger

log = logging.getLogger(__name__)

EUROSAT_CLASSES = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
    "PermanentCrop", "Residential", "River", "SeaLake",
]  # fmt: skip
FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
ROW_COLUMNS_FIRST = ("encoder", "config", "status", "skip_reason", "data_fingerprint", "protocol")


class FeatureFileError(InputError, KeyError):
    """A pooled-feature ``.npz`` lacks required arrays (a ``KeyError`` as before, and an
    :class:`~geoemb.errors.InputError`)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- data


def load_features(
    features_dir: str | Path, encoder: str, pooling: str = "mean", split: str = "standard"
) -> dict[str, np.ndarray]:
    """Read ``<features_dir>/<encoder>/<pooling>/<split>.npz`` (GeoPool cache layout).

    Returns float32 ``x_train (N, D)``, ``x_test (M, D)`` and int64 ``y_train``, ``y_test``.

    Raises
    ------
    InputError
        Unreadable (truncated) file, missing arrays, wrong shapes or dtypes, non-finite features,
        non-integer or negative labels — the message names the file, the array and the first bad
        row.
    """
    path = Path(features_dir) / encoder / pooling / f"{split}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"pooled-feature cache {path} not found. Create it with the GeoPool benchmark "
            "(`python evaluate.py experiment=geopool`, which caches "
            "embeddings/<encoder>/<method>/{standard,spatial}.npz), point "
            "evaluation.features_dir at an existing cache, or run on the synthetic stand-in with "
            "`evaluation.synthetic=true`."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in FEATURE_KEYS if k not in z.files]
            if missing:
                raise FeatureFileError(
                    f"{path}: missing arrays {missing}; expected {list(FEATURE_KEYS)}"
                )
            out = {k: z[k] for k in FEATURE_KEYS}
    except FeatureFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(
            f"cannot read pooled-feature cache {path} ({type(e).__name__}: {e}); expected an "
            f".npz with arrays {list(FEATURE_KEYS)} (a truncated file must be re-created)"
        ) from e
    for k in ("x_train", "x_test"):
        a = out[k]
        if a.ndim != 2 or 0 in a.shape:
            raise InputError(f"{path}: {k} must be a non-empty (N, D) array, got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"{path}: {k} must be a float (or integer) array, got {a.dtype}")
        with np.errstate(over="ignore"):  # overflow -> inf, reported just below
            out[k] = np.ascontiguousarray(a, dtype=np.float32)
        bad = ~np.isfinite(out[k]).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise InputError(
                f"{path}: {k} has {len(rows)} row(s) with NaN/inf values (first: row "
                f"{rows[0]}); non-finite embeddings are invalid data"
                + (" (values beyond float32 range became inf)" if a.dtype != np.float32 else "")
            )
    for k in ("y_train", "y_test"):
        y = np.asarray(out[k]).reshape(-1)
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise InputError(f"{path}: {k} must hold integer class labels, got {y.dtype}")
        if np.issubdtype(y.dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if len(bad):
                raise InputError(
                    f"{path}: {k}[{bad[0]}] = {y[bad[0]]} is not an integer class label"
                )
        if len(y) and y.min() < 0:
            raise InputError(f"{path}: {k} has negative labels (min {y.min()}); expected 0..K-1")
        out[k] = y.astype(np.int64)
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise InputError(
            f"{path}: x_train and x_test widths differ ({out['x_train'].shape[1]} vs "
            f"{out['x_test'].shape[1]})"
        )
    if len(out["y_train"]) != len(out["x_train"]) or len(out["y_test"]) != len(out["x_test"]):
        raise InputError(f"{path}: label counts do not match feature rows")
    return out


def _as_list(v: str | Sequence[str] | None) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [str(s) for s in v]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


# --------------------------------------------------------------------------- probes


def _on(device: str | None, *arrays: np.ndarray):
    """Move arrays to a torch device for the probes (``None``/``"cpu"``: keep numpy)."""
    if device in (None, "cpu"):
        return arrays
    import torch

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device)
    if dev.type == "cpu":
        return arrays
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in arrays)


def _knn(xtr, ytr, xte, k: int, device: str | None = None) -> np.ndarray:
    from geoemb.probes import knn_classify

    xtr, ytr, xte = _on(device, xtr, ytr, xte)
    return knn_classify(xtr, ytr, xte, k=k).cpu().numpy()


def _linear(xtr, ytr, xte, C, Cs, cv, seed, max_iter, device=None) -> tuple[np.ndarray, float]:
    from geoemb.probes import linear_probe

    xtr, ytr, xte = _on(device, xtr, ytr, xte)
    res = linear_probe(xtr, ytr, xte, C=C, Cs=tuple(Cs), cv=cv, seed=seed, max_iter=max_iter)
    return res.preds.cpu().numpy(), float(res.C)


# --------------------------------------------------------------------------- one config


def not_applicable(config: str, dim: int, n_train: int) -> str | None:
    """Reason why ``config`` cannot run on ``n_train × dim`` training features (``None`` if it can).

    Infeasible *by construction* only — reducers asking for more components than dimensions
    (``pca128`` on 64-d AEF), PQ with ``D % M != 0`` or fewer training rows than centroids
    (``pq_8x8`` on 180 rows) — as decided by the compressor's own
    :meth:`~geoemb.compression.base.Compressor.check_feasible` before any fitting. Every other
    error is a real error and propagates.
    """
    from geoemb.compression import infeasible_reason

    return infeasible_reason(config, n_train, dim)


def evaluate_config(
    config: str,
    data: dict[str, np.ndarray],
    baseline: dict[str, np.ndarray],
    class_names: Sequence[str],
    knn_k: int = 5,
    linear: bool = True,
    linear_C: float | None = None,
    linear_Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
    linear_cv: int = 3,
    linear_max_iter: int = 1000,
    hamming: bool = True,
    parquet: bool = True,
    bootstrap_resamples: int = 9999,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate one compression config; return one result row (dict).

    ``baseline`` holds the float32 predictions ``knn`` and (if ``linear``) ``linear`` on the same
    test set. The compressor sees ``data["x_train"]`` only at fit time.
    """
    from geoemb.analysis.intrinsic_dim import dimension_balance
    from geoemb.analysis.stats import f1_drop, mcnemar_exact, paired_bootstrap_ci
    from geoemb.compression import build, nominal_bits
    from geoemb.compression.bitpack import unpack_bits
    from geoemb.compression.hamming import hamming_knn_classify
    from geoemb.compression.storage import parquet_bytes_per_vector

    xtr, ytr, xte, yte = (data[k] for k in FEATURE_KEYS)
    for name, pred in baseline.items():
        if name in ("knn", "linear") and len(pred) != len(yte):
            raise ValueError(
                f"baseline {name!r} has {len(pred)} predictions for {len(yte)} test rows: it was "
                "computed on other data"
            )
    d = xtr.shape[1]
    k_cls = len(class_names)
    comp = build(config, seed=seed)
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
        "config": config,
        "dim": d,
        "out_dim": comp.out_dim,
        "bits": nominal_bits(config),
        "bytes_payload": comp.bytes_per_vector,
        "bytes_float32": 4.0 * d,
        "compression_ratio": 4.0 * d / comp.bytes_per_vector,
        "recon_rel_mse": float(np.sum(err**2) / max(np.sum(xte.astype(np.float64) ** 2), 1e-30)),
        "recon_cosine": float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-30), 0.0))),
        "fit_s": t_fit,
        "encode_s": t_enc,
        "decode_s": t_dec,
    }
    if parquet:
        row["bytes_parquet_zstd"] = parquet_bytes_per_vector(np.concatenate([c_tr, c_te]))

    def compare(prefix: str, pred: np.ndarray, base: np.ndarray) -> None:
        acc = float(np.mean(pred == yte))
        row[f"{prefix}_acc"] = acc
        row[f"{prefix}_delta"] = acc - float(np.mean(base == yte))
        mc = mcnemar_exact(yte, base, pred)
        row[f"{prefix}_mcnemar_b"], row[f"{prefix}_mcnemar_c"] = mc.b, mc.c
        row[f"{prefix}_mcnemar_p"] = mc.pvalue
        ci = paired_bootstrap_ci(pred == yte, base == yte, bootstrap_resamples, seed=seed)
        row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"] = ci.low, ci.high
        drop = f1_drop(yte, base, pred, k_cls)
        worst = int(np.argmin(drop))
        row[f"{prefix}_worst_class"] = class_names[worst]
        row[f"{prefix}_worst_f1_drop"] = float(drop[worst])
        for name, v in zip(class_names, drop):
            row[f"{prefix}_f1_drop/{name}"] = float(v)

    t0 = time.perf_counter()
    compare("knn", _knn(f_tr, ytr, f_te, knn_k, device), baseline["knn"])
    row["knn_s"] = time.perf_counter() - t0
    if linear:
        t0 = time.perf_counter()
        pred, c_used = _linear(
            f_tr, ytr, f_te, linear_C, linear_Cs, linear_cv, seed, linear_max_iter, device
        )
        compare("linear", pred, baseline["linear"])
        row["linear_C"] = c_used
        row["linear_s"] = time.perf_counter() - t0
    if comp.hamming_compatible:
        bits_dim = comp.out_dim
        row["dimension_balance"] = dimension_balance(unpack_bits(c_tr, bits_dim))
        if hamming:
            t0 = time.perf_counter()
            compare("hamming_knn", hamming_knn_classify(c_tr, ytr, c_te, knn_k), baseline["knn"])
            row["hamming_s"] = time.perf_counter() - t0
    return row


# --------------------------------------------------------------------------- evaluator


class CompressionEvaluator(Evaluator):
    """``evaluate.py experiment=compression``: the compression sweep (see module doc).

    Parameters
    ----------
    features_dir : str | None
        GeoPool cache root holding ``<encoder>/<pooling>/<split>.npz``; ignored when ``synthetic``.
    synthetic : bool
        Generate the stand-in cache under ``<data_dir>/synthetic/embedding_table`` (once).
    encoders, configs : list or comma-separated str
        Encoders (cache folder names) and compression configs (``geoemb.compression.build``
        names). A Hydra multirun can sweep either (``evaluation.configs=int8,binary``).
    results_dir : str | None
        Shared folder for per-job rows; default: the Hydra sweep dir (``.../compression``) in
        multirun mode, else the run's output dir.
    mode : {"run", "aggregate"}
        ``aggregate`` only rebuilds results/tables/plots from existing rows.
    device : str
        Torch device for the probes (``cpu``, ``cuda``, ``auto``); compression itself is numpy.
    """

    def __init__(
        self,
        features_dir: str | None = None,
        synthetic: bool = False,
        data_dir: str = "data",
        encoders: str | Sequence[str] = ("aef", "olmoearth-nano", "tessera"),
        configs: str | Sequence[str] | None = None,
        pooling: str = "mean",
        split: str = "standard",
        knn_k: int = 5,
        linear: bool = True,
        linear_C: float | None = None,
        linear_Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
        linear_cv: int = 3,
        linear_max_iter: int = 1000,
        hamming: bool = True,
        parquet: bool = True,
        bootstrap_resamples: int = 9999,
        spectra: bool = True,
        spectra_components: Sequence[int] = (4, 8, 16, 32, 64, 256),
        id_max_rows: int = 3000,
        id_neighbors: int = 20,
        local_pca_neighbors: int = 100,
        class_names: Sequence[str] | None = None,
        results_dir: str | None = None,
        mode: str = "run",
        aggregate: bool = True,
        plots: bool = True,
        seed: int = 0,
        synthetic_kwargs: dict | None = None,
        device: str = "cpu",
    ) -> None:
        from geoemb.compression.registry import BLOG_CONFIGS, build

        if mode not in ("run", "aggregate"):
            raise ValueError(f"evaluation.mode must be 'run' or 'aggregate', got {mode!r}")
        self.configs = _as_list(configs) or list(BLOG_CONFIGS)
        for c in self.configs:  # fail fast on typos, before any data is read
            build(c)
        self.encoders = _as_list(encoders)
        if not self.encoders and mode == "run":
            raise ValueError("evaluation.encoders is empty")
        if not synthetic and features_dir is None and mode == "run":
            raise ValueError(
                "evaluation.features_dir is not set: point it at a GeoPool pooled-feature cache "
                "(<dir>/<encoder>/<pooling>/<split>.npz) or set evaluation.synthetic=true"
            )
        self.features_dir = features_dir
        self.synthetic = bool(synthetic)
        self.data_dir = data_dir
        self.pooling, self.split = pooling, split
        self.knn_k = int(knn_k)
        self.linear = bool(linear)
        self.linear_C = None if linear_C is None else float(linear_C)
        self.linear_Cs = tuple(float(c) for c in linear_Cs)
        self.linear_cv, self.linear_max_iter = int(linear_cv), int(linear_max_iter)
        self.hamming, self.parquet = bool(hamming), bool(parquet)
        self.bootstrap_resamples = int(bootstrap_resamples)
        self.spectra = bool(spectra)
        self.spectra_components = tuple(int(c) for c in spectra_components)
        self.id_max_rows, self.id_neighbors = int(id_max_rows), int(id_neighbors)
        self.local_pca_neighbors = int(local_pca_neighbors)
        self.class_names = list(class_names) if class_names else None
        self.results_dir = results_dir
        self.mode = mode
        self.do_aggregate, self.plots = bool(aggregate), bool(plots)
        self.seed = int(seed)
        self.synthetic_kwargs = dict(synthetic_kwargs or {})
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _resolve_results_dir(self, output_dir: Path) -> Path:
        if self.results_dir is not None:
            return Path(self.results_dir)
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            hc = HydraConfig.get()
            if hc.mode == RunMode.MULTIRUN:
                return Path(hc.sweep.dir) / "compression"
        except Exception:  # not under Hydra (notebook / tests)
            pass
        return Path(output_dir)

    def _features_dir(self) -> Path:
        if not self.synthetic:
            return Path(self.features_dir)
        from geoemb.data.synthetic.embedding_table import DEFAULT_ENCODERS, generate

        kw = dict(self.synthetic_kwargs)
        encs = kw.pop("encoders", None) or {
            e: DEFAULT_ENCODERS[e] for e in self.encoders if e in DEFAULT_ENCODERS
        }
        unknown = [e for e in self.encoders if e not in encs]
        if unknown:
            raise ValueError(
                f"synthetic encoders {unknown} unknown; choose from {list(DEFAULT_ENCODERS)} or "
                "give evaluation.synthetic_kwargs.encoders={name: [D, intrinsic_dim]}"
            )
        encs = {k: tuple(v) for k, v in encs.items()}
        tag = "_".join(f"{k}{v[0]}" for k, v in sorted(encs.items()))
        n = f"{kw.get('n_train', 'full')}x{kw.get('n_test', 'full')}"
        root = (
            Path(self.data_dir)
            / "synthetic"
            / "embedding_table"
            / f"{tag}_{n}_s{kw.get('seed', 0)}"
        )
        return generate(root, encoders=encs, methods=(self.pooling,), **kw)

    def _classes(self, data: dict[str, np.ndarray]) -> list[str]:
        k = int(max(data["y_train"].max(), data["y_test"].max()) + 1)
        if self.class_names:
            if len(self.class_names) < k:
                raise ValueError(
                    f"evaluation.class_names has {len(self.class_names)} names for {k} classes"
                )
            return self.class_names[:k]
        if k == len(EUROSAT_CLASSES) and not self.synthetic:
            return list(EUROSAT_CLASSES)
        return [f"class{i}" for i in range(k)]

    def _protocol(self) -> dict[str, Any]:
        """Parameters every row of one results table must share (baseline + comparison)."""
        return {
            "knn_k": self.knn_k, "linear": self.linear, "linear_C": self.linear_C,
            "linear_Cs": list(self.linear_Cs), "linear_cv": self.linear_cv,
            "linear_max_iter": self.linear_max_iter, "seed": self.seed,
            "bootstrap_resamples": self.bootstrap_resamples, "device": str(self.device),
            "pooling": self.pooling, "split": self.split,
        }  # fmt: skip

    def _baseline(
        self, enc: str, data: dict, results_dir: Path, data_fp: str | None = None
    ) -> dict[str, np.ndarray]:
        """float32 kNN/linear predictions on the test rows, cached under
        ``<results_dir>/baseline/`` keyed by the data's content and the probe protocol."""
        data_fp = data_fp or fingerprint({k: data[k] for k in FEATURE_KEYS})
        params = {k: v for k, v in self._protocol().items() if k != "bootstrap_resamples"}
        key = fingerprint(params={"data": data_fp, **params})
        path = results_dir / "baseline" / f"{_safe(enc)}__{self.pooling}__{self.split}__{key}.npz"
        base = read_npz_cache(path, key)
        if base is not None:
            return base
        base = {
            "knn": _knn(data["x_train"], data["y_train"], data["x_test"], self.knn_k, self.device)
        }
        if self.linear:
            base["linear"], c = _linear(
                data["x_train"], data["y_train"], data["x_test"], self.linear_C, self.linear_Cs,
                self.linear_cv, self.seed, self.linear_max_iter, self.device,
            )  # fmt: skip
            base["linear_C"] = np.array(c)
        write_npz_cache(path, key, base)
        return base

    def _spectra_params(self) -> dict[str, Any]:
        return {"components": list(self.spectra_components), "id_neighbors": self.id_neighbors,
                "local_pca_neighbors": self.local_pca_neighbors, "id_max_rows": self.id_max_rows,
                "seed": self.seed}  # fmt: skip

    def _spectra(self, enc: str, data: dict, results_dir: Path, data_fp: str) -> None:
        """PCA spectrum + intrinsic dimension of ``x_train``, one CSV keyed by data and params."""
        from geoemb.analysis.intrinsic_dim import intrinsic_dimension_report, pca_spectrum

        key = fingerprint(params={"data": data_fp, **self._spectra_params()})
        path = results_dir / "spectra" / f"{_safe(enc)}__{self.pooling}__{self.split}__{key}.csv"
        if path.exists():
            try:
                old = pd.read_csv(path)
                if list(old.get("spectra_key", [])) == [key]:
                    return
            except (OSError, ValueError, pd.errors.ParserError) as e:
                log.warning("spectra cache %s unreadable (%s); recomputing it", path, e)
        x = data["x_train"]
        row: dict[str, Any] = {"encoder": enc, "dim": x.shape[1], "n_train": x.shape[0],
                               "data_fingerprint": data_fp, "spectra_key": key}  # fmt: skip
        for k, v in pca_spectrum(x, self.spectra_components).items():
            row[f"var@{k}"] = v
        row.update(
            intrinsic_dimension_report(
                x, self.id_neighbors, self.local_pca_neighbors, self.id_max_rows, self.seed
            )
        )
        with atomic_path(path) as tmp:
            pd.DataFrame([row]).to_csv(tmp, index=False)

    def _write_row(self, results_dir: Path, enc: str, cfg: str, row: dict) -> None:
        target = (
            results_dir / "rows" / f"{_safe(enc)}__{_safe(cfg)}__{self.pooling}__{self.split}.csv"
        )
        buf = io.StringIO()
        pd.DataFrame([row]).to_csv(buf, index=False)
        atomic_write_text(target, buf.getvalue())

    # ------------------------------------------------------------------ run
    def run(self, output_dir: Path, logger: RunLogger) -> dict[str, float]:
        output_dir = Path(output_dir)
        results_dir = self._resolve_results_dir(output_dir)
        metrics: dict[str, float] = {}
        if self.mode == "aggregate":
            aggregate(results_dir, results_dir, logger, self.plots)
            return metrics
        fdir = self._features_dir()
        source = "synthetic" if self.synthetic else "real"
        protocol = fingerprint(params=self._protocol())
        # read and validate every encoder's table before any expensive work
        tables = {enc: load_features(fdir, enc, self.pooling, self.split) for enc in self.encoders}
        skipped: list[dict] = []
        for enc, data in tables.items():
            classes = self._classes(data)
            data_fp = fingerprint({k: data[k] for k in FEATURE_KEYS})
            base = self._baseline(enc, data, results_dir, data_fp)
            if self.spectra:
                self._spectra(enc, data, results_dir, data_fp)
            ident = {"encoder": enc, "pooling": self.pooling, "split": self.split,
                     "data_source": source, "data_fingerprint": data_fp, "protocol": protocol}  # fmt: skip
            n_train, dim = data["x_train"].shape
            for cfg in self.configs:
                reason = not_applicable(cfg, dim, n_train)
                if reason:  # infeasible by construction: the blog's "—" cells
                    log.warning("skipping %s on %s: %s", cfg, enc, reason)
                    skipped.append({"encoder": enc, "config": cfg, "reason": reason})
                    self._write_row(results_dir, enc, cfg, {**ident, "config": cfg, "dim": dim,
                                    "status": "skipped", "skip_reason": reason})  # fmt: skip
                    continue
                t0 = time.perf_counter()
                try:
                    row = evaluate_config(
                        cfg, data, base, classes, self.knn_k, self.linear, self.linear_C,
                        self.linear_Cs, self.linear_cv, self.linear_max_iter, self.hamming,
                        self.parquet, self.bootstrap_resamples, self.seed, self.device,
                    )  # fmt: skip
                except Exception as e:
                    # record the failure under the row's name (so no older row of this config
                    # survives and no later aggregate builds a table without it), then fail
                    msg = f"{type(e).__name__}: {e}"
                    self._write_row(results_dir, enc, cfg, {**ident, "config": cfg, "dim": dim,
                                    "status": "failed", "skip_reason": msg})  # fmt: skip
                    raise ConfigFailedError(
                        f"compression config {cfg!r} failed on encoder {enc!r}: {msg}"
                    ) from e
                row = {**ident, **row, "status": "ok", "total_s": time.perf_counter() - t0}
                self._write_row(results_dir, enc, cfg, row)
                scal = {
                    f"compression/{enc}/{cfg}/{k}": float(row[k])
                    for k in ("knn_acc", "linear_acc", "hamming_knn_acc", "bytes_payload",
                              "bytes_parquet_zstd", "knn_mcnemar_p")
                    if k in row and row[k] is not None
                }  # fmt: skip
                logger.log_metrics(scal)
                metrics.update(scal)
                log.info(
                    "%s %s: knn=%.4f bytes=%.1f", enc, cfg, row["knn_acc"], row["bytes_payload"]
                )
        atomic_write_text(
            output_dir / "compression_job.json",
            json.dumps(
                {
                    "results_dir": str(results_dir),
                    "encoders": self.encoders,
                    "configs": self.configs,
                    "data_source": source,
                    "skipped": skipped,
                },
                indent=2,
            ),  # fmt: skip
        )
        if self.do_aggregate:
            aggregate(results_dir, results_dir, logger, self.plots)
        return metrics


__all__ = [
    "CompressionEvaluator", "ConfigFailedError", "FeatureFileError", "aggregate",
    "evaluate_config", "load_features", "main", "not_applicable", "pareto_front",
]  # fmt: skip

if __name__ == "__main__":
    main()
