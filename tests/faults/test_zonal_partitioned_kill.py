"""A Dask worker killed (SIGKILL) while it runs a spatial partition of a partitioned polygon layer
(a dask-geopandas GeoParquet dataset): the run completes with rows identical to the
single-process run (Dask retries the task), or fails with one clear error naming the layer and
writes nothing — never a silently short output."""

from __future__ import annotations

import os

import dask
import dask_geopandas
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
    root = generate(tmp_path_factory.mktemp("zonal_parts_kill"), tile_size=64, n_bands=8,
                    min_block_px=6, seed=4)  # fmt: skip
    layer = root / "blocks.parquet"
    blocks = gpd.read_file(root / "blocks.gpkg")
    dask_geopandas.from_geopandas(blocks, npartitions=3).to_parquet(layer)
    ref = zonal_stats(gpd.read_parquet(layer), tile_index=root / "aef_index.gpkg",
                      num_workers=1, **KW)  # fmt: skip
    return root, layer, ref


@pytest.mark.parametrize("allowed_failures, kill_every_time", [(3, False), (0, True)])
def test_worker_killed_mid_spatial_partition(data, tmp_path, allowed_failures, kill_every_time):
    root, layer, ref = data
    marker = None if kill_every_time else str(tmp_path / "killed_once")
    out = tmp_path / "f.parquet"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}),
        dask_client("local:2") as client,
    ):
        pids = client.run(install_killer, "geoemb.zonal.partitioned", "_task", marker)
        run = lambda: zonal_stats(layer, tile_index=root / "aef_index.gpkg", dask=client,  # noqa: E731
                                  output=out, **KW)  # fmt: skip
        if kill_every_time:
            with pytest.raises(DaskPartitionError, match=r"spatial partition of the polygon "
                               r"layer .*blocks.parquet.*died"):  # fmt: skip
                run()
            assert not out.exists()
            return
        got = run()
        assert os.path.exists(marker)  # a worker really was killed mid-task
        assert set(client.run(os.getpid).values()) != set(pids.values())
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert got.attrs["zonal"] == ref.attrs["zonal"]
    back = gpd.read_parquet(out).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, ref.reset_index(drop=True), check_exact=True)
