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

The scenes themselves (spectral model, rivers/lakes/coast, haze) are drawn by the analytic renderer
in :mod:`geoemb.synthetic.water_scene`; this module is the file layout around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from geoemb.errors import OutputError
from geoemb.synthetic.water_scene import BANDS, SceneSpec, make_spec, render_window

__all__ = [
    "BANDS",
    "SceneSpec",
    "generate",
    "make_spec",
    "render_window",
    "write_scene_geotiff",
    "write_sentinel2_scene",
]

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
