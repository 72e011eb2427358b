"""The codec protocol (codecs/base.py) holds for every registered codec: accounting, random access, take, bytes."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest

from fibquant_theory.codecs.base import Codec, Codes, RateAccounting, flat_index, frame, take_positions, unframe
from fibquant_theory.codecs.kivi import KIVICodec, KIVICodes
from fibquant_theory.codecs.registry import SPECS, make_codec
from fibquant_theory.codecs.turboquant import QJLCodes, ScalarCodes, TurboQuantMSE, TurboQuantProd

#: a small, fast, uncached FibQuant design
SMALL = {"n_train": 2000, "n_heldout": 1000, "cache": False}

#: (method, options) at d = 16: every registered method, and the variants whose codes differ
SETTINGS = [
    ("fibquant", {"block": 2, "codewords": 16, **SMALL}),
    ("fibquant", {"block": 4, "codewords": 24, "norm_dtype": "float32", **SMALL}),  # mixed-radix packing
    ("turboquant", {"bits": 3}),
    ("turboquant", {"bits": 2, "norm_dtype": "float32"}),
    ("turboquant-prod", {"bits": 1}),
    ("turboquant-prod", {"bits": 3, "norm_dtype": "bfloat16"}),
    ("kivi", {"bits": 3}),
    ("kivi", {"bits": 2, "mode": "per-channel", "group_size": 3, "meta_dtype": "float32"}),
    ("fp8", {}),
    ("fp8", {"scale_dtype": "float32"}),
]
IDS = [f"{m}-{i}" for i, (m, _) in enumerate(SETTINGS)]


def test_every_method_has_a_setting_here() -> None:
    assert {m for m, _ in SETTINGS} == set(SPECS)


@pytest.fixture(scope="module", params=SETTINGS, ids=IDS)
def codec_and_codes(request: pytest.FixtureRequest) -> tuple:
    method, options = request.param
    codec = make_codec(method, 16, seed=1, **options)
    x = 2.0 * np.random.default_rng(7).standard_normal((2, 3, 7, 16))
    return codec, codec.encode(x), x


def test_protocol_and_accounting(codec_and_codes: tuple) -> None:
    codec, codes, _ = codec_and_codes
    assert isinstance(codec, Codec) and isinstance(codec, RateAccounting) and isinstance(codes, Codes)
    assert isinstance(codes, codec.codes_type) and codes.shape == (2, 3, 7)
    assert codec.bits_per_vector == codec.index_bits_per_vector + codec.side_bits_per_vector
    assert codec.compression_ratio == 16.0 * 16 / codec.bits_per_vector
    if not isinstance(codec, KIVICodec) or codec.mode == "per-token":  # per-channel metadata is amortised per group
        assert codes.nbytes == codec.packed_nbytes(math.prod(codes.shape)) == math.ceil(42 * codec.bits_per_vector / 8)


def test_rates_are_the_nominal_ones() -> None:
    assert make_codec("turboquant", 16, bits=3).rate_bits == 3.0
    assert make_codec("kivi", 16, bits=2).rate_bits == 2.0
    fq = make_codec("fibquant", 16, block=4, codewords=24, **SMALL)
    assert fq.rate_bits == math.log2(24) / 4  # not the packed index bits / d
    assert fq.bits_per_vector == fq.layout.record_bits and fq.side_bits_per_vector == 16


def test_decode_row_and_take_are_exact(codec_and_codes: tuple) -> None:
    codec, codes, x = codec_and_codes
    flat = codec.decode(codes).reshape(-1, 16)
    for i in (0, 5, -1, (1, 2, 6), (0, -1, 3)):
        np.testing.assert_array_equal(codec.decode_row(codes, i), flat[flat_index(codes.shape, i)])
    rows = codec.take(codes, np.array([1, 0, 1]), axis=0)
    np.testing.assert_array_equal(codec.decode(rows), codec.decode(codes)[[1, 0, 1]])
    prefix = codec.take(codes, np.arange(3), axis=-1)  # a token prefix (per-channel KIVI: only a prefix)
    np.testing.assert_array_equal(codec.decode(prefix), codec.decode(codes)[..., :3, :])
    if not isinstance(codec, KIVICodec) or codec.mode == "per-token":
        mask = np.array([True, False, True])
        np.testing.assert_array_equal(codec.decode(codec.take(codes, mask, axis=1)), codec.decode(codes)[:, [0, 2]])


def test_bytes_round_trip_and_corruption(codec_and_codes: tuple) -> None:
    codec, codes, _ = codec_and_codes
    blob = codes.to_bytes()
    back = codec.codes_type.from_bytes(blob)
    assert back.shape == codes.shape and back.nbytes == codes.nbytes
    np.testing.assert_array_equal(codec.decode(back), codec.decode(codes))
    (hlen,) = struct.unpack_from("<I", blob, 8)
    assert len(blob) == 8 + 4 + hlen + codes.nbytes + 4  # the payload is the counted size
    with pytest.raises(ValueError, match="checksum"):
        codec.codes_type.from_bytes(blob[:20] + bytes([blob[20] ^ 1]) + blob[21:])
    with pytest.raises(ValueError, match="checksum|truncated"):
        codec.codes_type.from_bytes(blob[:-1])
    with pytest.raises(ValueError, match="magic"):
        codec.codes_type.from_bytes(b"XXXXXXXX" + blob[8:])
    with pytest.raises(TypeError, match="bytes"):
        codec.codes_type.from_bytes("not bytes")


@pytest.mark.parametrize("kind", [ScalarCodes, QJLCodes, KIVICodes])
def test_other_kinds_of_codes_are_refused(kind: type) -> None:
    blob = TurboQuantMSE(16, 2).encode(np.ones((2, 16))).to_bytes() if kind is not ScalarCodes else (
        KIVICodec(16, 2).encode(np.ones((2, 16))).to_bytes()
    )
    with pytest.raises(ValueError, match="magic"):
        kind.from_bytes(blob)


def test_a_header_with_a_valid_checksum_is_still_checked() -> None:
    codes = TurboQuantProd(16, 2, seed=3).encode(np.ones((4, 16)))
    blob = codes.to_bytes()
    (hlen,) = struct.unpack_from("<I", blob, 8)
    for old, new, match in (
        (b'"bits": 2', b'"bits": 9', "bits"),
        (b'"shape": [4]', b'"shape": [5]', "payload bytes"),
        (b'"norm_dtype": "float16"', b'"norm_dtype": "float64"', "norm_dtype"),
        (b'"seed": 3', b'"seed": 3.0', "seed must be an integer"),
    ):
        header = blob[12 : 12 + hlen].replace(old, new)
        body = blob[:8] + struct.pack("<I", len(header)) + header + blob[12 + hlen : -4]
        with pytest.raises(ValueError, match=match):
            QJLCodes.from_bytes(body + struct.pack("<I", zlib.crc32(body)))


def test_frame_and_unframe() -> None:
    blob = frame(b"TESTCDS1", {"format": 1, "shape": [2], "n": 3, "payload_bytes": 3}, b"abc")
    header, payload = unframe(blob, b"TESTCDS1", "test codes", version=1, fields=("shape", "n"), int_fields=("n",))
    assert payload == b"abc" and header["n"] == 3
    with pytest.raises(ValueError, match="test codes have a corrupt header: unknown format version"):
        unframe(blob, b"TESTCDS1", "test codes", version=2, fields=(), int_fields=())
    with pytest.raises(ValueError, match=r"missing \['m'\]"):
        unframe(blob, b"TESTCDS1", "test codes", version=1, fields=("m",), int_fields=())
    with pytest.raises(ValueError, match="8 bytes"):
        frame(b"SHORT", {}, b"")


def test_take_positions_checks_its_index() -> None:
    idx, ax = take_positions((3, 4), [-1, 0], axis=-1)
    assert idx.tolist() == [3, 0] and ax == 1
    assert take_positions((3,), np.array([True, False, True]))[0].tolist() == [0, 2]
    with pytest.raises(IndexError, match="out of range"):
        take_positions((3,), [3])
    with pytest.raises(IndexError, match="boolean"):
        take_positions((3,), [True, False])
    with pytest.raises(IndexError, match="1-D"):
        take_positions((3,), [[0]])
    with pytest.raises(ValueError, match="axis"):
        take_positions((3,), [0], axis=1)
    with pytest.raises(ValueError, match="single vector"):
        take_positions((), [0])


def test_flat_index_checks_its_index() -> None:
    assert flat_index((2, 3), 4) == 4 and flat_index((2, 3), -1) == 5 and flat_index((2, 3), (1, -1)) == 5
    with pytest.raises(ValueError, match="index"):
        flat_index((2, 3), 6)
    with pytest.raises(ValueError, match="does not match"):
        flat_index((2, 3), (1,))
    with pytest.raises(ValueError, match="empty codes"):
        flat_index((0, 3), 0)
