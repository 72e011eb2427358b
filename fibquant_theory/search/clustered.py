r"""Clustered top-``T`` nearest-codeword search: the cluster index and its Numba kernel.

The :math:`N` codewords are clustered once by k-means into ``K`` parents
(:func:`kmeans_codewords`: a deterministic function of the codebook, the seed
and the iteration count). Every codeword is a member of its own cluster and,
with ``spill = S > 1``, of the ``S - 1`` other clusters whose parents are
nearest to it (overlapping clusters). The members are stored cluster by
cluster (CSR: ``offsets``, and within a cluster by increasing codeword index),
as :class:`ClusterIndex`.

A block :math:`y` is encoded by :func:`nearest_clustered`: score the ``K``
parents :math:`\mu_c` by :math:`\|\mu_c\|^2 - 2\,y\cdot\mu_c`, keep the ``T``
best (the ``T`` smallest ``(score, c)`` pairs), and search their members
exhaustively by the encoders' expanded score :math:`\|c_j\|^2 - 2\,y\cdot c_j`,
ties to the lowest codeword index. The work is :math:`O(K + T S N / K)`
distance evaluations, :math:`O(\sqrt{T S N})` at the default
:math:`K = \sqrt{T S N}`.

The result is the exhaustive search's
(:func:`~fibquant_theory.search.kernel.nearest_exhaustive` with
``score="expanded"``), bit for bit, whenever the exhaustive nearest codeword
is among the members of the ``T`` clusters (always for ``T = K``): the score,
its summation order and the tie rule are the same. Otherwise it is a farther
codeword, and the reported distance is the direct one of the codeword
returned. Like every kernel of :mod:`fibquant_theory.search`, these are
compiled without fastmath and sum in a fixed order (the k-means centroid sums
too, in increasing codeword index), so the index and the codes have the same
bits on every x86-64 machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange, types

from fibquant_theory import config
from fibquant_theory._validation import as_rows, check_distance_range, check_int
from fibquant_theory.numerics.fixed_order import row_sumsq
from fibquant_theory.search.kernel import _expanded_score, _nearest_expanded, _scan_expanded, _squared_distance

__all__ = ["ClusterIndex", "build_cluster_index", "default_clusters", "kmeans_codewords", "nearest_clustered", "run_clustered"]

_f8_2d = types.float64[:, ::1]
_f8_1d = types.float64[::1]
_i8_1d = types.int64[::1]
_i8 = types.int64


# ----------------------------------------------------------------------------- kernels
@njit(_i8(_f8_2d, _i8, _f8_2d, _f8_1d, _i8, _f8_1d, _i8_1d), cache=True, nogil=True, inline="always")
def _top_parents(y, i, parents, parent_norm2, top, top_score, top_id):  # pragma: no cover - compiled
    """The ``top`` smallest ``(|mu_c|^2 - 2 y[i].mu_c, c)`` pairs, sorted, into ``top_score``/``top_id``; returns how many.

    A later parent with an equal score goes after an earlier one (and is left
    out when the list is full), so the list is the lexicographic ``(score, c)`` order.
    """
    filled = 0
    for c in range(parents.shape[0]):
        score = _expanded_score(y, i, parents, parent_norm2, c)
        if filled < top:
            pos = filled
            filled += 1
        elif score < top_score[top - 1]:
            pos = top - 1
        else:
            continue
        while pos > 0 and top_score[pos - 1] > score:  # insertion into the sorted list
            top_score[pos] = top_score[pos - 1]
            top_id[pos] = top_id[pos - 1]
            pos -= 1
        top_score[pos] = score
        top_id[pos] = c
    return filled


_SEARCH_ARGS = (_f8_2d, _f8_2d, _f8_1d, _f8_2d, _f8_1d, _i8_1d, _i8_1d, _i8, _i8_1d, _f8_1d)


@njit(types.void(*_SEARCH_ARGS, _i8, _i8), cache=True, nogil=True)
def _clustered_range(
    y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out, start, stop
):  # pragma: no cover - compiled
    """Rows ``start:stop``: the ``top`` nearest parents by ``|mu|^2 - 2 y.mu``, then an exhaustive search over their members.

    ``sorted_points[p]`` is codeword ``order[p]``; cluster ``c`` holds positions
    ``offsets[c]:offsets[c+1]``. Writes the index (lowest on ties) and its direct squared distance.
    """
    top_score = np.empty(top)
    top_id = np.empty(top, dtype=np.int64)
    for i in range(start, stop):
        filled = _top_parents(y, i, parents, parent_norm2, top, top_score, top_id)
        best = np.inf
        best_p = 0
        for r in range(filled):
            c = top_id[r]
            best, best_p = _scan_expanded(y, i, sorted_points, sorted_norm2, order, offsets[c], offsets[c + 1], best, best_p)
        idx_out[i] = order[best_p]
        dist_out[i] = _squared_distance(y, i, sorted_points, best_p)


@njit(types.void(*_SEARCH_ARGS), cache=True, nogil=True)
def _clustered_kernel(
    y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out
):  # pragma: no cover - compiled
    """:func:`_clustered_range` over every row, in one thread."""
    _clustered_range(y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out, 0, y.shape[0])


@njit(types.void(*_SEARCH_ARGS, _i8), parallel=True, cache=True, nogil=True)
def _clustered_parallel(
    y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out, block
):  # pragma: no cover - compiled
    """:func:`_clustered_range` over every row, ``block`` rows per parallel task (the result does not depend on it)."""
    n = y.shape[0]
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        _clustered_range(
            y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out,
            b * block, min(n, (b + 1) * block),
        )


@njit(types.void(_f8_2d, _i8_1d, _f8_2d, _i8_1d), cache=True, nogil=True)
def _centroid_sums(points, labels, sums, counts):  # pragma: no cover - compiled
    """``sums[c] = sum of points[j]`` with ``labels[j] == c``, added in increasing ``j``; ``counts[c]`` the members."""
    sums[:, :] = 0.0
    counts[:] = 0
    for j in range(points.shape[0]):
        c = labels[j]
        counts[c] += 1
        for t in range(points.shape[1]):
            sums[c, t] += points[j, t]


@njit(types.void(_f8_2d, _f8_2d, _f8_1d, _i8_1d, _i8, types.int64[:, ::1]), cache=True, nogil=True)
def _spill_members(points, parents, parent_norm2, labels, spill, member):  # pragma: no cover - compiled
    """``member[j]``: cluster ``labels[j]``, then the nearest other parents of codeword ``j`` (``spill`` in all)."""
    top_score = np.empty(spill)
    top_id = np.empty(spill, dtype=np.int64)
    for j in range(points.shape[0]):
        _top_parents(points, j, parents, parent_norm2, spill, top_score, top_id)
        member[j, 0] = labels[j]
        s = 1
        for r in range(spill):
            if s < spill and top_id[r] != labels[j]:
                member[j, s] = top_id[r]
                s += 1


# ----------------------------------------------------------------------------- k-means
def kmeans_codewords(
    points: object, n_clusters: int, seed: int = 0, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster codewords with Lloyd's k-means (deterministic for a seed, the same bits on every x86-64 machine).

    Starts from ``n_clusters`` distinct codewords drawn with ``seed``; an empty
    cluster is re-seeded with the codeword farthest from its centroid. The
    assignment is the exhaustive expanded-score search (ties to the lowest
    centroid), the centroid sums are added in increasing codeword index.

    Parameters
    ----------
    points : array_like
        Codewords, shape ``(N, k)``.
    n_clusters : int
        Number of clusters ``K``, ``1 <= K <= N``.
    seed : int
        Seed of the initial centroids.
    iterations : int
        Lloyd iterations (stops early when the assignment is stable).

    Returns
    -------
    centroids : numpy.ndarray
        Shape ``(K, k)``.
    labels : numpy.ndarray
        Cluster of every codeword, shape ``(N,)``, int64; every cluster non-empty.
    """
    pts = as_rows(points, "codebook points", min_rows=2)
    n = pts.shape[0]
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=n)
    iterations = check_int(iterations, "iterations", minimum=1)
    rng = np.random.default_rng([check_int(seed, "seed", minimum=0), 0x4B4D])
    centroids = np.ascontiguousarray(pts[np.sort(rng.choice(n, n_clusters, replace=False))])
    labels = np.full(n, -1, dtype=np.int64)
    dist = np.empty(n)
    new = np.empty(n, dtype=np.int64)
    sums = np.empty_like(centroids)
    counts = np.empty(n_clusters, dtype=np.int64)
    for _ in range(iterations):
        _nearest_expanded(pts, centroids, row_sumsq(centroids), new, dist)
        counts = np.bincount(new, minlength=n_clusters)
        for c in np.flatnonzero(counts == 0):
            # re-seed an empty cluster with the worst-served codeword of a cluster that keeps a member
            # (one exists while a cluster is empty, since K <= N)
            far = int(np.argmax(np.where(counts[new] > 1, dist, -np.inf)))
            counts[new[far]] -= 1
            counts[c] += 1
            new[far] = c
            dist[far] = -1.0
        if np.array_equal(new, labels):
            break
        labels = new.copy()
        _centroid_sums(pts, labels, sums, counts)
        centroids = np.ascontiguousarray(sums / counts[:, None])
    return centroids, labels


# ----------------------------------------------------------------------------- the index
@dataclass(frozen=True, eq=False)
class ClusterIndex:
    """Overlapping clusters of a codebook, stored cluster by cluster (what :func:`nearest_clustered` searches).

    Attributes
    ----------
    parents : numpy.ndarray
        The k-means centroids, shape ``(K, k)``, float64.
    parent_norm2 : numpy.ndarray
        Their squared norms, shape ``(K,)``.
    labels : numpy.ndarray
        The k-means cluster of every codeword, shape ``(N,)``, int64.
    order : numpy.ndarray
        Codeword index of every member position, shape ``(M,)``, int64 (``M = S N``).
    offsets : numpy.ndarray
        Cluster ``c`` holds positions ``offsets[c]:offsets[c+1]``, shape ``(K + 1,)``, int64.
    sorted_points : numpy.ndarray
        ``points[order]``, shape ``(M, k)``.
    sorted_norm2 : numpy.ndarray
        Their squared norms, shape ``(M,)``.
    spill : int
        Clusters per codeword ``S``.
    seed : int
        Seed of the k-means initialisation.
    """

    parents: np.ndarray
    parent_norm2: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    sorted_points: np.ndarray
    sorted_norm2: np.ndarray
    spill: int
    seed: int

    @property
    def n_clusters(self) -> int:
        """Number of clusters ``K``."""
        return int(self.parents.shape[0])

    @property
    def n_codewords(self) -> int:
        """Codebook size ``N``."""
        return int(self.labels.shape[0])

    @property
    def k(self) -> int:
        """Block size."""
        return int(self.parents.shape[1])

    def candidates_per_block(self, top: int) -> float:
        """Distance evaluations per block of a top-``top`` search if the clusters had equal sizes.

        Parameters
        ----------
        top : int
            Clusters searched.

        Returns
        -------
        float
            ``K + top * S * N / K``.
        """
        return float(self.n_clusters + top * self.order.shape[0] / self.n_clusters)


def default_clusters(n_codewords: int, top: int, spill: int = 1) -> int:
    """The default number of clusters :math:`\\mathrm{round}(\\sqrt{T S N})`, which minimises :math:`K + T S N / K`.

    Parameters
    ----------
    n_codewords : int
        Codebook size ``N``.
    top : int
        Clusters searched ``T``.
    spill : int
        Clusters per codeword ``S``.

    Returns
    -------
    int
        ``K``, between ``min(T, N)`` and ``N``.
    """
    return min(n_codewords, max(top, round(math.sqrt(top * spill * n_codewords))))


def build_cluster_index(
    points: object, n_clusters: int, *, spill: int = 1, seed: int = 0, iterations: int = 25
) -> ClusterIndex:
    """Cluster a codebook (:func:`kmeans_codewords`) and list every codeword in its ``spill`` nearest clusters.

    Parameters
    ----------
    points : array_like
        Codebook, shape ``(N, k)``, ``N >= 2``.
    n_clusters : int
        Number of clusters ``K``, ``1 <= K <= N``.
    spill : int
        Clusters per codeword ``S``, ``1 <= S <= K``: its k-means cluster, then
        the clusters of its nearest other parents.
    seed : int
        Seed of the k-means initialisation.
    iterations : int
        k-means iterations.

    Returns
    -------
    ClusterIndex
        The clusters and their members.
    """
    pts = as_rows(points, "codebook points", min_rows=2)
    parents, labels = kmeans_codewords(pts, n_clusters, seed, iterations)
    n_clusters = parents.shape[0]
    spill = check_int(spill, "spill", minimum=1, maximum=n_clusters)
    parent_norm2 = row_sumsq(parents)
    member = np.empty((pts.shape[0], spill), dtype=np.int64)
    _spill_members(pts, parents, parent_norm2, labels, spill, member)
    cluster = member.reshape(-1)
    code = np.repeat(np.arange(pts.shape[0], dtype=np.int64), spill)
    order = np.ascontiguousarray(code[np.lexsort((code, cluster))])
    offsets = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(np.bincount(cluster, minlength=n_clusters), out=offsets[1:])
    sorted_points = np.ascontiguousarray(pts[order])
    return ClusterIndex(
        parents=parents,
        parent_norm2=parent_norm2,
        labels=labels,
        order=order,
        offsets=offsets,
        sorted_points=sorted_points,
        sorted_norm2=row_sumsq(sorted_points),
        spill=spill,
        seed=check_int(seed, "seed", minimum=0),
    )


def nearest_clustered(blocks: object, index: ClusterIndex, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``T`` clustered search of every block (see the module docstring).

    Parameters
    ----------
    blocks : array_like
        Blocks, shape ``(n, k)``, finite reals.
    index : ClusterIndex
        The clusters of the codebook (:func:`build_cluster_index`).
    top : int
        Clusters searched ``T``, ``1 <= T <= K`` (``T = K`` is the exhaustive search).

    Returns
    -------
    index : numpy.ndarray
        Codeword of every block, shape ``(n,)``, int64 in ``[0, N)``.
    sq_distance : numpy.ndarray
        Its squared distance (direct sum), shape ``(n,)``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> idx, d2 = nearest_clustered(np.array([[0.9, 0.8]]), build_cluster_index(pts, 2), top=2)
    >>> idx.tolist(), np.round(d2, 2).tolist()
    ([3], [0.05])
    """
    if not isinstance(index, ClusterIndex):
        raise TypeError(f"index must be a ClusterIndex, got {type(index).__name__}")
    top = check_int(top, "top", minimum=1, maximum=index.n_clusters)
    y = as_rows(blocks, "blocks", k=index.k)
    check_distance_range(y, index.sorted_points, "blocks")
    idx = np.empty(y.shape[0], dtype=np.int64)
    dist = np.empty(y.shape[0])
    run_clustered(y, index, top, idx, dist)
    return idx, dist


def run_clustered(y: np.ndarray, index: ClusterIndex, top: int, idx: np.ndarray, dist: np.ndarray) -> None:
    """Fill ``idx`` and ``dist`` for validated blocks (the kernel call of :func:`nearest_clustered`).

    Runs the parallel kernel (``config.ASSIGN_BLOCK`` rows per task) when the work,
    ``n * (K + T S N / K) * k``, reaches :data:`~fibquant_theory.config.PARALLEL_MIN_WORK`;
    every row is computed alone, so the result does not depend on the number of threads.

    Parameters
    ----------
    y : numpy.ndarray
        Blocks, C-contiguous float64 of shape ``(n, k)``, finite (not checked here).
    index : ClusterIndex
        The clusters.
    top : int
        Clusters searched, ``1 <= top <= K`` (not checked here).
    idx : numpy.ndarray
        Output indices, int64 of shape ``(n,)``.
    dist : numpy.ndarray
        Output squared distances, float64 of shape ``(n,)``.
    """
    n = y.shape[0]
    if not n:
        return
    ix = index
    args = (y, ix.parents, ix.parent_norm2, ix.sorted_points, ix.sorted_norm2, ix.order, ix.offsets, int(top), idx, dist)
    if n * ix.candidates_per_block(top) * ix.k >= config.PARALLEL_MIN_WORK and n > config.ASSIGN_BLOCK:
        _clustered_parallel(*args, config.ASSIGN_BLOCK)
    else:
        _clustered_kernel(*args)
