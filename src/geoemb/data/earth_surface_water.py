"""Earth Surface Water (Luo, Tong & Hu 2021): dataset over the real layout + LightningDataModule.

The layout, name pairing and header checks are in :mod:`geoemb.data.esw_files`, the band
statistics in :mod:`geoemb.data.esw_stats` (both re-exported here). Each file keeps its own UTM
CRS on disk; reading goes through torchgeo ``RasterDataset`` warped to a common CRS (default
EPSG:3395, res 10, masks ``is_image=False`` -> nearest, long), as the TorchGeo tutorial does. All
torchgeo-version-specific calls are in :mod:`geoemb.data.geo_adapter`. Real vs synthetic is the
DataModule's :class:`~geoemb.data.source.DataSource` (``data.synthetic=true``: a content-keyed
stand-in whose scenes fit ``patch_size``).

Batches are dicts ``{"image": (B, 6, H, W) float32 RAW DN, "mask": (B, H, W) long,
"valid_fraction": (B,) float32}`` (``valid_fraction``: share of the chip's pixels that are not warp
fill / NaN, for choosing chips to show; metrics do not use it). Scaling (1e-4), the NDWI /
tutorial-"MNDWI" (B12) / NDVI channels and the z-normalisation are NOT applied here: they are the
:class:`~geoemb.data.transforms.SpectralPreprocess` described by
:meth:`EarthSurfaceWaterDataModule.preprocess_config`, which the model applies per batch and the
checkpoint carries, so inference on raw scenes repeats training exactly.

Known behaviour kept from the tutorial (documented pitfalls): warped UTM scenes have fill (0)
corners inside their axis-aligned EPSG:3395 bounds, and fill in the mask reads as 0 = non-water;
Mercator "10 m" is 10 * cos(lat) true metres; band statistics are the per-file average of
per-file mean/std (an approximation, fill-free because they are computed on the native files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from geoemb.data import esw_stats
from geoemb.data import geo_adapter as ga
from geoemb.data.base import SourcedDataModule, resolve_num_workers
from geoemb.data.esw_files import (
    BANDS,
    DATASET_URL,
    GET_DATA,
    SCALE,
    SCENE_REGEX,
    TRUTH_REGEX,
    ESWDataError,
    ESWNotFoundError,
    missing_dset,
    nonfinite_pixels,
    not_found_message,
    pair_split,
    resolve_dset_dir,
    scene_name_for,
    truth_name_for,
    validate_pairs,
)
from geoemb.data.esw_stats import STATS_FILE, cached_band_stats, compute_band_stats
from geoemb.data.source import DataSource
from geoemb.data.transforms import ESW_INDEX_NAMES, ESW_INDICES, SpectralPreprocess
from geoemb.synthetic import earth_surface_water as synth

__all__ = [
    "BANDS",
    "DATASET_URL",
    "SCENE_REGEX",
    "STATS_FILE",
    "TRUTH_REGEX",
    "ESWDataError",
    "ESWNotFoundError",
    "EarthSurfaceWater",
    "EarthSurfaceWaterDataModule",
    "cached_band_stats",
    "compute_band_stats",
    "missing_dset",
    "nonfinite_pixels",
    "not_found_message",
    "pair_split",
    "resolve_dset_dir",
    "scene_name_for",
    "synthetic_scene_size",
    "truth_name_for",
    "valid_fraction",
]

SYNTHETIC_VERSION = 2  # 2: content-keyed stand-in, no generator marker, scenes sized to the chips


def synthetic_scene_size(patch_size: int) -> list[int]:
    """(min, max) side of the stand-in's scenes for ``patch_size`` chips.

    ``[max(256, p + 64), max(320, p + 192)]``: the warp to EPSG:3395 never shrinks a scene (the
    Mercator scale grows with latitude), so every scene holds a chip, with room to move it.
    """
    p = int(patch_size)
    return [max(256, p + 64), max(320, p + 192)]


def valid_fraction(image: torch.Tensor) -> torch.Tensor:
    """``(B,)`` share of pixels of ``image`` ``(B, C, H, W)`` that are not fill or NaN/inf.

    Warp fill is a pixel whose bands are all 0 (the tutorial's fill value).
    """
    fill = (image == 0).all(dim=1) | ~torch.isfinite(image).all(dim=1)
    return 1.0 - fill.flatten(1).float().mean(dim=1)


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
                f"lower data.patch_size (or use larger scenes; for the synthetic stand-in "
                f"data.synthetic_kwargs.size=null sizes them to the chips)."
            )

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """Sample ``{"image": (6,H,W) float32 DN, "mask": (H,W) long, "crs", "bounds"}``."""
        return self.dataset[query]

    def __len__(self) -> int:
        """Number of scene/truth pairs."""
        return len(self.pairs)


# ----------------------------------------------------------------------------- datamodule
class EarthSurfaceWaterDataModule(SourcedDataModule):
    """LightningDataModule for Earth Surface Water (real layout or its synthetic stand-in).

    Parameters
    ----------
    root : folder containing ``dset-s2`` (or ``dset-s2`` itself). Ignored when ``synthetic``.
    synthetic : read the synthetic stand-in (generated once, content-keyed, under
        ``synthetic_root``) instead of ``root``.
    batch_size : chips per batch (tutorial: 4).
    patch_size : chip side in pixels (tutorial: 512); every scene must be at least this large after
        warping (clear error otherwise).
    train_length : RandomGeoSampler chips per training epoch (tutorial: 130).
    val_length : None -> GridGeoSampler over all validation scenes; int -> at most that many grid
        chips, evenly spaced over the grid (the tutorial used 64 random chips).
    val_stride : grid stride in pixels (default ``patch_size``).
    num_workers : DataLoader workers; ``None``/``"auto"``: what the machine has
        (:func:`~geoemb.data.base.resolve_num_workers`).
    crs, res : common CRS / resolution (tutorial: EPSG:3395, 10).
    seed : seed of the training sampler's generator.
    stats_cache : cache the band statistics as JSON beside the data.
    synthetic_root : parent folder of the stand-ins (default
        ``<parent of root>/synthetic/earth_surface_water``); never a folder holding other data.
    synthetic_kwargs : arguments of :func:`geoemb.synthetic.earth_surface_water.generate`;
        ``size`` missing or ``None``: :func:`synthetic_scene_size` of ``patch_size``.
    pin_memory : DataLoader ``pin_memory``.
    fill_ignore_index : label of warp-fill / NaN pixels (``None``: fill is land, as the tutorial).

    Batches: ``{"image": (B, 6, H, W) float32 raw DN, "mask": (B, H, W) long {0, 1},
    "valid_fraction": (B,) float32}``.

    Why 16 parameters (over the ~12 rule): each is a flat ``data.*`` key of the tutorial recipe
    that users and the docs set on the command line (``data.patch_size=128``,
    ``data.train_length``…) and that checkpoints store in their saved hyper-parameters; grouping
    them into parameter objects would rename those keys and break ``evaluate.py ckpt_path=…`` on
    existing checkpoints. The data-source bag (``synthetic*``/``root``) is already one
    :class:`~geoemb.data.source.DataSource`.
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
        num_workers: int | str | None = 0,
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
        self.batch_size = int(batch_size)
        self.patch_size = int(patch_size)
        self.train_length = train_length
        self.val_length = val_length
        self.val_stride = val_stride
        self.num_workers = resolve_num_workers(num_workers)
        self.crs = crs
        self.res = float(res)
        self.seed = int(seed)
        self.stats_cache = bool(stats_cache)
        self.synthetic_kwargs = dict(synthetic_kwargs or {})
        if self.synthetic_kwargs.get("size") is None:
            self.synthetic_kwargs["size"] = synthetic_scene_size(self.patch_size)
        self.pin_memory = bool(pin_memory)
        root_path = Path(root).expanduser()
        self.source = DataSource(
            name="Earth Surface Water",
            root=root_path,
            synthetic=synthetic,
            synthetic_root=synthetic_root or root_path.parent / "synthetic" / "earth_surface_water",
            synthetic_kwargs=self.synthetic_kwargs,
            generator=synth.generate,
            check=missing_dset,
            download_hint=GET_DATA,
            version=SYNTHETIC_VERSION,
            error=ESWNotFoundError,
            legacy_markers=(".complete",),
        )
        self.indices = [list(p) for p in ESW_INDICES]
        self.index_names = list(ESW_INDEX_NAMES)
        self.train_ds: EarthSurfaceWater | None = None
        self.val_ds: EarthSurfaceWater | None = None
        self._stats: tuple[list[float], list[float]] | None = None
        self.stats_cache_hit: bool | None = None

    # ------------------------------------------------------------------ data location
    @property
    def num_input_channels(self) -> int:
        """Model input channels after preprocessing: 6 bands + 3 indices = 9."""
        return len(BANDS) + len(self.indices)

    def dset_dir(self) -> Path:
        """The ``dset-s2`` folder in use (checking the real data / generating the stand-in)."""
        return resolve_dset_dir(self.check())

    # ------------------------------------------------------------------ statistics
    def band_stats(self) -> tuple[list[float], list[float]]:
        """(mean, std) per band of the training scenes in reflectance units (DN * 1e-4).

        Computed as the tutorial's ``calc_statistics`` and cached as JSON in the ``dset-s2``
        folder, keyed by the training file names, sizes and mtimes.
        """
        if self._stats is None:
            dset = self.dset_dir()
            scenes = [s for s, _ in pair_split(dset, "train")]
            cache_file = dset / STATS_FILE if self.stats_cache else None
            mean, std, hit = esw_stats.cached_band_stats(scenes, cache_file, SCALE)
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
        dset = self.dset_dir()
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

        Adds ``valid_fraction`` ``(B,)``: the share of each chip that is neither warp fill nor
        NaN/inf (:func:`valid_fraction`), so a figure can show chips with content.

        Non-finite values are invalid data: they never reach the model. Without an ignore index
        there is no honest label for them, so a batch holding any raises :class:`ESWDataError`
        (:meth:`setup` already refuses float scenes with such pixels, naming the files).
        """
        batch = ga.collate_image_mask(samples)
        image = batch["image"]
        batch["valid_fraction"] = valid_fraction(image)
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
        dset = self.dset_dir()
        return {
            "data_source": self.data_source,
            "dset_dir": str(dset),
            "n_train": len(pair_split(dset, "train")),
            "n_val": len(pair_split(dset, "val")),
            "patch_size": self.patch_size,
        }
