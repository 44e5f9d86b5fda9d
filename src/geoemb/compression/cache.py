"""Content-keyed caches: a result computed from some arrays is reused only for the same arrays.

A cache entry's key is :func:`fingerprint` of everything it was computed from (the arrays' bytes,
dtypes and shapes, and the protocol parameters as JSON). The key is part of the file name *and*
stored inside the file, so a renamed, stale or foreign file is never mistaken for a hit; an
unreadable (truncated) entry is a miss, recomputed and replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.utils.io import atomic_path

log = logging.getLogger(__name__)

KEY_FIELD = "__cache_key__"


def fingerprint(arrays: Mapping[str, Any] | None = None, params: Any = None, n: int = 16) -> str:
    """Hex digest (``n`` chars of SHA-256) of named arrays (bytes, dtype, shape) and JSON params.

    Parameters
    ----------
    arrays:
        ``{name: array}``; hashed in sorted name order, each as C-contiguous bytes plus its dtype
        and shape (so a reshaped or re-typed array has another key).
    params:
        Any JSON-serialisable protocol parameters (``sort_keys`` makes dict order irrelevant).
    """
    h = hashlib.sha256()
    for name in sorted(arrays or {}):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(memoryview(a.reshape(-1).view(np.uint8)))
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:n]


def read_npz_cache(path: str | os.PathLike, key: str) -> dict[str, np.ndarray] | None:
    """Arrays of the cache file ``path`` if it exists, is readable and was written for ``key``."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        log.warning("cache file %s is unreadable (%s); recomputing it", path, e)
        return None
    stored = out.pop(KEY_FIELD, None)
    if stored is None or str(stored) != key:
        log.warning("cache file %s was written for other data (key %s != %s); recomputing it",
                    path, stored, key)  # fmt: skip
        return None
    return out


def write_npz_cache(path: str | os.PathLike, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` plus ``key`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{KEY_FIELD: np.array(key)}, **arrays)
    return path
