"""Shared helpers of the zonal tests: tile writer and the brute-force oracle."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.windows

RES = 20.0
SIZE = 30  # pixels per tile side
D = 5
NODATA = -9999.0


def write_tile(path: Path, data: np.ndarray, crs: str, transform, nodata=None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def reference_pixels(polygon_4326, tile_paths, all_touched: bool) -> np.ndarray:
    """Brute force: rasterise the polygon over every *whole* tile and gather valid pixels (N, D)."""
    from rasterio.features import rasterize

    out = []
    for p in tile_paths:
        with rasterio.open(p) as ds:
            arr = ds.read().astype(np.float64)
            geom = gpd.GeoSeries([polygon_4326], crs="EPSG:4326").to_crs(ds.crs).iloc[0]
            m = rasterize(
                [(geom, 1)],
                out_shape=(ds.height, ds.width),
                transform=ds.transform,
                fill=0,
                all_touched=all_touched,
            )
            vals = arr[:, m == 1]
            if ds.nodata is not None:
                vals = vals[:, ~(vals == ds.nodata).any(axis=0)]
            out.append(vals.T)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0))


# --- AEF-size tiles (8192² px, 10 m, UTM) written sparse: only the blocks the tests touch -------

BIG = 8192
BLOCK = 512
BIG_D = 4
BIG_NODATA = -128


def pattern(rows: np.ndarray, cols: np.ndarray, seed: int, d: int = BIG_D) -> np.ndarray:
    """Deterministic int8 values (d, *rows.shape) that identify a pixel; never the nodata -128."""
    v = [(rows * 31 + cols * 17 + b * 7 + seed * 101) % 251 - 125 for b in range(d)]
    return np.stack(v).astype(np.int8)


def write_sparse_tile(
    path: Path, crs: str, transform, blocks: set[tuple[int, int]], seed: int, d: int = BIG_D
) -> Path:
    """An 8192×8192 int8 GeoTIFF (nodata −128) with only ``blocks`` = {(block_row, block_col)}
    written (``sparse_ok``: every other block reads as nodata). A few kB on disk."""
    profile = dict(driver="GTiff", width=BIG, height=BIG, count=d, dtype="int8", crs=crs,
                   transform=transform, nodata=BIG_NODATA, tiled=True, blockxsize=BLOCK,
                   blockysize=BLOCK, compress="deflate", sparse_ok=True)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for br, bc in sorted(blocks):
            r, c = np.mgrid[br * BLOCK : (br + 1) * BLOCK, bc * BLOCK : (bc + 1) * BLOCK]
            win = rasterio.windows.Window(bc * BLOCK, br * BLOCK, BLOCK, BLOCK)
            dst.write(pattern(r, c, seed, d), window=win)
    return path


def blocks_under(geom, transform, pad: int = 1) -> set[tuple[int, int]]:
    """Blocks of an 8192² tile that the bounds of ``geom`` (tile CRS) touch, ± ``pad`` pixels."""
    inv = ~transform
    xs, ys = zip(*[inv * (x, y) for x in geom.bounds[::2] for y in geom.bounds[1::2]], strict=True)
    c0, c1 = max(int(min(xs)) - pad, 0), min(int(max(xs)) + pad, BIG - 1)
    r0, r1 = max(int(min(ys)) - pad, 0), min(int(max(ys)) + pad, BIG - 1)
    if c1 < 0 or r1 < 0 or c0 >= BIG or r0 >= BIG:
        return set()
    return {
        (br, bc)
        for br in range(r0 // BLOCK, r1 // BLOCK + 1)
        for bc in range(c0 // BLOCK, c1 // BLOCK + 1)
    }


def oracle_pixels(polygon, polygon_crs, tile_paths) -> tuple[np.ndarray, int]:
    """Independent oracle: polygon vertices -> each tile's CRS with pyproj, pixel centres tested
    with ``shapely.contains_xy`` over the whole tile grid near the polygon (no footprints, no
    windows logic shared with geoemb). Returns valid pixels (N, D) and the contributing tiles."""
    import shapely
    from pyproj import Transformer
    from shapely.ops import transform as shp_transform

    out, ntiles = [], 0
    for p in tile_paths:
        with rasterio.open(p) as ds:
            tr = Transformer.from_crs(polygon_crs, ds.crs, always_xy=True)
            g = shp_transform(tr.transform, polygon)
            inv = ~ds.transform
            corners = [inv * (x, y) for x in g.bounds[::2] for y in g.bounds[1::2]]
            c0 = max(int(np.floor(min(c for c, _ in corners))) - 1, 0)
            c1 = min(int(np.ceil(max(c for c, _ in corners))) + 1, ds.width)
            r0 = max(int(np.floor(min(r for _, r in corners))) - 1, 0)
            r1 = min(int(np.ceil(max(r for _, r in corners))) + 1, ds.height)
            if c1 <= c0 or r1 <= r0:
                continue
            rr, cc = np.mgrid[r0:r1, c0:c1]
            x, y = ds.transform * (cc + 0.5, rr + 0.5)
            inside = shapely.contains_xy(g, x, y)
            if not inside.any():
                continue
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            vals = ds.read(window=win)[:, inside].astype(np.float64)
            if ds.nodata is not None:
                vals = vals[:, ~(vals == ds.nodata).any(axis=0)]
            vals = vals[:, np.isfinite(vals).all(axis=0)]
            if vals.shape[1]:
                out.append(vals.T)
                ntiles += 1
    return (np.concatenate(out) if out else np.zeros((0, 0))), ntiles
