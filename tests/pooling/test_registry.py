"""The pooling-method registry: names, metadata, derived lists, and the functions built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import geoemb.pooling as pooling
from geoemb.errors import InputError
from geoemb.pooling import (
    ALL_METHODS,
    METHODS,
    PARAMETRIC,
    TRAINING_FREE,
    fit_from_pooled,
    fit_parametric,
    infeasible_reason,
    output_dim,
    pool,
    pool_many,
    transform_pooled,
)
from geoemb.pooling import functional as F
from geoemb.utils.registry import Registry, UnknownNameError


def test_lists_are_derived_from_the_registry():
    assert isinstance(METHODS, Registry)
    assert TRAINING_FREE == METHODS.names(kind="free") == F.TRAINING_FREE
    assert METHODS.names(kind="parametric") == ["pca_<k>", "bovw_<K>"]
    assert PARAMETRIC == ["pca_64", "bovw_128"] and ALL_METHODS == TRAINING_FREE + PARAMETRIC
    assert all(e.description for e in METHODS)
    listed = METHODS.describe().split()
    assert all(m in listed for m in TRAINING_FREE) and all(m in METHODS for m in ALL_METHODS)


@pytest.mark.parametrize(
    "name, kind, fit_on, dim",
    [("mean", "free", None, 16), ("flattened_cov", "free", None, 136),
     ("pca_8", "parametric", "mean", 8), ("bovw_32", "parametric", "pixels", 32)],
)  # fmt: skip
def test_metadata_answers_what_callers_ask(name, kind, fit_on, dim):
    r = METHODS.resolve(name)
    assert r.meta["kind"] == kind and r.meta.get("fit_on") == fit_on
    assert output_dim(name, 16) == r.output_dim(16) == dim


@pytest.mark.parametrize(
    "name", ["avg", "MEAN", "pca64", "pca_", "pca_x", "pca_0", "bovw_007", "bovw", "gem_learned"]
)
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(UnknownNameError, match=r"unknown method .*mean, max.*pca_<k>, bovw_<K>"):
        pool(torch.zeros(1, 4, 2, 2), name)
    with pytest.raises(InputError, match="unknown method"):
        pool_many(torch.zeros(1, 4, 2, 2), ["mean", name])
    with pytest.raises(InputError, match="unknown method"):
        output_dim(name, 4)
    with pytest.raises(InputError, match="unknown parametric method.*pca_64, bovw_128"):
        fit_parametric(name, torch.zeros(4, 4, 2, 2))


def test_fit_parametric_refuses_training_free_names():
    with pytest.raises(InputError, match="unknown parametric method 'mean'"):
        fit_parametric("mean", torch.zeros(4, 4, 2, 2))


def test_pool_many_repeated_name_is_pooled_once():
    """Regression: a repeated training-free name stacked its rows twice ((2B, F) for B samples)."""
    x = torch.randn(3, 5, 4, 4)
    out = pool_many(x, ["mean", "std", "mean"])
    assert list(out) == ["mean", "std"]
    assert out["mean"].shape == (3, 5)
    # the same methods requested once give the same numbers (std switches on the fused
    # float64 moments pass, so compare with the same method set, not with pool(x, "mean") alone)
    once = pool_many(x, ["mean", "std"])
    assert torch.equal(out["mean"], once["mean"]) and torch.equal(out["std"], once["std"])
    torch.testing.assert_close(out["mean"], pool(x, "mean"), rtol=1e-6, atol=1e-7)


def test_state_of_another_size_is_refused():
    """Regression: pool('pca_4', state=<pca_8 state>) returned 8 columns for a 4-column method."""
    x = torch.randn(20, 12, 3, 3)
    st = fit_parametric("pca_8", x)
    with pytest.raises(ValueError, match=r"fit as 'pca_8' \(8 outputs\), not 'pca_4'"):
        pool(x, "pca_4", state=st)
    with pytest.raises(ValueError, match="fit as 'pca_8'"):
        pool_many(x, ["mean", "pca_4"], states={"pca_4": st})


def test_fit_from_pooled_equals_fit_on_rasters():
    """The GeoPool path (fit PCA on cached mean vectors) is bit-identical to fit_parametric."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, 5, 4, generator=g)
    mask = torch.rand(40, 5, 4, generator=g) > 0.2
    mask[:, 0, 0] = True
    means = pool(x, "mean", mask=mask)
    a = fit_from_pooled("pca_6", means)
    b = fit_parametric("pca_6", x, mask)
    assert torch.equal(a.components, b.components) and torch.equal(a.mean, b.mean)
    assert a.name == b.name == "pca_6"
    assert torch.equal(transform_pooled("pca_6", means, a), pool(x, "pca_6", mask=mask, state=b))
    with pytest.raises(ValueError, match="'bovw_8' is fit on pixels"):
        fit_from_pooled("bovw_8", means)


def test_infeasible_reason():
    assert "components > D=32" in infeasible_reason("pca_64", 32, 1000)
    assert "50 train samples" in infeasible_reason("pca_64", 128, 50)
    assert infeasible_reason("pca_64", 64, 64) is None
    assert infeasible_reason("bovw_128", 4, 3) is None and infeasible_reason("stats", 4, 1) is None
    with pytest.raises(InputError, match="unknown method"):
        infeasible_reason("pca", 4, 4)


def test_build_gives_the_pooling_function_or_the_fitted_state():
    x = torch.randn(10, 6, 3, 3)
    assert torch.equal(METHODS.build("stats")(x), pool(x, "stats"))
    st = METHODS.build("bovw_4", x_train=x, seed=1)
    assert torch.equal(st.centroids, fit_parametric("bovw_4", x, seed=1).centroids)


def test_implementations_never_import_the_registry():
    """The registry imports functional/parametric/heads, never the reverse (no lazy cycle)."""
    root = Path(pooling.__file__).parent
    for path in root.glob("*.py"):
        if path.name in ("registry.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad = [n for n in names if n.startswith("geoemb.pooling.registry") or n == "geoemb"]
            assert not bad, f"{path.name} imports {bad}"
