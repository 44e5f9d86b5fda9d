"""Reading embedding rasters from URLs: href rewriting, GDAL settings, a bounded header cache.

Rasters are opened by GDAL: ``https://…`` through ``/vsicurl/`` (HTTP range reads: a window of a
COG costs its header plus the blocks it touches), ``s3://`` through ``/vsis3/`` (the user's AWS
settings apply; the Source Cooperative mirror is public, so ``AWS_NO_SIGN_REQUEST=YES`` works,
or rewrite its hrefs to HTTPS — :data:`geoemb.sources.aef.HREF_REWRITE` does by default),
``gs://`` through ``/vsigs/`` (Google's bucket is requester-pays: it needs credentials and a
billing project).

Opening a COG reads its header (the IFDs and the tile offset arrays: tens of KiB for a 64-band
8192² file). :class:`RasterCache` keeps opened datasets in a bounded LRU (one per thread and
file), so the header is read once per file, not once per window.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from geoemb.zonal.sources import is_remote, raster_error

__all__ = ["GDAL_REMOTE", "RasterCache", "is_remote", "remote_env", "rewrite_href"]

#: GDAL settings for reading COGs over HTTP: no directory listing on open (one request fewer
#: per file, and no 404 noise), merged consecutive ranges, .tif/.tiff/.vrt only.
GDAL_REMOTE = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.vrt,.TIF,.TIFF",
    "GDAL_HTTP_MAX_RETRY": "2",
}


@contextmanager
def remote_env(**overrides: Any) -> Iterator[None]:
    """``rasterio.Env`` with :data:`GDAL_REMOTE` (+ ``overrides``) for reads inside the block."""
    with rasterio.Env(**{**GDAL_REMOTE, **overrides}):
        yield


def rewrite_href(href: str, rules: Mapping[str, str] | None, root: str | None = None) -> str:
    """Apply the first matching ``prefix -> replacement`` rule of ``rules`` to ``href``.

    A replacement that is neither a URL nor absolute is a folder relative to ``root`` (e.g. the
    index's folder), so ``{"s3://…/annual/": ""}`` maps the mirror's hrefs onto a local copy laid
    out like the bucket.
    """
    for prefix, repl in (rules or {}).items():
        if href.startswith(prefix):
            out = str(repl) + href[len(prefix) :]
            if root is not None and not is_remote(out) and not os.path.isabs(out):
                out = os.path.abspath(os.path.join(root, out))
            return out
    return href


class RasterCache:
    """A bounded LRU of open rasterio datasets: one per (thread, path), at most ``maxsize`` per
    thread; evicted datasets are closed. Use as a context manager (closes everything).

    Attributes
    ----------
    opens : int
        How many times a file was opened (a header read) — the quantity the cache saves.
    """

    def __init__(self, maxsize: int = 64) -> None:
        if maxsize < 1:
            raise ValueError(f"RasterCache maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.opens = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Any] = []

    def get(self, path: str) -> Any:
        """The open dataset for ``path`` (opened on first use).

        Raises
        ------
        InputError
            The file cannot be opened (HTTP 404 -> TileNotFoundError, 403/416, damaged file),
            naming the path or URL.
        """
        lru = getattr(self._local, "lru", None)
        if lru is None:
            lru = self._local.lru = collections.OrderedDict()
        ds = lru.get(path)
        if ds is not None:
            lru.move_to_end(path)
            return ds
        try:
            ds = rasterio.open(path)
        except RasterioError as e:
            raise raster_error(path, e) from e
        with self._lock:
            self.opens += 1
            self._all.append(ds)
        lru[path] = ds
        while len(lru) > self.maxsize:
            _, old = lru.popitem(last=False)
            old.close()
            with self._lock:
                self._all.remove(old)
        return ds

    def close(self) -> None:
        with self._lock:
            for ds in self._all:
                ds.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> RasterCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
