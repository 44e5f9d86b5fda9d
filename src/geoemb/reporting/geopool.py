"""GeoPool benchmark reporting: results CSVs -> paper-layout tables and the random-vs-spatial plot.

Results rows use the reference columns (``reference/geopool.md`` §8) plus ``encoder``,
``data_source`` and ``values``::

    encoder, pool, split_type (standard|spatial), probe (knn_<k>|linear|end2end), train_samples,
    accuracy, f1_macro, f1_weighted, precision_macro, recall_macro, k, C, data_source, values

Tables follow ``paper/{linear,knn}_table.tex``: spatial accuracy per encoder + ``Avg`` (unweighted
mean over encoders), random accuracy per encoder + ``Avg``, ``Gap = Avg(random) - Avg(spatial)``
in percentage points from unrounded values; rows sorted by spatial ``Avg`` ascending within each
block (training-free, then parametric, then learnable heads). Learnable heads (``probe=end2end``)
appear in the linear table's last block.

Aggregate a results directory (also what each ``evaluate.py experiment=geopool`` job does)::

    python -m geoemb.reporting.geopool <results_dir> [--k 5] [--extra more.csv ...]
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from geoemb.reporting.tables import to_markdown
from geoemb.utils.io import atomic_path, atomic_write_text

RESULT_COLUMNS = [
    "encoder",
    "pool",
    "split_type",
    "probe",
    "train_samples",
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "k",
    "C",
    "data_source",
    "values",
]
REFERENCE_COLUMNS = RESULT_COLUMNS[1:12]  # pool ... C (the reference CSV has k|C)

METHOD_NAMES = {
    "std": "Std",
    "mean": "Mean",
    "gem": "GeM",
    "center_weighted_mean": "Center-Wtd",
    "max": "Max",
    "median_iqr": "Median+IQR",
    "mean_std": "Mean+Std",
    "percentiles": "Percentiles",
    "mean_max": "Mean+Max",
    "flattened_cov": "Covariance",
    "stats": "Stats",
    "pca_64": "PCA-64",
    "bovw_128": "BoVW-128",
    "attention_mil": "Attention-MIL (learned)",
    "gem_learned": "GeM (learned p)",
    "pma": "PMA (learned)",
    "lowrank_bilinear": "Low-rank bilinear (learned)",
}
ENCODER_NAMES = {
    "aef": "AEF",
    "olmoearth-nano": "OE",
    "olmoearth-tiny": "OE-tiny",
    "olmoearth-base": "OE-base",
    "tessera": "Tess",
}
ENCODER_ORDER = list(ENCODER_NAMES)
BLOCKS = ("training-free", "parametric", "learnable")


def method_block(pool: str, probe: str) -> str:
    """Which table block a row belongs to."""
    if probe == "end2end":
        return "learnable"
    if pool.startswith(("pca_", "bovw_")):
        return "parametric"
    return "training-free"


def method_name(pool: str, probe: str = "") -> str:
    if probe == "end2end" and pool == "gem":
        return METHOD_NAMES["gem_learned"]
    return METHOD_NAMES.get(pool, pool)


def encoder_name(enc: str) -> str:
    return ENCODER_NAMES.get(enc, enc)


def _encoder_sort_key(enc: str) -> tuple[int, str]:
    return (ENCODER_ORDER.index(enc) if enc in ENCODER_ORDER else len(ENCODER_ORDER), enc)


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


def results_data_source(df: pd.DataFrame) -> str:
    """``synthetic`` if any row is synthetic, else ``real``."""
    if len(df) and (df["data_source"].astype(str) == "synthetic").any():
        return "synthetic"
    return "real"


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


# ---------------------------------------------------------------------------------- tables
def paper_table(
    df: pd.DataFrame,
    probe: str = "linear",
    k: int = 5,
    encoders: Sequence[str] | None = None,
    include_heads: bool = True,
) -> pd.DataFrame:
    """Paper-layout accuracy table (in %) for one probe.

    Parameters
    ----------
    df:
        Results rows (:data:`RESULT_COLUMNS`).
    probe:
        ``linear`` or ``knn`` (uses ``knn_<k>`` rows).
    encoders:
        Column order (default: the encoders present, in the paper's order).
    include_heads:
        Add ``end2end`` rows (learnable heads) as the last block of the linear table.

    Returns
    -------
    DataFrame with columns ``block, key, Method, sp <Enc>..., sp Avg, rd <Enc>..., rd Avg, Gap``;
    ``Avg`` is the unweighted mean over the encoders present for that method, ``Gap`` =
    ``rd Avg - sp Avg`` in pp (unrounded inputs); sorted by ``sp Avg`` ascending within a block.
    """
    probe_key = f"knn_{k}" if probe == "knn" else probe
    wanted = [probe_key] + (["end2end"] if include_heads and probe == "linear" else [])
    sub = df[df["probe"].isin(wanted)].copy()
    if encoders is None:
        encoders = sorted(sub["encoder"].astype(str).unique(), key=_encoder_sort_key)
    encoders = list(encoders)
    sub["acc"] = sub["accuracy"].astype(float) * 100.0
    names = {e: encoder_name(e) for e in encoders}
    cols = (
        [f"sp {names[e]}" for e in encoders]
        + ["sp Avg"]
        + [f"rd {names[e]}" for e in encoders]
        + ["rd Avg", "Gap"]
    )
    rows = []
    for (pool, prb), g in sub.groupby(["pool", "probe"], sort=False):
        acc = g.set_index(["split_type", "encoder"])["acc"]
        row = {"block": method_block(pool, prb), "key": pool, "Method": method_name(pool, prb)}
        for short, st in (("sp", "spatial"), ("rd", "standard")):
            vals = [acc.get((st, e), np.nan) for e in encoders]
            for e, v in zip(encoders, vals):
                row[f"{short} {names[e]}"] = float(v)
            finite = [v for v in vals if np.isfinite(v)]
            row[f"{short} Avg"] = float(np.mean(finite)) if finite else np.nan
        row["Gap"] = row["rd Avg"] - row["sp Avg"]
        rows.append(row)
    table = pd.DataFrame(rows, columns=["block", "key", "Method"] + cols)
    if len(table):
        table["_b"] = table["block"].map(BLOCKS.index)
        table = table.sort_values(["_b", "sp Avg"], kind="stable", na_position="last")
        table = table.drop(columns="_b").reset_index(drop=True)
    return table


def _fmt(v: object, floatfmt: str = ".1f") -> str:
    if isinstance(v, float | np.floating):
        return "--" if not np.isfinite(v) else format(float(v), floatfmt)
    return str(v)


def table_markdown(table: pd.DataFrame, title: str, data_source: str) -> str:
    """Markdown with one sub-table per block (parametric and learnable blocks separate)."""
    lines = [f"### {title}", ""]
    if data_source == "synthetic":
        lines += [
            "> **data_source=synthetic** — synthetic EuroSAT-Embed stand-in, not real data.",
            "",
        ]
    lines += [
        "Accuracy (%). sp = spatial split, rd = random split, Avg = mean over encoders, "
        "Gap = rd Avg - sp Avg (pp); sorted by sp Avg.",
        "",
    ]
    show = [c for c in table.columns if c not in ("block", "key")]
    for block in BLOCKS:
        part = table[table["block"] == block]
        if not len(part):
            continue
        if block != "training-free":
            lines.append(f"*{block}*")
            lines.append("")
        body = part[show].copy()
        for c in show[1:]:
            body[c] = [_fmt(v) for v in body[c]]
        lines.append(to_markdown(body).rstrip())
        lines.append("")
    return "\n".join(lines)


def table_latex(table: pd.DataFrame, caption: str, data_source: str, label: str = "") -> str:
    """LaTeX table in the paper's layout (Spatial | Random | Gap, separate blocks, italics)."""
    encs = [c[3:] for c in table.columns if c.startswith("sp ") and c != "sp Avg"]
    n = len(encs) + 1

    def esc(s: str) -> str:
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("_", r"\_"),
            ("%", r"\%"),
            ("&", r"\&"),
            ("#", r"\#"),
        ):
            s = s.replace(a, b)
        return s

    if data_source == "synthetic":
        caption = f"{caption} SYNTHETIC DATA (data\\_source=synthetic): not real EuroSAT-Embed."
    lines = []
    if data_source == "synthetic":
        lines.append("% data_source=synthetic -- generated stand-in, NOT the real benchmark")
    lines += [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
    ]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [
        rf"\begin{{tabular}}{{l{'c' * n}{'c' * n}c}}",
        r"\toprule",
        rf" & \multicolumn{{{n}}}{{c}}{{Spatial}} & \multicolumn{{{n}}}{{c}}{{Random}} & \\",
        rf"\cmidrule(lr){{2-{n + 1}}} \cmidrule(lr){{{n + 2}-{2 * n + 1}}}",
        "Method & "
        + " & ".join(esc(e) for e in encs + ["Avg"])
        + " & "
        + " & ".join(esc(e) for e in encs + ["Avg"])
        + r" & Gap \\",
        r"\midrule",
    ]
    value_cols = (
        [f"sp {e}" for e in encs] + ["sp Avg"] + [f"rd {e}" for e in encs] + ["rd Avg", "Gap"]
    )
    first = True
    for block in BLOCKS:
        part = table[table["block"] == block]
        if not len(part):
            continue
        if not first:
            lines.append(r"\midrule")
        first = False
        for _, r in part.iterrows():
            name = esc(str(r["Method"]))
            cells = [_fmt(r[c]) for c in value_cols]
            if block != "training-free":
                name = rf"\textit{{{name}}}"
                cells = [rf"\textit{{{c}}}" for c in cells]
            lines.append(name + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_paper_table(
    df: pd.DataFrame, stem: str | os.PathLike, probe: str = "linear", k: int = 5
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write ``<stem>.csv/.md/.tex`` for one probe; return the table and the paths."""
    source = results_data_source(df)
    table = paper_table(df, probe=probe, k=k)
    stem = Path(stem)
    title = "Linear probe" if probe == "linear" else f"kNN (k={k}, cosine)"
    csv_df = table.copy()
    csv_df["data_source"] = source
    paths = {
        "csv": atomic_write_text(stem.with_suffix(".csv"), csv_df.to_csv(index=False)),
        "md": atomic_write_text(stem.with_suffix(".md"), table_markdown(table, title, source)),
        "tex": atomic_write_text(
            stem.with_suffix(".tex"),
            table_latex(table, f"{title} accuracy (\\%) on EuroSAT-Embed.", source, f"tab:{probe}"),
        ),
    }
    return table, paths


# ---------------------------------------------------------------------------------- plot
def plot_random_vs_spatial(
    df: pd.DataFrame, path: str | os.PathLike, probes: Sequence[str] = ("linear", "knn_5")
) -> Path:
    """Scatter random-split (x) vs spatial-split (y) accuracy per encoder x method, one panel per probe.

    Points near the diagonal generalise better under geographic shift.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    source = results_data_source(df)
    probes = [p for p in probes if (df["probe"] == p).any()] or list(df["probe"].unique()[:1])
    fig, axes = plt.subplots(1, len(probes), figsize=(5.2 * len(probes), 4.8), squeeze=False)
    encs = sorted(df["encoder"].astype(str).unique(), key=_encoder_sort_key)
    markers = dict(zip(encs, "osD^vP*Xh"))
    pools = list(dict.fromkeys(df["pool"].astype(str)))
    cmap = matplotlib.colormaps["tab20"]
    colors = {p: cmap(i % 20) for i, p in enumerate(pools)}
    for ax, probe in zip(axes[0], probes):
        sub = df[df["probe"].isin([probe] + (["end2end"] if probe == "linear" else []))]
        piv = sub.pivot_table(
            index=["encoder", "pool", "probe"], columns="split_type", values="accuracy"
        )
        lo = 100.0
        for (enc, pool, _prb), r in piv.iterrows():
            if not {"standard", "spatial"} <= set(r.index) or r.isna().any():
                continue
            x, y = 100 * r["standard"], 100 * r["spatial"]
            lo = min(lo, x, y)
            ax.scatter(
                x, y, marker=markers.get(enc, "o"), color=colors[pool], s=42, edgecolor="k", lw=0.4
            )
        lo = max(0.0, np.floor(lo / 5) * 5 - 5)
        ax.plot([lo, 100], [lo, 100], "k--", lw=0.8)
        ax.set_xlim(lo, 101)
        ax.set_ylim(lo, 101)
        ax.set_xlabel("random split accuracy (%)")
        ax.set_ylabel("spatial split accuracy (%)")
        ax.set_title(probe + (" [SYNTHETIC DATA]" if source == "synthetic" else ""))
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker=markers[e], color="gray", label=encoder_name(e)) for e in encs
    ]
    handles += [
        Line2D([], [], ls="", marker="o", color=colors[p], label=method_name(p)) for p in pools
    ]
    fig.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
    )
    if source == "synthetic":
        fig.suptitle("data_source=synthetic (stand-in, not real EuroSAT-Embed)", color="crimson")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir", help="directory with jobs/*.csv (a geopool run or multirun dir)")
    ap.add_argument("--k", type=int, default=5, help="kNN k shown in the kNN table")
    ap.add_argument(
        "--extra", nargs="*", default=[], help="more results CSVs/globs (learnable heads)"
    )
    args = ap.parse_args(argv)
    out = aggregate(args.results_dir, extra=args.extra, k=args.k)
    for probe in ("linear", "knn"):
        print(Path(out[f"{probe}_paths"]["md"]).read_text())
    print(f"plot: {out['plot']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
