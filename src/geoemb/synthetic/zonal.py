"""Synthetic stand-in for the census-block workflow: AEF-format tiles + tile index + blocks.

Layout written under ``root`` (the AEF distribution pattern, reference/offline_data.md §4.5)::

    <root>/aef_index.gpkg            footprints (EPSG:4326, exact: edges densified) -> path
                                     (relative), year, crs
    <root>/<year>/aef_<r>_<c>_<year>.tif   n_bands × tile_size² AEF codes (uint8 0..254, 127 ≈ 0, or
                                     int8 -127..127), UTM CRS, 10 m, zstd + predictor 2, tiled,
                                     GeoTIFF tag data_source=synthetic
    <root>/blocks.gpkg               census-like blocks, EPSG:4269 (TIGER/Line) by default, with
                                     GEOID20, POP20, HOUSING20, ALAND20 (m²), AWATER20 (m²), UR20 (U/R)
    <root>/.complete                 completion marker (generation is skipped when present)

Signal: the scene is cut into rectangular blocks (random k-d splits on the pixel grid, so block
edges lie on pixel edges). Each block has a latent urbanness ``u`` (higher for small blocks); each
pixel draws a land-cover class (built with probability ~u, vegetation, cropland) whose prototype
embedding plus noise is L2-normalised (AEF vectors are unit length) and quantised as AEF
(``code = clamp(round(sign(x)·sqrt|x|·127.5), −127, 127) (+127 for uint8)``). A river strip is
water. POP20/HOUSING20 follow density ∝ exp(5.3·u) × land area; UR20 = U when u > 0.5 (5 % flips).

Special blocks: ``GEOID20`` ending in ``W`` is all water (ALAND20 = 0) and the one ending in ``X``
is oversized (> 25 km², mostly outside the raster coverage). ``spans_tiles`` lists blocks that cross
a tile boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import box

from geoemb.zonal.footprints import tile_footprint
from geoemb.zonal.sources import DATA_SOURCE_TAG, TileMeta

CLASSES = ("built", "vegetation", "cropland", "water")


def quantize_aef(x: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """AEF quantisation of float embeddings ``x`` (any shape) to uint8 (offset 127) or int8 codes."""
    q = np.clip(np.round(np.sign(x) * np.sqrt(np.abs(x)) * 127.5), -127, 127)
    if dtype == "uint8":
        return (q + 127).astype(np.uint8)
    if dtype == "int8":
        return q.astype(np.int8)
    raise ValueError(f"dtype must be 'uint8' or 'int8', got {dtype!r}")


def _split(
    rng: np.random.Generator, rect: tuple[int, int, int, int], min_px: int, out: list
) -> None:
    r0, c0, r1, c1 = rect
    h, w = r1 - r0, c1 - c0
    area = h * w
    if area <= 2 * min_px or (area < 24 * min_px and rng.random() < 0.3) or min(h, w) < 4:
        out.append(rect)
        return
    if w >= h:
        c = c0 + int(round(w * rng.uniform(0.3, 0.7)))
        _split(rng, (r0, c0, r1, c), min_px, out)
        _split(rng, (r0, c, r1, c1), min_px, out)
    else:
        r = r0 + int(round(h * rng.uniform(0.3, 0.7)))
        _split(rng, (r0, c0, r, c1), min_px, out)
        _split(rng, (r, c0, r1, c1), min_px, out)


def generate(
    root: str | Path,
    n_tiles_x: int = 2,
    n_tiles_y: int = 2,
    tile_size: int = 128,
    n_bands: int = 64,
    pixel_size: float = 10.0,
    epsg: int = 32610,
    polygon_crs: str = "EPSG:4269",
    dtype: str = "uint8",
    nodata: int | None = None,
    min_block_px: int = 48,
    year: int = 2020,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset (layout in the module docstring) and return ``root``.

    Parameters
    ----------
    n_tiles_x, n_tiles_y, tile_size:
        Tile grid and tile size in pixels (``pixel_size`` metres, UTM ``epsg``).
    n_bands:
        Embedding dimension D (64 for AEF).
    dtype, nodata:
        Storage convention (the public COGs' convention is undocumented): ``uint8`` codes 0..254
        or ``int8`` -127..127; with ``nodata`` set, a 3×3-pixel corner of the first tile is nodata
        (and declared as the file's nodata).
    min_block_px:
        Smallest block size in pixels (controls the number of blocks).
    """
    root = Path(root)
    marker = root / ".complete"
    if marker.exists() and not overwrite:
        return root
    rng = np.random.default_rng(seed)
    H, W = n_tiles_y * tile_size, n_tiles_x * tile_size
    x0, y0 = 550_000.0, 5_270_000.0  # UTM 10N near Seattle (top-left of the scene)

    # Blocks: k-d split of the pixel grid.
    rects: list[tuple[int, int, int, int]] = []
    _split(rng, (0, 0, H, W), min_block_px, rects)
    n = len(rects)
    areas = np.array([(r1 - r0) * (c1 - c0) for r0, c0, r1, c1 in rects], dtype=float)
    la = np.log(areas)
    z = -(la - la.mean()) / (la.std() + 1e-9) + rng.normal(0, 0.7, n)
    u = 1 / (1 + np.exp(-2 * z))

    # Land cover per pixel.
    cls = np.empty((H, W), dtype=np.int8)
    block_id = np.empty((H, W), dtype=np.int32)
    for b, (r0, c0, r1, c1) in enumerate(rects):
        p_built = 0.05 + 0.85 * u[b]
        veg_share = rng.uniform(0.2, 0.8)
        p = np.array([p_built, (1 - p_built) * veg_share, (1 - p_built) * (1 - veg_share)])
        cls[r0:r1, c0:c1] = rng.choice(3, size=(r1 - r0, c1 - c0), p=p)
        block_id[r0:r1, c0:c1] = b
    river_c0 = int(W * 0.62)
    cls[:, river_c0 : river_c0 + max(3, W // 20)] = 3
    spans = [
        b
        for b, (r0, c0, r1, c1) in enumerate(rects)
        if (r0 // tile_size != (r1 - 1) // tile_size) or (c0 // tile_size != (c1 - 1) // tile_size)
    ]
    if not spans:
        raise RuntimeError("synthetic zonal: no block spans two tiles; use another seed")
    # The all-water block: the smallest block that lies within one tile.
    single = [b for b in np.argsort(areas) if b not in set(spans)]
    water_block = int(single[0])
    r0, c0, r1, c1 = rects[water_block]
    cls[r0:r1, c0:c1] = 3

    protos = rng.normal(0, 1, (4, n_bands))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    block_shift = rng.normal(0, 0.15 / np.sqrt(n_bands), (n, n_bands))
    emb = (
        protos[cls]
        + block_shift[block_id]
        + rng.normal(0, 0.35 / np.sqrt(n_bands), (H, W, n_bands))
    )
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    codes = quantize_aef(emb.astype(np.float32), dtype).transpose(2, 0, 1)  # (D, H, W)
    if nodata is not None:
        codes[:, :3, :3] = nodata

    # Tiles + index.
    tile_dir = root / str(year)
    tile_dir.mkdir(parents=True, exist_ok=True)
    block = next((b for b in (256, 128, 64, 32, 16) if tile_size % b == 0), None)
    rows, geoms = [], []
    crs = f"EPSG:{epsg}"
    for ty in range(n_tiles_y):
        for tx in range(n_tiles_x):
            name = f"aef_{ty}_{tx}_{year}.tif"
            transform = from_origin(
                x0 + tx * tile_size * pixel_size,
                y0 - ty * tile_size * pixel_size,
                pixel_size,
                pixel_size,
            )
            profile = {
                "driver": "GTiff",
                "dtype": dtype,
                "count": n_bands,
                "width": tile_size,
                "height": tile_size,
                "crs": crs,
                "transform": transform,
                "compress": "zstd",
                "predictor": 2,
                "interleave": "band",
                "nodata": nodata,
            }
            if block:
                profile.update(tiled=True, blockxsize=block, blockysize=block)
            sl = codes[
                :, ty * tile_size : (ty + 1) * tile_size, tx * tile_size : (tx + 1) * tile_size
            ]
            with rasterio.open(tile_dir / name, "w", **profile) as dst:
                dst.write(sl)
                dst.update_tags(**{DATA_SOURCE_TAG: "synthetic"})
            # the exact footprint: edges densified every <= 100 m before transforming (a UTM
            # edge is a curve in lon/lat; 4 corners would miss a ~145 m strip on 82 km tiles)
            meta = TileMeta(str(tile_dir / name), CRS.from_string(crs), transform, tile_size,
                            tile_size, n_bands, dtype, nodata)  # fmt: skip
            geoms.append(tile_footprint(meta, "EPSG:4326", max_segment=min(100.0, pixel_size)))
            rows.append({"path": f"{year}/{name}", "year": year, "crs": crs})
    index = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    index.to_file(root / "aef_index.gpkg", driver="GPKG")

    # Census-like attributes.
    px_m2 = pixel_size * pixel_size
    water_px = np.bincount(block_id[cls == 3].ravel(), minlength=n)
    awater = water_px * px_m2
    aland = areas * px_m2 - awater
    density = 30.0 * np.exp(5.3 * u)  # people per km² of land
    pop = rng.poisson(density * aland / 1e6)
    housing = rng.binomial(pop, 0.42) + rng.poisson(0.2, n) * (pop > 0)
    urban = u > 0.5
    flip = rng.random(n) < 0.05
    urban = np.where(flip, ~urban, urban)
    geoms = [
        box(x0 + c0 * pixel_size, y0 - r1 * pixel_size, x0 + c1 * pixel_size, y0 - r0 * pixel_size)
        for r0, c0, r1, c1 in rects
    ]
    geoid = [f"530330001{b:06d}" for b in range(n)]
    geoid[water_block] = geoid[water_block][:-1] + "W"
    # The oversized block: 6 km × 5 km east of the scene (mostly outside the raster coverage).
    right = x0 + W * pixel_size
    geoms.append(box(right, y0 - 5000.0, right + 6000.0, y0))
    geoid.append("530330001999X")
    aland = np.append(aland, 30e6)
    awater = np.append(awater, 0.0)
    pop = np.append(pop, 12)
    housing = np.append(housing, 5)
    urban = np.append(urban, False)
    blocks = gpd.GeoDataFrame(
        {
            "GEOID20": geoid,
            "POP20": pop.astype(np.int64),
            "HOUSING20": housing.astype(np.int64),
            "ALAND20": aland.astype(np.int64),
            "AWATER20": awater.astype(np.int64),
            "UR20": np.where(urban, "U", "R"),
        },
        geometry=geoms,
        crs=crs,
    ).to_crs(polygon_crs)
    blocks.to_file(root / "blocks.gpkg", driver="GPKG")
    info = {
        "n_blocks": len(blocks),
        "water_block": geoid[water_block],
        "oversized_block": geoid[-1],
        "spans_tiles": [geoid[b] for b in spans],
        "tile_size": tile_size,
        "n_bands": n_bands,
        "dtype": dtype,
        "nodata": nodata,
        "crs": crs,
        "polygon_crs": polygon_crs,
        "seed": seed,
    }
    (root / "info.json").write_text(json.dumps(info, indent=1))
    marker.write_text("ok\n")
    return root
