"""Shared DataModule plumbing for datasets organised as named splits (train/val/test)."""

from __future__ import annotations

from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(LightningDataModule):
    """A DataModule whose subclass provides ``dataset(split)``; the loaders come from here.

    Uses ``hparams.batch_size``, ``hparams.eval_batch_size`` (optional, for val/test/predict),
    ``hparams.num_workers`` and ``hparams.pin_memory``; training batches are shuffled and
    ``predict`` runs over the test split.
    """

    def dataset(self, split: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        bs = hp.batch_size if split == "train" else (hp.get("eval_batch_size") or hp.batch_size)
        return DataLoader(
            self.dataset(split),
            batch_size=bs,
            shuffle=shuffle,
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
