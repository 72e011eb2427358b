#!/usr/bin/env python
"""Predicted (high-rate) vs measured matched-rate gains of FibQuant over scalar TurboQuant.

Prints two tables:

1. the predicted high-rate gain decomposition (cell shaping with the best known
   lattice, density matching = shape + memory, total) for k in {2,3,4,8,16,32} and
   d in {16,64,128,256} (``fibquant_theory.theory.highrate.gain_table``);
2. measured gains: designed codebooks (``design_codebook``) against the exact
   Lloyd–Max MSE at the same integer rate, with the high-rate prediction beside them
   and the ratio of each measured MSE to its own high-rate prediction.

Usage::

    python -m fibquant_theory.experiments.gain_table            # full (about 10 minutes on 2 cores; designs are cached)
    python -m fibquant_theory.experiments.gain_table --quick    # N <= 256, 100k training samples
    python -m fibquant_theory.experiments.gain_table --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from tqdm.auto import tqdm

from fibquant_theory._table import format_table
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.proofs._designs import evaluate_mse
from fibquant_theory.theory import highrate
from fibquant_theory.theory.scalar import lloyd_max_scalar

PRED_COLUMNS = ["d", "k", "lattice", "G_k", "cell_shaping_db", "density_matching_db", "shape_db", "memory_db",
                "total_db", "sphere_bound_cell_db"]
MEAS_COLUMNS = ["d", "k", "bits", "N", "scalar_mse", "fibquant_mse", "mse_se", "measured_gain_db",
                "predicted_gain_db", "hr_ratio_vec", "hr_ratio_scalar"]


def measured_rows(dims: list[int], ks: list[int], max_n: int, n_train: int, samples_per_codeword: int,
                  max_iter: int, n_eval: int, progress: bool) -> list[dict]:
    """One row per (d, k, integer b) with N = 2**(k b) <= max_n.

    Large codebooks need many training samples per codeword to approach their high-rate
    optimum (with the design default of ~200 per codeword, k = 2 at N = 1024 ends 18 % above it).

    Parameters
    ----------
    dims, ks : list of int
        Dimensions and block sizes.
    max_n : int
        Largest codebook size.
    n_train : int
        Least number of training samples.
    samples_per_codeword : int
        Training samples per codeword (the larger of the two counts).
    max_iter : int
        Lloyd iteration cap.
    n_eval : int
        Evaluation samples.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        The columns ``MEAS_COLUMNS``: measured and predicted gains and high-rate ratios.
    """
    configs = [(d, k, b) for d in dims for k in ks for b in range(1, 9) if d % k == 0 and 2 ** (k * b) <= max_n]
    rows = []
    for d, k, b in tqdm(configs, desc="designs", disable=not progress):
        n_code = 2 ** (k * b)
        cb = design_codebook(d, k, n_code, 0, n_train=max(n_train, samples_per_codeword * n_code), n_heldout=20_000,
                             max_iter=max_iter, tol=1e-7, progress=False)
        mse, se = evaluate_mse(cb, n=n_eval, seed=21)
        scalar = lloyd_max_scalar(d, b).mse
        rows.append({
            "d": d, "k": k, "bits": b, "N": n_code, "scalar_mse": scalar, "fibquant_mse": mse, "mse_se": se,
            "measured_gain_db": highrate.db(scalar / mse),
            "predicted_gain_db": highrate.gain_decomposition(d, k).total_db,
            "hr_ratio_vec": mse / highrate.high_rate_mse(d, k, b),
            "hr_ratio_scalar": scalar / highrate.high_rate_mse(d, 1, b),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the predicted and measured gain tables (``--help`` lists the options).

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
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128], help="d of the measured table")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8], help="k of the measured table")
    ap.add_argument("--quick", action="store_true", help="N <= 256 and 100k training samples")
    ap.add_argument("--max-n", type=int, default=1024, help="largest codebook designed (default 1024)")
    ap.add_argument("--samples-per-codeword", type=int, default=1000,
                    help="training samples per codeword (default 1000; at least 200000 in all)")
    ap.add_argument("--max-iter", type=int, default=1000, help="Lloyd iteration cap (default 1000)")
    ap.add_argument("--eval", type=int, default=200_000, help="fresh evaluation blocks per codebook")
    ap.add_argument("--json", help="also write both tables to this JSON file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    max_n, n_train, spc = (256, 100_000, 64) if args.quick else (args.max_n, 200_000, args.samples_per_codeword)

    pred = highrate.gain_table()
    print("Predicted high-rate gain over the scalar Lloyd-Max code (dB)")
    print(format_table(pred, PRED_COLUMNS))
    meas = measured_rows(args.dims, args.ks, max_n, n_train, spc, args.max_iter, args.eval, not args.no_progress)
    print()
    print("Measured gain at integer rate b (designed codebook vs exact Lloyd-Max MSE)")
    print(format_table(meas, MEAS_COLUMNS))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"predicted": pred, "measured": meas}, fh, indent=1)
    return 0 if all(math.isfinite(r["measured_gain_db"]) for r in meas) else 1


if __name__ == "__main__":
    sys.exit(main())
