"""AEF (AlphaEarth Foundations / Google Satellite Embedding V1 annual) in its published layout.

Facts used here, and where they come from:

- Google's bucket README ("AlphaEarth Foundations GCS data",
  developers.google.com/earth-engine/guides/aef_on_gcs_readme): ``<year>/<zone><N|S>/`` folders
  (120 per year); COGs of 8192 × 8192 px, 64 channels named ``A00``..``A63`` (also in the COGs);
  int8 values, ``-128`` = masked in every channel, NoData = -128; overviews 4096², 2048², … 1 × 1,
  each pixel the mean of the full-resolution pixels below it re-normalised to unit length;
  de-quantisation ``(v / 127.5) ** 2 * sign(v)``; file names ``<ee image id>-<y offset>-<x
  offset>.tiff`` (offsets 0 or 8192 inside a 16384² Earth Engine image); an index in GeoParquet /
  GeoPackage / CSV with the WGS84 footprint (densified along the UTM edges, clipped to the zone's
  longitudes), ``crs``, ``year``, ``utm_zone``, ``utm_*`` and ``wgs84_*`` bounds.
- The Source Cooperative mirror (source.coop/tge-labs/aef): the same layout under
  ``s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/`` (HTTPS:
  ``https://data.source.coop/tge-labs/aef/v1/annual/``); its COGs are *bottom-up* (origin at the
  bottom-left, positive y pixel size) with a ``.vrt`` beside each file to flip them.
- aef-loader (``AEFIndex`` reads ``path``, ``year``, ``crs``, ``utm_zone``, ``utm_*``, ``wgs84_*``,
  ``fid``) and rasteret's AEF how-to (index geometry column ``geom``, ``fid``, hrefs in ``path``;
  the COGs use a ModelTransformationTag, planar-separate bands, south-up on the mirror).

The writer emits real-size sparse COGs (:mod:`geoemb.sources.cog`): only the blocks that hold
data are stored, the overviews follow the product's re-normalised-mean rule. Compression is
DEFLATE (third-party notes say the product uses ZSTD tiles of 1024 px; no zstd codec here).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoemb.sources.cog import Level, write_cog
from geoemb.utils.io import atomic_path
from geoemb.zonal.decodes import decode_values
from geoemb.zonal.footprints import tile_footprint
from geoemb.zonal.sources import DATA_SOURCE_TAG, TileMeta

__all__ = [
    "AEF_BANDS",
    "AEF_NODATA",
    "AEF_SIZE",
    "HREF_REWRITE",
    "aef_filename",
    "overview_levels",
    "quantize",
    "utm_zone_name",
    "write_aef_cog",
    "write_aef_index",
    "write_stac_index",
]

AEF_BANDS = tuple(f"A{i:02d}" for i in range(64))
AEF_NODATA = -128
AEF_SIZE = 8192
AEF_TILE = 1024
AEF_RES = 10.0
SOURCE_COOP_S3 = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/"
SOURCE_COOP_HTTPS = "https://data.source.coop/tge-labs/aef/v1/annual/"
GCS_BUCKET = "gs://alphaearth_foundations/satellite_embedding/v1/annual/"
#: Default href rewrites: the public mirror's S3 bucket is also served over plain HTTPS.
HREF_REWRITE = {SOURCE_COOP_S3: SOURCE_COOP_HTTPS}


def quantize(x: np.ndarray) -> np.ndarray:
    """Unit-length float embeddings (any shape) -> AEF int8 codes; NaN -> -128 (no data).

    The inverse of ``aef_power``: ``q = round(sign(x) * sqrt(|x|) * 127.5)`` clipped to ±127.
    """
    x = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    x = np.where(bad, 0.0, x)
    q = np.clip(np.round(np.sign(x) * np.sqrt(np.abs(x)) * 127.5), -127, 127).astype(np.int8)
    q[bad] = AEF_NODATA
    return q


def utm_zone_name(epsg: int) -> str:
    """``EPSG:32610`` -> ``10N``, ``EPSG:32733`` -> ``33S`` (the year folder's sub-folders)."""
    if 32601 <= epsg <= 32660:
        return f"{epsg - 32600}N"
    if 32701 <= epsg <= 32760:
        return f"{epsg - 32700}S"
    raise ValueError(f"EPSG:{epsg} is not a WGS 84 / UTM zone (326xx/327xx)")


def aef_filename(image_id: str, y_offset: int = 0, x_offset: int = 0) -> str:
    """``<image id>-<y offset:010d>-<x offset:010d>.tiff`` (README's file-name convention)."""
    return f"{image_id}-{y_offset:010d}-{x_offset:010d}.tiff"


def image_id(*parts: object) -> str:
    """A deterministic 17-character lower-case id in the style of Earth Engine image names."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "x" + "".join(alphabet[b % 36] for b in digest[:16])


#: A partial level: (row, col) of its top-left pixel, sums (D, h, w) and counts (h, w).
_Part = tuple[int, int, np.ndarray, np.ndarray]


def _halve(part: _Part) -> _Part:
    """2 × 2 sums of a partial level, padded with empty pixels to even alignment."""
    y, x, s, c = part
    top, left = y % 2, x % 2
    bottom, right = (top + s.shape[1]) % 2, (left + s.shape[2]) % 2
    if top or left or bottom or right:
        s = np.pad(s, ((0, 0), (top, bottom), (left, right)))
        c = np.pad(c, ((top, bottom), (left, right)))
    d, h, w = s.shape
    s2 = s.reshape(d, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
    c2 = c.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    return (y - top) // 2, (x - left) // 2, s2, c2


def _first_level(key: tuple[int, int], codes: np.ndarray, tile: int, rows: int = 128) -> _Part:
    """Level-1 sums of the valid pixels of one full-resolution block (bounded memory)."""
    valid = (codes != AEF_NODATA).all(axis=0)
    rr, cc = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if not len(rr):
        return (
            key[0] * tile // 2,
            key[1] * tile // 2,
            np.zeros((codes.shape[0], 0, 0)),
            np.zeros((0, 0)),
        )
    r0, r1 = rr[0] - rr[0] % 2, rr[-1] + 1 + (rr[-1] + 1) % 2
    c0, c1 = cc[0] - cc[0] % 2, cc[-1] + 1 + (cc[-1] + 1) % 2
    out_s = np.zeros((codes.shape[0], (r1 - r0) // 2, (c1 - c0) // 2), np.float32)
    out_c = np.zeros(((r1 - r0) // 2, (c1 - c0) // 2), np.int64)
    for r in range(r0, r1, rows):
        e = min(r1, r + rows)
        blk, v = codes[:, r:e, c0:c1], valid[r:e, c0:c1]
        x = np.where(v, decode_values(blk, "aef_power", "int8"), 0.0)
        _, _, s2, c2 = _halve((0, 0, x, v.astype(np.int64)))
        out_s[:, (r - r0) // 2 : (e - r0) // 2] = s2
        out_c[(r - r0) // 2 : (e - r0) // 2] = c2
    return (key[0] * tile + r0) // 2, (key[1] * tile + c0) // 2, out_s, out_c


def _finish(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(sums, axis=0)
    ok = (counts > 0) & (norm > 0)
    x = np.where(ok, sums / np.where(ok, norm, 1.0), np.nan)
    return quantize(x)


def overview_levels(
    blocks: Mapping[tuple[int, int], np.ndarray], size: int, tile: int, count: int
) -> list[Level]:
    """Full resolution + every overview down to 1 × 1, north-up, by the product's rule.

    Parameters
    ----------
    blocks : mapping
        ``(tile_row, tile_col) -> int8 codes (count, tile, tile)`` at full resolution (north-up).
    size, tile, count : int
        Raster side (a power of two), tile side, band count.

    Returns
    -------
    list of Level: each overview pixel is the mean of the valid full-resolution vectors below it
    (de-quantised with ``aef_power``), re-normalised to unit length and re-quantised; pixels with
    no valid pixel below them are -128. Work is proportional to the data, not the raster size:
    only the bounding box of the valid pixels of each block is summed, and the un-normalised
    float32 sums are carried from level to level (never re-normalised in between).
    """
    levels = [Level(size, size, tile, dict(blocks))]
    firsts: dict[int, _Part] = {}  # the same block array twice is summed once
    parts = []
    for (r, c), codes in blocks.items():
        if id(codes) not in firsts:
            firsts[id(codes)] = _first_level((0, 0), codes, tile)
        y, x, s, cnt = firsts[id(codes)]
        if cnt.size:
            parts.append((y + r * tile // 2, x + c * tile // 2, s, cnt))
    n = size // 2
    while n >= 1:
        nt = min(tile, max(16, n))
        by_tile: dict[tuple[int, int], list[_Part]] = {}
        for y, x, s, c in parts:  # split every part along the level's tile grid
            for ty in range(y // nt, (y + s.shape[1] - 1) // nt + 1):
                for tx in range(x // nt, (x + s.shape[2] - 1) // nt + 1):
                    ya, yb = max(y, ty * nt), min(y + s.shape[1], (ty + 1) * nt)
                    xa, xb = max(x, tx * nt), min(x + s.shape[2], (tx + 1) * nt)
                    piece = (ya, xa, s[:, ya - y : yb - y, xa - x : xb - x],
                             c[ya - y : yb - y, xa - x : xb - x])  # fmt: skip
                    by_tile.setdefault((ty, tx), []).append(piece)
        merged, out = [], {}
        for (ty, tx), pieces in by_tile.items():
            y0 = min(p[0] for p in pieces)
            x0 = min(p[1] for p in pieces)
            y1 = max(p[0] + p[2].shape[1] for p in pieces)
            x1 = max(p[1] + p[2].shape[2] for p in pieces)
            s = np.zeros((count, y1 - y0, x1 - x0), np.float32)
            c = np.zeros((y1 - y0, x1 - x0), np.int64)
            for py, px, ps, pc in pieces:
                s[:, py - y0 : py - y0 + ps.shape[1], px - x0 : px - x0 + ps.shape[2]] += ps
                c[py - y0 : py - y0 + pc.shape[0], px - x0 : px - x0 + pc.shape[1]] += pc
            blk = np.full((count, nt, nt), AEF_NODATA, np.int8)
            oy, ox = y0 - ty * nt, x0 - tx * nt
            blk[:, oy : oy + s.shape[1], ox : ox + s.shape[2]] = _finish(s, c)
            out[(ty, tx)] = blk
            merged.append((y0, x0, s, c))
        levels.append(Level(n, n, nt, out))
        parts = [_halve(p) for p in merged]
        n //= 2
    return levels


def _flip(level: Level) -> Level:
    """North-up level -> bottom-up file order (row 0 = south)."""
    nty, _ = level.grid
    pad = nty * level.tile - level.height  # rows of padding at the bottom of the last tile
    out = {}
    for (r, c), arr in level.blocks.items():
        full = np.full((arr.shape[0], nty * level.tile, level.tile), AEF_NODATA, arr.dtype)
        full[:, r * level.tile : (r + 1) * level.tile] = arr
        flipped = full[:, : level.height][:, ::-1]
        flipped = np.concatenate([flipped, full[:, level.height : level.height + pad]], axis=1)
        for rr in range(nty):
            part = flipped[:, rr * level.tile : (rr + 1) * level.tile]
            if (part != AEF_NODATA).any():
                out[(rr, c)] = np.ascontiguousarray(part)
    return Level(level.width, level.height, level.tile, out)


def write_aef_cog(
    path: str | os.PathLike,
    blocks: Mapping[tuple[int, int], np.ndarray],
    *,
    epsg: int,
    origin: tuple[float, float],
    size: int = AEF_SIZE,
    tile: int = AEF_TILE,
    res: float = AEF_RES,
    bottom_up: bool = False,
    tags: Mapping[str, str] | None = None,
    overviews: str = "mean",
) -> Path:
    """Write one AEF COG: ``size``² int8, nodata -128, bands ``A00``.., overviews to 1 × 1.

    Parameters
    ----------
    blocks : mapping
        ``(tile_row, tile_col) -> int8 codes (D, tile, tile)``, north-up (row 0 = north); every
        other tile is sparse (reads as -128).
    epsg : int
        UTM zone (``326xx``/``327xx``).
    origin : (x, y)
        Top-left corner (west, north) in the zone's metres.
    bottom_up : bool
        Store south-up with a positive y pixel size, as the Source Cooperative mirror does.
    tags : mapping, optional
        Extra dataset tags (e.g. ``data_source=synthetic``).
    overviews : ``mean`` or ``empty``
        ``mean``: the product's re-normalised means; ``empty``: every overview level present
        (same IFDs and header size) but sparse — for I/O tests and benchmarks, where the
        overview content does not matter and computing it costs seconds per dense tile.
    """
    count = next(iter(blocks.values())).shape[0] if blocks else len(AEF_BANDS)
    if overviews == "mean":
        levels = overview_levels(blocks, size, tile, count)
    elif overviews == "empty":
        levels = [Level(size, size, tile, dict(blocks))]
        n = size // 2
        while n >= 1:
            levels.append(Level(n, n, min(tile, max(16, n)), {}))
            n //= 2
    else:
        raise ValueError(f"overviews must be 'mean' or 'empty', got {overviews!r}")
    x0, y0 = origin
    if bottom_up:
        levels = [_flip(lv) for lv in levels]
        transform = Affine(res, 0.0, x0, 0.0, res, y0 - size * res)
    else:
        transform = Affine(res, 0.0, x0, 0.0, -res, y0)
    names = list(AEF_BANDS[:count]) if count <= len(AEF_BANDS) else None
    return write_cog(path, levels, dtype="int8", count=count, transform=transform, epsg=epsg,
                     nodata=AEF_NODATA, band_names=names, tags=tags)  # fmt: skip


def zone_footprint(epsg: int, rect: Sequence[float]) -> shapely.Geometry:
    """The index footprint: the UTM rectangle densified, transformed to WGS84 and clipped to the
    zone's longitudes (README, *Geometry processing*)."""
    minx, miny, maxx, maxy = rect
    meta = TileMeta("", CRS.from_epsg(epsg), Affine(maxx - minx, 0, minx, 0, miny - maxy, maxy),
                    1, 1, 1, "int8", None)  # fmt: skip
    fp = tile_footprint(meta, "EPSG:4326", max_segment=(maxx - minx) / 64)
    zone = int(utm_zone_name(epsg)[:-1])
    lon0 = -180.0 + 6.0 * (zone - 1)
    return shapely.intersection(fp, shapely.box(lon0, -90.0, lon0 + 6.0, 90.0))


def _index_frame(entries: Iterable[Mapping], href_base: str) -> gpd.GeoDataFrame:
    rows, geoms = [], []
    for i, e in enumerate(entries):
        epsg, rect = int(e["epsg"]), [float(v) for v in e["rect"]]
        geom = zone_footprint(epsg, rect)
        w, s, east, n = shapely.bounds(geom)
        rows.append({"fid": i + 1, "path": href_base + str(e["path"]), "year": int(e["year"]),
                     "crs": f"EPSG:{epsg}", "utm_zone": utm_zone_name(epsg),
                     "utm_west": rect[0], "utm_south": rect[1], "utm_east": rect[2],
                     "utm_north": rect[3], "wgs84_west": w, "wgs84_south": s,
                     "wgs84_east": east, "wgs84_north": n})  # fmt: skip
        geoms.append(geom)
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")


def write_aef_index(
    folder: str | os.PathLike,
    entries: Iterable[Mapping],
    forms: Sequence[str] = ("parquet", "gpkg"),
    href_base: str = "",
) -> list[Path]:
    """Write AEF's own tile index (``aef_index.parquet`` / ``.gpkg``) for ``entries``.

    Parameters
    ----------
    entries : iterable of mapping
        ``{"path": "<year>/<zone>/<name>.tiff", "year": int, "epsg": int, "rect": (W, S, E, N)}``
        (``rect`` = the raw pixel array's UTM bounds).
    forms : sequence
        ``parquet`` (GeoParquet, geometry column ``geom`` as on the mirror) and/or ``gpkg``.
    href_base : str
        Prefix of every ``path`` (``""``: relative to the index; e.g. :data:`SOURCE_COOP_S3`).
    """
    gdf = _index_frame(entries, href_base)
    out = []
    for form in forms:
        target = Path(folder) / f"aef_index.{form}"
        with atomic_path(target) as tmp:
            if form == "parquet":
                gdf.rename_geometry("geom").to_parquet(tmp, index=False)
            elif form == "gpkg":
                gdf.drop(columns="fid").to_file(tmp, driver="GPKG", layer="aef_index")
            else:
                raise ValueError(f"unknown index form {form!r}; expected parquet or gpkg")
        out.append(target)
    return out


def write_stac_index(
    path: str | os.PathLike, entries: Iterable[Mapping], href_base: str = ""
) -> Path:
    """Write the tiles as STAC items in stac-geoparquet (``id``, ``datetime``, WKB ``geometry``,
    ``bbox`` struct, ``assets.data.href``, ``proj:epsg``), the shape STAC tools and rasteret use."""
    gdf = _index_frame(entries, href_base)
    b = shapely.bounds(gdf.geometry.to_numpy())
    table = pa.table({
        "type": ["Feature"] * len(gdf),
        "stac_version": ["1.0.0"] * len(gdf),
        "id": [Path(p).stem for p in gdf.path],
        "collection": ["aef-annual"] * len(gdf),
        "datetime": pa.array([np.datetime64(f"{y}-01-01T00:00:00", "us") for y in gdf.year],
                             pa.timestamp("us", tz="UTC")),
        "proj:epsg": [int(c.split(":")[1]) for c in gdf.crs],
        "bbox": [{"xmin": r[0], "ymin": r[1], "xmax": r[2], "ymax": r[3]} for r in b],
        "assets": [{"data": {"href": p, "type": "image/tiff; application=geotiff; "
                             "profile=cloud-optimized", "roles": ["data"]}} for p in gdf.path],
        "geometry": shapely.to_wkb(gdf.geometry.to_numpy()),
    })  # fmt: skip
    geo = ('{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":'
           '{"encoding":"WKB","geometry_types":["Polygon","MultiPolygon"],"crs":null}}}')  # fmt: skip
    table = table.replace_schema_metadata({b"geo": geo.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def stand_in_tags() -> dict[str, str]:
    """Tags of every stand-in COG: it says what it is."""
    return {DATA_SOURCE_TAG: "synthetic"}
