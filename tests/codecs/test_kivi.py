"""KIVI-style uniform integer baseline: error bounds, random access, inner products, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibquant_theory.codecs.kivi import KIVICodec, KIVICodes
from fibquant_theory.codecs.registry import make_codec
from fibquant_theory.experiments.rd import rate_distortion


@settings(deadline=None, max_examples=30)
@given(
    bits=st.integers(1, 8),
    mode=st.sampled_from(["per-token", "per-channel"]),
    tokens=st.integers(1, 40),
    group=st.integers(1, 16),
    seed=st.integers(0, 2**31),
)
def test_error_is_at_most_half_a_step_and_random_access_is_exact(
    bits: int, mode: str, tokens: int, group: int, seed: int
) -> None:
    kv = KIVICodec(8, bits, mode=mode, group_size=group)
    x = np.random.default_rng(seed).standard_normal((2, tokens, 8)) * 4
    codes = kv.encode(x)
    x_hat = kv.decode(codes)
    levels = 2**bits - 1
    if mode == "per-token":
        s16, z16 = codes.scale.astype(np.float64)[..., None], codes.zero.astype(np.float64)[..., None]
        lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    else:
        starts = np.arange(0, tokens, group)

        def expand(a: np.ndarray) -> np.ndarray:
            return np.repeat(a.astype(np.float64), group, axis=1)[:, :tokens]

        s16, z16 = expand(codes.scale), expand(codes.zero)
        lo, hi = expand(np.minimum.reduceat(x, starts, axis=1)), expand(np.maximum.reduceat(x, starts, axis=1))
    # half a (stored) step, plus what the fp16 rounding of the zero point and of the step can add
    bound = s16 / 2 + np.abs(lo - z16) + levels * np.abs((hi - lo) / levels - s16) + 1e-12
    assert (np.abs(x - x_hat) <= bound).all()
    assert (np.abs(x - x_hat) <= (hi - lo) / levels * 0.5 * 1.01 + 2.0**-9 * (np.abs(lo) + hi - lo) + 1e-12).all()
    flat = x_hat.reshape(-1, 8)
    for i in range(flat.shape[0]):
        np.testing.assert_array_equal(kv.decode_row(codes, i), flat[i])
    np.testing.assert_array_equal(kv.decode_row(codes, (1, tokens - 1)), x_hat[1, tokens - 1])


def test_more_bits_less_distortion() -> None:
    x = np.random.default_rng(0).standard_normal((500, 64))
    for mode in ("per-token", "per-channel"):
        errs = [np.mean((KIVICodec(64, b, mode=mode).decode(KIVICodec(64, b, mode=mode).encode(x)) - x) ** 2) for b in (1, 2, 3, 4, 8)]
        assert all(a > b for a, b in itertools.pairwise(errs)), errs


def test_inner_product_from_codes() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 37, 32))
    q = rng.standard_normal(32)
    qs = rng.standard_normal((3, 37, 32))
    for mode in ("per-token", "per-channel"):
        kv = KIVICodec(32, 3, mode=mode, group_size=16)
        codes = kv.encode(x)
        x_hat = kv.decode(codes)
        np.testing.assert_allclose(kv.inner_product(q, codes), x_hat @ q, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(kv.inner_product(qs, codes), np.einsum("...i,...i->...", qs, x_hat), rtol=1e-12, atol=1e-12)


def test_rates_and_registry() -> None:
    kv = make_codec("kivi", 128, bits=2)
    assert isinstance(kv, KIVICodec) and kv.name == "kivi" and kv.rate_bits == 2.0
    assert kv.bits_per_vector == 128 * 2 + 32
    assert kv.compression_ratio == pytest.approx(2048 / 288)
    pc = make_codec("kivi", 128, bits=2, mode="per-channel", group_size=32)
    assert pc.bits_per_vector == 128 * 2 + 32 * 128 / 32
    assert KIVICodec(128, 2, meta_dtype="float32").bits_per_vector == 256 + 64


def test_rate_distortion_regression() -> None:
    row = rate_distortion(KIVICodec(64, 2), n_samples=4000, seed=0)
    # observed 0.2008 +- 0.0007 (per-token 2-bit, uniform unit vectors, d = 64); TurboQuant 2-bit gives 0.1147
    assert 0.19 < row["mse"] < 0.21
    assert abs(row["ip_bias"]) < 5 * row["ip_bias_se"] + 1e-3


def test_zero_and_constant_vectors() -> None:
    kv = KIVICodec(16, 4)
    x = np.zeros((3, 16))
    x[1] = 2.5
    out = kv.decode(kv.encode(x))
    assert (out[0] == 0).all() and (out[2] == 0).all()
    np.testing.assert_array_equal(out[1], np.full(16, 2.5))
    assert kv.decode(kv.encode(np.zeros((0, 16)))).shape == (0, 16)
    pc = KIVICodec(16, 4, mode="per-channel")
    assert (pc.decode(pc.encode(np.zeros((5, 16)))) == 0).all()


def test_bad_input() -> None:
    kv = KIVICodec(16, 4)
    x = np.ones((4, 16))
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="first bad row 2"):
        kv.encode(x)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 16\)"):
        kv.encode(np.ones((4, 15)))
    with pytest.raises(ValueError, match="overflow"):
        kv.encode(np.full((1, 16), 1e6) * np.arange(16))
    with pytest.raises(ValueError, match="tokens"):
        KIVICodec(16, 4, mode="per-channel").encode(np.ones(16))
    with pytest.raises(ValueError, match="mode"):
        KIVICodec(16, 4, mode="per-head")
    with pytest.raises(ValueError, match="bits"):
        KIVICodec(16, 9)
    codes = kv.encode(np.ones((4, 16)))
    with pytest.raises(ValueError, match="truncated"):
        kv.decode(KIVICodes(codes.payload[:-1], codes.shape, codes.scale, codes.zero, 4, 16, "per-token", 32))
    with pytest.raises(ValueError, match="metadata"):
        kv.decode(KIVICodes(codes.payload, codes.shape, codes.scale[:2], codes.zero, 4, 16, "per-token", 32))
    with pytest.raises(ValueError, match="different"):
        KIVICodec(16, 3).decode(codes)


def test_decode_row_on_empty_codes_says_so() -> None:
    kv = KIVICodec(16, 2)
    with pytest.raises(ValueError, match="empty codes"):
        kv.decode_row(kv.encode(np.zeros((0, 16))), 0)
    with pytest.raises(TypeError, match="expected KIVICodes"):
        kv.decode("abc")
