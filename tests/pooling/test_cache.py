"""Pooled-feature cache: reference layout and dtypes, keyed by the content it was computed from."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from geoemb.pooling.cache import (
    PooledFeatureCache,
    SplitCache,
    cache_key,
    cache_path,
    files_digest,
    load_pooled,
    save_pooled,
)


def test_cache_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(7, 5)), rng.normal(size=(3, 5))
    ytr, yte = np.arange(7) % 3, np.array([0, 1, 2])
    p = cache_path(tmp_path / "embeddings", "aef", "stats", "spatial")
    assert p == tmp_path / "embeddings" / "aef" / "stats" / "spatial.npz"
    save_pooled(p, xtr, ytr, xte, yte, meta={"data_source": "synthetic"})
    with np.load(p) as z:  # exactly the reference keys and dtypes
        assert sorted(z.files) == ["x_test", "x_train", "y_test", "y_train"]
        assert z["x_train"].dtype == np.float32 and z["y_train"].dtype == np.int32
    d = load_pooled(p)
    np.testing.assert_allclose(d["x_train"], xtr.astype(np.float32))
    np.testing.assert_array_equal(d["y_test"], yte)
    assert '"synthetic"' in p.with_suffix(".json").read_text()
    np.savez(tmp_path / "bad.npz", x_train=xtr)
    with pytest.raises(ValueError, match=r"bad\.npz.*lacks keys"):
        load_pooled(tmp_path / "bad.npz")


def _rec(seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(6, 4)).astype(np.float32), "y_train": np.arange(6) % 2,
            "x_test": rng.normal(size=(2, 4)).astype(np.float32), "y_test": np.array([0, 1])}  # fmt: skip


def test_files_digest_is_the_bytes_not_the_names(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    memo: dict[str, str] = {}
    d0 = files_digest([a, b], memo)
    assert len(memo) == 2 and files_digest([a, b]) == d0
    assert files_digest([b, a]) != d0  # order is part of the data (split file order)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for p in (a, b):
        (moved / p.name).write_bytes(p.read_bytes())
    assert files_digest([moved / "a.tif", moved / "b.tif"]) == d0  # same bytes, other folder
    b.write_bytes(b"TWO")  # same name, size and folder; other content
    assert files_digest([a, b]) != d0
    assert cache_key(d0, "stats") != cache_key(d0, "mean")
    assert cache_key(d0, "bovw_128", {"seed": 0}) != cache_key(d0, "bovw_128", {"seed": 1})


def test_entry_reused_only_for_its_key(tmp_path, caplog):
    cache = PooledFeatureCache(tmp_path / "embeddings")
    slot = SplitCache(cache, "aef", "spatial", "d" * 64, {"values": "raw"})
    rec = _rec()
    path = slot.put("stats", rec)
    assert path == cache_path(tmp_path / "embeddings", "aef", "stats", "spatial")
    back = slot.get("stats")
    np.testing.assert_array_equal(back["x_test"], rec["x_test"])
    # other data, other parameters, other method: misses (the file name is the same)
    assert SplitCache(cache, "aef", "spatial", "e" * 64, {"values": "raw"}).get("stats") is None
    assert SplitCache(cache, "aef", "spatial", "d" * 64, {"values": "dequantized"}).get(
        "stats") is None  # fmt: skip
    assert slot.get("stats", {"seed": 1}) is None
    # an npz replaced after its sidecar was written is not trusted
    save_pooled(path, **_rec(1))
    with caplog.at_level("WARNING", logger="geoemb.pooling.cache"):
        assert slot.get("stats") is None
    assert "changed after it was written" in caplog.text


def test_truncated_or_foreign_entries_are_misses(tmp_path):
    cache = PooledFeatureCache(tmp_path)
    slot = SplitCache(cache, "aef", "standard", "k")
    path = slot.put("mean", _rec())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["npz_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    side.write_text(json.dumps(meta))  # a consistent sidecar over a truncated npz
    assert slot.get("mean") is None
    side.write_text("{not json")
    assert slot.get("mean") is None
    # a reference archive (npz, no sidecar): only reused when the user trusts unkeyed files
    side.unlink()
    save_pooled(path, **_rec(2))
    assert slot.get("mean") is None
    trusted = SplitCache(PooledFeatureCache(tmp_path, trust_unkeyed=True), "aef", "standard", "k")
    np.testing.assert_array_equal(trusted.get("mean")["x_train"], _rec(2)["x_train"])
