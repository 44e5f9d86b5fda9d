"""Bit packing (geoemb.compression.bitpack) against numpy.packbits."""

from __future__ import annotations

import numpy as np
import pytest

from geoemb.compression.bitpack import pack_bits, padding_mask, unpack_bits


@pytest.mark.parametrize("dim", [1, 7, 8, 13, 64, 1023])
def test_bitpack_matches_numpy(dim):
    rng = np.random.default_rng(dim)
    bits = rng.integers(0, 2, size=(5, dim))
    codes = pack_bits(bits)
    np.testing.assert_array_equal(codes, np.packbits(bits.astype(np.uint8), axis=1))
    np.testing.assert_array_equal(unpack_bits(codes, dim), bits)
    mask = padding_mask(dim)
    assert int(np.unpackbits(mask).sum()) == dim
    with pytest.raises(ValueError, match="bytes per row"):
        unpack_bits(codes, dim + 8)
