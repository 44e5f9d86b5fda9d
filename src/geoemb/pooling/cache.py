"""Pooled-feature cache: ``<cache_dir>/<encoder>/<method>/<split_type>.npz``, keyed by content.

The ``.npz`` holds exactly the GeoPool reference keys ``x_train, y_train, x_test, y_test`` (float32
/ int32), so reference scripts read it unchanged. A JSON sidecar beside it (``<split_type>.json``)
stores the cache *key* and the SHA-256 of the ``.npz`` bytes:

* the key hashes what the features were computed from: the bytes of every file read (split files
  and embedding chips, :func:`files_digest`), the pooling method and its parameters
  (:func:`cache_key`). Changed files, another method or other parameters give another key, so a
  stale entry is never reused — whatever the folder is called;
* the ``.npz`` digest catches an ``.npz`` replaced after its sidecar was written.

A hit needs both. A missing, unreadable or foreign entry is a miss (recomputed and replaced
atomically). ``trust_unkeyed=True`` also reuses ``.npz`` files that have no sidecar at all (the
reference's pre-pooled archives), which is the user's explicit choice.

Plain numpy: no torch, Hydra or Lightning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoemb.utils.io import atomic_path, atomic_write_text

__all__ = [
    "FEATURE_KEYS",
    "PooledFeatureCache",
    "SplitCache",
    "cache_key",
    "cache_path",
    "files_digest",
    "load_pooled",
    "read_sidecar",
    "save_pooled",
]

log = logging.getLogger(__name__)

FEATURE_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Bump when the pooling code changes what a cached entry holds (old entries become misses).
FORMAT_VERSION = 2
_CHUNK = 1 << 20


def cache_path(cache_dir: str | os.PathLike, encoder: str, method: str, split_type: str) -> Path:
    """``<cache_dir>/<encoder>/<method>/<split_type>.npz`` (reference ``embeddings/`` layout)."""
    return Path(cache_dir) / encoder / method / f"{split_type}.npz"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: Iterable[str | os.PathLike], memo: dict[str, str] | None = None) -> str:
    """SHA-256 over the *bytes* of ``paths`` (in the given order) — the data part of a cache key.

    Parameters
    ----------
    paths : files read to compute the features (split files first, then the chips).
    memo : ``{resolved path: sha256}`` shared across calls of one run (the random and spatial
        splits read the same chips), so each file is hashed once per run.

    Only the bytes count (not names, sizes or modification times): a folder moved elsewhere keeps
    its key, a file rewritten in place gets a new one.
    """
    memo = {} if memo is None else memo
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        key = str(p.resolve())
        if key not in memo:
            memo[key] = _file_sha256(p)
        h.update(memo[key].encode())
    return h.hexdigest()


def cache_key(data_digest: str, method: str, params: Mapping[str, Any] | None = None) -> str:
    """Key of one entry: data digest + method + its parameters (JSON, sorted) + format version."""
    blob = json.dumps(
        {"data": data_digest, "method": method, "params": dict(params or {}),
         "format": FORMAT_VERSION},
        sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def save_pooled(
    path: str | os.PathLike,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    meta: dict | None = None,
) -> Path:
    """Write a pooled-feature cache file (``np.savez_compressed``, reference keys and dtypes).

    ``meta`` goes to a ``.json`` sidecar beside the ``.npz`` together with ``npz_sha256`` (the npz
    keeps exactly the reference keys so reference scripts read it unchanged). Both are written
    atomically, the sidecar last, with the digest of the bytes this call wrote: when two runs write
    the same entry at once, a sidecar never vouches for the other run's ``.npz``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                x_train=np.asarray(x_train, dtype=np.float32),
                y_train=np.asarray(y_train, dtype=np.int32),
                x_test=np.asarray(x_test, dtype=np.float32),
                y_test=np.asarray(y_test, dtype=np.int32),
            )
        digest = _file_sha256(tmp)  # of the bytes written here, not of whatever is there later
    if meta is not None:
        side = {**meta, "npz_sha256": digest}
        atomic_write_text(path.with_suffix(".json"), json.dumps(side, sort_keys=True, indent=1))
    return path


def load_pooled(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a pooled-feature cache file -> dict with ``x_train, y_train, x_test, y_test``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = set(FEATURE_KEYS) - set(z.files)
            if missing:
                raise ValueError(f"{path}: pooled-feature cache lacks keys {sorted(missing)}")
            return {k: z[k] for k in FEATURE_KEYS}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise OSError(f"cannot read pooled-feature cache {path}: {e}") from e


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The JSON sidecar of a cache ``.npz`` (``None`` if absent or unreadable)."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


@dataclass
class PooledFeatureCache:
    """A pooled-feature cache folder.

    Parameters
    ----------
    root : the ``embeddings/`` folder.
    trust_unkeyed : also reuse ``.npz`` files without a sidecar (reference archives).
    """

    root: Path
    trust_unkeyed: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def get(self, encoder: str, method: str, split_type: str, key: str) -> dict | None:
        """The cached arrays of an entry written for ``key``, else ``None``."""
        path = cache_path(self.root, encoder, method, split_type)
        if not path.is_file():
            return None
        meta = read_sidecar(path)
        if meta is None and not self.trust_unkeyed:
            log.info("pooled-feature cache %s has no sidecar: recomputing it", path)
            return None
        if meta is not None:
            if meta.get("key") != key:
                log.info("pooled-feature cache %s was computed from other data or parameters: "
                         "recomputing it", path)  # fmt: skip
                return None
            if meta.get("npz_sha256") != _file_sha256(path):
                log.warning("pooled-feature cache %s changed after it was written: recomputing it",
                            path)  # fmt: skip
                return None
        try:
            return load_pooled(path)
        except (OSError, ValueError) as e:
            log.warning("%s; recomputing it", e)
            return None

    def put(
        self, encoder: str, method: str, split_type: str, key: str, rec: Mapping[str, np.ndarray],
        info: Mapping[str, Any] | None = None,
    ) -> Path:  # fmt: skip
        """Write an entry (arrays ``rec`` with :data:`FEATURE_KEYS`) under ``key``."""
        meta = {"key": key, "encoder": encoder, "method": method, "split_type": split_type,
                **dict(info or {})}  # fmt: skip
        return save_pooled(cache_path(self.root, encoder, method, split_type),
                           **{k: rec[k] for k in FEATURE_KEYS}, meta=meta)  # fmt: skip


@dataclass
class SplitCache:
    """The cache entries of one encoder x split type over one data digest.

    ``params(method)`` are the parameters that change a method's features (values, size, seed…);
    the evaluator builds them, :func:`geoemb.pooling.features.pool_split` asks for them.
    """

    cache: PooledFeatureCache
    encoder: str
    split_type: str
    data_digest: str
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def key(self, method: str, extra: Mapping[str, Any] | None = None) -> str:
        return cache_key(self.data_digest, method, {**self.params, **dict(extra or {})})

    def chunk_dir(self, method: str) -> Path:
        """Folder of the partial (per-chunk) results of a Dask build of ``method``'s entry
        (``<split_type>.chunks/`` beside the ``.npz``; :mod:`geoemb.pooling.distributed`)."""
        return cache_path(self.cache.root, self.encoder, method, self.split_type).with_suffix(
            ".chunks"
        )

    def get(self, method: str, extra: Mapping[str, Any] | None = None) -> dict | None:
        return self.cache.get(self.encoder, method, self.split_type, self.key(method, extra))

    def put(self, method: str, rec: Mapping[str, np.ndarray],
            extra: Mapping[str, Any] | None = None) -> Path:  # fmt: skip
        info = {**self.info, **self.params, **dict(extra or {})}
        return self.cache.put(self.encoder, method, self.split_type, self.key(method, extra), rec,
                              info)  # fmt: skip
