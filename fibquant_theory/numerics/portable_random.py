r"""Normal and Beta variates with the same bits on every x86-64 machine.

NumPy's own normal, exponential and gamma samplers call the C library's
``log1p``/``pow``, which round differently on different CPUs. The variates here
are the inverse CDF, computed by :mod:`fibquant_theory.numerics.portable_math`,
at the centre of a 53-bit grid cell: feed them ``rng.integers(0, BITS_RANGE, n)``.

* :func:`normal_from_bits`: standard normal, exactly symmetric, never infinite.
* :func:`beta_from_bits`: :math:`\mathrm{Beta}(a, b)`, the upper half solved in
  the upper tail so both tails keep their relative precision.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

from fibquant_theory.numerics.portable_math import _beta_quantile, _ndtri

__all__ = ["BITS_RANGE", "beta_from_bits", "normal_from_bits"]

#: 2**-53: the spacing of the uniform grid of :func:`normal_from_bits`.
_ULP53 = 2.0**-53
_HALF_RANGE = 1 << 52


@njit("float64(int64)", cache=True, nogil=True, error_model="numpy")
def _normal_from_bits(j):  # pragma: no cover - compiled
    """Standard normal quantile at ``(j + 1/2) 2^-53`` for ``0 <= j < 2^53`` (exactly symmetric, never infinite)."""
    if j < _HALF_RANGE:
        return _ndtri((j + 0.5) * _ULP53)
    return -_ndtri(((2 * _HALF_RANGE - 1 - j) + 0.5) * _ULP53)


@njit("float64(int64, float64, float64)", cache=True, nogil=True, error_model="numpy")
def _beta_from_bits(j, a, b):  # pragma: no cover - compiled
    """``Beta(a, b)`` quantile at ``(j + 1/2) 2^-53``, the upper half solved in the upper tail."""
    if j < _HALF_RANGE:
        return _beta_quantile(a, b, (j + 0.5) * _ULP53, False)
    return _beta_quantile(a, b, ((2 * _HALF_RANGE - 1 - j) + 0.5) * _ULP53, True)


@vectorize(["float64(int64)"], cache=True)
def _normal_from_bits_u(j):  # pragma: no cover - compiled
    return _normal_from_bits(j)


@vectorize(["float64(int64, float64, float64)"], cache=True)
def _beta_from_bits_u(j, a, b):  # pragma: no cover - compiled
    return _beta_from_bits(j, a, b)


#: Exclusive upper end of the integers :func:`normal_from_bits` and :func:`beta_from_bits` take.
BITS_RANGE = 1 << 53


def _bits(j: object) -> np.ndarray:
    arr = np.asarray(j)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"bits must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= BITS_RANGE):
        raise ValueError("bits must lie in [0, 2**53)")
    return arr


def normal_from_bits(j: object) -> np.ndarray:
    r"""Standard normal variates from 53-bit integers: :func:`ndtri` at :math:`(j + \tfrac12)\,2^{-53}`.

    For ``j`` uniform on ``[0, 2**53)`` (e.g. ``rng.integers(0, 2**53, n)``) the
    result is a standard normal sample, exactly symmetric and at most about 8.3
    in absolute value. Unlike NumPy's ziggurat, whose tail uses the C library's
    ``log1p``, it has the same bits on every machine.

    Parameters
    ----------
    j : array_like of int
        Integers in ``[0, 2**53)``.

    Returns
    -------
    numpy.ndarray
        The variates, of ``j``'s shape, float64.
    """
    return _normal_from_bits_u(_bits(j))


def beta_from_bits(j: object, a: float, b: float) -> np.ndarray:
    r""":math:`\mathrm{Beta}(a, b)` variates from 53-bit integers, by the inverse CDF at :math:`(j + \tfrac12)\,2^{-53}`.

    Levels above 1/2 are solved in the upper tail, so both tails keep their
    relative precision. Same bits on every machine.

    Parameters
    ----------
    j : array_like of int
        Integers in ``[0, 2**53)``.
    a, b : float
        Parameters of the Beta law, ``> 0``.

    Returns
    -------
    numpy.ndarray
        The variates, of ``j``'s shape, float64 in ``(0, 1)``.
    """
    a = float(a)
    b = float(b)
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"Beta parameters must be finite and > 0, got a={a}, b={b}")
    return _beta_from_bits_u(_bits(j), a, b)
