"""FP8 (e4m3fn) round trip: the numpy rounding against torch's cast, exactness, error bound, codes, bad input."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from fibquant_theory.codecs.base import Codec, Codes, flat_index
from fibquant_theory.codecs.fp8 import E4M3_MAX, E4M3_VALUES, FP8Codec, FP8Codes, e4m3_decode, e4m3_encode, make_fp8
from fibquant_theory.codecs.registry import get_spec, make_codec
from fibquant_theory.numerics.fixed_order import row_dots

#: the finite non-negative e4m3 values, increasing (codes 0x00..0x7E)
GRID = E4M3_VALUES[:127]


def _half_step(y: np.ndarray) -> np.ndarray:
    """Half the e4m3 step at ``|y|``: ``2**(floor(log2|y|) - 4)`` for normal values, ``2**-10`` below ``2**-6``."""
    a = np.abs(y)
    _, e2 = np.frexp(a)
    return np.where(a >= 2.0**-6, np.ldexp(1.0, e2 - 1 - 4), 2.0**-10)


# ----------------------------------------------------------------------------- the e4m3 grid and its rounding
def test_the_grid_is_e4m3fn() -> None:
    assert np.isnan(E4M3_VALUES[[0x7F, 0xFF]]).all() and np.isfinite(np.delete(E4M3_VALUES, [0x7F, 0xFF])).all()
    assert GRID[0] == 0 and GRID[1] == 2.0**-9 and GRID[8] == 2.0**-6 and GRID[-1] == E4M3_MAX == 448
    assert (np.diff(GRID) > 0).all()  # codes 0..126 are increasing
    np.testing.assert_array_equal(E4M3_VALUES[128:255], -E4M3_VALUES[:127])
    assert np.signbit(E4M3_VALUES[0x80]) and E4M3_VALUES[0x80] == 0
    np.testing.assert_array_equal(e4m3_encode(GRID), np.arange(127))  # the grid encodes to itself
    np.testing.assert_array_equal(e4m3_decode(np.arange(127)), GRID)


def test_rounding_is_to_nearest_with_ties_to_even() -> None:
    mid = (GRID[:-1] + GRID[1:]) / 2  # every tie (exact in float64)
    codes = e4m3_encode(mid)
    lo = np.arange(126)
    np.testing.assert_array_equal(codes, np.where(lo % 2 == 0, lo, lo + 1))  # the even code of the two
    np.testing.assert_array_equal(e4m3_encode(np.nextafter(mid, 0)), lo)
    np.testing.assert_array_equal(e4m3_encode(np.nextafter(mid, np.inf)), lo + 1)
    np.testing.assert_array_equal(e4m3_encode(-mid), codes | 0x80)
    # against a brute-force nearest grid point on random values of every magnitude
    rng = np.random.default_rng(0)
    y = np.exp2(rng.uniform(-14, 9, 20000)) * np.where(rng.random(20000) < 0.5, -1, 1)
    y = np.clip(y, -E4M3_MAX, E4M3_MAX)
    got = e4m3_decode(e4m3_encode(y))
    best = np.abs(np.abs(y)[:, None] - GRID[None, :]).min(axis=1)
    np.testing.assert_array_equal(np.abs(np.abs(y) - np.abs(got)), best)
    assert (np.abs(y - got) <= _half_step(y)).all()


def test_out_of_range_saturates_and_nan_is_refused() -> None:
    y = np.array([448.0, 463.9, 464.0, 500.0, 1e30, np.inf, -np.inf, -0.0, 0.0, -1e-30, 1e-30])
    np.testing.assert_array_equal(e4m3_encode(y), [0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0x80, 0, 0x80, 0])
    with pytest.raises(ValueError, match="NaN"):
        e4m3_encode([1.0, np.nan])


def _torch_bits(x32: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(x32)).to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def test_numpy_rounding_equals_torch_cast_on_float32() -> None:
    """Ties, subnormals, saturation, every float16 value and random float32 bit patterns: the same bytes as torch."""
    rng = np.random.default_rng(1)
    mid = ((GRID[:-1] + GRID[1:]) / 2).astype(np.float32)  # the ties are float32 numbers
    near = np.concatenate([np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf))])
    sub = rng.uniform(0, 2.0**-6, 5000).astype(np.float32)  # the subnormal range and its ties (k + 1/2) * 2**-9
    sub_ties = ((np.arange(16) + 0.5) * 2.0**-9).astype(np.float32)
    wide = (np.exp2(rng.uniform(-30, 12, 50000)) * rng.choice([-1, 1], 50000)).astype(np.float32)
    bits = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[~np.isnan(bits)]  # random float32 bit patterns: every exponent, inf, huge, tiny
    half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    half = half[~np.isnan(half)].astype(np.float32)  # every float16 value (exact in float32)
    special = np.array([0.0, -0.0, 448.0, 464.0, -464.0, 480.0, np.inf, -np.inf, 2.0**-10, 3 * 2.0**-11], np.float32)
    for x32 in (mid, -mid, near, sub, -sub, sub_ties, -sub_ties, wide, bits, half, special):
        np.testing.assert_array_equal(e4m3_encode(x32.astype(np.float64)), _torch_bits(x32))


def test_float64_is_rounded_once_where_torch_rounds_twice() -> None:
    """torch casts a float64 through float32: just above a tie it can land on the tie; this module rounds once."""
    torch = pytest.importorskip("torch")
    y = np.array([1.0625 + 2.0**-40])  # just above the tie between 1.0 (0x38) and 1.125 (0x39)
    assert e4m3_encode(y)[0] == 0x39
    assert torch.from_numpy(y).to(torch.float8_e4m3fn).view(torch.uint8).item() in (0x38, 0x39)


# ----------------------------------------------------------------------------- the codec
def test_protocol_shapes_and_rates() -> None:
    codec = make_fp8(16)
    assert isinstance(codec, Codec) and codec.name == "fp8" and codec.codes_type is FP8Codes
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 16))
    codes = codec.encode(x)
    assert isinstance(codes, Codes) and codes.shape == (2, 3, 5) and codes.payload.shape == (2, 3, 5, 16)
    assert codec.decode(codes).shape == (2, 3, 5, 16) and codec.decode(codes).dtype == np.float64
    assert codec.encode(x[0, 0, 0]).shape == () and codec.decode(codec.encode(x[0, 0, 0])).shape == (16,)
    empty = codec.encode(np.zeros((0, 16)))
    assert empty.shape == (0,) and codec.decode(empty).shape == (0, 16)
    for d in (2, 16, 64, 128):
        c = FP8Codec(d)
        assert c.bits_per_vector == 8 * d + 16 and c.rate_bits == 8.0 and c.side_bits_per_vector == 16
        assert c.compression_ratio == 16 * d / (8 * d + 16)
        assert FP8Codec(d, scale_dtype="float32").bits_per_vector == 8 * d + 32
    assert codes.nbytes == codec.packed_nbytes(30) == 30 * 18
    assert make_fp8(16, scale_dtype="float32").encode(x).nbytes == 30 * 20


def test_decode_of_encode_is_exact_on_the_grid_times_a_power_of_two() -> None:
    rng = np.random.default_rng(3)
    g = rng.choice(np.concatenate([GRID, -GRID]), size=(200, 16))
    g[np.arange(200), rng.integers(0, 16, 200)] = rng.choice([-E4M3_MAX, E4M3_MAX], 200)  # max |g_i| = 448
    for k in (-24, -20, -14, -3, 0, 5, 15):  # scales 2**k: fp16 subnormal, normal, and the largest power of two
        x = np.ldexp(g, k)
        for scale_dtype in ("float16", "float32"):
            codec = FP8Codec(16, scale_dtype=scale_dtype)
            codes = codec.encode(x)
            assert (codes.scale.astype(np.float64) == 2.0**k).all()
            np.testing.assert_array_equal(codec.decode(codes), x)


@pytest.mark.parametrize("magnitude", [1e-6, 1e-3, 1.0, 37.0, 3e4, 3e6])
def test_error_is_at_most_half_an_e4m3_step_times_the_scale(magnitude: float) -> None:
    rng = np.random.default_rng(4)
    x = magnitude * rng.standard_normal((300, 32)) * np.exp2(rng.uniform(-8, 0, (300, 1)))
    codec = FP8Codec(32)
    codes = codec.encode(x)
    s = codes.scale.astype(np.float64)
    amax = np.abs(x).max(axis=-1)
    # the scale is the smallest float16 >= max|x_i| / 448, so nothing saturates
    assert (s >= amax / 448).all() and (np.nextafter(codes.scale, np.float16(0)).astype(np.float64) < amax / 448).all()
    err = np.abs(codec.decode(codes) - x)
    assert (err <= s[:, None] * _half_step(x / s[:, None]) * (1 + 1e-12)).all()


def test_zero_and_tiny_vectors() -> None:
    codec = make_fp8(8)
    x = np.zeros((3, 8))
    x[1] = 1e-12  # below the smallest float16 scale 2**-24 times the smallest e4m3 half step 2**-10: all zeros
    x[2] = 1e-9  # still kept: the scale is rounded up to 2**-24, not down to 0
    codes = codec.encode(x)
    out = codec.decode(codes)
    assert codes.scale[0] == 0 and (out[0] == 0).all() and (out[1] == 0).all()
    assert codes.scale[1] == codes.scale[2] == np.float16(2.0**-24)
    assert np.abs(out[2] - 1e-9).max() <= 2.0**-24 * 2.0**-10


def test_bad_input_is_refused() -> None:
    codec = make_fp8(8)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.ones((2, 8))
        x[1, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            codec.encode(x)
    with pytest.raises(ValueError, match="float16 range.*float32"):
        codec.encode(np.full(8, 448.0 * 65520))  # the scale would overflow float16
    assert make_fp8(8, scale_dtype="float32").encode(np.full(8, 448.0 * 65520)).scale[()] == 65520
    assert codec.encode(np.full(8, 448.0 * 65504)).scale[()] == 65504  # the largest float16 scale is fine
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        codec.encode(np.ones((2, 7)))
    with pytest.raises(ValueError, match="scale_dtype"):
        make_fp8(8, scale_dtype="bfloat16")
    with pytest.raises(ValueError, match="d"):
        make_fp8(1)
    with pytest.raises(TypeError, match="FP8Codes"):
        codec.decode(np.zeros((2, 8), np.uint8))
    with pytest.raises(ValueError, match="different codec"):
        make_fp8(8, scale_dtype="float32").decode(codec.encode(np.ones((2, 8))))
    with pytest.raises(ValueError, match="different codec"):
        make_fp8(16).decode(codec.encode(np.ones((2, 8))))


def test_decode_row_take_and_inner_product() -> None:
    codec = make_fp8(16)
    rng = np.random.default_rng(5)
    x = 3.0 * rng.standard_normal((2, 4, 6, 16))
    codes = codec.encode(x)
    full = codec.decode(codes)
    flat = full.reshape(-1, 16)
    for i in (0, 7, -1, (1, 2, 3), (0, -1, -2)):
        np.testing.assert_array_equal(codec.decode_row(codes, i), flat[flat_index(codes.shape, i)])
    np.testing.assert_array_equal(codec.decode(codec.take(codes, np.array([1, 0, 1]), axis=0)), full[[1, 0, 1]])
    np.testing.assert_array_equal(codec.decode(codec.take(codes, np.array([5, 0]), axis=-1)), full[..., [5, 0], :])
    mask = np.array([True, False, False, True])
    np.testing.assert_array_equal(codec.decode(codec.take(codes, mask, axis=1)), full[:, mask])
    taken = codec.take(codes, np.arange(3), axis=2)
    np.testing.assert_array_equal(taken.payload, codes.payload[:, :, :3])  # the bytes themselves: nothing re-encoded
    for q in (rng.standard_normal(16), rng.standard_normal((2, 4, 6, 16)), rng.standard_normal((4, 1, 16))):
        np.testing.assert_allclose(codec.inner_product(q, codes), row_dots(q, full), rtol=1e-13, atol=1e-13)
    with pytest.raises(IndexError):
        codec.take(codes, [6], axis=2)


# ----------------------------------------------------------------------------- bytes
def _reframe(blob: bytes, header: bytes | None = None, payload: bytes | None = None) -> bytes:
    (hlen,) = struct.unpack_from("<I", blob, 8)
    header = blob[12 : 12 + hlen] if header is None else header
    payload = blob[12 + hlen : -4] if payload is None else payload
    body = blob[:8] + struct.pack("<I", len(header)) + header + payload
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_bytes_round_trip(scale_dtype: str) -> None:
    codec = make_fp8(16, scale_dtype=scale_dtype)
    x = np.random.default_rng(6).standard_normal((3, 5, 16))
    x[1, 2] = 0
    codes = codec.encode(x)
    blob = codes.to_bytes()
    back = FP8Codes.from_bytes(blob)
    assert back.shape == codes.shape and back.nbytes == codes.nbytes and back.scale.dtype == codes.scale.dtype
    np.testing.assert_array_equal(codec.decode(back), codec.decode(codes))
    assert FP8Codes.from_bytes(bytearray(blob)).to_bytes() == blob
    assert FP8Codes.from_bytes(memoryview(blob)).shape == (3, 5)
    (hlen,) = struct.unpack_from("<I", blob, 8)
    assert len(blob) == 8 + 4 + hlen + codes.nbytes + 4
    empty = codec.encode(np.zeros((0, 16)))
    assert FP8Codes.from_bytes(empty.to_bytes()).shape == (0,)


def test_corrupt_bytes_are_refused() -> None:
    codes = make_fp8(8).encode(np.random.default_rng(7).standard_normal((4, 8)))
    blob = codes.to_bytes()
    with pytest.raises(ValueError, match="checksum"):
        FP8Codes.from_bytes(blob[:30] + bytes([blob[30] ^ 4]) + blob[31:])
    with pytest.raises(ValueError, match="checksum|truncated"):
        FP8Codes.from_bytes(blob[:-3])
    with pytest.raises(ValueError, match="magic"):
        FP8Codes.from_bytes(b"KIVICDS1" + blob[8:])
    with pytest.raises(TypeError, match="bytes"):
        FP8Codes.from_bytes("not bytes")  # type: ignore[arg-type]
    (hlen,) = struct.unpack_from("<I", blob, 8)
    header, payload = blob[12 : 12 + hlen], blob[12 + hlen : -4]
    for old, new, match in (
        (b'"shape": [4]', b'"shape": [5]', "payload"),
        (b'"d": 8', b'"d": 1', "d must be"),
        (b'"d": 8', b'"d": 8.0', "d must be an integer"),
        (b'"scale_dtype": "float16"', b'"scale_dtype": "float64"', "scale_dtype"),
        (b'"format": 1', b'"format": 2', "format"),
    ):
        assert old in header
        with pytest.raises(ValueError, match=match):
            FP8Codes.from_bytes(_reframe(blob, header=header.replace(old, new)))
    nan_code = bytes([0x7F]) + payload[1:]
    with pytest.raises(ValueError, match="NaN code"):
        FP8Codes.from_bytes(_reframe(blob, payload=nan_code))
    for bad_scale in (-1.0, np.inf, np.nan):
        scales = np.array([bad_scale, 1, 1, 1], "<f2").tobytes()
        with pytest.raises(ValueError, match="scales are corrupt"):
            FP8Codes.from_bytes(_reframe(blob, payload=payload[:32] + scales))


# ----------------------------------------------------------------------------- registry and imports
def test_registry_entry() -> None:
    spec = get_spec("fp8")
    assert spec.factory is make_fp8 and spec.options == ("seed", "scale_dtype") and spec.rate_options == ()
    assert spec.kv and spec.kv_sweep == ({},) and not spec.missing([], kv=True)
    assert isinstance(make_codec("fp8", 16, seed=3), FP8Codec)
    with pytest.raises(TypeError, match="'bits'.*'fp8'"):
        make_codec("fp8", 16, bits=8)


def test_the_codec_imports_without_torch() -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from fibquant_theory.codecs.registry import make_codec\n"
        "c = make_codec('fp8', 8)\n"
        "assert (c.decode(c.encode(np.ones((2, 8)))) > 0).all() and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
