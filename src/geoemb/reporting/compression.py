"""Tables and plots of the compression study: :func:`aggregate` of the per-job result rows.

``<results_dir>/rows/*.csv`` (one per encoder × config, written by
:func:`geoemb.compression.study.run_study`) become ``results.csv``, the
blog-layout tables (CSV/Markdown/LaTeX under ``tables/``) and the Pareto-front plots. Rows are
checked first: a ``failed`` row, rows of one encoder computed on different data
(``data_fingerprint``) or with different probe protocols (``protocol``) raise instead of producing
a table that looks complete; ``skipped`` rows (infeasible by construction) go to the ``skipped``
table with their reason. Plots of rows computed on the synthetic stand-in carry the
"(synthetic data)" title suffix.

CLI: ``python -m geoemb.reporting.compression aggregate <results_dir>`` (the ``geoemb compression
aggregate`` sub-command: :func:`build_parser` / :func:`dispatch`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from geoemb.compression.base import ConfigFailedError
from geoemb.compression.registry import has_reducer
from geoemb.errors import InputError
from geoemb.reporting.tables import write_table
from geoemb.utils.io import atomic_path
from geoemb.utils.run_logger import RunLogger

__all__ = [
    "ConfigFailedError", "aggregate", "build_parser", "dispatch", "main", "pareto_figure",
    "pareto_front",
]  # fmt: skip

log = logging.getLogger(__name__)

_METHOD_ORDER = {"float32": 0, "fp16": 1, "int8": 2, "int4": 3, "int3": 4, "int2": 5, "binary": 6}

#: Title suffix of figures made from the synthetic stand-in.
SYNTHETIC_TAG = " (synthetic data)"


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


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(f"cannot read result file {path}: {e}") from e


def _read_rows(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ok rows, skipped rows)`` of ``<results_dir>/rows/*.csv``, checked to form one table.

    Raises if a config's row records a failure, if one encoder's rows were computed on different
    data (``data_fingerprint``) or the rows used different protocols (``protocol``).
    """
    files = sorted((results_dir / "rows").glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no result rows under {results_dir / 'rows'}")
    frames = []
    for f in files:
        one = _read_csv(f)
        one["_file"] = f.name
        frames.append(one)
    df = pd.concat(frames, ignore_index=True)
    for col in ("status", "skip_reason", "data_fingerprint", "protocol"):
        if col not in df:
            df[col] = np.nan
    df["status"] = df["status"].fillna("ok")
    failed = df[df["status"] == "failed"]
    if len(failed):
        lines = [f"  {r.encoder} / {r.config}: {r.skip_reason}" for r in failed.itertuples()]
        raise ConfigFailedError(
            f"{results_dir}: {len(failed)} config(s) failed, so no table is built from these "
            "rows (rerun them, or remove their row files):\n" + "\n".join(lines)
        )
    fp = df["data_fingerprint"]
    if fp.isna().all():
        log.warning("%s: rows carry no data fingerprint (written by an older geoemb); cannot "
                    "check that each encoder's rows come from the same data", results_dir)  # fmt: skip
    else:
        for enc, g in df.groupby("encoder"):
            groups = g.groupby(g["data_fingerprint"].fillna("<none>"))["_file"].apply(list)
            if len(groups) > 1:
                detail = "; ".join(f"{k}: {v}" for k, v in groups.items())
                raise InputError(
                    f"{results_dir / 'rows'}: encoder {enc!r} has rows computed on different data "
                    f"(data fingerprints {detail}); rerun every config on the current data or use "
                    "a fresh results_dir"
                )
        protos = df.groupby(df["protocol"].fillna("<none>"))["_file"].apply(list)
        if len(protos) > 1:
            detail = "; ".join(f"{k}: {v}" for k, v in protos.items())
            raise InputError(
                f"{results_dir / 'rows'}: rows were computed with different probe protocols "
                f"(knn_k/linear/seed/bootstrap… differ: {detail}); use one results_dir per protocol"
            )
    df = df.drop(columns="_file")
    skipped = df[df["status"] == "skipped"].dropna(axis=1, how="all")
    return df[df["status"] == "ok"].reset_index(drop=True), skipped.reset_index(drop=True)


def _read_spectra(results_dir: Path, rows: pd.DataFrame) -> pd.DataFrame | None:
    """One spectra row per encoder of ``rows``, computed on the same data as those rows."""
    files = sorted((results_dir / "spectra").glob("*.csv"), key=lambda f: f.stat().st_mtime_ns)
    if not files:
        return None
    spec = pd.concat([_read_csv(f).assign(_file=f.name) for f in files], ignore_index=True)
    if "data_fingerprint" not in spec:
        spec["data_fingerprint"] = np.nan
    want = rows.groupby("encoder")["data_fingerprint"].first()
    keep = []
    for enc, fp in want.items():
        g = spec[spec["encoder"] == enc]
        g = g[g["data_fingerprint"].isna()] if fp != fp else g[g["data_fingerprint"] == fp]
        if len(g) > 1:
            log.warning("encoder %s: several spectra on the same data (%s); using the newest",
                        enc, list(g["_file"]))  # fmt: skip
        if len(g):
            keep.append(g.iloc[[-1]])
    if not keep:
        return None
    return pd.concat(keep, ignore_index=True).drop(columns="_file")


def pareto_figure(df: pd.DataFrame, metric: str, title: str) -> Figure | None:
    """Bytes vs ``<metric>_acc`` per encoder with its Pareto front (``None``: no such column).

    Rows from the synthetic stand-in (``data_source``) add the "(synthetic data)" title suffix.
    """
    col = f"{metric}_acc"
    if col not in df or df[col].isna().all():
        return None
    if "data_source" in df and (df["data_source"] == "synthetic").any():
        title += SYNTHETIC_TAG
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
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
    return fig


def _plot_pareto(df: pd.DataFrame, metric: str, path: Path, title: str) -> Path | None:
    fig = pareto_figure(df, metric, title)
    if fig is None:
        return None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
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
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir
    tdir = out / "tables"
    df, skipped = _read_rows(results_dir)
    if df.empty:
        raise InputError(f"{results_dir / 'rows'}: every config was skipped; nothing to tabulate")
    df = df.sort_values(["encoder", "bytes_payload", "config"], ascending=[True, False, True])
    paths: dict[str, Path] = {}
    with atomic_path(out / "results.csv") as tmp:
        df.to_csv(tmp, index=False)
    paths["results"] = out / "results.csv"
    if not skipped.empty or (out / "skipped.csv").exists():
        with atomic_path(out / "skipped.csv") as tmp:
            skipped.to_csv(tmp, index=False)
        paths["skipped_rows"] = out / "skipped.csv"
    encoders = sorted(df["encoder"].unique())
    has_linear = "linear_acc" in df and not df["linear_acc"].isna().all()
    is_reduced = df["config"].map(has_reducer)

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
    quant = df[~is_reduced]
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

    # 6. configs skipped as infeasible by construction, with the reason
    if not skipped.empty:
        t = pd.DataFrame({"model": skipped["encoder"], "config": skipped["config"],
                          "dims": skipped["dim"], "reason": skipped["skip_reason"]})  # fmt: skip
        dump("skipped", t.sort_values(["model", "config"]).reset_index(drop=True),
             "Configurations skipped as infeasible on this data (reason)")  # fmt: skip

    # 7. spectra and intrinsic dimension (of the same data as the rows)
    spec = _read_spectra(results_dir, df)
    if spec is not None:
        spec = spec.sort_values("encoder")
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


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``aggregate`` command: a sub-parser of ``subparsers`` (``geoemb compression``) or a
    stand-alone parser (``python -m geoemb.reporting.compression``)."""
    doc = "rebuild results.csv, the tables and the Pareto plots from <results_dir>/rows/*.csv"
    if subparsers is None:
        ap = argparse.ArgumentParser(prog="geoemb compression", description=doc)
        ap.add_argument("command", choices=["aggregate"])
    else:
        ap = subparsers.add_parser("aggregate", help=doc, description=doc)
    ap.add_argument("results_dir")
    ap.add_argument("--no-plots", action="store_true")
    ap.set_defaults(fn=dispatch)
    return ap


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed ``aggregate`` command; print what was written."""
    for k, v in aggregate(args.results_dir, plots=not args.no_plots).items():
        print(f"{k}: {v}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geoemb.reporting.compression aggregate <results_dir> [--no-plots]``."""
    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
