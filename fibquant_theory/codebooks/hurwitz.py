r"""The ``"hurwitz"`` codebook family (``k = 4``): Beta-quantile radii times the 24 Hurwitz unit quaternions.

The Hurwitz quaternions :math:`\mathbb Z[i,j,k] \cup (\mathbb Z[i,j,k] + \tfrac{1+i+j+k}{2})`
have 24 units: :math:`\pm1, \pm i, \pm j, \pm k` and :math:`(\pm1\pm i\pm j\pm k)/2`,
the vertices of a 24-cell (the binary tetrahedral group), read as vectors of
:math:`\mathbb R^4`. As in HQMQ (Hurwitz quaternion multiplicative quantization
of KV caches) a block of four coordinates is quantized to a unit times a
radius; here the radii are the Beta-quantile radii of the shells design and a
codebook of the family has :math:`N = 24 S` codewords
(:class:`~fibquant_theory.codebooks.product.ProductStructure`).

Decoder: the largest of :math:`\max_i|y_i|` (unit :math:`\pm e_i`) and
:math:`\tfrac12\sum_i|y_i|` (the half-integer unit with the signs of :math:`y`).

The 24 units are a rotated copy of the 24 normalised roots of
:math:`D_4` (:mod:`~fibquant_theory.codebooks.d4`, ``lattice_shells=1``), so
for the rotation-invariant spherical-Beta source both families have the same
distortion at the same ``N``; they differ in the decoder.

Examples
--------
>>> HurwitzStructure.build(64, 4, 96).n_shells
4
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fibquant_theory.codebooks.lattices import (
    axis_directions,
    decode_axes,
    decode_signs,
    sign_directions,
)
from fibquant_theory.codebooks.product import ProductStructure

__all__ = ["HurwitzStructure"]


class HurwitzStructure(ProductStructure):
    """Product codebook of ``S`` radii and the 24 Hurwitz unit quaternions; see the module."""

    family = "hurwitz"
    block = 4
    variants: ClassVar[dict[int, str]] = {1: "hurwitz-units"}

    @classmethod
    def direction_table(cls, lattice_shells: int) -> np.ndarray:
        """The 24 Hurwitz unit quaternions (variant 1).

        Parameters
        ----------
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        numpy.ndarray
            Unit vectors, shape ``(M, k)``, in decoder order.
        """
        return np.concatenate([axis_directions(4), sign_directions(4)])

    @classmethod
    def decode_directions(cls, y: np.ndarray, lattice_shells: int) -> tuple[np.ndarray, np.ndarray]:
        """The Hurwitz unit quaternion nearest in angle to each block, and its inner product.

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
        ma, ta = decode_axes(y)
        ms, ts = decode_signs(y)
        signs = ts > ta  # a tie goes to the axis unit (the earlier rows)
        return np.where(signs, 8 + ms, ma), np.where(signs, ts, ta)
