"""Synthetic Clay embedding tables in the published layouts (v1.5 and v0).

- :func:`generate` (v1.5, LGND on Source Cooperative)::

      root/geohash_l2=<gh>/year=<yyyy>/month=<mm>/part-00000.parquet
          chips_id, cell_id, rasters_id, stac_item_id, collection (string),
          datetime (timestamp[us, UTC]), embedding (list<float32>[dim]),
          bbox struct<xmin, ymin, xmax, ymax>, geometry (WKB polygon), GeoParquet 1.1 metadata

- :func:`generate_v0` (Clay model v0, ``model_embeddings.md``)::

      root/{MGRS}_{MINDATE}_{MAXDATE}_v001.gpq
          source_url (string), date (date32), embeddings (fixed_shape_tensor float32 [dim]),
          geometry (WKB polygon), GeoParquet 1.0.0 metadata, CRS OGC:CRS84

Rows are square chip footprints (2.56 km for v1.5, 5.12 km for v0) around locations drawn by
:func:`geoemb.synthetic.retrieval_corpus.make_embeddings` (a learnable spatial signal: nearby
chips share a latent "land cover"). Plain numpy/pyarrow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geoemb.retrieval.geohash import encode as geohash_encode
from geoemb.synthetic.retrieval_corpus import make_embeddings
from geoemb.utils.geoparquet import bbox_struct, with_geo_metadata

__all__ = ["chip_boxes", "generate", "generate_v0"]

#: Default extent of the stand-ins (lon/lat): a few level-2 geohash cells.
BOUNDS = (-10.0, 36.0, 30.0, 60.0)


def chip_boxes(lon: np.ndarray, lat: np.ndarray, size_m: float) -> np.ndarray:
    """``(n, 4)`` lon/lat boxes of ``size_m`` squares centred on the points (local approximation)."""
    half_lat = size_m / 2 / 111_320.0
    half_lon = half_lat / np.cos(np.radians(lat))
    return np.stack([lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat], 1)


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    return [bytes(r).hex() for r in rng.integers(0, 256, (n, nbytes), dtype=np.uint8)]


def generate(root: str | os.PathLike, n: int = 2000, dim: int = 1024, seed: int = 0,
             periods: tuple = ((2024, 6), (2025, 6))) -> Path:  # fmt: skip
    """Write a Clay v1.5 (LGND) style Hive-partitioned GeoParquet table of ``n`` rows."""
    root = Path(root)
    x, lon, lat = make_embeddings(n, dim, seed=seed, bounds=BOUNDS)
    rng = np.random.default_rng(seed + 1)
    period = rng.integers(0, len(periods), n)
    day = rng.integers(1, 29, n)
    boxes = chip_boxes(lon, lat, 2560.0)
    gh = np.asarray(geohash_encode(lat, lon, 2))
    chips, cells, rasters = _hex(rng, n, 16), _hex(rng, n, 8), _hex(rng, n, 8)
    for g in sorted(set(gh.tolist())):
        for p, (year, month) in enumerate(periods):
            idx = np.flatnonzero((gh == g) & (period == p))
            if not len(idx):
                continue
            ts = np.array([f"{year}-{month:02d}-{d:02d}T10:30:00" for d in day[idx]],
                          dtype="datetime64[us]")  # fmt: skip
            b = boxes[idx]
            table = pa.table({
                "chips_id": [chips[i] for i in idx],
                "cell_id": [cells[i] for i in idx],
                "rasters_id": [rasters[i] for i in idx],
                "stac_item_id": [f"S2B_T{g.upper()}_{year}{month:02d}{d:02d}_0_L2A" for d in day[idx]],
                "collection": ["sentinel-2-l2a"] * len(idx),
                "datetime": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "embedding": pa.array(list(x[idx]), pa.list_(pa.float32())),
                "bbox": bbox_struct(*b.T),
                "geometry": pa.array(shapely.to_wkb(shapely.box(*b.T)), pa.binary()),
            })  # fmt: skip
            folder = root / f"geohash_l2={g}" / f"year={year}" / f"month={month:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(with_geo_metadata(table), folder / "part-00000.parquet",
                           compression="zstd")  # fmt: skip
    return root


def _crs84() -> dict:
    import pyproj

    return pyproj.CRS.from_user_input("OGC:CRS84").to_json_dict()


def generate_v0(root: str | os.PathLike, n: int = 2000, dim: int = 768, seed: int = 0,
                tiles: int = 4) -> Path:  # fmt: skip
    """Write Clay v0 style ``.gpq`` files (one per MGRS tile) with ``n`` rows in total."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    x, lon, lat = make_embeddings(n, dim, seed=seed, bounds=BOUNDS)
    rng = np.random.default_rng(seed + 2)
    days = rng.integers(0, 4 * 365, n).astype("timedelta64[D]") + np.datetime64("2020-01-01")
    boxes = chip_boxes(lon, lat, 5120.0)
    names = [f"{30 + t}U{chr(ord('A') + t)}{chr(ord('N') + t)}" for t in range(tiles)]
    tensor = pa.fixed_shape_tensor(pa.float32(), [dim])
    for t, idx in enumerate(np.array_split(np.argsort(lon, kind="stable"), tiles)):
        idx = np.sort(idx)
        b = boxes[idx]
        storage = pa.FixedSizeListArray.from_arrays(pa.array(x[idx].reshape(-1)), dim)
        table = pa.table({
            "source_url": [f"s3://clay-tiles-02/02/{names[t]}/claytile_{names[t]}_{i}.tif" for i in idx],
            "date": pa.array(days[idx], pa.date32()),
            "embeddings": pa.ExtensionArray.from_storage(tensor, storage),
            "geometry": pa.array(shapely.to_wkb(shapely.box(*b.T)), pa.binary()),
        })  # fmt: skip
        geo = {"version": "1.0.0", "primary_column": "geometry",
               "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                        "crs": _crs84(),
                                        "bbox": [float(b[:, 0].min()), float(b[:, 1].min()),
                                                 float(b[:, 2].max()), float(b[:, 3].max())]}}}  # fmt: skip
        table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
        lo, hi = days[idx].min(), days[idx].max()
        name = f"{names[t]}_{str(lo).replace('-', '')}_{str(hi).replace('-', '')}_v001.gpq"
        pq.write_table(table, root / name, compression="zstd")
    return root
