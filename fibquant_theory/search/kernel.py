r"""The exhaustive nearest-codeword search: the one set of Numba kernels every search uses.

Every exact search of the package (Lloyd's assignment and the held-out MSE of
:mod:`~fibquant_theory.codebooks`, the encoders of :mod:`~fibquant_theory.search.encoders`,
the proofs and the large-codebook design script) calls the kernels of this
module. A block :math:`y` of shape ``(k,)`` is compared with the codewords
:math:`c_j` of a codebook ``(N, k)`` by one of two scores:

``"direct"``
    :math:`\|y - c_j\|^2 = \sum_t (y_t - c_{jt})^2`, summed over ``t = 0, ..., k-1``
    in that order. Lloyd's assignment (hence every designed codebook and its
    train and held-out MSE) ranks by this score; the scan is vectorised over
    the codewords and also returns the runner-up's squared distance (Hamerly's
    lower bound).
``"expanded"``
    :math:`\|c_j\|^2 - 2\,y\cdot c_j`, the dot product summed in the same order,
    with the codeword norms precomputed: one multiply-add per coordinate. The
    encoders rank by this score.

Both rank the codewords identically in exact arithmetic; in floating point two
nearly equidistant codewords may be ranked differently, so each caller keeps
the score its stored results were computed with. Ties go to the lowest index.
The distance a search reports is always the direct one of the returned codeword.
The kernels are compiled without fastmath (no fused multiply-add, no
reordering of sums), so the results have the same bits on every x86-64 machine,
for any number of threads.

The private ``@njit`` building blocks (:func:`_squared_distance`,
:func:`_expanded_score`, and the scans :func:`_first_min_expanded` over a whole
codebook and :func:`_scan_expanded` over regrouped candidates) are inlined into
the other kernels of the package; :func:`nearest_exhaustive` and
:func:`nearest_with_runner_up` are the validated Python entry points.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from fibquant_theory import config
from fibquant_theory._validation import as_codebook, as_rows, check_distance_range
from fibquant_theory.numerics.fixed_order import row_sumsq

__all__ = ["SCORES", "nearest_exhaustive", "nearest_with_runner_up"]

#: Scores understood by :func:`nearest_exhaustive`.
SCORES = ("direct", "expanded")

_f8 = types.float64
_i8 = types.int64
_f8_2d = types.float64[:, ::1]
_f8_1d = types.float64[::1]
_i8_1d = types.int64[::1]
_best = types.Tuple((types.float64, types.int64))  # (score, position) of the best candidate so far


# ----------------------------------------------------------------- building blocks (inlined)
@njit(_f8(_f8_2d, _i8, _f8_2d, _i8), cache=True, nogil=True, inline="always")
def _squared_distance(x, i, points, j):  # pragma: no cover - compiled
    """Direct score ``sum_t (x[i, t] - points[j, t])**2``, summed in the order ``t = 0, ..., k-1``."""
    dist = 0.0
    for t in range(x.shape[1]):
        diff = x[i, t] - points[j, t]
        dist += diff * diff
    return dist


@njit(_f8(_f8_2d, _i8, _f8_2d, _f8_1d, _i8), cache=True, nogil=True, inline="always")
def _expanded_score(y, i, points, norm2, j):  # pragma: no cover - compiled
    """Expanded score ``norm2[j] - 2 * y[i] . points[j]`` (dot product summed in the order ``t = 0, ..., k-1``)."""
    dot = 0.0
    for t in range(y.shape[1]):
        dot += y[i, t] * points[j, t]
    return norm2[j] - 2.0 * dot


@njit(_best(_f8_2d, _i8, _f8_2d, _f8_1d, _i8_1d, _i8, _i8, _f8, _i8), cache=True, nogil=True, inline="always")
def _scan_expanded(y, i, points, norm2, order, lo, hi, best, best_p):  # pragma: no cover - compiled
    """Best of ``points[lo:hi]`` for row ``i`` by the expanded score, continuing from ``(best, best_p)``.

    For codewords regrouped by shell or cluster: ``order[p]`` is the original
    index of ``points[p]`` and a tie goes to the lower original index. Returns
    the best score and its position ``p``.
    """
    for p in range(lo, hi):
        score = _expanded_score(y, i, points, norm2, p)
        if score < best or (score == best and order[p] < order[best_p]):
            best = score
            best_p = p
    return best, best_p


@njit(_i8(_f8_2d, _i8, _f8_2d, _f8_1d), cache=True, nogil=True, inline="always")
def _first_min_expanded(y, i, points, norm2):  # pragma: no cover - compiled
    """Index of the first minimum of the expanded score over all of ``points`` for row ``i``.

    The same index as :func:`_scan_expanded` over ``[0, N)`` with the identity
    order (scanning in index order, a strict ``<`` keeps the lowest tied index),
    without the tie test in the inner loop (about 20% faster).
    """
    best = np.inf
    best_j = 0
    for j in range(points.shape[0]):
        score = _expanded_score(y, i, points, norm2, j)
        if score < best:
            best = score
            best_j = j
    return best_j


# ----------------------------------------------------------------- kernels
@njit(types.void(_f8_2d, _f8_2d, _f8_1d, _i8_1d, _f8_1d), cache=True, nogil=True)
def _nearest_expanded(y, points, norm2, idx_out, dist_out):  # pragma: no cover - compiled
    """Nearest of all codewords ``points (N, k)`` to every row of ``y (n, k)`` by the expanded score.

    ``norm2 (N,)`` holds the squared codeword norms. Writes the index (ties to
    the lowest) and its direct squared distance.
    """
    for i in range(y.shape[0]):
        best_j = _first_min_expanded(y, i, points, norm2)
        idx_out[i] = best_j
        dist_out[i] = _squared_distance(y, i, points, best_j)


@njit(types.void(_f8_2d, _f8_2d, _i8_1d, _f8_1d, _f8_1d, _i8, _i8), cache=True, nogil=True)
def _nearest_direct_range(x, pt, idx, dist, dist2, start, stop):  # pragma: no cover - compiled
    """Nearest and runner-up codeword by the direct score, rows ``start:stop`` of ``x (n, k)``.

    ``pt (k, N)`` is the transposed codebook (the loop over codewords is
    vectorised). Writes the nearest index (ties to the lowest), its squared
    distance and the runner-up's squared distance (``inf`` when ``N = 1``).
    """
    k = x.shape[1]
    n_code = pt.shape[1]
    scores = np.empty(n_code)
    for i in range(start, stop):
        for j in range(n_code):
            scores[j] = 0.0
        for t in range(k):
            xt = x[i, t]
            row = pt[t]
            for j in range(n_code):
                diff = xt - row[j]
                scores[j] += diff * diff
        best = 0
        best_score = scores[0]
        second = np.inf
        for j in range(1, n_code):
            sj = scores[j]
            if sj < best_score:
                second = best_score
                best_score = sj
                best = j
            elif sj < second:
                second = sj
        idx[i] = best
        dist[i] = best_score
        dist2[i] = second


@njit(types.void(_f8_2d, _f8_2d, _i8_1d, _f8_1d, _f8_1d, _i8), parallel=True, cache=True, nogil=True)
def _nearest_direct_parallel(x, pt, idx, dist, dist2, block):  # pragma: no cover - compiled
    """:func:`_nearest_direct_range` over all rows, ``block`` rows per parallel task.

    Every row is computed by exactly one range call, so the result does not
    depend on ``block`` or on the number of threads.
    """
    n = x.shape[0]
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        _nearest_direct_range(x, pt, idx, dist, dist2, b * block, min(n, (b + 1) * block))


# ----------------------------------------------------------------- drivers (validated input)
def _nearest2_direct(x: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct-score search of validated ``x (n, k)`` against ``points (N, k)`` (C-contiguous float64).

    Returns the nearest index ``(n,)``, its squared distance ``(n,)`` and the
    runner-up's squared distance ``(n,)``; the parallel driver runs when the
    work reaches :data:`~fibquant_theory.config.PARALLEL_MIN_WORK`.
    """
    n = x.shape[0]
    idx = np.empty(n, dtype=np.int64)
    dist = np.empty(n)
    dist2 = np.empty(n)
    if n:
        pt = np.ascontiguousarray(points.T)
        if 3 * n * points.shape[0] * points.shape[1] >= config.PARALLEL_MIN_WORK and n > config.ASSIGN_BLOCK:
            _nearest_direct_parallel(x, pt, idx, dist, dist2, config.ASSIGN_BLOCK)
        else:
            _nearest_direct_range(x, pt, idx, dist, dist2, 0, n)
    return idx, dist, dist2


def _validated(blocks: object, points: object) -> tuple[np.ndarray, np.ndarray]:
    pts = as_codebook(points, "points")
    x = as_rows(blocks, "blocks", k=pts.shape[1])
    check_distance_range(x, pts, "blocks")
    return x, pts


def nearest_exhaustive(blocks: object, points: object, *, score: str = "direct") -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest codeword of every block by exhaustive search (ties to the lowest index).

    Parameters
    ----------
    blocks : array_like
        Blocks to quantize, shape ``(n, k)``, finite reals.
    points : array_like
        Codebook, shape ``(N, k)``, ``N >= 1``.
    score : {"direct", "expanded"}
        Ranking score (see the module docstring): ``"direct"`` is the one of
        Lloyd's assignment, ``"expanded"`` the one of the encoders.

    Returns
    -------
    index : numpy.ndarray
        Codeword indices, shape ``(n,)``, int64.
    sq_distance : numpy.ndarray
        :math:`\\|y_i - c_{\\mathrm{index}_i}\\|^2` (direct sum), shape ``(n,)``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> idx, d2 = nearest_exhaustive(np.array([[0.9, 0.1], [0.5, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]]))
    >>> idx.tolist(), np.round(d2, 3).tolist()
    ([1, 0], [0.02, 0.25])
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    x, pts = _validated(blocks, points)
    if score == "direct":
        idx, dist, _ = _nearest2_direct(x, pts)
        return idx, dist
    idx = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0])
    if x.shape[0]:
        _nearest_expanded(x, pts, row_sumsq(pts), idx, dist)
    return idx, dist


def nearest_with_runner_up(blocks: object, points: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest codeword (direct score, ties to the lowest index) and the runner-up's squared distance.

    Parameters
    ----------
    blocks : array_like
        Blocks, shape ``(n, k)``, finite reals.
    points : array_like
        Codebook, shape ``(N, k)``, ``N >= 1``.

    Returns
    -------
    index : numpy.ndarray
        Nearest codeword of every block, shape ``(n,)``, int64.
    sq_distance : numpy.ndarray
        Its squared distance, shape ``(n,)``, float64.
    runner_up : numpy.ndarray
        Smallest squared distance to any other codeword, shape ``(n,)``, float64
        (``inf`` when ``N = 1``; equal to ``sq_distance`` on an exact tie).
    """
    x, pts = _validated(blocks, points)
    return _nearest2_direct(x, pts)
