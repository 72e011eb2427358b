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
from typing import Any, ClassVar

import numpy as np

from fibquant_theory._validation import as_vectors, check_bits, check_int
from fibquant_theory.codecs.base import RateAccounting, check_same_codec, flat_index, integer_bits, take_positions
from fibquant_theory.codecs.norms import NORM_DTYPES, check_norm_dtype, header_array
from fibquant_theory.codecs.turboquant_codes import QJLCodes, ScalarCodes
from fibquant_theory.numerics.fixed_order import matmul_rows, row_dots, row_norms
from fibquant_theory.theory.rotation import DenseRotation
from fibquant_theory.theory.scalar import ScalarQuantizer, lloyd_max_scalar
from fibquant_theory.theory.source import standard_normal

__all__ = ["QJLCodes", "ScalarCodes", "TurboQuantMSE", "TurboQuantProd", "make_turboquant", "make_turboquant_prod"]

class _TurboQuantBase(RateAccounting):
    """What both TurboQuant variants share: the rotation, the norms, the code checks and the random access.

    The rate and storage accounting is :class:`~fibquant_theory.codecs.base.RateAccounting`'s:
    ``d * bits`` bits of levels and the norm header(s) per vector.
    """

    #: Norm headers per vector (1 for -mse; 2 for -prod: norm and residual norm).
    n_headers = 1
    name = "turboquant-base"
    codes_type: ClassVar[type] = ScalarCodes  # each variant sets its own

    def __init__(self, d: int, bits: int, seed: int = 0, *, norm_dtype: str = "float16") -> None:
        self.d = check_int(d, "d (dimension)", minimum=2)
        self.bits = check_bits(bits)
        self.seed = check_int(seed, "seed", minimum=0)
        self.norm_dtype = check_norm_dtype(norm_dtype)
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
    def index_bits_per_vector(self) -> int:
        """Bits of the levels (and QJL signs) of one vector, ``d * bits``."""
        return self.d * self.bits

    @property
    def side_bits_per_vector(self) -> int:
        """Bits of the norm header(s) of one vector, :attr:`norm_bits`."""
        return self.norm_bits

    def _split(self, x: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated rows ``(n, d)``: header bits of the norms, and the rotated unit directions."""
        x = as_vectors(x, self.d)
        rows = x.reshape(-1, self.d)
        norms = row_norms(rows)  # no overflow for entries up to the float64 maximum
        header = header_array(norms, self.norm_dtype)  # raises when a norm overflows the header format
        safe = np.where(norms > 0, norms, 1.0)
        return x.shape[:-1], header, self._rotation.forward(rows / safe[:, None])

    def _check_codes(self, codes: object, kind: type | None = None) -> Any:
        kind = self.codes_type if kind is None else kind
        if not isinstance(codes, kind):
            raise TypeError(f"expected {kind.__name__} (codes of {type(self).__name__}), got {type(codes).__name__}")
        mine = (self.d, self.bits, self.seed, self.norm_dtype)
        theirs = (codes.d, codes.bits, codes.seed, codes.norm_dtype)
        check_same_codec(("d", "bits", "seed", "norm_dtype"), mine, theirs)
        return codes

    def decode(self, codes: Any) -> np.ndarray:  # pragma: no cover - every variant defines it
        raise NotImplementedError

    def decode_row(self, codes: Any, i: int | tuple[int, ...]) -> np.ndarray:
        """Decode vector ``i`` alone (a flat row-major index, or a tuple), shape ``(d,)``.

        Parameters
        ----------
        codes : ScalarCodes or QJLCodes
            Codes of this codec.
        i : int or tuple of int
            Index into ``codes.shape`` (see :func:`~fibquant_theory.codecs.base.flat_index`).

        Returns
        -------
        numpy.ndarray
            The vector, shape ``(d,)``; equals ``decode(codes).reshape(-1, d)[i]`` exactly.
        """
        codes = self._check_codes(codes)
        i = flat_index(codes.shape, i)
        return self.decode(codes.flat().select(slice(i, i + 1)))[0]

    def take(self, codes: Any, index: object, axis: int = 0) -> Any:
        """The codes of positions ``index`` along axis ``axis``, exactly; see :meth:`fibquant_theory.codecs.base.Codec.take`.

        The arrays are indexed; nothing is decoded.
        """
        codes = self._check_codes(codes)
        idx, ax = take_positions(codes.shape, index, axis)
        return codes.select((slice(None),) * ax + (idx,))

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
    codes_type: ClassVar[type] = ScalarCodes

    def __init__(self, d: int, bits: int, seed: int = 0, *, norm_dtype: str = "float16") -> None:
        super().__init__(d, bits, seed, norm_dtype=norm_dtype)
        self.quantizer: ScalarQuantizer = lloyd_max_scalar(self.d, self.bits)

    def encode(self, x: object) -> ScalarCodes:
        """Encode vectors of shape ``(..., d)``; see :class:`ScalarCodes`.

        Raises ``ValueError`` for a wrong last dimension, NaN/Inf, or a norm
        that overflows the header format (use ``norm_dtype="float32"`` then).

        Parameters
        ----------
        x : array_like
            Vectors, shape ``(..., d)``.

        Returns
        -------
        ScalarCodes
            Norm headers and packed level indices, leading shape ``x.shape[:-1]``.
        """
        lead, header, z = self._split(x)
        idx = self.quantizer.encode(z).reshape(lead + (self.d,))
        return ScalarCodes(idx, header.reshape(lead), self.d, self.bits, self.seed, self.norm_dtype)

    def decode(self, codes: ScalarCodes) -> np.ndarray:
        """Reconstruct vectors of shape ``(..., d)`` from :class:`ScalarCodes` made by this codec.

        Parameters
        ----------
        codes : ScalarCodes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``, float64.
        """
        codes = self._check_codes(codes, ScalarCodes)
        z = self.quantizer.decode(codes.indices.reshape(-1, self.d))
        x = self._rotation.inverse(z) * codes.norms.reshape(-1)[:, None]
        return x.reshape(codes.shape + (self.d,))

    def inner_product(self, q: object, codes: ScalarCodes) -> np.ndarray:
        """Estimate ``<q, x>`` from the codes, for ``q`` of shape ``(d,)`` or broadcastable ``(..., d)``.

        Computed in the rotated domain without reconstructing ``x``.

        Parameters
        ----------
        q : array_like
            Queries, shape ``(d,)`` or ``(..., d)``.
        codes : ScalarCodes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            The estimates, of the broadcast leading shape, float64.
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
    codes_type: ClassVar[type] = QJLCodes

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

        Parameters
        ----------
        x : array_like
            Vectors, shape ``(..., d)``.

        Returns
        -------
        QJLCodes
            Norm headers, level indices, residual norms and sign bits, leading shape ``x.shape[:-1]``.
        """
        lead, header, z = self._split(x)
        indices = None if self.quantizer is None else self.quantizer.encode(z)
        residual = z - self._mse_stage(indices, z.shape[0])
        signs = np.where(matmul_rows(residual, self._sketch_t) >= 0, 1, -1).astype(np.int8)
        residual_header = header_array(row_norms(residual), self.norm_dtype)
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
        """Unbiased reconstruction of shape ``(..., d)`` from :class:`QJLCodes` made by this codec.

        Parameters
        ----------
        codes : QJLCodes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``, float64.
        """
        codes = self._check_codes(codes, QJLCodes)
        x = self._rotation.inverse(self._rotated_direction(codes)) * codes.norms.reshape(-1)[:, None]
        return x.reshape(codes.shape + (self.d,))

    def inner_product(self, q: object, codes: QJLCodes) -> np.ndarray:
        """Unbiased estimate of ``<q, x>`` from the codes (``q`` of shape ``(d,)`` or ``(..., d)``).

        Uses :math:`\\langle \\Pi q, \\hat z_{mse}\\rangle + \\|r\\|\\sqrt{\\pi/2}/d\\,\\langle S\\Pi q, s\\rangle`.

        Parameters
        ----------
        q : array_like
            Queries, shape ``(d,)`` or ``(..., d)``.
        codes : QJLCodes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            The unbiased estimates, of the broadcast leading shape, float64.
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


# ----------------------------------------------------------------------------- factories
def make_turboquant(d: int, *, bits: int | None = None, seed: int = 0, norm_dtype: str = "float16") -> TurboQuantMSE:
    """TurboQuant-mse: ``TurboQuantMSE(d, bits, seed, norm_dtype=norm_dtype)``.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Bits per coordinate, an integer 1..8 (required; an integral float such as ``2.0`` is accepted).
    seed : int
        Seed of the rotation.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Format the norms are stored and counted in.

    Returns
    -------
    TurboQuantMSE
        The codec.
    """
    return TurboQuantMSE(d, integer_bits("turboquant", bits), seed, norm_dtype=norm_dtype)


def make_turboquant_prod(d: int, *, bits: int | None = None, seed: int = 0, norm_dtype: str = "float16") -> TurboQuantProd:
    """TurboQuant-prod (the QJL variant): ``TurboQuantProd(d, bits, seed, norm_dtype=norm_dtype)``.

    Parameters
    ----------
    d : int
        Vector dimension, ``d >= 2``.
    bits : int
        Total bits per coordinate, an integer 1..8 (required).
    seed : int
        Seed of the rotation and of the QJL matrix.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Format the norm and the residual norm are stored and counted in.

    Returns
    -------
    TurboQuantProd
        The codec.
    """
    return TurboQuantProd(d, integer_bits("turboquant-prod", bits), seed, norm_dtype=norm_dtype)
