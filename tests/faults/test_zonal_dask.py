"""A Dask worker killed (SIGKILL of its process) while it runs a zonal partition: the run
completes with output identical to the single-process run (Dask retries the partition), or, when
the retries are used up, fails with one clear error naming the partition and writes nothing —
never a silently short output."""

from __future__ import annotations

import os

import dask
import distributed  # noqa: F401  (its config defaults must exist before dask.config.set)
import geopandas as gpd
import pandas as pd
import pytest

from geoemb.synthetic.zonal import generate
from geoemb.utils.dask import dask_client
from geoemb.zonal import zonal_stats
from geoemb.zonal.distributed import DaskPartitionError
from tests.faults.dask_kill import install_killer

pytestmark = [pytest.mark.faults, pytest.mark.slow]

KW = {"decode": "aef", "progress": False, "chunk_size": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("zonal_dask_kill"), tile_size=64, n_bands=8,
                    min_block_px=6, seed=3)  # fmt: skip
    ref = zonal_stats(root / "blocks.gpkg", tile_index=root / "aef_index.gpkg", num_workers=1, **KW)
    return root, ref


@pytest.mark.parametrize("allowed_failures, kill_every_time", [(3, False), (0, True)])
def test_worker_killed_mid_partition(data, tmp_path, allowed_failures, kill_every_time):
    root, ref = data
    marker = None if kill_every_time else str(tmp_path / "killed_once")
    out = tmp_path / "f.parquet"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}),
        dask_client("local:2") as client,
    ):
        pids = client.run(install_killer, "geoemb.zonal.engine", "run_partition", marker)
        assert len(set(pids.values())) == 2
        run = lambda: zonal_stats(root / "blocks.gpkg", tile_index=root / "aef_index.gpkg",  # noqa: E731
                                  dask=client, output=out, **KW)  # fmt: skip
        if kill_every_time:
            with pytest.raises(DaskPartitionError, match=r"partition \d+ \(\d+ polygons of tile "
                               r".*died"):  # fmt: skip
                run()
            assert not out.exists()  # nothing half-written
            return
        got = run()
        assert os.path.exists(marker)  # a worker really was killed mid-task
        restarted = client.run(os.getpid)
        assert set(restarted.values()) != set(pids.values())
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    back = gpd.read_parquet(out).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, ref.reset_index(drop=True), check_exact=True)
    assert len(got) == len(ref) and got.pixel_count.gt(0).all()
