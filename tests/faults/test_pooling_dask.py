"""Pooled-feature caches built as Dask tasks over chunks of patches: bitwise the in-process
features and cache entries; chunk files reused only under their key (foreign, truncated or
mismatched ones recomputed); a worker killed (SIGKILL) mid-chunk is retried with identical
output, or — retries used up — fails naming the chunk with no entry assembled, and the rerun
completes identically. One ``LocalCluster`` for the module."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from geoemb.data.eurosat_embed import EuroSATEmbedDataset
from geoemb.pooling import features as F
from geoemb.pooling.cache import PooledFeatureCache, SplitCache, read_sidecar
from geoemb.pooling.distributed import PoolingChunkError, plan_chunks, run_chunk
from geoemb.synthetic.eurosat_embed import generate
from tests.faults.dask_kill import die_once_or_always, set_allowed_failures

pytestmark = pytest.mark.faults

CPU = torch.device("cpu")
METHODS = ["mean_max", "stats", "mean", "pca_4", "bovw_4"]  # mean/mean_max share statistics
OPTS = F.PoolOptions(batch_size=7, seed=3)  # batches that do not divide the splits
CHUNK = 10  # -> 14 patches per chunk: several chunks per part


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("ee_dask"), n_per_class=5, encoders=("aef",),
                    size=16)  # fmt: skip
    return tuple(EuroSATEmbedDataset(root, "aef", s, "spatial", size=16) for s in ("train", "test"))


def _slot(root) -> SplitCache:
    return SplitCache(PooledFeatureCache(root), "aef", "spatial", "d" * 64, {"size": 16})


def _pool(splits, dask=None, cache=None, methods=METHODS):
    return F.pool_split(*splits, methods, OPTS, CPU, cache, "aef/spatial", dask=dask,
                        chunk_size=CHUNK)  # fmt: skip


@pytest.fixture(scope="module")
def reference(splits, tmp_path_factory):
    root = tmp_path_factory.mktemp("ref_cache")
    return _pool(splits, cache=_slot(root)), root


def _assert_bitwise(got, ref) -> None:
    assert set(got) == set(ref)
    for m in ref:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            a, b = got[m][k], ref[m][k]
            assert a.dtype == b.dtype and a.shape == b.shape, (m, k)
            assert a.tobytes() == b.tobytes(), (m, k)


def test_local_cluster_equals_in_process_bitwise(client, splits, reference, tmp_path):
    ref, ref_root = reference
    assert len(plan_chunks(len(splits[0]), CHUNK, OPTS.batch_size, "train", ["x"])) > 1
    slot = _slot(tmp_path)
    _assert_bitwise(_pool(splits, client, slot), ref)
    for m in METHODS:  # same keys as the in-process entries (either path reuses the other's)
        a = read_sidecar(tmp_path / "aef" / m / "spatial.npz")
        b = read_sidecar(ref_root / "aef" / m / "spatial.npz")
        assert a["key"] == b["key"]
        assert not slot.chunk_dir(m).exists()  # assembled: chunks removed
    # in-process reads the Dask-built entries as it reads its own (cache hits: int32 labels)
    _assert_bitwise(_pool(splits, "none", slot), _pool(splits, "none", _slot(ref_root)))


def test_no_cache_and_spec_string(client, splits, reference):
    ref, _ = reference
    _assert_bitwise(_pool(splits, client.scheduler.address, methods=["stats", "pca_4"]),
                    {m: ref[m] for m in ("stats", "pca_4")})  # fmt: skip


def test_chunk_files_reused_only_under_their_key(splits, tmp_path, monkeypatch):
    train, _ = splits
    slot = _slot(tmp_path)
    c = plan_chunks(len(train), CHUNK, OPTS.batch_size, "train", ["mean", "stats"], "t")[1]
    files = {m: (str(slot.chunk_dir(m) / "c.npz"), c.key(slot.key(m))) for m in c.methods}
    feats, y = run_chunk(train, c, {}, OPTS, "cpu", files)
    direct, y2 = F._stream(torch.utils.data.Subset(train, range(c.start, c.stop)),
                           ["mean", "stats"], {}, OPTS, CPU, "d")  # fmt: skip
    assert all(feats[m].tobytes() == direct[m].tobytes() for m in c.methods)
    np.testing.assert_array_equal(y, y2)

    def no_stream(*a, **k):
        raise AssertionError("recomputed a valid chunk")

    monkeypatch.setattr(F, "_stream", no_stream)
    again, _ = run_chunk(train, c, {}, OPTS, "cpu", files)  # reused
    assert all(again[m].tobytes() == feats[m].tobytes() for m in c.methods)
    monkeypatch.undo()
    # a foreign key (other data / parameters / method group), a truncated file, another row range
    bad = [
        {m: (p, "0" * 32) for m, (p, _) in files.items()},
        {m: (p, plan_chunks(len(train), CHUNK, 7, "train", ["stats"], "t")[1].key(slot.key(m)))
         for m, (p, _) in files.items()},
    ]  # fmt: skip
    for f in bad:
        run_chunk(train, c, {}, OPTS, "cpu", files)  # valid files under `files`' keys
        assert _recomputes(monkeypatch, train, c, f)[1], "a chunk under another key was reused"
    run_chunk(train, c, {}, OPTS, "cpu", files)  # valid again, then one file truncated
    assert not _recomputes(monkeypatch, train, c, files)[1]
    p = files["stats"][0]
    with open(p, "r+b") as fh:
        fh.truncate(os.path.getsize(p) // 2)
    got, seen = _recomputes(monkeypatch, train, c, files)
    assert seen and got["stats"].tobytes() == feats["stats"].tobytes()


def _recomputes(monkeypatch, train, c, files):
    seen = []

    def counting(*a, **k):
        seen.append(1)
        return _real_stream(*a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(F, "_stream", counting)
        got, _ = run_chunk(train, c, {}, OPTS, "cpu", files)
    return got, bool(seen)


_real_stream = F._stream


def _install_killer(marker: str | None) -> int:
    """The worker's next train chunk [14, 28) kills its process (SIGKILL): once across all
    workers when ``marker`` is a path (an ``O_EXCL`` file), every time when ``None``."""
    import geoemb.pooling.features as feats

    real = feats.__dict__.setdefault("_real_stream", feats._stream)

    def dying(ds, methods, states, opts, device, desc, *a, **k):
        if "/train chunk of patches [14, 28)" in desc:
            die_once_or_always(marker)
        return real(ds, methods, states, opts, device, desc, *a, **k)

    feats._stream = dying
    return os.getpid()


def _uninstall_killer() -> None:
    import geoemb.pooling.features as feats

    if "_real_stream" in feats.__dict__:
        feats._stream = feats.__dict__.pop("_real_stream")


@pytest.mark.slow
@pytest.mark.parametrize("kill_every_time", [False, True])
def test_worker_killed_mid_chunk(client, splits, reference, tmp_path, kill_every_time):
    ref, _ = reference
    marker = None if kill_every_time else str(tmp_path / "killed_once")
    slot = _slot(tmp_path)
    client.run(_install_killer, marker)
    old = client.run_on_scheduler(set_allowed_failures, 0 if kill_every_time else 3)
    try:
        if kill_every_time:
            with pytest.raises(PoolingChunkError, match=r"aef/spatial/train chunk of patches "
                               r"\[14, 28\) .*died too often"):  # fmt: skip
                _pool(splits, client, slot)
            for m in METHODS:  # nothing assembled; the finished train chunks wait for the rerun
                assert not (tmp_path / "aef" / m / "spatial.npz").exists()
            assert any(slot.chunk_dir("stats").glob("train-*.npz"))
        else:
            _assert_bitwise(_pool(splits, client, slot), ref)
            assert os.path.exists(marker)  # a worker really was killed mid-task
    finally:
        client.run_on_scheduler(set_allowed_failures, old)
        client.run(_uninstall_killer)  # (workers restarted by their nanny have none)
    client.wait_for_workers(2, timeout=300)
    if kill_every_time:  # the rerun reuses the finished chunks and completes identically
        _assert_bitwise(_pool(splits, client, slot), ref)
        assert not slot.chunk_dir("stats").exists()
