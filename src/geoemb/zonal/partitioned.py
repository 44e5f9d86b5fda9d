"""Zonal statistics over a *partitioned* polygon layer, read lazily with dask-geopandas.

A directory of GeoParquet parts (e.g. written by ``dask_geopandas.to_parquet``) or of GeoPackage
parts is one polygon layer: rows are numbered across the parts in natural file-name order
(``part.2`` before ``part.10``), files and folders starting with ``_`` or ``.`` are not parts.

1. Every part's *schema* is read from its header only (GeoParquet ``geo`` metadata / OGR layer
   info) and compared with the first part's: the same attribute columns and types, the same
   geometry column, Polygon/MultiPolygon geometry types, the same CRS. A difference is one
   :class:`~geoemb.errors.InputError` naming the part file and the field — before any raster
   work or any polygon is read.
2. The layer is read lazily (``dask_geopandas.read_parquet`` / ``read_file``, one partition per
   part), numbered, and partitioned spatially along the Hilbert curve (dask-geopandas'
   ``hilbert_distance`` + ``set_index``, as its ``spatial_shuffle`` does, but keeping null/empty
   geometries), so each task holds nearby polygons and reads only the windows of its own tiles.
3. Each spatial partition runs the single-layer pipeline (:func:`geoemb.zonal.stats.zonal_stats`
   in-process); a polygon's result does not depend on the other polygons of its partition, so
   the rows, put back in input order, equal the single-process run on the parts concatenated.
   The run description (``attrs["zonal"]``) is merged: filter counts and empty rows summed, tiles
   used united.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geoemb.errors import InputError
from geoemb.utils.dask import dask_client, parse_dask_spec
from geoemb.zonal.checks import ZonalWarning, check_output, warn
from geoemb.zonal.distributed import DaskPartitionError

__all__ = ["PartSchema", "check_parts", "is_partitioned", "list_parts", "zonal_stats_partitioned"]

#: Suffixes of the part files of a partitioned layer.
PART_SUFFIXES = {".parquet": "parquet", ".geoparquet": "parquet", ".gpkg": "gpkg"}
#: Column holding the global row number while the layer is shuffled (refused in inputs).
ROW = "__geoemb_row__"
_POLYGONAL = ("Polygon", "MultiPolygon")


def is_partitioned(path: Any) -> bool:
    """Whether ``path`` names a partitioned layer (a directory)."""
    return Path(path).is_dir()


def _natural(rel: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", rel.as_posix())]


def list_parts(root: Path) -> list[Path]:
    """The part files of the layer directory ``root``, in natural name order (one format)."""
    root = Path(root)
    files = [
        f
        for f in root.rglob("*")
        if f.is_file()
        and f.suffix.lower() in PART_SUFFIXES
        and not any(p.startswith(("_", ".")) for p in f.relative_to(root).parts)
    ]
    if not files:
        raise InputError(
            f"polygon layer {root} is a directory without parts; expected GeoParquet (*.parquet) "
            "or GeoPackage (*.gpkg) part files"
        )
    files.sort(key=lambda f: _natural(f.relative_to(root)))
    kinds = [PART_SUFFIXES[f.suffix.lower()] for f in files]
    for f, k in zip(files, kinds, strict=True):
        if k != kinds[0]:
            raise InputError(
                f"polygon part {f}: a {k} part among {kinds[0]} parts ({files[0]}); expected "
                "one format for all parts of a layer"
            )
    return files


@dataclasses.dataclass(frozen=True)
class PartSchema:
    """What a part's header says: attribute columns -> type, geometry column, its geometry types
    (empty: not declared), CRS (None: none), the row count and the bounds (None: not stored)."""

    path: Path
    columns: dict[str, str]
    geometry: str
    geom_types: tuple[str, ...]
    crs: pyproj.CRS | None
    rows: int
    bbox: tuple[float, ...] | None = None


def _parquet_schema(f: Path) -> PartSchema:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(f)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise InputError(f"cannot read polygon part {f}: {type(e).__name__}: {e}; expected a "
                         "complete GeoParquet file (truncated or damaged?)") from e  # fmt: skip
    schema = meta.schema.to_arrow_schema()
    kv = schema.metadata or {}
    if b"geo" not in kv:
        raise InputError(f"polygon part {f}: no GeoParquet 'geo' metadata; expected a GeoParquet "
                         "part (written by geopandas / dask-geopandas)")  # fmt: skip
    geo = json.loads(kv[b"geo"])
    geom = geo.get("primary_column", "geometry")
    col = geo.get("columns", {}).get(geom, {})
    crs_j = col.get("crs", "OGC:CRS84")  # GeoParquet: an absent crs means OGC:CRS84
    crs = None if crs_j is None else pyproj.CRS.from_user_input(crs_j)
    index_cols = set()
    if b"pandas" in kv:
        index_cols = {c for c in json.loads(kv[b"pandas"]).get("index_columns", [])
                      if isinstance(c, str)}  # fmt: skip
    cols = {
        fld.name: str(fld.type).replace("large_", "")  # one type, two offset widths
        for fld in schema
        if fld.name != geom and fld.name not in index_cols and fld.name != "__null_dask_index__"
    }
    bbox = col.get("bbox")
    bbox = tuple(float(v) for v in bbox) if bbox is not None and len(bbox) == 4 else None
    types = tuple(col.get("geometry_types", ()))
    return PartSchema(f, cols, geom, types, crs, meta.num_rows, bbox)


def _gpkg_schema(f: Path, layer: str | None) -> PartSchema:
    import pyogrio

    try:
        info = pyogrio.read_info(f, layer=layer)
    except Exception as e:
        raise InputError(f"cannot read polygon part {f}: {type(e).__name__}: {e}; expected a "
                         "complete GeoPackage (truncated or damaged?)") from e  # fmt: skip
    cols = dict(zip(info["fields"].tolist(), info["dtypes"].tolist(), strict=True))
    gt = info["geometry_type"] or ""
    types = () if gt in ("", "Unknown", "Geometry") else (gt.removeprefix("3D ").strip(),)
    crs = None if info["crs"] is None else pyproj.CRS.from_user_input(info["crs"])
    tb = info.get("total_bounds")
    bbox = tuple(float(v) for v in tb) if tb is not None else None
    return PartSchema(f, cols, "geometry", types, crs, int(info["features"]), bbox)


def check_parts(files: list[Path], layer: str | None = None) -> list[PartSchema]:
    """Read every part's header and check it against the first part's.

    Raises
    ------
    InputError
        Naming the part file and the field that differs (a column missing, extra or of another
        type; another geometry column; a non-polygon geometry type; another or no CRS).
    """
    kind = PART_SUFFIXES[files[0].suffix.lower()]
    schemas = [_parquet_schema(f) if kind == "parquet" else _gpkg_schema(f, layer) for f in files]
    ref = schemas[0]
    for s in schemas:
        if ROW in s.columns:
            raise InputError(f"polygon part {s.path}: column {ROW!r} is reserved; rename it")
        bad = [t for t in s.geom_types if t.removesuffix(" Z").removesuffix("Z").strip()
               not in _POLYGONAL]  # fmt: skip
        if bad:
            raise InputError(f"polygon part {s.path}: geometry column {s.geometry!r} holds {bad}; "
                             "expected Polygon/MultiPolygon geometries")  # fmt: skip
        if s.crs is None:
            raise InputError(f"polygon part {s.path}: geometry column {s.geometry!r} has no CRS; "
                             "expected a georeferenced layer")  # fmt: skip
        if s is ref:
            continue
        for c in ref.columns:
            if c not in s.columns:
                raise InputError(f"polygon part {s.path}: no column {c!r} (part {ref.path} has "
                                 "it); expected the same columns in every part")  # fmt: skip
            if s.columns[c] != ref.columns[c]:
                raise InputError(f"polygon part {s.path}: column {c!r} is {s.columns[c]}, but "
                                 f"{ref.columns[c]} in part {ref.path}")  # fmt: skip
        extra = [c for c in s.columns if c not in ref.columns]
        if extra:
            raise InputError(f"polygon part {s.path}: column {extra[0]!r} is not in part "
                             f"{ref.path}; expected the same columns in every part")  # fmt: skip
        if s.geometry != ref.geometry:
            raise InputError(f"polygon part {s.path}: geometry column {s.geometry!r}, but "
                             f"{ref.geometry!r} in part {ref.path}")  # fmt: skip
        if s.crs != ref.crs:
            raise InputError(f"polygon part {s.path}: geometry column {s.geometry!r} has CRS "
                             f"{s.crs.to_string()}, but {ref.crs.to_string()} in part "
                             f"{ref.path}; expected one CRS for all parts")  # fmt: skip
    return schemas


def _number_rows(df: gpd.GeoDataFrame, offsets: np.ndarray, partition_info: Any = None) -> Any:
    k = 0 if partition_info is None else partition_info["number"]
    df = df.reset_index(drop=True)
    df[ROW] = np.arange(len(df), dtype=np.int64) + (int(offsets[k]) if len(offsets) else 0)
    return df


def read_layer(files: list[Path], schemas: list[PartSchema], layer: str | None,
               partitions: int) -> Any:  # fmt: skip
    """The layer as a lazy dask-geopandas frame with global row numbers in :data:`ROW`,
    shuffled spatially into ``partitions`` partitions."""
    import dask

    with dask.config.set({"dataframe.convert-string": False}):  # pandas' own dtypes, as the
        return _read_layer(files, schemas, layer, partitions)  # single-process read has


def _read_layer(files: list[Path], schemas: list[PartSchema], layer: str | None,
                partitions: int) -> Any:  # fmt: skip
    import dask.dataframe as dd
    import dask_geopandas

    if PART_SUFFIXES[files[0].suffix.lower()] == "parquet":
        ddf = dask_geopandas.read_parquet([str(f) for f in files], split_row_groups=False)
    else:
        kw = {} if layer is None else {"layer": layer}
        ddf = dd.concat([dask_geopandas.read_file(str(f), npartitions=1, **kw) for f in files])
    rows = np.asarray([s.rows for s in schemas], dtype=np.int64)
    if ddf.npartitions == len(files):
        counts = rows
    else:  # the reader split a part: count each partition's rows (one pass)
        counts = np.asarray(ddf.map_partitions(len).compute(), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ddf = ddf.map_partitions(_number_rows, offsets)
    boxes = [s.bbox for s in schemas if s.rows]
    if boxes and all(b is not None for b in boxes):  # from the part headers: no pass over rows
        b = np.asarray(boxes, dtype=np.float64)
        bounds = np.r_[b[:, :2].min(axis=0), b[:, 2:].max(axis=0)]
    else:
        bounds = np.asarray(ddf.geometry.total_bounds.compute(), dtype=np.float64)
    if not np.isfinite(bounds).all():  # no geometry at all: nothing to order
        return ddf
    # dask-geopandas' spatial_shuffle refuses null/empty geometries (which get no pixels but keep
    # their row): order them at the curve's start, by a stand-in point used for the key only.
    # The split points come from one pass over the keys (no sampling pass), and the shuffle is
    # the in-memory task shuffle (partd's on-disk one spent most of its time re-encoding shapes)
    stand_in = shapely.Point(bounds[0], bounds[1])
    key = ddf.geometry.map_partitions(_filled, stand_in).hilbert_distance(total_bounds=bounds)
    keys = np.sort(np.asarray(key.compute()))
    if not len(keys):
        return ddf
    at = np.linspace(0, len(keys) - 1, max(1, partitions) + 1).round().astype(np.int64)
    divisions = np.unique(keys[at]).tolist()
    if len(divisions) == 1:
        divisions = divisions * 2
    return ddf.set_index(key, divisions=divisions, shuffle_method="tasks")


def _filled(geoms: gpd.GeoSeries, stand_in: Any) -> gpd.GeoSeries:
    bad = geoms.isna().to_numpy() | geoms.is_empty.to_numpy()
    return geoms.where(~bad, stand_in) if bad.any() else geoms


_PER_PART = ("no polygon of <GeoDataFrame>", "polygons <GeoDataFrame>: no polygon left")


def _task(part: gpd.GeoDataFrame, root: Path, rasters: Any, filters: Any, pooling: Any,
          state: Any, prefix: str) -> tuple[gpd.GeoDataFrame, set[str], list[str]] | None:  # fmt: skip
    """One spatial partition through the single-layer pipeline; rows indexed by global row."""
    from geoemb.zonal.stats import _zonal_stats

    if not len(part):
        return None
    part = part.sort_values(ROW, kind="stable").reset_index(drop=True)
    used: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ZonalWarning)
        try:
            out = _zonal_stats(part, rasters, filters, pooling, state, None, None, prefix, None,
                               used)  # fmt: skip
        except InputError as e:  # name the layer's rows, not the partition's
            rows = part[ROW].to_numpy()
            msg = re.sub(r"rows \[([\d, ]+)\]", lambda m: "rows " + str(
                [int(rows[int(i)]) for i in m.group(1).split(",")]), str(e))  # fmt: skip
            raise InputError(msg.replace("<GeoDataFrame>", f"{root} (layer rows)")) from e
    info = out.attrs["zonal"]
    out = out.set_index(ROW)
    out.index.name = None
    out.attrs["zonal"] = info
    return out, used, [str(w.message) for w in caught if issubclass(w.category, ZonalWarning)]


def _merge_info(infos: list[dict[str, Any]], used: set[str]) -> dict[str, Any]:
    info = dict(infos[0])
    filters: dict[str, int] = {}
    for i in infos:
        for k, v in i["filters"].items():
            filters[k] = filters.get(k, 0) + int(v)
    info["filters"] = filters
    info["n_tiles_used"] = len(used)
    info["n_empty"] = sum(int(i["n_empty"]) for i in infos)
    info["data_source"] = "synthetic" if any(i["data_source"] == "synthetic" for i in infos) \
        else infos[0]["data_source"]  # fmt: skip
    return info


def _compute(tasks: list[Any], dask: Any, root: Path) -> list[Any]:
    import dask as dk

    if not hasattr(dask, "submit") and parse_dask_spec(dask).kind == "none":
        return list(dk.compute(*tasks, scheduler="synchronous"))
    from distributed.scheduler import KilledWorker

    try:
        if hasattr(dask, "submit"):
            return dask.gather(dask.compute(tasks))
        with dask_client(dask) as client:
            return client.gather(client.compute(tasks))
    except KilledWorker as e:
        raise DaskPartitionError(
            f"a spatial partition of the polygon layer {root}: the Dask workers running it died "
            f"too often ({e}); nothing was written. Check the workers' memory and rerun"
        ) from e


def zonal_stats_partitioned(
    root: Any, rasters: Any, filters: Any, pooling: Any, *, state: Any = None,
    layer: str | None = None, output: Any = None, feature_prefix: str = "emb_", dask: Any = None,
) -> gpd.GeoDataFrame:  # fmt: skip
    """:func:`geoemb.zonal.zonal_stats` on the partitioned layer ``root`` (see the module doc).

    ``dask``: ``None`` runs the spatial partitions in this process (one after the other, each
    with ``pooling.num_workers`` threads), a spec or a ``distributed.Client`` one task each.
    """
    from dask import config as dask_config
    from dask import delayed

    from geoemb.zonal.output import PARQUET_SUFFIXES, write_geoparquet
    from geoemb.zonal.stats import _build_catalog

    root = Path(root)
    if not hasattr(dask, "submit"):
        parse_dask_spec(dask)  # a bad spec fails before any work
    files = list_parts(root)
    if output is not None:
        check_output(output, [root, *files, rasters.tile_index], suffixes=PARQUET_SUFFIXES)
    schemas = check_parts(files, layer)
    _build_catalog(rasters)  # bad tiles / tile index fail here, once, before the tasks
    total = sum(s.rows for s in schemas)
    ddf = read_layer(files, schemas, layer, math.ceil(total / max(1, int(pooling.chunk_size))))
    quiet = dataclasses.replace(pooling, progress=False)
    if hasattr(dask, "submit") or parse_dask_spec(dask).kind != "none":
        quiet = dataclasses.replace(quiet, num_workers=1)  # a Dask worker runs one task a thread
    tasks = [delayed(_task)(p, root, rasters, filters, quiet, state, feature_prefix)
             for p in ddf.to_delayed()]  # fmt: skip
    with dask_config.set({"dataframe.convert-string": False}):
        results = [r for r in _compute(tasks, dask, root) if r is not None]
    if not results:  # no rows at all: the single-layer run on the empty layer gives the schema
        from geoemb.zonal.stats import _zonal_stats

        empty = ddf._meta.drop(columns=[ROW]).iloc[:0]
        results = [(_zonal_stats(empty, rasters, filters, quiet, state, None, None,
                                 feature_prefix, None), set(), [])]  # fmt: skip
    frames = [r[0] for r in results]
    used = set().union(*(r[1] for r in results))
    info = _merge_info([f.attrs["zonal"] for f in frames], used)
    out = pd.concat(frames).sort_index()
    out = gpd.GeoDataFrame(out, geometry=frames[0].geometry.name, crs=frames[0].crs)
    out.attrs["zonal"] = info
    messages = [m for r in results for m in r[2]]
    per_part = {p: sum(m.startswith(p) for m in messages) for p in _PER_PART}
    for m in dict.fromkeys(messages):
        if not m.startswith(_PER_PART):
            warn(m.replace("<GeoDataFrame>", str(root)))
    if total and not info["filters"].get("kept", 1):
        warn(f"polygons {root}: no polygon left after the filters {info['filters']}")
    elif total and per_part[_PER_PART[0]] == len(results):
        warn(f"no polygon of {root} has a valid pixel in (or intersects) any tile: all rows NaN")
    if output is not None:
        write_geoparquet(out, output)
    return out
