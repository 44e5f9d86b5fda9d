"""Hand-made tiles in two UTM zones (10N/11N at lon -120°, lat 47°) and polygons across them."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import MultiPolygon, Polygon, box

from tests.zonal.zonal_helpers import NODATA, RES, SIZE, D, write_tile


@pytest.fixture(scope="session")
def two_zone(tmp_path_factory):
    """Tiles A (32610), A2 (32610, south of A) and B (32611, east of A across the zone line).

    Returns a dict with tile paths, a tile-index gpkg, polygons (EPSG:4326) and their roles.
    """
    root = tmp_path_factory.mktemp("zonal_two_zone")
    rng = np.random.default_rng(123)
    to10 = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    to11 = Transformer.from_crs("EPSG:4326", "EPSG:32611", always_xy=True)
    xa, ya = to10.transform(-120.0, 47.0)
    xb, yb = to11.transform(-120.0, 47.0)
    a_right = np.floor(xa / RES) * RES
    a_top = np.floor(ya / RES) * RES + SIZE * RES / 2
    b_left = np.ceil(xb / RES) * RES
    b_top = np.floor(yb / RES) * RES + SIZE * RES / 2
    tA = from_origin(a_right - SIZE * RES, a_top, RES, RES)
    tA2 = from_origin(a_right - SIZE * RES, a_top - SIZE * RES, RES, RES)
    tB = from_origin(b_left, b_top, RES, RES)
    data = {
        k: rng.normal(size=(D, SIZE, SIZE)).astype(np.float32) + off
        for k, off in (("A", 0), ("A2", 3), ("B", -2))
    }
    data["A"][:, 2:9, 2:9] = NODATA  # a nodata square
    data["B"][1, 10:12, 0:3] = NODATA  # nodata in a single band -> pixel invalid
    (root / "sub").mkdir()
    tiles = {
        "A": write_tile(root / "A.tif", data["A"], "EPSG:32610", tA, NODATA),
        "A2": write_tile(root / "A2.tif", data["A2"], "EPSG:32610", tA2, NODATA),
        "B": write_tile(root / "sub" / "B.tif", data["B"], "EPSG:32611", tB, NODATA),
    }
    # Polygons designed in 32610 metres around tile A's corners (off the pixel grid), then to 4326.
    x0, y0 = a_right, a_top - SIZE * RES  # A's bottom-right corner == A2's top-right corner
    polys = {
        "A_B": box(x0 - 153, y0 + 97, x0 + 147, y0 + 283),  # across the zone line
        "A_A2": box(x0 - 417, y0 - 113, x0 - 211, y0 + 129),  # across A/A2 in one CRS
        "tri_3": Polygon(
            [(x0 - 205, y0 - 163), (x0 + 171, y0 + 17), (x0 - 93, y0 + 241)]
        ),  # A, A2, B
        "inside_A": box(x0 - 523, y0 + 331, x0 - 301, y0 + 577),  # partly on the nodata square
        "multi": MultiPolygon(
            [box(x0 - 99, y0 + 401, x0 - 31, y0 + 473), box(x0 + 53, y0 + 389, x0 + 131, y0 + 459)]
        ),
        "outside": box(x0 + 5000, y0 + 5000, x0 + 5200, y0 + 5200),
        "nodata_only": box(
            a_right - SIZE * RES + 3 * RES + 3,
            a_top - 8 * RES + 3,
            a_right - SIZE * RES + 8 * RES - 3,
            a_top - 3 * RES - 3,
        ),
    }
    gdf = gpd.GeoDataFrame(
        {"name": list(polys), "ALAND20": [1000 * (i + 1) for i in range(len(polys))]},
        geometry=list(polys.values()),
        crs="EPSG:32610",
    ).to_crs("EPSG:4326")
    # A tile index (footprints in 4326, relative paths) as AEF distributes it.
    fps = []
    for p in tiles.values():
        with rasterio.open(p) as ds:
            fp = gpd.GeoSeries([box(*ds.bounds)], crs=ds.crs).to_crs("EPSG:4326").iloc[0]
        fps.append({"location": str(Path(p).relative_to(root)), "year": 2020, "geometry": fp})
    fps.append({"location": "missing_2019.tif", "year": 2019, "geometry": fps[0]["geometry"]})
    index = gpd.GeoDataFrame(fps, crs="EPSG:4326")
    index.to_file(root / "index.gpkg", driver="GPKG")
    return {"root": root, "tiles": tiles, "index": root / "index.gpkg", "polygons": gdf}
