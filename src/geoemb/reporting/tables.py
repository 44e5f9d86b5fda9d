"""Write a DataFrame as CSV, Markdown and LaTeX side by side (atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from geoemb.utils.io import atomic_write_text


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """Render ``df`` as a GitHub-flavoured Markdown table (no ``tabulate`` dependency)."""
    cols = [str(c) for c in df.columns]

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, floatfmt: str = ".2f", caption: str | None = None) -> str:
    """Render ``df`` as a booktabs LaTeX tabular."""

    def esc(s: object) -> str:
        s = str(s)
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("_", r"\_"),
            ("%", r"\%"),
            ("&", r"\&"),
            ("#", r"\#"),
        ):
            s = s.replace(a, b)
        return s

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "--" if v != v else format(v, floatfmt)
        return esc(v)

    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{esc(caption)}}}")
    lines += [
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(esc(c) for c in df.columns) + r" \\",
        r"\midrule",
    ]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(fmt(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    stem: str | os.PathLike,
    floatfmt: str = ".2f",
    caption: str | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``; return the three paths."""
    stem = Path(stem)
    paths = {
        "csv": stem.with_suffix(".csv"),
        "md": stem.with_suffix(".md"),
        "tex": stem.with_suffix(".tex"),
    }
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["md"], to_markdown(df, floatfmt))
    atomic_write_text(paths["tex"], to_latex(df, floatfmt, caption))
    return paths
