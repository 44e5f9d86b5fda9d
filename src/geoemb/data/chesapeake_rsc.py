"""Chesapeake Roads Spatial Context (RSC): Dataset + LightningDataModule on the real on-disk layout.

Layout (``isaaccorley/ChesapeakeRSC`` ``src/datasets.py``; reference/chesapeake_rsc.md §2)::

    <root>/patches.gpkg            one row per patch: idx (int), minx, miny, maxx, maxy
    <root>/{train,val,test}_idxs.txt
    <root>/data/{idx}_image.tif    uint8 4×512×512 (R, G, B, NIR), no nodata
    <root>/data/{idx}_mask.tif     uint8 1×512×512 raw Chesapeake land-cover codes, nodata 255

Patches are taken in ``patches.gpkg`` row order; a row is kept if its idx is in the split file and
both tifs exist. Unlike the reference (which skips silently) the number of skipped patches is
reported with a warning and kept in ``dataset.n_missing``.

Label views (reference §2.3): code 9 → 1 (road); code 12 → 1 (2-class, training) or 2 (3-class,
evaluation: tree canopy over road); every other code, including nodata 255 → 0. Each sample carries
both: ``mask`` (the view chosen by ``num_classes``) and ``mask_3class``. Images are returned as
float32 raw 0–255 values; the ``/255`` is the model's ``preprocess`` (:class:`geoemb.data.augment.Scale`).

Invalid image pixels. The real images are uint8 without nodata, so none exist there. An image of
another dtype may hold NaN/±inf, and an image may declare a nodata value: a pixel with any
non-finite band, or whose bands all equal the declared nodata, is *invalid* — it must not reach the
model as a number, nor be trained as a class. With ``ignore_index=None`` (default) such a patch is an
:class:`~geoemb.errors.InputError` naming the file. With ``ignore_index=v`` the invalid pixels get
image value 0 and training label ``v`` in ``mask`` (excluded from the loss and the segmentation
metrics when the model's ``ignore_index`` is ``v`` too; the DataModule checks that at setup), while
``mask_3class`` marks them background (0), as the reference does for label nodata (255), because the
RSC metrics are defined on {0, 1, 2}. A patch with no valid pixel is always an error. An unreadable
(truncated, corrupt) tif is an :class:`~geoemb.errors.InputError` naming it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import torch
from rasterio.errors import RasterioError
from torch.utils.data import Dataset

from geoemb.data.augment import RSCAugmentation
from geoemb.data.base import SplitDataModule
from geoemb.data.source import STAND_IN_HINT, DataSource
from geoemb.errors import DataNotFoundError, InputError
from geoemb.synthetic import chesapeake_rsc as synth

__all__ = [
    "ROAD_CODE",
    "TC_OVER_ROAD_CODE",
    "ChesapeakeRSC",
    "ChesapeakeRSCDataModule",
    "missing_files",
    "remap_mask",
]

ROAD_CODE = 9
TC_OVER_ROAD_CODE = 12
SPLITS = ("train", "val", "test")
GET_DATA = (
    "Download it with `huggingface-cli download torchgeo/ChesapeakeRSC --repo-type dataset "
    "--local-dir data/` and unzip ChesapeakeRSC.zip so that data.root holds patches.gpkg, "
    "{train,val,test}_idxs.txt and data/."
)
DOWNLOAD_HINT = f"{GET_DATA} {STAND_IN_HINT}"
SYNTHETIC_VERSION = 2  # 2: content-keyed stand-in, complete by default (missing patch on request)


def missing_files(root: str | os.PathLike) -> str | None:
    """``None`` if ``root`` holds ``patches.gpkg``, the three split files and ``data/``, else
    what is missing (the cheap check of the DataModule's :class:`DataSource`)."""
    root = Path(root)
    if not root.is_dir():
        return "folder does not exist"
    need = ["patches.gpkg", *(f"{s}_idxs.txt" for s in SPLITS), "data/"]
    missing = [n for n in need if not (root / n.rstrip("/")).exists()]
    return f"missing {', '.join(missing)}" if missing else None


def remap_mask(raw: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray | torch.Tensor:
    """Map raw land-cover codes to RSC labels.

    Parameters
    ----------
    raw : array (..., H, W) of raw codes (uint8; nodata 255)
    num_classes : 2 (9, 12 → 1) or 3 (9 → 1, 12 → 2); everything else → 0.

    Returns
    -------
    int64 array/tensor of the same shape.
    """
    if num_classes not in (2, 3):
        raise ValueError(
            f"num_classes must be 2 (training view) or 3 (evaluation view), got {num_classes}"
        )
    tc_label = 1 if num_classes == 2 else 2
    if isinstance(raw, torch.Tensor):
        out = torch.zeros(raw.shape, dtype=torch.long, device=raw.device)
    else:
        out = np.zeros(raw.shape, dtype=np.int64)
    out[raw == ROAD_CODE] = 1
    out[raw == TC_OVER_ROAD_CODE] = tc_label
    return out


def check_ignore_index(ignore_index: int | None) -> None:
    """Refuse an ``ignore_index`` that is an RSC class label."""
    if ignore_index is not None and int(ignore_index) in (0, 1, 2):
        raise InputError(
            f"data.ignore_index={ignore_index} is an RSC class label (0, 1, 2); use e.g. 255 or -100"
        )


def _read_tif(path: Path) -> tuple[np.ndarray, float | None]:
    """``(array (bands, H, W), nodata)`` of a GeoTIFF; one clear error if it cannot be read."""
    try:
        with rasterio.open(path) as src:
            return src.read(), src.nodata
    except RasterioError as e:
        reason, cause = str(e), e.__cause__ or e.__context__
        if cause is not None and str(cause) not in reason:
            reason = f"{reason} ({cause})"
        raise InputError(f"cannot read {path} (truncated or corrupt GeoTIFF?): {reason}") from e


def read_split(path: Path) -> set[int]:
    """Split file → set of ints (the reference: ``strip().split("\\n")`` + ``int``)."""
    if not path.exists():
        raise DataNotFoundError(f"split file {path} not found. {DOWNLOAD_HINT}")
    out = set()
    for lineno, line in enumerate(path.read_text().strip().split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            out.add(int(line))
        except ValueError as e:
            raise InputError(f"{path}:{lineno}: expected an integer patch idx, got {line!r}") from e
    return out


def read_patch_index(root: Path) -> list[int]:
    """The ``idx`` column of ``<root>/patches.gpkg`` in file order."""
    gpkg = root / "patches.gpkg"
    if not gpkg.exists():
        raise DataNotFoundError(f"{gpkg} not found (Chesapeake RSC patch index). {DOWNLOAD_HINT}")
    df = pyogrio.read_dataframe(gpkg, read_geometry=False)
    if "idx" not in df.columns:
        raise InputError(
            f"{gpkg}: expected an integer column 'idx', found columns {list(df.columns)}"
        )
    return [int(v) for v in df["idx"].to_numpy()]


class ChesapeakeRSC(Dataset):
    """One split of Chesapeake RSC.

    Parameters
    ----------
    root : path
        Dataset root (see module docstring).
    split : "train" | "val" | "test"
    num_classes : int
        View of ``mask``: 2 (training, TC merged into road) or 3 (evaluation).
    patch_size : int | None
        Expected image/mask side (real data 512); ``None`` only requires image and mask to match.
    ignore_index : int | None
        Training label of invalid image pixels (see the module docstring); ``None`` refuses
        patches that have any. Must not be a class label (0, 1, 2).

    Items: ``{"image": float32 (4, H, W) raw 0–255, "mask": int64 (H, W), "mask_3class": int64 (H, W),
    "idx": int64}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_classes: int = 2,
        patch_size: int | None = 512,
        ignore_index: int | None = None,
    ) -> None:
        check_ignore_index(ignore_index)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_classes not in (2, 3):
            raise ValueError(f"num_classes must be 2 or 3, got {num_classes}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"Chesapeake RSC root {self.root} does not exist. {DOWNLOAD_HINT}"
            )
        self.split = split
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.ignore_index = ignore_index
        wanted = read_split(self.root / f"{split}_idxs.txt")
        self.idxs: list[int] = []
        self.n_missing = 0
        for idx in read_patch_index(self.root):
            if idx not in wanted:
                continue
            if self.image_path(idx).exists() and self.mask_path(idx).exists():
                self.idxs.append(idx)
            else:
                self.n_missing += 1
        if self.n_missing:
            warnings.warn(
                f"ChesapeakeRSC({self.root}, split={split!r}): skipped {self.n_missing} patch(es) "
                f"listed in the split whose image/mask tif is missing; {len(self.idxs)} kept",
                stacklevel=2,
            )

    def image_path(self, idx: int) -> Path:
        return self.root / "data" / f"{idx}_image.tif"

    def mask_path(self, idx: int) -> Path:
        return self.root / "data" / f"{idx}_mask.tif"

    def __len__(self) -> int:
        return len(self.idxs)

    def read_raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(image (4, H, W) as stored, mask codes (H, W))`` of the i-th kept patch."""
        image, mask, _ = self.read_patch(i)
        return image, mask

    def read_patch(self, i: int) -> tuple[np.ndarray, np.ndarray, float | None]:
        """:meth:`read_raw` plus the image file's declared nodata (``None`` for the real data)."""
        idx = self.idxs[i]
        image, nodata = _read_tif(self.image_path(idx))
        mask, _ = _read_tif(self.mask_path(idx))
        if image.ndim != 3 or image.shape[0] != 4:
            raise InputError(
                f"{self.image_path(idx)}: expected 4 bands (R, G, B, NIR), got shape {image.shape}"
            )
        if mask.shape[0] != 1:
            raise InputError(f"{self.mask_path(idx)}: expected 1 band, got {mask.shape[0]}")
        mask = mask[0]
        expected = (self.patch_size, self.patch_size) if self.patch_size else image.shape[1:]
        if image.shape[1:] != tuple(expected) or mask.shape != tuple(expected):
            raise InputError(
                f"{self.mask_path(idx)}: mask {mask.shape} / image {image.shape[1:]} do not match the "
                f"expected patch size {tuple(expected)}"
            )
        return image, mask, nodata

    @staticmethod
    def invalid_pixels(image: np.ndarray, nodata: float | None = None) -> np.ndarray:
        """``(H, W)`` bool: pixels of ``image`` ``(C, H, W)`` with a non-finite band, or whose
        bands all equal the declared ``nodata``."""
        invalid = ~np.isfinite(image).all(axis=0)
        if nodata is not None and np.isfinite(nodata):
            invalid |= (image == np.asarray(nodata, image.dtype)).all(axis=0)
        return invalid

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, raw, nodata = self.read_patch(i)
        invalid = self.invalid_pixels(image, nodata)
        image = image.astype(np.float32)
        m3 = remap_mask(raw, 3)
        mask = m3 if self.num_classes == 3 else np.minimum(m3, 1)
        if invalid.any():
            path = self.image_path(self.idxs[i])
            if invalid.all():
                raise InputError(
                    f"{path}: no valid pixel — every pixel has a non-finite (NaN/inf) band or "
                    f"equals the declared nodata; expected image values"
                )
            if self.ignore_index is None:
                raise InputError(
                    f"{path}: {int(invalid.sum())} pixel(s) have a non-finite (NaN/inf) band or "
                    f"the declared nodata value; expected finite R, G, B, NIR values. To train "
                    f"with them excluded from the loss set data.ignore_index=255 and "
                    f"model.ignore_index=255"
                )
            image[:, invalid] = 0.0
            mask = mask.copy()
            mask[invalid] = self.ignore_index
            m3[invalid] = 0
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask),
            "mask_3class": torch.from_numpy(m3),
            "idx": torch.tensor(self.idxs[i], dtype=torch.long),
        }


class ChesapeakeRSCDataModule(SplitDataModule):
    """Chesapeake RSC DataModule (GPU augmentation in ``on_after_batch_transfer``).

    Parameters
    ----------
    root : path
        Real dataset root (``<data_dir>/ChesapeakeRSC``).
    synthetic : bool
        Read the synthetic stand-in (generated once, content-keyed, under ``synthetic_root``)
        through the real loader.
    synthetic_root : path | None
        Parent folder of the stand-ins; default ``<root>/../synthetic/chesapeake_rsc``.
    synthetic_kwargs : dict | None
        Arguments of :func:`geoemb.synthetic.chesapeake_rsc.generate` (``size``, ``n_train``, ...).
    batch_size, eval_batch_size, num_workers, pin_memory : loader settings (``num_workers: None``:
        what the machine has, :func:`~geoemb.data.base.resolve_num_workers`).
    num_classes : int
        View of ``batch["mask"]`` (2 = training as the reference); ``mask_3class`` is always present.
    patch_size : int | None
        Expected patch side (512); for synthetic data the generator's ``size`` is used.
    augment : dict | None
        Keyword arguments of :class:`geoemb.data.augment.RSCAugmentation` (``rotation_degrees``,
        ``flips``, ``cutout``); ``None`` disables training augmentation. Applied to training
        batches only, after the transfer to the device (:meth:`on_after_batch_transfer`).
    ignore_index : int | None
        Training label of invalid (non-finite / declared-nodata) image pixels; ``None`` refuses
        patches that have any (see the module docstring). When set, the model's ``ignore_index``
        must be the same value (checked at setup, before any training step).
    """

    def __init__(
        self,
        root: str = "data/ChesapeakeRSC",
        synthetic: bool = False,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | str | None = 0,
        pin_memory: bool = False,
        num_classes: int = 2,
        patch_size: int | None = 512,
        augment: dict | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        check_ignore_index(ignore_index)
        self.save_hyperparameters()
        kwargs = dict(synthetic_kwargs or {})
        self.source = DataSource(
            name="Chesapeake RSC",
            root=Path(root),
            synthetic=synthetic,
            synthetic_root=synthetic_root or Path(root).parent / "synthetic" / "chesapeake_rsc",
            synthetic_kwargs=kwargs,
            generator=synth.generate,
            check=missing_files,
            download_hint=GET_DATA,
            version=SYNTHETIC_VERSION,
            legacy_markers=(".complete",),
        )
        if synthetic:
            self.patch_size = int(kwargs.get("size", synth.DEFAULT_SIZE))
        else:
            self.patch_size = patch_size
        self.augment = RSCAugmentation(**dict(augment)) if augment is not None else None
        self.datasets: dict[str, ChesapeakeRSC] = {}

    @property
    def data_root(self) -> Path:
        """The folder read: the real root or the stand-in's (content-keyed) folder."""
        return self.source.synthetic_dir() if self.synthetic else Path(self.source.root)

    def dataset(self, split: str) -> ChesapeakeRSC:
        if split not in self.datasets:
            self.datasets[split] = ChesapeakeRSC(
                self.check(),
                split,
                num_classes=self.hparams.num_classes,
                patch_size=self.patch_size,
                ignore_index=self.hparams.get("ignore_index"),
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        self._check_model_ignore_index()
        splits = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }
        for split in splits.get(stage, SPLITS) if stage else SPLITS:
            self.dataset(split)

    def _check_model_ignore_index(self) -> None:
        """With ``ignore_index`` set, the attached model must ignore the same label in its loss."""
        ii = self.hparams.get("ignore_index")
        trainer = self.trainer
        if ii is None or trainer is None:
            return
        model = trainer.lightning_module
        if model is not None and hasattr(model, "ignore_index") and model.ignore_index != ii:
            raise InputError(
                f"data.ignore_index={ii} labels invalid image pixels, but model.ignore_index="
                f"{model.ignore_index}: the loss would train that label as a class (or fail on "
                f"it). Set model.ignore_index={ii}"
            )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Apply :class:`~geoemb.data.augment.RSCAugmentation` on the batch's device while training.

        Lightning attaches itself to a DataModule as the public attribute ``trainer`` (``None`` when
        detached); only training batches are augmented, never sanity-check/val/test/predict ones.
        """
        trainer = self.trainer
        if self.augment is not None and trainer is not None and trainer.training:
            masks = {k: batch[k] for k in ("mask", "mask_3class") if k in batch}
            batch["image"], new = self.augment(batch["image"], masks)
            batch.update(new)
        return batch
