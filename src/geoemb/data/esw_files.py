"""Earth Surface Water files: the real layout, name pairing and header checks (no Lightning).

Real layout (reference/earth_surface_water.md §1)::

    <root>/dset-s2/tra_scene/S2A_L2A_20190125_N0211_R034_6Bands_S1.tif   6 bands B02 B03 B04 B08 B11 B12, DN
    <root>/dset-s2/tra_truth/S2A_L2A_20190125_N0211_R034_S1_Truth.tif    1 band {0 = land, 1 = water}
    <root>/dset-s2/val_scene/...  <root>/dset-s2/val_truth/...

``root`` may be the folder containing ``dset-s2`` or ``dset-s2`` itself. Scenes and truths are
paired **by name** (truth = drop ``_6Bands``, insert ``_Truth`` before ``.tif``), never by sorted
order. Every error names the file and what was expected.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from geoemb.data.source import STAND_IN_HINT
from geoemb.errors import DataNotFoundError, InputError

__all__ = [
    "BANDS",
    "DATASET_URL",
    "GET_DATA",
    "SCALE",
    "SCENE_REGEX",
    "TRUTH_REGEX",
    "ESWDataError",
    "ESWNotFoundError",
    "RasterInfo",
    "inspect_raster",
    "missing_dset",
    "nonfinite_pixels",
    "not_found_message",
    "pair_split",
    "resolve_dset_dir",
    "scene_name_for",
    "truth_name_for",
    "validate_pairs",
]

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
SCALE = 1e-4
DATASET_URL = (
    "https://hf.co/datasets/cordmaur/earth_surface_water/resolve/main/earth_surface_water.zip"
)
GET_DATA = (
    f"Download {DATASET_URL}, extract it and point data.root at the folder that contains "
    "dset-s2/ (or at dset-s2/ itself)."
)
SCENE_REGEX = r"^S2[AB]_L2A_(?P<date>\d{8})_N\d{4}_R\d{3}_6Bands_S\d+\.tif$"
TRUTH_REGEX = r"^S2[AB]_L2A_(?P<date>\d{8})_N\d{4}_R\d{3}_S\d+_Truth\.tif$"
SPLITS = {"train": "tra", "tra": "tra", "val": "val", "test": "val"}


class ESWDataError(InputError):
    """Bad Earth Surface Water input; the message names the file and what was expected."""


class ESWNotFoundError(DataNotFoundError):
    """The Earth Surface Water folder is missing; the message says where to get it."""


def not_found_message(where: Path, what: str) -> str:
    """Message for a missing dataset folder (how to get it, and the stand-in)."""
    return f"Earth Surface Water data not found: {what} ({where}). {GET_DATA} {STAND_IN_HINT}"


def missing_dset(root: str | os.PathLike) -> str | None:
    """``None`` if ``root`` (or ``root/dset-s2``) holds the split folders, else what is missing.

    The cheap check of :class:`~geoemb.data.source.DataSource` (a few ``stat`` calls).
    """
    root = Path(root).expanduser()
    if not root.exists():
        return "folder does not exist"
    for cand in (root / "dset-s2", root):
        if (cand / "tra_scene").is_dir() or (cand / "val_scene").is_dir():
            return None
    return "no dset-s2/{tra,val}_{scene,truth} folders inside"


def truth_name_for(scene_name: str) -> str:
    """``S2A_L2A_20190125_N0211_R034_6Bands_S1.tif`` -> ``S2A_L2A_20190125_N0211_R034_S1_Truth.tif``."""
    stem = scene_name[: -len(".tif")] if scene_name.endswith(".tif") else scene_name
    parts = stem.split("_")
    return "_".join(parts[:-2]) + "_" + parts[-1] + "_Truth.tif"


def scene_name_for(truth_name: str) -> str:
    """Inverse of :func:`truth_name_for`."""
    stem = truth_name[: -len("_Truth.tif")] if truth_name.endswith("_Truth.tif") else truth_name
    parts = stem.split("_")
    return "_".join(parts[:-1]) + "_6Bands_" + parts[-1] + ".tif"


def resolve_dset_dir(root: str | os.PathLike) -> Path:
    """Return the ``dset-s2`` folder for ``root`` (its parent or itself).

    Raises
    ------
    ESWNotFoundError if neither ``root/dset-s2/tra_scene`` nor ``root/tra_scene`` exists.
    """
    root = Path(root).expanduser()
    missing = missing_dset(root)
    if missing is not None:
        raise ESWNotFoundError(not_found_message(root, missing))
    for cand in (root / "dset-s2", root):
        if (cand / "tra_scene").is_dir() or (cand / "val_scene").is_dir():
            return cand
    raise AssertionError("unreachable")  # pragma: no cover


def _list_tifs(folder: Path) -> list[Path]:
    """Visible ``*.tif`` files of a folder (hidden/temporary files such as ``.x.tmp.tif`` skipped)."""
    return sorted(p for p in folder.glob("*.tif") if not p.name.startswith("."))


def pair_split(dset_dir: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """Pair ``<split>_scene/*.tif`` with ``<split>_truth/*.tif`` by name.

    Parameters
    ----------
    dset_dir : the ``dset-s2`` folder.
    split : ``"train"``/``"tra"`` or ``"val"``/``"test"``.

    Returns
    -------
    list of (scene_path, truth_path), sorted by scene name.

    Raises
    ------
    ESWNotFoundError if a split folder is missing; ESWDataError listing every scene without its
    truth (and vice versa) and every name outside the ESW grammar.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    prefix = SPLITS[split]
    dset_dir = Path(dset_dir)
    scene_dir, truth_dir = dset_dir / f"{prefix}_scene", dset_dir / f"{prefix}_truth"
    for d in (scene_dir, truth_dir):
        if not d.is_dir():
            raise ESWNotFoundError(not_found_message(d, f"missing folder {d.name}/"))
    scenes = {p.name: p for p in _list_tifs(scene_dir)}
    truths = {p.name: p for p in _list_tifs(truth_dir)}
    problems: list[str] = []
    for name in sorted(scenes):
        if not re.match(SCENE_REGEX, name):
            problems.append(
                f"{scene_dir / name}: name does not follow the ESW scene grammar "
                f"S2{{A|B}}_L2A_YYYYMMDD_Nxxxx_Rxxx_6Bands_S<k>.tif"
            )
        elif truth_name_for(name) not in truths:
            problems.append(
                f"scene {scene_dir / name} has no truth: expected {truth_dir / truth_name_for(name)}"
            )
    for name in sorted(truths):
        if not re.match(TRUTH_REGEX, name):
            problems.append(
                f"{truth_dir / name}: name does not follow the ESW truth grammar "
                f"S2{{A|B}}_L2A_YYYYMMDD_Nxxxx_Rxxx_S<k>_Truth.tif"
            )
        elif scene_name_for(name) not in scenes:
            problems.append(
                f"truth {truth_dir / name} has no scene: expected {scene_dir / scene_name_for(name)}"
            )
    if problems:
        more = f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ESWDataError(
            f"Earth Surface Water {prefix} split: scene/truth files do not pair by name{more}:\n  "
            + "\n  ".join(problems[:20])
        )
    if not scenes:
        raise ESWNotFoundError(not_found_message(scene_dir, f"no *.tif files in {scene_dir.name}/"))
    return [(scenes[n], truths[truth_name_for(n)]) for n in sorted(scenes)]


@dataclass(frozen=True)
class RasterInfo:
    """Header facts of one GeoTIFF."""

    path: Path
    count: int
    height: int
    width: int
    crs: Any
    transform: Any


def inspect_raster(path: Path, expected_count: int, role: str) -> RasterInfo:
    """Open ``path`` and check it is readable, georeferenced and has ``expected_count`` bands.

    Raises
    ------
    ESWDataError naming the file for an unreadable file, a file without CRS/geotransform
    (older ESW copies; torchgeo cannot place it) or a wrong band count.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                info = RasterInfo(path, src.count, src.height, src.width, src.crs, src.transform)
    except RasterioIOError as err:
        raise ESWDataError(f"cannot read {role} {path}: {err}") from err
    if info.crs is None or info.transform.is_identity:
        raise ESWDataError(
            f"{role} {path} has no georeferencing (CRS={info.crs}, transform identity="
            f"{info.transform.is_identity}); every ESW file needs its UTM CRS and geotransform. "
            f"Remove the file or restore its georeferencing (e.g. copy it from the original product)."
        )
    if info.count != expected_count:
        raise ESWDataError(
            f"{role} {path} has {info.count} band(s); expected {expected_count} "
            + ("(B02, B03, B04, B08, B11, B12)" if expected_count == 6 else "(water mask {0,1})")
        )
    return info


def validate_pairs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Check every scene (6 bands) and truth (1 band) and that each pair shares one grid."""
    for scene, truth in pairs:
        s = inspect_raster(scene, 6, "scene")
        t = inspect_raster(truth, 1, "truth")
        if (
            (s.height, s.width) != (t.height, t.width)
            or s.crs != t.crs
            or not s.transform.almost_equals(t.transform)
        ):
            raise ESWDataError(
                f"scene {scene} and truth {truth} are not on the same grid: scene "
                f"{s.height}x{s.width} {s.crs} {tuple(s.transform)[:6]} vs truth "
                f"{t.height}x{t.width} {t.crs} {tuple(t.transform)[:6]}"
            )


def nonfinite_pixels(path: str | os.PathLike) -> int:
    """Number of pixels of ``path`` with a NaN/inf value in any band (0 for integer rasters)."""
    with rasterio.open(path) as src:
        if not all(np.issubdtype(np.dtype(d), np.floating) for d in src.dtypes):
            return 0
        n = 0
        for _, window in src.block_windows(1):
            n += int((~np.isfinite(src.read(window=window))).any(axis=0).sum())
    return n
