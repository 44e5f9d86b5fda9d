"""ID estimators vs scikit-dimension on manifolds of known dimension (torchid tolerances)."""

import numpy as np
import pytest
import skdim

from geoemb.analysis.intrinsic_dim import (
    dimension_balance,
    local_pca_id,
    lpca_id,
    mle_id,
    pca_spectrum,
    twonn_id,
)


def _affine(n, d, D, seed):
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, (n, d))
    a = rng.standard_normal((d, D))
    return z @ a + 0.01 * rng.standard_normal((n, D))


CASES = {
    "ball5in10": lambda: np.hstack(
        [skdim.datasets.hyperBall(1000, 5, random_state=0), np.zeros((1000, 5))]
    ),
    "ball10": lambda: skdim.datasets.hyperBall(1000, 10, random_state=1),
    "affine3in15": lambda: _affine(1000, 3, 15, 2),
    "affine8in30": lambda: _affine(1000, 8, 30, 3),
}
TRUE_D = {"ball5in10": 5, "ball10": 10, "affine3in15": 3, "affine8in30": 8}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return request.param, CASES[request.param]()


def test_mle_matches_skdim(case):
    name, X = case
    ref = skdim.id.MLE().fit(X, n_neighbors=20).dimension_
    got = mle_id(X, n_neighbors=20)
    np.testing.assert_allclose(got, ref, rtol=5e-3, atol=1e-4)
    assert abs(got - TRUE_D[name]) / TRUE_D[name] < 0.25


def test_twonn_matches_skdim(case):
    name, X = case
    ref = skdim.id.TwoNN().fit(X).dimension_
    got = twonn_id(X)
    np.testing.assert_allclose(got, ref, rtol=5e-3, atol=1e-4)
    assert abs(got - TRUE_D[name]) / TRUE_D[name] < 0.25


def test_global_lpca_matches_skdim(case):
    name, X = case
    for ver in ("FO", "participation_ratio", "maxgap"):
        ref = skdim.id.lPCA(ver=ver).fit(X).dimension_
        np.testing.assert_allclose(lpca_id(X, ver), ref, rtol=1e-3, atol=1e-4)
    if name.startswith("affine"):
        assert lpca_id(X, "FO") == TRUE_D[name]


def test_local_pca_matches_skdim_fit_pw():
    X = _affine(250, 4, 12, 5)
    ref = skdim.id.lPCA(ver="FO").fit_pw(X, n_neighbors=40)
    got, pw = local_pca_id(X, n_neighbors=40, ver="FO", return_pointwise=True)
    np.testing.assert_allclose(pw, ref.dimension_pw_)
    assert got == pytest.approx(np.mean(ref.dimension_pw_))


def test_pca_spectrum_and_balance():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 10)) * np.array([10, 5, 1, 1, 1, 1, 1, 1, 1, 1.0])
    spec = pca_spectrum(X, (1, 2, 10, 64))
    ev = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]
    assert spec[2] == pytest.approx(ev[:2].sum() / ev.sum())
    assert spec[10] == pytest.approx(1.0) and np.isnan(spec[64])
    bits = np.zeros((4, 3), np.uint8)
    bits[:2, 0] = 1  # dim0 balanced (0), dim1 all zeros (0.5), dim2 all zeros (0.5)
    assert dimension_balance(bits) == pytest.approx(1 / 3)
