"""Symbolic (SymPy) derivations and Markdown proofs, installed as :mod:`fibquant_theory.proofs`.

One module per result, each with a Markdown proof next to it:

* :mod:`~fibquant_theory.proofs.spherical_beta` — Lemma 1, the spherical-Beta marginal;
* :mod:`~fibquant_theory.proofs.high_rate` — Zador/Gersho functionals and the gain decomposition;
* :mod:`~fibquant_theory.proofs.dominance` — strict dominance over the scalar product code;
* :mod:`~fibquant_theory.proofs.sub_one_bit` — lower bounds and FibQuant below one bit.

Every module exposes ``CHECKS`` (zero-argument callables returning
:class:`~fibquant_theory.proofs._common.Check` records); :func:`fibquant_theory.experiments.verify.verify`
runs them all (``fibquant verify``). Modules are imported lazily: SymPy is only
loaded when a check needs it.
"""

from ._common import RELATIONS, Check, make_check

__all__ = ["Check", "make_check", "RELATIONS"]
