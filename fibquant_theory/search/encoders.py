r"""Nearest-codeword search for blocks of the rotated direction (Numba CPU kernels).

Three encoders map blocks ``y`` of shape ``(n, k)`` to codeword indices of a
codebook ``C`` of shape ``(N, k)``:

:class:`ExhaustiveSearch`
    The exact nearest codeword, :math:`\arg\min_n \|y-c_n\|^2`, with
    :math:`O(N)` distance evaluations per block (ties go to the lowest index).
:class:`TwoStageSearch`
    The paper's shell-then-angle search: the codewords are grouped by the shell
    they were initialised on; the shell radius used is the mean norm of its
    codewords. Pick the ``probes`` shells whose radius is nearest to
    :math:`\|y\|` (:math:`O(S)`), then search only their codewords
    (:math:`O(\text{probes}\cdot N/S)`).
:class:`ClusteredSearch`
    Top-``T`` clustered search: the codewords are clustered by k-means into
    ``K`` parents (a deterministic function of the codebook and ``seed``);
    compare ``y`` with the ``K`` parent centroids, keep the ``T`` nearest and
    search their children exhaustively (:math:`O(K + T N/K)`;
    :math:`K=\sqrt{TN}` by default). ``T = K`` is exhaustive.

All searches return ``(index, distance)`` where ``distance`` is the squared
Euclidean distance to the returned codeword, recomputed directly from the
coordinates; the fast searches can only be worse than (or equal to) the
exhaustive one, never better, and what they report is what they return.
The three searches above rank the codewords by the expanded score :math:`\|c\|^2 - 2\,y\cdot c`
and share the kernels of :mod:`~fibquant_theory.search.kernel` (compiled without
fastmath, sums in a fixed order), so the indices have the same bits on every
x86-64 machine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from numba import njit

from fibquant_theory._validation import as_rows, check_distance_range, check_int
from fibquant_theory.numerics.fixed_order import row_sumsq
from fibquant_theory.search.kernel import (
    _expanded_score,
    _nearest_expanded,
    _scan_expanded,
    _squared_distance,
)

__all__ = [
    "ENCODERS",
    "ClusteredSearch",
    "ExhaustiveSearch",
    "NearestCodewordSearch",
    "TwoStageSearch",
    "kmeans_codewords",
    "make_search",
    "nearest_codeword",
]

#: Encoder names understood by :func:`make_search`.
#: ``"structured"`` is the codebook family's exact closed-form decoder (``codebook.structure.search(points)``).
ENCODERS = ("exhaustive", "two-stage", "clustered", "structured")


# ----------------------------------------------------------------------------- kernels
# The exhaustive encoder is search.kernel._nearest_expanded; the two below scan candidate ranges with
# search.kernel._scan_expanded (the same score and tie rule).
@njit(
    "void(float64[:, ::1], float64[:, ::1], float64[::1], int64[::1], int64[::1], float64[::1], int64, int64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _two_stage_kernel(y, sorted_points, sorted_norm2, order, offsets, radii, probes, idx_out, dist_out):  # pragma: no cover
    """Shells nearest in radius first (``probes`` of them), then an exhaustive search inside them."""
    n, k = y.shape
    n_shells = radii.size
    chosen = np.zeros(n_shells, dtype=np.bool_)
    for i in range(n):
        rho2 = 0.0
        for t in range(k):
            rho2 += y[i, t] * y[i, t]
        rho = np.sqrt(rho2)
        chosen[:] = False
        best = np.inf
        best_p = 0
        for _ in range(probes):
            s_best = -1
            gap_best = np.inf
            for s in range(n_shells):
                gap = abs(rho - radii[s])
                if not chosen[s] and gap < gap_best:
                    gap_best = gap
                    s_best = s
            chosen[s_best] = True
            best, best_p = _scan_expanded(y, i, sorted_points, sorted_norm2, order, offsets[s_best], offsets[s_best + 1], best, best_p)
        idx_out[i] = order[best_p]
        dist_out[i] = _squared_distance(y, i, sorted_points, best_p)


@njit(
    "void(float64[:, ::1], float64[:, ::1], float64[::1], float64[:, ::1], float64[::1], int64[::1], int64[::1], int64, int64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _clustered_kernel(
    y, parents, parent_norm2, sorted_points, sorted_norm2, order, offsets, top, idx_out, dist_out
):  # pragma: no cover - compiled
    """``top`` nearest parents by ``|mu|^2 - 2 y.mu``, then an exhaustive search over their children."""
    n = y.shape[0]
    n_par = parents.shape[0]
    top_score = np.empty(top)
    top_id = np.empty(top, dtype=np.int64)
    for i in range(n):
        filled = 0
        for c in range(n_par):
            score = _expanded_score(y, i, parents, parent_norm2, c)
            if filled < top:
                pos = filled
                filled += 1
            elif score < top_score[top - 1]:
                pos = top - 1
            else:
                continue
            # insertion into the sorted list of the best `top` parents seen so far
            while pos > 0 and top_score[pos - 1] > score:
                top_score[pos] = top_score[pos - 1]
                top_id[pos] = top_id[pos - 1]
                pos -= 1
            top_score[pos] = score
            top_id[pos] = c
        best = np.inf
        best_p = 0
        for r in range(filled):
            c = top_id[r]
            best, best_p = _scan_expanded(y, i, sorted_points, sorted_norm2, order, offsets[c], offsets[c + 1], best, best_p)
        idx_out[i] = order[best_p]
        dist_out[i] = _squared_distance(y, i, sorted_points, best_p)


# ----------------------------------------------------------------------------- helpers
def _group(labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of the codewords by group, and the group offsets ``(n_groups + 1,)``."""
    order = np.argsort(labels, kind="stable").astype(np.int64)
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=n_groups), out=offsets[1:])
    return order, offsets


class NearestCodewordSearch(ABC):
    """Base class of the encoders: a codebook and a ``search`` method.

    Attributes
    ----------
    points : numpy.ndarray
        The codebook, shape ``(N, k)``, float64.
    name : str
        Encoder name (one of :data:`ENCODERS`).
    """

    name = "base"

    def __init__(self, points: object) -> None:
        self.points = as_rows(points, "codebook points", min_rows=2)
        self.n_codewords, self.k = self.points.shape
        self._norm2 = row_sumsq(self.points)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={self.n_codewords}, k={self.k})"

    @property
    def candidates_per_block(self) -> float:
        """Average number of distance evaluations per block (a cost model)."""
        return float(self.n_codewords)

    @abstractmethod
    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        """Fill ``idx (n,)`` and ``dist (n,)`` for the validated blocks ``y (n, k)``."""

    def search(self, y: object) -> tuple[np.ndarray, np.ndarray]:
        """Encode blocks.

        Parameters
        ----------
        y : array_like
            Blocks, shape ``(n, k)``, finite.

        Returns
        -------
        index : numpy.ndarray
            Codeword indices, shape ``(n,)``, int64 in ``[0, N)``.
        distance : numpy.ndarray
            Squared distance to the returned codeword, shape ``(n,)``, float64.
        """
        y = as_rows(y, "blocks", k=self.k)
        check_distance_range(y, self.points, "blocks")
        idx = np.empty(y.shape[0], dtype=np.int64)
        dist = np.empty(y.shape[0])
        if y.shape[0]:
            self._run(y, idx, dist)
        return idx, dist


class ExhaustiveSearch(NearestCodewordSearch):
    """Exact nearest codeword by exhaustive search (ties to the lowest index).

    Parameters
    ----------
    points : array_like
        Codebook of shape ``(N, k)``.
    """

    name = "exhaustive"

    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        _nearest_expanded(y, self.points, self._norm2, idx, dist)


class TwoStageSearch(NearestCodewordSearch):
    """Shell-then-angle search: nearest shell radius, then the codewords of that shell.

    Parameters
    ----------
    points : array_like
        Codebook of shape ``(N, k)``.
    shell_index : array_like
        Shell label of every codeword, shape ``(N,)``, integers ``>= 0``
        (empty labels are dropped). The radius of a shell is the mean norm of
        its codewords.
    probes : int
        Number of nearest shells searched (``1`` is the paper's encoder; the
        number of shells is exhaustive).
    """

    name = "two-stage"

    def __init__(self, points: object, shell_index: object, probes: int = 1) -> None:
        super().__init__(points)
        labels = np.asarray(shell_index)
        if labels.shape != (self.n_codewords,) or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise ValueError(f"shell_index must be non-negative integers of shape ({self.n_codewords},)")
        _, labels = np.unique(labels, return_inverse=True)  # drop empty shells
        labels = labels.astype(np.int64)
        self.n_shells = int(labels.max()) + 1
        self.probes = check_int(probes, "probes", minimum=1, maximum=self.n_shells)
        self._order, self._offsets = _group(labels, self.n_shells)
        self._sorted = np.ascontiguousarray(self.points[self._order])
        self._sorted_norm2 = np.ascontiguousarray(self._norm2[self._order])
        norms = np.sqrt(self._norm2)
        #: mean codeword norm of every shell, shape ``(S,)``
        self.radii = np.bincount(labels, weights=norms, minlength=self.n_shells) / np.bincount(labels)

    def __repr__(self) -> str:
        return f"TwoStageSearch(N={self.n_codewords}, k={self.k}, shells={self.n_shells}, probes={self.probes})"

    @property
    def candidates_per_block(self) -> float:
        return float(self.n_shells + self.probes * self.n_codewords / self.n_shells)

    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        _two_stage_kernel(y, self._sorted, self._sorted_norm2, self._order, self._offsets, self.radii, self.probes, idx, dist)


def kmeans_codewords(
    points: object, n_clusters: int, seed: int = 0, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster codewords with Lloyd's k-means (deterministic for a seed).

    Starts from ``n_clusters`` distinct codewords drawn with ``seed``; an empty
    cluster is re-seeded with the codeword farthest from its centroid.

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
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, pts)
        centroids = np.ascontiguousarray(sums / counts[:, None])
    return centroids, labels


class ClusteredSearch(NearestCodewordSearch):
    """Top-``T`` clustered search: ``K`` k-means parents, search the children of the ``T`` nearest.

    Parameters
    ----------
    points : array_like
        Codebook of shape ``(N, k)``.
    n_clusters : int or None
        Number of parents ``K``; default :math:`\\mathrm{round}(\\sqrt{T N})`
        (which minimises :math:`K + T N / K`), at most ``N`` (and then ``T`` is
        capped at ``K``).
    top : int
        Parents searched ``T``, ``1 <= T <= K`` (``T = K`` is exhaustive).
    seed : int
        Seed of the k-means initialisation.
    """

    name = "clustered"

    def __init__(self, points: object, n_clusters: int | None = None, top: int = 4, seed: int = 0) -> None:
        super().__init__(points)
        top = check_int(top, "top", minimum=1)
        if n_clusters is None:
            n_clusters = min(self.n_codewords, max(top, round(math.sqrt(top * self.n_codewords))))
            top = min(top, n_clusters)  # a tiny codebook has fewer parents than `top`
        self.n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=self.n_codewords)
        self.top = check_int(top, "top", minimum=1, maximum=self.n_clusters)
        self.seed = check_int(seed, "seed", minimum=0)
        self.parents, labels = kmeans_codewords(self.points, self.n_clusters, self.seed)
        self._parent_norm2 = row_sumsq(self.parents)
        self._order, self._offsets = _group(labels, self.n_clusters)
        self._sorted = np.ascontiguousarray(self.points[self._order])
        self._sorted_norm2 = np.ascontiguousarray(self._norm2[self._order])
        self.labels = labels

    def __repr__(self) -> str:
        return f"ClusteredSearch(N={self.n_codewords}, k={self.k}, clusters={self.n_clusters}, top={self.top})"

    @property
    def candidates_per_block(self) -> float:
        # expected children of T parents if clusters were equal-sized
        return float(self.n_clusters + self.top * self.n_codewords / self.n_clusters)

    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        _clustered_kernel(
            y, self.parents, self._parent_norm2, self._sorted, self._sorted_norm2, self._order, self._offsets, self.top, idx, dist
        )


def make_search(encoder: str, codebook: Any, **options: Any) -> NearestCodewordSearch:
    """Build the encoder ``encoder`` for a codebook.

    Parameters
    ----------
    encoder : {"exhaustive", "two-stage", "clustered", "structured"}
        Which search.
    codebook : Codebook-like
        Needs ``points (N, k)``; ``"two-stage"`` also ``shell_index (N,)``;
        ``"structured"`` a ``structure`` whose ``search(points)`` returns the exact
        structured search (``ValueError`` when the codebook has none).
    **options
        ``probes`` (two-stage); ``n_clusters``, ``top``, ``seed`` (clustered).
        Options of the other encoders are ignored; unknown options raise.

    Returns
    -------
    NearestCodewordSearch
        The search object; its ``search(y)`` returns indices and squared distances.
    """
    known = {"probes", "n_clusters", "top", "seed"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown encoder options {sorted(unknown)}; known: {sorted(known)}")
    points = codebook.points
    if encoder == "exhaustive":
        return ExhaustiveSearch(points)
    if encoder == "two-stage":
        return TwoStageSearch(points, codebook.shell_index, probes=options.get("probes", 1))
    if encoder == "clustered":
        return ClusteredSearch(
            points, n_clusters=options.get("n_clusters"), top=options.get("top", 4), seed=options.get("seed", 0)
        )
    if encoder == "structured":  # duck-typed: search/ does not import codebooks/
        build = getattr(getattr(codebook, "structure", None), "search", None)
        if build is None:
            raise ValueError("encoder 'structured' needs a codebook with a structure that has an exact decoder; this one has none")
        search = build(points)  # raises ValueError for a family without an exact decoder
        if not isinstance(search, NearestCodewordSearch):
            raise TypeError(f"codebook.structure.search returned {type(search).__name__}, not a NearestCodewordSearch")
        return search
    raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")


def nearest_codeword(y: object, points: object) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest codeword of every block: ``(index (n,), squared distance (n,))``.

    Parameters
    ----------
    y : array_like
        Blocks of shape ``(n, k)``.
    points : array_like
        Codebook of shape ``(N, k)``.

    Returns
    -------
    index : numpy.ndarray
        Index of the nearest codeword of every block, shape ``(n,)``.
    distance : numpy.ndarray
        Its squared Euclidean distance, shape ``(n,)``, float64.
    """
    return ExhaustiveSearch(points).search(y)
