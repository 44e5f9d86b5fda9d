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
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geoemb.data.base import SplitDataModule

__all__ = [
    "ROAD_CODE",
    "TC_OVER_ROAD_CODE",
    "ChesapeakeRSC",
    "ChesapeakeRSCDataModule",
    "remap_mask",
]

ROAD_CODE = 9
TC_OVER_ROAD_CODE = 12
SPLITS = ("train", "val", "test")
DOWNLOAD_HINT = (
    "Download it with `huggingface-cli download torchgeo/ChesapeakeRSC --repo-type dataset "
    "--local-dir data/` and unzip ChesapeakeRSC.zip so that the root holds patches.gpkg, "
    "{train,val,test}_idxs.txt and data/; or run on the synthetic stand-in with `data.synthetic=true`."
)


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


def read_split(path: Path) -> set[int]:
    """Split file → set of ints (the reference: ``strip().split("\\n")`` + ``int``)."""
    if not path.exists():
        raise FileNotFoundError(f"split file {path} not found. {DOWNLOAD_HINT}")
    out = set()
    for lineno, line in enumerate(path.read_text().strip().split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            out.add(int(line))
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: expected an integer patch idx, got {line!r}") from e
    return out


def read_patch_index(root: Path) -> list[int]:
    """The ``idx`` column of ``<root>/patches.gpkg`` in file order."""
    gpkg = root / "patches.gpkg"
    if not gpkg.exists():
        raise FileNotFoundError(f"{gpkg} not found (Chesapeake RSC patch index). {DOWNLOAD_HINT}")
    import pyogrio

    df = pyogrio.read_dataframe(gpkg, read_geometry=False)
    if "idx" not in df.columns:
        raise ValueError(
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

    Items: ``{"image": float32 (4, H, W) raw 0–255, "mask": int64 (H, W), "mask_3class": int64 (H, W),
    "idx": int64}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_classes: int = 2,
        patch_size: int | None = 512,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_classes not in (2, 3):
            raise ValueError(f"num_classes must be 2 or 3, got {num_classes}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Chesapeake RSC root {self.root} does not exist. {DOWNLOAD_HINT}"
            )
        self.split = split
        self.num_classes = num_classes
        self.patch_size = patch_size
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
        """Raw ``(image uint8 (4, H, W), mask codes uint8 (H, W))`` of the i-th kept patch."""
        import rasterio

        idx = self.idxs[i]
        with rasterio.open(self.image_path(idx)) as src:
            image = src.read()
        with rasterio.open(self.mask_path(idx)) as src:
            mask = src.read()
        if image.ndim != 3 or image.shape[0] != 4:
            raise ValueError(
                f"{self.image_path(idx)}: expected 4 bands (R, G, B, NIR), got shape {image.shape}"
            )
        if mask.shape[0] != 1:
            raise ValueError(f"{self.mask_path(idx)}: expected 1 band, got {mask.shape[0]}")
        mask = mask[0]
        expected = (self.patch_size, self.patch_size) if self.patch_size else image.shape[1:]
        if image.shape[1:] != tuple(expected) or mask.shape != tuple(expected):
            raise ValueError(
                f"{self.mask_path(idx)}: mask {mask.shape} / image {image.shape[1:]} do not match the "
                f"expected patch size {tuple(expected)}"
            )
        return image, mask

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, raw = self.read_raw(i)
        m3 = remap_mask(raw, 3)
        mask = m3 if self.num_classes == 3 else np.minimum(m3, 1)
        return {
            "image": torch.from_numpy(image.astype(np.float32)),
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
        Generate the stand-in into ``synthetic_root`` once and read it through the real loader.
    synthetic_root : path | None
        Default ``<root>/../synthetic/chesapeake_rsc``.
    synthetic_kwargs : dict | None
        Arguments of :func:`geoemb.data.synthetic.chesapeake_rsc.generate` (``size``, ``n_train``, ...).
    batch_size, eval_batch_size, num_workers, pin_memory : loader settings.
    num_classes : int
        View of ``batch["mask"]`` (2 = training as the reference); ``mask_3class`` is always present.
    patch_size : int | None
        Expected patch side (512); ignored for synthetic data (the generator's ``size`` is used).
    augment : dict | None
        Keyword arguments of :class:`geoemb.data.augment.RSCAugmentation` (``rotation_degrees``,
        ``flips``, ``cutout``); ``None`` disables training augmentation.
    """

    def __init__(
        self,
        root: str = "data/ChesapeakeRSC",
        synthetic: bool = False,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        num_classes: int = 2,
        patch_size: int | None = 512,
        augment: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.synthetic = synthetic
        if synthetic:
            self.data_root = Path(
                synthetic_root or Path(root).parent / "synthetic" / "chesapeake_rsc"
            )
            self.patch_size = int((synthetic_kwargs or {}).get("size", 128))
        else:
            self.data_root = Path(root)
            self.patch_size = patch_size
        self.augment = None
        if augment is not None:
            from geoemb.data.augment import RSCAugmentation

            self.augment = RSCAugmentation(**dict(augment))
        self.datasets: dict[str, ChesapeakeRSC] = {}

    @property
    def data_source(self) -> str:
        return "synthetic" if self.synthetic else "real"

    def prepare_data(self) -> None:
        if self.synthetic:
            from geoemb.data.synthetic.chesapeake_rsc import ensure_generated

            ensure_generated(self.data_root, **dict(self.hparams.synthetic_kwargs or {}))

    def dataset(self, split: str) -> ChesapeakeRSC:
        if split not in self.datasets:
            if self.synthetic:
                self.prepare_data()
            self.datasets[split] = ChesapeakeRSC(
                self.data_root,
                split,
                num_classes=self.hparams.num_classes,
                patch_size=self.patch_size,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("test",),
        }
        for split in splits.get(stage, SPLITS) if stage else SPLITS:
            self.dataset(split)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Apply :class:`~geoemb.data.augment.RSCAugmentation` on the batch's device while training."""
        trainer = getattr(self, "_trainer", None)
        if self.augment is not None and trainer is not None and trainer.training:
            masks = {k: batch[k] for k in ("mask", "mask_3class") if k in batch}
            batch["image"], new = self.augment(batch["image"], masks)
            batch.update(new)
        return batch
