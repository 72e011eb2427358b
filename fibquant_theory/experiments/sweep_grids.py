"""The grids of ``fibquant rd-sweep`` and ``fibquant codebook-sweep``: their points and point functions.

A rate–distortion point is one :func:`~fibquant_theory.experiments.rd.rate_distortion`
call (:func:`rd_point`); a codebook point is one
:func:`~fibquant_theory.codebooks.design.design_codebook` call (:func:`codebook_point`),
which also stores the design in the codebook cache of the machine that ran it. Both run
on :func:`~fibquant_theory.experiments.sweep.run_sweep`; every seed is in the point, so a
point's result does not depend on where or in which order it runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from fibquant_theory._validation import check_int
from fibquant_theory.codecs.registry import SPECS, get_spec

__all__ = ["CODEBOOK_POINT_VERSION", "RD_POINT_VERSION", "codebook_grid", "codebook_point", "rd_grid", "rd_point",
           "setting"]

#: Version of :func:`rd_point`'s results (part of every point's cache key).
RD_POINT_VERSION = 1
#: Version of :func:`codebook_point`'s results; the codebook format's own version is part of the point.
CODEBOOK_POINT_VERSION = 1


def _ints(values: Sequence[Any], name: str, minimum: int) -> list[int]:
    values = list(values)
    if not values:
        raise ValueError(f"{name}: give at least one value")
    return [check_int(v, name, minimum=minimum) for v in values]


def rd_grid(methods: Sequence[str], dims: Sequence[int], options: Mapping[str, Sequence[Any] | None] | None = None,
            samples: int = 100_000, seed: int = 0) -> list[dict[str, Any]]:
    """The rate–distortion points of ``methods`` × ``dims`` × each method's own option values.

    ``options`` maps codec option names (those of the registry's flags: ``bits``,
    ``block``, ``codewords``, ``n_train``, ``family``) to lists of values; every method
    takes the product of the options it has, and ignores the others (``--bits 2 3
    --block 2 4`` gives TurboQuant two points per ``d`` and FibQuant four). Points whose
    ``block`` does not divide ``d`` are left out.

    Parameters
    ----------
    methods : sequence of str
        Registered methods (:data:`~fibquant_theory.codecs.registry.SPECS`).
    dims : sequence of int
        Dimensions, each ``>= 2``.
    options : mapping of str to sequence, optional
        Option values; ``None`` or empty lists count as not given.
    samples : int
        Unit vectors per point (``>= 2``).
    seed : int
        Seed of the codecs and of the test vectors.

    Returns
    -------
    list of dict
        Points ``{"method", "d", "options", "samples", "seed"}``, method by method, then by ``d``.

    Raises
    ------
    ValueError
        On an unknown method or option, an option that none of the methods takes, a
        method without its required options, bad numbers, or a grid with no point.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("give at least one method")
    specs = [get_spec(m) for m in methods]
    dims = _ints(dims, "dim", 2)
    samples = check_int(samples, "samples", minimum=2)
    seed = check_int(seed, "seed", minimum=0)
    given = {k: list(v) for k, v in (options or {}).items() if v is not None and len(v)}
    known = {flag.option: flag for spec in SPECS.values() for flag in spec.flags}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown codec options {unknown}; the options are {sorted(known)}")
    taken = {flag.option for spec in specs for flag in spec.flags}
    foreign = [known[o].flag for o in given if o not in taken]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} applies to none of the methods {', '.join(methods)}")
    points = []
    for method, spec in zip(methods, specs):
        own = [flag.option for flag in spec.flags if flag.option in given]
        missing = spec.missing(own)
        if missing:
            needs = " and ".join(" or ".join(known[o].flag for o in group) for group in missing)
            raise ValueError(f"method {method} needs {needs}")
        for d in dims:
            for values in itertools.product(*(given[o] for o in own)):
                opts = dict(zip(own, values))
                if "block" in opts and d % int(opts["block"]):
                    continue
                points.append({"method": method, "d": d, "options": opts, "samples": samples, "seed": seed})
    if not points:
        raise ValueError(f"the grid has no point: no block size divides any of the dimensions {dims}")
    return points


def setting(options: Mapping[str, Any]) -> str:
    """A point's options as one cell of a table: ``"block=2 bits=3"`` (``""`` for none).

    Parameters
    ----------
    options : mapping
        Option names and values.

    Returns
    -------
    str
        ``name=value`` pairs, space-separated, in the given order.
    """
    return " ".join(f"{k}={v}" for k, v in options.items())


def rd_point(point: dict[str, Any]) -> dict[str, Any]:
    """One rate–distortion point of :func:`rd_grid`: the :func:`~fibquant_theory.experiments.rd.rate_distortion` row.

    Parameters
    ----------
    point : dict
        ``{"method", "d", "options", "samples", "seed"}``.

    Returns
    -------
    dict
        The row, with ``options`` (the point's) and ``setting`` (:func:`setting`) added.
    """
    from fibquant_theory.codecs.registry import make_codec
    from fibquant_theory.experiments.rd import rate_distortion

    options = dict(point["options"])
    codec = make_codec(point["method"], point["d"], seed=point["seed"], **options)
    row = rate_distortion(codec, n_samples=point["samples"], seed=point["seed"])
    return {**row, "options": options, "setting": setting(options)}


def codebook_grid(dims: Sequence[int], blocks: Sequence[int], codewords: Sequence[int], seeds: Sequence[int] = (0,),
                  family: str = "shells", n_train: int = 200_000, n_heldout: int = 100_000,
                  n_restarts: int = 3) -> list[dict[str, Any]]:
    """The codebook designs ``dims`` × ``blocks`` × ``codewords`` × ``seeds`` (blocks that do not divide ``d`` left out).

    Parameters
    ----------
    dims : sequence of int
        Dimensions ``d >= 2``.
    blocks : sequence of int
        Block sizes ``k >= 1``.
    codewords : sequence of int
        Codebook sizes ``N >= 2``.
    seeds : sequence of int
        Design seeds.
    family : str
        Codebook family (:mod:`fibquant_theory.codebooks.families`).
    n_train : int
        Training samples.
    n_heldout : int
        Held-out samples.
    n_restarts : int
        Lloyd–Max restarts (the shells design only; a structured family has none).

    Returns
    -------
    list of dict
        Points ``{"d", "k", "codewords", "seed", "family", "n_train", "n_heldout"[, "n_restarts"], "format"}``,
        ``format`` being the codebook format's version.

    Raises
    ------
    ValueError
        On bad numbers, an unknown family, or a grid with no point.
    """
    from fibquant_theory.codebooks.codebook import CODEBOOK_VERSION
    from fibquant_theory.codebooks.families import family_structure

    family_structure(family)
    dims, blocks = _ints(dims, "dim", 2), _ints(blocks, "block", 1)
    codewords, seeds = _ints(codewords, "codewords", 2), _ints(seeds, "seed", 0)
    fixed: dict[str, Any] = {"family": family, "n_train": check_int(n_train, "n_train", minimum=1),
                             "n_heldout": check_int(n_heldout, "n_heldout", minimum=1)}
    if family == "shells":
        fixed["n_restarts"] = check_int(n_restarts, "n_restarts", minimum=1)
    points = [{"d": d, "k": k, "codewords": n, "seed": s, **fixed, "format": CODEBOOK_VERSION}
              for d in dims for k in blocks if d % k == 0 and k <= d for n in codewords for s in seeds]
    if not points:
        raise ValueError(f"the grid has no point: no block size divides any of the dimensions {dims}")
    return points


def codebook_point(point: dict[str, Any]) -> dict[str, Any]:
    """Design (or load from the codebook cache) one codebook of :func:`codebook_grid`; its MSEs, hash and cache file.

    Parameters
    ----------
    point : dict
        A point of :func:`codebook_grid`.

    Returns
    -------
    dict
        :meth:`~fibquant_theory.codebooks.codebook.Codebook.summary` without the design
        time (it depends on the machine), and ``file``: the design's file in the codebook
        cache (:func:`~fibquant_theory.codebooks.design.cache_dir`) of the machine that ran the point.
    """
    from fibquant_theory.codebooks.design import cache_path, design_codebook

    options = {k: point[k] for k in ("n_train", "n_heldout", "n_restarts") if k in point}
    args = (point["d"], point["k"], point["codewords"], point["seed"])
    cb = design_codebook(*args, family=point["family"], cache=True, **options)
    info = {k: v for k, v in cb.summary().items() if k != "design_seconds"}
    return {**info, "file": str(cache_path(*args, family=point["family"], **options))}
