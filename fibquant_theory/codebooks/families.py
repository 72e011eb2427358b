"""The registry of codebook families: family name -> the structure class that defines it.

``"shells"`` is the Lloyd-refined shells design of
:func:`~fibquant_theory.codebooks.design.design_codebook` (the FibQuant
codebook); the others are product codes of Beta-quantile radii and a lattice
spherical code with an exact closed-form decoder
(:class:`~fibquant_theory.codebooks.product.ProductStructure`), designed
without Lloyd. :func:`~fibquant_theory.codebooks.codebook.load_codebook` reads a
file of any registered family; adding a family is one module and one line here.
"""

from __future__ import annotations

from fibquant_theory.codebooks.d4 import D4Structure
from fibquant_theory.codebooks.e8 import E8Structure
from fibquant_theory.codebooks.hurwitz import HurwitzStructure
from fibquant_theory.codebooks.structure import CodebookStructure, ShellStructure

__all__ = ["FAMILIES", "family_structure"]

#: Family name -> its structure class.
FAMILIES: dict[str, type[CodebookStructure]] = {
    "shells": ShellStructure,
    "d4": D4Structure,
    "e8": E8Structure,
    "hurwitz": HurwitzStructure,
}


def family_structure(family: object) -> type[CodebookStructure]:
    """The structure class of ``family``; ``ValueError`` listing the registry for an unknown name.

    Parameters
    ----------
    family : str
        A family name (``"shells"``, ``"d4"``, ``"e8"``, ``"hurwitz"``).

    Returns
    -------
    type
        Its :class:`~fibquant_theory.codebooks.structure.CodebookStructure` subclass.
    """
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"unknown codebook family {family!r}; registered families: {sorted(FAMILIES)}")
    return FAMILIES[family]
