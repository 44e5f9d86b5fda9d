"""notebooks/geopool.ipynb executes end to end (nbclient, kernel python3) from a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks" / "geopool.ipynb"


@pytest.mark.slow
def test_geopool_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    out = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )  # fmt: skip
    assert "SYNTHETIC" in out and "data_source=synthetic" in out
    assert "flattened_cov          (16, 2080)" in out
    assert (tmp_path / "geopool_demo" / "run" / "plots" / "random_vs_spatial.png").is_file()
