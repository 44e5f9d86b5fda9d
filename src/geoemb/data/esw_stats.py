"""Earth Surface Water band statistics: the TorchGeo tutorial's ``calc_statistics``, streamed and cached.

``compute_band_stats`` averages per-file band mean/std over the training scenes (the tutorial's
approximation of the pooled std); :func:`cached_band_stats` keeps the result as JSON beside the
data, keyed by the file names, sizes and mtimes (and :data:`STATS_VERSION`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from geoemb.data.esw_files import BANDS, SCALE, ESWDataError
from geoemb.utils.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["STATS_FILE", "STATS_VERSION", "cached_band_stats", "compute_band_stats"]

STATS_FILE = ".geoemb_esw_band_stats.json"
STATS_VERSION = 2  # 2: non-finite pixels left out of the statistics


def _file_band_stats(path: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and population std (ddof=0) of ``read() * scale`` over its finite pixels.

    Streams block windows and merges partial moments (Chan et al.) in float64, so memory is
    O(block), and the result equals ``np.nanmean/np.nanstd`` of ``img * scale`` with non-finite
    values (NaN/inf: invalid data, never numbers) left out -- for integer scenes simply
    ``(img * scale).reshape(C, -1).mean/std(axis=1)``.

    Raises
    ------
    ESWDataError naming the file if a band has no finite pixel at all.
    """
    with rasterio.open(path) as src:
        n_b = src.count
        count = np.zeros(n_b)
        mean = np.zeros(n_b)
        m2 = np.zeros(n_b)
        for _, window in src.block_windows(1):
            block = src.read(window=window).astype(np.float64).reshape(n_b, -1) * scale
            if block.shape[1] == 0:
                continue
            finite = np.isfinite(block)
            nb = finite.sum(axis=1).astype(np.float64)
            vals = np.where(finite, block, 0.0)
            bmean = np.divide(vals.sum(axis=1), nb, out=np.zeros(n_b), where=nb > 0)
            bm2 = (np.where(finite, block - bmean[:, None], 0.0) ** 2).sum(axis=1)
            tot = count + nb
            delta = bmean - mean
            w = np.divide(nb, tot, out=np.zeros(n_b), where=tot > 0)
            mean = mean + delta * w
            m2 = m2 + bm2 + delta**2 * count * w
            count = tot
    if (count == 0).any():
        bad = [BANDS[i] if i < len(BANDS) else str(i) for i in np.flatnonzero(count == 0)]
        raise ESWDataError(f"scene {path}: band(s) {bad} have no finite pixel (all NaN/inf)")
    return mean, np.sqrt(m2 / count)


def compute_band_stats(
    files: Sequence[str | os.PathLike], scale: float = SCALE
) -> tuple[list[float], list[float]]:
    """The TorchGeo tutorial's ``calc_statistics``: average over files of per-file band mean/std.

    For each file: ``img = read() * scale``; per band mean and std (ddof=0) over all finite
    pixels (NaN/inf are invalid data and left out; integer scenes have none); then
    the per-file means and the per-file stds are averaged over files (an approximation of the
    pooled std, as the tutorial's docstring says).

    Returns
    -------
    (mean, std) lists of length C in scaled units (reflectance).
    """
    if not files:
        raise ESWDataError("compute_band_stats: no training files")
    acc_mean = acc_std = 0.0
    for f in files:
        m, s = _file_band_stats(Path(f), scale)
        acc_mean = acc_mean + m
        acc_std = acc_std + s
    mean = np.asarray(acc_mean) / len(files)
    std = np.asarray(acc_std) / len(files)
    return [float(v) for v in mean], [float(v) for v in std]


def _files_key(files: Sequence[Path], scale: float) -> str:
    h = hashlib.sha256()
    h.update(f"v{STATS_VERSION};scale={scale!r}".encode())
    for f in sorted(Path(p) for p in files):
        st = f.stat()
        h.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cached_band_stats(
    files: Sequence[Path], cache_file: Path | None, scale: float = SCALE
) -> tuple[list[float], list[float], bool]:
    """:func:`compute_band_stats` with a JSON cache keyed by file names, sizes and mtimes.

    Returns
    -------
    (mean, std, cache_hit)
    """
    key = _files_key(files, scale)
    if cache_file is not None and cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text())
            if data.get("key") == key:
                return list(data["mean"]), list(data["std"]), True
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable band-stats cache %s", cache_file)
    mean, std = compute_band_stats(files, scale)
    if cache_file is not None:
        payload = {
            "key": key,
            "scale": scale,
            "method": "tutorial calc_statistics: mean over files of per-file band mean/std (ddof=0)",
            "bands": list(BANDS),
            "files": sorted(Path(f).name for f in files),
            "mean": mean,
            "std": std,
        }
        try:
            atomic_write_text(cache_file, json.dumps(payload, indent=1))
        except OSError as err:  # read-only dataset folder: stats still correct, just not cached
            log.warning("could not write band-stats cache %s: %s", cache_file, err)
    return mean, std, False
