"""Compression reporting: Pareto front vs brute force, synthetic tag, the aggregate CLI."""

import numpy as np
import pandas as pd
import pytest

from geoemb.reporting.compression import (
    SYNTHETIC_TAG,
    build_parser,
    main,
    pareto_figure,
    pareto_front,
)


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.choice([1, 2, 4, 8, 16], 40), rng.random(40)
    ref = [not np.any((x <= x[i]) & (y > y[i])) for i in range(40)]
    got = pareto_front(x, y)
    # brute force keeps ties in accuracy at larger size; the front keeps the cheapest of ties
    assert np.all(got <= np.array(ref)) and got[np.argmax(y)]
    assert all(got[i] == ref[i] for i in range(40) if not np.any((x < x[i]) & (y == y[i])))


def _rows(source):
    return pd.DataFrame({"encoder": ["aef"] * 3, "config": ["float32", "int8", "binary"],
                         "bytes_payload": [256.0, 64.0, 8.0], "knn_acc": [0.9, 0.9, 0.8],
                         "data_source": [source] * 3})  # fmt: skip


def test_pareto_figure_tags_synthetic_data():
    fig = pareto_figure(_rows("synthetic"), "knn", "Pareto front")
    assert (
        fig.axes[0].get_title() == "Pareto front" + SYNTHETIC_TAG == "Pareto front (synthetic data)"
    )
    assert pareto_figure(_rows("real"), "knn", "Pareto front").axes[0].get_title() == "Pareto front"
    assert pareto_figure(_rows("real"), "linear", "x") is None  # no linear column: no figure


def test_aggregate_cli_parses_and_reports_missing_rows(tmp_path, capsys):
    import argparse

    sub = argparse.ArgumentParser(prog="geoemb compression").add_subparsers(dest="cmd")
    a = build_parser(sub).parse_args([str(tmp_path), "--no-plots"])
    assert a.results_dir == str(tmp_path) and a.no_plots and a.fn.__name__ == "dispatch"
    with pytest.raises(FileNotFoundError, match="no result rows"):
        main(["aggregate", str(tmp_path)])
