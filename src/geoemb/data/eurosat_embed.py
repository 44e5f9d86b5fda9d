"""EuroSAT-Embed: per-pixel foundation-model embeddings of EuroSAT (GeoPool benchmark data).

Dataset + LightningDataModule. The layout, encoder formats, split files and the reference reader
(nodata/NaN masks, dequantisation) are in :mod:`geoemb.data.eurosat_files`; streaming a split
through pooling is :mod:`geoemb.data.eurosat_pool`; both are re-exported here. Real vs synthetic is
the DataModule's :class:`~geoemb.data.source.DataSource` (``data.synthetic=true``: a content-keyed
stand-in written by :mod:`geoemb.synthetic.eurosat_embed`).

Items/batches: ``image`` (B, D, 64, 64) float32, ``mask`` (B, 64, 64) bool (True = valid),
``label`` (B,) long.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import torch
from torch.utils.data import Dataset

from geoemb.data.base import SplitDataModule
from geoemb.data.eurosat_files import (
    CLASSES,
    DOWNLOAD_HINT,
    ENCODER_FORMATS,
    GET_DATA,
    IMAGE_SIZE,
    SPLIT_TYPES,
    SPLITS,
    VALUES,
    EmbeddingFileError,
    EncoderFormat,
    check_format,
    dequantize,
    encoder_dir,
    label_of,
    missing_files,
    parse_split_file,
    read_embedding,
    split_file,
)
from geoemb.data.eurosat_pool import dataset_summary, iter_batches, pool_dataset
from geoemb.data.source import DataSource
from geoemb.errors import DataNotFoundError
from geoemb.synthetic import eurosat_embed as synth

__all__ = [
    "CLASSES",
    "DOWNLOAD_HINT",
    "ENCODER_FORMATS",
    "IMAGE_SIZE",
    "SPLITS",
    "SPLIT_TYPES",
    "VALUES",
    "EmbeddingFileError",
    "EncoderFormat",
    "EuroSATEmbedDataModule",
    "EuroSATEmbedDataset",
    "check_format",
    "data_source",
    "dataset_summary",
    "dequantize",
    "encoder_dir",
    "is_synthetic",
    "iter_batches",
    "label_of",
    "parse_split_file",
    "pool_dataset",
    "read_embedding",
    "split_file",
]

SYNTHETIC_VERSION = 1


class EuroSATEmbedDataset(Dataset):
    """EuroSAT-Embed split of one encoder.

    Parameters
    ----------
    root:
        Data root holding the split files and ``eurosat-<encoder>/``.
    encoder:
        ``aef``, ``olmoearth-nano|tiny|base`` or ``tessera``.
    split:
        ``train``, ``val`` or ``test``.
    split_type:
        ``standard`` (random) or ``spatial`` (longitude).
    values:
        ``raw`` or ``dequantized``.
    size:
        Resampled height = width (64 as in the reference).

    Items are dicts ``image`` (D, size, size) float32, ``mask`` (size, size) bool, ``label`` long.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        encoder: str = "aef",
        split: str = "train",
        split_type: str = "standard",
        values: str = "raw",
        size: int = IMAGE_SIZE,
    ) -> None:
        if encoder not in ENCODER_FORMATS:
            raise ValueError(f"encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
        if values not in VALUES:
            raise ValueError(f"values={values!r}: expected one of {VALUES}")
        self.root = Path(root)
        self.encoder = encoder
        self.split = split
        self.split_type = split_type
        self.values = values
        self.size = size
        self.dir = encoder_dir(root, encoder)
        if not self.dir.is_dir():
            raise DataNotFoundError(
                f"EuroSAT-Embed encoder directory not found: {self.dir}. {DOWNLOAD_HINT}"
            )
        self.stems = parse_split_file(split_file(root, split, split_type))
        self.paths = [self.dir / s.rsplit("_", 1)[0] / f"{s}.tif" for s in self.stems]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) listed in {split_file(root, split, split_type)} are "
                f"missing under {self.dir}, e.g. {missing[0]}"
            )
        self.labels = np.array([label_of(s) for s in self.stems], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        x, m = read_embedding(self.paths[idx], self.encoder, self.values, self.size)
        return {
            "image": torch.from_numpy(x),
            "mask": torch.from_numpy(m),
            "label": torch.tensor(self.labels[idx], dtype=torch.long),
        }

    @property
    def num_bands(self) -> int:
        """Embedding dimension D (band count of the first file)."""
        with rasterio.open(self.paths[0]) as src:
            check_format(self.paths[0], self.encoder, src.count, src.dtypes[0])
            return int(src.count)


def is_synthetic(root: str | os.PathLike) -> bool:
    """True if ``root`` was written by :mod:`geoemb.synthetic.eurosat_embed`."""
    return (Path(root) / synth.MARKER).is_file()


def data_source(root: str | os.PathLike) -> str:
    """``"synthetic"`` or ``"real"`` for a data root."""
    return "synthetic" if is_synthetic(root) else "real"


class EuroSATEmbedDataModule(SplitDataModule):
    """LightningDataModule over EuroSAT-Embed embedding rasters (for learnable pooling heads).

    Parameters
    ----------
    root:
        Real data root (split files + ``eurosat-<encoder>/``).
    encoder, values:
        See :class:`EuroSATEmbedDataset`.
    split:
        Split type: ``standard`` (random) or ``spatial``.
    batch_size, num_workers, pin_memory:
        DataLoader settings (``num_workers: None``: what the machine has).
    synthetic:
        Read the synthetic stand-in (generated once, content-keyed, under ``synthetic_root``).
    synthetic_root:
        Parent folder of the stand-ins (default ``<root>/../synthetic/eurosat_embed``); never a
        folder holding other data (refused).
    synthetic_kwargs:
        Arguments of :func:`geoemb.synthetic.eurosat_embed.generate` (e.g. ``n_per_class``);
        ``encoders`` defaults to ``[encoder]``.
    size:
        Resampled chip side (64, as the reference loader).
    """

    def __init__(
        self,
        root: str = "data/eurosat_embed",
        encoder: str = "aef",
        split: str = "standard",
        values: str = "raw",
        batch_size: int = 64,
        num_workers: int | str | None = 0,
        pin_memory: bool = False,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        synthetic_kwargs: dict | None = None,
        size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if split not in SPLIT_TYPES:
            raise ValueError(f"data.split={split!r}: expected one of {SPLIT_TYPES}")
        if values not in VALUES:
            raise ValueError(f"data.values={values!r}: expected one of {VALUES}")
        if encoder not in ENCODER_FORMATS:
            raise ValueError(f"data.encoder={encoder!r}: expected one of {sorted(ENCODER_FORMATS)}")
        self.encoder = encoder
        self.split = split
        self.values = values
        kwargs = dict(synthetic_kwargs or {})
        kwargs["encoders"] = list(kwargs.get("encoders") or [encoder])
        if encoder not in kwargs["encoders"]:
            raise ValueError(
                f"data.synthetic_kwargs.encoders={kwargs['encoders']} lacks data.encoder={encoder!r}"
            )
        self.source = DataSource(
            name=f"EuroSAT-Embed ({encoder}, {split} split)",
            root=Path(root),
            synthetic=synthetic,
            synthetic_root=synthetic_root or Path(root).parent / "synthetic" / "eurosat_embed",
            synthetic_kwargs=kwargs,
            generator=synth.generate,
            check=partial(missing_files, encoder=encoder, split_type=split),
            download_hint=GET_DATA,
            version=SYNTHETIC_VERSION,
            legacy_markers=(synth.MARKER, synth.COMPLETE),
        )
        self.datasets: dict[str, EuroSATEmbedDataset] = {}

    @property
    def data_root(self) -> Path:
        """The folder read: the real root or the stand-in's (content-keyed) folder."""
        return self.source.synthetic_dir() if self.synthetic else Path(self.source.root)

    @property
    def num_classes(self) -> int:
        return len(CLASSES)

    def dataset(self, split: str) -> EuroSATEmbedDataset:
        """The (cached) dataset of ``split`` (train/val/test) for this split type."""
        if split not in self.datasets:
            self.datasets[split] = EuroSATEmbedDataset(
                self.check(), self.encoder, split, self.split, self.values, self.hparams.size
            )
        return self.datasets[split]

    @property
    def num_bands(self) -> int:
        """Embedding dimension D of the encoder's files."""
        return self.dataset("train").num_bands

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", ("train", "val", "test")
        )
        for s in splits:
            self.dataset(s)
