"""The one registry shape: exact names, patterns, aliases, errors that list valid names."""

import pytest

from geoemb.errors import InputError
from geoemb.utils.registry import Registry, UnknownNameError


def _reg() -> Registry:
    reg = Registry("widget")
    reg.add("mean", lambda scale=1: ("mean", scale), output_dim=lambda D: D, description="avg")
    reg.add(
        "pca_<k>",
        lambda k, whiten=False: ("pca", k, whiten),
        pattern=r"pca_?(?P<k>\d+)",
        output_dim=lambda D, k: k,
        parametric=True,
    )
    reg.add("max", lambda: "max", aliases=("maximum",), output_dim=lambda D: D)
    return reg


def test_exact_pattern_alias_and_kwargs():
    reg = _reg()
    assert reg.build("mean", scale=2) == ("mean", 2)
    assert reg.build("PCA_16") == ("pca", 16, False)
    assert reg.build("pca16", whiten=True) == ("pca", 16, True)
    assert reg.resolve("pca_16").params == {"k": 16}
    assert reg.build("maximum") == "max"
    assert reg.output_dim("pca_16", 64) == 16 and reg.output_dim("mean", 64) == 64
    assert "pca_3" in reg and "median" not in reg and 3 not in reg
    assert reg.names() == ["mean", "pca_<k>", "max"]
    assert reg.names(parametric=True) == ["pca_<k>"]
    assert "pca_<k>" in reg.describe() and "avg" in reg.describe()


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        UnknownNameError, match=r"unknown widget 'median'; valid: mean, pca_<k>, max"
    ):
        _reg().resolve("median")
    with pytest.raises(InputError):  # also a ValueError for older callers
        _reg().build("pca_x")


def test_duplicate_registration_refused():
    reg = _reg()
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("MEAN", lambda: None)
