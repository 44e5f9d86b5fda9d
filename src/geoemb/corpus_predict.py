"""Build a corpus with Lightning ``predict``: any strategy (DDP, multi-node) feeds the shard writer.

Lightning wiring around the plain :class:`~geoemb.retrieval.store.CorpusBuilder` (kept out of the
core ``retrieval`` package, which imports neither Hydra nor Lightning).

Each predict batch becomes one input *part* of :class:`~geoemb.retrieval.store.CorpusBuilder`;
part ids are ``batch_idx * world_size + global_rank`` (unique across processes, deterministic for a
given world size), so an interrupted run re-launched with the same settings skips finished parts.
Rank 0 holds the build lock (a second job on the same root refuses) and writes the manifest after a
barrier at the end of predict; with ``expected_rows`` it refuses to write one whose row count
differs (a lost or duplicated batch).

Example::

    module = EmbeddingPredictor(encoder=my_net)          # or None: batches already hold embeddings
    writer = CorpusPredictionWriter("data/corpus", dim=1024, quantization={...})
    Trainer(strategy="ddp", devices=4, callbacks=[writer]).predict(
        module, dataloaders=loader, return_predictions=False)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn

from geoemb.retrieval.store import CorpusBuilder

PASS_THROUGH = ("id", "lon", "lat", "bbox", "geometry")


def _numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v


class EmbeddingPredictor(LightningModule):
    """``predict_step``: batch ``{"x" | "embedding", "id", "lon", "lat", ...}`` → corpus rows.

    Parameters
    ----------
    encoder:
        Optional ``nn.Module`` mapping ``batch["x"]`` to embeddings ``(n, D)`` (e.g. a backbone +
        :func:`geoemb.pooling.pool`); without it ``batch["embedding"]`` is used as is.
    """

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder

    def predict_step(
        self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict:
        if self.encoder is not None:
            if "x" not in batch:
                raise ValueError("EmbeddingPredictor with an encoder needs batch['x']")
            emb = self.encoder(batch["x"])
        elif "embedding" in batch:
            emb = batch["embedding"]
        elif "code" in batch:
            return {k: v for k, v in batch.items() if k != "x"}
        else:
            raise ValueError("predict batch needs 'x' (with an encoder), 'embedding' or 'code'")
        out = {k: v for k, v in batch.items() if k not in ("x", "embedding")}
        out["embedding"] = emb
        return out


class CorpusPredictionWriter(BasePredictionWriter):
    """Write every predict batch as one corpus part (atomic per shard, resumable per part).

    Arguments are those of :class:`~geoemb.retrieval.store.CorpusBuilder`, plus ``expected_rows``
    (the dataset's row count, checked before the manifest is written).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        dim: int,
        geohash_precision: int = 3,
        max_rows_per_shard: int = 5000,
        quantization: Mapping | None = None,
        model: Mapping | None = None,
        encoder: Callable[[np.ndarray], np.ndarray] | None = None,
        expected_rows: int | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.expected_rows = expected_rows
        self._lock = True
        self.kwargs = dict(
            root=root,
            dim=dim,
            geohash_precision=geohash_precision,
            max_rows_per_shard=max_rows_per_shard,
            quantization=quantization,
            model=model,
            encoder=encoder,
        )
        self._builder: CorpusBuilder | None = None
        self.parts_written: list[int] = []

    @property
    def builder(self) -> CorpusBuilder:
        if self._builder is None:
            self._builder = CorpusBuilder(**self.kwargs, lock=self._lock)
        return self._builder

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._lock = trainer.is_global_zero  # the other ranks write parts of rank 0's locked build
        if trainer.is_global_zero:
            _ = self.builder  # rank 0 writes/validates _build.json before the others start
        trainer.strategy.barrier("corpus-writer-setup")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        part = batch_idx * trainer.world_size + trainer.global_rank
        rows = {k: _numpy(v) for k, v in prediction.items()}
        self.builder.write_part(part, rows)
        self.parts_written.append(part)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier("corpus-writer-end")
        if trainer.is_global_zero:
            self.builder.finalize(expected_rows=self.expected_rows)
        else:
            self.builder.close()
