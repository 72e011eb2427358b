"""The ``fibquant`` command line.

Subcommands: ``rd`` (one rate–distortion point), ``codebook`` (design one FibQuant
codebook), ``figures`` (the codebook figures), ``demo`` (the main job), ``verify``
(the proof checks; exit status 1 when one fails).
Errors in the arguments exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._table import format_table
from .demo import RD_COLUMNS, run_demo
from .kv_cli import add_kv_commands
from .methods import METHODS, make_codec
from .rd import rate_distortion

__all__ = ["main", "build_parser"]


def _scalar_mse(d: int, rate_bits: float) -> float | None:
    """TurboQuant's (Lloyd–Max scalar) MSE at an integer rate in 1..8, else ``None``."""
    from .scalar import lloyd_max_scalar

    rate = float(rate_bits)
    if abs(rate - round(rate)) > 1e-12 or not 1 <= round(rate) <= 8:
        return None
    return lloyd_max_scalar(d, int(round(rate))).mse


def _cmd_rd(args: argparse.Namespace) -> str:
    if args.method == "fibquant":
        if args.block is None or (args.codewords is None and args.bits is None):
            raise ValueError("method fibquant needs --block K and --codewords N (or --bits B, N = 2**(B*K))")
        options = {"block": args.block, "seed": args.seed}
        if args.train is not None:
            options["n_train"] = args.train
        options.update({"codewords": args.codewords} if args.codewords is not None else {"bits": args.bits})
        codec = make_codec("fibquant", args.dim, **options)
    else:
        if args.bits is None:
            raise ValueError(f"method {args.method} needs --bits")
        codec = make_codec(args.method, args.dim, bits=args.bits, seed=args.seed)
    row = rate_distortion(codec, n_samples=args.samples, seed=args.seed)
    row["scalar_mse"] = _scalar_mse(args.dim, row["rate_bits"])
    if args.json:
        return json.dumps(row)
    return format_table([row], RD_COLUMNS)


def _cmd_codebook(args: argparse.Namespace) -> str:
    from .codebook import design_codebook, save_codebook

    cb = design_codebook(
        args.dim,
        args.block,
        args.codewords,
        seed=args.seed,
        n_train=args.train,
        n_heldout=args.heldout,
        n_restarts=args.restarts,
        cache=not args.no_cache,
        progress=args.progress,
    )
    info = cb.summary()
    if args.out:
        info["path"] = str(save_codebook(cb, args.out))
    if args.json:
        return json.dumps(info)
    columns = ["d", "k", "n_codewords", "rate_bits", "n_shells", "train_mse", "heldout_mse", "design_seconds"]
    text = format_table([info], columns) + f"\ncontent hash {cb.content_hash}"
    return text + (f"\nwrote {info['path']}" if args.out else "")


def _cmd_figures(args: argparse.Namespace) -> str:
    from .figures import make_figures

    paths = make_figures(args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    return "\n".join(f"wrote {p}" for p in paths)


def _cmd_demo(args: argparse.Namespace) -> str:
    return run_demo(
        out=args.out, n_samples=args.samples, seed=args.seed, progress=not args.no_progress,
        fibquant=not args.scalar_only,
        kv=not (args.no_kv or args.scalar_only),
        kv_tokens=args.kv_tokens,
    )


def _cmd_verify(args: argparse.Namespace) -> str:
    from .verify import all_passed, format_report, run_checks

    checks = run_checks(args.only or None, progress=not args.no_progress and not args.json)
    args.exit_status = 0 if all_passed(checks) else 1
    if args.json:
        return json.dumps([c.as_record() for c in checks], indent=1)
    return format_report(checks)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fibquant`` command."""
    parser = argparse.ArgumentParser(prog="fibquant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rd = sub.add_parser("rd", help="rate–distortion of one method at one rate on uniform unit vectors")
    rd.add_argument("--dim", type=int, required=True, help="vector dimension d")
    rd.add_argument("--bits", type=int, help="bits per coordinate (integer; required except for fibquant)")
    rd.add_argument("--block", type=int, help="fibquant: block size k (divides d)")
    rd.add_argument("--codewords", type=int, help="fibquant: codebook size N (rate log2(N)/k)")
    rd.add_argument("--train", type=int, help="fibquant: codebook training samples (default 200000)")
    rd.add_argument("--method", choices=sorted(METHODS), default="turboquant")
    rd.add_argument("--samples", type=int, default=100_000, help="fresh unit vectors (default 100000)")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--json", action="store_true", help="print one JSON object")
    rd.set_defaults(func=_cmd_rd)

    cb = sub.add_parser("codebook", help="design (or load from the cache) one FibQuant codebook")
    cb.add_argument("--dim", type=int, required=True, help="vector dimension d")
    cb.add_argument("--block", type=int, required=True, help="block size k (divides d)")
    cb.add_argument("--codewords", type=int, required=True, help="codebook size N >= 2")
    cb.add_argument("--seed", type=int, default=0)
    cb.add_argument("--out", help="also write the codebook to this .npz file")
    cb.add_argument("--train", type=int, default=200_000, help="training samples (default 200000)")
    cb.add_argument("--heldout", type=int, default=100_000, help="held-out samples (default 100000)")
    cb.add_argument("--restarts", type=int, default=3, help="Lloyd–Max restarts (default 3)")
    cb.add_argument("--no-cache", action="store_true", help="neither read nor write the codebook cache")
    cb.add_argument("--progress", action="store_true", help="show progress bars")
    cb.add_argument("--json", action="store_true", help="print one JSON object")
    cb.set_defaults(func=_cmd_codebook)

    fig = sub.add_parser("figures", help="codebook figures: k=2 Voronoi cells (Fig. 2) and MSE vs rate (Fig. 3)")
    fig.add_argument("--out", default="build/figures", help="output folder (default build/figures)")
    fig.add_argument("--quick", action="store_true", help="fewer samples and rates (well under a minute)")
    fig.add_argument("--seed", type=int, default=0)
    fig.add_argument("--no-progress", action="store_true")
    fig.set_defaults(func=_cmd_figures)

    demo = sub.add_parser("demo", help="the main job: rate–distortion table and figure")
    demo.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    demo.add_argument("--samples", type=int, default=100_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--no-kv", action="store_true", help="skip the KV-cache part on the embedded model")
    demo.add_argument("--scalar-only", action="store_true", help="only the TurboQuant rate-distortion table (fast)")
    demo.add_argument("--kv-tokens", type=int, default=None, help="use only the first N tokens of the text")
    demo.set_defaults(func=_cmd_demo)

    ver = sub.add_parser("verify", help="run the symbolic / numerical / Monte Carlo proof checks (exit 1 on failure)")
    ver.add_argument("--json", action="store_true", help='print a JSON list of {"name","passed","value","expected","tolerance"}')
    ver.add_argument("--only", nargs="+", metavar="MODULE", help="proof modules to run (default: all)")
    ver.add_argument("--no-progress", action="store_true")
    ver.set_defaults(func=_cmd_verify)

    add_kv_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fibquant`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"fibquant {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(getattr(args, "exit_status", 0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
