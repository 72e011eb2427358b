"""Nearest-codeword encoders: fast kernels == naive NumPy, fast never better than exhaustive."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibquant_theory.search.encoders import (
    ENCODERS,
    ClusteredSearch,
    ExhaustiveSearch,
    TwoStageSearch,
    kmeans_codewords,
    make_search,
    nearest_codeword,
)
from fibquant_theory.theory.source import SphericalBeta
from tests.reference import clustered_naive, nearest_codeword_naive, two_stage_naive


def shell_codebook(d: int, k: int, n_codewords: int, n_shells: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random directions on Beta-quantile shells (a stand-in with the shape of a FibQuant codebook)."""
    rng = np.random.default_rng(seed)
    radii = SphericalBeta(d, k).radius_ppf((np.arange(n_shells) + 0.5) / n_shells)
    labels = np.arange(n_codewords) % n_shells
    g = rng.standard_normal((n_codewords, k))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g * radii[labels, None], labels


def blocks(d: int, k: int, n: int, seed: int = 1) -> np.ndarray:
    return SphericalBeta(d, k).rvs(n, seed=seed)


@pytest.mark.parametrize(("d", "k", "n_codewords"), [(128, 8, 256), (32, 3, 100), (16, 1, 7)])
def test_exhaustive_equals_naive(d: int, k: int, n_codewords: int) -> None:
    points, _ = shell_codebook(d, k, n_codewords, 4)
    y = blocks(d, k, 3000)
    idx, dist = ExhaustiveSearch(points).search(y)
    ref_idx, ref_dist = nearest_codeword_naive(y, points)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-15)
    assert idx.dtype == np.int64 and dist.dtype == np.float64


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_two_stage_equals_naive(probes: int) -> None:
    points, labels = shell_codebook(64, 4, 256, 8, seed=2)
    y = blocks(64, 4, 1500, seed=3)
    idx, dist = TwoStageSearch(points, labels, probes=probes).search(y)
    ref_idx, ref_dist = two_stage_naive(y, points, labels, probes)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("top", [1, 3])
def test_clustered_equals_naive(top: int) -> None:
    points, _ = shell_codebook(64, 4, 256, 8, seed=4)
    search = ClusteredSearch(points, n_clusters=20, top=top, seed=0)
    y = blocks(64, 4, 1500, seed=5)
    idx, dist = search.search(y)
    ref_idx, ref_dist = clustered_naive(y, points, search.parents, search.labels, top)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-15)


def test_full_probe_and_full_top_are_exhaustive() -> None:
    points, labels = shell_codebook(32, 4, 128, 8, seed=6)
    y = blocks(32, 4, 2000, seed=7)
    exact, _ = ExhaustiveSearch(points).search(y)
    np.testing.assert_array_equal(TwoStageSearch(points, labels, probes=8).search(y)[0], exact)
    clustered = ClusteredSearch(points, n_clusters=10, top=10)
    np.testing.assert_array_equal(clustered.search(y)[0], exact)


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 6),
    n_codewords=st.integers(2, 300),
    n_shells=st.integers(1, 12),
    probes=st.integers(1, 3),
    top=st.integers(1, 4),
)
def test_fast_encoders_never_better_and_report_what_they_return(
    seed: int, k: int, n_codewords: int, n_shells: int, probes: int, top: int
) -> None:
    d = 4 * k + 4
    n_shells = min(n_shells, n_codewords)
    points, labels = shell_codebook(d, k, n_codewords, n_shells, seed=seed)
    y = blocks(d, k, 200, seed=seed + 1)
    _, best_dist = ExhaustiveSearch(points).search(y)
    searches = [
        TwoStageSearch(points, labels, probes=min(probes, n_shells)),
        ClusteredSearch(points, top=top, seed=seed % 7),
    ]
    for search in searches:
        idx, dist = search.search(y)
        assert ((0 <= idx) & (idx < n_codewords)).all()
        # the reported distance is the distance to the returned codeword ...
        np.testing.assert_allclose(dist, ((y - points[idx]) ** 2).sum(axis=1), rtol=1e-12, atol=1e-15)
        # ... and never better than the exhaustive optimum
        assert (dist >= best_dist - 1e-12).all()
    # codewords encode to themselves (exhaustive search; ties to the lowest index of equal points)
    self_idx, self_dist = ExhaustiveSearch(points).search(points)
    assert (self_dist == 0).all()
    np.testing.assert_array_equal(points[self_idx], points)


def test_more_probes_or_parents_never_hurt_any_block() -> None:
    points, labels = shell_codebook(64, 8, 512, 16, seed=8)
    y = blocks(64, 8, 2000, seed=9)
    previous = np.full(len(y), np.inf)
    for probes in (1, 2, 4, 16):
        _, dist = TwoStageSearch(points, labels, probes=probes).search(y)
        assert (dist <= previous).all()  # candidate sets are nested
        previous = dist
    previous = np.full(len(y), np.inf)
    for top in (1, 2, 8, 32):
        _, dist = ClusteredSearch(points, n_clusters=32, top=top).search(y)
        assert (dist <= previous).all()
        previous = dist


def test_candidates_per_block_cost_model() -> None:
    points, labels = shell_codebook(64, 8, 4096, 64)
    assert ExhaustiveSearch(points).candidates_per_block == 4096
    assert TwoStageSearch(points, labels).candidates_per_block == 64 + 4096 / 64
    clustered = ClusteredSearch(points, top=4)
    assert clustered.n_clusters == 128  # round(sqrt(4 * 4096))
    assert clustered.candidates_per_block == 128 + 4 * 4096 / 128


def test_kmeans_is_deterministic_and_has_no_empty_cluster() -> None:
    points, _ = shell_codebook(64, 8, 300, 5, seed=10)
    c1, l1 = kmeans_codewords(points, 40, seed=3)
    c2, l2 = kmeans_codewords(points, 40, seed=3)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)
    assert np.bincount(l1, minlength=40).min() >= 1
    # centroids are the means of their clusters
    for c in (0, 17, 39):
        np.testing.assert_allclose(c1[c], points[l1 == c].mean(axis=0), rtol=0, atol=1e-14)


def test_make_search_and_wrappers() -> None:
    points, labels = shell_codebook(32, 4, 64, 4)

    class Structured(ExhaustiveSearch):  # a stand-in for a codebook family's exact decoder
        name = "structured"

    cb = SimpleNamespace(points=points, shell_index=labels, structure=SimpleNamespace(search=Structured))
    for name in ENCODERS:
        assert make_search(name, cb).name == name
    with pytest.raises(ValueError, match="structure"):
        make_search("structured", SimpleNamespace(points=points, shell_index=labels))
    with pytest.raises(ValueError, match="encoder must be"):
        make_search("greedy", cb)
    with pytest.raises(ValueError, match="unknown encoder options"):
        make_search("clustered", cb, topp=3)
    y = blocks(32, 4, 10)
    np.testing.assert_array_equal(nearest_codeword(y, points)[0], nearest_codeword_naive(y, points)[0])


def test_bad_input() -> None:
    points, labels = shell_codebook(32, 4, 64, 4)
    search = ExhaustiveSearch(points)
    y = blocks(32, 4, 5)
    y[3, 1] = np.nan
    with pytest.raises(ValueError, match="first bad row 3"):
        search.search(y)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        search.search(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ExhaustiveSearch(np.full((4, 2), np.inf))
    with pytest.raises(ValueError, match=r"shape \(N, k\)"):
        ExhaustiveSearch(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shell_index"):
        TwoStageSearch(points, labels[:-1])
    with pytest.raises(ValueError, match="probes"):
        TwoStageSearch(points, labels, probes=5)
    with pytest.raises(ValueError, match="n_clusters"):
        ClusteredSearch(points, n_clusters=65)
    with pytest.raises(ValueError, match="top"):
        ClusteredSearch(points, n_clusters=4, top=5)
    assert search.search(np.zeros((0, 4)))[0].shape == (0,)
