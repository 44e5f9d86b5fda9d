"""Synthetic stand-ins of the raster products, in each product's published layout.

Both start from the census-block scene of :func:`geoemb.synthetic.zonal.generate` (blocks
with a latent urbanness, land-cover pixels whose unit-length embeddings carry it, census-like
attributes) and lay its pixels out as the product publishes them:

- :func:`aef_stand_in`: real-size sparse AEF COGs (``<year>/<zone>/<id>-<yoff>-<xoff>.tiff``,
  8192² px, int8, nodata -128, overviews by the product's rule) placed so that a COG boundary
  cuts the scene in two (blocks span two files) and an internal 1024-px tile boundary crosses
  it, plus AEF's own index (``aef_index.parquet`` and ``.gpkg``), ``blocks.gpkg`` and
  ``info.json``. A 3 × 3-pixel corner of the scene is nodata (-128).
- :func:`tessera_stand_in`: geotessera's NPY layout (int8 + per-pixel scales + landmask) for
  the 0.1° cells the scene touches; the scene is shifted (whole pixels) so that its middle column lies on the
  nearest 0.1° meridian (-122.3°): it spans two tiles. Stand-in tiles are cut to the scene's extent (real tiles cover
  their whole cell). Values: the scene's unit vectors times a per-pixel magnitude in [2, 6].

Every raster carries the GeoTIFF tag ``data_source=synthetic``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from pyproj import Transformer

from geoemb.sources.aef import (
    AEF_NODATA,
    aef_filename,
    image_id,
    stand_in_tags,
    utm_zone_name,
    write_aef_cog,
    write_aef_index,
)
from geoemb.sources.tessera import cell_grid, quantize, tile_from_world, write_tessera_tile
from geoemb.synthetic.zonal import generate
from geoemb.zonal.decodes import decode_values

__all__ = ["aef_stand_in", "tessera_stand_in"]


def _scene(root: Path, **kwargs) -> tuple[Path, np.ndarray, rasterio.Affine, dict]:
    """Generate the census scene in ``root/_scene``; its int8 codes (D, H, W) north-up, the
    transform of pixel (0, 0) and its info."""
    folder = generate(root / "_scene", dtype="int8", overwrite=True, **kwargs)
    info = json.loads((folder / "info.json").read_text())
    index = gpd.read_file(folder / "aef_index.gpkg")
    metas = []
    for p in index.path:
        with rasterio.open(folder / p) as ds:
            metas.append((ds.transform, ds.read()))
    x0 = min(t.c for t, _ in metas)
    y0 = max(t.f for t, _ in metas)
    res = metas[0][0].a
    d = metas[0][1].shape[0]
    h = int(round((y0 - min(t.f - a.shape[1] * res for t, a in metas)) / res))
    w = int(round((max(t.c + a.shape[2] * res for t, a in metas) - x0) / res))
    codes = np.full((d, h, w), AEF_NODATA, np.int8)
    for t, a in metas:
        r, c = int(round((y0 - t.f) / res)), int(round((t.c - x0) / res))
        codes[:, r : r + a.shape[1], c : c + a.shape[2]] = a
    return folder, codes, rasterio.Affine(res, 0, x0, 0, -res, y0), info


def _finish(root: Path, scene: Path, info: dict, shift: float = 0.0) -> None:
    blocks = gpd.read_file(scene / "blocks.gpkg")
    if shift:
        crs = blocks.crs
        blocks = blocks.to_crs(info["crs"])
        blocks.geometry = blocks.geometry.translate(xoff=shift)
        blocks = blocks.to_crs(crs)
    blocks.to_file(root / "blocks.gpkg", driver="GPKG")
    (root / "info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(scene)


def aef_stand_in(
    root: str | Path,
    n_tiles_x: int = 2,
    n_tiles_y: int = 2,
    tile_size: int = 128,
    n_bands: int = 64,
    min_block_px: int = 48,
    year: int = 2020,
    seed: int = 0,
    cog_size: int = 8192,
    cog_tile: int = 1024,
    bottom_up: bool = False,
) -> Path:
    """Write the AEF stand-in (layout in the module docstring) into ``root``.

    ``n_tiles_*``, ``tile_size``, ``min_block_px``: the census scene (see
    :func:`geoemb.synthetic.zonal.generate`); ``cog_size``/``cog_tile``: the COG geometry
    (8192/1024 as published); ``bottom_up``: store the COGs south-up as the Source Cooperative
    mirror does.
    """
    root = Path(root)
    scene, codes, t, info = _scene(root, n_tiles_x=n_tiles_x, n_tiles_y=n_tiles_y,
                                   tile_size=tile_size, n_bands=n_bands, nodata=AEF_NODATA,
                                   min_block_px=min_block_px, year=year, seed=seed)  # fmt: skip
    d, h, w = codes.shape
    res = t.a
    top = min(max(cog_tile - h // 2, 0), cog_size - h)  # scene crosses an internal tile row
    boundary = t.c + (w // 2) * res  # a COG boundary at the scene's middle column
    epsg = int(info["crs"].split(":")[1])
    zone = utm_zone_name(epsg)
    ee = image_id(year, zone, seed)
    entries = []
    for k, x_origin in enumerate((boundary - cog_size * res, boundary)):
        c0 = int(round((t.c - x_origin) / res))  # scene column 0 in this COG (may be < 0)
        lo, hi = max(0, -c0), min(w, cog_size - c0)
        blocks: dict[tuple[int, int], np.ndarray] = {}
        # place the scene's columns [lo, hi) at COG columns [c0 + lo, c0 + hi)
        sub = codes[:, :, lo:hi]
        for tr in range(top // cog_tile, (top + h - 1) // cog_tile + 1):
            for tc in range((c0 + lo) // cog_tile, (c0 + hi - 1) // cog_tile + 1):
                blk = np.full((d, cog_tile, cog_tile), AEF_NODATA, np.int8)
                r_lo, r_hi = max(top, tr * cog_tile), min(top + h, (tr + 1) * cog_tile)
                c_lo, c_hi = max(c0 + lo, tc * cog_tile), min(c0 + hi, (tc + 1) * cog_tile)
                blk[:, r_lo - tr * cog_tile : r_hi - tr * cog_tile,
                    c_lo - tc * cog_tile : c_hi - tc * cog_tile] = sub[
                    :, r_lo - top : r_hi - top, c_lo - c0 - lo : c_hi - c0 - lo]  # fmt: skip
                blocks[(tr, tc)] = blk
        y_origin = t.f + top * res
        rel = Path(str(year)) / zone / aef_filename(ee, 0, k * cog_size)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_aef_cog(root / rel, blocks, epsg=epsg, origin=(x_origin, y_origin), size=cog_size,
                      tile=cog_tile, res=res, bottom_up=bottom_up, tags=stand_in_tags())  # fmt: skip
        entries.append({"path": rel.as_posix(), "year": year, "epsg": epsg,
                        "rect": (x_origin, y_origin - cog_size * res,
                                 x_origin + cog_size * res, y_origin)})  # fmt: skip
    write_aef_index(root, entries)
    info.update(layout="aef-published", cog_size=cog_size, cog_tile=cog_tile,
                bottom_up=bottom_up, files=[e["path"] for e in entries])  # fmt: skip
    _finish(root, scene, info)
    return root


def tessera_stand_in(
    root: str | Path,
    n_tiles_x: int = 2,
    n_tiles_y: int = 2,
    tile_size: int = 128,
    n_bands: int = 128,
    min_block_px: int = 48,
    year: int = 2024,
    seed: int = 0,
    layout: str = "npy",
    shift_m: float | None = None,
) -> Path:
    """Write the Tessera stand-in (layout in the module docstring) into ``root``.

    ``layout``: ``npy`` (int8 + scales + landmask) or ``tiff`` (geotessera's float32 export);
    ``shift_m``: eastward shift of the scene (metres); ``None``: the shift (whole pixels) that
    puts the scene's middle column on the nearest 0.1° meridian, so the scene spans two tiles.
    """
    root = Path(root)
    scene, codes, t, info = _scene(root, n_tiles_x=n_tiles_x, n_tiles_y=n_tiles_y,
                                   tile_size=tile_size, n_bands=n_bands, nodata=None,
                                   min_block_px=min_block_px, year=year, seed=seed)  # fmt: skip
    d, h, w = codes.shape
    rng = np.random.default_rng(seed + 1)
    x = decode_values(codes, "aef_power", "int8") * rng.uniform(2, 6, (1, h, w)).astype(np.float32)
    x = np.moveaxis(x, 0, -1)  # (H, W, C)
    epsg = int(info["crs"].split(":")[1])
    to_ll = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    if shift_m is None:
        cx, cy = t.c + w / 2 * t.a, t.f - h / 2 * t.a
        lon_c, lat_c = to_ll.transform(cx, cy)
        x_m, _ = to_ll.transform(round(lon_c, 1), lat_c, direction="INVERSE")
        shift_m = round((x_m - cx) / t.a) * t.a
    res, x0, y0 = t.a, t.c + shift_m, t.f
    xs, ys = np.meshgrid([x0, x0 + w * res], [y0, y0 - h * res])
    lon, lat = to_ll.transform(xs.ravel(), ys.ravel())
    (w0, s0), (e0, n0) = tile_from_world(min(lon), min(lat)), tile_from_world(max(lon), max(lat))
    cells = [(round(a, 2), round(b, 2)) for a in np.arange(w0, e0 + 0.05, 0.1)
             for b in np.arange(s0, n0 + 0.05, 0.1)]  # fmt: skip
    tiles = []
    for lon_c, lat_c in cells:
        z, ct, ch, cw = cell_grid(lon_c, lat_c, res=res, align=(x0, y0))
        if z != epsg:
            continue
        # the cell's grid cut to the scene: rows/cols of the scene it covers
        c_lo = max(0, int(round((ct.c - x0) / res)))
        c_hi = min(w, int(round((ct.c + cw * res - x0) / res)))
        r_lo = max(0, int(round((y0 - ct.f) / res)))
        r_hi = min(h, int(round((y0 - (ct.f - ch * res)) / res)))
        if c_hi <= c_lo or r_hi <= r_lo:
            continue
        q, scales = quantize(x[r_lo:r_hi, c_lo:c_hi])
        tt = rasterio.Affine(res, 0, x0 + c_lo * res, 0, -res, y0 - r_lo * res)
        tiles.append(write_tessera_tile(root, lon_c, lat_c, year, q, scales, epsg=epsg,
                                        transform=tt, layout=layout,
                                        tags=stand_in_tags()).name)  # fmt: skip
    footprint = shapely.box(x0, y0 - h * res, x0 + w * res, y0)
    info.update(layout=f"tessera-{layout}", tiles=tiles, shift_m=shift_m,
                scene_utm=list(shapely.bounds(footprint)))  # fmt: skip
    _finish(root, scene, info, shift=shift_m)
    return root
