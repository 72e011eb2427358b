r"""TurboQuant, the scalar baseline: rotate, quantize every coordinate with Lloyd–Max, store the norm.

* :class:`TurboQuantMSE` — ``bits`` per coordinate with the Lloyd–Max table of
  :math:`f_{d,1}` (:func:`~fibquant_theory.theory.scalar.lloyd_max_scalar`).
* :class:`TurboQuantProd` — a ``bits - 1``-bit MSE stage plus a 1-bit QJL sign
  sketch of the residual and the residual norm, which makes the inner-product
  estimate unbiased: for :math:`S` with i.i.d. :math:`N(0,1)` entries,
  :math:`E[\langle Sq, \mathrm{sign}(Sr)\rangle] = \sqrt{2/\pi}\, d\,\langle q, r\rangle/\|r\|`.

Both take arrays of shape ``(..., d)`` and return code objects that keep the
leading shape. Zero vectors round-trip to exact zeros. Norms are stored in the
header format they are counted in (``float16`` by default, like FibQuant's), and
the codes carry the dimension, bit width, seed and header format they were made
with: decoding them with another codec raises ``ValueError``. Every product is a
fixed-order row kernel (:mod:`~fibquant_theory.numerics.fixed_order`), so results do not
depend on the leading shape, the batch, or the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fibquant_theory._validation import as_vectors, check_bits, check_int
from fibquant_theory.codecs.fibquant import NORM_DTYPES, decode_norms, encode_norms
from fibquant_theory.numerics.fixed_order import matmul_rows, row_dots, row_norms
from fibquant_theory.numerics.rotation import DenseRotation
from fibquant_theory.theory.scalar import ScalarQuantizer, lloyd_max_scalar
from fibquant_theory.theory.source import standard_normal

__all__ = ["TurboQuantMSE", "TurboQuantProd", "ScalarCodes", "QJLCodes"]


def _header_array(bits: object, norm_dtype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Validate stored header bit patterns: integers of ``shape`` that decode to finite norms ``>= 0``."""
    arr = np.asarray(bits)
    if arr.shape != shape or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer header bit patterns of shape {shape}, got {arr.dtype} {arr.shape}")
    width = NORM_DTYPES[norm_dtype]
    if arr.size and (arr.min() < 0 or arr.max() >= 2**width):
        raise ValueError(f"{name} must be {width}-bit patterns")
    out = arr.astype(np.uint16 if width == 16 else np.uint32)
    decode_norms(out.reshape(-1).astype(np.int64), norm_dtype)  # raises on corrupt headers
    out.setflags(write=False)
    return out


def _check_fields(d: object, bits: object, seed: object, norm_dtype: object) -> tuple[int, int, int, str]:
    if norm_dtype not in NORM_DTYPES:
        raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
    return (
        check_int(d, "d (dimension)", minimum=2),
        check_int(bits, "bits", minimum=1, maximum=8),
        check_int(seed, "seed", minimum=0),
        str(norm_dtype),
    )


def _level_indices(indices: object, d: int, bits: int, name: str = "indices") -> np.ndarray:
    """Validate level indices: integers of shape ``(..., d)`` in ``[0, 2**bits)``; returned read-only uint8."""
    idx = np.asarray(indices)
    if idx.ndim == 0 or idx.shape[-1] != d or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be integers of shape (..., {d}), got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**bits):
        raise ValueError(f"{name} must lie in [0, {2**bits}) for {bits} bits, got range [{idx.min()}, {idx.max()}]")
    idx = idx.astype(np.uint8)
    idx.setflags(write=False)
    return idx


class _HeaderCodes:
    """The leading shape and the norms of codes that store ``norm_header`` bit patterns in ``norm_dtype``."""

    norm_header: np.ndarray
    norm_dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape of the encoded array."""
        return tuple(self.norm_header.shape)

    def _values(self, header: np.ndarray) -> np.ndarray:
        return decode_norms(header.reshape(-1).astype(np.int64), self.norm_dtype).reshape(self.shape)

    @property
    def norms(self) -> np.ndarray:
        """The stored norms as float64, shape ``(...)``."""
        return self._values(self.norm_header)


@dataclass(frozen=True, eq=False)
class ScalarCodes(_HeaderCodes):
    """Codes of :class:`TurboQuantMSE`.

    Attributes
    ----------
    indices : numpy.ndarray
        Level indices of the rotated unit direction, shape ``(..., d)``, uint8.
    norm_header : numpy.ndarray
        Bit patterns of the norms in ``norm_dtype``, shape ``(...)`` (uint16 or uint32).
    d, bits, seed : int
        Dimension, bits per coordinate and rotation seed of the codec that made them.
    norm_dtype : str
        Header format of the norms (a key of :data:`~fibquant_theory.codecs.fibquant.NORM_DTYPES`).
    """

    indices: np.ndarray
    norm_header: np.ndarray
    d: int
    bits: int
    seed: int
    norm_dtype: str = "float16"

    def __post_init__(self) -> None:
        d, bits, seed, norm_dtype = _check_fields(self.d, self.bits, self.seed, self.norm_dtype)
        idx = _level_indices(self.indices, d, bits)
        header = _header_array(self.norm_header, norm_dtype, idx.shape[:-1], "norm_header")
        for name, value in (("indices", idx), ("norm_header", header), ("d", d), ("bits", bits), ("seed", seed)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "norm_dtype", norm_dtype)

    def select(self, index: Any) -> ScalarCodes:
        """The codes of ``index`` (any NumPy index into the leading shape), exactly."""
        return ScalarCodes(self.indices[index], self.norm_header[index], self.d, self.bits, self.seed, self.norm_dtype)


@dataclass(frozen=True, eq=False)
class QJLCodes(_HeaderCodes):
    """Codes of :class:`TurboQuantProd`.

    Attributes
    ----------
    indices : numpy.ndarray or None
        MSE-stage level indices, shape ``(..., d)`` (``None`` when ``bits == 1``).
    signs : numpy.ndarray
        QJL signs of the residual, shape ``(..., d)``, int8 in ``{-1, +1}``.
    residual_header, norm_header : numpy.ndarray
        Bit patterns of the residual norms and of the norms in ``norm_dtype``, shape ``(...)``.
    d, bits, seed : int
        Dimension, total bits per coordinate and seed of the codec that made them.
    norm_dtype : str
        Header format of both norms.
    """

    indices: np.ndarray | None
    signs: np.ndarray
    residual_header: np.ndarray
    norm_header: np.ndarray
    d: int
    bits: int
    seed: int
    norm_dtype: str = "float16"

    def __post_init__(self) -> None:
        d, bits, seed, norm_dtype = _check_fields(self.d, self.bits, self.seed, self.norm_dtype)
        signs = np.asarray(self.signs)
        if signs.ndim == 0 or signs.shape[-1] != d or not np.issubdtype(signs.dtype, np.integer):
            raise ValueError(f"signs must be integers of shape (..., {d}), got {signs.dtype} {signs.shape}")
        if signs.size and not np.isin(signs, (-1, 1)).all():
            raise ValueError("signs must be -1 or +1")
        signs = signs.astype(np.int8)
        signs.setflags(write=False)
        idx = self.indices
        if (bits == 1) != (idx is None):
            raise ValueError(f"a {bits}-bit code has {'no' if bits == 1 else 'an'} MSE stage: indices must be "
                             f"{'None' if bits == 1 else 'given'}")
        shape = signs.shape[:-1]
        if idx is not None:
            idx = _level_indices(idx, d, bits - 1)
            if idx.shape[:-1] != shape:
                raise ValueError(f"indices have leading shape {idx.shape[:-1]}, signs {shape}")
        for name, value in (
            ("signs", signs),
            ("indices", idx),
            ("residual_header", _header_array(self.residual_header, norm_dtype, shape, "residual_header")),
            ("norm_header", _header_array(self.norm_header, norm_dtype, shape, "norm_header")),
            ("d", d),
            ("bits", bits),
            ("seed", seed),
            ("norm_dtype", norm_dtype),
        ):
            object.__setattr__(self, name, value)

    @property
    def residual_norms(self) -> np.ndarray:
        """The stored residual norms as float64, shape ``(...)``."""
        return self._values(self.residual_header)

    def select(self, index: Any) -> QJLCodes:
        """The codes of ``index`` (any NumPy index into the leading shape), exactly."""
        idx = None if self.indices is None else self.indices[index]
        return QJLCodes(
            idx, self.signs[index], self.residual_header[index], self.norm_header[index],
            self.d, self.bits, self.seed, self.norm_dtype,
        )


def _header(values: np.ndarray, norm_dtype: str) -> np.ndarray:
    """Header bit patterns of ``values`` (any shape), rounded to ``norm_dtype``; raises on overflow."""
    bits = encode_norms(values.reshape(-1), norm_dtype)
    return bits.astype(np.uint16 if NORM_DTYPES[norm_dtype] == 16 else np.uint32).reshape(values.shape)


class _TurboQuantBase:
    """What both TurboQuant variants share: the rotation, the rate, the norms and the storage accounting."""

    #: Norm headers per vector (1 for -mse; 2 for -prod: norm and residual norm).
    n_headers = 1
    name = "turboquant-base"

    def __init__(self, d: int, bits: int, seed: int = 0, *, norm_dtype: str = "float16") -> None:
        self.d = check_int(d, "d (dimension)", minimum=2)
        self.bits = check_bits(bits)
        self.seed = check_int(seed, "seed", minimum=0)
        if norm_dtype not in NORM_DTYPES:
            raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
        self.norm_dtype = norm_dtype
        self._rotation = DenseRotation(self.d, self.seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, bits={self.bits}, seed={self.seed}, norm_dtype={self.norm_dtype!r})"

    @property
    def rotation(self) -> np.ndarray:
        """The shared Haar rotation :math:`\\Pi` as a dense matrix, shape ``(d, d)`` (a copy)."""
        return self._rotation.matrix

    @property
    def norm_bits(self) -> int:
        """Bits of the norm header(s) counted by :attr:`bits_per_vector`."""
        return self.n_headers * NORM_DTYPES[self.norm_dtype]

    @property
    def rate_bits(self) -> float:
        """Bits per coordinate of the direction code (the norm headers are not counted)."""
        return float(self.bits)

    @property
    def bits_per_vector(self) -> int:
        """Storage of one vector in bits: ``d * bits`` + the norm header(s)."""
        return self.d * self.bits + self.norm_bits

    @property
    def compression_ratio(self) -> float:
        """``16 d / bits_per_vector``: fp16 size over code size (norms included)."""
        return 16.0 * self.d / self.bits_per_vector

    def _split(self, x: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated rows ``(n, d)``: header bits of the norms, and the rotated unit directions."""
        x = as_vectors(x, self.d)
        rows = x.reshape(-1, self.d)
        norms = row_norms(rows)  # no overflow for entries up to the float64 maximum
        header = _header(norms, self.norm_dtype)  # raises when a norm overflows the header format
        safe = np.where(norms > 0, norms, 1.0)
        return x.shape[:-1], header, self._rotation.forward(rows / safe[:, None])

    def _check_codes(self, codes: object, kind: type) -> Any:
        if not isinstance(codes, kind):
            raise TypeError(f"expected {kind.__name__} (codes of {type(self).__name__}), got {type(codes).__name__}")
        mine = (self.d, self.bits, self.seed, self.norm_dtype)
        theirs = (codes.d, codes.bits, codes.seed, codes.norm_dtype)
        if mine != theirs:
            names = ("d", "bits", "seed", "norm_dtype")
            diff = [f"{n}={b!r} (codec has {a!r})" for n, a, b in zip(names, mine, theirs) if a != b]
            raise ValueError("codes were made by a different codec: " + ", ".join(diff))
        return codes

    def _flat_index(self, codes: Any, i: int) -> int:
        n = math.prod(codes.shape)
        if n == 0:
            raise ValueError("decode_row on empty codes: there is no vector to decode")
        return check_int(i, "index", minimum=-n, maximum=n - 1) % n

    def _queries(self, q: object, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
        """Rotated queries broadcast against the codes' leading ``shape``: rows ``(n, d)`` and the output shape."""
        q = as_vectors(q, self.d, "q")
        try:
            out_shape = np.broadcast_shapes(q.shape[:-1], shape)
        except ValueError as exc:
            raise ValueError(f"queries of leading shape {q.shape[:-1]} do not broadcast against codes of shape {shape}") from exc
        qr = self._rotation.forward(q)
        return np.broadcast_to(qr, out_shape + (self.d,)).reshape(-1, self.d), out_shape


class TurboQuantMSE(_TurboQuantBase):
    """TurboQuant-mse: Haar rotation + per-coordinate Lloyd–Max + a norm.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Bits per coordinate, ``1 <= bits <= 8``.
    seed : int
        Seed of the shared rotation.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Format the norm is stored (and counted) in.

    Examples
    --------
    >>> import numpy as np
    >>> tq = TurboQuantMSE(64, 3, seed=0)
    >>> x = np.random.default_rng(1).standard_normal((5, 64))
    >>> tq.decode(tq.encode(x)).shape
    (5, 64)
    """

    name = "turboquant"

    def __init__(self, d: int, bits: int, seed: int = 0, *, norm_dtype: str = "float16") -> None:
        super().__init__(d, bits, seed, norm_dtype=norm_dtype)
        self.quantizer: ScalarQuantizer = lloyd_max_scalar(self.d, self.bits)

    def encode(self, x: object) -> ScalarCodes:
        """Encode vectors of shape ``(..., d)``; see :class:`ScalarCodes`.

        Raises ``ValueError`` for a wrong last dimension, NaN/Inf, or a norm
        that overflows the header format (use ``norm_dtype="float32"`` then).
        """
        lead, header, z = self._split(x)
        idx = self.quantizer.encode(z).reshape(lead + (self.d,))
        return ScalarCodes(idx, header.reshape(lead), self.d, self.bits, self.seed, self.norm_dtype)

    def decode(self, codes: ScalarCodes) -> np.ndarray:
        """Reconstruct vectors of shape ``(..., d)`` from :class:`ScalarCodes` made by this codec."""
        codes = self._check_codes(codes, ScalarCodes)
        z = self.quantizer.decode(codes.indices.reshape(-1, self.d))
        x = self._rotation.inverse(z) * codes.norms.reshape(-1)[:, None]
        return x.reshape(codes.shape + (self.d,))

    def decode_row(self, codes: ScalarCodes, i: int) -> np.ndarray:
        """Decode the vector with flat (row-major) index ``i`` alone, shape ``(d,)``; equals ``decode(codes).reshape(-1, d)[i]`` exactly."""
        codes = self._check_codes(codes, ScalarCodes)
        i = self._flat_index(codes, i)
        flat = ScalarCodes(codes.indices.reshape(-1, self.d), codes.norm_header.reshape(-1), self.d, self.bits, self.seed, self.norm_dtype)
        return self.decode(flat.select(slice(i, i + 1)))[0]

    def inner_product(self, q: object, codes: ScalarCodes) -> np.ndarray:
        """Estimate ``<q, x>`` from the codes, for ``q`` of shape ``(d,)`` or broadcastable ``(..., d)``.

        Computed in the rotated domain without reconstructing ``x``.
        """
        codes = self._check_codes(codes, ScalarCodes)
        qr, out_shape = self._queries(q, codes.shape)
        z = np.broadcast_to(self.quantizer.decode(codes.indices), out_shape + (self.d,)).reshape(-1, self.d)
        norms = np.broadcast_to(codes.norms, out_shape).reshape(-1)
        return (norms * row_dots(qr, z)).reshape(out_shape)


class TurboQuantProd(_TurboQuantBase):
    """TurboQuant-prod: ``bits - 1``-bit TurboQuant-mse + 1-bit QJL sketch of the residual.

    The reconstruction (and so the inner-product estimate) is unbiased:
    :math:`E[\\hat x] = x` over the QJL matrix.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Total bits per coordinate, ``1 <= bits <= 8`` (``bits == 1``: QJL only).
    seed : int
        Seed of the rotation and of the QJL matrix.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Format the norm and the residual norm are stored (and counted) in.
    """

    name = "turboquant-prod"
    n_headers = 2

    def __init__(self, d: int, bits: int, seed: int = 0, *, norm_dtype: str = "float16") -> None:
        super().__init__(d, bits, seed, norm_dtype=norm_dtype)
        self.quantizer: ScalarQuantizer | None = lloyd_max_scalar(self.d, self.bits - 1) if self.bits > 1 else None
        self.sketch = standard_normal((self.d, self.d), np.random.default_rng([self.seed, 0x514A4C]))
        self.sketch.setflags(write=False)
        self._sketch_t = np.ascontiguousarray(self.sketch.T)
        self._scale = math.sqrt(math.pi / 2.0) / self.d

    def _mse_stage(self, indices: np.ndarray | None, n: int) -> np.ndarray:
        if self.quantizer is None:
            return np.zeros((n, self.d))
        return self.quantizer.decode(indices.reshape(-1, self.d))

    def encode(self, x: object) -> QJLCodes:
        """Encode vectors of shape ``(..., d)``; see :class:`QJLCodes`.

        Raises ``ValueError`` for a wrong last dimension, NaN/Inf, or a norm
        that overflows the header format (use ``norm_dtype="float32"`` then).
        """
        lead, header, z = self._split(x)
        indices = None if self.quantizer is None else self.quantizer.encode(z)
        residual = z - self._mse_stage(indices, z.shape[0])
        signs = np.where(matmul_rows(residual, self._sketch_t) >= 0, 1, -1).astype(np.int8)
        residual_header = _header(row_norms(residual), self.norm_dtype)
        return QJLCodes(
            None if indices is None else indices.reshape(lead + (self.d,)),
            signs.reshape(lead + (self.d,)),
            residual_header.reshape(lead),
            header.reshape(lead),
            self.d, self.bits, self.seed, self.norm_dtype,
        )

    def _rotated_direction(self, codes: QJLCodes) -> np.ndarray:
        n = math.prod(codes.shape)
        qjl = (codes.residual_norms.reshape(-1) * self._scale)[:, None] * matmul_rows(
            codes.signs.reshape(-1, self.d).astype(np.float64), self.sketch
        )
        return self._mse_stage(codes.indices, n) + qjl

    def decode(self, codes: QJLCodes) -> np.ndarray:
        """Unbiased reconstruction of shape ``(..., d)`` from :class:`QJLCodes` made by this codec."""
        codes = self._check_codes(codes, QJLCodes)
        x = self._rotation.inverse(self._rotated_direction(codes)) * codes.norms.reshape(-1)[:, None]
        return x.reshape(codes.shape + (self.d,))

    def decode_row(self, codes: QJLCodes, i: int) -> np.ndarray:
        """Decode the vector with flat (row-major) index ``i`` alone, shape ``(d,)``; equals ``decode(codes).reshape(-1, d)[i]`` exactly."""
        codes = self._check_codes(codes, QJLCodes)
        i = self._flat_index(codes, i)
        flat = QJLCodes(
            None if codes.indices is None else codes.indices.reshape(-1, self.d),
            codes.signs.reshape(-1, self.d), codes.residual_header.reshape(-1), codes.norm_header.reshape(-1),
            self.d, self.bits, self.seed, self.norm_dtype,
        )
        return self.decode(flat.select(slice(i, i + 1)))[0]

    def inner_product(self, q: object, codes: QJLCodes) -> np.ndarray:
        """Unbiased estimate of ``<q, x>`` from the codes (``q`` of shape ``(d,)`` or ``(..., d)``).

        Uses :math:`\\langle \\Pi q, \\hat z_{mse}\\rangle + \\|r\\|\\sqrt{\\pi/2}/d\\,\\langle S\\Pi q, s\\rangle`.
        """
        codes = self._check_codes(codes, QJLCodes)
        qr, out_shape = self._queries(q, codes.shape)
        n_codes = math.prod(codes.shape)

        def spread(a: np.ndarray) -> np.ndarray:  # per-code rows (n_codes, ...) broadcast to the output
            return np.broadcast_to(a.reshape(codes.shape + a.shape[1:]), out_shape + a.shape[1:]).reshape((-1,) + a.shape[1:])

        mse_part = row_dots(qr, spread(self._mse_stage(codes.indices, n_codes)))
        signs = spread(codes.signs.reshape(-1, self.d).astype(np.float64))
        qjl_part = spread(codes.residual_norms.reshape(-1)) * self._scale * row_dots(matmul_rows(qr, self._sketch_t), signs)
        return (spread(codes.norms.reshape(-1)) * (mse_part + qjl_part)).reshape(out_shape)
