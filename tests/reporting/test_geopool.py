"""GeoPool results CSVs, paper-layout tables and the random-vs-spatial plot on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geoemb.reporting import geopool as R


def _frame() -> pd.DataFrame:
    """Hand-made results: 2 encoders x 3 methods (+ parametric + head), linear and knn_5."""
    acc = {  # (pool, split, encoder) -> accuracy
        ("mean", "spatial", "aef"): 0.80, ("mean", "spatial", "tessera"): 0.90,
        ("mean", "standard", "aef"): 0.95, ("mean", "standard", "tessera"): 0.97,
        ("stats", "spatial", "aef"): 0.9123, ("stats", "spatial", "tessera"): 0.93,
        ("stats", "standard", "aef"): 0.96, ("stats", "standard", "tessera"): 0.97,
        ("max", "spatial", "aef"): 0.70, ("max", "spatial", "tessera"): 0.72,
        ("max", "standard", "aef"): 0.90, ("max", "standard", "tessera"): 0.91,
        ("pca_64", "spatial", "aef"): 0.60, ("pca_64", "spatial", "tessera"): 0.62,
        ("pca_64", "standard", "aef"): 0.95, ("pca_64", "standard", "tessera"): 0.96,
    }  # fmt: skip
    rows = []
    for (pool, st, enc), a in acc.items():
        for probe in ("linear", "knn_5"):
            rows.append(dict(encoder=enc, pool=pool, split_type=st, probe=probe, train_samples=10,
                             accuracy=a if probe == "linear" else a - 0.05, f1_macro=a,
                             f1_weighted=a, precision_macro=a, recall_macro=a,
                             k=5 if probe == "knn_5" else "", C=1.0 if probe == "linear" else "",
                             data_source="synthetic", values="raw"))  # fmt: skip
    for st, a in (("spatial", 0.5), ("standard", 0.99)):
        rows.append(dict(encoder="aef", pool="attention_mil", split_type=st, probe="end2end",
                         train_samples=10, accuracy=a, f1_macro=a, f1_weighted=a,
                         precision_macro=a, recall_macro=a, k="", C="",
                         data_source="synthetic", values="raw"))  # fmt: skip
    return pd.DataFrame(rows)


def test_paper_table_layout_gap_and_sort():
    t = R.paper_table(_frame(), "linear")
    assert list(t.columns) == [
        "block", "key", "Method", "sp AEF", "sp Tess", "sp Avg", "rd AEF", "rd Tess", "rd Avg", "Gap",
    ]  # fmt: skip
    assert list(t["key"]) == ["max", "mean", "stats", "pca_64", "attention_mil"]
    assert list(t["block"]) == ["training-free"] * 3 + ["parametric", "learnable"]
    stats = t.set_index("key").loc["stats"]
    assert stats["sp Avg"] == pytest.approx((91.23 + 93.0) / 2)
    assert stats["rd Avg"] == pytest.approx(96.5)
    assert stats["Gap"] == pytest.approx(96.5 - 92.115)  # unrounded values
    head = t.set_index("key").loc["attention_mil"]
    assert np.isnan(head["sp Tess"]) and head["sp Avg"] == pytest.approx(50.0)
    k = R.paper_table(_frame(), "knn", k=5)
    assert "attention_mil" not in set(k["key"])
    assert k.set_index("key").loc["mean", "sp AEF"] == pytest.approx(75.0)


def test_table_files_and_synthetic_marking(tmp_path):
    df = _frame()
    table, paths = R.write_paper_table(df, tmp_path / "linear_table", "linear")
    md = paths["md"].read_text()
    tex = paths["tex"].read_text()
    assert "data_source=synthetic" in md and "SYNTHETIC" in tex
    assert r"\multicolumn{3}{c}{Spatial}" in tex and r"\textit{PCA-64}" in tex
    assert tex.count(r"\midrule") == 3  # header + parametric block + learnable block
    assert "| Stats | 91.2 | 93.0 | 92.1 |" in md
    csv = pd.read_csv(paths["csv"])
    assert (csv["data_source"] == "synthetic").all()
    real = df.assign(data_source="real")
    _, p2 = R.write_paper_table(real, tmp_path / "real_table", "linear")
    assert "synthetic" not in p2["md"].read_text().lower()


def test_aggregate_and_cli(tmp_path, capsys):
    df = _frame()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for (enc, pool), g in df[df.probe != "end2end"].groupby(["encoder", "pool"]):
        g.to_csv(jobs / f"{enc}__{pool}.csv", index=False)
    heads = tmp_path / "heads.csv"
    df[df.probe == "end2end"].to_csv(heads, index=False)
    assert R.main([str(tmp_path), "--extra", str(heads)]) == 0
    out = capsys.readouterr().out
    assert "Attention-MIL" in out and "data_source=synthetic" in out
    ref = pd.read_csv(tmp_path / "results" / "aef" / "linear_results.csv")
    assert list(ref.columns[:11]) == R.REFERENCE_COLUMNS
    assert set(ref["split_type"]) == {"standard", "spatial"}
    png = tmp_path / "plots" / "random_vs_spatial.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for f in ("linear_table", "knn_table"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{f}.{ext}").is_file()
    # the reference results layout reads back (encoder from the folder name)
    back = R.read_results([tmp_path / "results" / "*" / "*_results.csv"])
    assert len(back) == len(df[df.probe != "end2end"])
    with pytest.raises(FileNotFoundError, match="no GeoPool results"):
        R.aggregate(tmp_path / "empty")


def test_random_vs_spatial_plot_is_titled_fitted_and_tagged():
    """Points at 100 % are drawn whole, axes follow the data, every panel has a title, synthetic
    results say so in the figure title (issue 16 §5)."""
    import matplotlib.pyplot as plt

    df = _frame()
    fig = R.random_vs_spatial_figure(df, probes=("linear", "knn_5"))
    assert "(synthetic data)" in fig._suptitle.get_text()
    lin, knn = fig.axes[:2]
    assert lin.get_title() and knn.get_title()
    lo, hi = lin.get_xlim()
    assert hi > 100.0 and lin.get_ylim() == (lo, hi)  # head at 99 % (standard) not clipped
    assert 40.0 < lo < 50.0  # fitted: the lowest point (head, 50 % spatial) plus a margin
    assert all(c.get_clip_on() is False for c in lin.collections)
    plt.close(fig)
    real = R.random_vs_spatial_figure(df.assign(data_source="real"))
    assert "synthetic" not in real._suptitle.get_text()
    plt.close(real)
