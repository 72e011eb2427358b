#!/usr/bin/env python
"""GPU throughput of the clustered top-T search against the exhaustive search, N = 65536, k = 8 (issue #18).

For every codebook (``--codebook`` files, ``.npz`` as written by ``save_codebook`` or
``.npy`` points with ``--dim``; default: the unrefined multi-shell initial codebooks
of N = 65536, k = 8 for d = 64 and d = 128) and spherical-Beta blocks of its source:

* ``blocks_per_s`` of :class:`~fibquant_theory.gpu.clustered_encode.GPUClusteredSearch`
  in its bucketed layout and in the per-block layout for every ``--lanes``, for each precision (float64: the CPU kernel's arithmetic; float32),
  the best of ``--repeats`` searches on ``--blocks`` blocks already on the device
  (wall time from the launch to the synchronisation: the kernel and a 8-byte flag reset);
* the same for the exhaustive search (the same kernel with one cluster holding every
  codeword: all N codewords scored, ties to the lowest index) on ``--exhaustive-blocks``;
* checks: the float64 clustered codes equal the CPU kernel's (``ClusteredSearch.search``)
  on the first ``--check`` blocks, the float64 exhaustive codes equal the CPU exhaustive
  search's (``nearest_exhaustive(score="expanded")``) on ``--check-exhaustive`` blocks, and
  the share of float32 codes equal to the float64 ones;
* ``penalty_dB`` of the clustered search against the exhaustive one (float64, GPU, on
  the ``--exhaustive-blocks`` blocks) and the CPU single-thread blocks/s of both.

Prints a table and writes ``gpu_clustered_bench.json`` into ``--out``. About a minute
on an H200 (most of it compilation and the CPU reference)::

    python3 research/gpu_clustered_bench.py --out "$OUT"
    python3 research/gpu_clustered_bench.py --out "$OUT" --codebook d64.npz d128.npz
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from fibquant_theory.gpu._compat import cuda  # first: makes numba-cuda importable under NumPy 2.5
from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
from fibquant_theory.codebooks.codebook import load_codebook
from fibquant_theory.experiments.encoder_table import initial_codebook
from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch
from fibquant_theory.search.kernel import nearest_exhaustive
from fibquant_theory.theory.source import SphericalBeta

COLUMNS = ["codebook", "d", "search", "precision", "layout", "lanes", "blocks_per_s", "codes_equal"]


def codebooks(args: argparse.Namespace) -> list[tuple[str, int, np.ndarray]]:
    """``(label, d, points)`` of every codebook to measure."""
    if not args.codebook:
        return [(f"initial d={d}", d, initial_codebook(d, 8, 65536).points) for d in (64, 128)]
    out = []
    for name in args.codebook:
        path = Path(name)
        if path.suffix == ".npy":
            out.append((path.name, args.dim, np.load(path)))
        else:
            cb = load_codebook(path)
            out.append((path.name, int(cb.d), np.asarray(cb.points)))
    return out


def kernel_seconds(gpu: GPUClusteredSearch, y_dev: Any, top: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeats`` searches (launch to synchronisation, after a warm-up that compiles) and the codes."""
    codes = gpu.search(y_dev, top, to_host=False)
    cuda.synchronize()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        codes = gpu.search(y_dev, top, to_host=False)
        cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, codes.copy_to_host()


def sq_dist(y: np.ndarray, points: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``|y_i - points[idx_i]|^2`` (elementwise NumPy, no BLAS)."""
    diff = y - points[idx]
    return (diff * diff).sum(axis=1)


def measure(label: str, d: int, points: np.ndarray, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The table rows and the summary of one codebook."""
    k = points.shape[1]
    n_codewords = points.shape[0]
    t0 = time.perf_counter()
    clustered = ClusteredSearch(points, n_clusters=args.clusters, top=args.top, seed=0)
    build_s = time.perf_counter() - t0
    whole = ClusteredSearch(points, n_clusters=1, top=1)  # one cluster of every codeword: the exhaustive search
    y = SphericalBeta(d, k).rvs(args.blocks, seed=7)
    y_ex = y[: args.exhaustive_blocks]
    # CPU references (one thread)
    t0 = time.perf_counter()
    cpu_codes, _ = clustered.search(y[: args.check])
    cpu_clustered_bps = args.check / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    cpu_exact = nearest_exhaustive(y[: args.check_exhaustive], points, score="expanded")[0]
    cpu_exhaustive_bps = args.check_exhaustive / (time.perf_counter() - t0)
    exact_direct = ExhaustiveSearch(points).search(y[: args.check_exhaustive])[0]
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"codebook": label, "d": d, "k": k, "N": n_codewords, "clusters": args.clusters,
                               "top": args.top, "cluster_build_s": round(build_s, 2),
                               "cpu_blocks_per_s": {"clustered": round(cpu_clustered_bps), "exhaustive": round(cpu_exhaustive_bps)},
                               "cpu_exhaustive_scores_agree": bool(np.array_equal(cpu_exact, exact_direct))}
    codes64: dict[str, np.ndarray] = {}
    for precision in ("float64", "float32"):
        dt = np.float64 if precision == "float64" else np.float32
        y_dev = cuda.to_device(np.ascontiguousarray(y, dtype=dt))
        yx_dev = cuda.to_device(np.ascontiguousarray(y_ex, dtype=dt))
        for search, cpu, lanes_list, dev, top in (("clustered", clustered, args.lanes, y_dev, args.top),
                                                  ("exhaustive", whole, args.exhaustive_lanes, yx_dev, 1)):
            best_bps, best_codes = 0.0, None
            for layout, lanes in [("buckets", 0)] + [("per-block", n) for n in lanes_list]:
                gpu = GPUClusteredSearch(cpu, precision=precision, lanes=lanes or 8, layout=layout)
                sec, codes = kernel_seconds(gpu, dev, top, args.repeats)
                bps = dev.shape[0] / sec
                if precision == "float64":
                    ref = cpu_codes if search == "clustered" else cpu_exact
                    equal = bool(np.array_equal(codes[: ref.size], ref))
                else:
                    equal = round(float(np.mean(codes == codes64[f"{search} {layout} {lanes}"])), 6) if f"{search} {layout} {lanes}" in codes64 else None
                if precision == "float64":
                    codes64[f"{search} {layout} {lanes}"] = codes
                rows.append({"codebook": label, "d": d, "search": search, "precision": precision, "layout": layout, "lanes": lanes,
                             "blocks_per_s": round(bps), "codes_equal": equal})
                print(rows[-1], file=sys.stderr, flush=True)
                if bps > best_bps:
                    best_bps, best_codes = bps, codes
            summary[f"gpu_{search}_{precision}_blocks_per_s"] = round(best_bps)
            if precision == "float64":
                summary[f"_{search}_codes"] = best_codes
    cl = summary.pop("_clustered_codes")[: args.exhaustive_blocks]
    ex = summary.pop("_exhaustive_codes")
    summary["penalty_dB"] = round(10 * math.log10(float(sq_dist(y_ex, points, cl).mean()) / float(sq_dist(y_ex, points, ex).mean())), 5)
    summary["miss_%"] = round(100 * float(np.mean(cl != ex)), 3)
    summary["speedup_float64"] = round(summary["gpu_clustered_float64_blocks_per_s"] / summary["gpu_exhaustive_float64_blocks_per_s"], 1)
    summary["all_float64_codes_equal_cpu"] = all(r["codes_equal"] is True for r in rows if r["precision"] == "float64")
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 when a float64 check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_clustered_bench.json")
    parser.add_argument("--codebook", nargs="*", default=[], help=".npz codebooks or .npy points (default: initial d=64, d=128)")
    parser.add_argument("--dim", type=int, default=128, help="source dimension of .npy points")
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--lanes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--exhaustive-lanes", type=int, nargs="+", default=[1])
    parser.add_argument("--blocks", type=int, default=2_000_000, help="blocks of the clustered timing")
    parser.add_argument("--exhaustive-blocks", type=int, default=200_000, help="blocks of the exhaustive timing and the penalty")
    parser.add_argument("--check", type=int, default=20_000, help="blocks checked against the CPU clustered kernel")
    parser.add_argument("--check-exhaustive", type=int, default=1_000, help="blocks checked against the CPU exhaustive search")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    numba.set_num_threads(1)  # the CPU reference timings are single-thread
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    summaries = []
    for label, d, points in codebooks(args):
        r, s = measure(label, d, points, args)
        rows += r
        summaries.append(s)
    name = getattr(cuda.get_current_device(), "name", "simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    print(f"{name}: K={args.clusters}, T={args.top}, {args.blocks} blocks (exhaustive: {args.exhaustive_blocks}), device-resident blocks")
    header = "  ".join(f"{c:>14}" for c in COLUMNS)
    print(header)
    for r in rows:
        print("  ".join(f"{str(r[c]):>14}" for c in COLUMNS))
    for s in summaries:
        print(json.dumps(s))
    total = time.perf_counter() - t0
    result = {"device": name, "rows": rows, "summary": summaries, "seconds": round(total, 1), "args": vars(args)}
    (out / "gpu_clustered_bench.json").write_text(json.dumps(result, indent=1))
    print(f"total {total:.1f} s; wrote {out / 'gpu_clustered_bench.json'}")
    return 0 if all(s["all_float64_codes_equal_cpu"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
