"""Exemplar search over a viewport: the explorer's one query path (library scoring, fast access).

Scores equal :func:`geoemb.retrieval.exemplar.exemplar_scores` (mean / and / or / xor /
majority, negatives, invert; computed by the fused kernel in :mod:`geoemb.explore.kernels`,
tested bit-identical) on the rows that :class:`~geoemb.explore.index.CorpusIndex` returns
for the viewport; ranking equals :func:`~geoemb.retrieval.exemplar.top_k_view` /
:func:`~geoemb.retrieval.exemplar.threshold_view` (lowest score, then smallest id; exemplar rows
excluded). Exports go through the library's own
:func:`~geoemb.retrieval.exemplar.exemplar_query` on the on-disk corpus and the CLI's writers.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoemb.errors import InputError
from geoemb.explore.index import CorpusIndex, Rows
from geoemb.explore.kernels import exemplar_scores
from geoemb.explore.render import dot_px, draw, heat_png
from geoemb.retrieval.exemplar import (
    COMBINE,
    exemplar_query,
    export_geoparquet,
    score_raster,
    threshold_view,
    write_score_raster,
)


class NotFoundError(InputError):
    """An exemplar id or point that no corpus row matches."""


@dataclass
class Ref:
    """An exemplar reference: a row ``id`` (``lon``/``lat`` then only hint where it lies), or a
    point ``(lon, lat)`` resolved like ``CorpusStore.lookup_point``."""

    id: int | None = None
    lon: float | None = None
    lat: float | None = None


@dataclass
class Exemplar:
    id: int
    lon: float
    lat: float
    bbox: list[float]
    code: np.ndarray

    def to_json(self) -> dict:
        return {"id": self.id, "lon": self.lon, "lat": self.lat, "bbox": self.bbox}


@dataclass
class SearchParams:
    """One viewport query. ``threshold`` set ⇒ threshold view, else top-``k``."""

    bbox: tuple[float, float, float, float]
    positives: list[Ref]
    negatives: list[Ref] = field(default_factory=list)
    combine: str = "mean"
    invert: bool = False
    k: int = 50
    threshold: float | None = None
    width: int = 512
    height: int = 512
    bins: int = 40
    max_results: int = 10_000


def resolve(index: CorpusIndex, ref: Ref, tolerance: float = 0.0) -> Exemplar:
    """Resolve one reference to a corpus row; :class:`NotFoundError` names what did not match."""
    if ref.id is not None:
        hint = (ref.lon, ref.lat) if ref.lon is not None and ref.lat is not None else None
        rows = index.lookup_id(int(ref.id), hint)
        if len(rows) == 0:
            raise NotFoundError(f"exemplar id {ref.id} is not in the corpus")
    else:
        rows = index.lookup_point(float(ref.lon), float(ref.lat), tolerance)
        if len(rows) == 0:
            raise NotFoundError(
                f"no corpus row covers the point lon={ref.lon}, lat={ref.lat}"
                + (f" (nor lies within {tolerance}°)" if tolerance else "")
            )
    return Exemplar(int(rows.ids[0]), float(rows.lon[0]), float(rows.lat[0]),
                    [float(v) for v in rows.bbox[0]], rows.codes[0].copy())  # fmt: skip


def resolve_all(index: CorpusIndex, pos: Sequence[Ref], neg: Sequence[Ref]
                ) -> tuple[list[Exemplar], list[Exemplar]]:  # fmt: skip
    """Resolve positives and negatives; refuses the same row twice (it would be weighted twice)."""
    if not pos:
        raise InputError("positives: at least one positive exemplar is needed")
    p = [resolve(index, r) for r in pos]
    n = [resolve(index, r) for r in neg]
    seen: dict[int, str] = {}
    for kind, ex in [("positive", e) for e in p] + [("negative", e) for e in n]:
        if ex.id in seen:
            raise InputError(f"exemplar id {ex.id} is given twice (as {seen[ex.id]} and {kind})")
        seen[ex.id] = kind
    return p, n


def fast_top_k(scores: np.ndarray, ids: np.ndarray, k: int,
               exclude: Sequence[int] = ()) -> np.ndarray:  # fmt: skip
    """Same positions as ``top_k_view`` (lowest score, then smallest id, ``exclude`` ids dropped),
    via a partition first.

    With ``m = k + len(exclude)``, the k best kept rows all score ≤ the m-th smallest score of
    all rows (at most ``len(exclude)`` of the m smallest are dropped), so every row scoring ≤ that
    value is a candidate (ties included) and the final ``lexsort`` over the candidates equals the
    full sort's first ``k``.
    """
    scores, ids = np.asarray(scores), np.asarray(ids)
    m = k + len(exclude)
    if len(scores) > 4 * m:
        kth = np.partition(scores, m - 1)[m - 1]
        pos = np.flatnonzero(scores <= kth)
    else:
        pos = np.arange(len(scores))
    pos = pos[~np.isin(ids[pos], np.asarray(list(exclude), dtype=ids.dtype))]
    order = np.lexsort((ids[pos], scores[pos]))
    return pos[order[:k]]


def _codes(ex: list[Exemplar], nbytes: int) -> np.ndarray:
    return np.stack([e.code for e in ex]) if ex else np.zeros((0, nbytes), np.uint8)


def search(index: CorpusIndex, p: SearchParams, max_view_rows: int | None = None) -> dict:
    """Run one viewport query; returns the JSON-ready result (see the API docs in ``app``)."""
    t0 = time.perf_counter()
    if p.combine not in COMBINE:
        raise InputError(f"combine: expected one of {COMBINE}, got {p.combine!r}")
    pos, neg = resolve_all(index, p.positives, p.negatives)
    t1 = time.perf_counter()
    rows = index.rows(p.bbox, max_rows=max_view_rows)
    t2 = time.perf_counter()
    pc, nc = _codes(pos, index.code_bytes), _codes(neg, index.code_bytes)
    if len(rows):
        scores = exemplar_scores(rows.codes, pc, index.dim, nc, p.combine, p.invert)
    else:
        scores = np.zeros(0)
    t3 = time.perf_counter()
    exclude = [e.id for e in pos + neg]
    if p.threshold is None:
        sel = fast_top_k(scores, rows.ids, p.k, exclude)
    else:
        sel = threshold_view(scores, rows.ids, p.threshold, exclude)
    t4 = time.perf_counter()
    heat, hist = _heat_and_histogram(rows, scores, p, exclude)
    t5 = time.perf_counter()
    shown = sel[: p.max_results]
    results = [
        {"rank": r, "id": int(rows.ids[i]), "score": float(scores[i]),
         "lon": float(rows.lon[i]), "lat": float(rows.lat[i])}
        for r, i in enumerate(shown)
    ]  # fmt: skip
    timing = {"resolve_ms": 1e3 * (t1 - t0), **rows.timing, "score_ms": 1e3 * (t3 - t2),
              "rank_ms": 1e3 * (t4 - t3), "heat_ms": 1e3 * (t5 - t4),
              "total_ms": 1e3 * (time.perf_counter() - t0)}  # fmt: skip
    return {
        "bbox": list(p.bbox), "view": "topk" if p.threshold is None else "threshold",
        "n_candidates": len(rows), "n_shards": rows.n_shards, "n_results": int(len(sel)),
        "truncated": bool(len(sel) > len(shown)), "results": results,
        "exemplars": {"positives": [e.to_json() for e in pos],
                      "negatives": [e.to_json() for e in neg]},
        "histogram": hist, "heat": heat, "timing_ms": timing,
    }  # fmt: skip


def _heat_and_histogram(rows: Rows, scores: np.ndarray, p: SearchParams,
                        exclude: Sequence[int]) -> tuple[dict, dict]:  # fmt: skip
    """Heat map PNG over the view and the score histogram of all rows in view.

    Colour scale: ``lo`` = best score of a non-exemplar row (bright, opaque) to ``hi`` = the
    median score (transparent), so the similar places light up over the basemap.
    """
    if len(scores) == 0:
        return ({"png": None, "bounds": list(p.bbox), "lo": None, "hi": None},
                {"edges": [], "counts": []})  # fmt: skip
    smin, smax = float(scores.min()), float(scores.max())
    counts, edges = np.histogram(scores, p.bins, range=(smin, smax if smax > smin else smin + 1))
    others = scores[~np.isin(rows.ids, np.asarray(list(exclude), np.int64))]
    others = others if len(others) else scores
    lo = float(others.min())
    hi = float(np.partition(others, len(others) // 2)[len(others) // 2])
    dot = dot_px(len(rows), p.width * p.height)
    grid = draw(rows.bbox, scores, p.bbox, p.width, p.height, reduce="min", min_px=dot,
                cache=rows.cache)[..., 0]  # fmt: skip
    png = heat_png(grid, lo, hi if hi > lo else lo + 1.0)
    heat = {"png": "data:image/png;base64," + base64.b64encode(png).decode(),
            "bounds": list(p.bbox), "lo": lo, "hi": hi}  # fmt: skip
    return heat, {"edges": edges.tolist(), "counts": counts.tolist()}


# ---------------------------------------------------------------------- exports (library path)


def _library_query(index: CorpusIndex, p: SearchParams, view: str):
    pos, neg = resolve_all(index, p.positives, p.negatives)
    return exemplar_query(index.store, positive_ids=[e.id for e in pos],
                          negative_ids=[e.id for e in neg], bbox=p.bbox, combine=p.combine,
                          invert=p.invert, view=view, k=p.k, threshold=p.threshold)  # fmt: skip


def export_results(index: CorpusIndex, p: SearchParams, path: str | os.PathLike) -> Path:
    """Write the query's result set (top-k or threshold) as GeoParquet 1.1 (the CLI's writer)."""
    view = "topk" if p.threshold is None else "threshold"
    res = _library_query(index, p, view)
    meta = {"geoemb:query": {"bbox": list(p.bbox), "combine": p.combine, "invert": p.invert,
                             "k": p.k, "threshold": p.threshold, "view": view,
                             "corpus_manifest_sha256": index.manifest_sha256}}  # fmt: skip
    return export_geoparquet(res, path, extra_metadata=meta)


def export_raster(index: CorpusIndex, p: SearchParams, path: str | os.PathLike,
                  resolution: float | None = None, max_cells: int = 4096 * 4096) -> Path:  # fmt: skip
    """Write the viewport's score raster (mean score per cell, EPSG:4326) as GeoTIFF."""
    w, s, e, n = p.bbox
    if w > e:
        raise InputError(
            "bbox: GeoTIFF export of a view crossing the antimeridian is not supported"
        )
    if resolution is None:
        resolution = max(e - w, n - s) / 512 or 1e-6
    cells = np.ceil((e - w) / resolution) * np.ceil((n - s) / resolution)
    if cells > max_cells:
        raise InputError(
            f"resolution: {resolution}° gives {int(cells)} cells over the view, more than "
            f"{max_cells}; use a coarser resolution"
        )
    res = _library_query(index, p, "full")
    if res.num_rows == 0:
        raise NotFoundError(f"bbox {list(p.bbox)} holds no corpus rows; nothing to rasterize")
    grid, transform = score_raster(res["lon"].to_numpy(), res["lat"].to_numpy(),
                                   res["score"].to_numpy(), resolution, bounds=p.bbox)  # fmt: skip
    return write_score_raster(path, grid, transform)
