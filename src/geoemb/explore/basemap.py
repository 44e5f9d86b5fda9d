"""The corpus' own basemap: PCA-RGB of the packed codes, fitted once and cached by manifest hash.

Each row's code is unpacked to bits ``{0, 1}^L``; a PCA fitted on an evenly spread sample of rows
(shards at evenly spaced row positions of the manifest, so every region contributes) maps it to 3
components, each stretched between its 2nd and 98th sample percentile to 0..255. Component signs
are fixed (largest-magnitude loading positive) so the colours are reproducible.

Cache (``cache_dir/<manifest sha256>/``): ``basemap.npz`` (the PCA) and ``tiles-v1/z/x/y.png``.
The directory name is the SHA-256 of ``manifest.parquet``, whose rows carry every shard's sha256,
so a rebuilt corpus gets a new directory and never shows a stale basemap; ``basemap.npz`` stores
the hash again and is refitted if it does not match or cannot be read.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoemb.compression.bitpack import unpack_bits
from geoemb.errors import OutputError
from geoemb.explore.index import CorpusIndex
from geoemb.explore.render import (
    TILE,
    dot_px,
    draw,
    empty_png,
    merc_y,
    png_bytes,
    rgb_image,
    tile_bounds,
)
from geoemb.utils.io import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)
CACHE_VERSION = 1
TILE_DIR = "tiles-v2"  # bump when the drawing changes


@dataclass
class PCAColors:
    """3-component PCA of code bits → RGB. ``components`` is ``(3, L)``, ``lo``/``hi`` ``(3,)``."""

    mean: np.ndarray
    components: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_fit: int
    manifest_sha256: str

    def project(self, codes: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """``(n, B)`` packed codes → ``(n, 3)`` float32 PCA scores."""
        dim = self.mean.shape[0]
        out = np.empty((len(codes), 3), np.float32)
        comps = self.components.astype(np.float32).T
        mean = self.mean.astype(np.float32)
        for a in range(0, len(codes), chunk):
            bits = unpack_bits(codes[a : a + chunk], dim).astype(np.float32)
            out[a : a + chunk] = (bits - mean) @ comps
        return out

    def rgb(self, codes: np.ndarray) -> np.ndarray:
        """``(n, B)`` packed codes → ``(n, 3)`` uint8 colours."""
        p = self.project(codes)
        t = (p - self.lo.astype(np.float32)) / (self.hi - self.lo).astype(np.float32)
        return np.rint(np.clip(t, 0, 1) * 255).astype(np.uint8)


def sample_shards(shard_rows: np.ndarray, sample_rows: int) -> np.ndarray:
    """Indices of shards at evenly spaced row positions holding about ``sample_rows`` rows."""
    total = int(shard_rows.sum())
    if total <= sample_rows:
        return np.nonzero(shard_rows)[0]
    cum = np.cumsum(shard_rows)
    m = max(1, int(np.ceil(len(shard_rows) * sample_rows / total)))
    pos = np.linspace(0, total - 1, m).astype(np.int64)
    return np.unique(np.searchsorted(cum, pos, side="right"))


def fit_pca_colors(bits: np.ndarray, manifest_sha256: str = "") -> PCAColors:
    """Fit the 3-component PCA on ``(m, L)`` {0,1} bits (covariance eigendecomposition)."""
    x = np.asarray(bits, dtype=np.float64)
    m, dim = x.shape
    if m < 2:
        raise ValueError(f"basemap PCA needs at least 2 rows, got {m}")
    mean = x.mean(0)
    xc = x - mean
    cov = (xc.T @ xc) / (m - 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:3]
    comps = np.zeros((3, dim))
    comps[: len(order)] = vecs[:, order].T
    for c in comps:  # deterministic sign: largest-magnitude loading positive
        j = np.argmax(np.abs(c))
        if c[j] < 0:
            c *= -1
    proj = xc @ comps.T
    lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return PCAColors(mean, comps, lo, hi, m, manifest_sha256)


def default_cache_root(corpus: Path) -> Path:
    """``<corpus>/_explore`` when writable, else ``$XDG_CACHE_HOME/geoemb/explore``."""
    local = corpus / "_explore"
    try:
        local.mkdir(exist_ok=True)
        probe = local / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return local
    except OSError:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return base / "geoemb" / "explore"


class Basemap:
    """PCA-RGB tiles of a corpus. ``tile(z, x, y)`` returns PNG bytes (memory + disk cached).

    Parameters
    ----------
    index:
        The corpus.
    cache_root:
        Parent of the per-manifest cache directory (default :func:`default_cache_root`).
    sample_rows:
        Rows the PCA is fitted on.
    disk_max_zoom:
        Tiles up to this zoom are also written to disk.
    """

    def __init__(self, index: CorpusIndex, cache_root: str | Path | None = None,
                 sample_rows: int = 50_000, disk_max_zoom: int = 10,
                 max_tile_rows: int = 20_000_000) -> None:  # fmt: skip
        self.index = index
        root = Path(cache_root) if cache_root is not None else default_cache_root(index.root)
        self.cache_dir = root / index.manifest_sha256
        self.sample_rows = sample_rows
        self.disk_max_zoom = disk_max_zoom
        self.max_tile_rows = max_tile_rows
        self._mem: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.model = self._load_or_fit()
        index.colorize = self.model.rgb

    # ------------------------------------------------------------------ PCA
    def _load_or_fit(self) -> PCAColors:
        path = self.cache_dir / "basemap.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if (int(z["version"]) == CACHE_VERSION
                            and str(z["manifest_sha256"]) == self.index.manifest_sha256
                            and z["mean"].shape == (self.index.dim,)):  # fmt: skip
                        return PCAColors(z["mean"], z["components"], z["lo"], z["hi"],
                                         int(z["n_fit"]), str(z["manifest_sha256"]))  # fmt: skip
                log.warning("%s: cache is for another corpus/version; refitting", path)
            except Exception as e:  # noqa: BLE001 - any unreadable cache (BadZipFile, EOF…) is refitted
                log.warning("%s: unreadable basemap cache (%s); refitting", path, e)
        model = self.fit()
        try:
            with atomic_path(path) as tmp:
                np.savez(tmp, version=CACHE_VERSION, manifest_sha256=model.manifest_sha256,
                         mean=model.mean, components=model.components, lo=model.lo,
                         hi=model.hi, n_fit=model.n_fit)  # fmt: skip
        except (OSError, OutputError) as e:  # a read-only cache is not fatal: model in memory
            log.warning("cannot write basemap cache %s (%s)", path, e)
        return model

    def fit(self) -> PCAColors:
        """Fit the PCA on an evenly spread sample (see :func:`sample_shards`)."""
        idx = self.index
        sel = sample_shards(idx.shard_rows, self.sample_rows)
        idx.load(sel)
        pos = np.concatenate([np.arange(idx.offsets[i], idx.offsets[i + 1]) for i in sel]
                             ) if len(sel) else np.zeros(0, np.int64)  # fmt: skip
        codes = idx.codes[pos]
        if len(codes) < 2:
            raise ValueError(f"{idx.root}: the corpus has fewer than 2 rows; nothing to map")
        if len(codes) > self.sample_rows:
            codes = codes[np.linspace(0, len(codes) - 1, self.sample_rows).astype(np.int64)]
        return fit_pca_colors(unpack_bits(codes, idx.dim), idx.manifest_sha256)

    # ------------------------------------------------------------------ tiles
    def render(self, z: int, x: int, y: int) -> bytes:
        """Draw tile ``z/x/y`` (no cache)."""
        w, s, e, n = tile_bounds(z, x, y)
        if n <= -90 or s >= 90:
            return empty_png()
        dot = self.dot_px(z)
        # widen the row filter so footprints drawn at the dot size near the edge are complete
        pad_x = (dot + 1) * (e - w) / TILE
        pad_y = (dot + 1) * float(n - s) / TILE
        q = (max(-180.0, w - pad_x), max(-90.0, s - pad_y), min(180.0, e + pad_x),
             min(90.0, n + pad_y))  # fmt: skip
        if merc_y(n) - merc_y(s) <= 0:
            return empty_png()
        rows = self.index.rows(q, max_rows=self.max_tile_rows, rgb=True)
        if len(rows) == 0:
            return empty_png()
        order = np.argsort(rows.ids, kind="stable")
        grid = draw(rows.bbox[order], rows.rgb[order], (w, s, e, n), TILE, TILE, reduce="mean",
                    min_px=dot)  # fmt: skip
        if np.isnan(grid[..., 0]).all():
            return empty_png()
        return png_bytes(rgb_image(grid))

    def dot_px(self, z: int) -> int:
        """Dot size at zoom ``z`` from the corpus' mean density (the same for every tile)."""
        w, s, e, n = self.index.extent
        world = TILE * 2**z
        area = (max(e - w, 1e-9) / 360 * world) * (
            max(float(merc_y(n) - merc_y(s)), 1e-9) / (2 * np.pi) * world
        )
        return dot_px(self.index.n_rows, area, hi=8)

    def tile(self, z: int, x: int, y: int) -> bytes:
        """Tile PNG bytes, from memory, disk (z ≤ ``disk_max_zoom``) or freshly drawn."""
        key = (z, x, y)
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        path = self.cache_dir / TILE_DIR / str(z) / str(x) / f"{y}.png"
        data = None
        if z <= self.disk_max_zoom and path.is_file():
            data = path.read_bytes()
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")):
                data = None  # truncated/corrupt cache file: redraw
        if data is None:
            data = self.render(z, x, y)
            if z <= self.disk_max_zoom:
                try:
                    atomic_write_bytes(path, data)
                except (OSError, OutputError) as e:
                    log.warning("cannot cache tile %s (%s)", path, e)
        with self._lock:
            self._mem[key] = data
            while len(self._mem) > 4096:
                self._mem.popitem(last=False)
        return data
