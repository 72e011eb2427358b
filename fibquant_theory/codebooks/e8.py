r"""The ``"e8"`` codebook family (``k = 8``): Beta-quantile radii times the 240 normalised minimal vectors of :math:`E_8`.

:math:`E_8 = D_8 \cup (D_8 + \tfrac12\mathbf 1)` is the densest lattice packing
in eight dimensions; its 240 minimal vectors (norm :math:`\sqrt2`) are

* the 112 vectors :math:`(\pm1,\pm1,0^6)` and permutations, and
* the 128 vectors :math:`(\pm\tfrac12)^8` with an even number of minus signs,

the kissing configuration of :math:`E_8` (the largest kissing number in
dimension 8). Normalised they are a spherical code on :math:`S^7` with minimum
angle 60°. Decoder: the better of the two largest :math:`|y_i|` with their signs
(:math:`(|y_p|+|y_q|)/\sqrt2`) and the signs of :math:`y` with a parity fix on
the smallest :math:`|y_i|` (:math:`(\sum|y_i| - 2\min|y_i|[\text{odd}])/\sqrt8`).

A codebook of the family has :math:`N = 240 S` codewords
(:class:`~fibquant_theory.codebooks.product.ProductStructure`), e.g. one bit per
coordinate is :math:`N = 256` (not a multiple of 240); :math:`N = 240` is
0.988 bits and :math:`N = 480` 1.113 bits per coordinate.

Examples
--------
>>> E8Structure.build(64, 8, 480).n_shells
2
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fibquant_theory.codebooks.lattices import (
    decode_roots,
    decode_signs,
    root_directions,
    sign_directions,
)
from fibquant_theory.codebooks.product import ProductStructure

__all__ = ["E8Structure"]


class E8Structure(ProductStructure):
    """Product codebook of ``S`` radii and the normalised first shell of :math:`E_8`; see the module."""

    family = "e8"
    block = 8
    variants: ClassVar[dict[int, str]] = {1: "e8-roots"}

    @classmethod
    def direction_table(cls, lattice_shells: int) -> np.ndarray:
        """The unit minimal vectors of the lattice E8, in decoder order.

        Parameters
        ----------
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        numpy.ndarray
            Unit vectors, shape ``(M, k)``, in decoder order.
        """
        return np.concatenate([root_directions(8), sign_directions(8, even=True)])

    @classmethod
    def decode_directions(cls, y: np.ndarray, lattice_shells: int) -> tuple[np.ndarray, np.ndarray]:
        """The E8 minimal direction nearest in angle to each block (closed-form decoder), and its inner product.

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
        mr, tr = decode_roots(y)
        ms, ts = decode_signs(y, even=True)
        signs = ts > tr  # a tie goes to the integer vector (the earlier rows)
        return np.where(signs, 112 + ms, mr), np.where(signs, ts, tr)
