"""Zonal-statistics reporting: the Markdown report, its tables and every zonal figure.

- :func:`evaluate_file` — features -> census evaluation (:func:`geoemb.zonal.evaluate_census`) ->
  ``report.md`` + tables (CSV/MD/TeX) + plots; what ``geoemb zonal evaluate`` and the
  ``zonal_stats`` evaluator run;
- :func:`make_plots` — R² bar chart and PC1/PC2 scatter;
- :func:`pca_rgb_preview` — PNG preview of the PCA-RGB GeoTIFF.

Figures and reports made from synthetic data say so: titles end in ``(synthetic data)`` and the
report starts with a ``data_source=synthetic`` banner.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from matplotlib.figure import Figure

from geoemb.errors import OutputError
from geoemb.reporting.tables import to_markdown, write_table
from geoemb.utils.io import atomic_path, atomic_write_text
from geoemb.zonal.analysis import ZonalEvaluation, evaluate_census
from geoemb.zonal.params import CensusAnalysis

__all__ = [
    "SYNTHETIC_SUFFIX",
    "evaluate_file",
    "make_plots",
    "pca_rgb_preview",
    "titled",
    "write_report",
]

#: Appended to every figure title made from synthetic data.
SYNTHETIC_SUFFIX = " (synthetic data)"


def titled(title: str, data_source: str | None) -> str:
    """``title`` with :data:`SYNTHETIC_SUFFIX` when ``data_source == "synthetic"``."""
    return f"{title}{SYNTHETIC_SUFFIX}" if data_source == "synthetic" else title


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path


def make_plots(
    ev: ZonalEvaluation,
    out_dir: str | os.PathLike,
    binary_target: str | None = "urban",
    data_source: str | None = None,
) -> dict[str, Path]:
    """R² bar chart (``r2.png``) and PC1/PC2 scatter coloured by the binary target
    (``pc_scatter.png``); returns name -> PNG. ``data_source`` defaults to ``ev.data_source``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = data_source or ev.data_source
    paths = {}
    if len(ev.r2):
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ypos = np.arange(len(ev.r2))
        ax.barh(ypos - 0.2, ev.r2["r2_full"], 0.4, label="full features")
        ax.barh(ypos + 0.2, ev.r2["r2_pca"], 0.4, label=f"PCA-{ev.pca_k}")
        ax.set_yticks(ypos, ev.r2["variable"])
        ax.invert_yaxis()
        ax.set_xlabel("in-sample OLS R²")
        ax.set_title(titled("Census variables from embedding features", source))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        paths["r2"] = _save(fig, out_dir / "r2.png")
    if ev.scores.shape[1] >= 2:
        fig = Figure(figsize=(4.5, 4))
        ax = fig.subplots()
        c = None
        if binary_target and binary_target in ev.targets.columns:
            c = ev.targets[binary_target].to_numpy(dtype=float)
        sc = ax.scatter(ev.scores[:, 0], ev.scores[:, 1], c=c, s=6, cmap="coolwarm")
        if c is not None:
            fig.colorbar(sc, ax=ax, label=binary_target)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.set_title(titled("PC scores", source))
        paths["pc_scatter"] = _save(fig, out_dir / "pc_scatter.png")
    return paths


def pca_rgb_preview(
    raster: str | os.PathLike,
    png: str | os.PathLike,
    title: str = "PCA-3 RGB",
    data_source: str | None = None,
) -> Path:
    """PNG preview of a PCA-RGB GeoTIFF (:func:`geoemb.zonal.pca_rgb_raster`).

    ``data_source`` defaults to the raster's ``data_source`` tag.
    """
    with rasterio.open(raster) as ds:
        img = ds.read().transpose(1, 2, 0)
        source = data_source or ds.tags().get("data_source")
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(titled(title, source))
    return _save(fig, Path(png))


def write_report(
    ev: ZonalEvaluation,
    out_dir: str | os.PathLike,
    title: str = "Zonal embedding statistics",
    extra: dict[str, str] | None = None,
    images: dict[str, Path] | None = None,
    data_source: str | None = None,
    binary_target: str | None = "urban",
) -> Path:
    """Write ``report.md`` + tables (CSV/MD/TeX) + plots under ``out_dir``; return the report path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = data_source or ev.data_source
    write_table(ev.r2, out_dir / "r2", floatfmt=".3f", caption="In-sample OLS R²")
    if len(ev.classification):
        write_table(ev.classification, out_dir / "classification", floatfmt=".3f")
    write_table(ev.correlations, out_dir / "pc_correlations", floatfmt=".2f")
    plots = make_plots(ev, out_dir, binary_target, source)
    plots.update(images or {})
    lines = [f"# {titled(title, source)}", ""]
    if source == "synthetic":
        lines += ["> **data_source=synthetic** — synthetic AEF stand-in, not real data.", ""]
    for k, v in (extra or {}).items():
        lines.append(f"- **{k}**: {v}")
    lines += [
        f"- **polygons evaluated**: {ev.n}",
        f"- **PCA-{ev.pca_k} explained variance**: {ev.pca_explained:.1%}",
        "",
    ]
    lines += ["## Linear regression (OLS, in-sample R²)", "", to_markdown(ev.r2, ".3f")]
    if len(ev.classification):
        c = ev.classification.copy()
        for a, s in (("acc_full", "std_full"), ("acc_pca", "std_pca")):
            c[a] = [f"{x:.1%} ± {y:.1%}" for x, y in zip(c[a], c[s], strict=True)]
        c["baseline"] = [f"{x:.1%}" for x in c["baseline"]]
        c = c.drop(columns=["std_full", "std_pca"]).rename(
            columns={"acc_full": "accuracy (full)", "acc_pca": f"accuracy (PCA-{ev.pca_k})"}
        )
        lines += [
            f"## Classification (logistic regression, stratified {ev.n_splits}-fold CV)",
            "",
            to_markdown(c),
            "",
        ]
    lines += [
        "## Pearson correlation of PC scores with the targets",
        "",
        to_markdown(ev.correlations, "+.2f"),
    ]
    for name, p in plots.items():
        rel = Path(p).name if Path(p).parent == out_dir else str(p)
        lines += [f"![{name}]({rel})", ""]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def evaluate_file(
    features: str | os.PathLike | gpd.GeoDataFrame,
    out_dir: str | os.PathLike,
    analysis: CensusAnalysis | None = None,
    seed: int = 0,
    title: str = "Zonal embedding statistics",
    extra: dict[str, str] | None = None,
    images: dict[str, Path] | None = None,
    data_source: str | None = None,
) -> ZonalEvaluation:
    """Evaluate a features file (:func:`geoemb.zonal.evaluate_census`) and write the report.

    ``data_source`` defaults to the features' own record (``synthetic`` for the stand-in).

    Raises
    ------
    OutputError
        ``out_dir`` is an existing file (checked before any work).
    """
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputError(f"report folder {out_dir} is an existing file; expected a folder")
    analysis = analysis or CensusAnalysis()
    ev = evaluate_census(features, analysis, seed)
    if data_source:
        ev.data_source = data_source
    write_report(ev, out_dir, title, extra, images, binary_target=analysis.binary_target)
    return ev
