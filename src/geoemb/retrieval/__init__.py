"""Binary retrieval (TerraBit): exact search backends, recall@k, QPS, sharded corpus, exemplar queries.

Library (no Hydra/Lightning needed)::

    from geoemb.retrieval import build_index, exact_knn, recall_at_k
    index = build_index("hamming_numba", codes, dim=1024)
    dist, ids = index.search(query_codes, k=10)

CLI: ``python -m geoemb.retrieval {synth,build-corpus,query,exemplar,bench} --help``.
"""

import importlib

#: public name -> the module defining it (imported on first use: a Dask worker that builds a
#: corpus does not pay for torch, which only the search/benchmark modules need)
_LAZY = {
    "BACKENDS": "geoemb.retrieval.search",
    "BinaryRerankIndex": "geoemb.retrieval.search",
    "BuildLockedError": "geoemb.retrieval.build",
    "CorpusBuilder": "geoemb.retrieval.store",
    "CorpusIntegrityError": "geoemb.retrieval.build",
    "CorpusStore": "geoemb.retrieval.store",
    "HAMMING_BACKENDS": "geoemb.retrieval.search",
    "SearchIndex": "geoemb.retrieval.search",
    "Timing": "geoemb.retrieval.bench",
    "build_index": "geoemb.retrieval.search",
    "compose": "geoemb.retrieval.exemplar",
    "default_hamming_backend": "geoemb.retrieval.search",
    "drop_ids": "geoemb.retrieval.recall",
    "exact_knn": "geoemb.retrieval.recall",
    "exemplar_query": "geoemb.retrieval.exemplar",
    "exemplar_scores": "geoemb.retrieval.exemplar",
    "export_geoparquet": "geoemb.retrieval.exemplar",
    "hamming_distances": "geoemb.retrieval.knn",
    "hamming_knn": "geoemb.retrieval.knn",
    "hamming_knn_classify": "geoemb.retrieval.knn",
    "hamming_reference": "geoemb.retrieval.hamming",
    "invert_codes": "geoemb.retrieval.hamming",
    "iter_parquet_parts": "geoemb.retrieval.store",
    "measure_qps": "geoemb.retrieval.bench",
    "recall_at_k": "geoemb.retrieval.recall",
    "score_raster": "geoemb.retrieval.exemplar",
    "search_excluding": "geoemb.retrieval.recall",
    "sign_encoder": "geoemb.retrieval.search",
    "split_antimeridian": "geoemb.retrieval.store",
    "threshold_view": "geoemb.retrieval.exemplar",
    "tie_aware_recall": "geoemb.retrieval.recall",
    "top_k_view": "geoemb.retrieval.exemplar",
    "write_manifest": "geoemb.retrieval.store",
    "write_score_raster": "geoemb.retrieval.exemplar",
}

__all__ = [
    "BACKENDS",
    "HAMMING_BACKENDS",
    "BinaryRerankIndex",
    "BuildLockedError",
    "CorpusIntegrityError",
    "CorpusBuilder",
    "CorpusStore",
    "SearchIndex",
    "Timing",
    "build_index",
    "compose",
    "default_hamming_backend",
    "drop_ids",
    "exact_knn",
    "exemplar_query",
    "exemplar_scores",
    "export_geoparquet",
    "hamming_distances",
    "hamming_knn",
    "hamming_knn_classify",
    "hamming_reference",
    "invert_codes",
    "iter_parquet_parts",
    "measure_qps",
    "recall_at_k",
    "score_raster",
    "search_excluding",
    "sign_encoder",
    "split_antimeridian",
    "threshold_view",
    "tie_aware_recall",
    "top_k_view",
    "write_manifest",
    "write_score_raster",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
