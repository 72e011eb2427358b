r"""Lloyd–Max scalar quantizer for one coordinate of a uniform unit vector (TurboQuant's table).

The marginal :math:`f_{d,1}(t) = c_{d,1}(1-t^2)^{(d-3)/2}` on :math:`[-1, 1]` has
closed-form partial moments, so the Lloyd–Max conditions are solved from the
density itself (no samples):

.. math::

    \int_a^b f = \tfrac12\big[I_{b^2}(\tfrac12,\tfrac{d-1}2) - I_{a^2}(\tfrac12,\tfrac{d-1}2)\big],\quad
    \int_a^b t f = \tfrac{c_{d,1}}{d-1}\big[(1-a^2)^{\frac{d-1}2} - (1-b^2)^{\frac{d-1}2}\big],\quad
    \int_a^b t^2 f = \tfrac1{2d}\big[I_{b^2}(\tfrac32,\tfrac{d-1}2) - I_{a^2}(\tfrac32,\tfrac{d-1}2)\big]

for :math:`0\le a\le b\le 1` (:math:`I` the regularised incomplete Beta function).
The quantizer is symmetric, so only the positive half is solved: a few Lloyd
iterations from the quantile initialisation, then Newton's method on the centroid
fixed point (the Jacobian is tridiagonal) until the centroid condition holds to
machine precision. Thresholds are midpoints (nearest-neighbour condition).
The special functions are those of :mod:`~fibquant_theory.numerics.portable_math` and
the tridiagonal solve is a plain Thomas sweep, so the levels have the same
bits on every machine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from fibquant_theory._validation import check_bits, check_int
from fibquant_theory.numerics import portable_math as pm
from fibquant_theory.theory.source import log_normalizer

__all__ = ["ScalarQuantizer", "lloyd_max_scalar", "coordinate_moments"]


def _log_c1(d: int) -> float:
    r""":math:`\log c_{d,1}` of the marginal :math:`f_{d,1}` (portable ``lgamma``: the table's bits depend on it)."""
    return log_normalizer(d, 1)


def coordinate_moments(d: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Partial moments :math:`\int_a^b t^j f_{d,1}(t)\,dt` for ``j = 0, 1, 2``, with ``0 <= a <= b <= 1``.

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    a, b : numpy.ndarray
        Interval end points of the same shape, inside ``[0, 1]``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mass, first, second)``, each of the shape of ``a``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if (a < 0).any() or (b > 1).any() or (a > b).any():
        raise ValueError("coordinate_moments needs 0 <= a <= b <= 1")
    h = (d - 1) / 2.0
    # Upper-tail (complemented) incomplete Beta keeps full relative precision in the tails.
    mass = 0.5 * (pm.betaincc(0.5, h, a * a) - pm.betaincc(0.5, h, b * b))
    c1 = float(pm.exp(_log_c1(d)))
    first = c1 / (d - 1) * (pm.exp(h * pm.log1p(-a * a)) - pm.exp(h * pm.log1p(-b * b)))
    second = 0.5 / d * (pm.betaincc(1.5, h, a * a) - pm.betaincc(1.5, h, b * b))
    return mass, first, second


def _marginal_pdf(d: int, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros_like(t)
    inside = np.abs(t) < 1
    out[inside] = pm.exp(_log_c1(d) + (d - 3) / 2.0 * pm.log1p(-t[inside] ** 2))
    return out


def _solve_tridiagonal(lower: np.ndarray, main: np.ndarray, upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``J x = rhs`` for the tridiagonal ``J`` (Thomas algorithm, a fixed order: the same bits everywhere).

    ``lower[i] = J[i + 1, i]``, ``main[i] = J[i, i]``, ``upper[i] = J[i, i + 1]``.
    The Jacobians here are diagonally dominant (the centroid map is a contraction), so no pivoting is needed.
    """
    n = main.size
    c = np.empty(n)
    x = np.empty(n)
    denom = main[0]
    c[0] = upper[0] / denom if n > 1 else 0.0
    x[0] = rhs[0] / denom
    for i in range(1, n):
        denom = main[i] - lower[i - 1] * c[i - 1]
        c[i] = upper[i] / denom if i < n - 1 else 0.0
        x[i] = (rhs[i] - lower[i - 1] * x[i - 1]) / denom
    for i in range(n - 2, -1, -1):
        x[i] -= c[i] * x[i + 1]
    return x


def _half_centroids(d: int, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroids of the positive-half cells induced by positive levels ``c`` (sorted)."""
    edges = np.concatenate(([0.0], 0.5 * (c[:-1] + c[1:]), [1.0]))
    mass, first, _ = coordinate_moments(d, edges[:-1], edges[1:])
    return first / mass, mass, edges


@dataclass(frozen=True)
class ScalarQuantizer:
    """A symmetric Lloyd–Max quantizer for one coordinate of a uniform unit vector in R^d.

    Attributes
    ----------
    d : int
        Ambient dimension the table was designed for.
    bits : int
        Bits per coordinate; ``2**bits`` levels.
    levels : numpy.ndarray
        Reconstruction levels, shape ``(2**bits,)``, increasing.
    thresholds : numpy.ndarray
        Decision thresholds (midpoints of adjacent levels), shape ``(2**bits - 1,)``.
    mse_per_coordinate : float
        :math:`E(t - Q(t))^2` under :math:`f_{d,1}`, exact up to quadrature-free rounding.
    iterations : int
        Lloyd plus Newton iterations used.
    """

    d: int
    bits: int
    levels: np.ndarray
    thresholds: np.ndarray
    mse_per_coordinate: float
    iterations: int

    @property
    def n_levels(self) -> int:
        """Number of levels, ``2**bits``."""
        return self.levels.size

    @property
    def mse(self) -> float:
        r""":math:`E\|u-\hat u\|^2` over all ``d`` coordinates of a unit vector: ``d * mse_per_coordinate``."""
        return self.d * self.mse_per_coordinate

    def encode(self, t: np.ndarray) -> np.ndarray:
        """Index of the nearest level for every entry of ``t`` (ties go to the upper level).

        Returns an array of ``t``'s shape, dtype ``uint8`` (``bits <= 8``).
        """
        t = np.asarray(t, dtype=np.float64)
        return np.searchsorted(self.thresholds, t, side="right").astype(np.uint8)

    def decode(self, idx: np.ndarray) -> np.ndarray:
        """Levels for integer indices ``idx`` (any shape); raises ``ValueError`` if out of range."""
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_levels):
            raise ValueError(f"indices must lie in [0, {self.n_levels}), got range [{idx.min()}, {idx.max()}]")
        return self.levels[idx]


@functools.lru_cache(maxsize=None)
def _design(d: int, bits: int, tol: float, max_newton: int) -> ScalarQuantizer:
    m = 2 ** (bits - 1)  # positive levels
    # Quantile initialisation: centre of mass of equal-probability cells of |t|.
    q = (np.arange(m) + 0.5) / m
    s2 = pm.betaincinv(0.5, (d - 1) / 2.0, q)
    c = np.sqrt(s2)
    iters = 0
    for _ in range(30):  # plain Lloyd to get into Newton's basin
        c, _, _ = _half_centroids(d, c)
        iters += 1
    scale = 1.0 / math.sqrt(d)
    for _ in range(max_newton):
        g, mass, edges = _half_centroids(d, c)
        resid = c - g
        iters += 1
        if np.max(np.abs(resid)) <= tol * scale:
            break
        # Tridiagonal Jacobian of F(c) = c - g(c).
        f_edges = _marginal_pdf(d, edges)
        dg_upper = f_edges[1:] * (edges[1:] - g) / mass  # d g_i / d t_i
        dg_lower = f_edges[:-1] * (g - edges[:-1]) / mass  # d g_i / d t_{i-1}
        dg_upper[-1] = 0.0  # t_m = 1 is fixed
        dg_lower[0] = 0.0  # t_0 = 0 is fixed
        main = 1.0 - 0.5 * dg_upper - 0.5 * dg_lower
        upper = -0.5 * dg_upper[:-1]  # J[i, i+1]
        lower = -0.5 * dg_lower[1:]  # J[i, i-1]
        step = _solve_tridiagonal(lower, main, upper, resid)
        # Damping: keep levels increasing, inside (0, 1), and the residual falling.
        lam = 1.0
        norm0 = np.max(np.abs(resid))
        while lam > 1e-6:
            trial = c - lam * step
            if np.all(np.diff(trial) > 0) and trial[0] > 0 and trial[-1] < 1:
                g2, _, _ = _half_centroids(d, trial)
                if np.max(np.abs(trial - g2)) < norm0 or lam < 1e-3:
                    break
            lam *= 0.5
        c = trial
    else:
        raise RuntimeError(f"Lloyd–Max did not converge for d={d}, bits={bits}")
    levels = np.concatenate((-c[::-1], c))
    thresholds = 0.5 * (levels[:-1] + levels[1:])
    thresholds[m - 1] = 0.0
    edges = np.concatenate(([0.0], thresholds[m:], [1.0]))
    mass, first, second = coordinate_moments(d, edges[:-1], edges[1:])
    mse_half = 0.0
    for term in second - 2.0 * c * first + c * c * mass:  # a fixed order
        mse_half += float(term)
    levels.setflags(write=False)
    thresholds.setflags(write=False)
    return ScalarQuantizer(d, bits, levels, thresholds, 2.0 * mse_half, iters)


def lloyd_max_scalar(d: int, bits: int, *, tol: float = 1e-11, max_newton: int = 200) -> ScalarQuantizer:
    r"""Lloyd–Max quantizer with ``2**bits`` levels for one coordinate of a uniform unit vector in R^d.

    Designed from the density :math:`f_{d,1}` (closed-form moments, Newton's
    method); results are cached per ``(d, bits)``.

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    bits : int
        Bits per coordinate, ``1 <= bits <= 8``.
    tol : float
        Stop when every level is within ``tol / sqrt(d)`` of its cell's centroid.
    max_newton : int
        Newton iteration cap (``RuntimeError`` if reached).

    Returns
    -------
    ScalarQuantizer
        The quantizer (levels and thresholds are read-only arrays).

    Examples
    --------
    >>> q = lloyd_max_scalar(128, 2)
    >>> q.levels.shape
    (4,)
    >>> 0.11 < q.mse < 0.12
    True
    """
    d = check_int(d, "d (dimension)", minimum=2)
    bits = check_bits(bits)
    return _design(d, bits, float(tol), int(max_newton))
