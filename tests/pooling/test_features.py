"""pool_split: one pass per split for all methods, parametric ones fitted on train only, as the
registry metadata says; checked against independent computations (direct pooling, sklearn PCA)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from geoemb.data.eurosat_embed import EuroSATEmbedDataset
from geoemb.errors import InputError
from geoemb.pooling import ALL_METHODS, fit_parametric, pool, pool_many
from geoemb.pooling import features as F
from geoemb.pooling.cache import PooledFeatureCache, SplitCache
from geoemb.synthetic.eurosat_embed import generate

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("ee"), n_per_class=5, encoders=("aef",), size=16)
    return tuple(EuroSATEmbedDataset(root, "aef", s, "spatial", size=16) for s in ("train", "test"))


def _stack(ds):
    items = [ds[i] for i in range(len(ds))]
    return (torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items]),
            np.array([int(it["label"]) for it in items]))  # fmt: skip


def test_matches_direct_pooling_and_sklearn_pca(splits):
    train, test = splits
    opts = F.PoolOptions(batch_size=7, seed=3)  # batches that do not divide the splits
    out = F.pool_split(train, test, ["stats", "pca_8", "bovw_4", "pca_64"], opts, CPU, desc="t")
    assert set(out) == {"stats", "pca_8", "bovw_4"}  # pca_64: 64 > 30 train samples (skipped)
    xtr, mtr, ytr = _stack(train)
    xte, mte, yte = _stack(test)
    np.testing.assert_array_equal(out["stats"]["y_train"], ytr)
    np.testing.assert_array_equal(out["stats"]["y_test"], yte)
    direct = pool_many(xte, ["stats"], mask=mte)["stats"].numpy()
    np.testing.assert_allclose(out["stats"]["x_test"], direct, rtol=1e-5, atol=1e-5)
    # pca_8: sklearn PCA fit on the train mean vectors only (sign-aligned per component)
    mean_tr = pool(xtr, "mean", mask=mtr).double().numpy()
    mean_te = pool(xte, "mean", mask=mte).double().numpy()
    ref = PCA(8, svd_solver="full").fit(mean_tr)
    for key, m in (("x_train", mean_tr), ("x_test", mean_te)):
        got, want = out["pca_8"][key].astype(np.float64), ref.transform(m)
        signs = np.sign((got * want).sum(0))
        np.testing.assert_allclose(got, want * signs, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    # bovw_4: fitted on the train pixels streamed in the same mini-batches, nothing from test
    batches = ((xtr[i : i + 7], mtr[i : i + 7]) for i in range(0, len(xtr), 7))
    state = fit_parametric("bovw_4", batches, seed=3)
    np.testing.assert_allclose(out["bovw_4"]["x_test"], pool(xte, "bovw_4", mask=mte, state=state))
    np.testing.assert_allclose(out["bovw_4"]["x_train"].sum(1), 1.0, rtol=1e-5)


def test_cache_hits_skip_pooling(splits, tmp_path, monkeypatch):
    train, test = splits
    slot = SplitCache(PooledFeatureCache(tmp_path), "aef", "spatial", "digest")
    opts = F.PoolOptions(batch_size=16)
    first = F.pool_split(train, test, ["mean", "bovw_4"], opts, CPU, slot)
    monkeypatch.setattr(F, "pool_many", lambda *a, **k: pytest.fail("pooled on a cache hit"))
    again = F.pool_split(train, test, ["mean", "bovw_4"], opts, CPU, slot)
    for m in first:
        for k in first[m]:
            np.testing.assert_array_equal(again[m][k], first[m][k])
    # another seed is another fit of bovw: a miss (pooling runs and fails here, as patched)
    with pytest.raises(pytest.fail.Exception):
        F.pool_split(train, test, ["bovw_4"], F.PoolOptions(batch_size=16, seed=1), CPU, slot)


def test_expand_methods_asks_the_registry():
    assert F.expand_methods("all") == list(ALL_METHODS)
    assert F.expand_methods(["pca_16", "mean"]) == ["pca_16", "mean"]
    with pytest.raises(InputError, match="unknown pooling method 'avg'"):
        F.expand_methods(["mean", "avg"])
    assert F.method_meta("bovw_32")["fit_on"] == "pixels"


def test_no_pooling_name_is_parsed_outside_pooling():
    """Dispatch goes through the registry metadata, never ``startswith("pca_")`` (issue 11)."""
    src = Path(F.__file__).resolve().parents[1]
    pat = re.compile(r"startswith\(\(?\s*[\"'](pca|bovw)")
    bad = [str(p) for p in src.rglob("*.py") if "pooling" not in p.relative_to(src).parts
           and pat.search(p.read_text())]  # fmt: skip
    assert not bad, bad
