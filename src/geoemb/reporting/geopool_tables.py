"""GeoPool paper tables: results rows -> the paper's linear/kNN tables (CSV, Markdown, LaTeX).

Tables follow ``paper/{linear,knn}_table.tex``: spatial accuracy per encoder + ``Avg`` (unweighted
mean over encoders), random accuracy per encoder + ``Avg``, ``Gap = Avg(random) - Avg(spatial)``
in percentage points from unrounded values; rows sorted by spatial ``Avg`` ascending within each
block (training-free, then parametric — as the pooling registry says —, then learnable heads).
Learnable heads (``probe=end2end``) appear in the linear table's last block. Tables of synthetic
results say so in their title/caption. Re-exported by :mod:`geoemb.reporting.geopool`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from geoemb.errors import InputError
from geoemb.pooling.features import method_meta
from geoemb.reporting.tables import to_markdown
from geoemb.utils.io import atomic_write_text

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
ENCODER_NAMES = {"aef": "AEF", "olmoearth-nano": "OE", "olmoearth-tiny": "OE-tiny",
                 "olmoearth-base": "OE-base", "tessera": "Tess"}  # fmt: skip
ENCODER_ORDER = list(ENCODER_NAMES)
BLOCKS = ("training-free", "parametric", "learnable")


def method_block(pool: str, probe: str) -> str:
    """Which table block a row belongs to."""
    if probe == "end2end":
        return "learnable"
    try:
        parametric = method_meta(pool).get("kind") == "parametric"
    except InputError:  # not a pooling registry name (e.g. a foreign results CSV)
        parametric = False
    return "parametric" if parametric else "training-free"


def method_name(pool: str, probe: str = "") -> str:
    if probe == "end2end" and pool == "gem":
        return METHOD_NAMES["gem_learned"]
    return METHOD_NAMES.get(pool, pool)


def encoder_name(enc: str) -> str:
    return ENCODER_NAMES.get(enc, enc)


def encoder_sort_key(enc: str) -> tuple[int, str]:
    return (ENCODER_ORDER.index(enc) if enc in ENCODER_ORDER else len(ENCODER_ORDER), enc)


def results_data_source(df: pd.DataFrame) -> str:
    """``synthetic`` if any row is synthetic, else ``real``."""
    if len(df) and (df["data_source"].astype(str) == "synthetic").any():
        return "synthetic"
    return "real"


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
        encoders = sorted(sub["encoder"].astype(str).unique(), key=encoder_sort_key)
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
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                     ("#", r"\#")):  # fmt: skip
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


def table_metrics(table: pd.DataFrame, probe: str = "linear") -> dict[str, float]:
    """``table/<probe>/<method>/{sp_Avg,rd_Avg,Gap}`` scalars of a paper table (finite only)."""
    out = {}
    for _, r in table.iterrows():
        for col in ("sp Avg", "rd Avg", "Gap"):
            if np.isfinite(r[col]):
                out[f"table/{probe}/{r['key']}/{col.replace(' ', '_')}"] = float(r[col])
    return out
