r"""Fixed-rate bit packing of codeword indices, with random access.

Every vector is stored as one *record* of exactly the same number of bits::

    record i = [ header (h bits) | payload (P bits) ]     starts at bit i * (h + P)

The header is an opaque unsigned integer (the codec puts the bit pattern of the
vector's norm there); the payload holds the ``m`` codeword indices of the
vector's blocks, each in ``[0, N)``. Bits are written least-significant first,
and bit ``p`` of the stream is bit ``p % 8`` of byte ``p // 8``. The stream is
padded with zero bits to a whole number of bytes. Because every record has the
same length, record ``i`` can be read on its own (:meth:`RecordLayout.unpack`
with ``start=i, count=1``) and gives exactly the same values as unpacking the
whole stream.

Two payload modes:

``"fixed"``
    Every index takes :math:`w = \lceil\log_2 N\rceil` bits: :math:`P = m w`.
``"mixed-radix"``
    The ``m`` indices of a record are the base-``N`` digits of one integer
    :math:`v = \sum_{j<m} i_j N^j < N^m`, stored in
    :math:`P = \lceil \log_2 N^m\rceil = \lceil m \log_2 N\rceil` bits, so a
    non-power-of-two ``N`` costs :math:`\log_2 N` bits per block up to less
    than one bit per record. (For a power of two both modes give the same
    ``P``.) The big integer is handled in 32-bit limbs, so any ``m`` works.

Decoding validates everything it reads: a stream of the wrong length
(truncated or padded), an index field ``>= N``, a mixed-radix value
``>= N^m`` or non-zero padding bits raise :class:`ValueError` naming the first
bad record — never garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from fibquant_theory._validation import check_int
from fibquant_theory.config import MAX_CODEWORDS

__all__ = [
    "MAX_CODEWORDS",
    "PACKING_MODES",
    "RecordLayout",
    "index_bits",
    "pack_indices",
    "payload_bits",
    "unpack_indices",
]

#: Payload layouts understood by :class:`RecordLayout`.
PACKING_MODES = ("fixed", "mixed-radix")


_MASK32 = (1 << 32) - 1


# ----------------------------------------------------------------------------- kernels
@njit("int64(uint8[::1], int64, int64)", cache=True, nogil=True)
def _read_bits(buf, pos, nbits):  # pragma: no cover - compiled
    """Unsigned value of ``nbits <= 32`` bits starting at bit ``pos`` (LSB first)."""
    value = 0
    shift = 0
    while nbits > 0:
        byte = pos >> 3
        off = pos & 7
        take = min(8 - off, nbits)
        part = (np.int64(buf[byte]) >> off) & ((1 << take) - 1)
        value |= part << shift
        shift += take
        pos += take
        nbits -= take
    return value


@njit("void(uint8[::1], int64, int64, int64)", cache=True, nogil=True)
def _write_bits(buf, pos, value, nbits):  # pragma: no cover - compiled
    """OR ``nbits <= 32`` low bits of ``value`` into ``buf`` from bit ``pos`` (LSB first)."""
    while nbits > 0:
        byte = pos >> 3
        off = pos & 7
        take = min(8 - off, nbits)
        buf[byte] |= np.uint8(((value & ((1 << take) - 1)) << off) & 0xFF)
        value >>= take
        pos += take
        nbits -= take


@njit("void(int64[::1], int64[:, ::1], int64, int64, uint8[::1])", cache=True, nogil=True)
def _pack_fixed(header, idx, hbits, width, out):  # pragma: no cover - compiled
    n, m = idx.shape
    rbits = hbits + m * width
    for i in range(n):
        pos = i * rbits
        if hbits > 0:
            _write_bits(out, pos, header[i], hbits)
        pos += hbits
        for j in range(m):
            _write_bits(out, pos, idx[i, j], width)
            pos += width


@njit("int64(uint8[::1], int64, int64, int64, int64, int64, int64[::1], int64[:, ::1])", cache=True, nogil=True)
def _unpack_fixed(buf, start, hbits, width, n_codewords, m, header, idx):  # pragma: no cover - compiled
    """Unpack ``header.size`` records from record ``start``; return the first bad record or -1."""
    count = header.size
    rbits = hbits + m * width
    for r in range(count):
        pos = (start + r) * rbits
        header[r] = _read_bits(buf, pos, hbits) if hbits > 0 else 0
        pos += hbits
        for j in range(m):
            v = _read_bits(buf, pos, width)
            if v >= n_codewords:
                return start + r
            idx[r, j] = v
            pos += width
    return -1


@njit("void(int64[::1], int64[:, ::1], int64, int64, int64, int64, uint8[::1])", cache=True, nogil=True)
def _pack_mixed(header, idx, hbits, n_codewords, pbits, nlimbs, out):  # pragma: no cover - compiled
    n, m = idx.shape
    rbits = hbits + pbits
    limbs = np.zeros(nlimbs, dtype=np.int64)
    for i in range(n):
        limbs[:] = 0
        # Horner from the most significant digit: v = (...(i_{m-1} N + i_{m-2}) N + ...) N + i_0.
        for j in range(m - 1, -1, -1):
            carry = idx[i, j]
            for t in range(nlimbs):
                prod = limbs[t] * n_codewords + carry  # < 2^32 * 2^30 + 2^30 < 2^63
                limbs[t] = prod & 0xFFFFFFFF
                carry = prod >> 32
        pos = i * rbits
        if hbits > 0:
            _write_bits(out, pos, header[i], hbits)
        pos += hbits
        left = pbits
        for t in range(nlimbs):
            take = min(32, left)
            _write_bits(out, pos, limbs[t], take)
            pos += take
            left -= take


@njit("int64(uint8[::1], int64, int64, int64, int64, int64, int64, int64[::1], int64[:, ::1])", cache=True, nogil=True)
def _unpack_mixed(buf, start, hbits, n_codewords, pbits, nlimbs, m, header, idx):  # pragma: no cover - compiled
    """Unpack ``header.size`` mixed-radix records from ``start``; return the first bad record or -1."""
    count = header.size
    rbits = hbits + pbits
    limbs = np.zeros(nlimbs, dtype=np.int64)
    for r in range(count):
        pos = (start + r) * rbits
        header[r] = _read_bits(buf, pos, hbits) if hbits > 0 else 0
        pos += hbits
        left = pbits
        for t in range(nlimbs):
            take = min(32, left)
            limbs[t] = _read_bits(buf, pos, take)
            pos += take
            left -= take
        # Repeated long division by N yields the digits least significant first.
        for j in range(m):
            rem = 0
            for t in range(nlimbs - 1, -1, -1):
                cur = (rem << 32) | limbs[t]  # rem < N <= 2^30, so cur < 2^62
                limbs[t] = cur // n_codewords
                rem = cur - limbs[t] * n_codewords
            idx[r, j] = rem
        for t in range(nlimbs):
            if limbs[t] != 0:  # value >= N^m: not a valid record
                return start + r
    return -1


# ----------------------------------------------------------------------------- host side
def index_bits(n_codewords: int) -> int:
    r"""Bits of one fixed-width index, :math:`\lceil\log_2 N\rceil` (``N >= 2``).

    Parameters
    ----------
    n_codewords : int
        Codebook size ``N >= 2``.

    Returns
    -------
    int
        ``ceil(log2(N))``.
    """
    n = check_int(n_codewords, "n_codewords", minimum=2, maximum=MAX_CODEWORDS)
    return (n - 1).bit_length()


def payload_bits(n_codewords: int, n_blocks: int, mode: str = "fixed") -> int:
    r"""Payload bits of one record of ``n_blocks`` indices.

    ``"fixed"``: :math:`m\lceil\log_2 N\rceil`; ``"mixed-radix"``:
    :math:`\lceil m\log_2 N\rceil`, computed exactly as the bit length of
    :math:`N^m - 1`.

    Parameters
    ----------
    n_codewords : int
        Codebook size ``N >= 2``.
    n_blocks : int
        Indices per record ``m >= 1``.
    mode : {"fixed", "mixed-radix"}, default "fixed"
        Payload mode.

    Returns
    -------
    int
        Bits of the payload of one record.
    """
    n = check_int(n_codewords, "n_codewords", minimum=2, maximum=MAX_CODEWORDS)
    m = check_int(n_blocks, "n_blocks", minimum=1)
    if mode == "fixed":
        return m * index_bits(n)
    if mode == "mixed-radix":
        return (n**m - 1).bit_length()
    raise ValueError(f"packing mode must be one of {PACKING_MODES}, got {mode!r}")


def _writable_bytes(payload: object) -> np.ndarray:
    arr = np.asarray(payload)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"packed data must be a 1-D uint8 array, got dtype {arr.dtype} and shape {arr.shape}")
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = arr.copy()
    return arr


@dataclass(frozen=True)
class RecordLayout:
    """Layout of fixed-length records ``[header | m indices]`` in a bit stream.

    Parameters
    ----------
    n_codewords : int
        Codebook size ``N``, ``2 <= N <= 2**30``.
    n_blocks : int
        Indices per record ``m >= 1``.
    header_bits : int
        Bits of the per-record header, ``0 <= h <= 32``.
    mode : {"fixed", "mixed-radix"}
        Payload layout (see the module docstring).

    Examples
    --------
    >>> lay = RecordLayout(n_codewords=100, n_blocks=3, header_bits=16, mode="mixed-radix")
    >>> lay.record_bits  # 16 + ceil(3 * log2(100)) = 16 + 20
    36
    >>> buf = lay.pack(np.array([7]), np.array([[99, 0, 42]]))
    >>> h, idx = lay.unpack(buf, 1)
    >>> int(h[0]), idx.tolist()
    (7, [[99, 0, 42]])
    """

    n_codewords: int
    n_blocks: int
    header_bits: int = 0
    mode: str = "fixed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_codewords", check_int(self.n_codewords, "n_codewords", minimum=2, maximum=MAX_CODEWORDS))
        object.__setattr__(self, "n_blocks", check_int(self.n_blocks, "n_blocks", minimum=1))
        object.__setattr__(self, "header_bits", check_int(self.header_bits, "header_bits", minimum=0, maximum=32))
        if self.mode not in PACKING_MODES:
            raise ValueError(f"packing mode must be one of {PACKING_MODES}, got {self.mode!r}")

    @property
    def index_bits(self) -> int:
        r"""Bits of one fixed-width index field, :math:`\lceil\log_2 N\rceil`."""
        return index_bits(self.n_codewords)

    @property
    def payload_bits(self) -> int:
        """Bits of the index payload of one record."""
        return payload_bits(self.n_codewords, self.n_blocks, self.mode)

    @property
    def record_bits(self) -> int:
        """Bits of one record (header + payload): every record has exactly this length."""
        return self.header_bits + self.payload_bits

    @property
    def _limbs(self) -> int:
        return max(1, math.ceil(self.payload_bits / 32))

    def bit_offset(self, i: int) -> int:
        """First bit of record ``i`` in the stream, ``i * record_bits``.

        Parameters
        ----------
        i : int
            Record number, ``>= 0``.

        Returns
        -------
        int
            ``i * record_bits``.
        """
        return check_int(i, "record index", minimum=0) * self.record_bits

    def nbytes(self, n_records: int) -> int:
        """Bytes of a stream of ``n_records`` records (zero-padded to a whole byte).

        Parameters
        ----------
        n_records : int
            Number of records, ``>= 0``.

        Returns
        -------
        int
            ``ceil(n_records * record_bits / 8)``.
        """
        return (check_int(n_records, "n_records", minimum=0) * self.record_bits + 7) // 8

    def pack(self, header: object, indices: object) -> np.ndarray:
        """Pack records into a byte stream.

        Parameters
        ----------
        header : array_like
            Header values, shape ``(n,)``, integers in ``[0, 2**header_bits)``
            (ignored, and may be ``None``, when ``header_bits == 0``).
        indices : array_like
            Codeword indices, shape ``(n, m)``, integers in ``[0, N)``.

        Returns
        -------
        numpy.ndarray
            The stream, shape ``(nbytes(n),)``, uint8.
        """
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.shape[1] != self.n_blocks:
            raise ValueError(f"indices must have shape (n, {self.n_blocks}), got {idx.shape}")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        n = idx.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_codewords):
            bad = int(np.flatnonzero(((idx < 0) | (idx >= self.n_codewords)).any(axis=1))[0])
            raise ValueError(f"indices must lie in [0, {self.n_codewords}); row {bad} is {idx[bad].tolist()}")
        if self.header_bits > 0:
            hdr = np.asarray(header)
            if hdr.shape != (n,) or (hdr.size and not np.issubdtype(hdr.dtype, np.integer)):
                raise ValueError(f"header must be integers of shape ({n},), got {hdr.dtype} {hdr.shape}")
            hdr = np.ascontiguousarray(hdr, dtype=np.int64)
            if hdr.size and (hdr.min() < 0 or hdr.max() >= (1 << self.header_bits)):
                raise ValueError(f"header values must lie in [0, 2**{self.header_bits})")
        else:
            hdr = np.zeros(n, dtype=np.int64)
        out = np.zeros(self.nbytes(n), dtype=np.uint8)
        if n == 0:
            return out
        if self.mode == "fixed":
            _pack_fixed(hdr, idx, self.header_bits, self.index_bits, out)
        else:
            _pack_mixed(hdr, idx, self.header_bits, self.n_codewords, self.payload_bits, self._limbs, out)
        return out

    def unpack(
        self, payload: object, n_records: int, start: int = 0, count: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read records ``start .. start + count - 1`` of a stream of ``n_records`` records.

        Parameters
        ----------
        payload : numpy.ndarray
            The stream, 1-D uint8, exactly ``nbytes(n_records)`` long.
        n_records : int
            Number of records the stream holds.
        start, count : int
            First record and number of records to read (default: all from ``start``).

        Returns
        -------
        header : numpy.ndarray
            Shape ``(count,)``, int64.
        indices : numpy.ndarray
            Shape ``(count, m)``, int64, each in ``[0, N)``.

        Raises
        ------
        ValueError
            Wrong length (truncated data), non-zero padding, an index ``>= N``
            or a mixed-radix value ``>= N**m`` (the message names the record).
        """
        buf = _writable_bytes(payload)
        n = check_int(n_records, "n_records", minimum=0)
        expected = self.nbytes(n)
        if buf.size != expected:
            kind = "truncated" if buf.size < expected else "too long"
            raise ValueError(
                f"packed data is {kind}: {n} records of {self.record_bits} bits need {expected} bytes, got {buf.size}"
            )
        start = check_int(start, "start", minimum=0, maximum=n)
        count = n - start if count is None else check_int(count, "count", minimum=0, maximum=n - start)
        pad = expected * 8 - n * self.record_bits
        if pad and (int(buf[-1]) >> (8 - pad)) != 0:
            raise ValueError("packed data is corrupt: the padding bits after the last record are not zero")
        header = np.zeros(count, dtype=np.int64)
        idx = np.zeros((count, self.n_blocks), dtype=np.int64)
        if count == 0:
            return header, idx
        if self.mode == "fixed":
            bad = _unpack_fixed(buf, start, self.header_bits, self.index_bits, self.n_codewords, self.n_blocks, header, idx)
            what = f"an index >= N = {self.n_codewords}"
        else:
            bad = _unpack_mixed(
                buf, start, self.header_bits, self.n_codewords, self.payload_bits, self._limbs, self.n_blocks, header, idx
            )
            what = f"a mixed-radix value >= N**m = {self.n_codewords}**{self.n_blocks}"
        if bad >= 0:
            raise ValueError(f"packed data is corrupt: record {int(bad)} holds {what}")
        return header, idx


def pack_indices(indices: object, n_codewords: int, mode: str = "fixed") -> np.ndarray:
    """Pack indices of shape ``(n, m)`` (no header); see :class:`RecordLayout`.

    Parameters
    ----------
    indices : array_like of int
        Shape ``(n, m)``, every value in ``[0, n_codewords)``.
    n_codewords : int
        Codebook size ``N >= 2``.
    mode : {"fixed", "mixed-radix"}, default "fixed"
        Payload mode (see the module docstring).

    Returns
    -------
    numpy.ndarray
        1-D uint8 stream of ``ceil(n * payload_bits / 8)`` bytes.
    """
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices must have shape (n, m), got {idx.shape}")
    return RecordLayout(n_codewords, idx.shape[1], 0, mode).pack(None, idx)


def unpack_indices(
    payload: object, n_records: int, n_blocks: int, n_codewords: int, mode: str = "fixed", start: int = 0, count: int | None = None
) -> np.ndarray:
    """Inverse of :func:`pack_indices`: indices of records ``start .. start+count-1``, shape ``(count, m)``.

    Parameters
    ----------
    payload : array_like of uint8
        A stream written by :func:`pack_indices`.
    n_records : int
        Records in the stream.
    n_blocks : int
        Indices per record ``m``.
    n_codewords : int
        Codebook size ``N``.
    mode : {"fixed", "mixed-radix"}, default "fixed"
        Payload mode of the stream.
    start : int, default 0
        First record to read.
    count : int, optional
        Records to read (default: all from ``start``).

    Returns
    -------
    numpy.ndarray
        The indices, shape ``(count, m)``.
    """
    return RecordLayout(n_codewords, n_blocks, 0, mode).unpack(payload, n_records, start, count)[1]
