r"""FibQuant codebooks: design, storage with an integrity hash, and an on-disk cache.

A codebook of :math:`N` points of the unit ball :math:`B^k` quantizes one
block of ``k`` coordinates of a uniform unit vector of :math:`\mathbb{R}^d`
(the spherical-Beta source :math:`f_{d,k}`) at the rate
:math:`b = \log_2(N)/k` bits per coordinate. :func:`design_codebook` builds it:

1. **training set** — ``n_train`` exact samples of :math:`f_{d,k}` (at least
   ``samples_per_codeword * N``) and an independent held-out set of
   ``n_heldout`` samples;
2. **shell search** — for every factorisation :math:`N = S\cdot M`
   (:func:`~fibquant_theory.codebooks.shells.valid_factorisations`) the multi-shell
   initial codebook (Beta-quantile radii times quasi-uniform directions,
   :func:`~fibquant_theory.codebooks.shells.shell_codebook`) is scored by its distortion
   on the first ``max(20000, 8 N)`` training samples;
3. **multi-restart Lloyd–Max** — up to ``n_restarts`` initial codebooks
   (the two best factorisations, then the Vogel sunflower for ``k = 2`` or
   random training samples, then randomly rotated copies of the best
   factorisation) are refined by :func:`~fibquant_theory.codebooks.lloyd.lloyd_max` on the
   screening subset to relative tolerance ``restart_tol``; the best one is
   refined on the whole training set to ``tol``;
4. **held-out evaluation** by exhaustive (or exact k-d tree) nearest-codeword search.

With ``device="cuda"`` (or any torch device) steps 2–4 run on torch with the same
inputs (:mod:`~fibquant_theory.codebooks.torch_design`); shipped codebooks
(:mod:`~fibquant_theory.codebooks.shipped`) are returned before anything is designed.

That is the ``"shells"`` family, the default. ``family="d4"``, ``"e8"`` or
``"hurwitz"`` (:data:`~fibquant_theory.codebooks.families.FAMILIES`) instead
builds a product code of Beta-quantile radii and a lattice spherical code
(:class:`~fibquant_theory.codebooks.product.ProductStructure`): deterministic,
no Lloyd; its ``train_mse`` and ``heldout_mse`` are measured on the same exact
samples (same seeds, same sizes, same search) as the shells design of the same
``(d, k, N, seed)``, so the numbers are paired and comparable.

Distortions are reported per *unit vector*: ``train_mse`` and ``heldout_mse``
are :math:`E\|u-\hat u\|^2 = (d/k)\,E\|y - Q(y)\|^2` over all ``d``
coordinates, comparable with :attr:`ScalarQuantizer.mse
<fibquant_theory.theory.scalar.ScalarQuantizer.mse>`.

Every step is seeded and uses only machine-independent arithmetic (samples from
:func:`~fibquant_theory.theory.source.standard_normal` and
:func:`~fibquant_theory.numerics.portable_random.beta_from_bits`, radii and directions from
:mod:`~fibquant_theory.numerics.portable_math`, products from
:mod:`~fibquant_theory.numerics.fixed_order`, Lloyd kernels without fastmath), so the same
arguments give a bit-identical codebook, with the same content hash, on every
x86-64 machine (``tests/test_reproducibility.py`` pins a few hashes). Designs
are cached under :func:`cache_dir` (environment variable
``FIBQUANT_CACHE_DIR``, default ``~/.cache/fibquant``) once per
``(d, k, N, seed, version, design parameters)``; cached files carry a SHA-256
content hash that is checked on load.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codebooks.codebook import CODEBOOK_VERSION, Codebook, _canonical_json, load_codebook, save_codebook
from fibquant_theory.codebooks.directions import fibonacci_sunflower, resolve_direction_method
from fibquant_theory.codebooks.families import family_structure
from fibquant_theory.codebooks.lloyd import assignment_method, lloyd_max, nearest_codeword
from fibquant_theory.codebooks.product import ProductStructure
from fibquant_theory.codebooks.shells import beta_quantile_radii, shell_codebook, valid_factorisations
from fibquant_theory.codebooks.shipped import shipped_codebook
from fibquant_theory.codebooks.structure import CodebookStructure
from fibquant_theory.codebooks.torch_device import IMPLEMENTATION, NUMBA_DEVICES, resolve_device
from fibquant_theory.config import MAX_CODEWORDS
from fibquant_theory.numerics.fixed_order import matmul_rows, row_sumsq
from fibquant_theory.theory.rotation import haar_orthogonal
from fibquant_theory.theory.source import SphericalBeta

__all__ = ["cache_dir", "cache_path", "design_codebook", "design_samples"]

#: Keyword-only arguments of design_codebook that do not change the design.
_NOT_DESIGN_OPTIONS = ("cache", "progress")
#: Keyword-only arguments that choose the family; not among the shells design's options (its cache key and
#: hash are those of the design before families).
_FAMILY_ARGS = ("family", "lattice_shells")
#: Keyword-only arguments that choose the implementation, not the construction; a torch design's options carry
#: ``"implementation": "torch"`` instead (so its cache key and hash differ), the Numba design's options are unchanged.
_IMPLEMENTATION_ARGS = ("device", "time_budget")
#: Options of the shells design that also apply to the structured families (the sample sizes and the search).
_STRUCTURED_OPTIONS = ("n_train", "n_heldout", "samples_per_codeword", "assign")

#: Samples that score each factorisation's initial codebook (at least 8 per codeword).
_FACTOR_SAMPLES = 20_000


# -------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """The codebook cache folder: ``$FIBQUANT_CACHE_DIR`` or ``~/.cache/fibquant``.

    Returns
    -------
    pathlib.Path
        The folder (not created here).
    """
    env = os.environ.get("FIBQUANT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fibquant"


def _design_key(options: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical_json(options).encode()).hexdigest()[:12]


def cache_path(
    d: int, k: int, n_codewords: int, seed: int = 0, *, family: str = "shells", device: str | None = None,
    **design_options: Any,
) -> Path:
    """Cache file of the design ``(d, k, n_codewords, seed)`` of ``family`` with the given design options.

    ``design_options`` are the keyword arguments of :func:`design_codebook`
    that change the result (defaults filled in when omitted); for a structured
    family ``lattice_shells`` too. The shells family's file names are those of the
    design before families.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size.
    n_codewords : int
        Codebook size ``N``.
    seed : int, default 0
        Design seed.
    family : str, default "shells"
        Codebook family (:mod:`fibquant_theory.codebooks.families`).
    device : str or None
        ``None`` / ``"cpu-numba"``: the Numba design; any torch device: the torch design
        (one file for every torch device).
    **design_options
        Keyword arguments of :func:`design_codebook` (and ``lattice_shells``).

    Returns
    -------
    pathlib.Path
        The ``.npz`` file under :func:`cache_dir`.
    """
    if family == "shells":
        options = _design_options(**design_options)
        if device not in NUMBA_DEVICES:
            options["implementation"] = IMPLEMENTATION
        return _cache_file(family, d, k, n_codewords, seed, options)
    if device not in NUMBA_DEVICES:
        raise ValueError(f"device={device!r} applies only to the family 'shells', not {family!r}")
    structure = family_structure(family)
    variant = design_options.pop("lattice_shells", None)
    options = _structured_options(structure, d, k, n_codewords, variant, _design_options(**design_options))
    return _cache_file(family, d, k, n_codewords, seed, options)


def _cache_file(family: str, d: int, k: int, n_codewords: int, seed: int, options: dict[str, Any]) -> Path:
    """The cache file of a design with resolved ``options`` (no family part in a shells design's name)."""
    prefix = "fibquant" if family == "shells" else f"fibquant-{family}"
    if "implementation" in options:
        prefix += f"-{options['implementation']}"
    return cache_dir() / f"{prefix}-d{d}-k{k}-N{n_codewords}-s{seed}-v{CODEBOOK_VERSION}-{_design_key(options)}.npz"


def _design_options(**overrides: Any) -> dict[str, Any]:
    """The result-changing options of :func:`design_codebook`, its defaults filled in.

    The defaults are read from :func:`design_codebook`'s signature, so the cache key
    can never disagree with the function.
    """
    params = inspect.signature(design_codebook).parameters
    names = [
        n for n, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _NOT_DESIGN_OPTIONS + _FAMILY_ARGS + _IMPLEMENTATION_ARGS
    ]
    unknown = set(overrides) - set(names)
    if unknown:
        raise TypeError(f"unknown design options {sorted(unknown)}; known: {names}")
    return {n: overrides.get(n, params[n].default) for n in names}


def _structured_options(
    structure: type[CodebookStructure], d: int, k: int, n_code: int, lattice_shells: int | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The options of a structured family's design (``lattice_shells`` resolved); Lloyd options must be defaults."""
    if not issubclass(structure, ProductStructure):
        raise TypeError(f"family {structure.family!r} is not a structured family (no ProductStructure)")
    defaults = _design_options()
    changed = sorted(n for n in options if n not in _STRUCTURED_OPTIONS and options[n] != defaults[n])
    if changed:
        raise ValueError(
            f"options {changed} apply only to family 'shells' (family {structure.family!r} is not Lloyd-designed)"
        )
    variant = structure.build(d, k, n_code, lattice_shells).lattice_shells
    return {**{n: options[n] for n in _STRUCTURED_OPTIONS}, "lattice_shells": variant}


# ------------------------------------------------------------------- design
def _rank_shells(points: np.ndarray, n_shells: int) -> np.ndarray:
    """Shell labels by radius rank: the ``N/S`` smallest radii are shell 0, and so on."""
    n = points.shape[0]
    order = np.argsort(row_sumsq(points), kind="stable")
    labels = np.empty(n, dtype=np.int64)
    labels[order] = (np.arange(n) * n_shells) // n
    return labels


def _distortion(samples: np.ndarray, points: np.ndarray, assign: str) -> float:
    _, dist = nearest_codeword(samples, points, method=assign)
    return float(dist.mean())


def design_codebook(
    d: int,
    k: int,
    n_codewords: int,
    seed: int = 0,
    *,
    family: str = "shells",
    lattice_shells: int | None = None,
    n_train: int = 200_000,
    n_heldout: int = 100_000,
    samples_per_codeword: int = 128,
    n_restarts: int = 3,
    max_iter: int = 300,
    tol: float = 1e-4,
    restart_tol: float = 1e-3,
    directions: str = "auto",
    n_search: int = 50_000,
    assign: str = "auto",
    device: str | None = None,
    time_budget: float | None = None,
    cache: bool = True,
    progress: bool = False,
) -> Codebook:
    r"""Design (or load from the cache) the FibQuant codebook for :math:`f_{d,k}` with ``N`` codewords.

    Parameters
    ----------
    d : int
        Dimension of the unit vectors, ``d >= 2``.
    k : int
        Block size, ``1 <= k <= d``, dividing ``d``.
    n_codewords : int
        Codebook size ``2 <= N <= 2**30``; the rate is :math:`\log_2(N)/k` bits per coordinate.
    seed : int
        Seed of the samples and of the random initialisations.
    family : str
        Codebook family, a key of :data:`~fibquant_theory.codebooks.families.FAMILIES`:
        ``"shells"`` (the Lloyd-refined FibQuant design described above), or a
        structured family ``"d4"`` (``k = 4``, ``N = 24 S`` or ``48 S``), ``"e8"``
        (``k = 8``, ``N = 240 S``), ``"hurwitz"`` (``k = 4``, ``N = 24 S``). The
        structured families use only ``n_train``, ``n_heldout``,
        ``samples_per_codeword`` and ``assign``; the other options must keep their
        defaults.
    lattice_shells : int or None
        Spherical code of a structured family (``"d4"``: 1 for the 24 roots, 2 for
        the 48 vectors of the first two shells); ``None``: the first whose size
        divides ``N``. Must be ``None`` for ``"shells"``.
    n_train : int
        Training samples; the design uses ``max(n_train, samples_per_codeword * N)``.
    n_heldout : int
        Held-out samples for :attr:`Codebook.heldout_mse` (independent of the training set).
    samples_per_codeword : int
        Lower bound on training (and screening) samples per codeword.
    n_restarts : int
        Number of initial codebooks refined by Lloyd–Max (``>= 1``).
    max_iter : int
        Iteration cap of each Lloyd run.
    tol : float
        Relative-improvement tolerance of the final Lloyd run on all training samples.
    restart_tol : float
        Relative-improvement tolerance of the restarts on the screening subset.
    directions : str
        Direction family (see :func:`~fibquant_theory.codebooks.directions.resolve_direction_method`).
    n_search : int
        Screening subset size (at least ``samples_per_codeword * N``, at most the training set).
    assign : {"auto", "exhaustive", "kdtree"}
        Nearest-codeword search of the Lloyd iterations and of the evaluation (a torch
        design searches by the exact torch assignment throughout; the option stays in its key).
    device : str or None
        ``None`` or ``"cpu-numba"``: the CPU Numba design above (bit-identical on every
        x86-64 machine). A torch device (``"cuda"``, ``"cuda:1"``, ``"cpu"``): the same
        construction (same samples, shell search, initial codebooks and restarts) with
        the Lloyd iterations of :func:`~fibquant_theory.codebooks.torch_lloyd.lloyd_max_torch`
        (exact assignment, integer cell sums: the same bits on every run); its options
        carry ``"implementation": "torch"``, so it has its own cache file and hash. Family
        ``"shells"`` only.
    time_budget : float or None
        Torch design only: seconds after which no further Lloyd iteration starts (each
        Lloyd run does at least one; restarts not begun are skipped). A design cut
        short is recorded in ``params["stopped_by_time_budget"]`` and is not cached.
    cache : bool
        Use stored designs: first the codebooks shipped with the package
        (:mod:`~fibquant_theory.codebooks.shipped`, when this ``(d, k, N, seed, family)``
        is shipped and the options are the defaults or the shipped design's own; a
        corrupt shipped file raises ``ValueError``), then :func:`cache_dir`, where the
        design is stored. A cache file that
        cannot be read or verified is reported with a ``RuntimeWarning`` and
        replaced; a cache folder that cannot be written is reported with a
        ``RuntimeWarning`` and the design is returned uncached. ``False``: design afresh.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    Codebook

    Raises
    ------
    ValueError
        On an invalid argument, an unknown family (the message lists the registry), a
        block size the family does not support or an ``N`` it cannot make (the message
        lists the valid ``N``).

    Examples
    --------
    >>> cb = design_codebook(16, 2, 8, n_train=20_000, n_heldout=20_000, cache=False)
    >>> cb.points.shape, cb.rate_bits
    ((8, 2), 1.5)
    >>> design_codebook(64, 8, 480, family="e8", n_train=20_000, n_heldout=20_000, cache=False).n_shells
    2
    """
    structure = family_structure(family)
    d, k = check_dim_block(d, k)
    if d % k:
        raise ValueError(f"block size k={k} must divide the dimension d={d}")
    n_code = check_int(n_codewords, "n_codewords", minimum=2, maximum=MAX_CODEWORDS)
    seed = check_int(seed, "seed", minimum=0)
    options = _design_options(
        n_train=check_int(n_train, "n_train", minimum=1),
        n_heldout=check_int(n_heldout, "n_heldout", minimum=1),
        samples_per_codeword=check_int(samples_per_codeword, "samples_per_codeword", minimum=1),
        n_restarts=check_int(n_restarts, "n_restarts", minimum=1),
        max_iter=check_int(max_iter, "max_iter", minimum=1),
        tol=float(tol),
        restart_tol=float(restart_tol),
        directions=str(directions),
        n_search=check_int(n_search, "n_search", minimum=1),
        assign=str(assign),
    )
    for name in ("tol", "restart_tol"):
        if not (math.isfinite(options[name]) and options[name] >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {options[name]}")
    if assign not in ("auto", "exhaustive", "kdtree"):
        raise ValueError(f"assign must be 'auto', 'exhaustive' or 'kdtree', got {assign!r}")
    if family == "shells":
        if lattice_shells is not None:
            raise ValueError(f"lattice_shells applies only to the structured families, not 'shells' (got {lattice_shells!r})")
        method = resolve_direction_method(k, directions)
        defaults = _design_options()
    else:
        options = _structured_options(structure, d, k, n_code, lattice_shells, options)
        defaults = _structured_options(structure, d, k, n_code, None, _design_options())
    dev = resolve_device(device)
    if dev is not None:
        if family != "shells":
            raise ValueError(f"device={device!r} applies only to the Lloyd-designed family 'shells', not {family!r}")
        options["implementation"] = IMPLEMENTATION
    elif time_budget is not None:
        raise ValueError("time_budget applies only to the torch design (pass device='cuda' or another torch device)")
    if time_budget is not None and not (
        isinstance(time_budget, (int, float)) and not isinstance(time_budget, bool) and math.isfinite(time_budget)
        and time_budget >= 0
    ):
        raise ValueError(f"time_budget must be None or a finite number of seconds >= 0, got {time_budget!r}")
    if cache:
        shipped = shipped_codebook(family, d, k, n_code, seed, options, defaults)
        if shipped is not None:
            return shipped
    path = _cache_file(family, d, k, n_code, seed, options)

    if cache and path.exists():
        try:
            cb = load_codebook(path)
        except ValueError as exc:
            warnings.warn(f"ignoring a corrupt cached codebook, designing again: {exc}", RuntimeWarning, stacklevel=2)
        else:
            if (cb.family, cb.d, cb.k, cb.n_codewords, cb.seed) == (family, d, k, n_code, seed) and cb.params.get(
                "options"
            ) == options:
                return cb

    if dev is not None:
        from fibquant_theory.codebooks.torch_design import design_torch  # imports torch

        cb = design_torch(d, k, n_code, seed, options, method, dev, time_budget=time_budget, progress=progress)
    elif family == "shells":
        cb = _design(d, k, n_code, seed, options, method, progress)
    else:
        cb = _design_structured(structure, d, k, n_code, seed, options)
    if cache and not cb.params.get("stopped_by_time_budget", False):
        try:
            save_codebook(cb, path)
        except OSError as exc:
            warnings.warn(
                f"could not store the codebook in the cache ({exc}); returning it uncached "
                "(set FIBQUANT_CACHE_DIR to a writable folder, or pass cache=False)",
                RuntimeWarning,
                stacklevel=2,
            )
    return cb


def _initial_codebooks(
    d: int, k: int, n_code: int, seed: int, screen: np.ndarray, method: str, n_restarts: int,
    score: Callable[[np.ndarray], float], progress: bool,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, np.ndarray, np.ndarray | None, int]], dict[str, float]]:
    """Shell search (every factorisation scored by ``score``) and the restarts' initial codebooks.

    Shared by the CPU and the torch designs (the same initial codebooks, the same random draws).
    Returns the scored factorisations (best first), the initial codebooks and the factorisations'
    distortions per unit vector.
    """
    rng = np.random.default_rng([3, seed, d, k, n_code])
    n_search = screen.shape[0]
    pairs = valid_factorisations(d, k, n_code)
    scored = []
    for s, m in tqdm(pairs, desc="factorisations", disable=not progress, leave=False):
        pts, labels, radii = shell_codebook(d, k, s, m, method)
        scored.append((score(pts), s, m, pts, labels, radii))
    scored.sort(key=lambda t: (t[0], t[1]))
    factor_mse = {str(s): (d / k) * mse for mse, s, _, _, _, _ in sorted(scored, key=lambda t: t[1])}
    best_s = scored[0][1]
    inits: list[tuple[str, np.ndarray, np.ndarray | None, int]] = []
    for _, s, _, pts, labels, _ in scored[:2]:
        inits.append((f"{method}:S={s}", pts, labels, s))
    if k == 2:
        inits.append(("sunflower", fibonacci_sunflower(n_code, d if d >= 3 else None), None, best_s))
    inits.append(("samples", screen[rng.choice(n_search, n_code, replace=False)], None, best_s))
    r = 0
    while len(inits) < n_restarts:
        _, s, _, pts, labels, _ = scored[0]
        rot = haar_orthogonal(k, int(rng.integers(2**31))) if k >= 2 else -np.eye(1)
        inits.append((f"{method}:S={s}:rotated{r}", matmul_rows(pts, rot.T), labels, s))
        r += 1
    return scored, inits[:n_restarts], factor_mse


def _design_sizes(n_code: int, k: int, options: dict[str, Any]) -> tuple[int, int, int, str]:
    """Training, screening and shell-search sample counts and the resolved search of a shells design."""
    spc = options["samples_per_codeword"]
    n_train = max(options["n_train"], spc * n_code)
    n_search = min(n_train, max(options["n_search"], spc * n_code))
    n_probe = min(n_search, max(_FACTOR_SAMPLES, 8 * n_code))
    assign = assignment_method(n_code, k) if options["assign"] == "auto" else options["assign"]
    return n_train, n_search, n_probe, assign


def _design(
    d: int, k: int, n_code: int, seed: int, options: dict[str, Any], method: str, progress: bool
) -> Codebook:
    t0 = time.perf_counter()
    n_train, n_search, n_probe, assign = _design_sizes(n_code, k, options)
    train, heldout = design_samples(d, k, n_code, seed, n_train, options["n_heldout"])
    screen = train[:n_search]
    scale = d / k
    bar = tqdm(desc=f"codebook d={d} k={k} N={n_code}", total=3, disable=not progress, leave=False)

    # 1.-2. Shell search over the factorisations N = S * M; initial codebooks for the restarts.
    probe = screen[:n_probe]
    scored, inits, factor_mse = _initial_codebooks(
        d, k, n_code, seed, screen, method, options["n_restarts"], lambda pts: _distortion(probe, pts, assign), progress
    )
    bar.update(1)

    # 3. Multi-restart Lloyd on the screening subset, then the winner on all samples.
    runs = []
    for i, (name, pts, _, _) in enumerate(tqdm(inits, desc="restarts", disable=not progress, leave=False)):
        res = lloyd_max(
            pts, screen, max_iter=options["max_iter"], tol=options["restart_tol"], assign=assign, progress=progress,
            desc=f"restart {i}",
        )
        runs.append(res)
    winner = min(range(len(runs)), key=lambda i: (runs[i].mse, i))
    bar.update(1)
    final = lloyd_max(
        runs[winner].points, train, max_iter=options["max_iter"], tol=options["tol"], assign=assign,
        progress=progress, desc="final",
    )
    bar.update(1)
    bar.close()
    heldout_mse = scale * _distortion(heldout, final.points, assign)

    name, init_pts, labels, s_used = inits[winner]
    if labels is None:
        labels = _rank_shells(final.points, s_used)
    radii = beta_quantile_radii(d, k, s_used)
    params = {
        "options": options,
        "n_train_used": n_train,
        "n_search_used": n_search,
        "n_factor_samples": n_probe,
        "assign_used": assign,
        "direction_method": method,
        "factorisation_mse": factor_mse,
        "restarts": [
            {"init": nm, "screen_mse": scale * res.mse, "n_iter": res.n_iter, "converged": res.converged}
            for (nm, _, _, _), res in zip(inits, runs)
        ],
        "winner": winner,
        "init": name,
        "factorisation": [s_used, n_code // s_used],
        "final_n_iter": final.n_iter,
        "final_converged": final.converged,
        "n_empty_fixed": int(sum(r.n_empty_fixed for r in runs) + final.n_empty_fixed),
    }
    return Codebook(
        points=final.points,
        d=d,
        k=k,
        seed=seed,
        n_shells=s_used,
        shell_radii=radii,
        shell_index=labels,
        directions=method if ":" in name else name,
        params=params,
        train_mse=scale * final.mse,
        heldout_mse=heldout_mse,
        design_seconds=time.perf_counter() - t0,
        initial_points=init_pts,
    )


def design_samples(
    d: int, k: int, n_codewords: int, seed: int, n_train: int, n_heldout: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out samples of the design ``(d, k, N, seed)``: exact spherical-Beta blocks, seeded.

    Every design of ``(d, k, N, seed)`` (each family, and any other implementation
    that wants the same samples) draws them here.

    Parameters
    ----------
    d, k : int
        Dimension and block size.
    n_codewords : int
        Codebook size ``N`` (part of the seeds).
    seed : int
        Design seed.
    n_train, n_heldout : int
        Numbers of training and held-out blocks.

    Returns
    -------
    train : numpy.ndarray
        Training blocks, shape ``(n_train, k)``.
    heldout : numpy.ndarray
        Held-out blocks, shape ``(n_heldout, k)``.
    """
    source = SphericalBeta(d, k)
    train = source.rvs(n_train, seed=np.random.default_rng([1, seed, d, k, n_codewords]), method="radial")
    heldout = source.rvs(n_heldout, seed=np.random.default_rng([2, seed, d, k, n_codewords]), method="radial")
    return train, heldout


def _design_structured(
    structure_type: type[CodebookStructure], d: int, k: int, n_code: int, seed: int, options: dict[str, Any]
) -> Codebook:
    """A structured family's codebook; its MSEs on the samples, search and sizes the shells design uses."""
    t0 = time.perf_counter()
    structure = structure_type.build(d, k, n_code, options["lattice_shells"])  # type: ignore[attr-defined]
    n_train = max(options["n_train"], options["samples_per_codeword"] * n_code)
    assign = assignment_method(n_code, k) if options["assign"] == "auto" else options["assign"]
    train, heldout = design_samples(d, k, n_code, seed, n_train, options["n_heldout"])
    points = structure.points()
    scale = d / k
    params = {
        "options": options,
        "n_train_used": n_train,
        "assign_used": assign,
        "direction_set": structure.directions,
        "factorisation": [structure.n_shells, n_code // structure.n_shells],
    }
    return Codebook(
        points=points,
        d=d,
        k=k,
        seed=seed,
        params=params,
        train_mse=scale * _distortion(train, points, assign),
        heldout_mse=scale * _distortion(heldout, points, assign),
        design_seconds=time.perf_counter() - t0,
        initial_points=points,
        structure=structure,
    )
