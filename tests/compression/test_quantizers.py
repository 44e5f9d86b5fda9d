"""Quantizer round trips, packing layout and fit-on-train-only behaviour."""

import numpy as np
import pytest

from geoemb.compression import (
    AffineQuantizer,
    BinaryQuantizer,
    NotFittedError,
    TernaryQuantizer,
    build,
    pack_uint,
    unpack_uint,
)


def _ref_pack(q: np.ndarray, bits: int) -> np.ndarray:
    """Independent oracle: build the MSB-first bit string per row in pure Python."""
    out = []
    for row in q:
        s = "".join(format(int(v), f"0{bits}b") for v in row)
        s += "0" * ((-len(s)) % 8)
        out.append([int(s[i : i + 8], 2) for i in range(0, len(s), 8)])
    return np.array(out, dtype=np.uint8)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("dim", [1, 7, 13, 16, 33])
def test_pack_uint_matches_bitstring_oracle(bits, dim):
    rng = np.random.default_rng(bits * 100 + dim)
    q = rng.integers(0, 1 << bits, size=(9, dim)).astype(np.uint8)
    packed = pack_uint(q, bits)
    np.testing.assert_array_equal(packed, _ref_pack(q, bits))
    np.testing.assert_array_equal(unpack_uint(packed, bits, dim), q)


def test_pack_uint_1bit_equals_np_packbits():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, size=(5, 21)).astype(np.uint8)
    np.testing.assert_array_equal(pack_uint(b, 1), np.packbits(b, axis=1))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_affine_round_trip_within_half_step_on_train_range(bits):
    rng = np.random.default_rng(bits)
    xtr = (rng.standard_normal((500, 19)) * rng.uniform(0.1, 5, 19) + rng.normal(0, 3, 19)).astype(
        np.float32
    )
    q = AffineQuantizer(bits).fit(xtr)
    lo, hi = xtr.min(0), xtr.max(0)
    s = (hi.astype(np.float64) - lo) / (2**bits - 1)
    np.testing.assert_allclose(q.scale, s, rtol=1e-6)
    # new points inside the train range
    xte = (lo + rng.uniform(0, 1, (300, 19)) * (hi - lo)).astype(np.float32)
    for x in (xtr, xte):
        err = np.abs(q.decode(q.encode(x)) - x)
        assert np.all(err <= s / 2 * (1 + 1e-4) + 1e-6), err.max()
    # TerraBit int8 layout: int8 codes with -128 offset
    if bits == 8:
        c = q.encode(xtr)
        assert c.dtype == np.int8 and c.min() == -128 and c.max() == 127
    else:
        assert q.encode(xtr).shape == (500, (19 * bits + 7) // 8)


def test_affine_clips_out_of_range_and_params_are_train_only():
    rng = np.random.default_rng(1)
    xtr = rng.uniform(-1, 1, (200, 4)).astype(np.float32)
    q = AffineQuantizer(4).fit(xtr)
    scale, zero = q.scale.copy(), q.zero.copy()
    xte = np.full((3, 4), 50.0, np.float32)
    dec = q.decode(q.encode(xte))
    np.testing.assert_allclose(dec, np.broadcast_to(xtr.max(0), dec.shape), rtol=1e-5)
    np.testing.assert_array_equal(q.scale, scale)  # encoding test data never refits
    np.testing.assert_array_equal(q.zero, zero)


@pytest.mark.parametrize("threshold", ["zero", "median", "mean"])
def test_binary_packbits_layout_and_centroid_reconstruction(threshold):
    rng = np.random.default_rng(2)
    xtr = (rng.standard_normal((400, 13)) + 0.5).astype(np.float32)
    q = BinaryQuantizer(threshold).fit(xtr)
    t = {"zero": np.zeros(13), "median": np.median(xtr, 0), "mean": xtr.mean(0)}[threshold]
    codes = q.encode(xtr)
    np.testing.assert_array_equal(codes, np.packbits(xtr > t.astype(np.float32), axis=1))
    assert codes.shape == (400, 2) and q.bytes_per_vector == 2
    dec = q.decode(codes)
    above = xtr > t.astype(np.float32)
    for j in range(13):
        np.testing.assert_allclose(dec[above[:, j], j], xtr[above[:, j], j].mean(), rtol=1e-5)
        np.testing.assert_allclose(dec[~above[:, j], j], xtr[~above[:, j], j].mean(), rtol=1e-5)
    # padding bits stay zero
    assert np.all(codes[:, -1] & 0b00000111 == 0)


def test_ternary_balanced_symbols_and_two_bits():
    rng = np.random.default_rng(3)
    xtr = rng.standard_normal((900, 10)).astype(np.float32)
    q = TernaryQuantizer().fit(xtr)
    sym = unpack_uint(q.encode(xtr), 2, 10)
    assert set(np.unique(sym)) <= {0, 1, 2}
    frac = np.stack([(sym == s).mean(0) for s in range(3)])
    np.testing.assert_allclose(frac, 1 / 3, atol=0.01)
    assert q.bytes_per_vector == 3  # 10 dims * 2 bits = 20 bits -> 3 bytes


def test_fp16_and_float32():
    x = np.random.default_rng(4).standard_normal((10, 6)).astype(np.float32)
    f = build("fp16").fit(x)
    assert f.encode(x).dtype == np.float16 and f.bytes_per_vector == 12
    np.testing.assert_allclose(f.decode(f.encode(x)), x.astype(np.float16).astype(np.float32))
    g = build("float32").fit(x)
    np.testing.assert_array_equal(g.decode(g.encode(x)), x)


def test_pq_matches_faiss_and_rejects_bad_m():
    import faiss

    rng = np.random.default_rng(5)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    q = build("pq_4x6", seed=0).fit(x)
    codes = q.encode(x)
    assert codes.shape == (600, 3) and q.bytes_per_vector == 3  # 4*6 bits
    # decode equals FAISS's own reconstruction from the trained index
    ref = q.index.sa_decode(q.index.sa_encode(x))
    np.testing.assert_allclose(q.decode(codes), ref)
    # independent oracle: nearest sub-centroid per sub-vector
    cent = faiss.vector_to_array(q.index.pq.centroids).reshape(4, 64, 4)
    dec = q.decode(codes)
    for m in range(4):
        sub = x[:, 4 * m : 4 * m + 4]
        d = ((sub[:, None, :] - cent[m][None]) ** 2).sum(-1)
        np.testing.assert_allclose(dec[:, 4 * m : 4 * m + 4], cent[m][d.argmin(1)], atol=1e-5)
    with pytest.raises(ValueError, match="not divisible by M"):
        build("pq_5x8").fit(x)


def test_decode_before_fit_and_dimension_mismatch_are_clear():
    q = build("int8")
    with pytest.raises(NotFittedError, match="fit"):
        q.decode(np.zeros((1, 4), np.int8))
    with pytest.raises(NotFittedError, match="fit"):
        q.encode(np.zeros((1, 4), np.float32))
    q.fit(np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="dimension 5 .* D=4"):
        q.encode(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        q.decode(np.zeros((2, 5), np.int8))
    with pytest.raises(ValueError, match="dtype int8"):
        q.decode(np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        q.encode(np.zeros(4, np.float32))
