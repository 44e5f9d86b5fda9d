"""Earth Surface Water (Luo, Tong & Hu 2021): dataset over the real layout + LightningDataModule.

Real layout (reference/earth_surface_water.md §1)::

    <root>/dset-s2/tra_scene/S2A_L2A_20190125_N0211_R034_6Bands_S1.tif   6 bands B02 B03 B04 B08 B11 B12, DN
    <root>/dset-s2/tra_truth/S2A_L2A_20190125_N0211_R034_S1_Truth.tif    1 band {0 = land, 1 = water}
    <root>/dset-s2/val_scene/...  <root>/dset-s2/val_truth/...

``root`` may be the folder containing ``dset-s2`` or ``dset-s2`` itself. Scenes and truths are
paired **by name** (truth = drop ``_6Bands``, insert ``_Truth`` before ``.tif``), never by sorted
order. Each file keeps its own UTM CRS on disk; reading goes through torchgeo ``RasterDataset``
warped to a common CRS (default EPSG:3395, res 10, masks ``is_image=False`` -> nearest, long), as
the TorchGeo tutorial does. All torchgeo-version-specific calls are in :mod:`geoemb.data.geo_adapter`.

Batches are dicts ``{"image": (B, 6, H, W) float32 RAW DN, "mask": (B, H, W) long}``. Scaling
(1e-4), the NDWI / tutorial-"MNDWI" (B12) / NDVI channels and the z-normalisation are NOT applied
here: they are the :class:`~geoemb.data.transforms.SpectralPreprocess` described by
:meth:`EarthSurfaceWaterDataModule.preprocess_config`, which the model applies per batch and the
checkpoint carries, so inference on raw scenes repeats training exactly.

Known behaviour kept from the tutorial (documented pitfalls): warped UTM scenes have fill (0)
corners inside their axis-aligned EPSG:3395 bounds, and fill in the mask reads as 0 = non-water;
Mercator "10 m" is 10 * cos(lat) true metres; band statistics are the per-file average of
per-file mean/std (an approximation, fill-free because they are computed on the native files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from torch.utils.data import DataLoader, Dataset

from geoemb.data import geo_adapter as ga
from geoemb.data.transforms import ESW_INDEX_NAMES, ESW_INDICES, SpectralPreprocess
from geoemb.errors import InputError
from geoemb.utils.io import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "BANDS",
    "DATASET_URL",
    "SCENE_REGEX",
    "TRUTH_REGEX",
    "ESWDataError",
    "ESWNotFoundError",
    "EarthSurfaceWater",
    "EarthSurfaceWaterDataModule",
    "compute_band_stats",
    "pair_split",
    "resolve_dset_dir",
    "scene_name_for",
    "truth_name_for",
]

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
SCALE = 1e-4
DATASET_URL = (
    "https://hf.co/datasets/cordmaur/earth_surface_water/resolve/main/earth_surface_water.zip"
)
SCENE_REGEX = r"^S2[AB]_L2A_(?P<date>\d{8})_N\d{4}_R\d{3}_6Bands_S\d+\.tif$"
TRUTH_REGEX = r"^S2[AB]_L2A_(?P<date>\d{8})_N\d{4}_R\d{3}_S\d+_Truth\.tif$"
SPLITS = {"train": "tra", "tra": "tra", "val": "val", "test": "val"}
STATS_FILE = ".geoemb_esw_band_stats.json"
STATS_VERSION = 2  # 2: non-finite pixels left out of the statistics


class ESWDataError(InputError):
    """Bad Earth Surface Water input; the message names the file and what was expected."""


class ESWNotFoundError(FileNotFoundError):
    """The Earth Surface Water folder is missing; the message says where to get it."""


def not_found_message(where: Path, what: str) -> str:
    """Message for a missing dataset folder."""
    return (
        f"Earth Surface Water data not found: {what} ({where}). Download {DATASET_URL}, extract "
        f"it and point data.root at the folder that contains dset-s2/ (or at dset-s2/ itself), "
        f"or run on the synthetic stand-in with data.synthetic=true."
    )


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
    if not root.exists():
        raise ESWNotFoundError(not_found_message(root, "folder does not exist"))
    for cand in (root / "dset-s2", root):
        if (cand / "tra_scene").is_dir() or (cand / "val_scene").is_dir():
            return cand
    raise ESWNotFoundError(
        not_found_message(root, "no dset-s2/{tra,val}_{scene,truth} folders inside")
    )


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


# ----------------------------------------------------------------------------- statistics
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


def nonfinite_pixels(path: str | os.PathLike) -> int:
    """Number of pixels of ``path`` with a NaN/inf value in any band (0 for integer rasters)."""
    with rasterio.open(path) as src:
        if not all(np.issubdtype(np.dtype(d), np.floating) for d in src.dtypes):
            return 0
        n = 0
        for _, window in src.block_windows(1):
            n += int((~np.isfinite(src.read(window=window))).any(axis=0).sum())
    return n


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


# ----------------------------------------------------------------------------- dataset
class EarthSurfaceWater(Dataset):
    """One ESW split as a torchgeo intersection (scenes & truths) warped to ``crs``/``res``.

    Index it with a geo query from :attr:`sampler`-style samplers (see
    :func:`geoemb.data.geo_adapter.random_sampler` / ``grid_sampler`` over :attr:`images`).

    Parameters
    ----------
    root : folder containing ``dset-s2`` or ``dset-s2`` itself.
    split : ``"train"`` (``tra_*``) or ``"val"``/``"test"`` (``val_*``).
    crs, res : common CRS and resolution (CRS units) everything is warped to.
    min_size_px : if given, every scene must cover at least this many pixels in both axes after
        warping (else :class:`ESWDataError` naming the file), instead of torchgeo silently
        dropping it from the sampler.

    Attributes
    ----------
    pairs : list of (scene, truth) paths.
    images, masks : the two RasterDatasets; ``dataset`` : their intersection.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        crs: str = "EPSG:3395",
        res: float = 10.0,
        min_size_px: int | None = None,
        cache: bool = True,
    ) -> None:
        self.dset_dir = resolve_dset_dir(root)
        self.split = split
        self.pairs = pair_split(self.dset_dir, split)
        validate_pairs(self.pairs)
        scenes = [s for s, _ in self.pairs]
        truths = [t for _, t in self.pairs]
        self.images = ga.raster_dataset(
            scenes, crs=crs, res=res, is_image=True, filename_regex=SCENE_REGEX, cache=cache
        )
        self.masks = ga.raster_dataset(
            truths, crs=crs, res=res, is_image=False, filename_regex=TRUTH_REGEX, cache=cache
        )
        for ds, files, role in ((self.images, scenes, "scene"), (self.masks, truths, "truth")):
            indexed = {Path(fp).name for fp, _ in ga.index_entries(ds)}
            missing = [str(f) for f in files if f.name not in indexed]
            if missing:
                raise ESWDataError(f"torchgeo could not index {role} file(s): {missing}")
        self.dataset = ga.intersect(self.images, self.masks)
        self.res = ga.dataset_res(self.images)
        if min_size_px is not None:
            self.check_min_size(min_size_px)

    def warped_sizes(self) -> dict[str, tuple[int, int]]:
        """{scene name: (height, width) in pixels after warping to ``crs``/``res``}."""
        return {
            Path(fp).name: ga.warped_size_px(b, self.res) for fp, b in ga.index_entries(self.images)
        }

    def check_min_size(self, size_px: int) -> None:
        """Raise if any scene is smaller than ``size_px`` after warping (names every such file)."""
        small = {n: hw for n, hw in self.warped_sizes().items() if min(hw) < size_px}
        if small:
            listing = ", ".join(f"{n} ({h}x{w} px)" for n, (h, w) in sorted(small.items()))
            raise ESWDataError(
                f"Earth Surface Water {self.split}: {len(small)} scene(s) in {self.dset_dir} are "
                f"smaller than the {size_px}x{size_px} px chip after warping to the common CRS at "
                f"res {self.res[0]:g}: {listing}. torchgeo's samplers would silently skip them; "
                f"lower data.patch_size (or use larger scenes)."
            )

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """Sample ``{"image": (6,H,W) float32 DN, "mask": (H,W) long, "crs", "bounds"}``."""
        return self.dataset[query]

    def __len__(self) -> int:
        """Number of scene/truth pairs."""
        return len(self.pairs)


# ----------------------------------------------------------------------------- datamodule
class EarthSurfaceWaterDataModule(L.LightningDataModule):
    """LightningDataModule for Earth Surface Water (real layout or its synthetic stand-in).

    Parameters
    ----------
    root : folder containing ``dset-s2`` (or ``dset-s2`` itself). Ignored when ``synthetic``.
    synthetic : generate (once) and read the synthetic stand-in from ``synthetic_root``.
    batch_size : chips per batch (tutorial: 4).
    patch_size : chip side in pixels (tutorial: 512); every scene must be at least this large after
        warping (clear error otherwise).
    train_length : RandomGeoSampler chips per training epoch (tutorial: 130).
    val_length : None -> GridGeoSampler over all validation scenes; int -> at most that many grid
        chips, evenly spaced over the grid (the tutorial used 64 random chips).
    val_stride : grid stride in pixels (default ``patch_size``).
    num_workers : DataLoader workers.
    crs, res : common CRS / resolution (tutorial: EPSG:3395, 10).
    seed : seed of the training sampler's generator.
    stats_cache : cache the band statistics as JSON beside the data.
    synthetic_root : where the stand-in is generated (default ``<parent of root>/synthetic/earth_surface_water``).
    synthetic_kwargs : arguments of :func:`geoemb.data.synthetic.earth_surface_water.generate`.
    pin_memory : DataLoader ``pin_memory``.

    Batches: ``{"image": (B, 6, H, W) float32 raw DN, "mask": (B, H, W) long {0, 1}}``.
    """

    num_classes = 2
    bands = BANDS

    def __init__(
        self,
        root: str = "data/earth_surface_water",
        synthetic: bool = False,
        batch_size: int = 4,
        patch_size: int = 512,
        train_length: int | None = 130,
        val_length: int | None = None,
        val_stride: int | None = None,
        num_workers: int = 0,
        crs: str = "EPSG:3395",
        res: float = 10.0,
        seed: int = 0,
        stats_cache: bool = True,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        pin_memory: bool = False,
        fill_ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Warping UTM scenes to EPSG:3395 leaves fill corners (all bands 0) whose mask is 0
        # ("land"), as in the tutorial. With ``fill_ignore_index`` set (e.g. 255, matching the
        # model's ``ignore_index``) those pixels are labelled ignore instead: excluded from
        # loss and metrics.
        self.fill_ignore_index = fill_ignore_index
        self.root = str(root)
        self.synthetic = bool(synthetic)
        self.batch_size = int(batch_size)
        self.patch_size = int(patch_size)
        self.train_length = train_length
        self.val_length = val_length
        self.val_stride = val_stride
        self.num_workers = int(num_workers)
        self.crs = crs
        self.res = float(res)
        self.seed = int(seed)
        self.stats_cache = bool(stats_cache)
        self.synthetic_kwargs = dict(synthetic_kwargs or {})
        self.pin_memory = bool(pin_memory)
        if synthetic_root is None:
            synthetic_root = str(
                Path(root).expanduser().parent / "synthetic" / "earth_surface_water"
            )
        self.synthetic_root = str(synthetic_root)
        self.indices = [list(p) for p in ESW_INDICES]
        self.index_names = list(ESW_INDEX_NAMES)
        self.train_ds: EarthSurfaceWater | None = None
        self.val_ds: EarthSurfaceWater | None = None
        self._stats: tuple[list[float], list[float]] | None = None
        self.stats_cache_hit: bool | None = None

    # ------------------------------------------------------------------ data location
    @property
    def data_source(self) -> str:
        """``"synthetic"`` or ``"real"`` (runs are tagged with it)."""
        return "synthetic" if self.synthetic else "real"

    @property
    def num_input_channels(self) -> int:
        """Model input channels after preprocessing: 6 bands + 3 indices = 9."""
        return len(BANDS) + len(self.indices)

    def _ensure_synthetic(self) -> Path:
        from geoemb.data.synthetic import earth_surface_water as synth

        target = Path(self.synthetic_root)
        if synth.is_generated(target, **self.synthetic_kwargs):
            return target
        if target.is_dir() and not (target / synth.MARKER).exists() and any(target.iterdir()):
            # Never generate into (= rmtree its dset-s2 in) a folder the generator did not write:
            # data.synthetic_root may come from a checkpoint, and could point at real data.
            raise ESWDataError(
                f"data.synthetic_root={target} exists and was not written by geoemb's synthetic "
                f"generator (no {synth.MARKER} marker); refusing to generate into it (it may hold "
                "real data). Point data.synthetic_root at a new or empty folder."
            )
        if target.exists() and (target / synth.MARKER).exists():
            # Generated with other arguments: regenerate in place (the marker proves it is ours).
            synth.generate(target, **self.synthetic_kwargs)
            return target
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        synth.generate(tmp, **self.synthetic_kwargs)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, target)
            except OSError:  # lost a race with another process
                pass
        if tmp.exists():  # another process won the race, or target existed without a marker
            if synth.is_generated(target, **self.synthetic_kwargs):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                synth.generate(target, **self.synthetic_kwargs)
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def data_root(self) -> Path:
        """The ``dset-s2`` folder in use (generating the synthetic stand-in if asked)."""
        if self.synthetic:
            return resolve_dset_dir(self._ensure_synthetic())
        return resolve_dset_dir(self.root)

    def prepare_data(self) -> None:
        """Generate the synthetic stand-in once (rank 0); check the real data exists."""
        self.data_root()

    # ------------------------------------------------------------------ statistics
    def band_stats(self) -> tuple[list[float], list[float]]:
        """(mean, std) per band of the training scenes in reflectance units (DN * 1e-4).

        Computed as the tutorial's ``calc_statistics`` and cached as JSON in the ``dset-s2``
        folder, keyed by the training file names, sizes and mtimes.
        """
        if self._stats is None:
            dset = self.data_root()
            scenes = [s for s, _ in pair_split(dset, "train")]
            cache_file = dset / STATS_FILE if self.stats_cache else None
            mean, std, hit = cached_band_stats(scenes, cache_file, SCALE)
            self._stats = (mean, std)
            self.stats_cache_hit = hit
        return self._stats

    def preprocess_config(self) -> dict[str, Any]:
        """Config of the model-side preprocessing (carried by checkpoints).

        Returns
        -------
        ``{"_target_": "geoemb.data.transforms.SpectralPreprocess", "scale": 1e-4,
        "indices": [[1, 3], [1, 5], [3, 2]], "mean": [6 band means, 0, 0, 0],
        "std": [6 band stds, 1, 1, 1]}`` -- ``hydra.utils.instantiate`` builds the module.
        """
        mean, std = self.band_stats()
        n = len(self.indices)
        return SpectralPreprocess(
            scale=SCALE,
            indices=self.indices,
            mean=list(mean) + [0.0] * n,
            std=list(std) + [1.0] * n,
        ).to_config()

    def build_preprocess(self) -> SpectralPreprocess:
        """The :class:`SpectralPreprocess` module described by :meth:`preprocess_config`."""
        return SpectralPreprocess.from_config(self.preprocess_config())

    # ------------------------------------------------------------------ datasets / loaders
    def setup(self, stage: str | None = None) -> None:
        """Build the train split for ``fit`` and the val split for ``fit``/``validate``/``test``."""
        dset = self.data_root()
        if stage in (None, "fit") and self.train_ds is None:
            self.train_ds = EarthSurfaceWater(
                dset, "train", self.crs, self.res, min_size_px=self.patch_size
            )
            self.check_finite(self.train_ds.pairs)
        if stage in (None, "fit", "validate", "test") and self.val_ds is None:
            self.val_ds = EarthSurfaceWater(
                dset, "val", self.crs, self.res, min_size_px=self.patch_size
            )
            self.check_finite(self.val_ds.pairs)

    def _collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Stack samples; pixels with a NaN/inf band become fill (0) labelled ``fill_ignore_index``.

        Non-finite values are invalid data: they never reach the model. Without an ignore index
        there is no honest label for them, so a batch holding any raises :class:`ESWDataError`
        (:meth:`setup` already refuses float scenes with such pixels, naming the files).
        """
        batch = ga.collate_image_mask(samples)
        image = batch["image"]
        finite = torch.isfinite(image).all(dim=1)  # (B, H, W)
        if not bool(finite.all()):
            if self.fill_ignore_index is None:
                where = [str(s.get("bounds"))[:120] for s in samples][:4]
                raise ESWDataError(
                    f"Earth Surface Water: {int((~finite).sum())} pixel(s) with NaN/inf values in a "
                    f"batch (chip bounds {where}); set data.fill_ignore_index=255 and "
                    "model.ignore_index=255 so they are excluded from loss and metrics"
                )
            batch["image"] = image.masked_fill(~finite[:, None], 0.0)
        if self.fill_ignore_index is not None and "mask" in batch:
            fill = (batch["image"] == 0).all(dim=1) | ~finite
            batch["mask"] = batch["mask"].masked_fill(fill, int(self.fill_ignore_index))
        return batch

    def check_finite(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        """Without ``fill_ignore_index``, refuse float scenes holding NaN/inf pixels (named).

        Integer scenes (the real ESW DN files) cannot hold them and are not read.
        """
        if self.fill_ignore_index is not None:
            return
        bad = {str(scene): n for scene, _ in pairs if (n := nonfinite_pixels(scene))}
        if bad:
            listing = ", ".join(f"{p} ({n} px)" for p, n in sorted(bad.items()))
            raise ESWDataError(
                f"Earth Surface Water: scene(s) with NaN/inf pixels: {listing}. Non-finite values "
                "are invalid data, not numbers: set data.fill_ignore_index=255 and "
                "model.ignore_index=255 so those pixels are filled and excluded from loss and metrics"
            )

    def _loader(self, ds: EarthSurfaceWater, sampler: Any) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self._collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """RandomGeoSampler chips (``patch_size``, ``train_length`` per epoch, seeded)."""
        if self.train_ds is None:
            self.setup("fit")
        sampler = ga.random_sampler(
            self.train_ds.images, self.patch_size, self.train_length, seed=self.seed
        )
        return self._loader(self.train_ds, sampler)

    def _eval_loader(self) -> DataLoader:
        if self.val_ds is None:
            self.setup("validate")
        sampler = ga.grid_sampler(
            self.val_ds.images, self.patch_size, self.val_stride, length=self.val_length
        )
        return self._loader(self.val_ds, sampler)

    def val_dataloader(self) -> DataLoader:
        """GridGeoSampler chips over the validation scenes."""
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        """Same as validation (ESW ships only train/val)."""
        return self._eval_loader()

    def describe(self) -> dict[str, Any]:
        """Small summary for logs (source, folder, scene counts)."""
        dset = self.data_root()
        return {
            "data_source": self.data_source,
            "dset_dir": str(dset),
            "n_train": len(pair_split(dset, "train")),
            "n_val": len(pair_split(dset, "val")),
            "patch_size": self.patch_size,
        }
