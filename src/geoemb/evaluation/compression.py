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
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoemb.evaluation.base import Evaluator
from geoemb.utils.io import atomic_path, atomic_write_text
from geoemb.utils.run_logger import RunLogger

log = logging.getLogger(__name__)

EUROSAT_CLASSES = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
    "PermanentCrop", "Residential", "River", "SeaLake",
]  # fmt: skip
FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
_METHOD_ORDER = {"float32": 0, "fp16": 1, "int8": 2, "int4": 3, "int3": 4, "int2": 5, "binary": 6}


# --------------------------------------------------------------------------- data


def load_features(
    features_dir: str | Path, encoder: str, pooling: str = "mean", split: str = "standard"
) -> dict[str, np.ndarray]:
    """Read ``<features_dir>/<encoder>/<pooling>/<split>.npz`` (GeoPool cache layout).

    Returns float32 ``x_train (N, D)``, ``x_test (M, D)`` and int64 ``y_train``, ``y_test``.
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
    with np.load(path) as z:
        missing = [k for k in FEATURE_KEYS if k not in z.files]
        if missing:
            raise KeyError(f"{path}: missing arrays {missing}; expected {list(FEATURE_KEYS)}")
        out = {k: z[k] for k in FEATURE_KEYS}
    for k in ("x_train", "x_test"):
        if out[k].ndim != 2:
            raise ValueError(f"{path}: {k} must be (N, D), got shape {out[k].shape}")
        out[k] = np.ascontiguousarray(out[k], dtype=np.float32)
    for k in ("y_train", "y_test"):
        out[k] = np.asarray(out[k]).astype(np.int64).reshape(-1)
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise ValueError(f"{path}: x_train and x_test widths differ")
    if len(out["y_train"]) != len(out["x_train"]) or len(out["y_test"]) != len(out["x_test"]):
        raise ValueError(f"{path}: label counts do not match feature rows")
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


def not_applicable(config: str, dim: int) -> str | None:
    """Reason why ``config`` cannot run on ``dim``-d features (``None`` if it can).

    Covers reducers asking for more components than dimensions (``pca128`` on 64-d AEF) and PQ
    with ``D % M != 0``; other errors are real errors and propagate.
    """
    from geoemb.compression.registry import output_dim

    try:
        output_dim(config, dim)
    except ValueError as e:
        return str(e)
    m = re.fullmatch(r"(?:.*\+)?pq_?(\d+)(?:x\d+)?", config.strip().lower())
    if m:
        first = config.strip().lower().split("+")[0]
        d_in = output_dim(first, dim) if "+" in config else dim
        if d_in % int(m[1]):
            return f"PQ needs D % M == 0, got D={d_in}, M={m[1]}"
    return None


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


# --------------------------------------------------------------------------- aggregation


def pareto_front(bytes_: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats (fewer-or-equal bytes and higher accuracy)."""
    bytes_, acc = np.asarray(bytes_, float), np.asarray(acc, float)
    order = np.lexsort((-acc, bytes_))
    keep = np.zeros(len(acc), bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            keep[i] = True
            best = acc[i]
    return keep


def _pct(v: float) -> float:
    return float("nan") if v is None or v != v else round(100.0 * v, 1)


def _read_rows(results_dir: Path) -> pd.DataFrame:
    files = sorted((results_dir / "rows").glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no result rows under {results_dir / 'rows'}")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def _read_spectra(results_dir: Path) -> pd.DataFrame | None:
    files = sorted((results_dir / "spectra").glob("*.csv"))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else None


def _plot_pareto(df: pd.DataFrame, metric: str, path: Path, title: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = f"{metric}_acc"
    if col not in df or df[col].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for enc, g in df.dropna(subset=[col]).groupby("encoder", sort=True):
        x, y = g["bytes_payload"].to_numpy(float), 100 * g[col].to_numpy(float)
        (pts,) = ax.plot(x, y, "o", alpha=0.35, ms=4)
        m = pareto_front(x, y)
        o = np.argsort(x[m])
        ax.step(x[m][o], y[m][o], where="post", color=pts.get_color(), label=str(enc), lw=1.8)
        ax.plot(x[m][o], y[m][o], "o", color=pts.get_color(), ms=5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per embedding (payload)")
    ax.set_ylabel(f"{'kNN (k=5, cosine)' if metric == 'knn' else 'linear probe'} accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def aggregate(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    logger: RunLogger | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Combine ``<results_dir>/rows/*.csv`` into ``results.csv``, blog-layout tables and plots.

    Tables (each as ``.csv/.md/.tex`` under ``<out_dir>/tables``): ``quantization_knn`` and
    ``quantization_linear`` (method × encoder), ``pareto`` (frontier configs: model, config,
    B/emb, kNN, linear), ``binary_hamming`` (baseline / reconstructed+cosine / Hamming on raw bits),
    ``per_class`` (worst class and F1 drop), ``significance`` (McNemar p, bootstrap CI),
    ``pca_variance`` and ``intrinsic_dim``. Plots: ``pareto_knn.png``, ``pareto_linear.png``.
    """
    from geoemb.compression.registry import REDUCERS
    from geoemb.reporting.tables import write_table

    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir
    tdir = out / "tables"
    df = _read_rows(results_dir)
    df = df.sort_values(["encoder", "bytes_payload", "config"], ascending=[True, False, True])
    paths: dict[str, Path] = {}
    with atomic_path(out / "results.csv") as tmp:
        df.to_csv(tmp, index=False)
    paths["results"] = out / "results.csv"
    encoders = sorted(df["encoder"].unique())
    has_linear = "linear_acc" in df and not df["linear_acc"].isna().all()
    reducer_re = "|".join(p for p, _, _ in REDUCERS.values())
    is_reduced = df["config"].str.split("+").str[0].str.fullmatch(reducer_re)

    def dump(name: str, table: pd.DataFrame, caption: str) -> None:
        if table.empty:
            return
        write_table(
            table, tdir / name, floatfmt=".3g" if name == "significance" else ".1f", caption=caption
        )
        paths[name] = tdir / f"{name}.csv"
        if logger is not None:
            logger.log_table(f"compression/{name}", table)

    # 1. quantization × encoder (blog "int8 is always free" table)
    quant = df[~is_reduced.fillna(False)]
    for metric in ["knn", "linear"] if has_linear else ["knn"]:
        piv = quant.pivot_table(
            index="config", columns="encoder", values=f"{metric}_acc", aggfunc="first"
        )
        meta = quant.groupby("config").agg(bits=("bits", "first")).reindex(piv.index)
        t = pd.DataFrame({"method": piv.index, "bits": meta["bits"].to_numpy()})
        t["B/emb (1024d)"] = [
            b * 1024 / 8 if b == b and b is not None else float("nan") for b in t["bits"]
        ]
        for enc in encoders:
            t[enc] = [_pct(v) for v in piv.get(enc, pd.Series(index=piv.index, dtype=float))]
        t = t.sort_values("method", key=lambda s: s.map(lambda m: (_METHOD_ORDER.get(m, 99), m)))
        dump(
            f"quantization_{metric}",
            t.reset_index(drop=True),
            f"{metric} accuracy (%) under quantization",
        )

    # 2. Pareto frontier configs (blog "Combined compression" table)
    rows = []
    for enc, g in df.groupby("encoder", sort=True):
        mask = pareto_front(g["bytes_payload"], g["knn_acc"])
        if has_linear:
            mask |= pareto_front(g["bytes_payload"], g["linear_acc"].fillna(-1))
        for _, r in g[mask].sort_values("bytes_payload", ascending=False).iterrows():
            rows.append({"model": enc, "config": r["config"], "B/emb": r["bytes_payload"],
                         "kNN": _pct(r["knn_acc"]), "linear": _pct(r.get("linear_acc", float("nan")))})  # fmt: skip
    dump("pareto", pd.DataFrame(rows), "Pareto-frontier configurations (kNN or linear)")

    # 3. binary: reconstructed + cosine vs Hamming on raw bits
    if "hamming_knn_acc" in df:
        b = df[df["hamming_knn_acc"].notna()]
        t = pd.DataFrame({
            "model": b["encoder"], "config": b["config"], "dims": b["out_dim"],
            "baseline": [_pct(a - dlt) for a, dlt in zip(b["knn_acc"], b["knn_delta"])],
            "reconstructed + cosine": [_pct(v) for v in b["knn_acc"]],
            "Hamming on raw bits": [_pct(v) for v in b["hamming_knn_acc"]],
            "imbalance": [
                f"{v:.3f}" if v == v else ""
                for v in b.get("dimension_balance", pd.Series(index=b.index, dtype=float))
            ],
        })  # fmt: skip
        dump(
            "binary_hamming",
            t.reset_index(drop=True),
            "Binary codes: kNN on reconstruction vs Hamming",
        )

    # 4. per-class failure modes
    t = pd.DataFrame({
        "model": df["encoder"], "config": df["config"], "B/emb": df["bytes_payload"],
        "worst class": df["knn_worst_class"], "F1 drop": df["knn_worst_f1_drop"].round(3),
    }).sort_values(["model", "B/emb"], ascending=[True, False])  # fmt: skip
    dump("per_class", t.reset_index(drop=True), "Worst class (kNN) and its F1 drop vs float32")

    # 5. significance vs float32
    cols = {"model": df["encoder"], "config": df["config"], "B/emb": df["bytes_payload"],
            "kNN delta (pp)": 100 * df["knn_delta"], "kNN McNemar p": df["knn_mcnemar_p"],
            "kNN CI low (pp)": 100 * df["knn_ci_low"], "kNN CI high (pp)": 100 * df["knn_ci_high"]}  # fmt: skip
    if has_linear:
        cols.update({"linear delta (pp)": 100 * df["linear_delta"], "linear McNemar p": df["linear_mcnemar_p"],
                     "linear CI low (pp)": 100 * df["linear_ci_low"], "linear CI high (pp)": 100 * df["linear_ci_high"]})  # fmt: skip
    dump(
        "significance",
        pd.DataFrame(cols).reset_index(drop=True),
        "Difference vs float32: exact McNemar p and 95% paired bootstrap CI",
    )

    # 6. spectra and intrinsic dimension
    spec = _read_spectra(results_dir)
    if spec is not None:
        spec = spec.drop_duplicates("encoder", keep="last").sort_values("encoder")
        with atomic_path(out / "spectra.csv") as tmp:
            spec.to_csv(tmp, index=False)
        vcols = [c for c in spec.columns if c.startswith("var@")]
        t = pd.DataFrame({"model": [f"{e} ({d}d)" for e, d in zip(spec["encoder"], spec["dim"])]})
        for c in vcols:
            t[c.replace("var@", "") + "d"] = [_pct(v) for v in spec[c]]
        dump("pca_variance", t, "Cumulative PCA variance explained (%), fit on train")
        icols = [c for c in spec.columns if c.startswith("id_")]
        t = spec[["encoder", "dim", *icols]].rename(columns={"encoder": "model"}).round(2)
        dump(
            "intrinsic_dim", t.reset_index(drop=True), "Intrinsic dimension of the train embeddings"
        )

    if plots:
        for metric in ("knn", "linear"):
            p = _plot_pareto(
                df, metric, out / f"pareto_{metric}.png", f"Pareto front: bytes vs {metric}"
            )
            if p is not None:
                paths[f"pareto_{metric}"] = p
                if logger is not None:
                    logger.log_image(f"compression/pareto_{metric}", p)
    if logger is not None:
        logger.log_table("compression/results", df)
    return paths


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

    def _baseline(self, enc: str, data: dict, results_dir: Path) -> dict[str, np.ndarray]:
        key = f"{_safe(enc)}__{self.pooling}__{self.split}__k{self.knn_k}__C{self.linear_C}"
        path = results_dir / "baseline" / f"{key}.npz"
        if path.exists():
            with np.load(path) as z:
                base = {k: z[k] for k in z.files}
            if not self.linear or "linear" in base:
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
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **base)
        return base

    def _spectra(self, enc: str, data: dict, results_dir: Path) -> None:
        from geoemb.analysis.intrinsic_dim import intrinsic_dimension_report, pca_spectrum

        path = results_dir / "spectra" / f"{_safe(enc)}__{self.pooling}__{self.split}.csv"
        if path.exists():
            return
        x = data["x_train"]
        row: dict[str, Any] = {"encoder": enc, "dim": x.shape[1], "n_train": x.shape[0]}
        for k, v in pca_spectrum(x, self.spectra_components).items():
            row[f"var@{k}"] = v
        row.update(
            intrinsic_dimension_report(
                x, self.id_neighbors, self.local_pca_neighbors, self.id_max_rows, self.seed
            )
        )
        with atomic_path(path) as tmp:
            pd.DataFrame([row]).to_csv(tmp, index=False)

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
        skipped: list[dict] = []
        for enc in self.encoders:
            data = load_features(fdir, enc, self.pooling, self.split)
            classes = self._classes(data)
            base = self._baseline(enc, data, results_dir)
            if self.spectra:
                self._spectra(enc, data, results_dir)
            for cfg in self.configs:
                reason = not_applicable(cfg, data["x_train"].shape[1])
                if reason:  # e.g. pca128 on a 64-d encoder: the blog's "—" cells
                    log.warning("skipping %s on %s: %s", cfg, enc, reason)
                    skipped.append({"encoder": enc, "config": cfg, "reason": reason})
                    continue
                t0 = time.perf_counter()
                row = evaluate_config(
                    cfg, data, base, classes, self.knn_k, self.linear, self.linear_C,
                    self.linear_Cs, self.linear_cv, self.linear_max_iter, self.hamming,
                    self.parquet, self.bootstrap_resamples, self.seed, self.device,
                )  # fmt: skip
                row = {"encoder": enc, "pooling": self.pooling, "split": self.split,
                       "data_source": source, **row, "total_s": time.perf_counter() - t0}  # fmt: skip
                target = (
                    results_dir
                    / "rows"
                    / f"{_safe(enc)}__{_safe(cfg)}__{self.pooling}__{self.split}.csv"
                )
                buf = io.StringIO()
                pd.DataFrame([row]).to_csv(buf, index=False)
                atomic_write_text(target, buf.getvalue())
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


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m geoemb.evaluation.compression aggregate <results_dir>``."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["aggregate"])
    ap.add_argument("results_dir")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args(argv)
    for k, v in aggregate(a.results_dir, plots=not a.no_plots).items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
