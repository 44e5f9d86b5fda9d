"""Learnable pooling heads: shapes, mask invariance, gradients, GeM(p=3) == training-free gem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from geoemb.pooling import pool
from geoemb.pooling.heads import HEADS, PooledClassifier, build_head
from geoemb.utils.registry import Registry

KW = {
    "attention_mil": {"hidden": 16},
    "gem": {},
    "pma": {"num_seeds": 3, "dim": 16, "num_heads": 2},
    "lowrank_bilinear": {"rank": 5},
}
EXPECTED_DIM = {"attention_mil": 12, "gem": 12, "pma": 48, "lowrank_bilinear": 5 + 15}


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 12, 6, 7, generator=g)
    mask = torch.rand(4, 6, 7, generator=g) > 0.3
    mask[:, 0, 0] = True
    return x, mask


@pytest.mark.parametrize("name", HEADS.names())
def test_shapes_mask_invariance_and_grads(name, data):
    torch.manual_seed(0)
    x, mask = data
    head = build_head(name, 12, **KW[name]).eval()
    out = head(x, mask)
    assert out.shape == (4, EXPECTED_DIM[name]) == (4, head.out_dim)
    assert torch.isfinite(out).all()
    # changing (even to NaN) the masked pixels changes nothing
    x2 = x.clone()
    x2[(~mask)[:, None].expand_as(x)] = float("nan")
    x2[:, :, 0, 0] += 0.0
    out2 = head(x2, mask)
    torch.testing.assert_close(out, out2, rtol=1e-5, atol=1e-6)
    x3 = torch.where(mask[:, None], x, torch.randn_like(x) * 100)
    torch.testing.assert_close(out, head(x3, mask), rtol=1e-5, atol=1e-6)
    # ... but changing a valid pixel does
    x4 = x.clone()
    x4[:, :, 0, 0] += 5.0
    assert not torch.allclose(head(x4, mask), out)
    # gradients reach the parameters and the valid inputs only
    xg = x3.clone().requires_grad_(True)
    head.train()
    loss = head(xg, mask).square().sum()
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert torch.all(xg.grad[(~mask)[:, None].expand_as(x)] == 0)
    assert xg.grad[mask[:, None].expand_as(x)].abs().sum() > 0
    # no mask == all-valid mask
    head.eval()
    torch.testing.assert_close(head(x), head(x, torch.ones_like(mask)))


def test_gem_head_p3_equals_training_free(data):
    x, mask = data
    head = build_head("gem", 12, p_init=3.0, learn_p=False)
    torch.testing.assert_close(head(x), pool(x, "gem"), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head(x, mask), pool(x, "gem", mask=mask), rtol=1e-5, atol=1e-6)
    learn = build_head("gem", 12, p_init=3.0)
    assert torch.allclose(learn.p, torch.tensor(3.0))
    torch.testing.assert_close(learn(x, mask), pool(x, "gem", mask=mask), rtol=1e-5, atol=1e-6)
    learn(x, mask).sum().backward()
    assert learn.theta.grad is not None and learn.theta.grad.abs() > 0


def test_attention_weights_and_classifier(data):
    x, mask = data
    head = build_head("attention_mil", 12)
    a = head.attention(x, mask)
    assert torch.all(a[~mask] == 0)
    torch.testing.assert_close(a.sum((1, 2)), torch.ones(4))
    clf = PooledClassifier(build_head("pma", 12, num_seeds=2, dim=8, num_heads=2), 10)
    assert clf(x, mask).shape == (4, 10)


def test_head_errors(data):
    x, mask = data
    with pytest.raises(ValueError, match="unknown head 'foo'.*attention_mil"):
        build_head("foo", 12)
    mask = mask.clone()
    mask[2] = False
    with pytest.raises(ValueError, match="batch index 2"):
        build_head("gem", 12)(x, mask)
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        build_head("gem", 12)(x[0])


def test_heads_registry_and_configs():
    """Every conf/model/head/*.yaml names a HEADS entry, and its keys are that head's arguments."""
    assert isinstance(HEADS, Registry) and all(e.description for e in HEADS)
    conf = Path(__file__).resolve().parents[2] / "conf" / "model" / "head"
    files = sorted(conf.glob("*.yaml"))
    assert {p.stem for p in files} == set(HEADS.names())
    for p in files:
        kw = yaml.safe_load(p.read_text())
        head = build_head(kw.pop("name"), 12, **kw)
        assert head(torch.randn(2, 12, 3, 3)).shape == (2, head.out_dim)
