"""Zonal statistics on Dask equal the single-process run row by row (values, row order, index,
dtypes), whatever the partition layout; the CLI's ``--dask``; malformed partition results are
refused naming the partition."""

from __future__ import annotations

import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geoemb.errors import GeoembError, InputError
from geoemb.zonal import zonal_stats
from geoemb.zonal.cli import main
from geoemb.zonal.distributed import DaskPartitionError, Partition, _check
from geoemb.zonal.engine import Job, PartResult

pytestmark = pytest.mark.slow  # a local Dask cluster (2 worker processes) per module

KW = {"land_column": None, "progress": False}


@pytest.fixture(scope="module")
def client(dask_local2):
    dask_local2.wait_for_workers(2, timeout=300)
    return dask_local2


def assert_same_rows(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> None:
    assert list(a.columns) == list(b.columns) and a.dtypes.equals(b.dtypes)
    assert a.index.equals(b.index) and a.crs == b.crs
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs["zonal"] == b.attrs["zonal"]


@pytest.mark.parametrize(
    "knobs",
    [
        {"method": "mean_std", "chunk_size": 2},
        {"method": "stats", "chunk_size": 1, "weighting": "coverage"},
        {"method": "median_iqr", "chunk_size": 3, "all_touched": True},
    ],
)
def test_dask_equals_single_process(two_zone, client, knobs):
    polys = two_zone["polygons"].iloc[::-1]  # rows not in spatial order
    tiles = list(two_zone["tiles"].values())
    single = zonal_stats(polys, tiles=tiles, num_workers=1, **KW, **knobs)
    threads = zonal_stats(polys, tiles=tiles, num_workers=3, **KW, **{**knobs, "chunk_size": 64})
    dask = zonal_stats(polys, tiles=tiles, dask=client, **KW, **knobs)
    assert_same_rows(single, threads)
    assert_same_rows(single, dask)
    assert single["name"].tolist() == polys["name"].tolist()  # the input's row order
    assert (dask.pixel_count > 0).sum() >= 4


def test_cli_dask_address_writes_the_same_file(two_zone, client, tmp_path):
    poly = tmp_path / "p.gpkg"
    two_zone["polygons"].to_file(poly)
    args = ["stats", str(poly), "--tile-index", str(two_zone["index"]), "--year", "2020",
            "--land-column", "none", "--no-progress", "--chunk-size", "2"]  # fmt: skip
    assert main([*args, "-o", str(tmp_path / "a.parquet")]) == 0
    assert main([*args, "-o", str(tmp_path / "b.parquet"), "--dask", client.scheduler.address]) == 0
    assert_same_rows(
        gpd.read_parquet(tmp_path / "a.parquet"), gpd.read_parquet(tmp_path / "b.parquet")
    )


def test_bad_spec_and_unreachable_scheduler(two_zone, capsys):
    tiles = list(two_zone["tiles"].values())
    with pytest.raises(InputError, match="dask spec 'lokal:2'"):
        zonal_stats(two_zone["polygons"], tiles=tiles, dask="lokal:2", **KW)
    with pytest.raises(InputError, match="tcp://127.0.0.1:1"):
        zonal_stats(two_zone["polygons"], tiles=tiles, dask="tcp://127.0.0.1:1", **KW)


def test_malformed_partition_results_name_the_partition():
    part = Partition(7, np.array([3, 4], np.int64), "partition 7 (2 polygons of tile t.tif)")
    job = Job({}, "mean", 2)

    def res(**kw):
        base = dict(rows=np.array([3, 4]), feats=np.zeros((2, 2), np.float32),
                    counts=np.zeros(2, np.int64), ntiles=np.zeros(2, np.int64), tally={})  # fmt: skip
        return PartResult(**{**base, **kw})

    assert _check(part, res(), job).rows.tolist() == [3, 4]
    with pytest.raises(DaskPartitionError, match=r"partition 7 .*feats.*float64"):
        _check(part, res(feats=np.zeros((2, 2))), job)  # mixed schemas across partitions
    with pytest.raises(DaskPartitionError, match=r"partition 7 .*feats"):
        _check(part, res(feats=np.zeros((2, 3), np.float32)), job)
    with pytest.raises(DaskPartitionError, match=r"partition 7 .*short"):
        _check(part, res(rows=np.array([3, 5])), job)
    with pytest.raises(DaskPartitionError, match=r"partition 7 .*rows"):
        _check(part, res(rows=np.array([3])), job)
    with pytest.raises(DaskPartitionError, match="partition 7"):
        _check(part, None, job)
    assert issubclass(DaskPartitionError, GeoembError)


def test_partitioned_layer_on_dask_equals_single_process(two_zone, client, tmp_path):
    from tests.zonal.test_partitioned import random_layer

    gdf = random_layer(two_zone, 40, seed=8)
    root = tmp_path / "blocks.parquet"
    dask_geopandas.from_geopandas(gdf, npartitions=3).to_parquet(root)
    tiles = list(two_zone["tiles"].values())
    kw = {**KW, "method": "mean_std", "weighting": "coverage", "chunk_size": 8}
    single = zonal_stats(gpd.read_parquet(root), tiles=tiles, num_workers=1, **kw)
    assert_same_rows(single, zonal_stats(root, tiles=tiles, dask=client, **kw))
