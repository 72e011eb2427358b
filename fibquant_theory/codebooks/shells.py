r"""Radius shells at Beta quantiles and the multi-shell initial codebook.

The squared radius of a block of the spherical-Beta source is
:math:`\|y\|^2\sim\mathrm{Beta}(k/2,(d-k)/2)`, independent of the direction.
FibQuant's initial codebook of :math:`N = S\cdot M` codewords puts :math:`S`
shells at the mid-quantiles of that radius law,

.. math::

    r_\ell = F_{\|y\|}^{-1}\!\Big(\frac{\ell+\tfrac12}{S}\Big),\qquad \ell=0,\dots,S-1,

(every shell carries the same probability), and :math:`M` quasi-uniform
directions on every shell (:func:`~fibquant_theory.codebooks.directions.shell_directions`).
The number of shells is chosen among the integer factorisations
:math:`N = S\cdot M` (:func:`factorisations`) by the training distortion.
"""

from __future__ import annotations

import numpy as np

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codebooks.directions import resolve_direction_method, shell_directions
from fibquant_theory.numerics.portable_math import betaincinv

__all__ = ["beta_quantile_radii", "factorisations", "shell_codebook", "valid_factorisations"]


def beta_quantile_radii(d: int, k: int, n_shells: int) -> np.ndarray:
    r"""Shell radii at the mid-quantiles :math:`(\ell+\tfrac12)/S` of the radius law of :math:`f_{d,k}`.

    Parameters
    ----------
    d : int
        Ambient dimension, ``d >= 2``.
    k : int
        Block size, ``1 <= k <= d`` (``k = d``: every radius is 1).
    n_shells : int
        Number of shells ``S >= 1``.

    Returns
    -------
    numpy.ndarray, shape (S,)
        Increasing radii in ``(0, 1]``.

    Examples
    --------
    >>> r = beta_quantile_radii(64, 8, 4)
    >>> bool(np.all(np.diff(r) > 0)), r.shape
    (True, (4,))
    """
    d, k = check_dim_block(d, k)
    s = check_int(n_shells, "n_shells", minimum=1)
    if k == d:
        return np.ones(s)
    # the portable Beta quantile (same bits on every machine), not SciPy's (which calls libm)
    return np.sqrt(betaincinv(k / 2.0, (d - k) / 2.0, (np.arange(s) + 0.5) / s))


def factorisations(n: int) -> list[tuple[int, int]]:
    """All ordered factor pairs ``(S, M)`` with ``S * M == n``, by increasing ``S``.

    Parameters
    ----------
    n : int
        Number of codewords, ``>= 1``.

    Returns
    -------
    list of tuple of int
        ``(shells, directions per shell)``.

    Examples
    --------
    >>> factorisations(12)
    [(1, 12), (2, 6), (3, 4), (4, 3), (6, 2), (12, 1)]
    """
    n = check_int(n, "n", minimum=1)
    small = [s for s in range(1, int(np.sqrt(n)) + 1) if n % s == 0]
    large = [n // s for s in reversed(small) if s * s != n]
    return [(s, n // s) for s in small + large]


def valid_factorisations(d: int, k: int, n: int) -> list[tuple[int, int]]:
    """The factorisations of ``n`` that give distinct codewords for block size ``k``.

    ``k = 1`` admits at most 2 directions per shell (the sphere :math:`S^0` has
    two points); ``k = d`` admits one shell only (every radius is 1).

    Parameters
    ----------
    d, k : int
        Dimension and block size.
    n : int
        Number of codewords.

    Returns
    -------
    list of tuple of int
        ``(S, M)`` pairs, by increasing ``S`` (never empty).
    """
    d, k = check_dim_block(d, k)
    pairs = factorisations(n)
    if k == d:
        pairs = [(1, n)]
    if k == 1:
        pairs = [(s, m) for s, m in pairs if m <= 2]
    return pairs


def shell_codebook(
    d: int, k: int, n_shells: int, n_directions: int, directions: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The multi-shell initial codebook: ``n_shells`` Beta-quantile radii times quasi-uniform directions.

    Parameters
    ----------
    d, k : int
        Dimension and block size (``1 <= k <= d``).
    n_shells : int
        Number of shells ``S >= 1``.
    n_directions : int
        Directions per shell ``M >= 1``.
    directions : str
        Direction family, see :func:`~fibquant_theory.codebooks.directions.resolve_direction_method`.

    Returns
    -------
    points : numpy.ndarray, shape (S*M, k)
        Codewords, shell by shell (shell ``l`` holds rows ``l*M .. (l+1)*M - 1``).
    shell_index : numpy.ndarray, shape (S*M,), int64
        Shell number of every codeword.
    radii : numpy.ndarray, shape (S,)
        The shell radii (increasing).
    """
    d, k = check_dim_block(d, k)
    s = check_int(n_shells, "n_shells", minimum=1)
    m = check_int(n_directions, "n_directions", minimum=1)
    method = resolve_direction_method(k, directions)
    radii = beta_quantile_radii(d, k, s)
    points = np.concatenate([radii[l] * shell_directions(m, k, l, method) for l in range(s)])
    shell_index = np.repeat(np.arange(s, dtype=np.int64), m)
    return points, shell_index, radii
