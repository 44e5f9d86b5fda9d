"""Rotation-based quantizers: Haar rotation, paper TurboQuant targets, blog rotate_affine, RaBitQ."""

import numpy as np
import pytest

from geoemb.compression import build, haar_rotation, lloyd_max_codebook


def test_haar_rotation_orthogonal_and_sign_fixed():
    q = haar_rotation(64, seed=3)
    np.testing.assert_allclose(q.T @ q, np.eye(64), atol=1e-10)
    z = np.random.default_rng(3).standard_normal((64, 64))  # the same Gaussian draw
    r = q.T @ z  # = sign-fixed R: upper triangular with a positive diagonal
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-9)
    assert np.all(np.diag(r) > 0)


def test_lloyd_max_matches_gaussian_table_at_large_d():
    d = 4096
    table = {1: [0.7979], 2: [0.4528, 1.5104], 3: [0.2451, 0.7560, 1.3439, 2.1519]}
    for b, pos in table.items():
        levels, _, mse = lloyd_max_codebook(d, b)
        np.testing.assert_allclose(levels[levels > 0] * np.sqrt(d), pos, atol=3e-3)
    assert lloyd_max_codebook(d, 1)[2] * d == pytest.approx(0.36338, rel=3e-3)


@pytest.fixture(scope="module")
def unit_vectors():
    x = np.random.default_rng(123).standard_normal((1000, 1024)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("bits,target", [(1, 0.363), (2, 0.117), (3, 0.034), (4, 0.0094)])
def test_turboquant_mse_distortion_matches_paper(unit_vectors, bits, target):
    q = build(f"turboquant_mse_{bits}", seed=1).fit(unit_vectors[:10])
    rec = q.decode(q.encode(unit_vectors))
    mse = np.mean(np.sum((rec - unit_vectors) ** 2, axis=1))
    assert abs(mse - target) / target < 0.02, mse


def test_turboquant_prod_is_unbiased_and_mse_is_biased(unit_vectors):
    rng = np.random.default_rng(9)
    y = rng.standard_normal((1, 1024)).astype(np.float32)
    ip = (unit_vectors @ y.T).ravel()
    # 1-bit TurboQuant_mse shrinks inner products by 2/pi; the QJL estimator removes the bias
    mse1 = build("turboquant_mse_1", seed=1).fit(unit_vectors[:5])
    slope_mse = np.polyfit(ip, (mse1.decode(mse1.encode(unit_vectors)) @ y.T).ravel(), 1)[0]
    assert slope_mse == pytest.approx(2 / np.pi, abs=0.05)
    prod = build("turboquant_prod_2", seed=1).fit(unit_vectors[:5])
    est = (prod.decode(prod.encode(unit_vectors)) @ y.T).ravel()
    err = est - ip
    assert abs(err.mean()) < 4 * err.std() / np.sqrt(len(err))
    assert np.polyfit(ip, est, 1)[0] == pytest.approx(1.0, abs=0.1)


def test_norms_are_restored(unit_vectors):
    x = unit_vectors[:50] * np.linspace(0.5, 20, 50)[:, None]
    q = build("turboquant_mse_4", seed=1).fit(x)
    rec = q.decode(q.encode(x))
    cos = np.sum(rec * x, 1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(x, axis=1)
    assert cos.min() > 0.99
    np.testing.assert_allclose(
        np.linalg.norm(rec, axis=1) / np.linalg.norm(x, axis=1), 1, atol=0.02
    )


def test_rotate_affine_is_worse_than_turboquant_on_unit_vectors(unit_vectors):
    # blog version (min-max affine after rotation) vs paper codebook at 2 bits, same budget
    x = unit_vectors[:1000]
    blog = build("rotate_affine_int2", seed=1).fit(x)
    paper = build("turboquant_mse_2", seed=1).fit(x)
    mse_blog = np.mean(np.sum((blog.decode(blog.encode(x)) - x) ** 2, 1))
    mse_paper = np.mean(np.sum((paper.decode(paper.encode(x)) - x) ** 2, 1))
    assert mse_blog > 2.5 * mse_paper
    # rotation is stored and applied: decode(encode(x)) ~ x at 8 bits
    b8 = build("rotate_affine_int8", seed=1).fit(x)
    assert np.mean(np.sum((b8.decode(b8.encode(x)) - x) ** 2, 1)) < 1e-3


def test_rabitq_via_faiss():
    x = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)
    q = build("rabitq").fit(x)
    codes = q.encode(x)
    assert codes.dtype == np.uint8 and codes.shape[1] >= 8  # 64 sign bits + factors
    rec = q.decode(codes)
    cos = np.sum(rec * x, 1) / np.linalg.norm(rec, axis=1) / np.linalg.norm(x, axis=1)
    assert cos.mean() > 0.7  # 1-bit codes keep ~sqrt(2/pi) ~ 0.8 cosine


def test_multibit_rabitq_is_refused_with_reason():
    with pytest.raises(ValueError, match="ignores the extra bits"):
        build("rabitq_4")
