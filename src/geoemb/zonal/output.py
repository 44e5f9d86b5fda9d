"""Output of the zonal pipeline: the features GeoParquet 1.1 (written atomically) and its reader."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pyarrow.parquet as pq

from geoemb.errors import InputError
from geoemb.utils.io import atomic_path
from geoemb.zonal.checks import PathLike, check_output
from geoemb.zonal.sources import read_vector

#: Default prefix of feature columns (used to find them again in a features file).
FEATURE_PREFIX = "emb_"
#: Key of the JSON blob stored in the GeoParquet schema metadata.
META_KEY = b"geoemb.zonal"
#: Suffixes accepted for the features file.
PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")


def write_geoparquet(gdf: gpd.GeoDataFrame, path: PathLike) -> Path:
    """Write ``gdf`` as GeoParquet 1.1 (with a covering ``bbox`` column) atomically.

    ``path`` is checked first (:func:`geoemb.zonal.checks.check_output`: not a directory, a
    ``.parquet`` name, a writable folder); an interrupted write leaves no file under ``path``.

    The run description in ``gdf.attrs["zonal"]`` (method, feature columns, filters) is stored as
    JSON under the ``geoemb.zonal`` key of the Parquet schema metadata.
    """
    path = check_output(path, suffixes=PARQUET_SUFFIXES, what="features output")
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, index=False)
        info = gdf.attrs.get("zonal")
        if info:
            table = pq.read_table(tmp)
            meta = dict(table.schema.metadata or {})
            meta[META_KEY] = json.dumps(info).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
    return path


def read_features(
    path: PathLike | gpd.GeoDataFrame, prefix: str = FEATURE_PREFIX
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read a features GeoParquet (or take a GeoDataFrame) and return it with its feature columns."""
    if isinstance(path, gpd.GeoDataFrame):
        gdf = path
        info = gdf.attrs.get("zonal", {})
    else:
        gdf = read_vector(path, "features file")
        meta = pq.read_schema(path).metadata or {}
        info = json.loads(meta[META_KEY]) if META_KEY in meta else {}
        gdf.attrs["zonal"] = info
    cols = info.get("feature_columns") or [c for c in gdf.columns if str(c).startswith(prefix)]
    missing = [c for c in cols if c not in gdf.columns]
    if not cols or missing:
        raise InputError(
            f"features {path if not isinstance(path, gpd.GeoDataFrame) else '<GeoDataFrame>'}: "
            f"expected feature columns starting with {prefix!r}"
            + (f", missing {missing[:5]}" if missing else "")
        )
    return gdf, cols
