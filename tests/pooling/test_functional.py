"""Training-free pooling vs an independent numpy implementation of the GeoPool definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoemb.pooling import ALL_METHODS, TRAINING_FREE, output_dim, pool, pool_many


# ---------------------------------------------------------------------------------------------
# numpy oracle, written from reference/geopool.md section 5 (per sample, float64)
# ---------------------------------------------------------------------------------------------
def _weights_np(h: int, w: int) -> np.ndarray:
    sigma = min(h, w) / 4.0
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w]
    wt = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return wt / wt.sum()


def np_pool(img_hwd: np.ndarray, method: str, valid_hw: np.ndarray | None = None) -> np.ndarray:
    """Reference pooling of one (H, W, D) image over its valid pixels."""
    h, w, d = img_hwd.shape
    x = img_hwd.astype(np.float64)
    if valid_hw is None:
        valid_hw = np.ones((h, w), bool)
    flat = x[valid_hw]  # (n, D)
    mean = flat.mean(axis=0)
    mx = flat.max(axis=0)
    mn = flat.min(axis=0)
    std = flat.std(axis=0)  # ddof=0
    if method == "mean":
        return mean
    if method == "max":
        return mx
    if method == "std":
        return std
    if method == "gem":
        m = np.mean(np.sign(flat) * np.abs(flat) ** 3, axis=0)
        return np.sign(m) * np.abs(m) ** (1.0 / 3.0)
    if method == "center_weighted_mean":
        wt = _weights_np(h, w)[valid_hw]
        wt = wt / wt.sum()
        return (wt[:, None] * flat).sum(axis=0)
    if method == "mean_std":
        return np.concatenate([mean, std])
    if method == "mean_max":
        return np.concatenate([mean, mx])
    if method == "median_iqr":
        q25, q75 = np.percentile(flat, [25, 75], axis=0)
        return np.concatenate([np.median(flat, axis=0), q75 - q25])
    if method == "stats":
        return np.concatenate([mn, mx, mean, std])
    if method == "percentiles":
        return np.percentile(flat, (10, 25, 50, 75, 90), axis=0).reshape(-1)
    if method == "flattened_cov":
        cov = np.cov(flat, rowvar=False) if flat.shape[0] > 1 else np.zeros((d, d))
        return cov[np.triu_indices(d)]
    raise KeyError(method)


def oracle(x_bdhw: np.ndarray, method: str, mask: np.ndarray | None = None) -> np.ndarray:
    imgs = np.moveaxis(x_bdhw, 1, -1)  # (B, H, W, D)
    return np.stack(
        [np_pool(imgs[i], method, None if mask is None else mask[i]) for i in range(len(imgs))]
    )


def assert_close(got: torch.Tensor, ref: np.ndarray, rtol: float = 1e-5) -> None:
    got_np = got.detach().cpu().numpy().astype(np.float64)
    assert got_np.shape == ref.shape
    # 1e-5 relative, with an absolute floor of 1e-5 of the feature scale for values near 0
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got_np, ref, rtol=rtol, atol=rtol * scale)


def assert_cov_cache_equal(got: torch.Tensor, ref64: np.ndarray) -> None:
    """``got`` (float32) vs ``ref64.astype(float32)`` (the reference cache) to 1 float32 ulp."""
    cache = ref64.astype(np.float32)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().cpu().numpy(), cache, rtol=1.2e-7, atol=0)


CASES = [
    # (B, D, H, W, kind)
    (3, 64, 16, 16, "normal"),
    (2, 128, 12, 20, "normal"),  # non-square
    (2, 64, 64, 64, "aef_codes"),  # offset uint8 codes, full EuroSAT patch size
    (2, 128, 9, 7, "offset"),  # odd sizes, large offset
]


def _make(b, d, h, w, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.normal(size=(b, d, h, w))
    elif kind == "aef_codes":
        x = np.clip(np.round(rng.normal(127, 30, size=(b, d, h, w))), 0, 254)
    else:
        x = rng.normal(50.0, 3.0, size=(b, d, h, w))
    return x.astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:4])) + c[4])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_training_free_matches_numpy_reference(case, masked):
    b, d, h, w, kind = case
    x = _make(b, d, h, w, kind, seed=hash(case) % 1000)
    mask = None
    if masked:
        rng = np.random.default_rng(7)
        mask = rng.random((b, h, w)) > 0.4
        mask[0, : h // 2] = False  # a big hole
        mask[-1, 0, 0] = True
    xt = torch.from_numpy(x)
    if mask is not None:
        # invalid pixels hold garbage (NaN / huge) that must not leak into any statistic
        x_bad = x.copy()
        x_bad[np.broadcast_to(~mask[:, None], x.shape)] = np.nan
        xt = torch.from_numpy(x_bad)
    mt = None if mask is None else torch.from_numpy(mask)
    outs = pool_many(xt, TRAINING_FREE, mask=mt)
    for m in TRAINING_FREE:
        ref = oracle(x, m, mask)
        if m == "flattened_cov":
            # float64 accumulation (issue 15): equal to a float32 cache of the reference's float64
            # np.cov to one float32 ulp, near-zero entries included
            assert_cov_cache_equal(outs[m], ref)
        else:
            assert_close(outs[m], ref)
        # the single-method entry gives the same result
        if m in ("gem", "percentiles", "flattened_cov"):
            assert torch.equal(pool(xt, m, mask=mt), outs[m])


def test_chunking_does_not_change_results():
    from geoemb.pooling.functional import pool_training_free_many

    x = torch.from_numpy(_make(5, 64, 8, 8, "normal", 3))
    a = pool_training_free_many(x, TRAINING_FREE, chunk_size=2)
    bb = pool_training_free_many(x, TRAINING_FREE, chunk_size=5)
    for m in TRAINING_FREE:
        torch.testing.assert_close(a[m], bb[m], rtol=1e-6, atol=1e-6)


def test_single_valid_pixel_and_integer_input():
    x = np.random.default_rng(0).integers(0, 255, size=(2, 64, 5, 6), dtype=np.uint8)
    mask = np.zeros((2, 5, 6), bool)
    mask[0, 2, 3] = True
    mask[1] = True
    out = pool_many(torch.from_numpy(x), TRAINING_FREE, mask=torch.from_numpy(mask))
    for m in TRAINING_FREE:
        assert out[m].dtype == torch.float32
        assert_close(out[m], oracle(x.astype(np.float32), m, mask))


def test_output_dims_reference_order():
    expected = [64, 64, 64, 64, 64, 128, 128, 128, 256, 320, 2080, 64, 128]
    assert ALL_METHODS == [
        "mean",
        "max",
        "std",
        "gem",
        "center_weighted_mean",
        "mean_std",
        "mean_max",
        "median_iqr",
        "stats",
        "percentiles",
        "flattened_cov",
        "pca_64",
        "bovw_128",
    ]
    assert [output_dim(m, 64) for m in ALL_METHODS] == expected
    assert output_dim("flattened_cov", 128) == 8256
    assert output_dim("flattened_cov", 512) == 131_328
    x = torch.randn(2, 128, 4, 5)
    for m in TRAINING_FREE:
        assert pool(x, m).shape == (2, output_dim(m, 128))


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="unknown method 'avg'.*mean, max, std.*bovw_128"):
        pool(torch.zeros(1, 4, 2, 2), "avg")
    with pytest.raises(ValueError, match="unknown method"):
        output_dim("nope", 64)


def test_wrong_ndim_and_mask_errors():
    with pytest.raises(ValueError, match=r"\(B, D, H, W\).*ndim=3"):
        pool(torch.zeros(4, 2, 2), "mean")
    with pytest.raises(ValueError, match=r"mask must have shape \(B, H, W\)"):
        pool(torch.zeros(1, 4, 2, 2), "mean", mask=torch.ones(1, 3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        pool(torch.zeros(1, 4, 2, 2), "mean", mask=torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="parametric"):
        pool(torch.zeros(1, 4, 2, 2), "pca_64")


def test_all_invalid_sample_raise_or_nan():
    x = torch.randn(3, 8, 4, 4)
    mask = torch.ones(3, 4, 4, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="batch index 1"):
        pool(x, "stats", mask=mask)
    for m in TRAINING_FREE:
        out = pool(x, m, mask=mask, empty="nan")
        assert torch.isnan(out[1]).all()
        assert torch.isfinite(out[[0, 2]]).all()
        torch.testing.assert_close(out[[0, 2]], pool(x[[0, 2]], m))


def test_gradients_flow_through_torch_path():
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    for m in TRAINING_FREE:
        out = pool(x, m)
        (g,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(g).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    from geoemb.pooling import fit_parametric
    from geoemb.probes import knn_classify

    x = torch.from_numpy(_make(6, 64, 16, 12, "aef_codes", 5))
    mask = torch.rand(6, 16, 12, generator=torch.Generator().manual_seed(0)) > 0.3
    states = {"pca_64": fit_parametric("pca_64", torch.randn(80, 64, 4, 4))}
    states["bovw_128"] = fit_parametric("bovw_128", x, batch_size=500)
    for m in (None, mask):
        cpu = pool_many(x, ALL_METHODS, mask=m, states=states)
        gpu = pool_many(
            x.cuda(),
            ALL_METHODS,
            mask=None if m is None else m.cuda(),
            states={k: v.to("cuda") for k, v in states.items()},
        )
        for k in ALL_METHODS:
            assert gpu[k].device.type == "cuda"
            torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-4, atol=1e-4)
    f = torch.randn(50, 8)
    y = torch.arange(50) % 3
    assert knn_classify(f.cuda(), y.cuda(), f[:10].cuda()).device.type == "cuda"


# ---------------------------------------------------------------------------------------------
# issue 15: fused float64 moments on CPU, float64 covariance, the torch path kept for GPU/autograd
# ---------------------------------------------------------------------------------------------
FLOAT64_EXACT = ["mean", "std", "gem", "mean_std", "stats", "flattened_cov"]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_second_moments_exact_far_from_zero(masked):
    """Data at 1e4 +- 1: float32 two-pass centring lost ~1e-3 of the std; float64 sums keep the
    float32 cache of the float64 reference exact to one ulp."""
    rng = np.random.default_rng(21)
    x = (1e4 + rng.normal(size=(3, 24, 20, 18))).astype(np.float32)
    mask = rng.random((3, 20, 18)) > 0.3 if masked else None
    outs = pool_many(
        torch.from_numpy(x), FLOAT64_EXACT, mask=None if mask is None else torch.from_numpy(mask)
    )
    for m in FLOAT64_EXACT:
        ref = oracle(x, m, mask)
        np.testing.assert_allclose(outs[m].numpy(), ref.astype(np.float32), rtol=2.4e-7, atol=0)


def test_torch_path_matches_reference(monkeypatch):
    """The torch statistics (CUDA and autograd use them) stay right when numba is unavailable."""
    from geoemb.pooling import _chunk

    monkeypatch.setattr(_chunk, "_moments_kernel", lambda: None)
    x = _make(2, 64, 10, 11, "aef_codes", 4)
    mask = np.random.default_rng(1).random((2, 10, 11)) > 0.25
    outs = pool_many(torch.from_numpy(x), TRAINING_FREE, mask=torch.from_numpy(mask))
    for m in TRAINING_FREE:
        ref = oracle(x, m, mask)
        if m == "flattened_cov":
            assert_cov_cache_equal(outs[m], ref)
        else:
            assert_close(outs[m], ref)


@pytest.mark.parametrize("fused", [True, False], ids=["numba", "torch"])
def test_nan_in_a_valid_pixel_poisons_only_its_band(monkeypatch, fused):
    from geoemb.pooling import _chunk

    if not fused:
        monkeypatch.setattr(_chunk, "_moments_kernel", lambda: None)
    x = _make(2, 8, 6, 7, "normal", 8)
    x[0, 3, 2, 2] = np.nan
    outs = pool_many(torch.from_numpy(x), ["mean", "std", "gem", "stats", "flattened_cov"])
    for m in ("mean", "std", "gem"):
        bad = torch.isnan(outs[m])
        assert bad[0, 3] and int(bad.sum()) == 1, m
    stats = outs["stats"].reshape(2, 4, 8)
    assert torch.isnan(stats[0, :, 3]).all() and int(torch.isnan(stats).sum()) == 4
    iu = np.triu_indices(8)
    touches = torch.from_numpy((iu[0] == 3) | (iu[1] == 3))
    assert torch.equal(torch.isnan(outs["flattened_cov"][0]), touches)
    assert torch.isfinite(outs["flattened_cov"][1]).all()


def test_fused_moments_match_torch_moments():
    """Same statistics whichever path computes them (the CPU kernel vs torch reductions)."""
    from geoemb.pooling.functional import _Chunk

    x = torch.from_numpy(_make(3, 16, 9, 9, "offset", 2)).reshape(3, 16, 81)
    mask = torch.rand(3, 81, generator=torch.Generator().manual_seed(0)) > 0.5
    for m in (None, mask):
        fused = _Chunk(x, m, 9, 9, methods=["stats"])
        plain = _Chunk(x, m, 9, 9)
        assert fused.kernel is not None and plain.kernel is None
        for stat in ("mean", "std", "gem"):
            torch.testing.assert_close(
                getattr(fused, stat)(), getattr(plain, stat)(), rtol=2e-5, atol=1e-5
            )
