"""Embedding tables: Parquet/GeoParquet files with one embedding per row (Clay, Major TOM, any).

An :class:`EmbeddingTable` reads a file, a folder of files or a Hive-partitioned tree
(``key=value/`` folders, e.g. Clay v1.5's ``geohash_l2=…/year=…/month=…/``) and yields, per row,
a stable ``id`` (int64), a WGS84 location (``lon``, ``lat``), the footprint's ``bbox`` and the
embedding ``(n, D)`` float32. What a product's rows look like is a :class:`TableProduct`
(:data:`CLAY`, :data:`MAJORTOM`, :data:`GEOPARQUET` in :mod:`geoemb.sources.table_products`).

Conventions (one rule each):

- **location**: the footprint centroid (shapely, in the geometry's CRS; footprints that cross
  the antimeridian are unwrapped first) transformed to lon/lat, or a product's lon/lat columns
  (Major TOM's ``centre_lon``/``centre_lat``);
- **id**: an integer id column as is; a string id column as the first 63 bits of its BLAKE2b
  digest (:func:`string_ids`); without an id column, ``file key << 32 | row`` where the file key
  is 31 bits of the digest of the file's Hive segments and name (:func:`file_row_ids`), so ids do
  not change when other files are added or the table is read from another folder;
- **embedding**: ``list``/``large_list``/``fixed_size_list`` of floats or Arrow's
  ``fixed_shape_tensor`` (Clay v0's ``FixedShapeTensorArray``), one width for the whole table.

Every file's footer is checked before any row is read (:meth:`EmbeddingTable.check`): a missing
embedding column, a non-float or non-list column, a geometry column without a CRS, a partition
whose schema differs from the others, or a file that is not Parquet raises one
:class:`~geoemb.errors.InputError` naming the file, the field and what was expected. Rows are
checked as they are read (ragged or null embeddings, NaN/inf, null or empty geometries).
Plain Python: no Hydra, no Lightning.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geoemb.errors import InputError
from geoemb.sources.table_rows import embeddings, file_row_ids, locate, string_ids

__all__ = [
    "SUFFIXES",
    "EmbeddingTable",
    "TableProduct",
    "TableRows",
    "file_row_ids",
    "string_ids",
]

#: File names a table folder is searched for (Clay v0 writes ``*.gpq``).
SUFFIXES = (".parquet", ".gpq", ".geoparquet", ".pq")


@dataclasses.dataclass(frozen=True)
class TableProduct:
    """What the rows of one embedding-table product look like.

    Attributes
    ----------
    name, title : str
        Registry key and one-line description.
    embedding_columns : tuple of str
        Candidate embedding column names, first present wins (``data.embedding_column``
        overrides).
    id_columns : tuple of str
        Candidate id columns; none present: file + row ids.
    lonlat_columns : tuple of str or None
        ``(lon, lat)`` columns giving the location (preferred over the geometry when present).
    geometry_column : str
        The footprint (WKB, GeoParquet ``geo`` metadata names its CRS).
    download_hint : str
        How to get the real product (used in "not found" messages).
    """

    name: str
    title: str
    embedding_columns: tuple[str, ...] = ("embedding",)
    id_columns: tuple[str, ...] = ("id",)
    lonlat_columns: tuple[str, str] | None = ("lon", "lat")
    geometry_column: str = "geometry"
    download_hint: str = ""


@dataclasses.dataclass
class TableRows:
    """Every row of a table: ``ids (N,)`` int64, ``lon``/``lat (N,)`` float64, ``bbox (N, 4)``
    float64 (lon/lat), ``embeddings (N, D)`` float32, in file order."""

    ids: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    bbox: np.ndarray
    embeddings: np.ndarray


def _hive(path: Path, root: Path) -> dict[str, str]:
    rel = path.relative_to(root).parts[:-1] if path != root else ()
    return dict(p.split("=", 1) for p in rel if "=" in p)


def _list_storage(t: pa.DataType) -> pa.DataType:
    return t.storage_type if isinstance(t, pa.BaseExtensionType) else t


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class EmbeddingTable:
    """One embedding table on disk (file, folder, or Hive-partitioned tree).

    Parameters
    ----------
    product : TableProduct
        The product's column conventions.
    path : str or path
        A Parquet/GeoParquet file or a folder searched recursively for :data:`SUFFIXES`
        (names starting with ``.`` or ``_`` are skipped, as pyarrow datasets do).
    embedding_column, id_column : str, optional
        Override the product's candidates (``id_column="none"``: file + row ids).
    lon_column, lat_column : str, optional
        Location columns (override the product's ``lonlat_columns``).
    geometry_column : str, optional
        Footprint column (override).
    """

    def __init__(self, product: TableProduct, path: str | os.PathLike,
                 embedding_column: str | None = None, id_column: str | None = None,
                 lon_column: str | None = None, lat_column: str | None = None,
                 geometry_column: str | None = None) -> None:  # fmt: skip
        self.product = product
        self.path = Path(path)
        self.embedding_columns = (
            (embedding_column,) if embedding_column else product.embedding_columns
        )
        self.id_columns = (
            () if id_column == "none" else ((id_column,) if id_column else product.id_columns)
        )
        if lon_column or lat_column:
            if not (lon_column and lat_column):
                raise InputError("give both lon_column and lat_column, or neither")
            self.lonlat = (lon_column, lat_column)
        else:
            self.lonlat = product.lonlat_columns
        self.geometry_column = geometry_column or product.geometry_column
        self._plan: dict[str, Any] | None = None  # fmt: skip

    # ------------------------------------------------------------------ discovery and checks

    @property
    def files(self) -> list[Path]:
        """The table's files in a deterministic order (relative path)."""
        p = self.path
        if p.is_file():
            return [p]
        if not p.is_dir():
            raise InputError(f"{self.product.title}: no file or folder {p}")
        out = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
               and not any(s.startswith((".", "_")) for s in f.relative_to(p).parts)]  # fmt: skip
        if not out:
            raise InputError(
                f"{self.product.title}: folder {p} holds no {'/'.join(SUFFIXES)} files"
            )
        return sorted(out, key=lambda f: f.relative_to(p).as_posix())

    def check(self) -> dict[str, Any]:
        """Read every file's footer and check the table is the product it claims; return the plan
        (columns to read, width, CRS per file). Cached.

        Raises
        ------
        InputError
            Unreadable file, missing/non-float embedding column, no usable location (geometry
            without CRS and no lon/lat columns), a partition with another schema or other
            partition keys, fixed widths that differ.
        """
        if self._plan is not None:
            return self._plan
        files = self.files
        root = self.path if self.path.is_dir() else self.path.parent
        ref_schema: pa.Schema | None = None
        ref_file = ref_keys = None
        plan: dict[str, Any] = {"files": [], "crs": {}}
        for f in files:
            try:
                schema = pq.read_schema(f)
            except (OSError, pa.ArrowException) as e:
                raise InputError(
                    f"{f}: cannot read it as Parquet ({type(e).__name__}: {e}); a truncated or "
                    f"non-Parquet file in a {self.product.title} table must be re-downloaded"
                ) from e
            keys = sorted(_hive(f, root))
            fields = {fl.name: fl.type for fl in schema if fl.name not in keys}
            if ref_schema is None:
                ref_schema, ref_file, ref_keys = schema, f, keys
                plan.update(self._columns(f, schema))
            else:
                if keys != ref_keys:
                    raise InputError(
                        f"{f}: Hive partition keys {keys} differ from {ref_keys} of {ref_file}; "
                        "expected one partitioning for the whole table"
                    )
                ref = {fl.name: fl.type for fl in ref_schema if fl.name not in keys}
                for name in sorted(set(ref) | set(fields)):
                    if ref.get(name) != fields.get(name):
                        raise InputError(
                            f"{f}: field {name!r} is {fields.get(name, '<absent>')} here but "
                            f"{ref.get(name, '<absent>')} in {ref_file}; expected every "
                            "partition of one table to have one schema"
                        )
            if plan["location"] == "geometry":
                plan["crs"][str(f)] = self._crs(f, schema)
            plan["files"].append(f)
        self._plan = plan
        return plan

    def _columns(self, f: Path, schema: pa.Schema) -> dict[str, Any]:
        names = schema.names
        emb = next((c for c in self.embedding_columns if c in names), None)
        if emb is None:
            raise InputError(
                f"{f}: no embedding column {' or '.join(map(repr, self.embedding_columns))} "
                f"(columns: {names}); expected a {self.product.title} file with one list<float> "
                "embedding per row (set data.embedding_column / --embedding-column)"
            )
        t = _list_storage(schema.field(emb).type)
        if not _is_list(t) or not pa.types.is_floating(t.value_type):
            raise InputError(
                f"{f}: field {emb!r} is {schema.field(emb).type}; expected a list (or fixed-size "
                "list / fixed_shape_tensor) of floats, one embedding per row"
            )
        width = t.list_size if pa.types.is_fixed_size_list(t) else None
        idc = next((c for c in self.id_columns if c in names), None)
        if idc is not None:
            it = schema.field(idc).type
            if not (
                pa.types.is_integer(it) or pa.types.is_string(it) or pa.types.is_large_string(it)
            ):
                raise InputError(f"{f}: id field {idc!r} is {it}; expected integers or strings")
        if self.lonlat and all(c in names for c in self.lonlat):
            for c in self.lonlat:
                if not (
                    pa.types.is_floating(schema.field(c).type)
                    or pa.types.is_integer(schema.field(c).type)
                ):
                    raise InputError(
                        f"{f}: location field {c!r} is {schema.field(c).type}; expected numbers"
                    )
            loc = "lonlat"
        elif self.geometry_column in names:
            loc = "geometry"
        else:
            want = f"a {self.geometry_column!r} footprint" + (
                f" or {self.lonlat[0]!r}/{self.lonlat[1]!r} columns" if self.lonlat else ""
            )
            raise InputError(f"{f}: no location: expected {want} (columns: {names})")
        return {"embedding": emb, "width": width, "id": idc, "location": loc}

    def _crs(self, f: Path, schema: pa.Schema) -> Any:
        """The geometry column's CRS (pyproj.CRS) from the file's GeoParquet ``geo`` metadata;
        ``None`` when it is lon/lat (OGC:CRS84 / EPSG:4326)."""
        import pyproj

        g = self.geometry_column
        raw = (schema.metadata or {}).get(b"geo")
        if raw is None:
            raise InputError(
                f"{f}: field {g!r} has no CRS: the file has no GeoParquet 'geo' metadata; expected "
                "GeoParquet (its 'crs' names the CRS; absent = OGC:CRS84) or lon/lat columns "
                "(data.lon_column/lat_column)"
            )
        try:
            meta = json.loads(raw)
            col = meta["columns"][g]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{f}: GeoParquet 'geo' metadata has no entry for field {g!r}") from e
        enc = str(col.get("encoding", "WKB")).upper()
        if enc != "WKB":
            raise InputError(f"{f}: field {g!r} has encoding {enc}; expected WKB")
        if "crs" in col and col["crs"] is None:
            raise InputError(
                f"{f}: field {g!r} has no CRS ('crs': null = unknown in GeoParquet); expected a "
                "CRS (PROJJSON) or none given (= OGC:CRS84)"
            )
        crs = pyproj.CRS.from_user_input(col["crs"]) if col.get("crs") is not None else None
        if crs is None or crs.equals("OGC:CRS84", ignore_axis_order=True):
            return None
        return crs

    # ------------------------------------------------------------------ rows

    def iter_batches(self, batch_rows: int = 65536) -> Iterator[tuple[dict, dict]]:
        """Yield ``(batch, origin)``: ``batch = {id, lon, lat, bbox, embedding[, geometry]}``,
        ``origin = {file, start, stop}``, file by file in :attr:`files` order."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        plan = self.check()
        width = plan["width"]
        cols = [plan["embedding"]] + ([plan["id"]] if plan["id"] else [])
        cols += list(self.lonlat) if plan["location"] == "lonlat" else [self.geometry_column]
        for f in plan["files"]:
            start = 0
            it = pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=cols)
            while True:
                try:
                    rb = next(it)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException) as e:
                    raise InputError(f"{f}: cannot read rows from {start} ({e})") from e
                batch = self._batch(f, rb, start, plan, width)
                width = batch["embedding"].shape[1]
                stop = start + rb.num_rows
                yield batch, {"file": str(Path(f).resolve()), "start": start, "stop": stop}
                start = stop

    def _batch(
        self, f: Path, rb: pa.RecordBatch, start: int, plan: dict, width: int | None
    ) -> dict:
        emb = plan["embedding"]
        x = embeddings(f, emb, rb.column(emb), start, width)
        n = rb.num_rows
        idc = plan["id"]
        if idc is None:
            ids = file_row_ids(f, start, start + n)
        else:
            col = rb.column(idc)
            if col.null_count:
                raise InputError(f"{f}: id field {idc!r} has nulls (rows {start}..{start + n - 1})")
            ids = (np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
                   if pa.types.is_integer(col.type) else string_ids(col.to_pylist()))  # fmt: skip
        out: dict[str, Any] = {"id": ids, "embedding": x}
        if plan["location"] == "lonlat":
            lon, lat = (np.asarray(rb.column(c).to_numpy(zero_copy_only=False), np.float64)
                        for c in self.lonlat)  # fmt: skip
            out["bbox"] = np.stack([lon, lat, lon, lat], 1)
        else:
            lon, lat, out["bbox"], geom = locate(f, self.geometry_column, rb.column(self.geometry_column),
                                                  start, plan["crs"][str(f)])  # fmt: skip
            if geom is not None:
                out["geometry"] = geom
        bad = np.flatnonzero(
            ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lon) > 180) | (np.abs(lat) > 90)
        )
        if len(bad):
            i = int(bad[0])
            raise InputError(
                f"{f} row {start + i}: location ({lon[i]}, {lat[i]}) is not a finite lon/lat"
            )
        out["lon"], out["lat"] = lon, lat
        return out

    def read(self) -> TableRows:
        """Every row in memory (validated; duplicate ids refused, naming the first pair)."""
        parts = [b for b, _ in self.iter_batches()]
        rows = TableRows(
            *(
                np.concatenate([p[k] for p in parts])
                for k in ("id", "lon", "lat", "bbox", "embedding")
            )
        )
        uniq, first, counts = np.unique(rows.ids, return_index=True, return_counts=True)
        if len(uniq) != len(rows.ids):
            dup = int(uniq[np.argmax(counts > 1)])
            where = np.flatnonzero(rows.ids == dup)[:2].tolist()
            raise InputError(
                f"{self.path}: id {dup} appears at rows {where} (table order); expected unique "
                f"row ids (column {self.check()['id']!r})"
            )
        return rows

    def sample(self, n: int) -> np.ndarray:
        """The first ``n`` embeddings (e.g. to fit a quantizer), ``(min(n, N), D)`` float32."""
        got, out = 0, []
        for b, _ in self.iter_batches(batch_rows=min(max(n, 1), 65536)):
            out.append(b["embedding"][: n - got])
            got += len(out[-1])
            if got >= n:
                break
        return np.concatenate(out)


def build_table(product: TableProduct) -> Callable[..., EmbeddingTable]:
    """``builder(path, **columns)`` of ``product`` (the registry's entry)."""
    return lambda path, **kw: EmbeddingTable(product, path, **kw)
