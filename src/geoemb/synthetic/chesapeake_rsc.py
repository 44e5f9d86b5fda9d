"""Synthetic Chesapeake RSC stand-in in the exact on-disk layout (reference/offline_data.md §4.2).

Layout written under ``root``::

    patches.gpkg                      idx:int64, minx, miny, maxx, maxy: float64, box geometry, Albers CRS
    {train,val,test}_idxs.txt         newline-separated idx values
    data/{idx}_image.tif              uint8 4×S×S (R, G, B, NIR), no nodata
    data/{idx}_mask.tif               uint8 1×S×S raw land-cover codes, nodata 255

Completion and caching are the caller's (:class:`geoemb.data.source.DataSource` generates into a
temporary folder and renames it into place). ``missing_patch=True`` plants a fault for tests: one
more gpkg row and train idx (:data:`MISSING_IDX`) without tifs, which the real loader skips with a
warning, as the reference does for patches absent from disk.

Profile of both tifs: GTiff, LZW, predictor 2, tiled 128×128 (16×16 for S < 128), pixel interleave,
``transform = from_bounds(minx, miny, maxx, maxy, S, S)`` at 1 m from origin (1303555, 2535065).

Signal: low vegetation (code 5) with tree blobs (3), buildings (7), a water pond (1) and sometimes a
nodata strip (255); 2–3 straight roads (code 9, width 2–4) per patch. Some road segments of known
length run under tree canopy (code 12) and are painted with the *tree* spectrum inside a tree band,
so they look locally like trees: only the continuation of the visible road reveals them. A segment of
length ``L`` in the middle of a road has canopy pixels at L1 distance 1..ceil(L/2) from visible road.
The last test patch (``tc_only_idx``) has a fully canopy-covered road and no visible road at all
(exercises the reference's ``d >= 8192`` filter).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DEFAULT_SIZE = 128
ORIGIN = (1303555.0, 2535065.0)
#: NAD83 / Conus Albers (USGS), the CRS family of the Chesapeake 2022-Edition land cover.
ALBERS_PROJ = (
    "+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 +datum=NAD83 "
    "+units=m +no_defs"
)
MISSING_IDX = 999_999  # missing_patch=True: listed in the gpkg and train split, no tifs

# mean spectra (R, G, B, NIR) per code
_SPECTRA = {
    5: (95, 135, 70, 170),  # low vegetation
    3: (40, 80, 45, 205),  # tree canopy
    9: (150, 148, 145, 95),  # road
    7: (185, 170, 160, 110),  # structure
    1: (30, 55, 95, 15),  # water
    255: (0, 0, 0, 0),
}


def _profile(size: int, count: int, crs_wkt: str, transform, nodata: int | None) -> dict:
    block = 128 if size >= 128 else 16
    return {
        "driver": "GTiff",
        "dtype": "uint8",
        "width": size,
        "height": size,
        "count": count,
        "crs": crs_wkt,
        "transform": transform,
        "compress": "lzw",
        "predictor": 2,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "interleave": "pixel",
        "nodata": nodata,
    }


def _draw_patch(
    rng: np.random.Generator, size: int, tc_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image (4,S,S) uint8, mask (S,S) uint8 raw codes)``."""
    s = size
    code = np.full((s, s), 5, np.uint8)
    yy, xx = np.mgrid[0:s, 0:s]
    for _ in range(rng.integers(1, 4)):  # tree blobs
        cy, cx, r = rng.integers(0, s), rng.integers(0, s), rng.integers(s // 16 + 2, s // 6 + 3)
        code[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 3
    if rng.random() < 0.5:  # pond
        cy, cx, r = rng.integers(0, s), rng.integers(0, s), rng.integers(3, s // 10 + 4)
        code[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    for _ in range(rng.integers(0, 3)):  # buildings
        y0, x0 = rng.integers(0, s - 6), rng.integers(0, s - 6)
        code[y0 : y0 + rng.integers(3, 7), x0 : x0 + rng.integers(3, 7)] = 7

    n_roads = 1 if tc_only else int(rng.integers(2, 4))
    for k in range(n_roads):
        width = int(rng.integers(2, 5))
        pos = int(rng.integers(width, s - width))
        vertical = bool(k % 2) if not tc_only else bool(rng.integers(0, 2))
        road = np.zeros((s, s), bool)
        if vertical:
            road[:, pos : pos + width] = True
        else:
            road[pos : pos + width, :] = True
        code[road] = 9
        # canopy-covered segments along the road
        n_seg = s if tc_only else int(rng.integers(1, 3))
        if tc_only:
            segs = [(0, s)]
        else:
            segs = []
            for _ in range(n_seg):
                length = int(rng.integers(4, max(5, s // 3)))
                start = int(rng.integers(0, s - length))
                segs.append((start, start + length))
        for a, b in segs:
            seg = np.zeros((s, s), bool)
            band = np.zeros((s, s), bool)
            margin = int(rng.integers(2, 6))
            if vertical:
                seg[a:b, pos : pos + width] = True
                band[a:b, max(pos - margin, 0) : pos + width + margin] = True
            else:
                seg[pos : pos + width, a:b] = True
                band[max(pos - margin, 0) : pos + width + margin, a:b] = True
            code[band & (code != 9) & (code != 12)] = 3
            code[seg & road] = 12
    if not tc_only and rng.random() < 0.3:  # nodata strip at an edge
        w = int(rng.integers(1, 4))
        code[:, :w] = 255

    look = code.copy()
    look[code == 12] = 3  # canopy over road looks like trees
    img = np.zeros((4, s, s), np.float32)
    for c, spec in _SPECTRA.items():
        sel = look == c
        img[:, sel] = np.asarray(spec, np.float32)[:, None]
    img *= rng.uniform(0.85, 1.15)  # per-patch brightness
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img, code


def generate(
    root: str | os.PathLike,
    n_train: int = 12,
    n_val: int = 4,
    n_test: int = 4,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    missing_patch: bool = False,
) -> Path:
    """Write the synthetic RSC dataset under ``root`` and return ``root``.

    Parameters
    ----------
    root : path
        Output directory (created).
    n_train, n_val, n_test : int
        Patches per split (the last test patch has canopy-covered road but no visible road).
    size : int
        Patch side ``S`` in pixels (real data: 512).
    seed : int
        RNG seed; the output is deterministic given all arguments.
    missing_patch : bool
        Planted fault (tests only): list :data:`MISSING_IDX` in the gpkg and the train split
        without writing its tifs.
    """
    import geopandas as gpd
    import rasterio
    from pyproj import CRS
    from rasterio.transform import from_bounds
    from shapely.geometry import box

    if min(n_train, n_val, n_test) < 1 or size < 16:
        raise ValueError(
            f"generate: need >= 1 patch per split and size >= 16, got {n_train=}, {n_val=}, {n_test=}, {size=}"
        )
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    crs_wkt = CRS.from_proj4(ALBERS_PROJ).to_wkt()
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    ncols = int(np.ceil(np.sqrt(n)))
    rows = []
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i in range(n):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        splits[split].append(i)
        minx = ORIGIN[0] + (i % ncols) * size
        maxy = ORIGIN[1] - (i // ncols) * size
        minx, miny, maxx = float(minx), float(maxy - size), float(minx + size)
        rows.append({"idx": i, "minx": minx, "miny": miny, "maxx": maxx, "maxy": float(maxy)})
        img, mask = _draw_patch(rng, size, tc_only=(i == n - 1))
        tr = from_bounds(minx, miny, maxx, maxy, size, size)
        with rasterio.open(
            root / "data" / f"{i}_image.tif", "w", **_profile(size, 4, crs_wkt, tr, None)
        ) as dst:
            dst.write(img)
        with rasterio.open(
            root / "data" / f"{i}_mask.tif", "w", **_profile(size, 1, crs_wkt, tr, 255)
        ) as dst:
            dst.write(mask[None])
    if missing_patch:  # one gpkg row + train idx without tifs (the real loader skips it)
        mx = ORIGIN[0] + ncols * size
        rows.append(
            {
                "idx": MISSING_IDX,
                "minx": mx,
                "miny": ORIGIN[1] - size,
                "maxx": mx + size,
                "maxy": ORIGIN[1],
            }
        )
        splits["train"].append(MISSING_IDX)
    gdf = gpd.GeoDataFrame(
        rows,
        geometry=[box(r["minx"], r["miny"], r["maxx"], r["maxy"]) for r in rows],
        crs=crs_wkt,
    )
    gdf["idx"] = gdf["idx"].astype("int64")
    gpkg = root / "patches.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    gdf.to_file(gpkg, driver="GPKG", engine="pyogrio")
    for split, idxs in splits.items():
        (root / f"{split}_idxs.txt").write_text("\n".join(str(i) for i in idxs) + "\n")
    return root
