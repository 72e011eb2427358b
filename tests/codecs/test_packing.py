"""Fixed-rate packing: identity for every N, exact mixed-radix size, random access, corrupt data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibquant_theory.codecs.packing import (
    MAX_CODEWORDS,
    PACKING_MODES,
    RecordLayout,
    _pack_fixed,
    _pack_mixed,
    _unpack_fixed,
    _unpack_mixed,
    index_bits,
    pack_indices,
    payload_bits,
    unpack_indices,
)
from tests.reference import pack_records_naive, unpack_records_naive


@st.composite
def records(draw: st.DrawFn) -> tuple[RecordLayout, np.ndarray, np.ndarray]:
    n_codewords = draw(st.integers(2, 1 << 16))
    m = draw(st.integers(1, 12))
    header_bits = draw(st.sampled_from([0, 1, 16, 32]))
    mode = draw(st.sampled_from(PACKING_MODES))
    n = draw(st.integers(0, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_codewords, size=(n, m))
    # make the extreme digits common: they exercise carries and the top of the range
    idx[rng.random((n, m)) < 0.25] = n_codewords - 1
    idx[rng.random((n, m)) < 0.1] = 0
    header = rng.integers(0, 1 << header_bits, size=n) if header_bits else np.zeros(n, dtype=np.int64)
    return RecordLayout(n_codewords, m, header_bits, mode), header, idx


@settings(deadline=None, max_examples=150)
@given(records())
def test_pack_unpack_identity_and_matches_naive(case: tuple[RecordLayout, np.ndarray, np.ndarray]) -> None:
    layout, header, idx = case
    n = idx.shape[0]
    buf = layout.pack(header, idx)
    assert buf.dtype == np.uint8 and buf.size == layout.nbytes(n) == math.ceil(n * layout.record_bits / 8)
    # the same bytes as a Python big-integer construction of the layout
    naive = pack_records_naive(header, idx, layout.n_codewords, layout.header_bits, layout.mode)
    np.testing.assert_array_equal(buf, naive)
    h2, i2 = layout.unpack(buf, n)
    np.testing.assert_array_equal(i2, idx)
    np.testing.assert_array_equal(h2, header)
    # random access: every single record, read alone, equals the batch
    for r in range(n):
        hr, ir = layout.unpack(buf, n, start=r, count=1)
        np.testing.assert_array_equal(ir[0], i2[r])
        assert hr[0] == h2[r]


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 1 << 16), st.integers(1, 40))
def test_mixed_radix_costs_less_than_one_bit_over_log2(n_codewords: int, m: int) -> None:
    exact = m * math.log2(n_codewords)
    mixed = payload_bits(n_codewords, m, "mixed-radix")
    fixed = payload_bits(n_codewords, m, "fixed")
    assert exact <= mixed < exact + 1
    assert mixed <= fixed == m * index_bits(n_codewords)
    if n_codewords & (n_codewords - 1) == 0:
        assert mixed == fixed


def test_known_sizes() -> None:
    # d = 64, k = 32, N = 128, fp16 norm: 16 + 2 * 7 = 30 bits (1024 / 30 = 34.13x vs fp16)
    assert RecordLayout(128, 2, 16, "fixed").record_bits == 30
    # N = 100, m = 16: fixed 16 * 7 = 112 bits; mixed ceil(16 log2 100) = ceil(106.3) = 107 bits
    assert payload_bits(100, 16, "fixed") == 112
    assert payload_bits(100, 16, "mixed-radix") == 107
    assert index_bits(2) == 1 and index_bits(3) == 2 and index_bits(256) == 8 and index_bits(257) == 9


def test_large_record_with_many_limbs() -> None:
    # N = 65535, m = 64 blocks: a 1024-bit mixed-radix integer (32 limbs)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 65535, size=(5, 64))
    idx[0] = 65534
    layout = RecordLayout(65535, 64, 16, "mixed-radix")
    buf = layout.pack(np.arange(5), idx)
    np.testing.assert_array_equal(layout.unpack(buf, 5)[1], idx)
    np.testing.assert_array_equal(buf, pack_records_naive(np.arange(5), idx, 65535, 16, "mixed-radix"))


def test_unpack_naive_agrees_on_the_fast_stream() -> None:
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 1000, size=(7, 5))
    for mode in PACKING_MODES:
        buf = pack_indices(idx, 1000, mode)
        np.testing.assert_array_equal(unpack_records_naive(buf, 7, 5, 1000, 0, mode)[1], idx)
        np.testing.assert_array_equal(unpack_indices(buf, 7, 5, 1000, mode, start=2, count=3), idx[2:5])


# ----------------------------------------------------------------------------- bad input
def test_truncated_or_padded_stream_is_rejected() -> None:
    layout = RecordLayout(256, 4, 16, "fixed")
    buf = layout.pack(np.arange(3), np.ones((3, 4), dtype=int))
    with pytest.raises(ValueError, match="truncated"):
        layout.unpack(buf[:-1], 3)
    with pytest.raises(ValueError, match="too long"):
        layout.unpack(np.concatenate([buf, [0]]).astype(np.uint8), 3)
    with pytest.raises(ValueError, match="uint8"):
        layout.unpack(buf.astype(np.int16), 3)


def test_out_of_range_field_is_rejected_not_garbage() -> None:
    # N = 3 needs 2-bit fields: the pattern 0b11 = 3 is not a valid index
    layout = RecordLayout(3, 2, 0, "fixed")
    buf = layout.pack(None, np.array([[0, 1], [2, 2]]))
    bad = buf.copy()
    bad[0] |= 0b11  # record 0, field 0 := 3
    with pytest.raises(ValueError, match="record 0 holds an index >= N = 3"):
        layout.unpack(bad, 2)
    bad = buf.copy()
    bad[0] |= 0b11 << 6  # record 1, field 1 := 3
    with pytest.raises(ValueError, match="record 1"):
        layout.unpack(bad, 2)
    # random access of a good record still works
    np.testing.assert_array_equal(layout.unpack(bad, 2, start=0, count=1)[1], [[0, 1]])


def test_mixed_radix_value_out_of_range_is_rejected() -> None:
    # N = 3, m = 2: values < 9 in 4 bits; 0b1111 = 15 >= 9 is corrupt
    layout = RecordLayout(3, 2, 0, "mixed-radix")
    buf = layout.pack(None, np.array([[2, 2], [1, 0]]))
    bad = buf.copy()
    bad[0] |= 0x0F
    with pytest.raises(ValueError, match=r"record 0 holds a mixed-radix value >= N\*\*m"):
        layout.unpack(bad, 2)


def test_nonzero_padding_is_rejected() -> None:
    layout = RecordLayout(8, 1, 0, "fixed")  # 3 bits per record
    buf = layout.pack(None, np.array([[5], [6]]))  # 6 bits in one byte
    bad = buf.copy()
    bad[-1] |= 0x80
    with pytest.raises(ValueError, match="padding"):
        layout.unpack(bad, 2)


@pytest.mark.parametrize(
    ("header", "idx", "match"),
    [
        (np.zeros(2, dtype=int), np.array([[0, 255]]), r"header must be integers of shape \(1,\)"),
        (np.zeros(1, dtype=int), np.array([[0, 256]]), r"\[0, 256\); row 0"),
        (np.zeros(1, dtype=int), np.array([[-1, 0]]), "row 0"),
        (np.array([1 << 16]), np.array([[0, 0]]), "header values"),
        (np.zeros(1, dtype=int), np.array([[0.5, 0.0]]), "integers"),
    ],
)
def test_pack_rejects_bad_input(header: np.ndarray, idx: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecordLayout(256, 2, 16, "fixed").pack(header, idx)


def test_layout_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="n_codewords"):
        RecordLayout(1, 2)
    with pytest.raises(ValueError, match="n_codewords"):
        RecordLayout(MAX_CODEWORDS + 1, 2)
    with pytest.raises(ValueError, match="packing mode"):
        RecordLayout(4, 2, 0, "huffman")
    with pytest.raises(ValueError, match="header_bits"):
        RecordLayout(4, 2, 33)
    with pytest.raises(ValueError, match="start"):
        RecordLayout(4, 2).unpack(np.zeros(1, np.uint8), 2, start=3)


def test_every_codebook_size_from_2_to_65536() -> None:
    """Pack/unpack is the identity for every N in 2..2**16, both modes (one record of extreme digits each).

    Calls the compiled kernels behind :class:`RecordLayout` directly to keep
    the 2 x 65535 round trips cheap; the public path is covered above.
    """
    hdr = np.zeros(1, dtype=np.int64)
    h_out = np.zeros(1, dtype=np.int64)
    i_out = np.zeros((1, 3), dtype=np.int64)
    for n_codewords in range(2, (1 << 16) + 1):
        idx = np.array([[n_codewords - 1, 0, n_codewords // 2]], dtype=np.int64)
        hdr[0] = n_codewords & 0xFFFF
        width = (n_codewords - 1).bit_length()
        out = np.zeros((16 + 3 * width + 7) // 8, dtype=np.uint8)
        _pack_fixed(hdr, idx, 16, width, out)
        assert _unpack_fixed(out, 0, 16, width, n_codewords, 3, h_out, i_out) == -1
        assert (i_out == idx).all() and h_out[0] == hdr[0], n_codewords
        pbits = (n_codewords**3 - 1).bit_length()
        limbs = (pbits + 31) // 32
        out = np.zeros((16 + pbits + 7) // 8, dtype=np.uint8)
        _pack_mixed(hdr, idx, 16, n_codewords, pbits, limbs, out)
        assert _unpack_mixed(out, 0, 16, n_codewords, pbits, limbs, 3, h_out, i_out) == -1
        assert (i_out == idx).all() and h_out[0] == hdr[0], n_codewords
