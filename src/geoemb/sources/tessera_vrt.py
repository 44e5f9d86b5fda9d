"""Tessera tiles as GDAL VRT mosaics: one georeferenced raster per UTM zone, no data copied.

Each tile's UTM grid covers its 0.1° cell's bounding box, so neighbouring tiles of one zone
overlap; a pixel belongs to the tile whose cell holds its centre (geotessera's half-open
``contains_point`` rule). Per tile, a small *ownership mask* (uint8 GeoTIFF in the cache) marks
those pixels (and, with ``landmask=True``, only the land pixels of its landmask); the zone's
mosaic VRT composes the tiles through their masks (``UseMaskBand``), so every pixel is counted
once and pixels no tile owns are masked.

Decodes: ``tessera_scaled`` (int8 × per-pixel scale, float32: GDAL's ``mul`` pixel function over
a raw view of the ``.npy`` bytes, or the GeoTIFF export as is) and ``tessera_unscaled`` (the int8
codes, NPY tiles only). The ``.npy`` files are read in place through ``VRTRawRasterBand``
(offset = the npy header length, pixel stride = channels).

The VRTs live in ``cache_dir/<key>/``, ``key`` hashing the tiles (paths, sizes, mtimes), the decode
and the mask rule; a folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from pyproj import Transformer

from geoemb.errors import InputError
from geoemb.sources.tessera import TesseraTile, cell_bounds, is_synthetic, npy_header
from geoemb.zonal.sources import DATA_SOURCE_TAG

__all__ = ["DECODES", "build_mosaics"]

#: Tessera's two readings of its int8 codes.
DECODES = {
    "tessera_scaled": "int8 × per-pixel scale (geotessera's dequantize_embedding), float32",
    "tessera_unscaled": "the int8 codes without scales (EuroSAT-Embed's 'tessera' convention)",
}
_DONE = ".complete"
_VERSION = 1


def _georef(tile: TesseraTile) -> dict:
    path = tile.landmask if tile.fmt == "npy" else tile.embedding
    with rasterio.open(path) as ds:
        t = ds.transform
        if t.b or t.d or t.e >= 0:
            raise InputError(f"Tessera tile {path}: transform {tuple(t)[:6]} is not north-up")
        return {"crs": ds.crs, "transform": t, "h": ds.height, "w": ds.width,
                "count": ds.count, "dtype": ds.dtypes[0]}  # fmt: skip


def _check(tile: TesseraTile, g: dict, bands: int | None, decode: str) -> dict:
    """Header checks of one tile (before any VRT is written); returns the npy layout if any."""
    if tile.fmt == "tiff":
        if decode == "tessera_unscaled":
            raise InputError(
                f"decode='tessera_unscaled' needs the int8 codes, but {tile.embedding} is a "
                "de-quantised GeoTIFF export; download with --format npy or use tessera_scaled"
            )
        if g["dtype"] != "float32" or (bands is not None and g["count"] != bands):
            raise InputError(
                f"Tessera GeoTIFF {tile.embedding}: {g['count']} bands of {g['dtype']}; expected "
                f"{bands or 'D'} float32 bands (geotessera's --format tiff export)"
            )
        return {}
    off, shape, dtype, fortran = npy_header(tile.embedding)
    soff, sshape, sdtype, sfortran = npy_header(tile.scales)
    want = (g["h"], g["w"])
    if dtype != np.int8 or len(shape) != 3 or fortran or shape[:2] != want:
        raise InputError(
            f"Tessera array {tile.embedding}: {dtype}{shape}; expected C-ordered int8 of shape "
            f"(H, W, C) with (H, W) = {want} (its landmask {tile.landmask})"
        )
    if bands is not None and shape[2] != bands:
        raise InputError(f"Tessera array {tile.embedding}: {shape[2]} channels; expected {bands}")
    if sdtype != np.float32 or sfortran or sshape not in (want, (*want, shape[2])):
        raise InputError(
            f"Tessera scales {tile.scales}: {sdtype}{sshape}; expected C-ordered float32 of shape "
            f"{want} or {(*want, shape[2])}"
        )
    return {"off": off, "c": shape[2], "soff": soff, "sc": 1 if len(sshape) == 2 else shape[2]}


def _ownership(tile: TesseraTile, g: dict, landmask: bool) -> np.ndarray:
    """1 where the pixel centre lies in the tile's cell (half-open) [and on land], else 0."""
    t, h, w = g["transform"], g["h"], g["w"]
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = t * (cols.ravel(), rows.ravel())
    tr = Transformer.from_crs(g["crs"], "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(x, y)
    west, south, east, north = cell_bounds(tile.lon, tile.lat)
    own = (lon >= west) & (lon < east) & (lat >= south) & (lat < north)
    own = own.reshape(h, w).astype(np.uint8)
    if landmask and tile.landmask is not None:
        with rasterio.open(tile.landmask) as ds:
            own &= (ds.read(1) > 0).astype(np.uint8)
    return own


def _raw_vrt(path: Path, src: Path, off: int, h: int, w: int, c: int, n: int, typ: str) -> None:
    size = {"Int8": 1, "Float32": 4}[typ]
    bands = "".join(
        f'<VRTRasterBand dataType="{typ}" band="{k + 1}" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{escape(str(src))}</SourceFilename>'
        f"<ImageOffset>{off + k * size}</ImageOffset><PixelOffset>{c * size}</PixelOffset>"
        f"<LineOffset>{w * c * size}</LineOffset><ByteOrder>LSB</ByteOrder></VRTRasterBand>"
        for k in range(n)
    )
    path.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{bands}</VRTDataset>')


def _simple(src: str, band: int, rel: bool = True) -> str:
    return (f'<SimpleSource><SourceFilename relativeToVRT="{int(rel)}">{escape(src)}'
            f"</SourceFilename><SourceBand>{band}</SourceBand></SimpleSource>")  # fmt: skip


def _header(h: int, w: int, g: dict) -> str:
    gt = ", ".join(repr(float(v)) for v in g["transform"].to_gdal())
    return (f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{escape(g["crs"].to_wkt())}'
            f"</SRS><GeoTransform>{gt}</GeoTransform>")  # fmt: skip


def _tile_vrt(folder: Path, tile: TesseraTile, g: dict, lay: dict, decode: str, mask: str) -> str:
    """Write the tile's VRT (georeferenced, masked by its ownership mask); returns its name."""
    base = f"{tile.year}_{tile.name}"
    h, w = g["h"], g["w"]
    if tile.fmt == "tiff":
        n, typ = g["count"], "Float32"
        bands = [_simple(str(tile.embedding), k + 1, rel=False) for k in range(n)]
        body = "".join(f'<VRTRasterBand dataType="{typ}" band="{k + 1}">{b}</VRTRasterBand>'
                       for k, b in enumerate(bands))  # fmt: skip
    else:
        n = lay["c"]
        _raw_vrt(folder / f"{base}.q.vrt", tile.embedding, lay["off"], h, w, n, n, "Int8")
        if decode == "tessera_unscaled":
            body = "".join(f'<VRTRasterBand dataType="Int8" band="{k + 1}">'
                           f"{_simple(f'{base}.q.vrt', k + 1)}</VRTRasterBand>" for k in range(n))  # fmt: skip
        else:
            _raw_vrt(folder / f"{base}.s.vrt", tile.scales, lay["soff"], h, w, lay["sc"],
                     lay["sc"], "Float32")  # fmt: skip
            body = "".join(
                f'<VRTRasterBand dataType="Float32" band="{k + 1}" subClass="VRTDerivedRasterBand">'
                "<PixelFunctionType>mul</PixelFunctionType>"
                "<SourceTransferType>Float32</SourceTransferType>"
                f"{_simple(f'{base}.q.vrt', k + 1)}"
                f"{_simple(f'{base}.s.vrt', 1 if lay['sc'] == 1 else k + 1)}</VRTRasterBand>"
                for k in range(n)
            )
    m = f'<MaskBand><VRTRasterBand dataType="Byte">{_simple(mask, 1)}</VRTRasterBand></MaskBand>'
    (folder / f"{base}.vrt").write_text(_header(h, w, g) + body + m + "</VRTDataset>")
    return f"{base}.vrt"


def _mosaic(folder: Path, name: str, members: list, synthetic: bool) -> Path:
    """One zone's mosaic over its tile VRTs (same CRS, resolution and pixel grid)."""
    g0 = members[0][1]
    res_x, res_y = g0["transform"].a, g0["transform"].e
    x0 = min(g["transform"].c for _, g, _, _ in members)
    y0 = max(g["transform"].f for _, g, _, _ in members)
    x1 = max(g["transform"].c + g["w"] * res_x for _, g, _, _ in members)
    y1 = min(g["transform"].f + g["h"] * res_y for _, g, _, _ in members)
    w, h = int(round((x1 - x0) / res_x)), int(round((y1 - y0) / res_y))
    srcs, masks = [], []
    for tile, g, vrt, mask in members:
        t = g["transform"]
        if (t.a, t.e) != (res_x, res_y):
            raise InputError(f"Tessera tile {tile.embedding}: pixel size {(t.a, t.e)}; the other "
                             f"tiles of its zone have {(res_x, res_y)}")  # fmt: skip
        cx, ry = (t.c - x0) / res_x, (t.f - y0) / res_y
        if abs(cx - round(cx)) > 1e-6 or abs(ry - round(ry)) > 1e-6:
            raise InputError(
                f"Tessera tile {tile.embedding} is not on the pixel grid of the other tiles of "
                f"{g['crs'].to_string()} (offset {cx:.3f}, {ry:.3f} px); geoemb does not resample"
            )
        rect = (f'<SrcRect xOff="0" yOff="0" xSize="{g["w"]}" ySize="{g["h"]}"/>'
                f'<DstRect xOff="{round(cx)}" yOff="{round(ry)}" xSize="{g["w"]}" '
                f'ySize="{g["h"]}"/>')  # fmt: skip
        srcs.append((vrt, rect))
        masks.append(f'<ComplexSource><SourceFilename relativeToVRT="1">{mask}</SourceFilename>'
                     f"<SourceBand>1</SourceBand>{rect}<NODATA>0</NODATA></ComplexSource>")  # fmt: skip
    with rasterio.open(folder / members[0][2]) as ds:
        count, typ = ds.count, "Float32" if ds.dtypes[0] == "float32" else "Int8"
    nodata = "<NoDataValue>nan</NoDataValue>" if typ == "Float32" else ""
    bands = "".join(
        f'<VRTRasterBand dataType="{typ}" band="{k + 1}">{nodata}'
        + "".join(f'<ComplexSource><SourceFilename relativeToVRT="1">{v}</SourceFilename>'
                  f"<SourceBand>{k + 1}</SourceBand>{r}<UseMaskBand>true</UseMaskBand>"
                  "</ComplexSource>" for v, r in srcs)
        + "</VRTRasterBand>"
        for k in range(count)
    )  # fmt: skip
    meta = (f'<Metadata><MDI key="{DATA_SOURCE_TAG}">synthetic</MDI></Metadata>'
            if synthetic else "")  # fmt: skip
    head = _header(
        h, w, {"crs": g0["crs"], "transform": rasterio.Affine(res_x, 0, x0, 0, res_y, y0)}
    )
    mask = f'<MaskBand><VRTRasterBand dataType="Byte">{"".join(masks)}</VRTRasterBand></MaskBand>'
    path = folder / name
    path.write_text(head + meta + bands + mask + "</VRTDataset>")
    return path


def _key(tiles: Sequence[TesseraTile], decode: str, landmask: bool) -> str:
    items = []
    for t in tiles:
        for p in (t.embedding, t.scales, t.landmask):
            if p is not None:
                st = os.stat(p)
                items.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"v": _VERSION, "tiles": items, "decode": decode, "landmask": landmask})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_mosaics(
    tiles: Sequence[TesseraTile],
    cache_dir: str | os.PathLike,
    decode: str = "tessera_scaled",
    landmask: bool = False,
    bands: int | None = None,
) -> list[Path]:
    """Per-zone VRT mosaics of ``tiles`` (built once, content-keyed, under ``cache_dir``).

    Parameters
    ----------
    tiles : sequence of TesseraTile
        One year of one dataset version (the caller checks).
    decode : ``tessera_scaled`` or ``tessera_unscaled``
        float32 de-quantised values or the raw int8 codes.
    landmask : bool
        Also mask the pixels whose landmask is 0 (convention 1 = land: not confirmed offline).
    bands : int, optional
        Expected channel count (128 for the product).

    Returns
    -------
    One VRT path per UTM zone, sorted.

    Raises
    ------
    InputError
        A tile of the wrong shape/dtype, tiles of one zone off each other's pixel grid, an
        unscaled read of GeoTIFF exports — each naming the file and what was expected.
    """
    if decode not in DECODES:
        raise InputError(f"unknown Tessera decode {decode!r}; valid: {', '.join(DECODES)}")
    if not tiles:
        raise InputError("no Tessera tiles to read")
    geo = [_georef(t) for t in tiles]
    lays = [_check(t, g, bands, decode) for t, g in zip(tiles, geo, strict=True)]
    target = Path(cache_dir) / _key(tiles, decode, landmask)
    if (target / _DONE).is_file():
        return sorted(target.glob("mosaic_*.vrt"))
    if target.exists():  # a folder left by an older, non-atomic writer
        shutil.rmtree(target, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(parents=True)
    try:
        zones: dict[str, list] = {}
        for t, g, lay in zip(tiles, geo, lays, strict=True):
            own = _ownership(t, g, landmask)
            mask = f"{t.year}_{t.name}.own.tif"
            with rasterio.open(tmp / mask, "w", driver="GTiff", width=g["w"], height=g["h"],
                               count=1, dtype="uint8", crs=g["crs"], transform=g["transform"],
                               compress="deflate") as dst:  # fmt: skip
                dst.write(own, 1)
            vrt = _tile_vrt(tmp, t, g, lay, decode, mask)
            zones.setdefault(g["crs"].to_wkt(), []).append((t, g, vrt, mask))
        synthetic = any(is_synthetic(t) for t in tiles)
        for members in zones.values():
            epsg = members[0][1]["crs"].to_epsg() or "custom"
            _mosaic(tmp, f"mosaic_{epsg}.vrt", members, synthetic)
        (tmp / _DONE).write_text("ok\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _DONE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(target.glob("mosaic_*.vrt"))
