"""Sentinel-2 band-file names (torchgeo ``Sentinel2`` naming) and band lookup in a folder."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from geoemb.inference.checks import RasterInputError

__all__ = ["DEFAULT_S2_BANDS", "S2_FILENAME_REGEX", "find_s2_band_files"]

#: Bands of the Earth Surface Water dataset, in its order (reference/earth_surface_water.md §2).
DEFAULT_S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")

#: torchgeo ``Sentinel2.filename_regex`` (§3.5), widened to accept any ``_<res>m`` suffix and
#: restricted to raster extensions so ``.aux.xml``/``.ovr`` sidecars are never picked up.
S2_FILENAME_REGEX = re.compile(
    r"^T(?P<tile>\d{2}[A-Z]{3})_(?P<date>\d{8}T\d{6})_(?P<band>B[018][\dA])"
    r"(?:_(?P<resolution>\d+)m)?\.(?P<ext>tif|tiff|jp2|vrt)$",
    re.IGNORECASE,
)


def find_s2_band_files(folder: Path, bands: Sequence[str]) -> list[Path]:
    """Map each requested band to exactly one file in ``folder`` (torchgeo Sentinel2 naming)."""
    found: dict[str, list[tuple[re.Match[str], Path]]] = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        m = S2_FILENAME_REGEX.match(f.name)
        if m:
            found.setdefault(m["band"].upper(), []).append((m, f))
    if not found:
        raise RasterInputError(
            f"{folder} contains no Sentinel-2 band files; expected names like "
            "'T23KPQ_20230815T130251_B02_10m.tif' (torchgeo Sentinel2 naming) or pass a "
            "multi-band GeoTIFF instead"
        )
    missing = [b for b in bands if b.upper() not in found]
    if missing:
        raise RasterInputError(
            f"{folder} is missing Sentinel-2 band file(s) for {missing}; found bands "
            f"{sorted(found)} (expected names like 'T23KPQ_20230815T130251_<band>_10m.tif')"
        )
    files = []
    for b in bands:
        cands = found[b.upper()]
        if len(cands) > 1:
            # Several resolutions of one scene: prefer the finest one.
            scenes = {(m["tile"], m["date"]) for m, _ in cands}
            if len(scenes) == 1:
                cands = sorted(cands, key=lambda mf: int(mf[0]["resolution"] or 10))[:1]
        if len(cands) > 1:
            raise RasterInputError(
                f"{folder} holds several files for band {b}: {[str(f) for _, f in cands]}; "
                "put one scene (tile/date) per folder"
            )
        files.append(cands[0][1])
    return files
