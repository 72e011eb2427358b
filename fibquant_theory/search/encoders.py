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
    Top-``T`` clustered search (:mod:`~fibquant_theory.search.clustered`): the
    codewords are clustered by k-means into ``K`` parents (a deterministic
    function of the codebook and ``seed``), every codeword listed in its
    ``spill = S`` nearest clusters; compare ``y`` with the ``K`` parent
    centroids, keep the ``T`` nearest and search their members exhaustively
    (:math:`O(K + T S N/K)`; :math:`K=\sqrt{TSN}` by default). ``T = K`` is
    exhaustive.

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

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from numba import njit

from fibquant_theory._validation import as_rows, check_distance_range, check_int
from fibquant_theory.numerics.fixed_order import row_sumsq
from fibquant_theory.search.clustered import (
    ClusterIndex,
    build_cluster_index,
    default_clusters,
    kmeans_codewords,
    run_clustered,
)
from fibquant_theory.search.kernel import (
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


class ClusteredSearch(NearestCodewordSearch):
    """Top-``T`` clustered search: ``K`` k-means parents, search the members of the ``T`` nearest.

    The cluster index and the kernel are those of :mod:`~fibquant_theory.search.clustered`;
    with ``top = n_clusters`` the codes are the exhaustive search's, bit for bit.

    Parameters
    ----------
    points : array_like
        Codebook of shape ``(N, k)``.
    n_clusters : int or None
        Number of parents ``K``; default :math:`\\mathrm{round}(\\sqrt{T S N})`
        (:func:`~fibquant_theory.search.clustered.default_clusters`, which minimises
        :math:`K + T S N / K`), at most ``N`` (and then ``T`` is capped at ``K``).
    top : int
        Parents searched ``T``, ``1 <= T <= K`` (``T = K`` is exhaustive).
    seed : int
        Seed of the k-means initialisation.
    spill : int
        Clusters every codeword is listed in ``S``, ``1 <= S <= K`` (overlapping
        clusters: fewer misses for ``S`` times the members).
    """

    name = "clustered"

    def __init__(
        self, points: object, n_clusters: int | None = None, top: int = 4, seed: int = 0, spill: int = 1
    ) -> None:
        super().__init__(points)
        top = check_int(top, "top", minimum=1)
        spill = check_int(spill, "spill", minimum=1)
        if n_clusters is None:
            n_clusters = default_clusters(self.n_codewords, top, spill)
            top = min(top, n_clusters)  # a tiny codebook has fewer parents than `top`
        self.n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=self.n_codewords)
        self.top = check_int(top, "top", minimum=1, maximum=self.n_clusters)
        self.seed = check_int(seed, "seed", minimum=0)
        self.spill = check_int(spill, "spill", minimum=1, maximum=self.n_clusters)
        #: the clusters and their members (also what the GPU kernel reads)
        self.index: ClusterIndex = build_cluster_index(self.points, self.n_clusters, spill=self.spill, seed=self.seed)
        self.parents = self.index.parents
        self.labels = self.index.labels

    def __repr__(self) -> str:
        return (
            f"ClusteredSearch(N={self.n_codewords}, k={self.k}, clusters={self.n_clusters}, top={self.top}, "
            f"spill={self.spill})"
        )

    @property
    def candidates_per_block(self) -> float:
        # expected members of T parents if clusters were equal-sized
        return self.index.candidates_per_block(self.top)

    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        run_clustered(y, self.index, self.top, idx, dist)


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
        ``probes`` (two-stage); ``n_clusters``, ``top``, ``seed``, ``spill`` (clustered).
        Options of the other encoders are ignored; unknown options raise.

    Returns
    -------
    NearestCodewordSearch
        The search object; its ``search(y)`` returns indices and squared distances.
    """
    known = {"probes", "n_clusters", "top", "seed", "spill"}
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
            points,
            n_clusters=options.get("n_clusters"),
            top=options.get("top", 4),
            seed=options.get("seed", 0),
            spill=options.get("spill", 1),
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
