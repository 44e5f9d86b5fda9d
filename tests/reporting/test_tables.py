"""Tables: CSV / Markdown / LaTeX from one DataFrame (geoemb.reporting.tables)."""

from __future__ import annotations

import pandas as pd

from geoemb.reporting.tables import to_latex, to_markdown, write_table


def test_write_table_three_formats(tmp_path):
    df = pd.DataFrame({"method": ["mean", "cov_x"], "acc": [91.234, float("nan")]})
    paths = write_table(df, tmp_path / "t", caption="a_b")
    assert pd.read_csv(paths["csv"]).shape == (2, 2)
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| method | acc |" and md[2] == "| mean | 91.23 |" and md[3] == "| cov_x |  |"
    tex = to_latex(df)
    assert r"cov\_x & -- \\" in tex and r"\toprule" in tex
    assert to_markdown(df).count("\n") == 4
