"""The clustered top-T search: the exhaustive codes when every cluster is searched, overlap, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fibquant_theory.codecs.fibquant import FibQuantCodec
from fibquant_theory.search.clustered import (
    ClusterIndex,
    _centroid_sums,
    _clustered_kernel,
    _clustered_parallel,
    build_cluster_index,
    default_clusters,
    kmeans_codewords,
    nearest_clustered,
)
from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch, make_search
from fibquant_theory.search.kernel import nearest_exhaustive
from fibquant_theory.theory.source import SphericalBeta
from tests.search.test_encoders import blocks, shell_codebook


def spill_naive(y: np.ndarray, points: np.ndarray, parents: np.ndarray, labels: np.ndarray, top: int, spill: int):
    """One block at a time: the ``top`` nearest parents, each codeword in its k-means cluster and its nearest others."""
    member = []
    for j, p in enumerate(points):
        near = [c for c in np.argsort(((parents - p) ** 2).sum(axis=1), kind="stable") if c != labels[j]]
        member.append({int(labels[j]), *(int(c) for c in near[: spill - 1])})
    idx = np.empty(len(y), dtype=np.int64)
    dist = np.empty(len(y))
    for i, v in enumerate(y):
        best = set(np.argsort(((parents - v) ** 2).sum(axis=1), kind="stable")[:top].tolist())
        cand = np.array([j for j in range(len(points)) if member[j] & best])
        d2 = ((points[cand] - v) ** 2).sum(axis=1)
        idx[i] = cand[np.argmin(d2)]  # cand is increasing: ties go to the lowest index
        dist[i] = d2.min()
    return idx, dist


@pytest.mark.parametrize("spill", [1, 2, 3])
def test_every_cluster_gives_the_exhaustive_codes_bit_for_bit(spill: int) -> None:
    points, _ = shell_codebook(64, 8, 300, 6, seed=11)
    points = np.concatenate([points, points[:40]])  # exact ties: the first copy wins
    y = np.concatenate([blocks(64, 8, 1500, seed=12), points[300:340]])
    want, want_d = nearest_exhaustive(y, points, score="expanded")
    search = ClusteredSearch(points, n_clusters=17, top=17, spill=spill)
    got, got_d = search.search(y)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_d, want_d)
    assert (got[-40:] < 300).all()
    np.testing.assert_array_equal(nearest_clustered(y, search.index, 17)[0], want)


@pytest.mark.parametrize(("top", "spill"), [(1, 2), (3, 3)])
def test_overlapping_clusters_equal_naive(top: int, spill: int) -> None:
    points, _ = shell_codebook(32, 4, 200, 5, seed=13)
    y = blocks(32, 4, 400, seed=14)
    search = ClusteredSearch(points, n_clusters=12, top=top, spill=spill, seed=2)
    idx, dist = search.search(y)
    ref_idx, ref_dist = spill_naive(y, points, search.parents, search.labels, top, spill)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-15)


def test_index_layout_and_nested_overlap() -> None:
    points, _ = shell_codebook(64, 8, 500, 8, seed=15)
    y = blocks(64, 8, 1500, seed=16)
    previous = np.full(len(y), np.inf)
    for spill in (1, 2, 4):
        ix = build_cluster_index(points, 20, spill=spill, seed=1)
        assert isinstance(ix, ClusterIndex) and (ix.n_clusters, ix.n_codewords, ix.k, ix.spill) == (20, 500, 8, spill)
        assert ix.offsets[0] == 0 and ix.offsets[-1] == 500 * spill == ix.order.size
        np.testing.assert_array_equal(ix.sorted_points, points[ix.order])
        for c in range(20):
            members = ix.order[ix.offsets[c] : ix.offsets[c + 1]]
            assert (np.diff(members) > 0).all()  # increasing codeword index, no duplicate in a cluster
        assert np.bincount(ix.order, minlength=500).tolist() == [spill] * 500
        assert ix.candidates_per_block(3) == 20 + 3 * spill * 500 / 20
        _, dist = nearest_clustered(y, ix, 3)
        assert (dist <= previous).all()  # each codeword's clusters for S are among those for S + 1
        previous = dist


def test_parallel_kernel_gives_the_serial_bits() -> None:
    points, _ = shell_codebook(64, 8, 600, 6, seed=20)
    ix = build_cluster_index(points, 24, spill=2)
    y = blocks(64, 8, 1003, seed=21)
    args = (y, ix.parents, ix.parent_norm2, ix.sorted_points, ix.sorted_norm2, ix.order, ix.offsets, 3)
    serial = (np.empty(1003, dtype=np.int64), np.empty(1003))
    _clustered_kernel(*args, *serial)
    for block in (1, 7, 256, 2000):
        par = (np.full(1003, -1, dtype=np.int64), np.full(1003, np.nan))
        _clustered_parallel(*args, *par, block)
        assert par[0].tobytes() == serial[0].tobytes() and par[1].tobytes() == serial[1].tobytes()
    np.testing.assert_array_equal(nearest_clustered(y, ix, 3)[0], serial[0])


def test_kmeans_bits_are_fixed_order_sums() -> None:
    points, _ = shell_codebook(64, 8, 400, 5, seed=17)
    c1, l1 = kmeans_codewords(points, 30, seed=4, iterations=7)
    c2, l2 = kmeans_codewords(points.copy(), 30, seed=4, iterations=7)
    assert c1.tobytes() == c2.tobytes() and np.array_equal(l1, l2)
    # the centroid sums are added in increasing codeword index, one coordinate at a time
    sums = np.empty((30, 8))
    counts = np.empty(30, dtype=np.int64)
    _centroid_sums(points, l1, sums, counts)
    for c in (0, 13, 29):
        acc = np.zeros(8)
        for j in np.flatnonzero(l1 == c):
            acc = acc + points[j]
        assert acc.tobytes() == sums[c].tobytes() and counts[c] == np.sum(l1 == c)
    # another seed, other clusters; same seed, same index
    assert not np.array_equal(kmeans_codewords(points, 30, seed=5, iterations=7)[1], l1)
    a = build_cluster_index(points, 30, spill=2, seed=4)
    b = build_cluster_index(points, 30, spill=2, seed=4)
    assert a.order.tobytes() == b.order.tobytes() and a.parents.tobytes() == b.parents.tobytes()


def test_defaults_and_the_codec_option() -> None:
    assert default_clusters(65536, 8) == 724 and default_clusters(65536, 4, 2) == 724 and default_clusters(10, 4) == 6
    assert default_clusters(3, 8) == 3
    points, _ = shell_codebook(32, 4, 64, 4)
    search = ClusteredSearch(points, top=2, spill=2)
    assert search.n_clusters == default_clusters(64, 2, 2) and "spill=2" in repr(search)
    cb = type("CB", (), {"points": points, "d": 32, "k": 4})()
    assert make_search("clustered", cb, top=3, spill=2, n_clusters=8).index.spill == 2
    x = np.random.default_rng(0).standard_normal((50, 32))
    exact = FibQuantCodec(cb, seed=1).encode_indices(x)[0]
    full = FibQuantCodec(cb, seed=1, encoder="clustered", n_clusters=8, top=8, spill=2).encode_indices(x)[0]
    np.testing.assert_array_equal(full, exact)


def test_penalty_is_small_at_the_recommended_setting() -> None:
    """K = sqrt(N), T = 8 misses a few blocks, and costs a fraction of a percent of MSE (N = 4096)."""
    points, _ = shell_codebook(128, 8, 4096, 64, seed=18)
    y = SphericalBeta(128, 8).rvs(3000, seed=19)
    _, exact = ExhaustiveSearch(points).search(y)
    _, fast = ClusteredSearch(points, n_clusters=64, top=8).search(y)
    _, one = ClusteredSearch(points, n_clusters=64, top=1).search(y)
    penalty_db = 10 * np.log10(fast.mean() / exact.mean())
    assert 0.0 <= penalty_db <= 0.05 < 10 * np.log10(one.mean() / exact.mean())


def test_bad_input() -> None:
    points, _ = shell_codebook(32, 4, 64, 4)
    ix = build_cluster_index(points, 8)
    y = blocks(32, 4, 6)
    with pytest.raises(ValueError, match="top"):
        nearest_clustered(y, ix, 0)
    with pytest.raises(ValueError, match="top"):
        nearest_clustered(y, ix, 9)
    with pytest.raises(TypeError, match="ClusterIndex"):
        nearest_clustered(y, points, 2)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        nearest_clustered(np.zeros((3, 5)), ix, 2)
    y[4, 0] = np.inf
    with pytest.raises(ValueError, match="first bad row 4"):
        nearest_clustered(y, ix, 2)
    with pytest.raises(ValueError, match="spill"):
        build_cluster_index(points, 8, spill=9)
    with pytest.raises(ValueError, match="spill"):
        ClusteredSearch(points, n_clusters=8, spill=0)
    with pytest.raises(ValueError, match="n_clusters"):
        build_cluster_index(points, 65)
    bad = points.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        build_cluster_index(bad, 8)
    assert nearest_clustered(np.zeros((0, 4)), ix, 2)[0].shape == (0,)
