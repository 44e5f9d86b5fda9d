"""pca_64 / bovw_128 vs sklearn (PCA, MiniBatchKMeans.predict, k-means inertia)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA, IncrementalPCA

from geoemb.pooling import BoVWState, PCAState, fit_parametric, pool, pool_many
from geoemb.pooling.parametric import assign


def _means_np(x, mask=None):
    if mask is None:
        return x.mean(axis=(2, 3))
    return np.stack([x[i][:, mask[i]].mean(1) for i in range(len(x))])


@pytest.mark.parametrize("d", [64, 96])
def test_pca_matches_sklearn(d):
    rng = np.random.default_rng(d)
    mix = rng.normal(size=(d, d)) * np.linspace(2, 0.1, d)[:, None]
    xtr = (rng.normal(size=(150, d, 4, 5)).transpose(0, 2, 3, 1) @ mix).transpose(0, 3, 1, 2)
    xtr = (xtr + 3 * rng.normal(size=(150, d, 1, 1))).astype(np.float32)
    xte = rng.normal(size=(20, d, 4, 5)).astype(np.float32)
    mask = rng.random((150, 4, 5)) > 0.2
    mask[:, 0, 0] = True
    for m in (None, mask):
        mt = None if m is None else torch.from_numpy(m)
        state = fit_parametric("pca_64", torch.from_numpy(xtr), mt)
        assert isinstance(state, PCAState) and state.components.shape == (64, d)
        sk = PCA(n_components=64, svd_solver="full").fit(_means_np(xtr.astype(np.float64), m))
        np.testing.assert_allclose(state.components.numpy(), sk.components_, atol=2e-4)
        got = pool(torch.from_numpy(xte), "pca_64", state=state)
        np.testing.assert_allclose(got.numpy(), sk.transform(_means_np(xte)), rtol=1e-4, atol=1e-4)
    if d == 64:  # n_components == D: IncrementalPCA (the reference solver) is exact too
        ipca = IncrementalPCA(n_components=64, batch_size=512).fit(_means_np(xtr))
        ref = ipca.transform(_means_np(xte))
        state = fit_parametric("pca_64", torch.from_numpy(xtr))
        got = pool(torch.from_numpy(xte), "pca_64", state=state).numpy()
        np.testing.assert_allclose(np.abs(got), np.abs(ref), rtol=1e-3, atol=1e-3)


def test_pca_errors_and_state():
    x = torch.randn(30, 16, 3, 3)
    with pytest.raises(ValueError, match="n_components=64"):
        fit_parametric("pca_64", x)
    st = fit_parametric("pca_8", x)
    assert pool(x, "pca_8", state=st).shape == (30, 8)
    st2 = pickle.loads(pickle.dumps(st.to("cpu")))
    torch.testing.assert_close(pool(x, "pca_8", state=st2), pool(x, "pca_8", state=st))
    with pytest.raises(ValueError, match="BoVWState"):
        pool(x, "bovw_128", state=st)
    with pytest.raises(ValueError, match="unknown parametric"):
        fit_parametric("vlad_16", x)
    with pytest.raises(ValueError, match="D=12"):
        pool(torch.randn(2, 12, 3, 3), "pca_8", state=st)


def _blobs(rng, n_img, d, h, w, k_true=24):
    centers = rng.normal(size=(k_true, d)) * 4
    lab = rng.integers(0, k_true, size=(n_img, h, w))
    x = centers[lab] + rng.normal(size=(n_img, h, w, d))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


def test_bovw_assignment_and_histogram_equal_sklearn_predict():
    rng = np.random.default_rng(0)
    x = _blobs(rng, 12, 16, 9, 11)
    pix = x.transpose(0, 2, 3, 1).reshape(-1, 16)
    km = MiniBatchKMeans(n_clusters=32, random_state=42, batch_size=500, n_init="auto").fit(pix)
    state = BoVWState(centroids=torch.from_numpy(km.cluster_centers_.astype(np.float32)))
    labels = km.predict(pix)
    np.testing.assert_array_equal(assign(torch.from_numpy(pix), state.centroids).numpy(), labels)
    per_img = labels.reshape(12, -1)
    ref = np.stack([np.bincount(r, minlength=32) / max(len(r), 1) for r in per_img])
    got = pool(torch.from_numpy(x), "bovw_32", state=state)
    np.testing.assert_array_equal(got.numpy(), ref.astype(np.float32))
    # masked: histogram over the valid pixels only
    mask = rng.random((12, 9, 11)) > 0.5
    got_m = pool(torch.from_numpy(x), "bovw_32", mask=torch.from_numpy(mask), state=state)
    lab_img = labels.reshape(12, 9, 11)
    ref_m = np.stack(
        [np.bincount(lab_img[i][mask[i]], minlength=32) / max(mask[i].sum(), 1) for i in range(12)]
    )
    np.testing.assert_allclose(got_m.numpy(), ref_m, rtol=1e-6, atol=1e-7)
    assert pool_many(torch.from_numpy(x), ["mean", "bovw_32"], states={"bovw_32": state})[
        "bovw_32"
    ].shape == (12, 32)


def _inertia(pix, centers):
    d = ((pix[:, None, :] - centers[None]) ** 2).sum(-1)
    return d.min(1).sum()


def test_bovw_fit_quality_vs_sklearn():
    rng = np.random.default_rng(1)
    x = _blobs(rng, 64, 8, 8, 8, k_true=40)
    n_clusters, img_bs, bs = 32, 16, 512
    state = fit_parametric(
        f"bovw_{n_clusters}", torch.from_numpy(x), seed=42, image_batch_size=img_bs, batch_size=bs
    )
    assert state.centroids.shape == (n_clusters, 8)
    pix = x.transpose(0, 2, 3, 1).reshape(-1, 8).astype(np.float64)
    ours = _inertia(pix, state.centroids.numpy().astype(np.float64))
    # the reference protocol with sklearn: one shuffled partial_fit pass, same grouping
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=42, batch_size=bs, n_init="auto")
    shuf = np.random.default_rng(42)
    for s in range(0, len(x), img_bs):
        g = x[s : s + img_bs].transpose(0, 2, 3, 1).reshape(-1, 8)
        g = g[shuf.permutation(len(g))]
        for c in range(0, len(g), bs):
            km.partial_fit(g[c : c + bs])
    ref_mb = _inertia(pix, km.cluster_centers_.astype(np.float64))
    ref_full = KMeans(n_clusters=n_clusters, random_state=0, n_init=1).fit(pix).inertia_
    assert ours <= 1.05 * ref_mb, (ours, ref_mb)
    assert ours <= 1.25 * ref_full, (ours, ref_full)
    # deterministic given the seed; picklable; histograms sum to 1
    again = fit_parametric(
        f"bovw_{n_clusters}", torch.from_numpy(x), seed=42, image_batch_size=img_bs, batch_size=bs
    )
    torch.testing.assert_close(again.centroids, state.centroids)
    st = pickle.loads(pickle.dumps(state))
    h = pool(torch.from_numpy(x[:5]), f"bovw_{n_clusters}", state=st)
    torch.testing.assert_close(h.sum(1), torch.ones(5))


def test_bovw_masked_fit_and_empty_policy():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(_blobs(rng, 10, 4, 6, 6))
    mask = torch.rand(10, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.3
    x_bad = torch.where(mask[:, None], x, torch.full_like(x, float("nan")))
    st = fit_parametric("bovw_8", x_bad, mask, batch_size=100, image_batch_size=4)
    assert torch.isfinite(st.centroids).all()
    mask[3] = False
    with pytest.raises(ValueError, match="batch index 3"):
        pool(x, "bovw_8", mask=mask, state=st)
    out = pool(x, "bovw_8", mask=mask, state=st, empty="nan")
    assert torch.isnan(out[3]).all() and torch.isfinite(out[[0, 1, 2, 4]]).all()
    # iterable input (e.g. a DataLoader) gives the same PCA as the tensor
    batches = [(x[i : i + 3], None) for i in range(0, 10, 3)]
    a = fit_parametric("pca_4", batches)
    b = fit_parametric("pca_4", x)
    torch.testing.assert_close(a.components, b.components)
