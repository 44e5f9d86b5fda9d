"""Analytic renderer of the synthetic Earth Surface Water scenes (no files: arrays only).

A scene is a :class:`SceneSpec` (rivers, lakes, a coast, land texture and haze as plane waves,
all in global pixel coordinates) drawn by :func:`make_spec`; :func:`render_window` renders any
window of it, deterministically and independently of the blocking (noise is drawn per fixed
256-px tile), so the same code makes a tiny fixture and a 10980 x 10980 scene block by block.
The on-disk layout (GeoTIFFs, folder grammar) is :mod:`geoemb.synthetic.earth_surface_water`.

Spectral model (DN units): water is dark in NIR/SWIR with green > NIR (NDWI > 0) and varies between
clear and turbid; land mixes vegetation (high NIR), bare soil and urban surfaces with texture and
3 % multiplicative noise. Mixed shoreline pixels are on the land side only, so every pixel
labelled water has a water spectrum. Cloud-ish haze and saturated bright pixels (DN > 10000) are
placed on land only (documented simplification: real clouds also cover water).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BANDS", "SceneSpec", "make_spec", "render_window"]

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")

# Signatures in DN (reflectance x 10000), band order B02 B03 B04 B08 B11 B12.
_WATER_CLEAR = np.array([650.0, 620.0, 380.0, 160.0, 90.0, 70.0])
_WATER_TURBID = np.array([850.0, 1000.0, 850.0, 420.0, 160.0, 110.0])
_VEG = np.array([300.0, 600.0, 350.0, 3600.0, 1800.0, 850.0])
_SOIL = np.array([900.0, 1250.0, 1550.0, 2250.0, 2900.0, 2350.0])
_URBAN = np.array([1150.0, 1250.0, 1350.0, 1750.0, 2050.0, 1950.0])
_CLOUD = np.array([7000.0, 7200.0, 7400.0, 7800.0, 5200.0, 3800.0])


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
