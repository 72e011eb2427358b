"""``fibquant rd-sweep`` and ``codebook-sweep``, and the ``--workers`` / ``--scheduler`` options they share with ``kv-pareto``.

Both sweeps run on Dask (:mod:`fibquant_theory.experiments.sweep`): a ``LocalCluster``
of ``--workers`` processes on this machine (default one per core), or the cluster whose
scheduler is at ``--scheduler ADDRESS``. Every point is cached under ``<out>/points/``,
so running the command again resumes a sweep that stopped, and re-prints a finished one
without computing anything. ``kv-pareto`` runs its points through :func:`cluster_runner`,
which starts its cluster only when a point is missing and sizes it by memory by default
(:func:`fibquant_theory.kv.pareto.cluster_size`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fibquant_theory._table import format_table
from fibquant_theory.codecs.registry import METHODS, Flag, flag_help

__all__ = ["add_cluster_options", "add_sweep_commands", "check_cluster_args", "cluster_runner"]

_RD_COLUMNS = ["method", "setting", "d", "rate_bits", "mse", "mse_se", "gap_db", "shannon_lb", "cap_lb", "ip_mse"]
_CODEBOOK_COLUMNS = ["family", "d", "k", "n_codewords", "seed", "rate_bits", "n_shells", "train_mse", "heldout_mse",
                     "content_hash"]


def add_cluster_options(p: argparse.ArgumentParser, workers_default: str) -> None:
    """Add ``--workers N`` and ``--scheduler ADDRESS`` to a sweep command.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The subcommand's parser.
    workers_default : str
        What the command does without either option (the end of the ``--workers`` help).
    """
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help=f"run the points on a Dask LocalCluster of N worker processes, one point at a time each; "
                   f"0: in this process, without Dask ({workers_default})")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the points on the running Dask cluster whose scheduler is at ADDRESS "
                   "(e.g. tcp://10.0.0.5:8786; its workers need this package installed); not with --workers")


def check_cluster_args(args: argparse.Namespace) -> None:
    """Check ``--workers`` and ``--scheduler`` before any work starts.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments, with ``workers`` and ``scheduler``.

    Raises
    ------
    ValueError
        If both are given, or ``--workers`` is negative.
    """
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("give --workers or --scheduler, not both (a cluster has its own workers)")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 (in this process) or more, got {args.workers}")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@contextlib.contextmanager
def cluster_runner(workers: int | None, scheduler: str | None,
                   size: Callable[[int], tuple[int, str]] | None = None, desc: str = "sweep",
                   log: Callable[[str], None] = _stderr) -> Iterator[Any]:
    """The ``runner`` of :func:`~fibquant_theory.kv.pareto.kv_pareto` for ``--workers`` / ``--scheduler``.

    The cluster is started at the runner's first call, which :func:`~fibquant_theory.kv.pareto.kv_pareto`
    makes only when some point is not in the cache, and shut down when the block ends.
    Its size is ``workers``, or ``size(number of points)`` when ``workers`` is ``None``;
    each worker's numerical libraries get ``cores // workers`` threads (at least 1), so
    the workers together use the cores without oversubscribing them. The size, why,
    and the threads are told to ``log``.

    Parameters
    ----------
    workers : int or None
        0 without a scheduler: no runner (the points run in this process); ``>= 1``:
        a ``LocalCluster`` of that many workers; ``None``: of ``size(n)`` workers.
    scheduler : str or None
        Address of a running scheduler (its workers and their threads are its own).
    size : callable, optional
        ``size(n_points) -> (n_workers, reason)``: the default size (0: run in this
        process); default :func:`~fibquant_theory.experiments.sweep.default_workers`, one per core.
    desc : str
        The command, at the start of the log line.
    log : callable
        Called with one line saying where the points run (default: printed to stderr).

    Yields
    ------
    callable or None
        ``runner(func, items, context, names)``, which yields ``(index, result)`` as
        :func:`~fibquant_theory.experiments.sweep.map_completed` does, or ``None``.
    """
    from fibquant_theory.experiments.sweep import dask_client, default_workers, map_completed

    if scheduler is None and workers == 0:
        yield None
        return

    with contextlib.ExitStack() as stack:
        def runner(func: Callable[..., Any], items: Sequence[Any], context: Any,
                   names: Sequence[str]) -> Iterator[tuple[int, Any]]:
            points = f"{len(items)} point{'s' * (len(items) != 1)}"
            if scheduler is not None:
                client = stack.enter_context(dask_client(None, scheduler))
                log(f"{desc}: {points} on the Dask cluster at {scheduler}")
            else:
                cores = default_workers()
                if workers is not None:
                    n, why = workers, "--workers"
                elif size is not None:
                    n, why = size(len(items))
                else:
                    n, why = cores, f"one per core ({cores} cores)"
                if n == 0:
                    log(f"{desc}: {points} in this process ({why}; --workers N starts N workers)")
                    yield from map_completed(None, func, items, context, names)
                    return
                threads = max(1, cores // n)
                client = stack.enter_context(dask_client(n, compute_threads=threads))
                log(f"{desc}: {points} on a Dask LocalCluster of {n} worker{'s' * (n != 1)} ({why}), "
                    f"{threads} compute thread{'s' * (threads != 1)} each")
            yield from map_completed(client, func, items, context, names)

        yield runner


def _run(args: argparse.Namespace, points: list[dict[str, Any]], func: Any, version: int, desc: str) -> list[dict]:
    from fibquant_theory.experiments.sweep import run_sweep

    return run_sweep(points, func, Path(args.out) / "points", version=version, workers=args.workers,
                     scheduler=args.scheduler, progress=not args.no_progress, desc=desc)


def _report(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str], name: str) -> str:
    from fibquant_theory.kv.report import write_csv

    path = write_csv([{k: v for k, v in r.items() if k != "options"} for r in rows], Path(args.out) / name)
    if args.json:
        return json.dumps(rows)
    return f"{format_table(rows, columns)}\n\nwrote {path} ({len(rows)} points; cached under {Path(args.out) / 'points'})"


def _cmd_rd_sweep(args: argparse.Namespace) -> str:
    from fibquant_theory.experiments.sweep_grids import RD_POINT_VERSION, rd_grid, rd_point

    check_cluster_args(args)
    options = {option: getattr(args, option) for option in args.grid_options}
    points = rd_grid(args.method, args.dim, options, samples=args.samples, seed=args.seed)
    rows = _run(args, points, rd_point, RD_POINT_VERSION, "rd-sweep")
    return _report(args, rows, _RD_COLUMNS, "rd_sweep.csv")


def _cmd_codebook_sweep(args: argparse.Namespace) -> str:
    from fibquant_theory.experiments.sweep_grids import CODEBOOK_POINT_VERSION, codebook_grid, codebook_point

    check_cluster_args(args)
    points = codebook_grid(args.dim, args.block, args.codewords, args.seeds, family=args.family, n_train=args.train,
                           n_heldout=args.heldout, n_restarts=args.restarts)
    rows = _run(args, points, codebook_point, CODEBOOK_POINT_VERSION, "codebook-sweep")
    return _report(args, rows, _CODEBOOK_COLUMNS, "codebook_sweep.csv")


def add_sweep_commands(sub: Any, flags: list[tuple[Flag, list[str]]]) -> None:
    """Add ``rd-sweep`` and ``codebook-sweep`` to the ``fibquant`` parser's subparsers ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``fibquant`` parser.
    flags : list of (Flag, list of str)
        The codec option flags of ``fibquant rd`` and their methods (:func:`~fibquant_theory.cli.main.rd_flags`);
        here each takes one or more values.
    """
    default = "default: one worker per CPU core, one thread each"
    rd = sub.add_parser("rd-sweep", help="rate–distortion of methods × dimensions × rates on Dask, every point cached "
                        "(resumable)")
    rd.add_argument("--method", nargs="+", choices=sorted(METHODS), required=True,
                    help="methods; each one takes the product of the values of its own options below")
    rd.add_argument("--dim", type=int, nargs="+", required=True, help="vector dimensions d")
    for flag, owners in flags:
        rd.add_argument(flag.flag, dest=flag.option, type=flag.type, nargs="+", metavar=flag.metavar,
                        help=flag_help(flag, owners) + "; one or more")
    rd.add_argument("--samples", type=int, default=100_000, help="fresh unit vectors per point (default 100000)")
    rd.add_argument("--seed", type=int, default=0, help="seed of the codecs and of the vectors (default 0)")
    rd.add_argument("--out", default="build/rd-sweep",
                    help="output folder: rd_sweep.csv, and the point cache points/ (default build/rd-sweep)")
    add_cluster_options(rd, default)
    rd.add_argument("--no-progress", action="store_true")
    rd.add_argument("--json", action="store_true", help="print a JSON list, one object per point")
    rd.set_defaults(func=_cmd_rd_sweep, grid_options=[flag.option for flag, _ in flags])

    cb = sub.add_parser("codebook-sweep", help="design FibQuant codebooks d × k × N × seed on Dask, every design "
                        "cached (resumable)")
    cb.add_argument("--dim", type=int, nargs="+", required=True, help="vector dimensions d")
    cb.add_argument("--block", type=int, nargs="+", required=True, help="block sizes k (those that divide d)")
    cb.add_argument("--codewords", type=int, nargs="+", required=True, help="codebook sizes N >= 2")
    cb.add_argument("--seeds", type=int, nargs="+", default=[0], help="design seeds (default 0)")
    cb.add_argument("--family", default="shells", help="codebook family: shells (default), d4, e8, hurwitz")
    cb.add_argument("--train", type=int, default=200_000, help="training samples (default 200000)")
    cb.add_argument("--heldout", type=int, default=100_000, help="held-out samples (default 100000)")
    cb.add_argument("--restarts", type=int, default=3, help="Lloyd–Max restarts of the shells design (default 3)")
    cb.add_argument("--out", default="build/codebook-sweep",
                    help="output folder: codebook_sweep.csv, and the point cache points/ (default build/codebook-sweep)"
                    "; the designs themselves go to each worker's codebook cache ($FIBQUANT_CACHE_DIR)")
    add_cluster_options(cb, default)
    cb.add_argument("--no-progress", action="store_true")
    cb.add_argument("--json", action="store_true", help="print a JSON list, one object per design")
    cb.set_defaults(func=_cmd_codebook_sweep)
