"""Shared pytest setup: offline W&B, deterministic small thread counts."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def dask_local2():
    """ONE local Dask cluster (2 worker processes, 127.0.0.1) for the whole session: starting one
    costs seconds of worker imports on a 2-core box, so the Dask tests of every pipeline share it.
    Tests that kill workers restore what they change (allowed failures, patched functions) and wait
    for the nanny to bring both workers back."""
    from geoemb.utils.dask import dask_client

    with dask_client("local:2") as client:
        yield client
