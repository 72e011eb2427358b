"""Print the FibQuant codebook table: held-out MSE against TurboQuant, the Gaussian reference and the lower bounds.

For every d, k and rate b with N = 2**(b*k) <= --max-codewords (and b*k an
integer) it designs the codebook (through the cache unless --no-cache) and
prints MSE (E||u - u_hat||^2 of a unit vector, held-out samples), TurboQuant's
exact Lloyd–Max MSE at integer rates, the gain in dB over TurboQuant, the gap
to the Gaussian reference 2^(-2b) in dB (``gap_db``; a reference, not a bound), the
gap to the larger of the two lower bounds of
:func:`~fibquant_theory.experiments.rd.lower_bounds` (``bound_gap_db``: the Shannon
lower bound of the k-block source and the cap bound; positive up to sampling error) and the
design seconds. Rows are also
appended, as they finish, to the JSON-lines file --jsonl when given.

Large codebooks use a reduced budget (reported in the columns n_train and
restarts): 3 restarts up to N = 1024, 1 above; 128 training samples per
codeword up to N = 4096, --large-spc above.

Usage::

    .venv/bin/python -m fibquant_theory.experiments.codebook_table [--dims 64 128] [--blocks 2 4 8]
        [--rates 0.5 1 1.5 2 3] [--max-codewords 65536] [--jsonl rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from fibquant_theory._table import format_table
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.experiments.rd import gaussian_reference, lower_bounds
from fibquant_theory.theory.scalar import lloyd_max_scalar

COLUMNS = [
    "d", "k", "b", "N", "mse", "turboquant_mse", "gain_db", "gap_db", "bound_gap_db", "train_mse", "n_train",
    "restarts", "design_s",
]


def row_for(d: int, k: int, b: float, seed: int, cache: bool, large_spc: int, progress: bool) -> dict:
    """Design the codebook of ``(d, k, N = 2**(b k))`` and measure it against TurboQuant.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size.
    b : float
        Rate in bits per coordinate.
    seed : int
        Design seed.
    cache : bool
        Use the codebook cache.
    large_spc : int
        Training samples per codeword above ``N = 4096``.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``d``, ``k``, ``b``, ``N``, held-out and training MSE, TurboQuant's MSE and the gain
        (integer rates), the gap to the reference ``2^(-2b)`` and to the larger lower bound,
        design facts and the content hash.
    """
    n = round(2 ** (b * k))
    restarts = 3 if n <= 1024 else 1
    spc = 128 if n <= 4096 else large_spc
    t0 = time.perf_counter()
    cb = design_codebook(
        d, k, n, seed=seed, n_restarts=restarts, samples_per_codeword=spc, cache=cache, progress=progress
    )
    wall = time.perf_counter() - t0
    tq = lloyd_max_scalar(d, int(b)).mse if float(b).is_integer() and 1 <= b <= 8 else None
    bounds = lower_bounds(d, b, k)
    return {
        "d": d,
        "k": k,
        "b": b,
        "N": n,
        "mse": cb.heldout_mse,
        "turboquant_mse": tq,
        "gain_db": 10 * math.log10(tq / cb.heldout_mse) if tq else None,
        "gap_db": 10 * math.log10(cb.heldout_mse / gaussian_reference(b)),
        "bound_gap_db": 10 * math.log10(cb.heldout_mse / max(v for v in bounds.values() if not math.isnan(v))),
        "train_mse": cb.train_mse,
        "n_train": cb.params["n_train_used"],
        "restarts": restarts,
        "design_s": cb.design_seconds,
        "wall_s": wall,
        "content_hash": cb.content_hash,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (``python -m fibquant_theory.experiments.codebook_table --help``).

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
    ap.add_argument("--blocks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.5, 1, 1.5, 2, 3])
    ap.add_argument("--max-codewords", type=int, default=65536)
    ap.add_argument("--large-spc", type=int, default=32, help="training samples per codeword above N = 4096")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--jsonl", help="append every finished row to this JSON-lines file")
    args = ap.parse_args(argv)
    jobs = []
    for d in args.dims:
        for k in args.blocks:
            for b in args.rates:
                bk = b * k
                if abs(bk - round(bk)) > 1e-9 or d % k or round(bk) < 1 or 2 ** round(bk) > args.max_codewords:
                    continue
                jobs.append((2 ** round(bk), d, k, b))
    rows = []
    for _, d, k, b in sorted(jobs):  # small codebooks first
        row = row_for(d, k, b, args.seed, not args.no_cache, args.large_spc, args.progress)
        rows.append(row)
        print(f"done d={d} k={k} b={b} N={row['N']} mse={row['mse']:.5f} ({row['design_s']:.1f} s)", file=sys.stderr)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    rows.sort(key=lambda r: (r["d"], r["k"], r["b"]))
    print(format_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
