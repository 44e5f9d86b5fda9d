"""GeoParquet 1.1 helpers: ``geo`` metadata, WKB geometry, bbox covering struct, validation.

Spec essentials (GeoParquet 1.1.0): file key-value metadata ``geo`` = JSON with ``version``,
``primary_column`` and ``columns.{name}`` (``encoding="WKB"``, ``geometry_types``, optional ``crs``
as PROJJSON — absent means OGC:CRS84 —, ``bbox``, ``covering.bbox`` pointing at a root-level struct
column ``bbox{xmin, ymin, xmax, ymax}`` of doubles). Geometry is WKB in a ``binary`` column with
x = longitude, y = latitude.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geoemb.utils.io import atomic_path

GEOPARQUET_VERSION = "1.1.0"
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


class GeoParquetError(ValueError):
    """A file or table does not conform to GeoParquet 1.1."""


def bbox_struct(xmin, ymin, xmax, ymax) -> pa.StructArray:
    """Root-level covering column: struct<xmin, ymin, xmax, ymax> of float64, in that order."""
    arrays = [pa.array(np.asarray(v, dtype=np.float64)) for v in (xmin, ymin, xmax, ymax)]
    return pa.StructArray.from_arrays(arrays, names=list(BBOX_FIELDS))


def points_wkb(lon, lat) -> pa.Array:
    """WKB points (x = lon, y = lat) as an Arrow ``binary`` array."""
    geoms = shapely.points(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    return pa.array(shapely.to_wkb(geoms), type=pa.binary())


def boxes_wkb(xmin, ymin, xmax, ymax) -> pa.Array:
    """WKB rectangles (counter-clockwise exterior rings) as an Arrow ``binary`` array."""
    geoms = shapely.box(*(np.asarray(v, np.float64) for v in (xmin, ymin, xmax, ymax)), ccw=True)
    return pa.array(shapely.to_wkb(geoms), type=pa.binary())


def geometry_types(wkb: pa.Array | pa.ChunkedArray) -> list[str]:
    """Sorted distinct geometry type names present in a WKB column (e.g. ``["Polygon"]``)."""
    values = wkb.to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return []
    ids = np.unique(shapely.get_type_id(shapely.from_wkb(values)))
    return sorted(_TYPE_NAMES[int(i)] for i in ids if int(i) in _TYPE_NAMES)


def geo_metadata(
    primary_column: str = "geometry",
    geometry_types_: list[str] | None = None,
    bbox: list[float] | None = None,
    crs: dict | None = None,
    covering_column: str | None = "bbox",
) -> dict[str, Any]:
    """Build the GeoParquet 1.1 ``geo`` metadata dict (CRS omitted ⇒ OGC:CRS84)."""
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": list(geometry_types_ or [])}
    if crs is not None:
        col["crs"] = crs
    if bbox is not None:
        col["bbox"] = [float(v) for v in bbox]
    if covering_column:
        col["covering"] = {"bbox": {f: [covering_column, f] for f in BBOX_FIELDS}}
    return {"version": GEOPARQUET_VERSION, "primary_column": primary_column,
            "columns": {primary_column: col}}  # fmt: skip


def with_geo_metadata(
    table: pa.Table,
    geometry_column: str = "geometry",
    bbox_column: str | None = "bbox",
    crs: dict | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> pa.Table:
    """Return ``table`` with GeoParquet 1.1 ``geo`` metadata (types and bbox computed from data).

    ``extra_metadata`` values are JSON-encoded under their keys (e.g. ``geoemb:quantization``).
    """
    if geometry_column not in table.column_names:
        raise GeoParquetError(f"table has no geometry column {geometry_column!r}")
    bbox = None
    if bbox_column and table.num_rows:
        b = table.column(bbox_column).combine_chunks()
        bbox = [
            float(np.min(b.field("xmin"))),
            float(np.min(b.field("ymin"))),
            float(np.max(b.field("xmax"))),
            float(np.max(b.field("ymax"))),
        ]
    geo = geo_metadata(geometry_column, geometry_types(table.column(geometry_column)), bbox, crs,
                       bbox_column)  # fmt: skip
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo).encode()
    for key, value in (extra_metadata or {}).items():
        meta[key.encode()] = (value if isinstance(value, str) else json.dumps(value)).encode()
    return table.replace_schema_metadata(meta)


def write_geoparquet(
    table: pa.Table,
    path: str | os.PathLike,
    geometry_column: str = "geometry",
    bbox_column: str | None = "bbox",
    crs: dict | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    compression: str = "zstd",
    row_group_size: int = 100_000,
) -> Path:
    """Atomically write ``table`` as GeoParquet 1.1 (adds ``geo`` metadata, validates first)."""
    table = with_geo_metadata(table, geometry_column, bbox_column, crs, extra_metadata)
    validate_geoparquet(table, name=str(path))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size)
    return Path(path)


def validate_geoparquet(source: str | os.PathLike | pa.Table, name: str | None = None) -> dict:
    """Check GeoParquet 1.1 conformance of a file or table; return the parsed ``geo`` dict.

    Checks: ``geo`` key present and JSON; version ``1.1.0``; primary column listed and present as
    ``binary``/``large_binary`` WKB that parses; ``geometry_types`` list consistent with the data;
    ``bbox`` (if any) has 4 numbers enclosing the data; ``covering.bbox`` references a root-level
    struct with double/float children ``xmin, ymin, xmax, ymax`` in that order; each row's geometry
    lies inside its covering bbox.

    Raises
    ------
    GeoParquetError
        Naming the file and the offending field.
    """
    if isinstance(source, pa.Table):
        table, where = source, name or "<table>"
    else:
        table, where = pq.read_table(source), str(source)

    def fail(msg: str) -> None:
        raise GeoParquetError(f"{where}: {msg}")

    meta = table.schema.metadata or {}
    if b"geo" not in meta:
        fail("missing 'geo' file metadata key")
    try:
        geo = json.loads(meta[b"geo"])
    except json.JSONDecodeError as e:
        fail(f"'geo' metadata is not valid JSON ({e})")
    for key in ("version", "primary_column", "columns"):
        if key not in geo:
            fail(f"'geo' metadata lacks required field {key!r}")
    if geo["version"] != GEOPARQUET_VERSION:
        fail(f"'geo.version' is {geo['version']!r}, expected {GEOPARQUET_VERSION!r}")
    if geo["primary_column"] not in geo["columns"]:
        fail(f"'geo.primary_column' {geo['primary_column']!r} not in 'geo.columns'")
    for cname, col in geo["columns"].items():
        if cname not in table.column_names:
            fail(f"geometry column {cname!r} listed in 'geo.columns' is missing")
        if col.get("encoding") != "WKB":
            fail(f"'geo.columns.{cname}.encoding' is {col.get('encoding')!r}, expected 'WKB'")
        ftype = table.schema.field(cname).type
        if ftype not in (pa.binary(), pa.large_binary()):
            fail(f"geometry column {cname!r} has type {ftype}, expected binary (WKB)")
        types = col.get("geometry_types")
        if not isinstance(types, list):
            fail(f"'geo.columns.{cname}.geometry_types' must be a list")
        values = table.column(cname).to_numpy(zero_copy_only=False)
        try:
            geoms = shapely.from_wkb(values)
        except Exception as e:  # noqa: BLE001 - shapely raises GEOSException
            fail(f"column {cname!r} holds invalid WKB ({e})")
        present = geometry_types(table.column(cname))
        if types and not set(present) <= {t.removesuffix(" Z") for t in types}:
            fail(
                f"'geo.columns.{cname}.geometry_types' {types} does not cover data types {present}"
            )
        if "bbox" in col:
            bb = col["bbox"]
            if len(bb) not in (4, 6):
                fail(f"'geo.columns.{cname}.bbox' must have 4 or 6 numbers")
            if len(values):
                b = shapely.total_bounds(geoms)
                tol = 1e-9
                if (
                    b[0] < bb[0] - tol
                    or b[1] < bb[1] - tol
                    or b[2] > bb[2] + tol
                    or b[3] > bb[3] + tol
                ):
                    fail(
                        f"'geo.columns.{cname}.bbox' {bb} does not enclose the data {[float(v) for v in b]}"
                    )
        cov = col.get("covering", {}).get("bbox")
        if cov is not None:
            refs = [cov.get(f) for f in BBOX_FIELDS]
            if any(r is None or len(r) != 2 for r in refs) or len({r[0] for r in refs}) != 1:
                fail(f"'geo.columns.{cname}.covering.bbox' must map xmin..ymax to [<col>, <field>]")
            bcol = refs[0][0]
            if bcol not in table.column_names:
                fail(f"covering column {bcol!r} is missing")
            btype = table.schema.field(bcol).type
            if not pa.types.is_struct(btype):
                fail(f"covering column {bcol!r} must be a root-level struct, got {btype}")
            names = [btype.field(i).name for i in range(btype.num_fields)]
            if names[:4] != list(BBOX_FIELDS) or [r[1] for r in refs] != list(BBOX_FIELDS):
                fail(
                    f"covering column {bcol!r} children must be xmin, ymin, xmax, ymax, got {names}"
                )
            for i in range(4):
                if not pa.types.is_floating(btype.field(i).type):
                    fail(f"covering field {bcol}.{names[i]} must be float/double")
            if len(values):
                s = table.column(bcol).combine_chunks()
                gb = shapely.bounds(geoms)
                cb = np.stack([np.asarray(s.field(f)) for f in BBOX_FIELDS], axis=1)
                tol = 1e-6
                inside = (gb[:, 0] >= cb[:, 0] - tol) & (gb[:, 1] >= cb[:, 1] - tol)
                inside &= (gb[:, 2] <= cb[:, 2] + tol) & (gb[:, 3] <= cb[:, 3] + tol)
                if not inside.all():
                    fail(f"{int((~inside).sum())} geometries lie outside their covering bbox")
    return geo
