"""Symbolic (SymPy) derivations and Markdown proofs, installed as :mod:`fibquant_theory.proofs`."""

__all__: list[str] = []
