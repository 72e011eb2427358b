"""Design the large FibQuant codebooks on a GPU within one time budget, and ship them (``--import-from``).

**On the GPU machine** (one command, at most ``--total-seconds`` from start to end)::

    python research/gpu_design_codebooks.py --out $OUT --total-seconds 480

designs :data:`DESIGNS` (``--design D,K,N,WEIGHT`` to choose others) with
``design_codebook(D, K, N, seed, device="cuda", cache=False, ...)`` (the torch design: the
CPU design's samples, shell search and restarts; exact assignment, integer cell sums).
The budget left is split over the designs still to do by their weights (time a design
does not use goes to the next). Each design is first *calibrated*: one exact assignment
on a prefix of its training samples is timed (with 1 and 2 float32 candidates; the faster
is kept, the bits do not depend on it), and the design's Lloyd iterations are capped by
``max_iter`` (and ``n_restarts=1`` when fewer than 240 iterations fit) so that it fits its
share: the cap is a design option, so the design is reproducible by that call (with the
default options when they fit). A wall-clock ``time_budget`` of 1.5 shares is only a safety
net (a design it cuts is flagged ``stopped_by_time_budget``: not reproducible by options).

Right after the first design, the same design is made twice more with ``n_restarts=1``
and a small ``max_iter`` (from its share): the SHA-256 of the two float64 codebooks' bytes
must agree (the repeat check). A tiny design on ``cpu`` and on the device is compared too.

Each design is rounded to float32 (:func:`~fibquant_theory.codebooks.torch_design.float32_rounded`:
half the bytes; its distortions recomputed on the design's samples) and written by
:func:`~fibquant_theory.codebooks.shipped.save_shipped`. Into ``--out`` go (at most 8 files,
each under 16 MiB: the device tool's limits): ``manifest.json`` (the package manifest
format), ``codebooks-<i>.tar`` (the ``.npz`` files, in tars of at most 15 MiB),
``summary.json`` (per design: seconds, calibration, options, iterations, stop reasons,
train and held-out MSE, the gap in dB to ``2^(-2b)``, SHA-256 of the float64 design and of
the shipped file; the checks) and ``design.log``. They are rewritten after every design, so
a run stopped early keeps what it finished; a failed design is recorded and the others go on.
Exit status 0 when every design and check succeeded.

**Here, afterwards** (copies the designs into ``fibquant_theory/codebooks/data/`` after
verifying every file, and merges the manifest)::

    python research/gpu_design_codebooks.py --import-from <the files_at folder>
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import logging
import math
import multiprocessing
import platform
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from fibquant_theory import config
from fibquant_theory.codebooks import torch_design
from fibquant_theory.codebooks.design import (
    _FACTOR_SAMPLES,
    _design_sizes,
    design_codebook,
    design_samples,
)
from fibquant_theory.codebooks.shells import valid_factorisations
from fibquant_theory.codebooks.shipped import (
    import_shipped,
    list_shipped,
    manifest_entry,
    save_shipped,
    write_manifest,
)
from fibquant_theory.codebooks.torch_device import resolve_device, torch_module

#: (d, k, N, weight): k=8 at d=64 and 128 (2 bits), k=16 (1 bit), k=32 below one bit.
DESIGNS = ((64, 8, 65536, 10.0), (128, 8, 65536, 5.0), (128, 16, 65536, 5.0), (64, 32, 256, 0.3),
           (64, 32, 4096, 0.5), (128, 32, 256, 0.3), (128, 32, 4096, 0.5))
#: Weight of the repeat check (two short runs of the first design).
REPEAT_WEIGHT = 2.0
#: The tiny design of the CPU-versus-device check, and its sample sizes.
CROSS_CHECK = (32, 4, 64)
CROSS_OPTIONS = {"n_train": 20_000, "n_heldout": 20_000}
#: Seconds kept back for the last writes and the cross check.
RESERVE = 15.0
TAR_BYTES = 15 << 20
_DEFAULT_ITER, _DEFAULT_RESTARTS = 300, 3


def _design_spec(text: str) -> tuple[int, int, int, float]:
    try:
        parts = text.split(",")
        d, k, n = (int(v) for v in parts[:3])
        w = float(parts[3]) if len(parts) == 4 else 1.0
        if len(parts) not in (3, 4):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"a design is D,K,N or D,K,N,WEIGHT, got {text!r}") from None
    if d < 2 or not 1 <= k <= d or d % k or n < 2 or not (math.isfinite(w) and w > 0):
        raise argparse.ArgumentTypeError(f"design {text!r}: need d >= 2, k dividing d, N >= 2, weight > 0")
    return d, k, n, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); exits with status 2 on a bad one."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (created); required unless --import-from")
    ap.add_argument("--total-seconds", type=float, default=480.0, help="budget of the whole run (default 480)")
    ap.add_argument("--design", type=_design_spec, action="append", metavar="D,K,N[,W]",
                    help="a codebook to design and its budget weight (repeat; default: DESIGNS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda", help="torch device (default cuda; cpu for a test)")
    ap.add_argument("--no-repeat", dest="repeat", action="store_false", help="skip the repeat check")
    ap.add_argument("--no-cross-check", dest="cross_check", action="store_false", help="skip the CPU-vs-device check")
    ap.add_argument("--n-train", type=int, default=None, help="design_codebook's n_train (default: its own)")
    ap.add_argument("--n-heldout", type=int, default=None, help="design_codebook's n_heldout")
    ap.add_argument("--samples-per-codeword", type=int, default=None, help="design_codebook's samples_per_codeword")
    ap.add_argument("--progress", action="store_true", help="tqdm progress bars")
    ap.add_argument("--sample-workers", type=int, default=2,
                    help="processes drawing the designs' samples ahead (default 2; 0: drawn when needed)")
    ap.add_argument("--import-from", type=Path, default=None, metavar="DIR",
                    help="no design: import a GPU run's --out folder into the package data (or --dest)")
    ap.add_argument("--dest", type=Path, default=None, help="with --import-from: the target folder")
    ap.add_argument("--replace", action="store_true", help="with --import-from: replace designs already shipped")
    args = ap.parse_args(argv)
    if args.import_from is not None:
        if not (args.import_from / "manifest.json").is_file():
            ap.error(f"--import-from {args.import_from}: no manifest.json there (the GPU run's --out folder?)")
        return args
    if args.out is None:
        ap.error("--out is required (or --import-from)")
    if not (math.isfinite(args.total_seconds) and args.total_seconds > 0):
        ap.error(f"--total-seconds must be a positive number, got {args.total_seconds}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if args.sample_workers < 0:
        ap.error(f"--sample-workers must be >= 0, got {args.sample_workers}")
    try:
        dev = resolve_device(args.device)
    except (ValueError, ImportError) as exc:
        ap.error(str(exc))
    if dev is None:
        ap.error("--device must be a torch device (cuda, cuda:i or cpu)")
    args.design = args.design or list(DESIGNS)
    return args


def say(msg: str) -> None:
    """A progress line on stderr, flushed."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Samples:
    """design_samples of every design, drawn ahead in worker processes in job order (the same arrays).

    Processes, not threads: the draws then neither hold the GIL against the thread that drives
    the GPU nor wait for it. ``workers=0``: drawn in this process when asked for.
    """

    def __init__(self, workers: int) -> None:
        self.pool = None
        if workers > 0:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds a CUDA context
            self.pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
        self.futures: dict[tuple[int, ...], Any] = {}

    def prefetch(self, *key: int) -> None:
        """Start drawing the samples of ``key`` (design_samples' arguments) in a worker."""
        if self.pool is not None and key not in self.futures:
            self.futures[key] = self.pool.submit(design_samples, *key)

    def __call__(self, *key: int) -> tuple[np.ndarray, np.ndarray]:
        if key not in self.futures:
            if self.pool is None:
                done: concurrent.futures.Future = concurrent.futures.Future()
                done.set_result(design_samples(*key))
                self.futures[key] = done
            else:
                self.prefetch(*key)
        try:
            return self.futures[key].result()
        except Exception as exc:  # noqa: BLE001 - a broken worker: draw them here (the same arrays)
            say(f"  sample worker failed ({exc!r}); drawing the samples in this process")
            done = concurrent.futures.Future()
            done.set_result(design_samples(*key))
            self.futures[key] = done
            return done.result()

    def drop(self, *key: int) -> None:
        """Forget the samples of a finished design."""
        self.futures.pop(key, None)

    def close(self) -> None:
        """Stop the workers (draws not begun are cancelled)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _sizes(d: int, k: int, n: int, seed: int, opts: dict[str, Any]) -> tuple[int, ...]:
    full = {"n_train": 200_000, "n_heldout": 100_000, "samples_per_codeword": 128, "n_search": 50_000,
            "assign": "auto", **opts}
    n_train = _design_sizes(n, k, full)[0]
    return d, k, n, seed, n_train, full["n_heldout"]


def calibrate(train: np.ndarray, n_code: int, device: Any) -> dict[str, Any]:
    """Seconds of one Lloyd iteration on all of ``train`` (timed on a prefix), and the faster candidate count."""
    torch = torch_module()
    dev = resolve_device(device)
    n_cal = min(train.shape[0], max(4 * n_code, 1 << 20))
    x = torch.from_numpy(train[:n_cal]).to(dev)
    pts = torch.from_numpy(np.ascontiguousarray(train[:n_code])).to(dev)
    times = {}
    for m in (1, 2, 1):  # the first run warms up
        a = torch_design.TorchAssigner(x, candidates=m)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        a.assign(pts)
        sync()
        times[m] = time.perf_counter() - t0
    best = min(times, key=times.get)
    per_iter = 1.15 * times[best] * train.shape[0] / n_cal
    return {"candidates": best, "seconds_per_iter": per_iter, "timed": {str(m): t for m, t in times.items()},
            "n_timed": n_cal}


def plan(share: float, d: int, k: int, n: int, cal: dict[str, Any], n_probe_frac: float) -> dict[str, Any]:
    """Design options that fit ``share`` seconds: the defaults, else capped iterations (deterministic)."""
    t = cal["seconds_per_iter"]
    shell = len(valid_factorisations(d, k, n)) * n_probe_frac * t
    host = 10.0 if n >= 16384 else 0.5  # the shell codebooks and the restarts' rotations, on the host (~8 s here)
    iters = int(max(0.0, share - shell - host - 3 * t) / t) if t > 0 else 10**9
    if iters >= (_DEFAULT_RESTARTS + 1) * _DEFAULT_ITER:
        return {}
    if iters >= 240:
        return {"max_iter": iters // (_DEFAULT_RESTARTS + 1)}
    return {"n_restarts": 1, "max_iter": max(2, iters // 2)}


def _float64_sha(cb: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(cb.points, dtype="<f8").tobytes()).hexdigest()


def _iterations(cb: Any) -> dict[str, Any]:
    p = cb.params
    return {"restart_n_iter": [r.get("n_iter") for r in p["restarts"]],
            "restart_stopped": [r.get("stopped", "skipped") for r in p["restarts"]],
            "final_n_iter": p["final_n_iter"], "final_stopped": p["final_stopped"],
            "total_iter": sum(r.get("n_iter", 0) for r in p["restarts"]) + p["final_n_iter"],
            "stopped_by_time_budget": p["stopped_by_time_budget"], "winner": p["init"]}


class Run:
    """The state of one GPU run: budget, samples, outputs (rewritten after every step)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + args.total_seconds
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="fibquant-designs-"))
        self.samples = Samples(args.sample_workers)
        self.opts = {n: getattr(args, n) for n in ("n_train", "n_heldout", "samples_per_codeword")
                     if getattr(args, n) is not None}
        self.entries: list[dict[str, Any]] = []
        torch = torch_module()
        dev = resolve_device(args.device)
        self.summary: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv, "total_seconds": args.total_seconds,
            "seed": args.seed, "options": self.opts, "device": str(dev), "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "numpy": np.__version__,
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "designs": [], "checks": {},
        }
        self.failed = 0

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def design(self, d: int, k: int, n: int, share: float, **extra: Any) -> tuple[Any, dict[str, Any]]:
        """One calibrated design (float64) and its record."""
        key = _sizes(d, k, n, self.args.seed, self.opts)
        t0 = time.perf_counter()
        train, _ = self.samples(*key)
        t_samples = time.perf_counter() - t0
        cal = calibrate(train, n, self.args.device)
        config.TORCH_CANDIDATES = cal["candidates"]
        n_probe = min(key[4], max(_FACTOR_SAMPLES, 8 * n))
        options = extra or plan(share - (time.perf_counter() - t0), d, k, n, cal, n_probe / key[4])
        safety = max(1.0, min(1.5 * share, self.left() - RESERVE))
        say(f"  d={d} k={k} N={n}: {key[4]} training samples ({t_samples:.1f} s), {cal['seconds_per_iter']:.3g} s "
            f"per iteration (candidates {cal['candidates']}), share {share:.0f} s -> options {options or 'defaults'}")
        t1 = time.perf_counter()
        cb = design_codebook(d, k, n, self.args.seed, device=self.args.device, cache=False, time_budget=safety,
                             progress=self.args.progress, **self.opts, **options)
        rec = {"d": d, "k": k, "N": n, "seed": self.args.seed, "rate_bits": cb.rate_bits, "share_seconds": share,
               "samples_seconds": t_samples, "calibration": cal, "options": {**self.opts, **options},
               "design_seconds": time.perf_counter() - t1, **_iterations(cb), "train_mse": cb.train_mse,
               "heldout_mse": cb.heldout_mse, "float64_sha256": _float64_sha(cb), "content_hash": cb.content_hash,
               "n_empty_fixed": cb.params["n_empty_fixed"]}
        return cb, rec

    def ship(self, cb: Any, rec: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        rounded = torch_design.float32_rounded(cb, self.args.device)
        path = save_shipped(rounded, self.work / f"fibquant-d{cb.d}-k{cb.k}-N{cb.n_codewords}-s{cb.seed}-torch.npz")
        entry = manifest_entry(rounded, path)
        self.entries = [e for e in self.entries if (e["d"], e["k"], e["N"]) != (cb.d, cb.k, cb.n_codewords)] + [entry]
        ref = 2.0 ** (-2.0 * cb.rate_bits)
        rec.update({"shipped_file": entry["file"], "shipped_sha256": entry["sha256"], "shipped_bytes": path.stat().st_size,
                    "shipped_content_hash": rounded.content_hash, "shipped_train_mse": rounded.train_mse,
                    "shipped_heldout_mse": rounded.heldout_mse, "gaussian_ref": ref,
                    "gap_db": 10.0 * math.log10(rounded.heldout_mse / ref), "round_seconds": time.perf_counter() - t0})

    def write(self) -> None:
        """Tars, manifest, summary: each replaced atomically, the manifest after the files it lists."""
        bins: list[list[Path]] = []
        for e in sorted(self.entries, key=lambda e: -(self.work / e["file"]).stat().st_size):
            size = (self.work / e["file"]).stat().st_size
            for b in bins:
                if sum(p.stat().st_size for p in b) + size <= TAR_BYTES:
                    b.append(self.work / e["file"])
                    break
            else:
                bins.append([self.work / e["file"]])
        for i, files in enumerate(bins):
            tmp = self.out / f".tmp-codebooks-{i}.tar"
            with tarfile.open(tmp, "w") as tar:
                for f in files:
                    tar.add(f, arcname=f.name)
            tmp.replace(self.out / f"codebooks-{i}.tar")
        for stale in self.out.glob("codebooks-*.tar"):
            if int(stale.stem.split("-")[1]) >= len(bins):
                stale.unlink()
        write_manifest(self.entries, self.work)
        (self.out / ".tmp-manifest.json").write_bytes((self.work / "manifest.json").read_bytes())
        (self.out / ".tmp-manifest.json").replace(self.out / "manifest.json")
        self.summary["elapsed_seconds"] = time.perf_counter() - self.t0
        self.summary["failed"] = self.failed
        tmp = self.out / ".tmp-summary.json"
        tmp.write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        tmp.replace(self.out / "summary.json")

    def repeat(self, d: int, k: int, n: int, share: float, cal: dict[str, Any]) -> dict[str, Any]:
        t = cal["seconds_per_iter"]
        n_probe = min(_sizes(d, k, n, self.args.seed, self.opts)[4], max(_FACTOR_SAMPLES, 8 * n))
        shell = len(valid_factorisations(d, k, n)) * n_probe / _sizes(d, k, n, self.args.seed, self.opts)[4] * t
        max_iter = max(1, int((share / 2 - shell - 2 * t) / (2 * t)))
        extra = {"n_restarts": 1, "max_iter": max_iter}
        runs = [self.design(d, k, n, share / 2, **extra) for _ in range(2)]
        (a, ra), (b, rb) = runs
        same = ra["float64_sha256"] == rb["float64_sha256"] and a.content_hash == b.content_hash
        cut = ra["stopped_by_time_budget"] or rb["stopped_by_time_budget"]
        return {"design": [d, k, n], "options": extra, "identical_bits": same, "time_budget_cut": cut,
                "float64_sha256": [ra["float64_sha256"], rb["float64_sha256"]],
                "content_hash": [a.content_hash, b.content_hash], "seconds": [ra["design_seconds"], rb["design_seconds"]],
                "total_iter": [ra["total_iter"], rb["total_iter"]], "heldout_mse": [a.heldout_mse, b.heldout_mse],
                "max_abs_diff": float(np.max(np.abs(a.points - b.points)))}


def run_designs(args: argparse.Namespace) -> int:
    """The GPU run (module docstring); returns the exit status (the patched sampler and candidate count restored)."""
    saved = torch_design.design_samples, config.TORCH_CANDIDATES, logging.getLogger("fibquant_theory").level
    run = Run(args)
    pkg_log = logging.getLogger("fibquant_theory")
    handlers = [logging.FileHandler(run.out / "design.log"), logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    handlers[1].setFormatter(logging.Formatter("[%(asctime)s]   %(message)s", "%H:%M:%S"))  # progress lines too
    for h in handlers:
        pkg_log.addHandler(h)
    pkg_log.setLevel(logging.INFO)
    try:
        return _run_designs(args, run)
    finally:
        torch_design.design_samples, config.TORCH_CANDIDATES, level = saved
        pkg_log.setLevel(level)
        for h in handlers:
            pkg_log.removeHandler(h)
            h.close()
        run.samples.close()


def _run_designs(args: argparse.Namespace, run: Run) -> int:
    torch_design.design_samples = run.samples  # the design's samples, drawn once (the same arrays)
    jobs: list[tuple[str, tuple[int, int, int], float]] = []
    for i, (d, k, n, w) in enumerate(args.design):
        jobs.append(("design", (d, k, n), w))
        if i == 0 and args.repeat:
            jobs.append(("repeat", (d, k, n), REPEAT_WEIGHT * w / 10.0))
    say(f"{len(args.design)} designs on {run.summary['device']} ({run.summary['gpu']}), {args.total_seconds:.0f} s")
    for _, spec, _ in jobs:  # every design's samples, in job order, while the GPU works
        run.samples.prefetch(*_sizes(*spec, args.seed, run.opts))
    cal0: dict[str, Any] | None = None
    for j, (kind, (d, k, n), w) in enumerate(jobs):
        if j and jobs[j - 1][1] != (d, k, n):
            run.samples.drop(*_sizes(*jobs[j - 1][1], args.seed, run.opts))  # that design is done
        share = max(0.0, run.left() - RESERVE) * w / sum(x[2] for x in jobs[j:])
        say(f"[{j + 1}/{len(jobs)}] {kind} d={d} k={k} N={n}: {run.left():.0f} s left, share {share:.0f} s")
        if run.left() < RESERVE:
            run.failed += 1
            if kind == "design":
                run.summary["designs"].append({"d": d, "k": k, "N": n, "error": "no time left"})
            else:
                run.summary["checks"]["repeat"] = {"design": [d, k, n], "error": "no time left"}
            say("  skipped: no time left")
            continue
        try:
            if kind == "design":
                cb, rec = run.design(d, k, n, share)
                cal0 = cal0 or rec["calibration"]
                run.ship(cb, rec)
                run.summary["designs"].append(rec)
                say("  " + json.dumps({f: rec[f] for f in ("total_iter", "final_stopped", "design_seconds",
                                                           "shipped_heldout_mse", "gap_db", "float64_sha256")}))
            else:
                check = run.repeat(d, k, n, share, cal0 or {"seconds_per_iter": 1.0})
                run.summary["checks"]["repeat"] = check
                run.failed += not (check["identical_bits"] or check["time_budget_cut"])
                say(f"  repeat: identical bits {check['identical_bits']} ({check['float64_sha256'][0][:16]}..., "
                    f"{check['total_iter']} iterations, {check['seconds']} s)")
        except Exception as exc:  # noqa: BLE001 - record it, go on with the next design
            run.failed += 1
            err = {"d": d, "k": k, "N": n, "error": repr(exc), "traceback": traceback.format_exc()}
            if kind == "design":
                run.summary["designs"].append(err)
            else:
                run.summary["checks"]["repeat"] = err
            say(f"  FAILED: {exc!r}")
        run.write()
    if args.cross_check and resolve_device(args.device).type != "cpu" and run.left() > 5:
        try:
            a = design_codebook(*CROSS_CHECK, args.seed, device="cpu", cache=False, **CROSS_OPTIONS)
            b = design_codebook(*CROSS_CHECK, args.seed, device=args.device, cache=False, **CROSS_OPTIONS)
            # the content hashes differ by params["device_type"] alone: the points, the other params and the MSEs must not
            pa, pb = ({f: v for f, v in cb.params.items() if f != "device_type"} for cb in (a, b))
            same = (_float64_sha(a) == _float64_sha(b) and pa == pb
                    and (a.train_mse, a.heldout_mse) == (b.train_mse, b.heldout_mse))
            run.summary["checks"]["cpu_vs_device"] = {"design": list(CROSS_CHECK), "identical_bits": same,
                                                      "float64_sha256": [_float64_sha(a), _float64_sha(b)],
                                                      "max_abs_diff": float(np.max(np.abs(a.points - b.points)))}
            run.failed += not same
            say(f"cpu vs {args.device}: identical bits {same}")
        except Exception as exc:  # noqa: BLE001
            run.failed += 1
            run.summary["checks"]["cpu_vs_device"] = {"error": repr(exc), "traceback": traceback.format_exc()}
    run.summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    run.write()
    say(f"done in {time.perf_counter() - run.t0:.0f} s, {run.failed} failed; outputs in {run.out}")
    return 1 if run.failed else 0


def import_run(source: Path, dest: Path | None, replace: bool) -> int:
    """Unpack a GPU run's --out folder (tars and manifest) and import it into the package data (or ``dest``)."""
    with tempfile.TemporaryDirectory(prefix="fibquant-import-") as tmp:
        folder = Path(tmp)
        (folder / "manifest.json").write_bytes((source / "manifest.json").read_bytes())
        for tar_path in sorted(source.glob("codebooks-*.tar")):
            with tarfile.open(tar_path) as tar:
                for member in tar.getmembers():
                    if not member.isfile() or Path(member.name).name != member.name:
                        raise ValueError(f"{tar_path}: unexpected member {member.name!r}")
                    (folder / member.name).write_bytes(tar.extractfile(member).read())
        imported = import_shipped(folder, dest, replace=replace)
    for row in list_shipped(dest):
        print(f"d={row['d']:4d} k={row['k']:3d} N={row['N']:6d} b={row['rate_bits']:.3f} {row['implementation']:5s} "
              f"heldout_mse={row['heldout_mse']:.6g} {row['file']}")
    print(f"imported {len(imported)} codebooks", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Design (``--out``) or import (``--import-from``); returns the exit status."""
    args = parse_args(argv)
    if args.import_from is not None:
        return import_run(args.import_from, args.dest, args.replace)
    return run_designs(args)


if __name__ == "__main__":
    sys.exit(main())
