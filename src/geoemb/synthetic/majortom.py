"""Synthetic Major TOM embeddings in the published layout (dataset cards, torchgeo 0.9).

Layout written by :func:`generate`::

    root/embeddings/part_<nnnnn>.parquet
        unique_id (64-hex string), embedding (list<float32>[dim]), timestamp ("YYYYMMDDTHHMMSS"),
        product_id, grid_cell ("<row><U|D>_<col><R|L>"), grid_row_u, grid_col_r (int16),
        geometry (WKB polygon footprint, GeoParquet metadata), centre_lat, centre_lon (float32),
        utm_footprint (WKT), utm_crs ("EPSG:326zz"), pixel_bbox (list<int64>[4])

One row per ~10 km Major TOM cell (one fragment covering the cell); the cell centre is the row's
location. Embeddings carry the spatial signal of :func:`geoemb.synthetic.retrieval_corpus.
make_embeddings`. Plain numpy/pyarrow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geoemb.synthetic.clay import BOUNDS, chip_boxes
from geoemb.synthetic.retrieval_corpus import make_embeddings
from geoemb.utils.geoparquet import with_geo_metadata

__all__ = ["generate"]

CELL_M = 10_000.0


def generate(root: str | os.PathLike, n: int = 2000, dim: int = 1152, seed: int = 0,
             parts: int = 2) -> Path:  # fmt: skip
    """Write ``n`` Major TOM embedding rows (SigLIP width by default) in ``parts`` files."""
    root = Path(root)
    (root / "embeddings").mkdir(parents=True, exist_ok=True)
    x, lon, lat = make_embeddings(n, dim, seed=seed, bounds=BOUNDS)
    dlat = CELL_M / 111_320.0
    row = np.round(lat / dlat).astype(np.int64)
    clat = row * dlat
    dlon = dlat / np.cos(np.radians(clat))
    col = np.round(lon / dlon).astype(np.int64)
    clon = col * dlon
    # one row per cell: keep the first sample of each cell
    _, keep = np.unique(np.stack([row, col], 1), axis=0, return_index=True)
    keep = np.sort(keep)
    rng = np.random.default_rng(seed + 3)
    days = rng.integers(0, 4 * 365, n).astype("timedelta64[D]") + np.datetime64("2019-01-01")
    boxes = chip_boxes(clon, clat, CELL_M)
    zone = (np.floor((clon + 180) / 6) + 1).astype(int)
    for p, idx in enumerate(np.array_split(keep, parts)):
        ts = [str(d).replace("-", "") + "T104021" for d in days[idx]]
        cells = [f"{abs(r)}{'U' if r >= 0 else 'D'}_{abs(c)}{'R' if c >= 0 else 'L'}"
                 for r, c in zip(row[idx], col[idx], strict=True)]  # fmt: skip
        b = boxes[idx]
        geom = shapely.box(*b.T)
        table = pa.table({
            "unique_id": [hashlib.sha256(f"{c}{t}{seed}".encode()).hexdigest()
                          for c, t in zip(cells, ts, strict=True)],
            "embedding": pa.array(list(x[idx]), pa.list_(pa.float32())),
            "timestamp": ts,
            "product_id": [f"S2A_MSIL2A_{t}_N0500_R008_T{z:02d}ULB_20230602T092440"
                           for t, z in zip(ts, zone[idx], strict=True)],
            "grid_cell": cells,
            "grid_row_u": pa.array(row[idx], pa.int16()),
            "grid_col_r": pa.array(col[idx], pa.int16()),
            "geometry": pa.array(shapely.to_wkb(geom), pa.binary()),
            "centre_lat": pa.array(clat[idx], pa.float32()),
            "centre_lon": pa.array(clon[idx], pa.float32()),
            "utm_footprint": shapely.to_wkt(geom).tolist(),
            "utm_crs": [f"EPSG:326{z:02d}" for z in zone[idx]],
            "pixel_bbox": pa.array([[0, 0, 1068, 1068]] * len(idx), pa.list_(pa.int64())),
        })  # fmt: skip
        table = with_geo_metadata(table, bbox_column=None)
        pq.write_table(table, root / "embeddings" / f"part_{p:05d}.parquet", compression="zstd")
    return root
