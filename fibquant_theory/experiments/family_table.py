"""Held-out MSE of the codebook families at matched rates: shells vs d4 vs e8 vs hurwitz vs TurboQuant.

For every dimension ``d`` and every matched operating point ``(k, N)`` it
designs the codebook of each family with the same ``(d, k, N, seed)`` — so the
same exact spherical-Beta training and held-out samples — and prints

* ``heldout_mse`` — :math:`E\\|u-\\hat u\\|^2` of a unit vector over all ``d``
  coordinates on the held-out samples (:attr:`Codebook.heldout_mse
  <fibquant_theory.codebooks.codebook.Codebook.heldout_mse>`);
* ``vs_shells_%`` — ``100 * (mse / mse_shells - 1)`` (positive: worse than the
  Lloyd-refined shells design);
* rows ``turboquant b=...`` — TurboQuant, the exact scalar Lloyd–Max MSE
  (:func:`~fibquant_theory.theory.scalar.lloyd_max_scalar`) at the integer rates
  bracketing ``log2(N)/k`` (``N`` there is the equivalent :math:`2^{bk}`).

The default operating points are ``k = 4``: ``N = 96`` (1.65 bits: hurwitz
``S = 4``, d4 ``S = 4 x 24`` or ``S = 2 x 48``) and ``N = 192`` (1.90 bits);
``k = 8``: ``N = 240`` (0.99 bits: e8 ``S = 1``) and ``N = 480`` (1.11 bits:
e8 ``S = 2``). Shells designs go through the codebook cache unless
``--no-cache``.

Example::

    .venv/bin/python -m fibquant_theory.experiments.family_table --dims 64 128
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

from fibquant_theory._table import format_table
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.theory.scalar import lloyd_max_scalar

__all__ = ["COLUMNS", "OPERATING_POINTS", "family_rows", "main", "turboquant_rows"]

COLUMNS = ["d", "k", "N", "rate_bits", "codebook", "S_x_M", "heldout_mse", "vs_shells_%"]

#: ``(k, N, [(family, lattice_shells), ...])``: the codebooks compared at each operating point.
OPERATING_POINTS: list[tuple[int, int, list[tuple[str, int | None]]]] = [
    (4, 96, [("shells", None), ("d4", 1), ("d4", 2), ("hurwitz", None)]),
    (4, 192, [("shells", None), ("d4", 1), ("d4", 2), ("hurwitz", None)]),
    (8, 240, [("shells", None), ("e8", None)]),
    (8, 480, [("shells", None), ("e8", None)]),
]


def _bracket(rate: float) -> list[int]:
    """The integer TurboQuant rates (1..8) bracketing ``rate``."""
    return sorted({b for b in (math.floor(rate), math.ceil(rate)) if 1 <= b <= 8})


def turboquant_rows(d: int, k: int, rate: float) -> list[dict[str, Any]]:
    """TurboQuant (scalar Lloyd–Max) at the integer rates bracketing ``rate``; one row each.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size of the FibQuant row.
    rate : float
        Its rate in bits per coordinate.

    Returns
    -------
    list of dict
        One row per integer rate ``floor(rate)`` and ``ceil(rate)`` in ``[1, 8]``.
    """
    return [
        {"d": d, "k": k, "N": 2 ** (b * k), "rate_bits": float(b), "codebook": f"turboquant b={b}",
         "heldout_mse": lloyd_max_scalar(d, b).mse}
        for b in _bracket(rate)
    ]


def family_rows(
    d: int,
    points: Sequence[tuple[int, int, Sequence[tuple[str, int | None]]]] = OPERATING_POINTS,
    *,
    seed: int = 0,
    n_train: int = 200_000,
    n_heldout: int = 100_000,
    cache: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Rows of the table for dimension ``d``: every family at every operating point, then TurboQuant.

    Parameters
    ----------
    d : int
        Dimension (every ``k`` of ``points`` must divide it).
    points : sequence of (k, N, [(family, lattice_shells), ...])
        Operating points; the first family of each is the reference of ``vs_shells_%``.
    seed, n_train, n_heldout, cache, progress
        Passed to :func:`~fibquant_theory.codebooks.design.design_codebook`.

    Returns
    -------
    list of dict
        One dict per row with the keys of :data:`COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for k, n, families in points:
        rate = math.log2(n) / k
        ref = None
        for family, variant in families:
            cb = design_codebook(
                d, k, n, seed, family=family, lattice_shells=variant, n_train=n_train, n_heldout=n_heldout,
                cache=cache, progress=progress,
            )
            ref = cb.heldout_mse if ref is None else ref
            s, m = cb.params["factorisation"]
            rows.append({
                "d": d, "k": k, "N": n, "rate_bits": rate,
                "codebook": family if family == "shells" else f"{family} ({cb.directions})",
                "S_x_M": f"{s}x{m}", "heldout_mse": cb.heldout_mse,
                "vs_shells_%": 100.0 * (cb.heldout_mse / ref - 1.0),
            })
        rows += turboquant_rows(d, k, rate)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (``python -m fibquant_theory.experiments.family_table --help``).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=200_000, help="training samples (design_codebook's n_train)")
    ap.add_argument("--heldout", type=int, default=100_000, help="held-out samples (n_heldout)")
    ap.add_argument("--no-cache", action="store_true", help="design again instead of reading the cache")
    ap.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    args = ap.parse_args(argv)
    rows = []
    for d in args.dims:
        rows += family_rows(
            d, seed=args.seed, n_train=args.train, n_heldout=args.heldout, cache=not args.no_cache,
            progress=args.progress,
        )
    print(format_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
