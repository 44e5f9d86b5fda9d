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


# ----------------------------------------------------------------------------------------------
# certified assignment: exact nearest centroid, ties to the lowest index
# ----------------------------------------------------------------------------------------------
def _sk_predict(pix: np.ndarray, cen: np.ndarray) -> np.ndarray:
    """sklearn's KMeans.predict with given centroids (its Cython scan keeps the first minimum)."""
    km = KMeans(n_clusters=len(cen))
    km.cluster_centers_, km._n_threads, km.n_features_in_ = cen, 1, cen.shape[1]
    return km.predict(pix)


def _exact_argmin(pix: np.ndarray, cen: np.ndarray) -> np.ndarray:
    """float64 direct distances (exact for the small-integer cases), first minimum."""
    p, c = pix.astype(np.float64), cen.astype(np.float64)
    return ((p[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)


def _codes_and_centroids(seed: int, n_img: int = 12, d: int = 64, k: int = 128):
    """AEF-like offset uint8 codes and centroids fitted by sklearn on them (not tuned here)."""
    rng = np.random.default_rng(seed)
    z = _blobs(rng, n_img, d, 16, 16, k_true=40) * 12 + 127
    x = np.clip(np.round(z), 0, 254).astype(np.float32)
    pix = x.transpose(0, 2, 3, 1).reshape(-1, d)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=1024, n_init="auto")
    return x, pix, km.fit(pix).cluster_centers_.astype(np.float32)


@pytest.mark.parametrize("seed", [3, 4])
def test_bovw_labels_equal_sklearn_predict_float64(seed):
    x, pix, cen = _codes_and_centroids(seed)
    # near ties below float32 resolution: float32-rounded midpoints of two centroids
    rng = np.random.default_rng(100 + seed)
    a, b = rng.integers(0, len(cen), 512), rng.integers(0, len(cen), 512)
    near = ((cen[a].astype(np.float64) + cen[b]) / 2).astype(np.float32)
    pix = np.concatenate([pix, near])
    ref64 = _sk_predict(pix.astype(np.float64), cen.astype(np.float64))
    ours = assign(torch.from_numpy(pix), torch.from_numpy(cen)).numpy()
    np.testing.assert_array_equal(ours, ref64)
    from geoemb.pooling import _bovw  # the torch (GPU) path, run on CPU

    lab_t = _bovw.assign_torch(torch.from_numpy(pix).T[None], torch.from_numpy(cen))[0]
    np.testing.assert_array_equal(lab_t[0].numpy(), ref64)
    np.testing.assert_array_equal(ours, _exact_argmin(pix, cen))
    # sklearn in float32 (the seed's predict) agrees wherever its own rounding picked the nearest
    ref32 = _sk_predict(pix, cen)
    right32 = ref32 == ref64
    np.testing.assert_array_equal(ours[right32], ref32[right32])
    # histograms of the raster = bincount of sklearn's float64 labels per image
    st = BoVWState(centroids=torch.from_numpy(cen), name="bovw_128")
    n_img = x.shape[0]
    per_img = ref64[: n_img * 256].reshape(n_img, -1)
    want = np.stack([np.bincount(r, minlength=128) / len(r) for r in per_img]).astype(np.float32)
    np.testing.assert_array_equal(pool(torch.from_numpy(x), "bovw_128", state=st).numpy(), want)


def test_bovw_exact_ties_lowest_index():
    """Integer data and centroids (exact in float32): duplicates and equidistant pixels."""
    from geoemb.pooling import _bovw

    rng = np.random.default_rng(7)
    base = rng.integers(-3, 4, size=(9, 5)).astype(np.float32)
    cen = np.concatenate([base, base[[4, 1]], base[:3] + 2]).astype(np.float32)  # dupes of 4, 1
    mids = (cen[rng.integers(0, 14, 200)] + cen[rng.integers(0, 14, 200)]) / 2
    pix = np.concatenate([mids, rng.integers(-4, 5, size=(300, 5))]).astype(np.float32)
    ref = _exact_argmin(pix, cen)
    d64 = ((pix[:, None].astype(np.float64) - cen[None]) ** 2).sum(-1)
    assert (np.sort(d64, 1)[:, 1] == d64.min(1)).sum() > 100  # many exact ties
    for got in (
        assign(torch.from_numpy(pix), torch.from_numpy(cen)).numpy(),
        _bovw.assign_torch(torch.from_numpy(pix).T[None], torch.from_numpy(cen))[0][0].numpy(),
        _sk_predict(pix, cen),
        _sk_predict(pix.astype(np.float64), cen.astype(np.float64)),
        np.argmin((cen * cen).sum(1)[None] - 2.0 * pix @ cen.T, axis=1),  # numpy oracle
    ):
        np.testing.assert_array_equal(got, ref)
    assert not np.isin(ref, [9, 10]).any()  # a duplicate never wins over its first copy


def test_bovw_torch_path_equals_cpu_kernel_and_blocks(monkeypatch):
    """The torch (GPU) path and the numba kernel over many small blocks give the same labels."""
    from geoemb.pooling import _bovw

    x, pix, cen = _codes_and_centroids(5, n_img=7, d=13, k=11)  # D, K not multiples of 4
    want = _exact_argmin(pix, cen)
    lab_t, bad_t = _bovw.assign_torch(torch.from_numpy(pix).T[None], torch.from_numpy(cen))
    np.testing.assert_array_equal(lab_t[0].numpy(), want)
    assert not bad_t.any()
    monkeypatch.setattr(_bovw, "_BLOCK", 150)  # 13-pixel blocks, one image per BLAS call
    xv = x.reshape(7, 13, -1)
    lab, counts, bad, _ = _bovw.assign_pixels(xv[:, :, ::-1], cen)  # negative strides too
    np.testing.assert_array_equal(lab[:, ::-1].reshape(-1), want)
    np.testing.assert_array_equal(counts.sum(1), 256)
    st = BoVWState(centroids=torch.from_numpy(cen), name="bovw_11")
    got = pool(torch.from_numpy(x).to(torch.float64), "bovw_11", state=st)
    assert got.dtype == torch.float64
    want_h = np.stack([np.bincount(r, minlength=11) / 256 for r in want.reshape(7, -1)])
    np.testing.assert_allclose(got.numpy(), want_h, rtol=0, atol=1e-15)


def test_bovw_nonfinite_pixels_and_overflow():
    rng = np.random.default_rng(8)
    x = torch.from_numpy(_blobs(rng, 4, 6, 5, 5))
    st = fit_parametric("bovw_8", x, batch_size=50, image_batch_size=4)
    mask = torch.ones(4, 5, 5, dtype=torch.bool)
    x_bad = x.clone()
    x_bad[1, 2, 3, 3] = float("nan")
    x_bad[2, 0, 0, 0] = float("inf")
    mask[2, 0, 0] = False  # the inf pixel is masked out: sample 2 stays finite
    out = pool(x_bad, "bovw_8", mask=mask, state=st)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2, 3]]).all()
    torch.testing.assert_close(out[[0, 3]], pool(x[[0, 3]], "bovw_8", state=st))
    with pytest.raises(ValueError, match="non-finite"):
        assign(x_bad[1].reshape(6, -1).T, st.centroids)
    bad_state = BoVWState(centroids=st.centroids.clone(), name="bovw_8")
    bad_state.centroids[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not all finite"):
        pool(x, "bovw_8", state=bad_state)
    # values whose float32 products overflow: still the exact nearest centroid (float64)
    big = np.array([[1e25, 0.0], [-1e25, 1e24], [3e24, 3e24]], np.float32)
    cen = np.array([[1e25, 1e24], [-1e25, 0.0], [0.0, 0.0]], np.float32)
    got = assign(torch.from_numpy(big), torch.from_numpy(cen)).numpy()
    np.testing.assert_array_equal(got, _exact_argmin(big, cen))
