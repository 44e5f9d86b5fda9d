"""GeoPool benchmark reporting: results CSVs -> paper-layout tables and the random-vs-spatial plot.

Results rows use the reference columns (``reference/geopool.md`` §8) plus ``encoder``,
``data_source`` and ``values``::

    encoder, pool, split_type (standard|spatial), probe (knn_<k>|linear|end2end), train_samples,
    accuracy, f1_macro, f1_weighted, precision_macro, recall_macro, k, C, data_source, values

The paper-layout tables are made in :mod:`geoemb.reporting.geopool_tables` (re-exported here);
this module reads/writes results rows, draws the random-vs-spatial plot and aggregates a results
directory into all of them.

Aggregate a results directory (also what each ``evaluate.py experiment=geopool`` job does)::

    python -m geoemb.reporting.geopool <results_dir> [--k 5] [--extra more.csv ...]
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from geoemb.probes import classification_metrics
from geoemb.reporting.geopool_tables import (
    BLOCKS,
    ENCODER_NAMES,
    METHOD_NAMES,
    encoder_name,
    encoder_sort_key,
    method_block,
    method_name,
    paper_table,
    results_data_source,
    table_latex,
    table_markdown,
    table_metrics,
    write_paper_table,
)
from geoemb.utils.io import atomic_path, atomic_write_text

__all__ = [
    "BLOCKS", "ENCODER_NAMES", "HEAD_RESULTS_FILE", "METHOD_NAMES", "PROBE_METRICS",
    "REFERENCE_COLUMNS", "RESULT_COLUMNS", "aggregate", "append_results_row", "encoder_name",
    "end2end_row", "method_block", "method_name", "paper_table", "plot_random_vs_spatial",
    "random_vs_spatial_figure",
    "read_results", "results_data_source", "table_latex", "table_markdown", "table_metrics",
    "write_job", "write_paper_table", "write_reference_csvs",
]  # fmt: skip

RESULT_COLUMNS = [
    "encoder", "pool", "split_type", "probe", "train_samples", "accuracy", "f1_macro",
    "f1_weighted", "precision_macro", "recall_macro", "k", "C", "data_source", "values",
]  # fmt: skip
REFERENCE_COLUMNS = RESULT_COLUMNS[1:12]  # pool ... C (the reference CSV has k|C)
PROBE_METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")
HEAD_RESULTS_FILE = "geopool_head_results.csv"
"""What a learnable-head run writes into its log dir on test (see ``geoemb.callbacks``)."""


# ---------------------------------------------------------------------------------- I/O
def read_results(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read and concatenate results CSVs (globs allowed); later rows win on duplicate keys.

    Missing optional columns (``encoder``, ``data_source``, ``values``, ``k``, ``C``) are filled:
    a reference ``results/<encoder>/{knn,linear}_results.csv`` gets ``encoder`` from its folder.
    """
    frames = []
    for p in paths:
        matches = (
            sorted(glob.glob(str(p), recursive=True)) if any(c in str(p) for c in "*?[") else [p]
        )
        for m in matches:
            m = Path(m)
            if not m.is_file():
                raise FileNotFoundError(f"GeoPool results CSV not found: {m}")
            df = pd.read_csv(m, dtype={"k": "string", "C": "string"})
            missing = {"pool", "split_type", "probe", "accuracy"} - set(df.columns)
            if missing:
                raise ValueError(
                    f"{m}: not a GeoPool results CSV (missing columns {sorted(missing)})"
                )
            if "encoder" not in df.columns:
                df["encoder"] = m.parent.name
            for col in RESULT_COLUMNS:
                if col not in df.columns:
                    df[col] = "real" if col == "data_source" else ""
            frames.append(df[RESULT_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df = df.drop_duplicates(["encoder", "pool", "split_type", "probe"], keep="last")
    return df.reset_index(drop=True)


def write_reference_csvs(df: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<out_dir>/<encoder>/{knn,linear}_results.csv`` in the reference's columns."""
    out = []
    for enc, g in df.groupby("encoder"):
        for kind, sel in (
            ("knn", g["probe"].str.startswith("knn")),
            ("linear", g["probe"] == "linear"),
        ):
            part = g[sel]
            if len(part):
                p = Path(out_dir) / str(enc) / f"{kind}_results.csv"
                cols = REFERENCE_COLUMNS + ["data_source", "values"]
                atomic_write_text(p, part[cols].to_csv(index=False))
                out.append(p)
    return out


# ---------------------------------------------------------------------------------- plot
def _square_limits(values: Sequence[float]) -> tuple[float, float]:
    """Axis range fitted to the data with a margin (points at 100 % stay fully visible)."""
    lo, hi = float(min(values)), float(max(values))
    pad = max(1.0, 0.06 * (hi - lo))
    return max(0.0, lo - pad), hi + pad


def plot_random_vs_spatial(
    df: pd.DataFrame, path: str | os.PathLike, probes: Sequence[str] = ("linear", "knn_5")
) -> Path:
    """:func:`random_vs_spatial_figure` as a PNG at ``path`` (atomically)."""
    import matplotlib.pyplot as plt

    fig = random_vs_spatial_figure(df, probes)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def random_vs_spatial_figure(df: pd.DataFrame, probes: Sequence[str] = ("linear", "knn_5")):
    """Scatter random-split (x) vs spatial-split (y) accuracy per encoder x method, one panel per
    probe; points near the diagonal generalise better under geographic shift. Titled, with
    "(synthetic data)" in the title when any row is synthetic; axes fitted to the points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    synthetic = results_data_source(df) == "synthetic"
    probes = [p for p in probes if (df["probe"] == p).any()] or list(df["probe"].unique()[:1])
    fig, axes = plt.subplots(1, len(probes), figsize=(5.2 * len(probes), 4.8), squeeze=False)
    encs = sorted(df["encoder"].astype(str).unique(), key=encoder_sort_key)
    markers = dict(zip(encs, "osD^vP*Xh"))
    pools = list(dict.fromkeys(df["pool"].astype(str)))
    cmap = matplotlib.colormaps["tab20"]
    colors = {p: cmap(i % 20) for i, p in enumerate(pools)}
    for ax, probe in zip(axes[0], probes):
        sub = df[df["probe"].isin([probe] + (["end2end"] if probe == "linear" else []))]
        piv = sub.pivot_table(
            index=["encoder", "pool", "probe"], columns="split_type", values="accuracy"
        )
        seen = []
        for (enc, pool, _prb), r in piv.iterrows():
            if not {"standard", "spatial"} <= set(r.index) or r.isna().any():
                continue
            x, y = 100 * r["standard"], 100 * r["spatial"]
            seen += [x, y]
            ax.scatter(x, y, marker=markers.get(enc, "o"), color=colors[pool], s=42,
                       edgecolor="k", lw=0.4, clip_on=False, zorder=3)  # fmt: skip
        lo, hi = _square_limits(seen or [0.0, 100.0])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="_diagonal")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("random split accuracy (%)")
        ax.set_ylabel("spatial split accuracy (%)")
        name = "linear probe" if probe == "linear" else probe.replace("knn_", "kNN, k=")
        ax.set_title(name + (" + learnable heads" if probe == "linear" else ""))
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], ls="", marker=markers[e], color="gray", label=encoder_name(e)) for e in encs
    ]
    handles += [
        Line2D([], [], ls="", marker="o", color=colors[p], label=method_name(p)) for p in pools
    ]
    fig.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
    )
    title = "GeoPool: random vs spatial split accuracy (EuroSAT-Embed)"
    fig.suptitle(title + (" (synthetic data)" if synthetic else ""),
                 color="crimson" if synthetic else "black")  # fmt: skip
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- rows
def end2end_row(y_true: Any, y_pred: Any, num_classes: int, **fields: Any) -> dict[str, Any]:
    """A results row (``probe = end2end``) for a learnable head's test predictions.

    ``fields``: ``pool, encoder, split_type, train_samples, data_source, values``.
    """
    m = classification_metrics(y_true, y_pred, num_classes=num_classes)
    row = {c: "" for c in RESULT_COLUMNS}
    row.update(fields, probe="end2end", **{k: float(m[k]) for k in PROBE_METRICS})
    return row


def write_job(results_dir: str | os.PathLike, name: str, rows: Sequence[dict]) -> Path | None:
    """``<results_dir>/jobs/<name>.csv`` (result columns) from ``rows``; nothing for no rows."""
    if not rows:
        return None
    df = pd.DataFrame(list(rows))[RESULT_COLUMNS]
    return atomic_write_text(Path(results_dir) / "jobs" / f"{name}.csv", df.to_csv(index=False))


def append_results_row(path: str | os.PathLike, row: dict[str, Any]) -> Path:
    """Append ``row`` to a CSV (header from all rows), rewriting the file atomically."""
    path = Path(path)
    rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records") if path.is_file(
    ) else []  # fmt: skip
    rows.append(dict(row))
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return atomic_write_text(path, pd.DataFrame(rows, columns=cols).to_csv(index=False))


# ---------------------------------------------------------------------------------- aggregate
JOB_GLOB = "jobs/*.csv"


def aggregate(
    results_dir: str | os.PathLike,
    extra: Sequence[str | os.PathLike] = (),
    k: int = 5,
    logger=None,
) -> dict[str, object]:
    """Build all GeoPool outputs of a results directory.

    Reads ``<results_dir>/jobs/*.csv`` (one per encoder x method, written by the evaluator) and any
    ``extra`` CSVs (e.g. learnable-head results), then writes ``geopool_results.csv``,
    ``results/<encoder>/{knn,linear}_results.csv`` (reference layout), ``tables/{linear,knn}_table.
    {csv,md,tex}`` and ``plots/random_vs_spatial.png``. Returns the tables and paths.
    """
    rd = Path(results_dir)
    sources = [rd / JOB_GLOB, *extra]
    df = read_results(sources)
    if not len(df):
        raise FileNotFoundError(f"no GeoPool results found in {rd / JOB_GLOB} or {list(extra)}")
    source = results_data_source(df)
    atomic_write_text(rd / "geopool_results.csv", df.to_csv(index=False))
    write_reference_csvs(df, rd / "results")
    out: dict[str, object] = {"results": df, "data_source": source}
    for probe in ("linear", "knn"):
        table, paths = write_paper_table(df, rd / "tables" / f"{probe}_table", probe=probe, k=k)
        out[f"{probe}_table"] = table
        out[f"{probe}_paths"] = paths
        if logger is not None and len(table):
            logger.log_table(f"geopool/{probe}_table", table.assign(data_source=source))
    png = plot_random_vs_spatial(
        df, rd / "plots" / "random_vs_spatial.png", probes=("linear", f"knn_{k}")
    )
    out["plot"] = png
    if logger is not None:
        logger.log_image("geopool/random_vs_spatial", png)
    return out


def build_parser(prog: str = "geoemb geopool") -> argparse.ArgumentParser:
    """The ``geoemb geopool`` options (also used by the README test)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", help="directory with jobs/*.csv (a geopool run or multirun dir)")
    ap.add_argument("--k", type=int, default=5, help="kNN k shown in the kNN table")
    ap.add_argument(
        "--extra", nargs="*", default=[], help="more results CSVs/globs (learnable heads)"
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``geoemb geopool RESULTS_DIR``: print the tables, write the plot; exit status."""
    args = build_parser().parse_args(argv)
    out = aggregate(args.results_dir, extra=args.extra, k=args.k)
    for probe in ("linear", "knn"):
        print(Path(out[f"{probe}_paths"]["md"]).read_text())
    print(f"plot: {out['plot']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
