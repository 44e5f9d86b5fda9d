"""Embedding compression: quantizers, reducers, rotations, bit packing.

Main entry point: :func:`build` (``build("pca64+int8").fit(X_train)``), see
:mod:`geoemb.compression.registry` for the config grammar and :data:`COMPRESSORS` for the registry.
Hamming kNN on packed sign codes is :mod:`geoemb.retrieval.knn` (the one Hamming top-k); the
compression study (probes, statistics, caches) is :mod:`geoemb.compression.study`.
"""

from geoemb.compression.base import (
    Compressor,
    ConfigFailedError,
    InfeasibleConfigError,
    NotFittedError,
)
from geoemb.compression.quantizers import (
    AffineQuantizer,
    BinaryQuantizer,
    Float16,
    Float32,
    ProductQuantizer,
    TernaryQuantizer,
    pack_uint,
    unpack_uint,
)
from geoemb.compression.reducers import (
    PCAReducer,
    Pipeline,
    RandomProjectionReducer,
    RandomSubsetSelector,
    Reducer,
    SVDReducer,
    TopVarianceSelector,
)
from geoemb.compression.registry import (
    BLOG_CONFIGS,
    COMPRESSORS,
    available,
    build,
    describe,
    has_reducer,
    infeasible_reason,
    nominal_bits,
    output_dim,
)
from geoemb.compression.rotations import (
    RaBitQ,
    RotateAffine,
    RotateSign,
    TurboQuantMSE,
    TurboQuantProd,
    haar_rotation,
    lloyd_max_codebook,
)
from geoemb.compression.storage import parquet_bytes_per_vector, parquet_nbytes

__all__ = [
    "BLOG_CONFIGS", "COMPRESSORS", "AffineQuantizer", "BinaryQuantizer", "Compressor",
    "ConfigFailedError", "Float16",
    "Float32", "InfeasibleConfigError", "NotFittedError", "PCAReducer", "Pipeline",
    "ProductQuantizer", "RaBitQ", "RandomProjectionReducer", "RandomSubsetSelector", "Reducer",
    "RotateAffine", "RotateSign", "SVDReducer", "TernaryQuantizer", "TopVarianceSelector",
    "TurboQuantMSE", "TurboQuantProd", "available", "build", "describe", "haar_rotation",
    "has_reducer", "infeasible_reason", "lloyd_max_codebook", "nominal_bits", "output_dim",
    "pack_uint", "parquet_bytes_per_vector", "parquet_nbytes", "unpack_uint",
]  # fmt: skip
