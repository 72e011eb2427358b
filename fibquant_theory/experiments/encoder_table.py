#!/usr/bin/env python
"""MSE penalty and speed-up of the fast encoders against the exhaustive search.

For every codebook size ``N`` the same spherical-Beta blocks (``--blocks`` exact
samples of :math:`f_{d,k}`) are encoded by the exhaustive search, the
two-stage shell-then-angle search (``probes`` nearest shells) and the
clustered top-``T`` search. Reported per encoder:

* ``mse`` — :math:`E\\|u-\\hat u\\|^2` of a unit vector, ``(d/k) * E|y - Q(y)|^2``;
* ``penalty_%`` — ``100 * (mse / mse_exhaustive - 1)``;
* ``changed_%`` — blocks whose codeword differs from the exhaustive one;
* ``cands`` — distance evaluations per block (cost model);
* ``vec_per_s`` — vectors (``d/k`` blocks each) searched per second, one thread;
* ``speedup`` — exhaustive time / encoder time, measured in the same run.

Two codebook families (``--codebook``): ``designed`` is
:func:`~fibquant_theory.codebooks.design.design_codebook` (Lloyd-refined; its shell
labels are the shells the codewords were initialised on), ``initial`` is the
multi-shell initial codebook with ``S = 2^floor(log2(N)/2)`` Beta-quantile
shells times ``N/S`` quasi-uniform directions *without* Lloyd refinement, the
structure the two-stage search is made for. Designing is slow for large ``N`` on
a small machine (``N = 4096`` at ``d = 128, k = 8`` took 343 s on the 2-core CI
machine under load), so sizes above ``--max-designed`` use the initial codebook only.

Example::

    .venv/bin/python -m fibquant_theory.experiments.encoder_table --codewords 256 4096 65536 --codebook both
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numba
import numpy as np
from tqdm.auto import tqdm

from fibquant_theory._table import format_table
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codebooks.shells import shell_codebook
from fibquant_theory.search.encoders import (
    ClusteredSearch,
    ExhaustiveSearch,
    NearestCodewordSearch,
    TwoStageSearch,
)
from fibquant_theory.theory.source import SphericalBeta

COLUMNS = ["codebook", "N", "encoder", "mse", "penalty_%", "changed_%", "cands", "vec_per_s", "speedup"]


def initial_codebook(d: int, k: int, n_codewords: int) -> SimpleNamespace:
    """Shell codebook without Lloyd: ``S = 2**floor(log2(N)/2)`` shells of ``N/S`` directions.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size.
    n_codewords : int
        Codebook size ``N``.

    Returns
    -------
    types.SimpleNamespace
        ``points``, ``shell_index``, ``shell_radii``, ``d``, ``k`` (what the searches need).
    """
    n_shells = 2 ** (int(math.log2(n_codewords)) // 2)
    points, shell_index, radii = shell_codebook(d, k, n_shells, n_codewords // n_shells)
    return SimpleNamespace(points=points, shell_index=shell_index, shell_radii=radii, d=d, k=k)


def timed_search(search: NearestCodewordSearch, y: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Run a search on ``y`` ``repeats`` times (after a warm-up call) and keep the fastest run.

    Parameters
    ----------
    search : NearestCodewordSearch
        The encoder.
    y : numpy.ndarray
        Blocks, shape ``(n, k)``.
    repeats : int
        Timed runs.

    Returns
    -------
    index : numpy.ndarray
        Codeword of every block, shape ``(n,)``.
    distance : numpy.ndarray
        Squared distances, shape ``(n,)``.
    seconds : float
        The fastest run's wall time.
    """
    search.search(y[:4])  # load compiled kernels outside the timing
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        idx, dist = search.search(y)
        best = min(best, time.perf_counter() - t0)
    return idx, dist, best


def encoder_rows(
    label: str, codebook: Any, y: np.ndarray, d: int, probes: Sequence[int], tops: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """One row per encoder (exhaustive first: the reference) on the blocks ``y`` and one codebook.

    Parameters
    ----------
    label : str
        The codebook column.
    codebook : Codebook-like
        ``points`` and ``shell_index``.
    y : numpy.ndarray
        Blocks, shape ``(n, k)``.
    d : int
        Dimension (``d / k`` blocks per vector).
    probes : sequence of int
        Probed shells of the two-stage searches.
    tops : sequence of int
        ``top`` of the clustered searches.
    repeats : int
        Timed runs per encoder.

    Returns
    -------
    list of dict
        The columns of the module docstring.
    """
    k = codebook.points.shape[1]
    m = d // k
    searches: list[tuple[str, NearestCodewordSearch]] = [("exhaustive", ExhaustiveSearch(codebook.points))]
    n_shells = len(np.unique(codebook.shell_index))
    for p in probes:
        if p <= n_shells:
            searches.append((f"two-stage p={p}", TwoStageSearch(codebook.points, codebook.shell_index, probes=p)))
    for t in tops:
        searches.append((f"clustered T={t}", ClusteredSearch(codebook.points, top=t)))
    rows = []
    ref_idx = ref_mse = ref_time = None
    for name, search in searches:
        idx, dist, seconds = timed_search(search, y, repeats)
        mse = m * float(dist.mean())
        if ref_idx is None:
            ref_idx, ref_mse, ref_time = idx, mse, seconds
        extra = f" K={search.n_clusters}" if isinstance(search, ClusteredSearch) else ""
        extra += f" S={search.n_shells}" if isinstance(search, TwoStageSearch) else ""
        rows.append(
            {
                "codebook": label,
                "N": len(codebook.points),
                "encoder": name + extra,
                "mse": mse,
                "penalty_%": 100.0 * (mse / ref_mse - 1.0),
                "changed_%": 100.0 * float(np.mean(idx != ref_idx)),
                "cands": round(search.candidates_per_block, 1),
                "vec_per_s": round(len(y) / m / seconds),
                "speedup": round(ref_time / seconds, 2),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (``python -m fibquant_theory.experiments.encoder_table --help``).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--codewords", type=int, nargs="+", default=[256, 4096, 65536])
    parser.add_argument("--codebook", choices=["designed", "initial", "both"], default="both")
    parser.add_argument("--blocks", type=int, default=20_000, help="test blocks (default 20000)")
    parser.add_argument("--probes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--top", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--n-train", type=int, default=200_000, help="training samples of design_codebook")
    parser.add_argument("--restarts", type=int, default=3, help="Lloyd restarts of design_codebook (default 3)")
    parser.add_argument("--max-iter", type=int, default=300, help="Lloyd iteration cap of design_codebook (default 300)")
    parser.add_argument(
        "--max-designed", type=int, default=4096, help="largest N designed with Lloyd (larger N: initial codebook only)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best of)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    numba.set_num_threads(1)  # every encoder timed on one thread (the clustered search would use them all)
    y = SphericalBeta(args.dim, args.block).rvs(args.blocks, seed=args.seed + 7)
    families = ["designed", "initial"] if args.codebook == "both" else [args.codebook]
    rows: list[dict[str, Any]] = []
    for n_codewords in tqdm(args.codewords, desc="codebook sizes", file=sys.stderr):
        for family in families:
            if family == "designed" and n_codewords > args.max_designed:
                tqdm.write(f"N={n_codewords}: not designed (above --max-designed); initial codebook only", file=sys.stderr)
                continue
            if family == "designed":
                t0 = time.perf_counter()
                cb = design_codebook(
                    args.dim,
                    args.block,
                    n_codewords,
                    seed=args.seed,
                    n_train=args.n_train,
                    n_restarts=args.restarts,
                    max_iter=args.max_iter,
                    progress=True,
                )
                tqdm.write(f"designed N={n_codewords} in {time.perf_counter() - t0:.1f} s (cached after the first run)", file=sys.stderr)
            else:
                cb = initial_codebook(args.dim, args.block, n_codewords)
            label = family
            if family == "designed" and (args.restarts, args.max_iter) != (3, 300):
                label = f"designed(r={args.restarts},it={args.max_iter})"
            rows += encoder_rows(label, cb, y, args.dim, args.probes, args.top, args.repeats)
    print(f"d={args.dim}, k={args.block}, {args.blocks} spherical-Beta blocks, single thread")
    print(format_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
