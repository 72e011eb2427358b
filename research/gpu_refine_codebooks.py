"""More Lloyd–Max iterations for the shipped k = 8, N = 65536 codebooks on a GPU, within one time budget (#18).

**On the GPU machine** (one command, the package installed)::

    python research/gpu_refine_codebooks.py --out $OUT --total-seconds 520

For each design of ``--design D,K,N`` (default: the shipped ``64,8,65536`` and
``128,8,65536``) the shipped file is loaded (hash-checked), its training samples are drawn
once (:func:`~fibquant_theory.codebooks.torch_design.codebook_samples`) and
:func:`~fibquant_theory.codebooks.refine.refine_codebook` runs Lloyd–Max on the GPU for the
design's share of the time (``tol=0``: the time budget or a stalled iteration stops it;
the record's ``n_iter`` reproduces the result). The result is rounded to float32
(:func:`~fibquant_theory.codebooks.torch_design.float32_rounded`) and written under the
shipped file's own name, in the layout of ``research/gpu_design_codebooks.py``
(``manifest.json``, ``codebooks-0.tar``), so that, here::

    python research/gpu_design_codebooks.py --import-from <files_at> --replace

ships it. Before that, the repeat check: the first design is refined twice by
``--repeat-iters`` iterations from the same start; the SHA-256 of the two float64
results must agree (bit-identical reruns). ``summary.json`` has per design: the
iterations, seconds, seconds per iteration, held-out MSE before and after, the gap in dB
to ``2^(-2b)`` and the MSE history; ``refine.log`` the log. Exit status 0 when every
design and the check succeeded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fibquant_theory.codebooks.refine import refine_codebook  # noqa: E402
from fibquant_theory.codebooks.shipped import find_entry, load_entry, manifest_entry, save_shipped, write_manifest  # noqa: E402
from fibquant_theory.codebooks.torch_design import codebook_samples, float32_rounded  # noqa: E402

#: The shipped designs refined by default: k = 8, N = 65536 (b = 2) at d = 64 and 128.
DESIGNS = ((64, 8, 65536), (128, 8, 65536))


def refine_codebook_params(cb: Any, n_train: int) -> Any:
    """``cb`` with ``params["n_train_used"] = n_train`` (to draw those samples once for both refinements)."""
    from fibquant_theory.codebooks.refine import _with_params

    return _with_params(cb, {**dict(cb.params), "n_train_used": n_train})


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _design(text: str) -> tuple[int, int, int]:
    try:
        d, k, n = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a design is D,K,N, got {text!r}") from None
    return d, k, n


def sha64(cb: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(cb.points, dtype="<f8").tobytes()).hexdigest()


def gap_db(mse: float, rate_bits: float) -> float:
    return 10.0 * math.log10(mse / 2.0 ** (-2.0 * rate_bits))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--design", type=_design, action="append", metavar="D,K,N", help="shipped designs (default: DESIGNS)")
    ap.add_argument("--total-seconds", type=float, default=520.0, help="budget of the whole run (default 520)")
    ap.add_argument("--reserve", type=float, default=25.0, help="seconds kept per design for rounding and writing")
    ap.add_argument("--repeat-iters", type=int, default=3, help="iterations of the repeat check (0: skip it)")
    ap.add_argument("--max-iter", type=int, default=100_000, help="cap on the iterations of one design")
    ap.add_argument("--samples-per-codeword", type=int, default=0,
                    help="train on S * N fresh samples of the source (refine_codebook's n_train); 0: the design's own set")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    deadline = t0 + args.total_seconds
    designs = args.design or list(DESIGNS)
    out, work = args.out, Path(tempfile.mkdtemp(prefix="fibquant-refine-"))
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "refine.log", level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    summary: dict[str, Any] = {"designs": [], "checks": {}, "failed": 0}
    entries: list[dict[str, Any]] = []

    def write() -> None:
        if entries:
            write_manifest(entries, work)
            tmp = out / ".tmp-codebooks-0.tar"
            with tarfile.open(tmp, "w") as tar:
                for e in entries:
                    tar.add(work / e["file"], arcname=e["file"])
            tmp.replace(out / "codebooks-0.tar")
            (out / "manifest.json").write_bytes((work / "manifest.json").read_bytes())
        summary["elapsed_seconds"] = time.perf_counter() - t0
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")

    for i, (d, k, n) in enumerate(designs):
        try:
            entry = find_entry("shells", d, k, n, 0)
            if entry is None:
                raise ValueError(f"d={d} k={k} N={n} is not shipped")
            start = load_entry(entry)
            n_train = args.samples_per_codeword * n if args.samples_per_codeword else None
            ts = time.perf_counter()
            samples = codebook_samples(start if n_train is None else refine_codebook_params(start, n_train))
            t_samples = time.perf_counter() - ts
            say(f"d={d} k={k} N={n}: start held-out {start.heldout_mse:.8g} ({gap_db(start.heldout_mse, start.rate_bits):.4f} dB), "
                f"{len(samples[0])} training samples drawn in {t_samples:.1f} s")
            if i == 0 and args.repeat_iters > 0:
                a, b = (refine_codebook(start, args.repeat_iters, device=args.device, samples=samples, n_train=n_train)
                        for _ in range(2))
                same = sha64(a) == sha64(b) and a.train_mse == b.train_mse
                summary["checks"]["repeat"] = {"design": [d, k, n], "iterations": args.repeat_iters, "identical_bits": same,
                                               "float64_sha256": [sha64(a), sha64(b)], "heldout_mse": a.heldout_mse,
                                               "seconds": [a.params["refinements"][-1]["seconds"],
                                                           b.params["refinements"][-1]["seconds"]]}
                say(f"  repeat check ({args.repeat_iters} iterations twice): identical bits {same}")
                summary["failed"] += 0 if same else 1
                del a, b
            left = deadline - time.perf_counter()
            share = left / (len(designs) - i) - args.reserve
            say(f"  refining for {share:.0f} s")
            cb = refine_codebook(start, args.max_iter, device=args.device, time_budget=share, samples=samples, n_train=n_train)
            rec = dict(cb.params["refinements"][-1])
            rounded = float32_rounded(cb, args.device, samples=samples)
            path = save_shipped(rounded, work / entry["file"])
            entries.append(manifest_entry(rounded, path))
            history = list(rec["history"])
            summary["designs"].append({
                "d": d, "k": k, "N": n, "rate_bits": cb.rate_bits, "n_train": cb.params["n_train_used"], "samples_seconds": t_samples, "share_seconds": share,
                "n_iter": rec["n_iter"], "stopped": rec["stopped"], "seconds": rec["seconds"],
                "seconds_per_iter": rec["seconds"] / max(rec["n_iter"], 1),
                "start_content_hash": start.content_hash, "start_heldout_mse": start.heldout_mse,
                "start_gap_db": gap_db(start.heldout_mse, start.rate_bits),
                "refined_train_mse": cb.train_mse, "refined_heldout_mse": cb.heldout_mse,
                "shipped_heldout_mse": rounded.heldout_mse, "shipped_train_mse": rounded.train_mse,
                "gap_db": gap_db(rounded.heldout_mse, rounded.rate_bits), "float64_sha256": sha64(cb),
                "shipped_file": entry["file"], "shipped_sha256": entries[-1]["sha256"], "history": history,
            })
            say(f"  {rec['n_iter']} iterations ({rec['stopped']}) in {rec['seconds']:.1f} s: held-out "
                f"{rounded.heldout_mse:.8g} ({summary['designs'][-1]['gap_db']:.4f} dB)")
            del samples, cb, rounded, start
        except Exception:
            summary["failed"] += 1
            summary["designs"].append({"d": d, "k": k, "N": n, "error": traceback.format_exc(limit=8)})
            say(summary["designs"][-1]["error"])
        write()
    write()
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
