"""Lightning predict + CorpusPredictionWriter builds the same corpus as CorpusBuilder.build."""

import numpy as np
import pyarrow.parquet as pq
import torch
from lightning import Trainer
from torch import nn

from geoemb.compression.bitpack import pack_bits
from geoemb.corpus_predict import CorpusPredictionWriter, EmbeddingPredictor
from geoemb.retrieval.store import CorpusBuilder, CorpusStore


def _batches(n=300, d=32, bs=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    lon = rng.uniform(-180, 180, n)
    lat = rng.uniform(-80, 80, n)
    out = []
    for s in range(0, n, bs):
        sl = slice(s, s + bs)
        out.append({"id": np.arange(n)[sl], "lon": lon[sl], "lat": lat[sl], "x": x[sl]})
    return out


class Linear(nn.Module):
    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(d, d, generator=g))

    def forward(self, x):
        return x @ self.w


def _collate(items):
    (b,) = items
    return {k: torch.as_tensor(v) for k, v in b.items()}


def test_predict_writer_equals_builder_and_resumes(tmp_path):
    batches = _batches()
    enc = Linear(32)
    loader = torch.utils.data.DataLoader(batches, batch_size=1, collate_fn=_collate)
    writer = CorpusPredictionWriter(
        tmp_path / "pl", dim=32, geohash_precision=1, max_rows_per_shard=50
    )
    trainer = Trainer(
        accelerator="cpu", devices=1, callbacks=[writer], logger=False, enable_progress_bar=False
    )
    trainer.predict(EmbeddingPredictor(enc), dataloaders=loader, return_predictions=False)
    assert writer.parts_written == list(range(len(batches)))

    with torch.no_grad():
        ref_batches = [
            {
                "id": b["id"],
                "lon": b["lon"],
                "lat": b["lat"],
                "code": pack_bits(enc(torch.from_numpy(b["x"])).numpy() > 0),
            }
            for b in batches
        ]
    CorpusBuilder(tmp_path / "ref", dim=32, geohash_precision=1, max_rows_per_shard=50).build(
        ref_batches, progress=False
    )

    a = CorpusStore(tmp_path / "pl").read().sort_by("id")
    b = CorpusStore(tmp_path / "ref").read().sort_by("id")
    assert a.num_rows == b.num_rows == 300
    for col in ("id", "code", "lon", "lat", "geometry"):
        assert a[col].to_pylist() == b[col].to_pylist(), col
    man_a = pq.read_table(tmp_path / "pl" / "manifest.parquet").sort_by("path")
    man_b = pq.read_table(tmp_path / "ref" / "manifest.parquet").sort_by("path")
    assert man_a["path"].to_pylist() == man_b["path"].to_pylist()
    assert man_a["rows"].to_pylist() == man_b["rows"].to_pylist()

    # re-running the same predict skips finished parts (files untouched)
    shard = sorted((tmp_path / "pl").glob("geohash=*/*.parquet"))[0]
    mtime = shard.stat().st_mtime_ns
    writer2 = CorpusPredictionWriter(
        tmp_path / "pl", dim=32, geohash_precision=1, max_rows_per_shard=50
    )
    Trainer(
        accelerator="cpu", devices=1, callbacks=[writer2], logger=False, enable_progress_bar=False
    ).predict(EmbeddingPredictor(enc), dataloaders=loader, return_predictions=False)
    assert shard.stat().st_mtime_ns == mtime
    assert CorpusStore(tmp_path / "pl").read().num_rows == 300


def test_predict_writer_refuses_a_manifest_with_the_wrong_row_count(tmp_path):
    import pytest

    from geoemb.retrieval.build import CorpusIntegrityError

    batches = _batches(n=100, bs=50)
    loader = torch.utils.data.DataLoader(batches, batch_size=1, collate_fn=_collate)
    writer = CorpusPredictionWriter(tmp_path, dim=32, geohash_precision=1, expected_rows=101)
    trainer = Trainer(
        accelerator="cpu", devices=1, callbacks=[writer], logger=False, enable_progress_bar=False
    )
    with pytest.raises(CorpusIntegrityError, match="hold 100 rows but the input has 101"):
        trainer.predict(
            EmbeddingPredictor(Linear(32)), dataloaders=loader, return_predictions=False
        )
    assert not (tmp_path / "manifest.parquet").exists()
    # the lock was released: the same job rerun with the right count completes from the parts
    writer = CorpusPredictionWriter(tmp_path, dim=32, geohash_precision=1, expected_rows=100)
    Trainer(
        accelerator="cpu", devices=1, callbacks=[writer], logger=False, enable_progress_bar=False
    ).predict(EmbeddingPredictor(Linear(32)), dataloaders=loader, return_predictions=False)
    assert CorpusStore(tmp_path).info["n_rows"] == 100 and writer.parts_written == [0, 1]
