"""Registry parsing, reducers against numpy/sklearn oracles, pipelines, Parquet sizes."""

import numpy as np
import pytest

from geoemb.compression import (
    BLOG_CONFIGS,
    Pipeline,
    build,
    output_dim,
    parquet_bytes_per_vector,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 8)) @ rng.standard_normal((8, 32))
    x = (a + 0.1 * rng.standard_normal((400, 32)) + 2.0).astype(np.float32)
    return x[:300], x[300:]


@pytest.fixture(scope="module")
def wide():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((400, 12)) @ rng.standard_normal((12, 130))).astype(np.float32)
    return x[:300], x[300:]


@pytest.mark.parametrize("config", BLOG_CONFIGS)
def test_every_blog_config_round_trips(config, wide):
    xtr, xte = wide  # D = 130: not a multiple of 8
    if config.startswith("pq_"):
        c = build("pq_10x4")  # 2^8 centroids need more rows than this fixture has
    else:
        c = build(config, seed=0)
    c.fit(xtr)
    codes = c.encode(xte)
    assert codes.shape[0] == len(xte)
    assert c.bytes_per_vector == pytest.approx(codes.shape[1] * codes.dtype.itemsize)
    dec = c.decode(codes)
    assert dec.shape == xte.shape and dec.dtype == np.float32
    assert c.decode_features(codes).shape == (len(xte), output_dim(c.name, 130))
    assert np.all(np.isfinite(dec))


def test_unknown_and_malformed_configs_raise_clear_errors():
    for bad in ["int9", "pca64+", "foo", "pca64+int8+int4", "binary_max", "", "int8+pca4"]:
        with pytest.raises(ValueError, match="compression config"):
            build(bad)
    with pytest.raises(ValueError, match="unknown keyword"):
        build("int8", colour="red")
    assert build("PCA(64)+int8").name == "pca64+int8" and build("pca_16+INT4").name == "pca16+int4"


def test_expected_bytes(data):
    xtr, _ = data
    table = {"float32": 128, "fp16": 64, "int8": 32, "int4": 16, "int2": 8, "binary": 4,
             "ternary": 8, "pca16+int4": 8, "pca8+binary": 1, "turboquant_mse_4": 20,
             "rotate_affine_int4": 16, "turboquant_prod_2": 4 + 4 + 8}  # fmt: skip
    for cfg, b in table.items():
        assert build(cfg).fit(xtr).bytes_per_vector == b, cfg


def test_pca_matches_numpy_svd(data):
    xtr, xte = data
    c = build("pca4").fit(xtr)
    mu = xtr.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(xtr - mu, full_matrices=False)
    z = (xte - mu) @ vt[:4].T
    feat = c.decode_features(c.encode(xte))
    signs = np.sign(np.sum(feat * z, axis=0))
    np.testing.assert_allclose(feat * signs, z, atol=1e-3)
    from sklearn.decomposition import PCA

    ref = PCA(4, svd_solver="full").fit(xtr.astype(np.float64))
    np.testing.assert_allclose(c.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(feat, ref.transform(xte), atol=1e-3)  # same sign convention
    # reconstruction is the projection onto the top-4 subspace
    rec = mu + z @ vt[:4]
    np.testing.assert_allclose(c.decode(c.encode(xte)), rec, atol=1e-3)


def test_truncated_svd_is_uncentred(data):
    xtr, _ = data
    c = build("svd3").fit(xtr)
    _, _, vt = np.linalg.svd(xtr.astype(np.float64), full_matrices=False)
    comp = c.components
    assert build("svd32").fit(xtr).out_dim == 32  # k == D allowed (arpack would refuse)
    np.testing.assert_allclose(np.abs(np.sum(comp * vt[:3], axis=1)), 1.0, atol=1e-4)


def test_selectors_and_random_projection(data):
    xtr, xte = data
    c = build("topvar5").fit(xtr)
    np.testing.assert_array_equal(np.sort(c.indices), np.sort(np.argsort(-xtr.var(0))[:5]))
    np.testing.assert_array_equal(c.decode_features(c.encode(xte)), xte[:, c.indices])
    r = build("randsel5", seed=3).fit(xtr)
    assert len(set(r.indices)) == 5
    from sklearn.random_projection import GaussianRandomProjection

    p = build("rp6", seed=7).fit(xtr)
    ref = GaussianRandomProjection(6, random_state=7).fit(xtr).transform(xte)
    np.testing.assert_allclose(p.decode_features(p.encode(xte)), ref, rtol=1e-4, atol=1e-4)


def test_pipeline_fits_quantizer_on_reduced_train(data):
    xtr, xte = data
    c = build("pca6+int8").fit(xtr)
    assert isinstance(c, Pipeline) and c.bytes_per_vector == 6
    z = c.reducer.transform(xtr)
    np.testing.assert_allclose(c.quantizer.zero, z.min(0), rtol=1e-6)
    with pytest.raises(ValueError, match="k=40"):
        build("pca40").fit(xtr)
    assert output_dim("pca64+int8", 1024) == 64 and output_dim("int4", 100) == 100


def test_parquet_bytes_measured(data):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(2000, 16), dtype=np.uint8)  # incompressible
    b = parquet_bytes_per_vector(codes)
    assert 16 <= b < 17.5
    assert parquet_bytes_per_vector(codes, layout="list") > b  # TerraBit list layout costs levels
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geoemb.compression.storage import codes_table

    sink = pa.BufferOutputStream()
    pq.write_table(codes_table(codes), sink)
    back = pq.read_table(pa.BufferReader(sink.getvalue()))["embedding"].to_pylist()
    np.testing.assert_array_equal(np.frombuffer(b"".join(back), np.uint8).reshape(2000, 16), codes)
    zeros = np.zeros((2000, 16), np.uint8)
    assert parquet_bytes_per_vector(zeros) < 2
