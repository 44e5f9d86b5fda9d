"""A partitioned polygon layer (a directory of GeoParquet/GeoPackage parts, read lazily with
dask-geopandas and shuffled spatially) gives the same rows as the single-process run on the parts
concatenated; parts whose schema differs are refused naming the part and the field, before any
raster work."""

from __future__ import annotations

import dask_geopandas
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString

from geoemb.errors import InputError
from geoemb.zonal import zonal_stats
from geoemb.zonal.partitioned import list_parts
from tests.zonal.zonal_helpers import RES, SIZE

KW = {"land_column": None, "progress": False, "num_workers": 1}


def random_layer(two_zone, n: int, seed: int) -> gpd.GeoDataFrame:
    """``n`` random polygons (some multi-part, one null, one outside every tile) around tile A's
    bottom-right corner (tiles A, A2, B), in EPSG:4326 and not in spatial order."""
    rng = np.random.default_rng(seed)
    with_a = two_zone["polygons"].to_crs("EPSG:32610")
    x0, y0 = with_a.geometry.iloc[1].centroid.coords[0]
    span = SIZE * RES
    geoms = []
    for k in range(n):
        cx, cy = x0 + rng.uniform(-span, span * 0.6), y0 + rng.uniform(-span, span)
        r = rng.uniform(5, 90)
        g = shapely.Point(cx, cy).buffer(r, quad_segs=int(rng.integers(1, 4)))
        if k % 5 == 0:
            g = shapely.MultiPolygon([g, shapely.box(cx + r + 7, cy, cx + r + 29, cy + 31)])
        geoms.append(g)
    geoms[3] = None
    geoms[7] = shapely.box(x0 + 9e4, y0, x0 + 9e4 + 50, y0 + 50)
    gdf = gpd.GeoDataFrame(
        {"block": [f"b{k:04d}" for k in range(n)], "pop": rng.integers(0, 900, n)},
        geometry=geoms,
        crs="EPSG:32610",
    )
    return gdf.to_crs("EPSG:4326")


def assert_same_rows(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> None:
    assert list(a.columns) == list(b.columns) and a.dtypes.equals(b.dtypes)
    assert a.index.equals(b.index) and a.crs == b.crs
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs["zonal"] == b.attrs["zonal"]


def write_parts(gdf: gpd.GeoDataFrame, root, sizes: list[int], fmt: str) -> None:
    root.mkdir()
    start = 0
    for k, s in enumerate(sizes):
        part = gdf.iloc[start : start + s]
        if fmt == "parquet":
            part.to_parquet(root / f"part.{k}.parquet")
        else:
            part.to_file(root / f"part.{k}.gpkg", driver="GPKG")
        start += s


@pytest.mark.parametrize("weighting", ["centre", "coverage"])
def test_dask_geopandas_dataset_equals_single_process(two_zone, tmp_path, weighting):
    gdf = random_layer(two_zone, 60, seed=3)
    root = tmp_path / "blocks.parquet"
    dask_geopandas.from_geopandas(gdf, npartitions=4).to_parquet(root)
    assert len(list_parts(root)) == 4
    tiles = list(two_zone["tiles"].values())
    kw = {**KW, "method": "mean_std", "weighting": weighting, "chunk_size": 16}
    single = zonal_stats(gpd.read_parquet(root), tiles=tiles, **kw)  # the parts, read at once
    assert single["block"].tolist() == gdf["block"].tolist()
    parted = zonal_stats(root, tiles=tiles, output=tmp_path / "out.parquet", **kw)
    assert_same_rows(single, parted)
    back = gpd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(back.reset_index(drop=True), parted.reset_index(drop=True))
    assert (parted.pixel_count > 0).sum() >= 30 and parted.pixel_count.iloc[7] == 0


def test_gpkg_parts_in_natural_order_equal_single_process(two_zone, tmp_path):
    gdf = random_layer(two_zone, 45, seed=4)
    sizes = [4, 7, 1, 3, 5, 6, 2, 3, 4, 2, 8]  # 11 parts: part.10 must come after part.9
    root = tmp_path / "blocks"
    write_parts(gdf, root, sizes, "gpkg")
    (root / "_scratch.gpkg").write_bytes(b"not a part")  # underscore files are not parts
    ref = pd.concat([gpd.read_file(f) for f in list_parts(root)], ignore_index=True)
    assert ref["block"].tolist() == gdf["block"].tolist()
    tiles = list(two_zone["tiles"].values())
    kw = {**KW, "method": "stats", "chunk_size": 8}
    assert_same_rows(zonal_stats(ref, tiles=tiles, **kw), zonal_stats(root, tiles=tiles, **kw))


def test_mixed_part_schemas_name_the_part_and_field(two_zone, tmp_path):
    gdf = random_layer(two_zone, 12, seed=5).iloc[8:]  # no null / far rows needed
    tiles = ["/nonexistent/tile.tif"]  # the schema error must come before any raster is opened

    def layer(name: str, other: gpd.GeoDataFrame, fmt: str = "parquet"):
        root = tmp_path / name
        write_parts(gdf, root, [2, 2], fmt)
        if fmt == "parquet":
            other.to_parquet(root / "part.2.parquet")
        else:
            other.to_file(root / "part.2.gpkg", driver="GPKG")
        return root, root / f"part.2.{fmt}"

    cases = [
        (gdf.drop(columns=["block"]), "no column 'block'"),
        (gdf.assign(pop=gdf["pop"].astype(str)), "column 'pop' is \\w+, but int64"),
        (gdf.assign(extra=1.0), "column 'extra' is not in part"),
        (gdf.to_crs("EPSG:3857"), "has CRS EPSG:3857"),
        (gdf.set_geometry([LineString([(0, 0), (1, 1)])] * len(gdf)), r"\['LineString'\]"),
    ]
    for k, (other, msg) in enumerate(cases):
        for fmt in ("parquet", "gpkg"):
            root, part = layer(f"l{k}{fmt}", other, fmt)
            with pytest.raises(InputError, match=msg) as e:
                zonal_stats(root, tiles=tiles, **KW)
            assert str(part) in str(e.value)
    mixed = tmp_path / "mixed"
    write_parts(gdf, mixed, [2, 2], "parquet")
    gdf.to_file(mixed / "part.9.gpkg", driver="GPKG")
    with pytest.raises(InputError, match="part.9.gpkg: a gpkg part among parquet parts"):
        zonal_stats(mixed, tiles=tiles, **KW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="directory without parts"):
        zonal_stats(tmp_path / "empty", tiles=tiles, **KW)


def test_bad_row_in_a_part_names_the_layer_row(two_zone, tmp_path):
    gdf = random_layer(two_zone, 12, seed=6)
    coords = np.asarray(gdf.geometry.iloc[9].exterior.coords)
    coords[1, 0] = np.nan
    gdf.loc[9, "geometry"] = shapely.Polygon(coords)
    root = tmp_path / "bad"
    write_parts(gdf, root, [5, 7], "parquet")
    with pytest.raises(InputError, match=r"bad \(layer rows\): rows \[9\] have NaN"):
        zonal_stats(root, tiles=list(two_zone["tiles"].values()), **KW)


def test_layer_of_empty_parts_gives_the_empty_schema(two_zone, tmp_path):
    gdf = random_layer(two_zone, 12, seed=9).iloc[:0]
    root = tmp_path / "empty_parts"
    write_parts(gdf, root, [0, 0], "parquet")
    tiles = list(two_zone["tiles"].values())
    with pytest.warns(UserWarning, match="no polygon left"):
        single = zonal_stats(gpd.read_parquet(root), tiles=tiles, **KW)
    with pytest.warns(UserWarning, match="no polygon left"):
        parted = zonal_stats(root, tiles=tiles, **KW)
    assert len(parted) == 0 and list(parted.columns) == list(single.columns)
