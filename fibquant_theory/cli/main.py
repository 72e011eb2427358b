"""The ``fibquant`` command line.

``fibquant --help`` lists the subcommands and ``fibquant SUBCOMMAND --help`` their
options (the API reference prints all of them, from :func:`build_parser`). ``verify``
exits with status 1 when a check fails.
Errors in the arguments, and files that cannot be written, exit with status 2
and a one-line message; ``--out`` is checked before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fibquant_theory._table import format_table
from fibquant_theory.cli.kv import add_kv_commands
from fibquant_theory.cli.kv_fit import add_kv_fit_command
from fibquant_theory.cli.sweep import add_sweep_commands
from fibquant_theory.codecs.registry import METHODS, SPECS, Flag, flag_help, get_spec, make_codec
from fibquant_theory.experiments.demo import RD_COLUMNS, run_demo
from fibquant_theory.experiments.rd import rate_distortion

__all__ = ["main", "build_parser", "rd_flags"]


#: subcommands whose ``--out`` names a file ("file") or a folder of outputs ("folder")
_OUT_KINDS = {"codebook": "file", "figures": "folder", "demo": "folder", "kv-pareto": "folder", "kv-fit": "folder",
              "rd-sweep": "folder", "codebook-sweep": "folder"}


def _check_out(out: str | os.PathLike[str], kind: str) -> Path:
    """Check that ``--out`` can be written before any work starts; returns it as a :class:`~pathlib.Path`.

    Parameters
    ----------
    out : str or os.PathLike
        The path given to ``--out``; missing parent folders are fine (they are created).
    kind : {"file", "folder"}
        Whether ``out`` is the file to write or the folder to write into.

    Raises
    ------
    ValueError
        If ``out`` is an existing folder where a file is expected (or an
        existing non-folder where a folder is expected), if a parent of it is
        not a folder, or if the nearest existing folder is not writable.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    path = Path(out)
    if kind == "file" and path.is_dir():
        raise ValueError(f"--out {path} is a folder; give the path of the file to write (e.g. {path / 'codebook.npz'})")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder")
    existing = path if kind == "folder" and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"--out {path} lies under {existing}, which is a file, not a folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: cannot write in the folder {existing} (permission denied)")
    return path


def _scalar_mse(d: int, rate_bits: float) -> float | None:
    """TurboQuant's (Lloyd–Max scalar) MSE at an integer rate in 1..8, else ``None``."""
    from fibquant_theory.theory.scalar import lloyd_max_scalar

    rate = float(rate_bits)
    if abs(rate - round(rate)) > 1e-12 or not 1 <= round(rate) <= 8:
        return None
    return lloyd_max_scalar(d, int(round(rate))).mse


def rd_flags() -> list[tuple[Flag, list[str]]]:
    """The codec option flags of ``fibquant rd``: every method's flags, each with the methods that take it.

    Returns
    -------
    list of (Flag, list of str)
        The flags (registration order) and their methods.
    """
    found: dict[str, tuple[Flag, list[str]]] = {}
    for name, spec in SPECS.items():
        for flag in spec.flags:
            entry = found.setdefault(flag.flag, (flag, []))
            if entry[0] != flag:
                raise ValueError(f"two methods define the flag {flag.flag} differently: {entry[0]} and {flag}")
            entry[1].append(name)
    return list(found.values())


def _needs(groups: list[tuple[str, ...]], flags: dict[str, Flag]) -> str:
    """``--bits``, or ``--block K and --codewords N (or --bits B)``: the flags of the required option groups.

    The flags' argument names are shown when the message names more than one flag.
    """
    several = sum(len(g) for g in groups) > 1

    def show(option: str) -> str:
        if option not in flags:
            return option
        return f"{flags[option].flag} {flags[option].metavar}" if several else flags[option].flag

    return " and ".join(show(g[0]) + (f" (or {' or '.join(show(o) for o in g[1:])})" if len(g) > 1 else "") for g in groups)


def _cmd_rd(args: argparse.Namespace) -> str:
    spec = get_spec(args.method)
    mine = {flag.option: flag for flag in spec.flags}
    given = {flag.option: value for flag, _ in rd_flags() if (value := getattr(args, flag.option)) is not None}
    foreign = [(flag, owners) for flag, owners in rd_flags() if flag.option in given and flag.option not in mine]
    if foreign:
        owners = " or ".join(dict.fromkeys(m for _, ms in foreign for m in ms))
        verb = "applies" if len(foreign) == 1 else "apply"
        raise ValueError(f"{', '.join(f.flag for f, _ in foreign)} {verb} only to --method {owners}, not {args.method}")
    missing = spec.missing(list(given))
    if missing:
        raise ValueError(f"method {args.method} needs {_needs(missing, mine)}")
    # e.g. both --codewords and --bits: make_codec checks that they agree
    codec = make_codec(args.method, args.dim, seed=args.seed, **given)
    row = rate_distortion(codec, n_samples=args.samples, seed=args.seed)
    row["scalar_mse"] = _scalar_mse(args.dim, row["rate_bits"])
    if args.json:
        return json.dumps(row)
    return format_table([row], RD_COLUMNS)


def _cmd_codebook(args: argparse.Namespace) -> str:
    from fibquant_theory.codebooks.codebook import save_codebook
    from fibquant_theory.codebooks.design import design_codebook

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
    from fibquant_theory.experiments.figures import make_figures

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
    from fibquant_theory.experiments.verify import all_passed, format_report, run_checks

    checks = run_checks(args.only or None, progress=not args.no_progress and not args.json)
    args.exit_status = 0 if all_passed(checks) else 1
    if args.json:
        return json.dumps([c.as_record() for c in checks], indent=1)
    return format_report(checks)


def _cmd_methods(args: argparse.Namespace) -> str:
    from fibquant_theory.codecs.registry import SPECS

    rows = [
        {
            "method": spec.name,
            "rate": " + ".join(spec.rate_options) + (" (integer bits)" if spec.integer_rate else " (fractional rates)"),
            "kv": "yes" if spec.kv else "no",
            "options": ", ".join(spec.options),
            "description": spec.description,
        }
        for spec in SPECS.values()
    ]
    if args.json:
        return json.dumps(rows)
    return format_table(rows, ["method", "rate", "kv", "options", "description"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fibquant`` command.

    Returns
    -------
    argparse.ArgumentParser
        The parser, with every subcommand.
    """
    parser = argparse.ArgumentParser(prog="fibquant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rd = sub.add_parser("rd", help="rate–distortion of one method at one rate on uniform unit vectors")
    rd.add_argument("--dim", type=int, required=True, help="vector dimension d")
    for flag, owners in rd_flags():
        rd.add_argument(flag.flag, dest=flag.option, type=flag.type, metavar=flag.metavar, help=flag_help(flag, owners))
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

    fig = sub.add_parser(
        "figures",
        help="codebook figures: k=2 Voronoi cells (Fig. 2), MSE vs rate (Fig. 3), and Fig. 3 with the shipped "
        "codebooks and lattice families (fig3_frontier.png and .csv)",
    )
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

    methods = sub.add_parser("methods", help="the registered codecs: rate options, KV use, every option")
    methods.add_argument("--json", action="store_true", help="print a JSON list, one object per method")
    methods.set_defaults(func=_cmd_methods)

    add_sweep_commands(sub, rd_flags())
    add_kv_commands(sub)
    add_kv_fit_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fibquant`` console script; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when ``verify`` finds a failing check, 2 on an error in the arguments or the outputs.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in _OUT_KINDS and getattr(args, "out", None):
            _check_out(args.out, _OUT_KINDS[args.command])
        print(args.func(args))
    except (ValueError, OSError) as exc:  # bad arguments, or outputs that cannot be written
        message = " ".join(str(exc).split("\n"))
        print(f"fibquant {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(getattr(args, "exit_status", 0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
