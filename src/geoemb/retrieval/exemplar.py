"""Exemplar queries on packed binary codes (TerraBit), views and GeoParquet export.

Scores (lower = more similar):
- ``combine="mean"``: ``s(c) = mean_p H(c, p) − mean_n H(c, n)`` (negatives optional);
- ``combine in {"and", "or", "xor"}``: the positive codes are folded byte-wise into one code ``e``
  (exact, lossless ops on the packed bits) and ``s(c) = H(c, e) − mean_n H(c, n)``;
- ``combine="majority"``: bitwise majority vote of the positives (TerraBit "fingerprint").
- ``invert=True`` applies bitwise NOT (padding bits masked) to the composed positives and the
  negatives, so ``s_inv = L − s`` without negatives and ``s_inv = −s`` with them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from geoemb.compression.bitpack import pack_bits, unpack_bits
from geoemb.errors import InputError
from geoemb.retrieval.hamming import check_codes, hamming_numpy, invert_codes, to_words
from geoemb.utils.geoparquet import write_geoparquet
from geoemb.utils.io import atomic_path

COMBINE = ("mean", "and", "or", "xor", "majority")
#: Largest score raster written (float32: 1 GB); a typo'd resolution must not exhaust memory.
MAX_RASTER_CELLS = 250_000_000


def compose(codes: np.ndarray, op: str, dim: int | None = None) -> np.ndarray:
    """Fold ``(m, B)`` packed codes into one ``(1, B)`` code with ``and``/``or``/``xor``/``majority``."""
    codes = check_codes(codes, name="exemplar codes")
    if len(codes) == 0:
        raise ValueError("compose: need at least one exemplar code")
    if op == "and":
        return np.bitwise_and.reduce(codes, axis=0, keepdims=True)
    if op == "or":
        return np.bitwise_or.reduce(codes, axis=0, keepdims=True)
    if op == "xor":
        return np.bitwise_xor.reduce(codes, axis=0, keepdims=True)
    if op == "majority":
        d = dim if dim is not None else codes.shape[1] * 8
        bits = unpack_bits(codes, d)
        return pack_bits(bits.sum(0, keepdims=True) * 2 > len(codes))
    raise ValueError(f"unknown composition {op!r}; expected one of and, or, xor, majority")


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` int64 Hamming distances between packed code sets."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.int64)
    return hamming_numpy(to_words(a), np.ascontiguousarray(to_words(b).T)).astype(np.int64)


def exemplar_scores(
    candidates: np.ndarray,
    positives: np.ndarray,
    dim: int,
    negatives: np.ndarray | None = None,
    combine: str = "mean",
    invert: bool = False,
) -> np.ndarray:
    """Score ``(n, B)`` candidate codes against exemplars; returns ``(n,)`` float64, lower = better."""
    nbytes = (dim + 7) // 8
    candidates = check_codes(candidates, nbytes, "candidate codes")
    positives = check_codes(positives, nbytes, "positive exemplar codes")
    if len(positives) == 0:
        raise ValueError("exemplar query needs at least one positive exemplar")
    if combine not in COMBINE:
        raise ValueError(f"unknown combine {combine!r}; expected one of {COMBINE}")
    pos = positives if combine == "mean" else compose(positives, combine, dim)
    neg = (
        None
        if negatives is None or len(negatives) == 0
        else check_codes(negatives, nbytes, "negative exemplar codes")
    )
    if invert:
        pos = invert_codes(pos, dim)
        neg = None if neg is None else invert_codes(neg, dim)
    score = hamming_matrix(candidates, pos).mean(axis=1)
    if neg is not None:
        score = score - hamming_matrix(candidates, neg).mean(axis=1)
    return score


# --------------------------------------------------------------------------- views


def top_k_view(
    scores: np.ndarray, ids: np.ndarray, k: int, exclude: Sequence[int] = ()
) -> np.ndarray:
    """Positions of the ``k`` best (lowest score, then smallest id) rows, excluding ``exclude`` ids."""
    scores, ids = np.asarray(scores), np.asarray(ids)
    keep = ~np.isin(ids, np.asarray(list(exclude), dtype=ids.dtype))
    pos = np.nonzero(keep)[0]
    order = np.lexsort((ids[pos], scores[pos]))
    return pos[order[:k]]


def threshold_view(scores: np.ndarray, ids: np.ndarray, threshold: float,
                   exclude: Sequence[int] = ()) -> np.ndarray:  # fmt: skip
    """Positions of rows with ``score <= threshold`` sorted by (score, id)."""
    scores, ids = np.asarray(scores), np.asarray(ids)
    pos = np.nonzero((scores <= threshold) & ~np.isin(ids, np.asarray(list(exclude), ids.dtype)))[0]
    return pos[np.lexsort((ids[pos], scores[pos]))]


def score_raster(
    lon: np.ndarray,
    lat: np.ndarray,
    scores: np.ndarray,
    resolution: float,
    bounds: Sequence[float] | None = None,
    reducer: str = "mean",
) -> tuple[np.ndarray, tuple[float, float, float, float, float, float]]:
    """Grid the scores of all rows (full score raster).

    Returns
    -------
    grid, transform:
        ``(H, W)`` float32 with NaN where no row falls, and the affine transform
        ``(res, 0, west, 0, -res, north)`` (rasterio/GDAL order ``a, b, c, d, e, f``).
    """
    lon, lat, scores = (np.asarray(v, dtype=np.float64) for v in (lon, lat, scores))
    if not (np.isfinite(resolution) and resolution > 0):
        raise InputError(f"score_raster: resolution must be a positive number, got {resolution}")
    if bounds is None:
        if len(lon) == 0:
            raise ValueError("score_raster: no rows and no bounds given")
        bounds = (
            lon.min(),
            lat.min(),
            lon.max() + resolution * 1e-6,
            lat.max() + resolution * 1e-6,
        )
    w, s, e, n = (float(b) for b in bounds)
    width = max(1, int(np.ceil((e - w) / resolution)))
    height = max(1, int(np.ceil((n - s) / resolution)))
    if width * height > MAX_RASTER_CELLS:
        raise InputError(
            f"score_raster: {width} x {height} cells at resolution {resolution} exceeds "
            f"{MAX_RASTER_CELLS:,} cells; use a coarser resolution or a smaller ROI"
        )
    col = np.clip(((lon - w) / resolution).astype(np.int64), 0, width - 1)
    row = np.clip(((n - lat) / resolution).astype(np.int64), 0, height - 1)
    inside = (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
    flat = row[inside] * width + col[inside]
    grid = np.full(height * width, np.nan)
    if reducer == "mean":
        tot = np.bincount(flat, weights=scores[inside], minlength=height * width)
        cnt = np.bincount(flat, minlength=height * width)
        grid = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    elif reducer == "min":
        grid = np.full(height * width, np.inf)
        np.minimum.at(grid, flat, scores[inside])
        grid[np.isinf(grid)] = np.nan
    else:
        raise ValueError(f"reducer must be 'mean' or 'min', got {reducer!r}")
    return grid.reshape(height, width).astype(np.float32), (resolution, 0.0, w, 0.0, -resolution, n)


def write_score_raster(
    path: str | os.PathLike, grid: np.ndarray, transform: Sequence[float]
) -> Path:
    """Write a score raster as a single-band float32 GeoTIFF in EPSG:4326 (atomic)."""
    import rasterio  # heavy GDAL stack: only loaded to write a raster
    from affine import Affine

    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=grid.shape[0], width=grid.shape[1],
                           count=1, dtype="float32", crs="EPSG:4326", nodata=np.nan,
                           transform=Affine(*transform[:6])) as dst:  # fmt: skip
            dst.write(grid.astype(np.float32), 1)
    return Path(path)


# --------------------------------------------------------------------------- store-level query


def resolve_exemplars(store: Any, points: Sequence[Sequence[float]] = (),
                      ids: Sequence[int] = ()) -> tuple[np.ndarray, list[int]]:  # fmt: skip
    """Codes and ids of exemplars given as ``(lon, lat)`` points (point lookup anywhere in the corpus,
    also outside the ROI) and/or row ids."""
    codes, out_ids = [], []
    for lon, lat in points:
        lon, lat = float(lon), float(lat)
        if not (np.isfinite(lon) and np.isfinite(lat)):
            raise InputError(f"exemplar point ({lon}, {lat}): coordinates must be finite")
        row = store.lookup_point(lon, lat)
        if row.num_rows == 0:
            raise InputError(
                f"exemplar point ({lon}, {lat}): no row of the corpus {store.root} covers this "
                "location (exemplars must be corpus rows; pick a point inside a row's footprint)"
            )
        codes.append(store.codes(row))
        out_ids.append(int(row["id"][0].as_py()))
    if len(ids):
        rows = store.lookup_ids(ids)
        missing = set(map(int, ids)) - set(rows["id"].to_pylist())
        if missing:
            raise InputError(f"exemplar ids not in the corpus {store.root}: {sorted(missing)}")
        codes.append(store.codes(rows))
        out_ids.extend(rows["id"].to_pylist())
    nb = store.code_bytes
    return (np.concatenate(codes) if codes else np.zeros((0, nb), np.uint8)), out_ids


def exemplar_query(
    store: Any,
    positives: Sequence[Sequence[float]] = (),
    negatives: Sequence[Sequence[float]] = (),
    positive_ids: Sequence[int] = (),
    negative_ids: Sequence[int] = (),
    bbox: Sequence[float] | None = None,
    polygon: Any = None,
    combine: str = "mean",
    invert: bool = False,
    view: str = "topk",
    k: int = 100,
    threshold: float | None = None,
) -> pa.Table:
    """Run an exemplar query over the ROI of a :class:`~geoemb.retrieval.store.CorpusStore`.

    Returns a table ``rank, id, score, lon, lat, bbox, geometry`` for ``view="topk"`` (k best) or
    ``"threshold"`` (score <= threshold), or all ROI rows with their score for ``view="full"``.
    Exemplar rows are excluded from ``topk``/``threshold`` results. Empty ROI → empty table.
    """
    if view == "topk" and (not isinstance(k, int | np.integer) or k < 1):
        raise InputError(f"exemplar query: k must be a positive integer, got {k!r}")
    if threshold is not None and not np.isfinite(threshold):
        raise InputError(f"exemplar query: threshold must be finite, got {threshold}")
    pos_codes, pos_ids = resolve_exemplars(store, positives, positive_ids)
    neg_codes, neg_ids = resolve_exemplars(store, negatives, negative_ids)
    roi = store.read(bbox, polygon)
    cols = ["id", "lon", "lat", "bbox", "geometry"]
    if roi.num_rows == 0:
        return roi.select(cols).append_column("score", pa.array([], pa.float64())).append_column(
            "rank", pa.array([], pa.int64()))  # fmt: skip
    scores = exemplar_scores(store.codes(roi), pos_codes, store.dim, neg_codes, combine, invert)
    ids = roi["id"].to_numpy()
    exclude = pos_ids + neg_ids
    if view == "topk":
        pos = top_k_view(scores, ids, k, exclude)
    elif view == "threshold":
        if threshold is None:
            raise ValueError("view='threshold' needs a threshold")
        pos = threshold_view(scores, ids, threshold, exclude)
    elif view == "full":
        pos = np.lexsort((ids, scores))
    else:
        raise ValueError(f"unknown view {view!r}; expected topk, threshold or full")
    out = roi.select(cols).take(pa.array(pos, pa.int64()))
    return out.append_column("score", pa.array(scores[pos])).append_column(
        "rank", pa.array(np.arange(len(pos), dtype=np.int64)))  # fmt: skip


def export_geoparquet(results: pa.Table, path: str | os.PathLike,
                      extra_metadata: dict | None = None) -> Path:  # fmt: skip
    """Write ranked results (needs ``geometry`` WKB and ``bbox`` struct columns) as GeoParquet 1.1."""
    for c in ("geometry", "bbox"):
        if c not in results.column_names:
            raise ValueError(f"export_geoparquet: results lack the {c!r} column")
    drop = [c for c in ("code",) if c in results.column_names]
    return write_geoparquet(results.drop_columns(drop), path, extra_metadata=extra_metadata)
