"""Synthetic Earth Surface Water stand-in, in exactly the real on-disk layout.

Layout written by :func:`generate` (reference/earth_surface_water.md §1, §6)::

    <root>/dset-s2/tra_scene/S2A_L2A_20190125_N0211_R034_6Bands_S1.tif  6 x H x W uint16, DN = refl x 1e4
    <root>/dset-s2/tra_truth/S2A_L2A_20190125_N0211_R034_S1_Truth.tif   1 x H x W uint8 {0, 1}
    <root>/dset-s2/val_scene/...   <root>/dset-s2/val_truth/...

Completion and caching are the caller's: :class:`geoemb.data.source.DataSource` generates into a
temporary folder, writes its marker and renames it into place.

Bands are B02, B03, B04, B08, B11, B12 on one 10 m grid, each scene in its own UTM zone (north and
south, EPSG:326xx / 327xx), nodata unset. Scenes are drawn by an analytic renderer that can work on
any window, so the same code writes tiny fixtures and a 10980 x 10980 scene block by block
(:func:`write_scene_geotiff`) and per-band Sentinel-2 folders for inference
(:func:`write_sentinel2_scene`).

Spectral model (DN units): water is dark in NIR/SWIR with green > NIR (NDWI > 0) and varies between
clear and turbid; land mixes vegetation (high NIR), bare soil and urban surfaces with texture and
3 % multiplicative noise. Mixed shoreline pixels are on the land side only, so every pixel
labelled water has a water spectrum. Cloud-ish haze and saturated bright pixels (DN > 10000) are
placed on land only (documented simplification: real clouds also cover water).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from geoemb.errors import OutputError

__all__ = [
    "BANDS",
    "SceneSpec",
    "generate",
    "make_spec",
    "render_window",
    "write_scene_geotiff",
    "write_sentinel2_scene",
]

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")

# Signatures in DN (reflectance x 10000), band order B02 B03 B04 B08 B11 B12.
_WATER_CLEAR = np.array([650.0, 620.0, 380.0, 160.0, 90.0, 70.0])
_WATER_TURBID = np.array([850.0, 1000.0, 850.0, 420.0, 160.0, 110.0])
_VEG = np.array([300.0, 600.0, 350.0, 3600.0, 1800.0, 850.0])
_SOIL = np.array([900.0, 1250.0, 1550.0, 2250.0, 2900.0, 2350.0])
_URBAN = np.array([1150.0, 1250.0, 1350.0, 1750.0, 2050.0, 1950.0])
_CLOUD = np.array([7000.0, 7200.0, 7400.0, 7800.0, 5200.0, 3800.0])

# (name grammar parts, EPSG, origin x, origin y): real ESW scene ids (reference §1) placed in
# different UTM zones, north and south.
_TRAIN_SITES = [
    ("S2A", "20190125", "N0211", "R034", 1, 32633, 400_000.0, 4_985_000.0),
    ("S2B", "20190225", "N0211", "R117", 1, 32750, 390_000.0, 6_470_000.0),
    ("S2A", "20190817", "N0213", "R089", 4, 32629, 500_000.0, 4_650_000.0),
    ("S2B", "20190430", "N0211", "R008", 2, 32718, 300_000.0, 8_660_000.0),
    ("S2A", "20190716", "N0213", "R035", 1, 32645, 450_000.0, 2_880_000.0),
    ("S2B", "20190607", "N0212", "R093", 3, 32754, 330_000.0, 6_250_000.0),
]
_VAL_SITES = [
    ("S2A", "20190318", "N0211", "R061", 1, 32622, 300_000.0, 553_000.0),
    ("S2B", "20190303", "N0211", "R065", 1, 32736, 600_000.0, 8_340_000.0),
    ("S2A", "20190426", "N0211", "R040", 2, 32617, 420_000.0, 3_300_000.0),
    ("S2B", "20191015", "N0213", "R083", 1, 32756, 330_000.0, 6_250_000.0),
]


@dataclass
class SceneSpec:
    """Analytic description of one synthetic scene (all lengths in pixels, global coordinates)."""

    height: int
    width: int
    seed: int
    rivers: list[dict] = field(default_factory=list)
    lakes: list[dict] = field(default_factory=list)
    coast: dict | None = None
    land_waves: list[list[tuple[float, float, float, float]]] = field(default_factory=list)
    cloud_waves: list[tuple[float, float, float, float]] = field(default_factory=list)
    cloud_cover: float = 0.06


def _waves(rng: np.random.Generator, n: int, lo: float, hi: float) -> list[tuple]:
    """Random plane waves (kx, ky, phase, amplitude) with wavelengths in [lo, hi] px."""
    out = []
    for _ in range(n):
        wl = rng.uniform(lo, hi)
        ang = rng.uniform(0, math.pi)
        k = 2 * math.pi / wl
        out.append((k * math.cos(ang), k * math.sin(ang), rng.uniform(0, 2 * math.pi), 1.0))
    return out


def make_spec(
    height: int,
    width: int,
    seed: int = 0,
    *,
    n_rivers: int | None = None,
    n_lakes: int | None = None,
    coast: bool | None = None,
) -> SceneSpec:
    """Draw a random scene: meandering rivers, blob lakes, maybe a coastline, varied land.

    Feature counts scale with the scene area so large scenes stay water/land balanced.
    """
    rng = np.random.default_rng(seed)
    area_units = max(1.0, height * width / (300.0 * 300.0))
    if n_rivers is None:
        n_rivers = int(rng.integers(1, 3)) + int(math.sqrt(area_units) // 4)
    if n_lakes is None:
        n_lakes = int(rng.integers(1, 4) * min(area_units, 1.0)) + int(area_units * 0.8)
    if coast is None:
        coast = bool(rng.random() < 0.5)
    spec = SceneSpec(height=height, width=width, seed=seed)
    scale = math.sqrt(height * width)
    for _ in range(n_rivers):
        spec.rivers.append(
            {
                "angle": rng.uniform(0, math.pi),
                "offset": rng.uniform(0.2, 0.8),
                "a1": rng.uniform(0.04, 0.12) * min(scale, 600),
                "wl1": rng.uniform(0.3, 0.7) * min(scale, 1500),
                "p1": rng.uniform(0, 2 * math.pi),
                "a2": rng.uniform(0.01, 0.04) * min(scale, 600),
                "wl2": rng.uniform(0.08, 0.2) * min(scale, 1500),
                "p2": rng.uniform(0, 2 * math.pi),
                "half_width": rng.uniform(2.5, 7.0),
            }
        )
    for _ in range(n_lakes):
        spec.lakes.append(
            {
                "cy": rng.uniform(0, height),
                "cx": rng.uniform(0, width),
                "r": rng.uniform(8, 35),
                "a2": rng.uniform(0.0, 0.25),
                "p2": rng.uniform(0, 2 * math.pi),
                "a3": rng.uniform(0.0, 0.15),
                "p3": rng.uniform(0, 2 * math.pi),
            }
        )
    if coast:
        spec.coast = {
            "angle": rng.uniform(0, 2 * math.pi),
            "offset": rng.uniform(0.25, 0.4),
            "amp": rng.uniform(4, 15),
            "wl": rng.uniform(60, 200),
            "phase": rng.uniform(0, 2 * math.pi),
        }
    spec.land_waves = [_waves(rng, 3, 40, 250) for _ in range(4)]
    spec.cloud_waves = _waves(rng, 3, 60, 300)
    spec.cloud_cover = float(rng.uniform(0.02, 0.08))
    return spec


def _wave_field(waves: list[tuple], yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Sum of plane waves ``amp * sin(kx x + ky y + ph)`` on the (yy column, xx row) grid.

    Uses sin(a + b) = sin a cos b + cos a sin b with a on the rows and b on the columns, so each
    wave costs two outer products instead of a full-size sine.
    """
    out = np.zeros((yy.shape[0], xx.shape[1]), dtype=np.float32)
    for kx, ky, ph, amp in waves:
        a = (ky * yy + ph).astype(np.float32)  # (H, 1)
        b = (kx * xx).astype(np.float32)  # (1, W)
        out += amp * (np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b))
    return out / max(1.0, math.sqrt(len(waves) / 2.0))


_NOISE_TILE = 256


def _tile_noise(
    seed: int, row0: int, col0: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel noise that depends only on the global pixel position, not on the window.

    Noise is drawn per fixed 256 x 256 tile seeded by (seed, tile row, tile col), so a scene
    rendered in any blocking is bit-identical. Returns gaussian (6, h, w) clipped to +-3 and
    uniform (h, w) in [0, 1).
    """
    t = _NOISE_TILE
    gauss = np.empty((6, height, width), dtype=np.float32)
    uni = np.empty((height, width), dtype=np.float32)
    for tr in range(row0 // t, (row0 + height - 1) // t + 1):
        for tc in range(col0 // t, (col0 + width - 1) // t + 1):
            rng = np.random.default_rng([seed, tr, tc])
            g = rng.standard_normal((6, t, t), dtype=np.float32)
            u = rng.random((t, t), dtype=np.float32)
            r0, r1 = max(row0, tr * t), min(row0 + height, (tr + 1) * t)
            c0, c1 = max(col0, tc * t), min(col0 + width, (tc + 1) * t)
            gauss[:, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = g[
                :, r0 - tr * t : r1 - tr * t, c0 - tc * t : c1 - tc * t
            ]
            uni[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = u[
                r0 - tr * t : r1 - tr * t, c0 - tc * t : c1 - tc * t
            ]
    return np.clip(gauss, -3, 3), uni


def render_window(
    spec: SceneSpec, row0: int, col0: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render rows ``[row0, row0+height)`` x cols ``[col0, col0+width)`` of a scene.

    Deterministic and independent of the blocking: noise is drawn per fixed 256-px tile.

    Returns
    -------
    image : uint16 (6, height, width), DN in band order B02 B03 B04 B08 B11 B12
    mask : uint8 (height, width), 1 = water
    """
    yy = np.arange(row0, row0 + height, dtype=np.float32)[:, None]
    xx = np.arange(col0, col0 + width, dtype=np.float32)[None, :]
    # Signed "inside water" distance, positive inside (pixels).
    inside = np.full((height, width), -1e9, dtype=np.float32)
    cy, cx = spec.height / 2.0, spec.width / 2.0
    corners_y = np.array([row0, row0, row0 + height, row0 + height], dtype=np.float64)
    corners_x = np.array([col0, col0 + width, col0, col0 + width], dtype=np.float64)
    for r in spec.rivers:
        ca, sa = math.cos(r["angle"]), math.sin(r["angle"])
        v0 = (r["offset"] - 0.5) * min(spec.height, spec.width)
        reach = r["a1"] + r["a2"] + r["half_width"] + 2
        v_corners = -(corners_x - cx) * sa + (corners_y - cy) * ca
        if v_corners.min() > v0 + reach or v_corners.max() < v0 - reach:
            continue  # the river's meander belt misses this window
        u = (xx - cx) * ca + (yy - cy) * sa
        v = -(xx - cx) * sa + (yy - cy) * ca
        k1, k2 = 2 * math.pi / r["wl1"], 2 * math.pi / r["wl2"]
        ph1, ph2 = k1 * u + r["p1"], k2 * u + r["p2"]
        vc = v0 + r["a1"] * np.sin(ph1) + r["a2"] * np.sin(ph2)
        slope = r["a1"] * k1 * np.cos(ph1) + r["a2"] * k2 * np.cos(ph2)
        d = np.abs(v - vc) / np.sqrt(1.0 + slope * slope)
        np.maximum(inside, r["half_width"] - d, out=inside)
    for lake in spec.lakes:
        reach = lake["r"] * 1.5 + 2
        r_lo = max(row0, int(lake["cy"] - reach))
        r_hi = min(row0 + height, int(lake["cy"] + reach) + 1)
        c_lo = max(col0, int(lake["cx"] - reach))
        c_hi = min(col0 + width, int(lake["cx"] + reach) + 1)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        dy = yy[r_lo - row0 : r_hi - row0] - np.float32(lake["cy"])
        dx = xx[:, c_lo - col0 : c_hi - col0] - np.float32(lake["cx"])
        theta = np.arctan2(dy, dx)
        radius = lake["r"] * (
            1
            + lake["a2"] * np.cos(2 * theta + lake["p2"])
            + lake["a3"] * np.cos(3 * theta + lake["p3"])
        )
        sub = inside[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0]
        np.maximum(sub, radius - np.sqrt(dy * dy + dx * dx), out=sub)
    if spec.coast is not None:
        c = spec.coast
        ca, sa = math.cos(c["angle"]), math.sin(c["angle"])
        u = (xx - cx) * ca + (yy - cy) * sa
        v = -(xx - cx) * sa + (yy - cy) * ca
        half = 0.5 * math.hypot(spec.height, spec.width)
        line = half * (1 - 2 * c["offset"]) + c["amp"] * np.sin(
            2 * math.pi * u / c["wl"] + c["phase"]
        )
        np.maximum(inside, v - line, out=inside)

    mask = inside >= 0
    # Land-side mixing: a pixel within 1 px outside the shore mixes up to 45 % water.
    shore_frac = np.clip(1.0 + inside, 0.0, 1.0) * 0.45
    shore_frac[mask] = 0.0

    # Land cover: softmax of three smooth fields -> vegetation / soil / urban weights.
    f = np.stack([_wave_field(w, yy, xx) for w in spec.land_waves[:3]])
    f[0] += 0.6  # vegetation is the most common cover
    w = np.exp(2.2 * f)
    w /= w.sum(axis=0, keepdims=True)
    texture = 1.0 + 0.08 * _wave_field(spec.land_waves[3], yy, xx)
    land_sig = np.stack([_VEG, _SOIL, _URBAN]).astype(np.float32)  # (3, 6)
    land = np.tensordot(land_sig, w.astype(np.float32), axes=(0, 0))
    land *= texture[None]

    turb = np.clip(0.5 + 0.5 * _wave_field(spec.land_waves[3], yy * 0.7, xx * 0.7), 0.0, 1.0)
    clear = _WATER_CLEAR.astype(np.float32)[:, None, None]
    water = clear + turb[None] * (_WATER_TURBID.astype(np.float32) - _WATER_CLEAR)[:, None, None]

    img = np.where(mask[None], water, land * (1 - shore_frac)[None] + water * shore_frac[None])

    noise, uni = _tile_noise(spec.seed, row0, col0, height, width)
    img *= 1.0 + 0.03 * noise

    # Cloud-ish haze and saturated pixels, on land only.
    cloud = _wave_field(spec.cloud_waves, yy, xx)
    thr = 1.9 - 6.0 * spec.cloud_cover
    opacity = np.clip((cloud - thr) / 0.6, 0.0, 0.9) * (~mask)
    if opacity.any():
        img = img * (1 - opacity)[None] + _CLOUD[:, None, None].astype(np.float32) * opacity[None]
    salt = (uni < 3e-4) & ~mask
    if salt.any():
        img[:, salt] = (10000.0 + uni[salt] / 3e-4 * 2500.0)[None]
    image = np.clip(np.rint(img), 0, 65535).astype(np.uint16)
    return image, mask.astype(np.uint8)


def _windows(height: int, width: int, block: int) -> Iterator[tuple[int, int, int, int]]:
    for r in range(0, height, block):
        for c in range(0, width, block):
            yield r, c, min(block, height - r), min(block, width - c)


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def write_scene_geotiff(
    path: str | Path,
    size: int | tuple[int, int] = 512,
    *,
    crs: str | int = "EPSG:32633",
    origin: tuple[float, float] = (400_000.0, 4_985_000.0),
    res: float = 10.0,
    seed: int = 0,
    mask_path: str | Path | None = None,
    block: int = 1024,
    compress: str | None = "deflate",
    tiled: bool = True,
    spec: SceneSpec | None = None,
) -> Path:
    """Write a 6-band uint16 ESW-style GeoTIFF (and optionally its uint8 mask) block by block.

    Memory is O(block^2): a 10980 x 10980 scene is written without holding it in memory.

    Parameters
    ----------
    path : output ``.tif``.
    size : int or (height, width) in pixels.
    crs, origin, res : georeferencing; ``origin`` is the (x, y) of the upper-left corner.
    mask_path : if given, the water mask (1 band uint8 {0,1}, same grid) is written there.
    block : render/write window in pixels (a multiple of 16 when ``tiled``).
    spec : scene description; drawn with :func:`make_spec` from ``seed`` when omitted.

    Returns
    -------
    Path of the scene file.
    """
    height, width = _as_hw(size)
    spec = spec or make_spec(height, width, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    transform = Affine(res, 0.0, origin[0], 0.0, -res, origin[1])
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "crs": rasterio.crs.CRS.from_user_input(crs),
        "transform": transform,
    }
    if compress:
        profile["compress"] = compress
    if tiled and height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    mdst = None
    with rasterio.open(path, "w", count=6, dtype="uint16", interleave="pixel", **profile) as dst:
        dst.descriptions = BANDS
        if mask_path is not None:
            Path(mask_path).parent.mkdir(parents=True, exist_ok=True)
            mdst = rasterio.open(mask_path, "w", count=1, dtype="uint8", **profile)
        try:
            for r, c, h, w in _windows(height, width, block):
                image, mask = render_window(spec, r, c, h, w)
                window = rasterio.windows.Window(c, r, w, h)
                dst.write(image, window=window)
                if mdst is not None:
                    mdst.write(mask[None], window=window)
        finally:
            if mdst is not None:
                mdst.close()
    return path


def write_sentinel2_scene(
    directory: str | Path,
    size: int | tuple[int, int] = 512,
    *,
    tile: str = "T23KPQ",
    datetime: str = "20230815T130251",
    crs: str | int = "EPSG:32723",
    origin: tuple[float, float] = (680_000.0, 7_470_000.0),
    seed: int = 0,
    layout: str = "flat",
    mask_path: str | Path | None = None,
    block: int = 1024,
    compress: str | None = "deflate",
) -> Path:
    """Write one Sentinel-2 L2A-like scene as per-band files named for torchgeo's ``Sentinel2``.

    B02, B03, B04, B08 at 10 m (``size``); B11, B12 at 20 m (2x2 mean of the 10 m rendering,
    ``ceil(size / 2)``). Default site: Rio de Janeiro, UTM 23S (EPSG:32723), tile T23KPQ.

    Parameters
    ----------
    directory : output folder (created).
    layout : ``"flat"`` -> ``<dir>/T23KPQ_20230815T130251_B02.tif`` for every band (matches
        ``Sentinel2(res=10)``); ``"safe"`` -> ``<dir>/R10m/T23KPQ_..._B02_10m.tif`` and
        ``<dir>/R20m/T23KPQ_..._B11_20m.tif`` (L2A product layout, which ``Sentinel2``'s
        ``_update_filepath`` also resolves).
    mask_path : optional 10 m uint8 water mask (ground truth of the rendering).

    Returns
    -------
    The folder.
    """
    if layout not in {"flat", "safe"}:
        raise ValueError(f"write_sentinel2_scene: layout must be 'flat' or 'safe', got {layout!r}")
    if block % 2:
        raise ValueError("write_sentinel2_scene: block must be even")
    height, width = _as_hw(size)
    spec = make_spec(height, width, seed)
    directory = Path(directory)
    h20, w20 = (height + 1) // 2, (width + 1) // 2
    crs_obj = rasterio.crs.CRS.from_user_input(crs)

    def _target(band: str, res_m: int) -> Path:
        if layout == "flat":
            return directory / f"{tile}_{datetime}_{band}.tif"
        return directory / f"R{res_m}m" / f"{tile}_{datetime}_{band}_{res_m}m.tif"

    outs = {}
    try:
        for i, band in enumerate(BANDS):
            res_m = 20 if band in ("B11", "B12") else 10
            h, w = (h20, w20) if res_m == 20 else (height, width)
            target = _target(band, res_m)
            target.parent.mkdir(parents=True, exist_ok=True)
            prof = {
                "driver": "GTiff",
                "width": w,
                "height": h,
                "count": 1,
                "dtype": "uint16",
                "crs": crs_obj,
                "transform": Affine(res_m, 0.0, origin[0], 0.0, -res_m, origin[1]),
            }
            if compress:
                prof["compress"] = compress
            if h >= 256 and w >= 256:
                prof.update(tiled=True, blockxsize=256, blockysize=256)
            outs[i] = rasterio.open(target, "w", **prof)
        mdst = None
        if mask_path is not None:
            Path(mask_path).parent.mkdir(parents=True, exist_ok=True)
            mdst = rasterio.open(
                mask_path,
                "w",
                driver="GTiff",
                width=width,
                height=height,
                count=1,
                dtype="uint8",
                crs=crs_obj,
                transform=Affine(10.0, 0.0, origin[0], 0.0, -10.0, origin[1]),
            )
        for r, c, h, w in _windows(height, width, block):
            image, mask = render_window(spec, r, c, h, w)
            win10 = rasterio.windows.Window(c, r, w, h)
            for i in range(4):
                outs[i].write(image[i][None], window=win10)
            hp, wp = h + (h % 2), w + (w % 2)
            padded = np.pad(
                image[4:].astype(np.float32), ((0, 0), (0, hp - h), (0, wp - w)), mode="edge"
            )
            coarse = padded.reshape(2, hp // 2, 2, wp // 2, 2).mean(axis=(2, 4))
            win20 = rasterio.windows.Window(c // 2, r // 2, wp // 2, hp // 2)
            for j, i in enumerate((4, 5)):
                outs[i].write(np.rint(coarse[j])[None].astype(np.uint16), window=win20)
            if mdst is not None:
                mdst.write(mask[None], window=win10)
        if mdst is not None:
            mdst.close()
    finally:
        for dst in outs.values():
            dst.close()
    return directory


def scene_name(sat: str, date: str, baseline: str, orbit: str, sub: int) -> str:
    """ESW scene file name, e.g. ``S2A_L2A_20190125_N0211_R034_6Bands_S1.tif``."""
    return f"{sat}_L2A_{date}_{baseline}_{orbit}_6Bands_S{sub}.tif"


def truth_name(sat: str, date: str, baseline: str, orbit: str, sub: int) -> str:
    """ESW truth file name, e.g. ``S2A_L2A_20190125_N0211_R034_S1_Truth.tif``."""
    return f"{sat}_L2A_{date}_{baseline}_{orbit}_S{sub}_Truth.tif"


def _site(sites: list[tuple], i: int) -> tuple:
    sat, date, base, orbit, sub, epsg, x0, y0 = sites[i % len(sites)]
    rep = i // len(sites)
    # Repeats: a new sub-scene id and a shifted origin so scenes never overlap.
    return sat, date, base, orbit, sub + 4 * rep, epsg, x0 + rep * 20_000.0, y0


def generate(
    root: str | Path,
    n_train: int = 3,
    n_val: int = 2,
    size: int | tuple[int, int] | list[int] = (256, 320),
    seed: int = 0,
) -> Path:
    """Write a small ESW dataset under ``<root>/dset-s2``.

    Parameters
    ----------
    root : folder that will contain ``dset-s2`` (created; must not hold a ``dset-s2`` already).
    n_train, n_val : number of scenes per split; sites cycle through several UTM zones (train:
        33N, 50S, 29N, ...; val: 22N, 36S, ...), so >= 2 scenes span >= 2 zones incl. the south.
    size : (min, max) side length in pixels (or one side); each scene's height and width are drawn
        in it. Warping to EPSG:3395 never shrinks a scene, so ``min`` >= the chip size suffices.
    seed : master seed (scenes differ, output is reproducible).

    Returns
    -------
    ``root``.

    Raises
    ------
    OutputError if ``root/dset-s2`` exists (never overwritten: it may be real data).
    """
    root = Path(root)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"generate: need n_train >= 1 and n_val >= 1, got {n_train}, {n_val}")
    lo, hi = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if not 16 <= lo <= hi:
        raise ValueError(f"generate: size must be (min, max) with 16 <= min <= max, got {size}")
    dset = root / "dset-s2"
    if dset.exists():
        raise OutputError(
            f"{dset} exists; the synthetic generator never overwrites a dataset (it may be real "
            "data). Generate into a new folder."
        )
    rng = np.random.default_rng(seed)
    for split, sites, n in (("tra", _TRAIN_SITES, n_train), ("val", _VAL_SITES, n_val)):
        for i in range(n):
            sat, date, base, orbit, sub, epsg, x0, y0 = _site(sites, i)
            h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            scene_seed = int(rng.integers(0, 2**31 - 1))
            spec = make_spec(h, w, scene_seed, coast=(i % 2 == 0) if split == "tra" else None)
            write_scene_geotiff(
                dset / f"{split}_scene" / scene_name(sat, date, base, orbit, sub),
                (h, w),
                crs=f"EPSG:{epsg}",
                origin=(x0, y0),
                seed=scene_seed,
                mask_path=dset / f"{split}_truth" / truth_name(sat, date, base, orbit, sub),
                spec=spec,
            )
    return root
