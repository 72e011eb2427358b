r"""KIVI-style uniform integer baseline (Liu et al., ICML 2024): asymmetric ``bits``-bit quantization.

Each value is stored as :math:`q = \mathrm{clip}(\mathrm{round}((x - z)/s), 0, 2^b - 1)`
and reconstructed as :math:`\hat x = q s + z`, where the zero point :math:`z`
(the minimum) and the step :math:`s = (\max-\min)/(2^b-1)` are stored in
``float16`` (or ``float32``) and are shared

* ``mode="per-token"``: by the ``d`` coordinates of one vector (KIVI's value
  cache); every vector costs exactly :math:`bd + 2\cdot16` bits, and a zero
  vector decodes to exact zeros;
* ``mode="per-channel"``: by ``group_size`` consecutive vectors along the token
  axis (axis ``-2``) in each channel (KIVI's key cache); the metadata costs
  :math:`2\cdot16\cdot d` bits per group, i.e. :math:`32d/G` bits per vector on
  average (the last group of a sequence may be shorter). A zero vector inside
  a group of non-zero vectors decodes to the nearest grid point of every
  channel, not to exact zeros.

No rotation is used (KIVI has none). The integers are bit-packed with
:func:`~fibquant_theory.codecs.packing.pack_indices` (``bits`` bits each), so vector
``i`` starts at bit ``i * d * bits`` of the integer stream.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fibquant_theory._validation import as_vectors, check_int
from fibquant_theory.codecs.base import (
    RateAccounting,
    check_same_codec,
    flat_index,
    frame,
    integer_bits,
    take_positions,
    unframe,
)
from fibquant_theory.codecs.packing import pack_indices, unpack_indices
from fibquant_theory.numerics.fixed_order import row_dots

__all__ = ["DEFAULT_GROUP_SIZE", "KIVI_MODES", "KIVICodec", "KIVICodes", "kivi_kv_roles", "make_kivi"]

#: Grouping modes of :class:`KIVICodec`.
KIVI_MODES = ("per-token", "per-channel")

_META = {"float16": np.float16, "float32": np.float32}
#: Tokens per group of per-channel codes unless told otherwise.
DEFAULT_GROUP_SIZE = 32
_MAGIC = b"KIVICDS1"
_FIELDS = ("shape", "d", "bits", "mode", "group_size", "meta_dtype")


def _meta_shape(shape: tuple[int, ...], d: int, mode: str, group_size: int) -> tuple[int, ...]:
    """Shape of the steps and zero points of codes of leading ``shape``."""
    if mode == "per-token":
        return shape
    return shape[:-1] + (math.ceil(shape[-1] / group_size), d)


@dataclass(frozen=True, eq=False)
class KIVICodes:
    """Codes of :class:`KIVICodec`.

    Attributes
    ----------
    payload : numpy.ndarray
        Bit-packed integers, 1-D uint8, ``bits`` bits per coordinate, row-major.
    shape : tuple of int
        Leading shape of the encoded array.
    scale, zero : numpy.ndarray
        Steps and zero points in the metadata dtype: shape ``shape`` for
        per-token codes, ``shape[:-1] + (n_groups, d)`` for per-channel codes.
    bits : int
        Bits per coordinate.
    d : int
        Dimension.
    mode : str
        ``"per-token"`` or ``"per-channel"``.
    group_size : int
        Tokens per group (per-channel mode).
    """

    payload: np.ndarray
    shape: tuple[int, ...]
    scale: np.ndarray
    zero: np.ndarray
    bits: int
    d: int
    mode: str
    group_size: int

    @property
    def n_vectors(self) -> int:
        """Number of encoded vectors."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed integers and the metadata."""
        return int(self.payload.size + self.scale.nbytes + self.zero.nbytes)

    def to_bytes(self) -> bytes:
        """Serialise: magic ``KIVICDS1``, header, payload, CRC-32 (:func:`~fibquant_theory.codecs.base.frame`).

        The payload is the packed integers, then the steps and the zero points
        (little-endian, in their metadata dtype): :attr:`nbytes` bytes.

        Returns
        -------
        bytes
            The serialised codes.
        """
        meta = str(np.dtype(self.scale.dtype))
        little = np.dtype(self.scale.dtype).newbyteorder("<")
        parts = [np.asarray(self.payload, dtype=np.uint8).tobytes()]
        parts += [np.ascontiguousarray(a, dtype=little).tobytes() for a in (self.scale, self.zero)]
        payload = b"".join(parts)
        header = {
            "format": 1, "shape": list(self.shape), "d": int(self.d), "bits": int(self.bits), "mode": self.mode,
            "group_size": int(self.group_size), "meta_dtype": meta, "payload_bytes": len(payload),
        }
        return frame(_MAGIC, header, payload)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> KIVICodes:
        """Inverse of :meth:`to_bytes`; see :meth:`fibquant_theory.codecs.base.Codes.from_bytes`.

        Metadata that is not finite or has a negative step is a ``ValueError`` too.

        Parameters
        ----------
        data : bytes-like
            A blob written by :meth:`to_bytes`.

        Returns
        -------
        KIVICodes
            The codes it holds.
        """
        label = "KIVI codes"
        header, payload = unframe(data, _MAGIC, label, version=1, fields=_FIELDS, int_fields=("d", "bits", "group_size"))
        try:
            d = check_int(header["d"], "d", minimum=2)
            bits = check_int(header["bits"], "bits", minimum=1, maximum=8)
            group = check_int(header["group_size"], "group_size", minimum=1)
            mode, meta = header["mode"], header["meta_dtype"]
            if mode not in KIVI_MODES or meta not in _META:
                raise ValueError(f"mode must be one of {KIVI_MODES} and meta_dtype one of {sorted(_META)}, got {mode!r}, {meta!r}")
            shape = tuple(check_int(v, "shape entry", minimum=0) for v in header["shape"])
            if mode == "per-channel" and not shape:
                raise ValueError("per-channel codes need a token axis")
            n, meta_shape = math.prod(shape), _meta_shape(shape, d, mode, group)
            packed, item = -(-n * d * bits // 8), np.dtype(_META[meta]).itemsize
            n_meta = math.prod(meta_shape)
            if len(payload) != packed + 2 * n_meta * item:
                raise ValueError(f"{n} vectors need {packed + 2 * n_meta * item} payload bytes, got {len(payload)}")
            little = np.dtype(_META[meta]).newbyteorder("<")
            scale, zero = (
                np.frombuffer(payload, dtype=little, count=n_meta, offset=packed + j * n_meta * item)
                .astype(_META[meta]).reshape(meta_shape)
                for j in (0, 1)
            )
            if not (np.isfinite(scale).all() and np.isfinite(zero).all()) or (scale < 0).any():
                raise ValueError("the metadata is corrupt (non-finite or negative step)")
            body = np.frombuffer(payload, dtype=np.uint8, count=packed).copy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label} have an invalid header: {exc}") from exc
        return cls(body, shape, scale, zero, bits, d, mode, group)


class KIVICodec(RateAccounting):
    """KIVI-style per-token / per-channel asymmetric uniform integer quantizer.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Bits per coordinate, ``1 <= bits <= 8``.
    seed : int
        Unused (KIVI is deterministic); accepted so that every method has the
        same factory signature.
    mode : {"per-token", "per-channel"}
        Which values share a step and zero point (see the module docstring).
    group_size : int
        Tokens per group in per-channel mode.
    meta_dtype : {"float16", "float32"}
        Storage of the steps and zero points.

    Examples
    --------
    >>> import numpy as np
    >>> kv = KIVICodec(64, 2)
    >>> x = np.random.default_rng(0).standard_normal((4, 64))
    >>> kv.decode(kv.encode(x)).shape
    (4, 64)
    >>> kv.bits_per_vector, kv.compression_ratio
    (160.0, 6.4)
    """

    name = "kivi"
    codes_type: ClassVar[type] = KIVICodes

    def __init__(
        self, d: int, bits: int, seed: int = 0, *, mode: str = "per-token", group_size: int = DEFAULT_GROUP_SIZE, meta_dtype: str = "float16"
    ) -> None:
        self.d = check_int(d, "d (dimension)", minimum=2)
        self.bits = check_int(bits, "bits", minimum=1, maximum=8)
        self.seed = check_int(seed, "seed", minimum=0)
        if mode not in KIVI_MODES:
            raise ValueError(f"mode must be one of {KIVI_MODES}, got {mode!r}")
        if meta_dtype not in _META:
            raise ValueError(f"meta_dtype must be one of {sorted(_META)}, got {meta_dtype!r}")
        self.mode = mode
        self.group_size = check_int(group_size, "group_size", minimum=1)
        self.meta_dtype = meta_dtype
        self.levels = (1 << self.bits) - 1

    def __repr__(self) -> str:
        return f"KIVICodec(d={self.d}, bits={self.bits}, mode={self.mode!r}, group_size={self.group_size})"

    @property
    def index_bits_per_vector(self) -> int:
        """Bits of the integers of one vector, ``d * bits``."""
        return self.d * self.bits

    @property
    def side_bits_per_vector(self) -> float:
        """Bits of the step and zero point per vector (amortised over a full group in per-channel mode).

        A float, so that :attr:`bits_per_vector` is one in both modes.
        """
        meta = 2 * 8 * np.dtype(_META[self.meta_dtype]).itemsize
        return float(meta if self.mode == "per-token" else meta * self.d / self.group_size)

    # ------------------------------------------------------------------ helpers
    def _meta(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dt = _META[self.meta_dtype]
        with np.errstate(over="ignore"):
            zero = lo.astype(dt)
            scale = ((hi - lo) / self.levels).astype(dt)
        if not (np.isfinite(zero).all() and np.isfinite(scale).all()):
            raise ValueError(f"values overflow the {self.meta_dtype} step/zero point; use meta_dtype='float32'")
        return scale, zero

    def _starts(self, t: int) -> np.ndarray:
        return np.arange(0, t, self.group_size)

    def _expand(self, meta: np.ndarray, t: int) -> np.ndarray:
        """Per-group metadata ``(..., G, d)`` repeated to every token ``(..., T, d)``."""
        return np.repeat(meta.astype(np.float64), self.group_size, axis=-2)[..., :t, :]

    # ------------------------------------------------------------------ codec
    def encode(self, x: object) -> KIVICodes:
        """Encode ``(..., d)`` (per-channel: ``(..., T, d)``, groups along ``T``).

        Parameters
        ----------
        x : array_like
            Vectors, shape ``(..., d)``; per-channel mode: ``(..., T, d)``, grouped along ``T``.

        Returns
        -------
        KIVICodes
            The packed integers and their per-group step and zero point.
        """
        x = as_vectors(x, self.d)
        if self.mode == "per-token":
            if x.size:
                lo, hi = x.min(axis=-1), x.max(axis=-1)
            else:
                lo = hi = np.zeros(x.shape[:-1])
            scale, zero = self._meta(lo, hi)
            s, z = scale.astype(np.float64)[..., None], zero.astype(np.float64)[..., None]
        else:
            if x.ndim < 2:
                raise ValueError(f"per-channel KIVI needs x of shape (..., tokens, {self.d}), got {x.shape}")
            t = x.shape[-2]
            if t == 0:
                lo = hi = np.zeros(x.shape[:-2] + (0, self.d))
            else:
                lo = np.minimum.reduceat(x, self._starts(t), axis=-2)
                hi = np.maximum.reduceat(x, self._starts(t), axis=-2)
            scale, zero = self._meta(lo, hi)
            s, z = self._expand(scale, t), self._expand(zero, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(s > 0, np.rint((x - z) / np.where(s > 0, s, 1.0)), 0.0)
        q = np.clip(q, 0, self.levels).astype(np.int64)
        payload = pack_indices(q.reshape(-1, self.d), 1 << self.bits) if q.size else np.zeros(0, np.uint8)
        return KIVICodes(payload, x.shape[:-1], scale, zero, self.bits, self.d, self.mode, self.group_size)

    def _check(self, codes: object) -> KIVICodes:
        if not isinstance(codes, KIVICodes):
            raise TypeError(f"expected KIVICodes, got {type(codes).__name__}")
        names = ("bits", "d", "mode", "group_size")
        check_same_codec(names, (self.bits, self.d, self.mode, self.group_size), tuple(getattr(codes, n) for n in names))
        meta_shape = _meta_shape(tuple(codes.shape), self.d, self.mode, self.group_size)
        if codes.scale.shape != meta_shape or codes.zero.shape != meta_shape:
            raise ValueError(f"codes metadata must have shape {meta_shape}, got {codes.scale.shape} and {codes.zero.shape}")
        if not (np.isfinite(codes.scale).all() and np.isfinite(codes.zero).all()) or (codes.scale < 0).any():
            raise ValueError("codes metadata is corrupt (non-finite or negative step)")
        return codes

    def _integers(self, codes: KIVICodes, start: int = 0, count: int | None = None) -> np.ndarray:
        n = codes.n_vectors
        if n == 0:
            return np.zeros((0, self.d), dtype=np.int64)
        return unpack_indices(codes.payload, n, self.d, 1 << self.bits, "fixed", start, count)

    def decode(self, codes: KIVICodes, dtype: Any = np.float64) -> np.ndarray:
        """Reconstruct ``codes.shape + (d,)``.

        Parameters
        ----------
        codes : KIVICodes
            Codes made by this codec.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``.
        """
        codes = self._check(codes)
        q = self._integers(codes).reshape(codes.shape + (self.d,)).astype(np.float64)
        if self.mode == "per-token":
            out = q * codes.scale.astype(np.float64)[..., None] + codes.zero.astype(np.float64)[..., None]
        else:
            t = codes.shape[-1]
            out = q * self._expand(codes.scale, t) + self._expand(codes.zero, t)
        return out.astype(dtype, copy=False)

    def decode_row(self, codes: KIVICodes, i: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """Decode vector ``i`` (flat row-major index or tuple) alone, shape ``(d,)``.

        Parameters
        ----------
        codes : KIVICodes
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
        flat = flat_index(tuple(codes.shape), i)
        q = self._integers(codes, flat, 1)[0].astype(np.float64)
        pos = np.unravel_index(flat, codes.shape)
        if self.mode == "per-token":
            s, z = float(codes.scale[pos]), float(codes.zero[pos])
        else:
            g = pos[:-1] + (pos[-1] // self.group_size,)
            s, z = codes.scale[g].astype(np.float64), codes.zero[g].astype(np.float64)
        return (q * s + z).astype(dtype, copy=False)

    def take(self, codes: KIVICodes, index: object, axis: int = 0) -> KIVICodes:
        """The codes of positions ``index`` along axis ``axis``, exactly; see :meth:`fibquant_theory.codecs.base.Codec.take`.

        The integers are unpacked and packed again and the metadata indexed;
        nothing is decoded. For per-channel codes along their last (token)
        axis, only a prefix ``arange(n)`` is supported: the metadata of a
        token group cannot be split.

        Parameters
        ----------
        codes : KIVICodes
            Codes made by this codec.
        index : array_like of int
            Positions along ``axis``.
        axis : int, default 0
            Axis of ``codes.shape``.

        Returns
        -------
        KIVICodes
            The codes at those positions.
        """
        codes = self._check(codes)
        shape = tuple(codes.shape)
        idx, ax = take_positions(shape, index, axis)
        d, radix = codes.d, 1 << codes.bits
        q = np.take(self._integers(codes).reshape(shape + (d,)), idx, axis=ax)
        if codes.mode == "per-token" or ax < len(shape) - 1:
            scale, zero = np.take(codes.scale, idx, axis=ax), np.take(codes.zero, idx, axis=ax)
        else:
            if not np.array_equal(idx, np.arange(idx.size)):
                raise ValueError("per-channel KIVI codes can keep only a prefix of their tokens (groups share metadata)")
            groups = -(-idx.size // codes.group_size)
            scale, zero = codes.scale[..., :groups, :].copy(), codes.zero[..., :groups, :].copy()
        payload = pack_indices(q.reshape(-1, d), radix) if q.size else np.zeros(0, np.uint8)
        return KIVICodes(payload, q.shape[:-1], scale, zero, codes.bits, d, codes.mode, codes.group_size)

    def inner_product(self, q: object, codes: KIVICodes) -> np.ndarray:
        r"""Estimate :math:`\langle q, x\rangle` from the integers: :math:`s\langle q, c\rangle + z\sum_j q_j` per token
        (per channel: :math:`\langle q\odot s, c\rangle + \langle q, z\rangle`); ``q`` of shape ``(d,)`` or
        ``(..., d)`` broadcast against ``codes.shape``.

        Parameters
        ----------
        q : array_like
            Queries, shape ``(d,)`` or ``(..., d)``.
        codes : KIVICodes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            The estimates, of the broadcast leading shape, float64.
        """
        codes = self._check(codes)
        q = as_vectors(q, self.d, "q")
        c = self._integers(codes).reshape(codes.shape + (self.d,)).astype(np.float64)
        if self.mode == "per-token":
            s = codes.scale.astype(np.float64)
            z = codes.zero.astype(np.float64)
            return s * row_dots(q, c) + z * row_dots(q, np.ones(self.d))
        t = codes.shape[-1]
        s, z = self._expand(codes.scale, t), self._expand(codes.zero, t)
        return row_dots(q * s, c) + row_dots(q, z)


# ----------------------------------------------------------------------------- factory and KV roles
def make_kivi(
    d: int,
    *,
    bits: int | None = None,
    seed: int = 0,
    mode: str = "per-token",
    group_size: int = DEFAULT_GROUP_SIZE,
    meta_dtype: str = "float16",
) -> KIVICodec:
    """KIVI-style uniform integer quantization: ``KIVICodec(d, bits, seed, mode=..., ...)``.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Bits per coordinate, an integer 1..8 (required).
    seed : int
        Unused (KIVI is deterministic).
    mode : {"per-token", "per-channel"}
        Which values share a step and zero point.
    group_size : int
        Tokens per group in per-channel mode.
    meta_dtype : {"float16", "float32"}
        Storage of the steps and zero points.

    Returns
    -------
    KIVICodec
        The codec.
    """
    return KIVICodec(d, integer_bits("kivi", bits), seed, mode=mode, group_size=group_size, meta_dtype=meta_dtype)


def kivi_kv_roles(key: dict[str, Any], value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
    """KIVI in a KV cache: per-channel keys in groups of ``group_size`` tokens, per-token values.

    Parameters
    ----------
    key, value : dict
        :func:`make_kivi` options of the key and the value codec (without
        ``mode``; ``group_size`` applies to the keys).

    Returns
    -------
    key, value : dict
        The options with their ``mode`` (``group_size`` only for the keys).
    chunk : int
        Tokens are encoded in multiples of ``group_size``: keys leave the fp16
        window in whole per-channel groups.

    Raises
    ------
    TypeError
        A ``group_size`` that is not an integer.
    ValueError
        A ``group_size < 1``.
    """
    group = key.get("group_size", DEFAULT_GROUP_SIZE)
    if isinstance(group, bool) or not isinstance(group, numbers.Integral):
        raise TypeError(f"group_size must be an integer, got {group!r}")
    if group < 1:
        raise ValueError(f"group_size must be >= 1, got {group}")
    key = {**key, "mode": "per-channel", "group_size": int(group)}
    value = {**{k: v for k, v in value.items() if k != "group_size"}, "mode": "per-token"}
    return key, value, int(group)
