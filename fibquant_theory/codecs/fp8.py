r"""FP8 (e4m3) round-trip baseline: per-vector scale and one e4m3 byte per coordinate.

Each vector :math:`x \in \mathbb{R}^d` (one head's key or value of one token)
is stored as a scale :math:`s` and ``d`` bytes of e4m3 codes of :math:`x/s`,
and reconstructed as :math:`\hat x_i = \mathrm{e4m3}(x_i/s)\,s`:

* the scale is the smallest ``float16`` (or ``float32``, ``scale_dtype``) value
  :math:`s \ge \max_i |x_i| / 448`, so no coordinate saturates: every
  :math:`|x_i/s| \le 448`, the largest finite e4m3 value;
* the e4m3 format is ``torch.float8_e4m3fn``'s: 1 sign bit, 4 exponent bits
  (bias 7), 3 mantissa bits, subnormals, no infinity, ``0x7F``/``0xFF`` are
  NaN (never stored), largest finite value :math:`448 = 1.75 \cdot 2^8`;
* rounding is to nearest, ties to even, computed here in numpy (torch is not
  needed): :func:`e4m3_encode` rounds a float64 once, directly onto the e4m3
  grid. It gives the bytes of torch's cast ``x.to(torch.float8_e4m3fn)`` on
  float32 input (``tests/codecs/test_fp8.py`` checks every float16 value,
  every tie and random float32 bit patterns against torch 2.13;
  out-of-range values saturate to :math:`\pm 448` as torch's cast does).
  torch casts a float64 through float32, so on float64 inputs within about
  :math:`2^{-24}` relative of a tie the two can differ by one step (torch
  rounds twice, this module once);
* the error of a coordinate is at most half an e4m3 step of :math:`x_i/s`
  times :math:`s`: :math:`2^{\lfloor\log_2|x_i/s|\rfloor-4} s` for
  :math:`|x_i/s| \ge 2^{-6}` (relative error :math:`\le 2^{-4}`), and
  :math:`2^{-10} s` below (the subnormal step is :math:`2^{-9}`).

Guards: an all-zero vector stores :math:`s = 0` and decodes to exact zeros.
The scale is rounded up, so it never underflows to 0 for a non-zero vector (a
tiny vector gets the smallest positive scale, :math:`2^{-24}` in ``float16``);
coordinates with :math:`|x_i/s| \le 2^{-10}` decode to (signed) zeros, so a
vector with :math:`\max|x_i| \le 2^{-34}` decodes to exact zeros in
``float16``. NaN or Inf input is a ``ValueError``, and so is a vector
whose scale :math:`\max|x_i|/448` overflows the scale dtype (for ``float16``:
:math:`\max|x_i| > 448 \cdot 65504 \approx 2.9\cdot 10^7`).

Storage: :math:`8d` bits of codes plus the scale (16 bits in ``float16``), i.e.
``bits_per_vector = 8 d + 16`` and a compression of :math:`16d/(8d+16)` over
fp16 (1.78 at ``d = 16``, 1.88 at ``d = 32``, 1.94 at ``d = 64``). There is no
rate option: the rate is 8 bits per coordinate. The codes are not bit-packed:
vector ``i`` is bytes ``i*d .. (i+1)*d`` of the payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fibquant_theory._validation import as_vectors, check_int
from fibquant_theory.codecs.base import RateAccounting, check_same_codec, flat_index, frame, take_positions, unframe
from fibquant_theory.numerics.fixed_order import row_dots

__all__ = ["E4M3_MAX", "E4M3_VALUES", "FP8Codec", "FP8Codes", "SCALE_DTYPES", "e4m3_decode", "e4m3_encode", "make_fp8"]

#: Largest finite e4m3fn value, :math:`1.75 \cdot 2^8`.
E4M3_MAX = 448.0
#: Storage formats of the per-vector scale.
SCALE_DTYPES = {"float16": np.float16, "float32": np.float32}

_MAGIC = b"FP8CODE1"
_FIELDS = ("shape", "d", "scale_dtype")
#: Codes of NaN (the only e4m3fn bit patterns that are not finite numbers).
_NAN_CODES = (0x7F, 0xFF)


def _table() -> np.ndarray:
    """The value of every byte ``0..255`` as an e4m3fn number, float64 (NaN at ``0x7F`` and ``0xFF``)."""
    codes = np.arange(256)
    exp, mant = (codes >> 3) & 0xF, codes & 0x7
    mag = np.where(exp == 0, mant * 2.0**-9, (1.0 + mant / 8.0) * np.exp2(exp - 7.0))
    values = np.where(codes & 0x80, -mag, mag)
    values[list(_NAN_CODES)] = np.nan
    values.setflags(write=False)
    return values


#: Value of every e4m3fn byte, shape ``(256,)`` float64; NaN at ``0x7F`` and ``0xFF``.
E4M3_VALUES = _table()


def e4m3_encode(y: object) -> np.ndarray:
    """Round to nearest e4m3fn value (ties to even) and return its byte code.

    Parameters
    ----------
    y : array_like
        Real numbers, any shape (converted to float64). Magnitudes above 448
        (``inf`` included) saturate to :math:`\\pm 448` (code ``0x7E``/``0xFE``),
        as ``torch.Tensor.to(torch.float8_e4m3fn)`` does; ``-0.0`` and
        negative numbers that round to zero give ``0x80`` (negative zero).

    Returns
    -------
    numpy.ndarray
        Same shape, uint8: bit 7 the sign, bits 6..3 the biased exponent,
        bits 2..0 the mantissa.

    Raises
    ------
    ValueError
        If ``y`` holds NaN.
    """
    y = np.asarray(y, dtype=np.float64)
    if np.isnan(y).any():
        raise ValueError("e4m3_encode: the input holds NaN")
    a = np.minimum(np.abs(y), E4M3_MAX)
    _, e2 = np.frexp(a)  # a = m * 2**e2 with 0.5 <= m < 1, so floor(log2 a) = e2 - 1
    exponent = np.clip(e2 - 1, -6, 8)  # below 2**-6 the step is the subnormal one, 2**-9
    k = np.rint(np.ldexp(a, 3 - exponent))  # a / step, exact; rint rounds half to even
    # k in 0..16: k < 8 only in the subnormal range; k == 16 is the next binade's mantissa 0
    over = k >= 16
    exponent, k = np.where(over, exponent + 1, exponent), np.where(over, k / 2, k)
    normal = k >= 8
    field = np.where(normal, exponent + 7, 0)
    mant = np.where(normal, k - 8, k)
    code = (field.astype(np.int64) << 3) | mant.astype(np.int64)
    return (code | np.where(np.signbit(y), 0x80, 0)).astype(np.uint8)


def e4m3_decode(codes: object) -> np.ndarray:
    """The e4m3fn values of byte codes (:data:`E4M3_VALUES`), float64, same shape; NaN codes give NaN.

    Parameters
    ----------
    codes : array_like of uint8
        Byte codes, any shape.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``codes``.
    """
    return E4M3_VALUES[np.asarray(codes, dtype=np.uint8)]


@dataclass(frozen=True, eq=False)
class FP8Codes:
    """Codes of :class:`FP8Codec`.

    Attributes
    ----------
    payload : numpy.ndarray
        e4m3 byte codes, uint8, shape ``shape + (d,)``.
    scale : numpy.ndarray
        Per-vector scales in the scale dtype, shape ``shape``.
    d : int
        Dimension.
    """

    payload: np.ndarray
    scale: np.ndarray
    d: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape ``S`` of the encoded array."""
        return tuple(self.scale.shape)

    @property
    def n_vectors(self) -> int:
        """Number of encoded vectors."""
        return math.prod(self.shape)

    @property
    def scale_dtype(self) -> str:
        """Name of the scale dtype (``"float16"`` or ``"float32"``)."""
        return str(np.dtype(self.scale.dtype))

    @property
    def nbytes(self) -> int:
        """Bytes of the codes and the scales: ``n * (d + scale itemsize)``."""
        return int(self.payload.size + self.scale.nbytes)

    def to_bytes(self) -> bytes:
        """Serialise: magic ``FP8CODE1``, header, payload, CRC-32 (:func:`~fibquant_theory.codecs.base.frame`).

        The payload is the e4m3 bytes (row-major), then the scales
        (little-endian, in their dtype): :attr:`nbytes` bytes.

        Returns
        -------
        bytes
            The serialised codes.
        """
        little = np.dtype(self.scale.dtype).newbyteorder("<")
        payload = np.ascontiguousarray(self.payload, dtype=np.uint8).tobytes() + np.ascontiguousarray(
            self.scale, dtype=little
        ).tobytes()
        header = {
            "format": 1, "shape": list(self.shape), "d": int(self.d), "scale_dtype": self.scale_dtype,
            "payload_bytes": len(payload),
        }
        return frame(_MAGIC, header, payload)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> FP8Codes:
        """Inverse of :meth:`to_bytes`; see :meth:`fibquant_theory.codecs.base.Codes.from_bytes`.

        A NaN byte code (``0x7F``, ``0xFF``) or a scale that is negative or not
        finite is a ``ValueError`` too.

        Parameters
        ----------
        data : bytes-like
            A blob written by :meth:`to_bytes`.

        Returns
        -------
        FP8Codes
            The codes it holds.
        """
        label = "FP8 codes"
        header, payload = unframe(data, _MAGIC, label, version=1, fields=_FIELDS, int_fields=("d",))
        try:
            d = check_int(header["d"], "d", minimum=2)
            name = header["scale_dtype"]
            if name not in SCALE_DTYPES:
                raise ValueError(f"scale_dtype must be one of {sorted(SCALE_DTYPES)}, got {name!r}")
            shape = tuple(check_int(v, "shape entry", minimum=0) for v in header["shape"])
            n, item = math.prod(shape), np.dtype(SCALE_DTYPES[name]).itemsize
            if len(payload) != n * (d + item):
                raise ValueError(f"{n} vectors need {n * (d + item)} payload bytes, got {len(payload)}")
            body = np.frombuffer(payload, dtype=np.uint8, count=n * d).copy().reshape(shape + (d,))
            little = np.dtype(SCALE_DTYPES[name]).newbyteorder("<")
            scale = np.frombuffer(payload, dtype=little, count=n, offset=n * d).astype(SCALE_DTYPES[name])
            scale = scale.reshape(shape)
            _check_content(body, scale)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label} have an invalid header: {exc}") from exc
        return cls(body, scale, d)


def _check_content(payload: np.ndarray, scale: np.ndarray) -> None:
    """Raise ``ValueError`` for NaN byte codes or a negative / non-finite scale."""
    if np.isin(payload, _NAN_CODES).any():
        raise ValueError("the codes are corrupt (an e4m3 NaN code, 0x7F or 0xFF)")
    if not np.isfinite(scale).all() or (scale < 0).any():
        raise ValueError("the scales are corrupt (negative or not finite)")


class FP8Codec(RateAccounting):
    """FP8 (e4m3fn) codec: a per-vector scale and one e4m3 byte per coordinate (see the module docstring).

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    seed : int
        Unused (the codec is deterministic); accepted so that every method has
        the same factory signature.
    scale_dtype : {"float16", "float32"}
        Storage of the per-vector scale (16 or 32 bits of side information).

    Examples
    --------
    >>> import numpy as np
    >>> fp8 = FP8Codec(64)
    >>> x = np.random.default_rng(0).standard_normal((4, 64))
    >>> fp8.decode(fp8.encode(x)).shape
    (4, 64)
    >>> fp8.bits_per_vector, round(fp8.compression_ratio, 4)
    (528, 1.9394)
    """

    name = "fp8"
    codes_type: ClassVar[type] = FP8Codes

    def __init__(self, d: int, seed: int = 0, *, scale_dtype: str = "float16") -> None:
        self.d = check_int(d, "d (dimension)", minimum=2)
        self.seed = check_int(seed, "seed", minimum=0)
        if scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {sorted(SCALE_DTYPES)}, got {scale_dtype!r}")
        self.scale_dtype = scale_dtype

    def __repr__(self) -> str:
        return f"FP8Codec(d={self.d}, scale_dtype={self.scale_dtype!r})"

    @property
    def index_bits_per_vector(self) -> int:
        """Bits of the e4m3 codes of one vector, ``8 d``."""
        return 8 * self.d

    @property
    def side_bits_per_vector(self) -> int:
        """Bits of the scale of one vector (16 in ``float16``, 32 in ``float32``)."""
        return 8 * np.dtype(SCALE_DTYPES[self.scale_dtype]).itemsize

    # ------------------------------------------------------------------ helpers
    def _scales(self, amax: np.ndarray) -> np.ndarray:
        """The smallest scale-dtype value ``>= amax / 448`` for every vector (0 for a zero vector)."""
        dt = SCALE_DTYPES[self.scale_dtype]
        exact = amax / E4M3_MAX
        with np.errstate(over="ignore"):
            scale = exact.astype(dt)
            low = scale.astype(np.float64) < exact
            scale = np.where(low, np.nextafter(scale, dt(np.inf)), scale).astype(dt)
        if not np.isfinite(scale).all():
            worst = float(amax[~np.isfinite(scale)].max())
            raise ValueError(
                f"a vector of max |x_i| = {worst:.6g} needs a scale {worst / E4M3_MAX:.6g} beyond the "
                f"{self.scale_dtype} range; use scale_dtype='float32'"
            )
        return scale

    def _check(self, codes: object) -> FP8Codes:
        if not isinstance(codes, FP8Codes):
            raise TypeError(f"expected FP8Codes, got {type(codes).__name__}")
        check_same_codec(("d", "scale_dtype"), (self.d, self.scale_dtype), (codes.d, codes.scale_dtype))
        want, payload = codes.shape + (self.d,), codes.payload
        if payload.shape != want or payload.dtype != np.uint8:
            raise ValueError(f"codes payload must be uint8 of shape {want}, got {payload.dtype} {payload.shape}")
        _check_content(codes.payload, codes.scale)
        return codes

    # ------------------------------------------------------------------ codec
    def encode(self, x: object) -> FP8Codes:
        """Encode vectors ``(..., d)``: codes of leading shape ``x.shape[:-1]``.

        Parameters
        ----------
        x : array_like
            Real vectors, shape ``(..., d)``, finite.

        Returns
        -------
        FP8Codes
            The codes.

        Raises
        ------
        ValueError
            A wrong shape, NaN/Inf entries, or a scale beyond the scale dtype's range.
        """
        x = as_vectors(x, self.d)
        amax = np.asarray(np.abs(x).max(axis=-1) if x.size else np.zeros(x.shape[:-1]))
        scale = self._scales(amax)
        s = scale.astype(np.float64)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(s > 0, x / np.where(s > 0, s, 1.0), 0.0)
        return FP8Codes(e4m3_encode(y), scale, self.d)

    def decode(self, codes: FP8Codes, dtype: Any = np.float64) -> np.ndarray:
        """Reconstruct ``codes.shape + (d,)``: e4m3 value times the scale (exact in float64).

        Parameters
        ----------
        codes : FP8Codes
            Codes made by this codec.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``.
        """
        codes = self._check(codes)
        out = e4m3_decode(codes.payload) * codes.scale.astype(np.float64)[..., None]
        return out.astype(dtype, copy=False)

    def decode_row(self, codes: FP8Codes, i: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """Decode vector ``i`` (flat row-major index or tuple) alone, shape ``(d,)``.

        Parameters
        ----------
        codes : FP8Codes
            Codes made by this codec.
        i : int or tuple of int
            Flat (row-major) index into ``codes.shape``, or a tuple of indices.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``(d,)``, equal to the row ``i`` of :meth:`decode`.
        """
        codes = self._check(codes)
        flat = flat_index(codes.shape, i)
        row = codes.payload.reshape(-1, self.d)[flat]
        return (e4m3_decode(row) * float(codes.scale.reshape(-1)[flat])).astype(dtype, copy=False)

    def take(self, codes: FP8Codes, index: object, axis: int = 0) -> FP8Codes:
        """The codes of positions ``index`` along axis ``axis``, exactly (the bytes and scales are indexed).

        See :meth:`fibquant_theory.codecs.base.Codec.take`; nothing is decoded.

        Parameters
        ----------
        codes : FP8Codes
            Codes made by this codec.
        index : array_like of int
            Positions along ``axis``.
        axis : int, default 0
            Axis of ``codes.shape``.

        Returns
        -------
        FP8Codes
            The codes at those positions.
        """
        codes = self._check(codes)
        idx, ax = take_positions(codes.shape, index, axis)
        return FP8Codes(np.take(codes.payload, idx, axis=ax), np.take(codes.scale, idx, axis=ax), self.d)

    def inner_product(self, q: object, codes: FP8Codes) -> np.ndarray:
        r"""Estimate :math:`\langle q, x\rangle` as :math:`s\,\langle q, c\rangle` (``c`` the e4m3 values).

        ``q`` of shape ``(d,)`` or ``(..., d)`` broadcast against ``codes.shape``;
        returns the broadcast leading shape, float64. Equal to the inner product
        with :meth:`decode` up to float64 rounding.

        Parameters
        ----------
        q : array_like
            Queries, shape ``(d,)`` or ``(..., d)``.
        codes : FP8Codes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            The estimates, of the broadcast leading shape, float64.
        """
        codes = self._check(codes)
        q = as_vectors(q, self.d, "q")
        return codes.scale.astype(np.float64) * row_dots(q, e4m3_decode(codes.payload))


# ----------------------------------------------------------------------------- factory
def make_fp8(d: int, *, seed: int = 0, scale_dtype: str = "float16") -> FP8Codec:
    """FP8 (e4m3fn) round trip with a per-vector scale: ``FP8Codec(d, seed, scale_dtype=...)``.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    seed : int
        Unused (the codec is deterministic).
    scale_dtype : {"float16", "float32"}
        Storage of the per-vector scale.

    Returns
    -------
    FP8Codec
        The codec: ``bits_per_vector = 8 d + 16`` with a ``float16`` scale.
    """
    return FP8Codec(d, seed, scale_dtype=scale_dtype)
