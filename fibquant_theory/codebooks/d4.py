r"""The ``"d4"`` codebook family (``k = 4``): Beta-quantile radii times the normalised first shells of :math:`D_4`.

:math:`D_4 = \{z\in\mathbb Z^4: \sum z_i \text{ even}\}` is the densest lattice
packing in four dimensions. Its shells give two spherical codes on :math:`S^3`:

``lattice_shells=1`` (``"d4-roots"``, ``M = 24``)
    The 24 minimal vectors :math:`(\pm1,\pm1,0,0)` and permutations, normalised
    (the vertices of a 24-cell; the kissing configuration of :math:`D_4`).
    Decoder: the two largest :math:`|y_i|` with their signs.
``lattice_shells=2`` (``"d4-roots+hurwitz"``, ``M = 48``)
    The first two shells: also the 24 vectors :math:`(\pm2,0,0,0)` and
    :math:`(\pm1,\pm1,\pm1,\pm1)` of norm 4, normalised (the dual 24-cell, the
    same points as the Hurwitz units of :mod:`~fibquant_theory.codebooks.hurwitz`);
    together the 48 vertices of the 24-cell and its dual. Decoder: the best of
    the two-largest rule, the largest :math:`|y_i|` and the signs of :math:`y`.

A codebook of the family has :math:`N = S\cdot M` codewords
(:class:`~fibquant_theory.codebooks.product.ProductStructure`): codeword
:math:`sM + m` is :math:`\rho_s v_m` with the Beta-quantile radii
:math:`\rho_s` of :func:`~fibquant_theory.codebooks.shells.beta_quantile_radii`.

Examples
--------
>>> D4Structure.build(64, 4, 96).n_shells, D4Structure.build(64, 4, 96, lattice_shells=2).n_shells
(4, 2)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fibquant_theory.codebooks.lattices import (
    axis_directions,
    decode_axes,
    decode_roots,
    decode_signs,
    root_directions,
    sign_directions,
)
from fibquant_theory.codebooks.product import ProductStructure

__all__ = ["D4Structure"]


class D4Structure(ProductStructure):
    """Product codebook of ``S`` radii and the normalised first (and second) shell of :math:`D_4`; see the module."""

    family = "d4"
    block = 4
    variants: ClassVar[dict[int, str]] = {1: "d4-roots", 2: "d4-roots+hurwitz"}

    @classmethod
    def direction_table(cls, lattice_shells: int) -> np.ndarray:
        """The unit minimal vectors of D4 (variant 2: also the second shell's), in decoder order.

        Parameters
        ----------
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        numpy.ndarray
            Unit vectors, shape ``(M, k)``, in decoder order.
        """
        roots = root_directions(4)
        if lattice_shells == 1:
            return roots
        return np.concatenate([roots, axis_directions(4), sign_directions(4)])

    @classmethod
    def decode_directions(cls, y: np.ndarray, lattice_shells: int) -> tuple[np.ndarray, np.ndarray]:
        """The D4 direction nearest in angle to each block (closed-form decoder), and its inner product.

        Parameters
        ----------
        y : numpy.ndarray
            Blocks, shape ``(n, k)``.
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        index : numpy.ndarray
            Row of :meth:`direction_table` maximising the inner product with each block, shape ``(n,)``.
        value : numpy.ndarray
            That maximum, shape ``(n,)``.
        """
        m, t = decode_roots(y)
        if lattice_shells == 1:
            return m, t
        ma, ta = decode_axes(y)
        ms, ts = decode_signs(y)
        # ties go to the earlier piece of the table (roots, then axes, then signs)
        axes = ta > t
        m, t = np.where(axes, 24 + ma, m), np.where(axes, ta, t)
        signs = ts > t
        return np.where(signs, 32 + ms, m), np.where(signs, ts, t)
