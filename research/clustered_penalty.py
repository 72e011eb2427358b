#!/usr/bin/env python
"""Distortion penalty (dB) and CPU speed-up of the clustered top-T encoder against the exhaustive search.

For one codebook (a designed ``.npz`` file such as a shipped one, a ``.npy`` array
of points, or the unrefined multi-shell initial codebook of ``--dim/--block/--codewords``,
optionally refined by ``--lloyd-iters`` Lloyd iterations) and ``--blocks`` exact
spherical-Beta samples of the source of ``(d, k)``, every configuration
``K:T:S`` (clusters, clusters searched, clusters per codeword) is measured:

* ``penalty_dB`` = ``10 log10(E|y - Q_clustered(y)|^2 / E|y - Q_exhaustive(y)|^2)``;
* ``miss_%`` = blocks whose codeword differs from the exhaustive one;
* ``cands`` = distance evaluations per block (cost model ``K + T S N / K``);
* ``blocks_per_s`` (best of ``--repeats``; the exhaustive search on one thread, the
  clustered one on ``--threads``, default 1) and ``speedup``;
* ``build_s`` = time to cluster the codebook.

Example (about a minute on one core)::

    .venv/bin/python research/clustered_penalty.py --dim 128 --configs 256:8:1 256:6:2 --out /tmp/pen.json
    .venv/bin/python research/clustered_penalty.py --codebook path/to/d128_k8_N65536.npz --configs 256:8:1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numba
import numpy as np

from fibquant_theory._table import format_table
from fibquant_theory.codebooks.codebook import load_codebook
from fibquant_theory.codebooks.lloyd import lloyd_max
from fibquant_theory.experiments.encoder_table import initial_codebook
from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch, NearestCodewordSearch
from fibquant_theory.theory.source import SphericalBeta

COLUMNS = ["config", "penalty_dB", "miss_%", "cands", "blocks_per_s", "speedup", "build_s"]


def load_points(args: argparse.Namespace) -> tuple[np.ndarray, int, str]:
    """The codebook points ``(N, k)``, the dimension ``d`` of its source and a label."""
    if args.codebook:
        path = Path(args.codebook)
        if path.suffix == ".npy":
            return np.load(path), args.dim, path.name
        cb = load_codebook(path)
        return np.asarray(cb.points), int(cb.d), path.name
    points = initial_codebook(args.dim, args.block, args.codewords).points
    label = "initial"
    if args.lloyd_iters:
        train = SphericalBeta(args.dim, args.block).rvs(args.train, seed=args.seed + 11)
        points = lloyd_max(points, train, max_iter=args.lloyd_iters, tol=0.0).points
        label = f"initial+lloyd{args.lloyd_iters}"
    return points, args.dim, label


def timed(search: NearestCodewordSearch, y: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Codes, squared distances and the fastest of ``repeats`` runs (after a warm-up call)."""
    search.search(y[:4])
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        idx, dist = search.search(y)
        best = min(best, time.perf_counter() - t0)
    return idx, dist, best


def main(argv: list[str] | None = None) -> int:
    """Print the table and optionally write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codebook", help=".npz codebook file (load_codebook) or .npy points; default: the initial codebook")
    parser.add_argument("--dim", type=int, default=128, help="source dimension d (for .npy and the initial codebook)")
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--codewords", type=int, default=65536)
    parser.add_argument("--lloyd-iters", type=int, default=0, help="Lloyd iterations applied to the initial codebook")
    parser.add_argument("--train", type=int, default=300_000, help="training samples of those Lloyd iterations")
    parser.add_argument("--blocks", type=int, default=40_000, help="test blocks")
    parser.add_argument("--configs", nargs="+", default=["256:8:1", "256:4:2", "256:6:2"], help="K:T:S triples")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="Numba threads of the clustered search (default 1)")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)
    points, d, label = load_points(args)
    k = points.shape[1]
    y = SphericalBeta(d, k).rvs(args.blocks, seed=args.seed + 7)
    ref_idx, ref_dist, ref_s = timed(ExhaustiveSearch(points), y, 1)
    rows = [{"config": "exhaustive", "penalty_dB": 0.0, "miss_%": 0.0, "cands": len(points),
             "blocks_per_s": round(len(y) / ref_s), "speedup": 1.0, "build_s": 0.0}]
    for spec in args.configs:
        n_clusters, top, spill = (int(v) for v in spec.split(":"))
        t0 = time.perf_counter()
        search = ClusteredSearch(points, n_clusters=n_clusters, top=top, spill=spill, seed=args.seed)
        build = time.perf_counter() - t0
        idx, dist, sec = timed(search, y, args.repeats)
        rows.append({
            "config": f"K={n_clusters} T={top} S={spill}",
            "penalty_dB": round(10 * math.log10(float(dist.mean()) / float(ref_dist.mean())), 5),
            "miss_%": round(100 * float(np.mean(idx != ref_idx)), 3),
            "cands": round(search.candidates_per_block, 1),
            "blocks_per_s": round(len(y) / sec),
            "speedup": round(ref_s / sec, 2),
            "build_s": round(build, 2),
        })
        print(rows[-1], file=sys.stderr, flush=True)
    head = f"{label}: d={d}, k={k}, N={len(points)}, {len(y)} spherical-Beta blocks, exhaustive on one thread, clustered on {args.threads}"
    print(head)
    print(format_table(rows, COLUMNS))
    if args.out:
        Path(args.out).write_text(json.dumps({"codebook": label, "d": d, "k": k, "N": len(points), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
