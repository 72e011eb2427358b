"""TurboQuant-mse and -prod: round trips, bad input, unbiasedness, distortion vs design."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibquant_theory import TurboQuantMSE, TurboQuantProd, lloyd_max_scalar, rate_distortion, sample_unit_vectors
from fibquant_theory.codecs.turboquant import ScalarCodes
from fibquant_theory.numerics.fixed_order import row_norms
from tests.helpers import assert_rejects_nan_and_inf

CODECS = [TurboQuantMSE, TurboQuantProd]


@pytest.mark.parametrize("cls", CODECS)
def test_shapes_and_leading_dims(cls: type) -> None:
    codec = cls(32, 3, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 32))
    codes = codec.encode(x)
    assert codes.norms.shape == (2, 3, 5)
    xh = codec.decode(codes)
    assert xh.shape == x.shape
    # bit-identical whatever the leading shape or the chunking (failed on AMD EPYC before: stacked vs 2-D matmul)
    flat = codec.decode(codec.encode(x.reshape(-1, 32)))
    np.testing.assert_array_equal(flat.reshape(x.shape), xh)
    chunks = np.concatenate([codec.decode(codec.encode(part)) for part in np.array_split(x.reshape(-1, 32), 7)])
    np.testing.assert_array_equal(chunks.reshape(x.shape), xh)
    ip = codec.inner_product(np.ones(32), codes)
    assert ip.shape == (2, 3, 5)
    np.testing.assert_array_equal(codec.inner_product(np.ones(32), codec.encode(x.reshape(-1, 32))).reshape(ip.shape), ip)


@pytest.mark.parametrize("cls", CODECS)
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_zero_vectors_round_trip_to_zero(cls: type, bits: int) -> None:
    codec = cls(16, bits)
    x = np.zeros((3, 16))
    x[1] = np.arange(16.0)
    out = codec.decode(codec.encode(x))
    assert np.array_equal(out[0], np.zeros(16)) and np.array_equal(out[2], np.zeros(16))
    assert np.all(out[1] != 0)


@pytest.mark.parametrize("cls", CODECS)
def test_bad_input_raises(cls: type) -> None:
    codec = cls(16, 2)
    assert_rejects_nan_and_inf(codec.encode, np.ones((4, 16)), (2, 5), nan_match="row 2")
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\)"):
        codec.encode(np.ones((4, 15)))
    with pytest.raises(ValueError):
        codec.encode(np.array(["a"] * 16))
    with pytest.raises(ValueError):
        codec.encode(np.ones(16, dtype=complex))
    for bad in ({"d": 1, "bits": 2}, {"d": 16, "bits": 0}, {"d": 16, "bits": 9}, {"d": 16, "bits": 1.5}):
        with pytest.raises(ValueError):
            cls(**bad)


def test_mse_codec_matches_design_mse() -> None:
    """Monte Carlo MSE of the full codec equals d * the Lloyd–Max per-coordinate MSE (rotation is exact)."""
    for d, b in ((64, 1), (64, 2), (128, 3)):
        row = rate_distortion(TurboQuantMSE(d, b, seed=3), n_samples=30_000, seed=1)
        assert abs(row["mse"] - lloyd_max_scalar(d, b).mse) < 4 * row["mse_se"], row
        # For an independent uniform unit query, E <q, e>^2 = E||e||^2 / d.
        assert row["ip_mse"] == pytest.approx(row["mse"] / d, rel=0.05)


def test_norm_scaling() -> None:
    codec = TurboQuantMSE(32, 4, seed=0)
    x = sample_unit_vectors(50, 32, 2)
    a = codec.decode(codec.encode(x))
    b = codec.decode(codec.encode(7.5 * x))
    assert np.allclose(b, 7.5 * a, rtol=1e-12)


def test_prod_inner_product_is_unbiased() -> None:
    """Averaged over QJL seeds, the estimate of <q, x> has no bias; the MSE-only estimate does."""
    d, bits = 32, 2
    x = sample_unit_vectors(1, d, 11)[0]
    q = x + 0.5 * sample_unit_vectors(1, d, 12)[0]
    truth = float(q @ x)
    est = np.array([TurboQuantProd(d, bits, seed=s).inner_product(q, TurboQuantProd(d, bits, seed=s).encode(x)) for s in range(400)])
    assert abs(est.mean() - truth) < 4 * est.std(ddof=1) / math.sqrt(est.size)
    mse_only = np.array([TurboQuantMSE(d, bits, seed=s).inner_product(q, TurboQuantMSE(d, bits, seed=s).encode(x)) for s in range(400)])
    # TurboQuant-mse shrinks inner products (its reconstruction has norm < 1): a visible bias.
    assert mse_only.mean() < truth - 4 * mse_only.std(ddof=1) / math.sqrt(mse_only.size)


def test_inner_product_equals_decode_then_dot() -> None:
    for cls in CODECS:
        codec = cls(24, 3, seed=5)
        x = np.random.default_rng(1).standard_normal((40, 24))
        q = np.random.default_rng(2).standard_normal((40, 24))
        codes = codec.encode(x)
        assert np.allclose(codec.inner_product(q, codes), np.sum(q * codec.decode(codes), axis=1), rtol=1e-10, atol=1e-12)


def test_mse_falls_with_bits() -> None:
    for cls in CODECS:
        mses = [rate_distortion(cls(64, b, seed=0), n_samples=5000, seed=2)["mse"] for b in (1, 2, 3, 4)]
        assert all(a > b for a, b in zip(mses, mses[1:])), (cls, mses)


def test_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(0).standard_normal((10, 16))
    a = TurboQuantProd(16, 3, seed=4).encode(x)
    b = TurboQuantProd(16, 3, seed=4).encode(x)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.signs, b.signs)
    c = TurboQuantProd(16, 3, seed=5).encode(x)
    assert not np.array_equal(a.signs, c.signs)


def test_mismatched_codes_raise() -> None:
    codes = TurboQuantMSE(16, 2).encode(np.ones((3, 16)))
    with pytest.raises(ValueError, match="d=16"):
        TurboQuantMSE(32, 2).decode(codes)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        ScalarCodes(codes.indices + 10, codes.norm_header, 16, 2, 0)
    pcodes = TurboQuantProd(16, 1).encode(np.ones((3, 16)))
    with pytest.raises(ValueError, match="bits=1"):
        TurboQuantProd(16, 2).decode(pcodes)
    with pytest.raises(TypeError, match="QJLCodes"):
        TurboQuantProd(16, 2).decode(codes)


@pytest.mark.parametrize("cls", CODECS)
def test_codes_carry_seed_bits_and_header(cls: type) -> None:
    """D8: codes made with seed 0 are refused by a seed-1 codec (before: relative error 1.94, no error)."""
    x = np.random.default_rng(3).standard_normal((20, 32))
    codes = cls(32, 3, seed=0).encode(x)
    assert (codes.d, codes.bits, codes.seed, codes.norm_dtype) == (32, 3, 0, "float16")
    with pytest.raises(ValueError, match=r"seed=0 \(codec has 1\)"):
        cls(32, 3, seed=1).decode(codes)
    with pytest.raises(ValueError, match="bits=3"):
        cls(32, 4, seed=0).decode(codes)
    with pytest.raises(ValueError, match="norm_dtype"):
        cls(32, 3, seed=0, norm_dtype="float32").decode(codes)
    with pytest.raises(ValueError, match="norm_dtype"):
        cls(32, 3, norm_dtype="float64")


@pytest.mark.parametrize("cls", CODECS)
def test_norms_are_stored_in_the_counted_format(cls: type) -> None:
    """D8: the norm header is the 16 bits it is counted as (before: float64 norms, counted as 16 bits)."""
    x = np.random.default_rng(4).standard_normal((6, 32)) * 3.0
    codec = cls(32, 2, seed=2)
    codes = codec.encode(x)
    assert codes.norm_header.dtype == np.uint16 and codes.norm_header.shape == (6,)
    assert codec.norm_bits == 16 * codec.n_headers
    assert codec.bits_per_vector == 32 * 2 + codec.norm_bits
    np.testing.assert_array_equal(codes.norms, row_norms(x).astype(np.float16).astype(np.float64))
    wide = cls(32, 2, seed=2, norm_dtype="float32")
    assert wide.encode(x).norm_header.dtype == np.uint32 and wide.norm_bits == 32 * wide.n_headers


@pytest.mark.parametrize("cls", CODECS)
def test_huge_entries_do_not_overflow_the_norm(cls: type) -> None:
    """D8: entries of 1e154 used to overflow np.linalg.norm (decode returned inf); now the norm is exact
    and a norm too large for the header is refused with a message."""
    x = np.full((2, 16), 1e154)
    with pytest.raises(ValueError, match="overflows the float16 norm header"):
        cls(16, 2).encode(x)
    with pytest.raises(ValueError, match="overflows the float32 norm header"):
        cls(16, 2, norm_dtype="float32").encode(x)
    y = np.full((2, 16), 1e37)  # norm 4e37 fits a float32 header
    out = cls(16, 2, norm_dtype="float32").decode(cls(16, 2, norm_dtype="float32").encode(y))
    assert np.isfinite(out).all()
    tiny = np.full((1, 16), 1e-9)
    with pytest.raises(ValueError, match="below the smallest normal float16"):
        cls(16, 2).encode(tiny)


@pytest.mark.parametrize("cls", CODECS)
def test_decode_row_is_exact_and_checks_its_index(cls: type) -> None:
    codec = cls(16, 3, seed=1)
    x = np.random.default_rng(5).standard_normal((2, 4, 16))
    codes = codec.encode(x)
    flat = codec.decode(codes).reshape(-1, 16)
    for i in (0, 3, 7, -1):
        np.testing.assert_array_equal(codec.decode_row(codes, i), flat[i])
    with pytest.raises(ValueError, match="index"):
        codec.decode_row(codes, 8)
    empty = codec.encode(np.zeros((0, 16)))
    with pytest.raises(ValueError, match="empty codes"):
        codec.decode_row(empty, 0)


@settings(max_examples=25)
@given(
    d=st.integers(2, 40),
    bits=st.integers(1, 8),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_property_error_bounded(d: int, bits: int, scale: float, seed: int) -> None:
    """Reconstruction error of TurboQuant-mse never exceeds the norm, and scales with it."""
    x = scale * np.random.default_rng(seed).standard_normal((8, d))
    codec = TurboQuantMSE(d, bits, seed=seed % 7)
    err = np.linalg.norm(codec.decode(codec.encode(x)) - x, axis=1)
    assert np.all(err <= np.linalg.norm(x, axis=1) * (1 + 1e-12))
