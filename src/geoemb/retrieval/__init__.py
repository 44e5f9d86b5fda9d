"""Binary retrieval (TerraBit): exact search backends, recall@k, QPS, sharded corpus, exemplar queries.

Library (no Hydra/Lightning needed)::

    from geoemb.retrieval import build_index, exact_knn, recall_at_k
    index = build_index("hamming_numba", codes, dim=1024)
    dist, ids = index.search(query_codes, k=10)

CLI: ``python -m geoemb.retrieval {synth,build-corpus,query,exemplar,bench} --help``.
"""

from geoemb.retrieval.bench import Timing, measure_qps
from geoemb.retrieval.build import BuildLockedError, CorpusIntegrityError
from geoemb.retrieval.exemplar import (
    compose,
    exemplar_query,
    exemplar_scores,
    export_geoparquet,
    score_raster,
    threshold_view,
    top_k_view,
    write_score_raster,
)
from geoemb.retrieval.hamming import hamming_reference, invert_codes
from geoemb.retrieval.knn import hamming_distances, hamming_knn, hamming_knn_classify
from geoemb.retrieval.recall import (
    drop_ids,
    exact_knn,
    recall_at_k,
    search_excluding,
    tie_aware_recall,
)
from geoemb.retrieval.search import (
    BACKENDS,
    HAMMING_BACKENDS,
    BinaryRerankIndex,
    SearchIndex,
    build_index,
    default_hamming_backend,
    sign_encoder,
)
from geoemb.retrieval.store import (
    CorpusBuilder,
    CorpusStore,
    iter_parquet_parts,
    split_antimeridian,
    write_manifest,
)

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
