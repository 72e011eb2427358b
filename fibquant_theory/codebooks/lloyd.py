r"""Nearest-codeword search and sample-based Lloyd–Max refinement (Numba kernels).

The codebook of FibQuant is refined by the generalised Lloyd algorithm on
samples drawn exactly from the spherical-Beta source :math:`f_{d,k}`:

1. **assignment** — every sample goes to its nearest codeword (squared
   Euclidean distance);
2. **centroid update** — every codeword moves to the mean of its cell;
   a codeword whose cell is empty is moved onto the training sample that is
   currently worst quantized (the largest squared error, ties to the lowest
   sample index), which splits the worst cell;
3. stop when the relative improvement of the training distortion
   :math:`(D_{t-1} - D_t)/D_{t-1}` falls to ``tol`` or below, or after
   ``max_iter`` assignments.

The assignment uses Hamerly's bounds: every sample keeps an upper bound on
the distance to its codeword and a lower bound on the distance to the
runner-up; after the codewords move by :math:`\delta_j` the bounds are
loosened by :math:`\delta`, and only the samples whose bounds overlap (or
that are not closer to their codeword than half its distance to the nearest
other codeword) are searched again: first among the nearest codewords of
their current codeword (a list of :math:`L` neighbours covering a radius
:math:`R_a`; any codeword off the list is at least :math:`R_a - u` away, so
the best listed one is provably the nearest when it is closer than that), and
only then, rarely, over all codewords. The search is exact, so the iterates are
those of the plain algorithm (up to exact ties); on the FibQuant designs it
skips most of the work after the first iterations.

Both steps are Numba kernels with an ``@njit(parallel=True)`` driver over
fixed blocks of samples (the serial kernels run when the work is small). The
full search is the direct-score scan of :mod:`~fibquant_theory.search.kernel`
(all :math:`\|x-c\|^2`, keeping the two smallest). The centroid update sums
over a fixed number of sample chunks (it depends on the sizes only, never on
the number of threads) and adds them in a fixed order, so the result is
bit-identical for any thread count. The kernels are compiled without
fastmath (no fused multiply-add, no reordering of sums) and every sum runs in
a fixed order, so the results are also bit-identical on every x86-64 machine.
Inputs whose squared distances could overflow float64 are refused with
``ValueError``. Large codebooks (``N >= 1024`` with ``k <= 8`` by default,
:data:`~fibquant_theory.config.KDTREE_MIN_CODEWORDS`) use an exact
:class:`scipy.spatial.cKDTree` search for the full searches instead. The
tunables are in the "CPU search and Lloyd" section of :mod:`fibquant_theory.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange, types
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from fibquant_theory import config
from fibquant_theory._validation import as_codebook, as_rows, check_distance_range, check_int
from fibquant_theory.numerics.fixed_order import row_sumsq
from fibquant_theory.search.kernel import _nearest2_direct, _squared_distance

__all__ = ["LloydResult", "assignment_method", "lloyd_max", "nearest_codeword"]

_f8 = types.float64
_f8_2d = types.float64[:, ::1]
_f8_1d = types.float64[::1]
_i8_1d = types.int64[::1]
_i8_2d = types.int64[:, ::1]
_f8_3d = types.float64[:, :, ::1]
_b1_1d = types.boolean[::1]
_i8 = types.int64


# ----------------------------------------------------------------- kernels
# Every kernel has a serial range kernel (cache=True) that does the work for
# rows [start, stop), and a parallel driver that splits the rows into blocks
# whose boundaries depend on the sizes only; each output element is computed
# by exactly one range call, so serial and parallel results are bit-identical.


@njit(
    _i8(_f8_2d, _f8_2d, _f8_1d, _f8_1d, _i8_1d, _f8_1d, _f8_1d, _f8_1d, _b1_1d, _f8, _f8, _i8, _f8, _i8, _i8),
    cache=True,
)
def _bounds_range(x, points, shift, s_half, idx, upper, lower, dist, need, max1, max2, arg1, margin, start, stop):  # pragma: no cover
    """Hamerly's bound test for rows ``start:stop``; returns how many rows it flags.

    ``shift[j]`` is how far codeword ``j`` moved since ``upper``/``lower`` were
    valid (``max1`` the largest shift, at codeword ``arg1``, ``max2`` the
    second largest); ``s_half[j]`` is half the distance from codeword ``j`` to
    its nearest other codeword. A row whose nearest codeword certainly did not
    change gets refreshed bounds and its exact squared distance in ``dist``;
    the other rows are flagged in ``need`` for a full search. ``margin`` is
    the relative safety margin of the test against rounding.
    """
    count = 0
    for i in range(start, stop):
        a = idx[i]
        u = upper[i] + shift[a]
        lo = lower[i] - (max2 if a == arg1 else max1)
        z = max(lo, s_half[a]) * (1.0 - margin)
        s = _squared_distance(x, i, points, a)
        flag = False
        if u > z:
            u = np.sqrt(s)
            flag = u > z
        need[i] = flag
        upper[i] = u
        lower[i] = lo
        dist[i] = s
        if flag:
            count += 1
    return count


@njit(
    _i8(_f8_2d, _f8_2d, _f8_1d, _f8_1d, _i8_1d, _f8_1d, _f8_1d, _f8_1d, _b1_1d, _f8, _f8, _i8, _f8, _i8),
    parallel=True,
    cache=True,
)
def _bounds_parallel(x, points, shift, s_half, idx, upper, lower, dist, need, max1, max2, arg1, margin, block):  # pragma: no cover
    """:func:`_bounds_range` over all rows, ``block`` rows per parallel task; returns the number flagged."""
    n = x.shape[0]
    n_blocks = (n + block - 1) // block
    total = 0
    for b in prange(n_blocks):
        total += _bounds_range(
            x, points, shift, s_half, idx, upper, lower, dist, need, max1, max2, arg1, margin,
            b * block, min(n, (b + 1) * block),
        )
    return total


@njit(types.void(_f8_2d, _i8_1d, _f8_1d, _f8_3d, _f8_2d, _f8_1d, _i8), cache=True)
def _sums_chunk(x, idx, dist, sums, counts, sse, c):  # pragma: no cover - compiled
    """Cell sums ``sums[c, j, :]``, cell sizes ``counts[c, j]`` and distortion ``sse[c]`` of sample chunk ``c``."""
    n, k = x.shape
    n_chunks = sums.shape[0]
    step = (n + n_chunks - 1) // n_chunks
    start = c * step
    stop = min(n, start + step)
    acc = 0.0
    for i in range(start, stop):
        j = idx[i]
        counts[c, j] += 1.0
        for t in range(k):
            sums[c, j, t] += x[i, t]
        acc += dist[i]
    sse[c] = acc


@njit(types.void(_f8_2d, _i8_1d, _f8_1d, _f8_3d, _f8_2d, _f8_1d), parallel=True, cache=True)
def _sums_parallel(x, idx, dist, sums, counts, sse):  # pragma: no cover - compiled
    """:func:`_sums_chunk` for every chunk, chunks in parallel."""
    for c in prange(sums.shape[0]):
        _sums_chunk(x, idx, dist, sums, counts, sse, c)


@njit(types.void(_f8_2d, _i8_1d, _f8_1d, _f8_3d, _f8_2d, _f8_1d), cache=True)
def _sums_serial(x, idx, dist, sums, counts, sse):  # pragma: no cover - compiled
    """:func:`_sums_chunk` for every chunk, one after the other."""
    for c in range(sums.shape[0]):
        _sums_chunk(x, idx, dist, sums, counts, sse, c)


@njit(types.void(_f8_3d, _f8_2d, _f8_2d, _f8_1d), cache=True)
def _reduce_chunks(sums, counts, total, total_counts):  # pragma: no cover - compiled
    """Add the chunk partial sums in chunk order (deterministic)."""
    n_chunks, n_code, k = sums.shape
    for j in range(n_code):
        total_counts[j] = 0.0
        for t in range(k):
            total[j, t] = 0.0
    for c in range(n_chunks):
        for j in range(n_code):
            total_counts[j] += counts[c, j]
            for t in range(k):
                total[j, t] += sums[c, j, t]


@njit(
    _i8(_f8_2d, _f8_2d, _i8_2d, _f8_1d, _i8_1d, _i8_1d, _f8_1d, _f8_1d, _f8_1d, _b1_1d, _f8, _i8, _i8),
    cache=True,
)
def _local_range(x, points, nbr, reach, sub, idx, upper, lower, dist, fallback, margin, start, stop):  # pragma: no cover
    """Exact search among the listed neighbours of the current codeword, for samples ``sub[start:stop]``.

    ``nbr[a]`` lists the codewords nearest to codeword ``a`` and every other
    codeword is at least ``reach[a]`` from it, hence at least ``reach[a] - u``
    from a sample at distance ``u`` of ``a``. When the best listed codeword is
    within that radius it is the nearest of all; the runner-up bound is
    ``min(second listed, reach[a] - u)``. Otherwise ``fallback[p]`` is set.
    Returns the number of fallbacks (``margin``: as in :func:`_bounds_range`).
    """
    n_list = nbr.shape[1]
    count = 0
    for p in range(start, stop):
        i = sub[p]
        a = idx[i]
        s_a = _squared_distance(x, i, points, a)
        best = a
        best_s = s_a
        second = np.inf
        for q in range(n_list):
            j = nbr[a, q]
            if j == a:
                continue
            s = _squared_distance(x, i, points, j)
            if s < best_s or (s == best_s and j < best):
                second = best_s
                best_s = s
                best = j
            elif s < second:
                second = s
        bound = reach[a] - np.sqrt(s_a)
        d_best = np.sqrt(best_s)
        if d_best <= bound * (1.0 - margin):
            idx[i] = best
            dist[i] = best_s
            upper[i] = d_best
            lower[i] = min(np.sqrt(second), bound)
            fallback[p] = False
        else:
            fallback[p] = True
            count += 1
    return count


@njit(
    _i8(_f8_2d, _f8_2d, _i8_2d, _f8_1d, _i8_1d, _i8_1d, _f8_1d, _f8_1d, _f8_1d, _b1_1d, _f8, _i8),
    parallel=True,
    cache=True,
)
def _local_parallel(x, points, nbr, reach, sub, idx, upper, lower, dist, fallback, margin, block):  # pragma: no cover
    """:func:`_local_range` over all of ``sub``, ``block`` samples per parallel task; returns the number of fallbacks."""
    m = sub.shape[0]
    n_blocks = (m + block - 1) // block
    total = 0
    for b in prange(n_blocks):
        total += _local_range(
            x, points, nbr, reach, sub, idx, upper, lower, dist, fallback, margin,
            b * block, min(m, (b + 1) * block),
        )
    return total


def _parallel(work: int) -> bool:
    """Use the parallel driver when a kernel has at least ``PARALLEL_MIN_WORK`` flops to do."""
    return work >= config.PARALLEL_MIN_WORK


def assignment_method(n_codewords: int, k: int) -> str:
    """The assignment search :func:`lloyd_max` uses with ``assign="auto"``.

    ``"kdtree"`` (exact :class:`scipy.spatial.cKDTree` search) for
    ``n_codewords >= 1024`` and ``k <= 8`` (``KDTREE_MIN_CODEWORDS`` and
    ``KDTREE_MAX_BLOCK`` of :mod:`fibquant_theory.config`), where it beats the
    exhaustive scan; ``"exhaustive"`` (the Numba kernel) otherwise.

    Parameters
    ----------
    n_codewords : int
        Codebook size ``N``.
    k : int
        Block size.

    Returns
    -------
    str
        ``"kdtree"`` or ``"exhaustive"``.
    """
    return "kdtree" if (n_codewords >= config.KDTREE_MIN_CODEWORDS and k <= config.KDTREE_MAX_BLOCK) else "exhaustive"


def _nearest2_kdtree(x: np.ndarray, points: np.ndarray, tree: cKDTree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest index, its squared distance and the runner-up's, by an exact k-d tree query (distances recomputed)."""
    n = x.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    if points.shape[0] == 1:
        idx = np.zeros(n, dtype=np.int64)
        dist2 = np.full(n, np.inf)
    else:
        d12, i12 = tree.query(x, k=2, workers=-1)
        idx = np.ascontiguousarray(i12[:, 0], dtype=np.int64)
        dist2 = np.ascontiguousarray(d12[:, 1] ** 2)
    dist = row_sumsq(x - points[idx])
    return idx, dist, np.maximum(dist2, dist)


def nearest_codeword(
    blocks: np.ndarray, points: np.ndarray, *, method: str = "exhaustive"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest codeword (squared Euclidean distance) of every block.

    Parameters
    ----------
    blocks : array_like, shape (n, k)
        Points to quantize (finite reals).
    points : array_like, shape (N, k)
        Codebook, ``N >= 1``.
    method : {"exhaustive", "kdtree", "auto"}
        ``"exhaustive"`` scans all ``N`` codewords with the parallel Numba
        kernel of :mod:`~fibquant_theory.search.kernel` (direct score, ties go
        to the lowest index); ``"kdtree"`` uses an exact
        :class:`scipy.spatial.cKDTree` query (ties may resolve differently);
        ``"auto"`` picks by :func:`assignment_method`.

    Returns
    -------
    indices : numpy.ndarray, shape (n,), int64
        Index of the nearest codeword of each block.
    sq_distances : numpy.ndarray, shape (n,), float64
        :math:`\\|y_i - c_{\\mathrm{idx}_i}\\|^2`, computed exactly from the difference.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> idx, d2 = nearest_codeword(np.array([[0.9, 0.1], [0.2, 0.0]]), pts)
    >>> idx.tolist(), np.round(d2, 3).tolist()
    ([1, 0], [0.02, 0.04])
    """
    pts = as_codebook(points, "points")
    x = as_rows(blocks, "blocks", k=pts.shape[1])
    check_distance_range(x, pts, "blocks")
    if method == "auto":
        method = assignment_method(pts.shape[0], pts.shape[1])
    if method == "exhaustive":
        idx, dist, _ = _nearest2_direct(x, pts)
        return idx, dist
    if method == "kdtree":
        idx, dist, _ = _nearest2_kdtree(x, pts, cKDTree(pts))
        return idx, dist
    raise ValueError(f"method must be 'exhaustive', 'kdtree' or 'auto', got {method!r}")


def _n_neighbours(n_code: int, k: int) -> int:
    """Listed neighbours per codeword for the local search; 0 (no local search) below ``LOCAL_MIN_CODEWORDS``.

    Small codebooks are scanned faster in full (the scan is vectorised over
    codewords). Measured on 200k spherical-Beta samples at d = 64, N = 4096:
    32 neighbours cut the Lloyd CPU time 2.4x at k = 4, 128 neighbours 1.5x at k = 8.
    """
    if n_code < config.LOCAL_MIN_CODEWORDS:
        return 0
    return int(min(n_code - 1, config.LOCAL_MAX_NEIGHBOURS, 8 * 2 ** (k / 2)))


def _neighbour_graph(points: np.ndarray, n_list: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest codewords of every codeword (self included), the radius they cover, half separations.

    Returns ``nbr`` (N, L) int64, ``reach`` (N,) — every unlisted codeword is at
    least this far (``inf`` when all are listed) — and ``s_half`` (N,), half the
    distance to the nearest other codeword (``inf`` when N = 1).
    """
    n_code = points.shape[0]
    if n_code == 1:
        return np.zeros((1, 1), dtype=np.int64), np.full(1, np.inf), np.full(1, np.inf)
    m = min(n_code, max(2, n_list + 1))
    dd, nbr = cKDTree(points).query(points, k=m, workers=-1)
    reach = np.full(n_code, np.inf) if m == n_code else np.ascontiguousarray(dd[:, -1])
    s_half = np.ascontiguousarray(0.5 * dd[:, 1])
    return np.ascontiguousarray(nbr, dtype=np.int64), reach, s_half


def _local_search(
    x: np.ndarray, points: np.ndarray, nbr: np.ndarray, reach: np.ndarray, sub: np.ndarray,
    idx: np.ndarray, upper: np.ndarray, lower: np.ndarray, dist: np.ndarray,
) -> np.ndarray:
    """Run :func:`_local_range` on the samples ``sub``; returns the samples that need a full search."""
    fallback = np.empty(sub.size, dtype=np.bool_)
    args = (x, points, nbr, reach, sub, idx, upper, lower, dist, fallback, config.BOUND_MARGIN)
    if _parallel(3 * sub.size * nbr.shape[1] * x.shape[1]) and sub.size > config.ASSIGN_BLOCK:
        _local_parallel(*args, config.ASSIGN_BLOCK)
    else:
        _local_range(*args, 0, sub.size)
    return sub[fallback]


def _bounds(
    x: np.ndarray, points: np.ndarray, shift: np.ndarray, s_half: np.ndarray, idx: np.ndarray,
    upper: np.ndarray, lower: np.ndarray, dist: np.ndarray, need: np.ndarray,
) -> int:
    """Hamerly's test for every sample (see :func:`_bounds_range`); returns the number flagged."""
    order = np.argsort(-shift, kind="stable")
    max1 = float(shift[order[0]])
    arg1 = int(order[0])
    max2 = float(shift[order[1]]) if shift.size > 1 else 0.0
    n, k = x.shape
    args = (x, points, shift, s_half, idx, upper, lower, dist, need, max1, max2, arg1, config.BOUND_MARGIN)
    if _parallel(4 * n * k) and n > config.ASSIGN_BLOCK:
        return int(_bounds_parallel(*args, config.ASSIGN_BLOCK))
    return int(_bounds_range(*args, 0, n))


def _n_chunks(n: int, n_code: int, k: int) -> int:
    """Number of sample chunks of the centroid kernel: a function of the sizes only."""
    by_memory = max(1, config.CENTROID_BUDGET // max(1, n_code * k))
    return int(max(1, min(config.MAX_CENTROID_CHUNKS, by_memory, n)))


def _cell_sums(x: np.ndarray, idx: np.ndarray, dist: np.ndarray, n_code: int) -> tuple[np.ndarray, np.ndarray, float]:
    n, k = x.shape
    c = _n_chunks(n, n_code, k)
    sums = np.zeros((c, n_code, k))
    counts = np.zeros((c, n_code))
    sse = np.zeros(c)
    if _parallel(2 * n * k) and c > 1:
        _sums_parallel(x, idx, dist, sums, counts, sse)
    else:
        _sums_serial(x, idx, dist, sums, counts, sse)
    total = np.empty((n_code, k))
    total_counts = np.empty(n_code)
    _reduce_chunks(sums, counts, total, total_counts)
    return total, total_counts, float(np.sum(sse))


@dataclass(frozen=True)
class LloydResult:
    """Outcome of :func:`lloyd_max`.

    Attributes
    ----------
    points : numpy.ndarray, shape (N, k)
        Refined codebook (the one whose distortion is ``mse``).
    mse : float
        Training distortion per block, :math:`\\frac1n\\sum_i\\|y_i - Q(y_i)\\|^2`.
    n_iter : int
        Number of assignment steps performed.
    converged : bool
        ``True`` when the relative-improvement test stopped the loop.
    history : numpy.ndarray, shape (n_iter,)
        Training distortion per block after each assignment step; strictly
        decreasing except possibly the last entry (a step that did not
        improve, whose codebook is discarded).
    n_empty_fixed : int
        Total number of empty cells re-seeded.
    assign : str
        The assignment search used (``"exhaustive"`` or ``"kdtree"``).
    n_full_searches : int
        Samples that needed a full nearest-codeword search, summed over the
        iterations.
    n_local_searches : int
        Samples whose bounds failed and that were searched among the listed
        neighbours of their codeword first (the others were settled by
        Hamerly's bounds), summed over the iterations.
    """

    points: np.ndarray
    mse: float
    n_iter: int
    converged: bool
    history: np.ndarray = field(repr=False)
    n_empty_fixed: int
    assign: str
    n_full_searches: int
    n_local_searches: int


def lloyd_max(
    initial_points: np.ndarray,
    samples: np.ndarray,
    *,
    max_iter: int = 200,
    tol: float = 1e-5,
    assign: str = "auto",
    progress: bool = False,
    desc: str = "Lloyd",
) -> LloydResult:
    """Generalised Lloyd (k-means) refinement of a codebook on training samples.

    Parameters
    ----------
    initial_points : array_like, shape (N, k)
        Starting codebook (``N >= 1``); not modified.
    samples : array_like, shape (n, k)
        Training samples, ``n >= N`` (finite reals).
    max_iter : int
        Largest number of assignment steps (``>= 1``).
    tol : float
        Stop when :math:`(D_{t-1}-D_t)/D_{t-1} \\le` ``tol`` (``tol >= 0``);
        ``tol = 0`` runs until the distortion stops decreasing or ``max_iter``.
    assign : {"auto", "exhaustive", "kdtree"}
        Nearest-codeword search of the assignment step (see :func:`nearest_codeword`).
    progress : bool
        Show a tqdm progress bar over the iterations.
    desc : str
        Label of the progress bar.

    Returns
    -------
    LloydResult
        The refined codebook (a new float64 array), its training distortion and the history.

    Notes
    -----
    Deterministic: the same inputs give bit-identical outputs whatever the
    number of Numba threads. The returned distortion never exceeds that of the
    initial codebook (each Lloyd step cannot increase it, and the loop returns
    the last assessed codebook).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.concatenate([rng.normal(-1, 0.1, (500, 1)), rng.normal(1, 0.1, (500, 1))])
    >>> res = lloyd_max(np.array([[-0.5], [0.5]]), y)
    >>> np.round(np.sort(res.points[:, 0]), 1).tolist()
    [-1.0, 1.0]
    """
    pts = as_codebook(initial_points, "initial_points").copy()
    n_code, k = pts.shape
    x = as_rows(samples, "samples", k=k)
    if x.shape[0] < n_code:
        raise ValueError(f"need at least as many samples as codewords, got {x.shape[0]} < {n_code}")
    check_distance_range(x, pts, "samples")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    if assign == "auto":
        assign = assignment_method(n_code, k)
    if assign not in ("exhaustive", "kdtree"):
        raise ValueError(f"assign must be 'auto', 'exhaustive' or 'kdtree', got {assign!r}")

    n = x.shape[0]
    history: list[float] = []
    n_empty_fixed = 0
    n_full = 0
    n_local = 0
    first = True
    n_list = _n_neighbours(n_code, k)
    converged = False
    best_points = pts
    best_mse = np.inf
    # Hamerly state: assignment, upper bound on the distance to it, lower bound on the runner-up's.
    idx = np.zeros(n, dtype=np.int64)
    upper = np.full(n, np.inf)
    lower = np.zeros(n)
    dist = np.empty(n)
    need = np.empty(n, dtype=np.bool_)
    shift = np.zeros(n_code)
    bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False)
    try:
        for _ in range(max_iter):
            nbr, reach, s_half = _neighbour_graph(pts, n_list)
            n_need = _bounds(x, pts, shift, s_half, idx, upper, lower, dist, need)
            sub = np.flatnonzero(need) if n_need else np.empty(0, dtype=np.int64)
            if sub.size and first:
                first = False  # the initial assignment is arbitrary: search everything once
            elif sub.size and n_list:
                n_local += int(sub.size)
                sub = _local_search(x, pts, nbr, reach, sub, idx, upper, lower, dist)
            if sub.size:
                xs = np.ascontiguousarray(x[sub])
                if assign == "exhaustive":
                    i_s, d_s, d2_s = _nearest2_direct(xs, pts)
                else:
                    i_s, d_s, d2_s = _nearest2_kdtree(xs, pts, cKDTree(pts))
                idx[sub] = i_s
                dist[sub] = d_s
                upper[sub] = np.sqrt(d_s)
                lower[sub] = np.sqrt(d2_s)
                n_full += int(sub.size)
            total, counts, sse = _cell_sums(x, idx, dist, n_code)
            mse = sse / n
            history.append(mse)
            bar.update(1)
            bar.set_postfix(mse=f"{mse:.6g}")
            if mse >= best_mse:
                # Ties or rounding: no progress; keep the earlier codebook.
                converged = True
                break
            prev = best_mse
            best_points, best_mse = pts, mse
            if np.isfinite(prev) and (prev - mse) <= tol * prev:
                converged = True
                break
            new = pts.copy()
            filled = counts > 0
            new[filled] = total[filled] / counts[filled, None]
            empty = np.flatnonzero(~filled)
            if empty.size:
                worst = np.argsort(-dist, kind="stable")[: empty.size]
                new[empty] = x[worst]
                n_empty_fixed += int(empty.size)
            shift = np.sqrt(row_sumsq(new - pts))
            pts = new
    finally:
        bar.close()
    best_points = np.array(best_points, dtype=np.float64, copy=True)
    return LloydResult(
        points=best_points,
        mse=float(best_mse),
        n_iter=len(history),
        converged=converged,
        history=np.asarray(history),
        n_empty_fixed=n_empty_fixed,
        assign=assign,
        n_full_searches=n_full,
        n_local_searches=n_local,
    )
