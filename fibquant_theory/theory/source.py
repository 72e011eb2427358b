r"""The spherical-Beta source: a block of ``k`` coordinates of a uniform unit vector.

Let :math:`u` be uniform on the unit sphere :math:`S^{d-1}\subset\mathbb{R}^d` (for
example :math:`u = \Pi x/\|x\|` with :math:`\Pi` Haar-random). The block
:math:`y = (u_1,\dots,u_k)` of ``k`` consecutive coordinates has, for ``k <= d - 1``,
the density on the open unit ball :math:`B^k`

.. math::

    f_{d,k}(y) = c_{d,k}\,(1-\|y\|^2)^{(d-k-2)/2},\qquad
    c_{d,k} = \frac{\Gamma(d/2)}{\pi^{k/2}\,\Gamma((d-k)/2)},

and its squared radius is :math:`\|y\|^2\sim\mathrm{Beta}(k/2,(d-k)/2)`; the
direction :math:`y/\|y\|` is uniform on :math:`S^{k-1}` and independent of the radius.

Edge cases:

* ``k = d - 1``: the exponent is :math:`-1/2`; the density is unbounded at the
  boundary but integrable, and every method works.
* ``k = d``: the block *is* the unit vector, so it lives on the sphere and has no
  density on the ball. :meth:`SphericalBeta.pdf` and :meth:`SphericalBeta.logpdf`
  raise ``ValueError``; the radius law is the point mass at 1 (``radius_cdf`` is
  the step at 1, ``radius_ppf`` is 1) and both samplers return unit vectors.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.numerics.fixed_order import row_sumsq
from fibquant_theory.numerics.portable_math import lgamma
from fibquant_theory.numerics.portable_random import BITS_RANGE, beta_from_bits, normal_from_bits

__all__ = ["SphericalBeta", "log_normalizer", "sample_unit_vectors", "standard_normal", "as_generator"]

#: Largest number of float64 entries a sampler allocates at once.
_CHUNK_ENTRIES = 1 << 22
#: :math:`\log\pi` (the float64 nearest to it, the same double as ``math.log(math.pi)``).
_LOG_PI = 1.1447298858494001741


def log_normalizer(d: int, k: int) -> float:
    r""":math:`\log c_{d,k} = \log\Gamma(d/2) - \tfrac{k}{2}\log\pi - \log\Gamma((d-k)/2)`, for ``1 <= k < d``.

    The log of the normalizing constant of :math:`f_{d,k}(y) \propto (1-\|y\|^2)^{(d-k-2)/2}`:
    the one implementation of the package (:meth:`SphericalBeta.log_normalizer`,
    :func:`fibquant_theory.theory.highrate.log_normalizer` and the scalar
    Lloyd–Max design call it). It uses the portable
    :func:`~fibquant_theory.numerics.portable_math.lgamma`, so it has the same bits
    on every machine (the scalar Lloyd–Max tables depend on them).

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    k : int
        Block size, ``1 <= k < d`` (at ``k = d`` there is no density on the ball).

    Returns
    -------
    float
        :math:`\log c_{d,k}`.

    Examples
    --------
    >>> round(float(np.exp(log_normalizer(3, 1))), 12)  # f_{3,1} is uniform on [-1, 1]
    0.5
    """
    d, k = check_dim_block(d, k)
    if k == d:
        raise ValueError(f"k = d = {d}: the block lies on the sphere and has no density on the ball")
    return float(lgamma(d / 2.0) - 0.5 * k * _LOG_PI - lgamma((d - k) / 2.0))


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a NumPy ``Generator`` for an integer seed (or pass a Generator through).

    ``None`` gives fresh OS entropy: results are then *not* reproducible.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        The seed, or a generator to pass through.

    Returns
    -------
    numpy.random.Generator
        The generator.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(check_int(seed, "seed", minimum=0))


def standard_normal(size: int | tuple[int, ...], seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Standard normal samples with the same bits on every machine.

    Each sample is :func:`~fibquant_theory.numerics.portable_random.normal_from_bits` of
    one 53-bit integer drawn by the generator (the inverse normal CDF at the
    midpoint of a uniform 53-bit grid). NumPy's own ``standard_normal`` is exact
    too but calls the C library's ``log1p`` in its tail, whose last bit differs
    between CPUs; every sampler of this package uses this function instead.

    Parameters
    ----------
    size : int or tuple of int
        Output shape.
    seed : int, numpy.random.Generator or None
        Seed or generator (same integer, same samples).

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``size``.
    """
    rng = as_generator(seed)
    return normal_from_bits(rng.integers(0, BITS_RANGE, size=size, dtype=np.int64))


def _unit_rows(g: np.ndarray) -> np.ndarray:
    """Rows of ``g`` divided by their norms (fixed-order sums: the same bits everywhere)."""
    return g / np.sqrt(row_sumsq(g))[:, None]


def sample_unit_vectors(n: int, d: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Draw ``n`` vectors uniform on the unit sphere of :math:`\\mathbb{R}^d`.

    Parameters
    ----------
    n : int
        Number of vectors (``n >= 0``).
    d : int
        Dimension (``d >= 2``).
    seed : int, numpy.random.Generator or None
        Seed or generator; the same integer gives the same vectors.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(n, d)``, float64, rows of unit norm.
    """
    d, _ = check_dim_block(d, 1)
    return SphericalBeta(d, d).rvs(n, seed=seed, method="gaussian")


class SphericalBeta:
    r"""Law of ``k`` consecutive coordinates of a uniform point on :math:`S^{d-1}`.

    Parameters
    ----------
    d : int
        Ambient dimension, ``d >= 2``.
    k : int
        Block size, ``1 <= k <= d``.

    Attributes
    ----------
    d, k : int
        The dimensions.
    exponent : float
        :math:`(d-k-2)/2`, the exponent of :math:`1-\|y\|^2` in the density.
    radius2 : scipy.stats.rv_continuous or None
        The frozen :math:`\mathrm{Beta}(k/2,(d-k)/2)` law of :math:`\|y\|^2`
        (``None`` when ``k == d``, where the radius is identically 1).

    Examples
    --------
    >>> src = SphericalBeta(64, 8)
    >>> y = src.rvs(1000, seed=0)
    >>> y.shape
    (1000, 8)
    >>> round(float(src.radius_cdf(1.0)), 12)
    1.0
    """

    def __init__(self, d: int, k: int) -> None:
        self.d, self.k = check_dim_block(d, k)
        self.exponent = (self.d - self.k - 2) / 2.0
        self.radius2 = None if self.k == self.d else stats.beta(self.k / 2.0, (self.d - self.k) / 2.0)

    def __repr__(self) -> str:
        return f"SphericalBeta(d={self.d}, k={self.k})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SphericalBeta) and (self.d, self.k) == (other.d, other.k)

    def __hash__(self) -> int:
        return hash(("SphericalBeta", self.d, self.k))

    # ------------------------------------------------------------------ density
    @property
    def is_degenerate(self) -> bool:
        """``True`` when ``k == d`` (the block lies on the sphere; no density on the ball)."""
        return self.k == self.d

    def _require_density(self) -> None:
        if self.is_degenerate:
            raise ValueError(
                f"k = d = {self.d}: the block is the whole unit vector, uniform on the sphere "
                "S^{d-1}; it has no density on the ball (use rvs or the radius law instead)"
            )

    @property
    def log_normalizer(self) -> float:
        r""":math:`\log c_{d,k} = \log\Gamma(d/2) - \tfrac{k}{2}\log\pi - \log\Gamma((d-k)/2)` (see :func:`log_normalizer`)."""
        self._require_density()
        return log_normalizer(self.d, self.k)

    def _block(self, y: object) -> np.ndarray:
        arr = np.asarray(y, dtype=np.float64)
        if self.k == 1 and (arr.ndim == 0 or arr.shape[-1] != 1):
            arr = arr[..., None]
        if arr.ndim == 0 or arr.shape[-1] != self.k:
            raise ValueError(f"points must have shape (..., {self.k}), got {np.shape(y)}")
        if np.isnan(arr).any():
            raise ValueError("points contain NaN")
        return arr

    def logpdf(self, y: object) -> np.ndarray:
        """Log-density at points ``y`` of shape ``(..., k)`` (``-inf`` outside the ball).

        For ``k == 1`` a plain array of scalars is also accepted.

        Parameters
        ----------
        y : array_like
            Points, shape ``(..., k)``.

        Returns
        -------
        numpy.ndarray
            The log-density, shape ``(...)``.
        """
        self._require_density()
        arr = self._block(y)
        s = row_sumsq(arr)
        out = np.full(s.shape, -np.inf)
        inside = s < 1.0
        out[inside] = self.log_normalizer + self.exponent * np.log1p(-s[inside])
        on = s == 1.0
        if on.any():
            # On the boundary sphere: 0 for exponent > 0, c for exponent == 0, +inf for exponent < 0.
            out[on] = -np.inf if self.exponent > 0 else (self.log_normalizer if self.exponent == 0 else np.inf)
        return out

    def pdf(self, y: object) -> np.ndarray:
        """Density at points ``y`` of shape ``(..., k)``; see :meth:`logpdf`.

        Parameters
        ----------
        y : array_like
            Points, shape ``(..., k)``.

        Returns
        -------
        numpy.ndarray
            The density, shape ``(...)``.
        """
        return np.exp(self.logpdf(y))

    # ------------------------------------------------------------ radius law
    def radius_pdf(self, r: object) -> np.ndarray:
        r"""Density of :math:`\rho = \|y\|` on ``[0, 1]``: :math:`2r\,g(r^2)`, ``g`` the Beta density.

        Parameters
        ----------
        r : array_like
            Radii.

        Returns
        -------
        numpy.ndarray
            The density of the radius, of ``r``'s shape.
        """
        self._require_density()
        r = np.asarray(r, dtype=np.float64)
        inside = (r >= 0) & (r <= 1)
        out = np.zeros_like(r)
        out[inside] = 2.0 * r[inside] * self.radius2.pdf(r[inside] ** 2)
        return out

    def radius_cdf(self, r: object) -> np.ndarray:
        r""":math:`P(\|y\| \le r)`; the step at 1 when ``k == d``.

        Parameters
        ----------
        r : array_like
            Radii.

        Returns
        -------
        numpy.ndarray
            The probabilities, of ``r``'s shape.
        """
        r = np.asarray(r, dtype=np.float64)
        if np.isnan(r).any():
            raise ValueError("radius contains NaN")
        if self.is_degenerate:
            return (r >= 1.0).astype(np.float64)
        return np.where(r <= 0, 0.0, np.where(r >= 1, 1.0, self.radius2.cdf(np.clip(r, 0, 1) ** 2)))

    def radius_ppf(self, q: object) -> np.ndarray:
        r"""Quantile function of :math:`\|y\|`: :math:`\sqrt{F_\beta^{-1}(q)}` for ``q`` in ``[0, 1]``.

        Parameters
        ----------
        q : array_like
            Levels in ``[0, 1]``.

        Returns
        -------
        numpy.ndarray
            The radii in ``[0, 1]``, of ``q``'s shape.
        """
        q = np.asarray(q, dtype=np.float64)
        if np.isnan(q).any() or (q < 0).any() or (q > 1).any():
            raise ValueError("quantile levels must lie in [0, 1]")
        if self.is_degenerate:
            return np.ones_like(q)
        return np.sqrt(self.radius2.ppf(q))

    def second_moment(self) -> float:
        r""":math:`E\|y\|^2 = k/d`.

        Returns
        -------
        float
            ``k / d``.
        """
        return self.k / self.d

    # --------------------------------------------------------------- sampling
    def rvs(self, n: int, seed: int | np.random.Generator | None = 0, method: str = "radial") -> np.ndarray:
        """Draw ``n`` exact samples, shape ``(n, k)``.

        Parameters
        ----------
        n : int
            Number of samples.
        seed : int, numpy.random.Generator or None
            Seed or generator (same integer, same samples).
        method : {"radial", "gaussian"}
            ``"gaussian"`` draws standard Gaussian vectors in :math:`\\mathbb{R}^d`,
            normalises them and keeps the first ``k`` coordinates (the definition);
            ``"radial"`` draws :math:`\\|y\\|^2` from its Beta law (inverse CDF)
            and an independent uniform direction on :math:`S^{k-1}` (cost O(k)
            per sample). Both use only machine-independent arithmetic
            (:func:`standard_normal`, :func:`~fibquant_theory.numerics.portable_random.beta_from_bits`),
            so the samples have the same bits on every machine.

        Returns
        -------
        numpy.ndarray
            Samples of shape ``(n, k)``, float64.
        """
        n = check_int(n, "n", minimum=0)
        rng = as_generator(seed)
        if method == "gaussian":
            out = np.empty((n, self.k))
            step = max(1, _CHUNK_ENTRIES // self.d)
            for start in range(0, n, step):
                g = _unit_rows(standard_normal((min(step, n - start), self.d), rng))
                out[start : start + g.shape[0]] = g[:, : self.k]
            return out
        if method == "radial":
            if self.is_degenerate:
                radius = np.ones(n)
            else:
                bits = rng.integers(0, BITS_RANGE, size=n, dtype=np.int64)
                radius = np.sqrt(beta_from_bits(bits, self.k / 2.0, (self.d - self.k) / 2.0))
            return _unit_rows(standard_normal((n, self.k), rng)) * radius[:, None]
        raise ValueError(f"method must be 'radial' or 'gaussian', got {method!r}")
