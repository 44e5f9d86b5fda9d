"""Tile membership at real AEF tile size: 8192² px × 10 m UTM tiles whose lon/lat edges bulge
~145 m beyond the 4-corner quadrilateral. Polygons in that strip (and straddling two tiles) must
get exactly the pixels an independent oracle finds in each tile's own CRS."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import LineString, Polygon, box

from geoemb.synthetic.zonal import generate
from geoemb.zonal import feature_names, zonal_stats
from tests.zonal.zonal_helpers import (
    BIG,
    BIG_D,
    blocks_under,
    oracle_pixels,
    write_sparse_tile,
)

UTM = "EPSG:32610"
X0, Y0 = 550_000.0, 5_300_000.0  # top-left of tile S; tile N lies directly north of it
SIDE = BIG * 10.0
MID = X0 + SIDE / 2

# Polygons in UTM metres (edges off the pixel-centre grid), stored in EPSG:4326 as a user has them.
POLYS_UTM = {
    # inside S, between the 4-corner chord (~145 m south of the edge here) and the true edge
    "strip": box(MID - 23, Y0 - 97, MID + 31, Y0 - 43),
    # across the S/N edge, its southern part still north of the chord (~135 m south here)
    "straddle": box(X0 + 30_003, Y0 - 113, X0 + 30_077, Y0 + 47),
    # a non-rectangular one in the strip
    "tri_strip": Polygon([(MID + 503, Y0 - 121), (MID + 611, Y0 - 17), (MID + 467, Y0 + 29)]),
    # controls: inside S; across the edge near the west corner (no bulge there)
    "inside": box(X0 + 20_003, Y0 - 40_003, X0 + 20_087, Y0 - 39_909),
    "corner": box(X0 + 13, Y0 - 57, X0 + 71, Y0 + 33),
}


def _footprint_4corners(path) -> Polygon:
    """What AEF's index (and geoemb before the fix) uses: the 4 corners in lon/lat."""
    with rasterio.open(path) as ds:
        b = ds.bounds
        t = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        return Polygon([t.transform(x, y) for x, y in
                        ((b.left, b.bottom), (b.right, b.bottom), (b.right, b.top), (b.left, b.top))])  # fmt: skip


@pytest.fixture(scope="module")
def aef_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("aef_edges")
    transforms = {"S": from_origin(X0, Y0, 10, 10), "N": from_origin(X0, Y0 + SIDE, 10, 10)}
    tiles = {}
    for seed, (name, tr) in enumerate(transforms.items()):
        blocks = set().union(*(blocks_under(g, tr) for g in POLYS_UTM.values()))
        tiles[name] = write_sparse_tile(root / f"{name}.tif", UTM, tr, blocks, seed)
    polys = gpd.GeoDataFrame(
        {"name": list(POLYS_UTM)}, geometry=list(POLYS_UTM.values()), crs=UTM
    ).to_crs("EPSG:4326")
    # an AEF-style index: approximate 4-corner footprints, relative paths
    index = gpd.GeoDataFrame(
        {"path": [p.name for p in tiles.values()], "year": 2020},
        geometry=[_footprint_4corners(p) for p in tiles.values()],
        crs="EPSG:4326",
    )
    index.to_file(root / "index.gpkg", driver="GPKG")
    return {"tiles": tiles, "polygons": polys, "index": root / "index.gpkg"}


def test_fixture_really_puts_polygons_in_the_bulge(aef_pair):
    assert Path(aef_pair["tiles"]["S"]).stat().st_size < 2_000_000  # sparse, real header
    with rasterio.open(aef_pair["tiles"]["S"]) as ds:
        assert (ds.width, ds.height, ds.res) == (BIG, BIG, (10.0, 10.0))
    fp_s = _footprint_4corners(aef_pair["tiles"]["S"])
    by = aef_pair["polygons"].set_index("name").geometry
    # the strip polygons lie wholly outside S's 4-corner quadrilateral although they are inside S
    assert not by["strip"].intersects(fp_s) and not by["tri_strip"].intersects(fp_s)
    assert not by["straddle"].intersects(fp_s)
    assert by["inside"].within(fp_s) and by["corner"].intersects(fp_s)


def _check_against_oracle(out, tile_paths, expect_tiles):
    names = feature_names("mean_std", BIG_D, 2 * BIG_D)
    for _, row in out.iterrows():
        ref, k = oracle_pixels(row.geometry, "EPSG:4326", tile_paths)
        assert row["pixel_count"] == len(ref) > 0, row["name"]
        assert row["tile_count"] == k == expect_tiles[row["name"]], row["name"]
        want = np.concatenate([ref.mean(0), ref.std(0)])
        np.testing.assert_allclose(
            row[names].to_numpy(dtype=float), want, rtol=1e-5, atol=1e-4, err_msg=row["name"]
        )


EXPECT_TILES = {"strip": 1, "straddle": 2, "tri_strip": 2, "inside": 1, "corner": 2}


@pytest.mark.parametrize("source", ["tiles", "index"])
def test_bulge_strip_polygons_get_their_pixels(aef_pair, source):
    kw = (
        {"tiles": list(aef_pair["tiles"].values())}
        if source == "tiles"
        else {"tile_index": aef_pair["index"]}
    )
    out = zonal_stats(aef_pair["polygons"], land_column=None, progress=False, num_workers=2, **kw)
    _check_against_oracle(out, list(aef_pair["tiles"].values()), EXPECT_TILES)


def test_single_tile_without_northern_neighbour(aef_pair):
    s = aef_pair["tiles"]["S"]
    polys = aef_pair["polygons"]
    out = zonal_stats(polys, tiles=[s], land_column=None, progress=False, num_workers=1)
    _check_against_oracle(out, [s], dict.fromkeys(EXPECT_TILES, 1))


def test_synthetic_index_footprints_cover_the_true_tile_edges(tmp_path):
    # same geometry as AEF with few pixels: 16 px × 5120 m = 82 km tiles
    root = generate(tmp_path / "syn", n_tiles_x=2, n_tiles_y=2, tile_size=16, pixel_size=5120.0,
                    n_bands=2, min_block_px=10, seed=0)  # fmt: skip
    index = gpd.read_file(root / "aef_index.gpkg")
    info = json.loads((root / "info.json").read_text())
    for _, row in index.iterrows():
        with rasterio.open(root / row.path) as ds:
            b = ds.bounds
            to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        ring = LineString([(b.left, b.top), (b.right, b.top), (b.right, b.bottom),
                           (b.left, b.bottom), (b.left, b.top)]).segmentize(50.0)  # fmt: skip
        lon, lat = to_ll.transform(*np.asarray(ring.coords).T)
        fp = row.geometry.buffer(1e-7)  # ~1 cm
        inside = shapely.covers(fp, shapely.points(lon, lat))
        assert inside.all(), (row.path, int((~inside).sum()))
    # and zonal_stats on it still counts every block's pixels exactly
    out = zonal_stats(root / "blocks.gpkg", tile_index=root / "aef_index.gpkg", decode="aef",
                      land_column=None, progress=False)  # fmt: skip
    out = out[out.GEOID20 != info["oversized_block"]]  # lies mostly outside the tiles
    assert set(info["spans_tiles"]) <= set(out.GEOID20)
    np.testing.assert_array_equal(out.pixel_count, (out.ALAND20 + out.AWATER20) / 5120.0**2)
