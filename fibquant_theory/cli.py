"""The ``fibquant`` command line.

Subcommands: ``rd`` (one rate–distortion point), ``demo`` (the main job).
Errors in the arguments exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._table import format_table
from .demo import RD_COLUMNS, run_demo
from .methods import METHODS, make_codec
from .rd import rate_distortion

__all__ = ["main", "build_parser"]


def _cmd_rd(args: argparse.Namespace) -> str:
    codec = make_codec(args.method, args.dim, bits=args.bits, seed=args.seed)
    row = rate_distortion(codec, n_samples=args.samples, seed=args.seed)
    if args.json:
        return json.dumps(row)
    return format_table([row], RD_COLUMNS)


def _cmd_demo(args: argparse.Namespace) -> str:
    return run_demo(out=args.out, n_samples=args.samples, seed=args.seed, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fibquant`` command."""
    parser = argparse.ArgumentParser(prog="fibquant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rd = sub.add_parser("rd", help="rate–distortion of one method at one rate on uniform unit vectors")
    rd.add_argument("--dim", type=int, required=True, help="vector dimension d")
    rd.add_argument("--bits", type=int, required=True, help="bits per coordinate (integer)")
    rd.add_argument("--method", choices=sorted(METHODS), default="turboquant")
    rd.add_argument("--samples", type=int, default=100_000, help="fresh unit vectors (default 100000)")
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--json", action="store_true", help="print one JSON object")
    rd.set_defaults(func=_cmd_rd)

    demo = sub.add_parser("demo", help="the main job: rate–distortion table and figure")
    demo.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    demo.add_argument("--samples", type=int, default=100_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fibquant`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(args.func(args))
    except ValueError as exc:
        print(f"fibquant {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
