r"""TurboQuant, the scalar baseline: rotate, quantize every coordinate with Lloyd–Max, store the norm.

* :class:`TurboQuantMSE` — ``bits`` per coordinate with the Lloyd–Max table of
  :math:`f_{d,1}` (:func:`~fibquant_theory.scalar.lloyd_max_scalar`).
* :class:`TurboQuantProd` — a ``bits - 1``-bit MSE stage plus a 1-bit QJL sign
  sketch of the residual and the residual norm, which makes the inner-product
  estimate unbiased: for :math:`S` with i.i.d. :math:`N(0,1)` entries,
  :math:`E[\langle Sq, \mathrm{sign}(Sr)\rangle] = \sqrt{2/\pi}\, d\,\langle q, r\rangle/\|r\|`.

Both take arrays of shape ``(..., d)`` and return code objects that keep the
leading shape. Zero vectors round-trip to exact zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import as_vectors, check_bits, check_int
from .rotation import haar_orthogonal
from .scalar import ScalarQuantizer, lloyd_max_scalar

__all__ = ["TurboQuantMSE", "TurboQuantProd", "ScalarCodes", "QJLCodes"]


@dataclass(frozen=True)
class ScalarCodes:
    """Codes of :class:`TurboQuantMSE`.

    Attributes
    ----------
    indices : numpy.ndarray
        Level indices of the rotated unit direction, shape ``(..., d)``, uint8.
    norms : numpy.ndarray
        Euclidean norms of the inputs, shape ``(...)``, float64.
    """

    indices: np.ndarray
    norms: np.ndarray


@dataclass(frozen=True)
class QJLCodes:
    """Codes of :class:`TurboQuantProd`.

    Attributes
    ----------
    indices : numpy.ndarray or None
        MSE-stage level indices, shape ``(..., d)`` (``None`` when ``bits == 1``).
    signs : numpy.ndarray
        QJL signs of the residual, shape ``(..., d)``, int8 in ``{-1, +1}``.
    residual_norms : numpy.ndarray
        Norms of the residual of the unit direction, shape ``(...)``.
    norms : numpy.ndarray
        Euclidean norms of the inputs, shape ``(...)``.
    """

    indices: np.ndarray | None
    signs: np.ndarray
    residual_norms: np.ndarray
    norms: np.ndarray


def _split_norm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Norms and unit directions; the direction of a zero vector is zero."""
    norms = np.linalg.norm(x, axis=-1)
    safe = np.where(norms > 0, norms, 1.0)
    return norms, x / safe[..., None]


class _TurboQuantBase:
    """What both TurboQuant variants share: the rotation, the rate and the storage accounting."""

    #: Bits of the fp16 norm header(s) counted by :attr:`bits_per_vector`.
    norm_bits = 16

    def __init__(self, d: int, bits: int, seed: int = 0) -> None:
        self.d = check_int(d, "d (dimension)", minimum=2)
        self.bits = check_bits(bits)
        self.seed = check_int(seed, "seed", minimum=0)
        self.rotation = haar_orthogonal(self.d, self.seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, bits={self.bits}, seed={self.seed})"

    @property
    def rate_bits(self) -> float:
        """Bits per coordinate of the direction code (the norm headers are not counted)."""
        return float(self.bits)

    @property
    def bits_per_vector(self) -> int:
        """Storage of one vector in bits: ``d * bits`` + the fp16 norm header(s)."""
        return self.d * self.bits + self.norm_bits

    @property
    def compression_ratio(self) -> float:
        """``16 d / bits_per_vector``: fp16 size over code size (norms included)."""
        return 16.0 * self.d / self.bits_per_vector


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

    Examples
    --------
    >>> import numpy as np
    >>> tq = TurboQuantMSE(64, 3, seed=0)
    >>> x = np.random.default_rng(1).standard_normal((5, 64))
    >>> tq.decode(tq.encode(x)).shape
    (5, 64)
    """

    name = "turboquant"

    def __init__(self, d: int, bits: int, seed: int = 0) -> None:
        super().__init__(d, bits, seed)
        self.quantizer: ScalarQuantizer = lloyd_max_scalar(self.d, self.bits)

    def decode_row(self, codes: ScalarCodes, i: int) -> np.ndarray:
        """Decode the vector with flat (row-major) index ``i`` alone, shape ``(d,)``.

        Equal to ``decode(codes).reshape(-1, d)[i]`` up to the rounding of the matrix product.
        """
        idx = np.asarray(codes.indices).reshape(-1, self.d)
        norms = np.asarray(codes.norms).reshape(-1)
        i = check_int(i, "index", minimum=-norms.size, maximum=norms.size - 1)
        return self.decode(ScalarCodes(idx[i : i + 1 or None], norms[i : i + 1 or None]))[0]

    def encode(self, x: np.ndarray) -> ScalarCodes:
        """Encode vectors of shape ``(..., d)``; see :class:`ScalarCodes`."""
        x = as_vectors(x, self.d)
        norms, u = _split_norm(x)
        z = u @ self.rotation.T
        return ScalarCodes(self.quantizer.encode(z), norms)

    def _rotated_direction(self, codes: ScalarCodes) -> np.ndarray:
        if codes.indices.shape[-1:] != (self.d,) or codes.indices.shape[:-1] != codes.norms.shape:
            raise ValueError(f"codes must have indices (..., {self.d}) and norms (...) of matching shape")
        return self.quantizer.decode(codes.indices)

    def decode(self, codes: ScalarCodes) -> np.ndarray:
        """Reconstruct vectors of shape ``(..., d)`` from :class:`ScalarCodes`."""
        z = self._rotated_direction(codes)
        return codes.norms[..., None] * (z @ self.rotation)

    def inner_product(self, q: np.ndarray, codes: ScalarCodes) -> np.ndarray:
        """Estimate ``<q, x>`` from the codes, for ``q`` of shape ``(d,)`` or broadcastable ``(..., d)``.

        Computed in the rotated domain without reconstructing ``x``.
        """
        q = as_vectors(q, self.d, "q")
        return codes.norms * np.einsum("...i,...i->...", q @ self.rotation.T, self._rotated_direction(codes))


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
    """

    name = "turboquant-prod"

    def __init__(self, d: int, bits: int, seed: int = 0) -> None:
        super().__init__(d, bits, seed)
        self.quantizer: ScalarQuantizer | None = lloyd_max_scalar(self.d, self.bits - 1) if self.bits > 1 else None
        self.sketch = np.random.default_rng([self.seed, 0x514A4C]).standard_normal((self.d, self.d))
        self._scale = math.sqrt(math.pi / 2.0) / self.d

    #: Bits of the two norm headers (norm and residual norm, fp16 each).
    norm_bits = 32

    def decode_row(self, codes: QJLCodes, i: int) -> np.ndarray:
        """Decode the vector with flat (row-major) index ``i`` alone, shape ``(d,)``.

        Equal to ``decode(codes).reshape(-1, d)[i]`` up to the rounding of the matrix products.
        """
        norms = np.asarray(codes.norms).reshape(-1)
        i = check_int(i, "index", minimum=-norms.size, maximum=norms.size - 1)
        sl = slice(i, i + 1 or None)
        idx = None if codes.indices is None else np.asarray(codes.indices).reshape(-1, self.d)[sl]
        row = QJLCodes(idx, np.asarray(codes.signs).reshape(-1, self.d)[sl], np.asarray(codes.residual_norms).reshape(-1)[sl], norms[sl])
        return self.decode(row)[0]

    def _mse_stage(self, indices: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        if self.quantizer is None:
            return np.zeros(shape + (self.d,))
        return self.quantizer.decode(indices)

    def encode(self, x: np.ndarray) -> QJLCodes:
        """Encode vectors of shape ``(..., d)``; see :class:`QJLCodes`."""
        x = as_vectors(x, self.d)
        norms, u = _split_norm(x)
        z = u @ self.rotation.T
        indices = None if self.quantizer is None else self.quantizer.encode(z)
        residual = z - self._mse_stage(indices, z.shape[:-1])
        projected = residual @ self.sketch.T
        signs = np.where(projected >= 0, 1, -1).astype(np.int8)
        return QJLCodes(indices, signs, np.linalg.norm(residual, axis=-1), norms)

    def _rotated_direction(self, codes: QJLCodes) -> np.ndarray:
        shape = codes.norms.shape
        if codes.signs.shape != shape + (self.d,) or codes.residual_norms.shape != shape:
            raise ValueError(f"codes must have signs (..., {self.d}) and norms (...) of matching shape")
        if (self.quantizer is None) != (codes.indices is None):
            raise ValueError("codes do not match this quantizer's bit width")
        qjl = (codes.residual_norms * self._scale)[..., None] * (codes.signs @ self.sketch)
        return self._mse_stage(codes.indices, shape) + qjl

    def decode(self, codes: QJLCodes) -> np.ndarray:
        """Unbiased reconstruction of shape ``(..., d)``."""
        return codes.norms[..., None] * (self._rotated_direction(codes) @ self.rotation)

    def inner_product(self, q: np.ndarray, codes: QJLCodes) -> np.ndarray:
        """Unbiased estimate of ``<q, x>`` from the codes (``q`` of shape ``(d,)`` or ``(..., d)``).

        Uses :math:`\\langle \\Pi q, \\hat z_{mse}\\rangle + \\|r\\|\\sqrt{\\pi/2}/d\\,\\langle S\\Pi q, s\\rangle`.
        """
        q = as_vectors(q, self.d, "q")
        qr = q @ self.rotation.T
        shape = codes.norms.shape
        if codes.signs.shape != shape + (self.d,):
            raise ValueError(f"codes must have signs (..., {self.d})")
        mse_part = np.einsum("...i,...i->...", qr, self._mse_stage(codes.indices, shape))
        qjl_part = codes.residual_norms * self._scale * np.einsum("...i,...i->...", qr @ self.sketch.T, codes.signs)
        return codes.norms * (mse_part + qjl_part)
