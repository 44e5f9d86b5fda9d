"""On-disk size of encoded vectors: a pyarrow table written as Parquet (+zstd) to a memory buffer."""

from __future__ import annotations

import numpy as np


def _arrow_type(dtype: np.dtype):
    import pyarrow as pa

    table = {
        np.dtype(np.float32): pa.float32(),
        np.dtype(np.float16): pa.float16(),
        np.dtype(np.int8): pa.int8(),
        np.dtype(np.uint8): pa.uint8(),
    }
    if dtype not in table:
        raise ValueError(f"codes dtype {dtype} not supported (float32/float16/int8/uint8)")
    return table[dtype]


def codes_table(codes: np.ndarray, layout: str = "binary"):
    """``(N, W)`` codes → pyarrow Table with one column ``embedding``.

    ``layout="binary"``: ``FixedSizeBinary(W·itemsize)`` (the raw code bytes of each row);
    ``layout="list"``: ``FixedSizeList<type>[W]`` (TerraBit's layout; Parquet then also stores
    repetition/definition levels per element, which costs a few bytes per row).
    """
    import pyarrow as pa

    codes = np.ascontiguousarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, W), got shape {codes.shape}")
    if layout == "list":
        flat = pa.array(codes.reshape(-1), type=_arrow_type(codes.dtype))
        col = pa.FixedSizeListArray.from_arrays(flat, codes.shape[1])
    elif layout == "binary":
        _arrow_type(codes.dtype)  # validate dtype
        width = codes.shape[1] * codes.dtype.itemsize
        buf = pa.py_buffer(codes.view(np.uint8).reshape(-1).tobytes())
        col = pa.Array.from_buffers(pa.binary(width), codes.shape[0], [None, buf])
    else:
        raise ValueError(f"layout must be 'binary' or 'list', got {layout!r}")
    return pa.table({"embedding": col})


def parquet_nbytes(
    codes: np.ndarray, compression: str = "zstd", level: int | None = None, layout: str = "binary"
) -> int:
    """Size in bytes of ``codes`` written as a single-column Parquet file (to an in-memory buffer)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(
        codes_table(codes, layout),
        sink,
        compression=compression,
        compression_level=level,
        use_dictionary=False,
    )
    return int(sink.getvalue().size)


def parquet_bytes_per_vector(
    codes: np.ndarray, compression: str = "zstd", level: int | None = None, layout: str = "binary"
) -> float:
    """Measured on-disk bytes per vector (file size / N, includes the Parquet footer overhead)."""
    n = np.asarray(codes).shape[0]
    if n == 0:
        raise ValueError("need at least one code row to measure Parquet size")
    return parquet_nbytes(codes, compression, level, layout) / n
