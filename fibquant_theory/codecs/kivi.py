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
from dataclasses import dataclass
from typing import Any

import numpy as np

from fibquant_theory._validation import as_vectors, check_int
from fibquant_theory.numerics.fixed_order import row_dots
from fibquant_theory.codecs.packing import pack_indices, unpack_indices

__all__ = ["KIVI_MODES", "KIVICodec", "KIVICodes"]

#: Grouping modes of :class:`KIVICodec`.
KIVI_MODES = ("per-token", "per-channel")

_META = {"float16": np.float16, "float32": np.float32}


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


class KIVICodec:
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

    def __init__(
        self, d: int, bits: int, seed: int = 0, *, mode: str = "per-token", group_size: int = 32, meta_dtype: str = "float16"
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
    def rate_bits(self) -> float:
        """Bits per coordinate of the integers (metadata not counted)."""
        return float(self.bits)

    @property
    def bits_per_vector(self) -> float:
        """Storage per vector in bits, metadata included (amortised over a full group in per-channel mode)."""
        meta = 2 * 8 * np.dtype(_META[self.meta_dtype]).itemsize
        per = meta if self.mode == "per-token" else meta * self.d / self.group_size
        return float(self.d * self.bits + per)

    @property
    def compression_ratio(self) -> float:
        """``16 d / bits_per_vector``."""
        return 16.0 * self.d / self.bits_per_vector

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
        """Encode ``(..., d)`` (per-channel: ``(..., T, d)``, groups along ``T``)."""
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
        if (codes.bits, codes.d, codes.mode, codes.group_size) != (self.bits, self.d, self.mode, self.group_size):
            raise ValueError("codes were made by a KIVI codec with different bits, d, mode or group_size")
        if self.mode == "per-token":
            meta_shape = codes.shape
        else:
            meta_shape = codes.shape[:-1] + (math.ceil(codes.shape[-1] / self.group_size), self.d)
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
        """Reconstruct ``codes.shape + (d,)``."""
        codes = self._check(codes)
        q = self._integers(codes).reshape(codes.shape + (self.d,)).astype(np.float64)
        if self.mode == "per-token":
            out = q * codes.scale.astype(np.float64)[..., None] + codes.zero.astype(np.float64)[..., None]
        else:
            t = codes.shape[-1]
            out = q * self._expand(codes.scale, t) + self._expand(codes.zero, t)
        return out.astype(dtype, copy=False)

    def decode_row(self, codes: KIVICodes, i: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """Decode vector ``i`` (flat row-major index or tuple) alone, shape ``(d,)``."""
        codes = self._check(codes)
        n = codes.n_vectors
        if n == 0:
            raise ValueError("decode_row on empty codes: there is no vector to decode")
        flat = (
            int(np.ravel_multi_index(tuple(int(a) for a in i), codes.shape))
            if isinstance(i, tuple)
            else check_int(i, "index", minimum=-n, maximum=n - 1) % n
        )
        q = self._integers(codes, flat, 1)[0].astype(np.float64)
        pos = np.unravel_index(flat, codes.shape)
        if self.mode == "per-token":
            s, z = float(codes.scale[pos]), float(codes.zero[pos])
        else:
            g = pos[:-1] + (pos[-1] // self.group_size,)
            s, z = codes.scale[g].astype(np.float64), codes.zero[g].astype(np.float64)
        return (q * s + z).astype(dtype, copy=False)

    def inner_product(self, q: object, codes: KIVICodes) -> np.ndarray:
        r"""Estimate :math:`\langle q, x\rangle` from the integers: :math:`s\langle q, c\rangle + z\sum_j q_j` per token
        (per channel: :math:`\langle q\odot s, c\rangle + \langle q, z\rangle`); ``q`` of shape ``(d,)`` or
        ``(..., d)`` broadcast against ``codes.shape``."""
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
