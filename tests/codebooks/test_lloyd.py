"""Numba nearest-codeword search and Lloyd–Max refinement against naive NumPy references (issue #3)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibquant_theory.codebooks.lloyd import assignment_method, lloyd_max, nearest_codeword
from fibquant_theory.theory.source import SphericalBeta
from tests.reference import lloyd_max_from_samples, lloyd_naive, nearest_codeword_naive


@pytest.mark.parametrize(("n", "n_code", "k"), [(1, 1, 1), (500, 7, 1), (2_000, 64, 3), (3_000, 300, 8), (700, 40, 33)])
def test_nearest_codeword_matches_the_naive_search(n: int, n_code: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, k))
    pts = rng.standard_normal((n_code, k))
    idx, d2 = nearest_codeword(x, pts)
    ref_idx, ref_d2 = nearest_codeword_naive(x, pts)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(d2, ref_d2, rtol=1e-12, atol=1e-15)
    if k <= 8:
        kd_idx, kd_d2 = nearest_codeword(x, pts, method="kdtree")
        np.testing.assert_array_equal(kd_idx, ref_idx)
        np.testing.assert_allclose(kd_d2, ref_d2, rtol=1e-12, atol=1e-15)


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(1, 60),
    n_code=st.integers(1, 40),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_assignment_is_optimal(n: int, n_code: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, k))
    pts = rng.uniform(-1, 1, (n_code, k))
    idx, d2 = nearest_codeword(x, pts)
    all_d2 = ((x[:, None, :] - pts[None]) ** 2).sum(-1)
    assert np.all(d2 <= all_d2.min(axis=1) * (1 + 1e-12) + 1e-300)
    np.testing.assert_allclose(d2, all_d2[np.arange(n), idx], rtol=1e-13, atol=1e-300)


def test_codebook_points_encode_to_themselves() -> None:
    pts = SphericalBeta(64, 4).rvs(257, seed=3)
    for method in ("exhaustive", "kdtree"):
        idx, d2 = nearest_codeword(pts, pts, method=method)
        np.testing.assert_array_equal(idx, np.arange(257))
        np.testing.assert_array_equal(d2, np.zeros(257))


def test_ties_go_to_the_lowest_index() -> None:
    pts = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    idx, _ = nearest_codeword(np.array([[0.0, 0.0], [2.0, 0.0]]), pts)
    assert idx.tolist() == [0, 0]


def test_nearest_codeword_rejects_bad_input() -> None:
    pts = np.zeros((3, 2))
    with pytest.raises(ValueError, match="NaN or Inf"):
        nearest_codeword(np.array([[0.0, np.inf]]), pts)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        nearest_codeword(np.zeros((4, 3)), pts)
    with pytest.raises(ValueError, match="at least one codeword"):
        nearest_codeword(np.zeros((4, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="real numeric"):
        nearest_codeword(np.zeros((4, 2), dtype=complex), pts)
    with pytest.raises(ValueError, match="method"):
        nearest_codeword(np.zeros((4, 2)), pts, method="faiss")
    assert nearest_codeword(np.zeros((0, 2)), pts)[0].shape == (0,)


def test_assignment_method_switches_for_large_codebooks() -> None:
    assert assignment_method(256, 8) == "exhaustive"
    assert assignment_method(4096, 4) == "kdtree"
    assert assignment_method(4096, 16) == "exhaustive"


@pytest.mark.parametrize(("k", "n_code"), [(2, 16), (4, 32), (1, 5)])
def test_lloyd_matches_the_naive_reference(k: int, n_code: int) -> None:
    y = SphericalBeta(32, k).rvs(3_000, seed=k)
    init = y[:n_code] * 0.5
    n_updates = 6
    res = lloyd_max(init, y, max_iter=n_updates + 1, tol=0.0)
    assert res.n_iter == n_updates + 1
    ref_pts, ref_mse = lloyd_naive(init, y, n_updates)
    np.testing.assert_allclose(res.points, ref_pts, rtol=1e-12, atol=1e-14)
    assert res.mse == pytest.approx(ref_mse, rel=1e-12)


def test_lloyd_history_decreases_and_never_exceeds_the_start() -> None:
    y = SphericalBeta(64, 4).rvs(10_000, seed=0)
    init = y[:64].copy()
    _, d2 = nearest_codeword(y, init)
    res = lloyd_max(init, y, tol=1e-5)
    accepted = res.history[:-1] if res.history[-1] >= res.history[:-1].min() else res.history
    assert np.all(np.diff(accepted) < 0)
    assert res.mse <= d2.mean()
    assert res.mse == pytest.approx(nearest_codeword(y, res.points)[1].mean(), rel=1e-12)
    assert res.converged
    # Hamerly's bounds settle most samples: far fewer full searches than n * iterations.
    assert res.n_full_searches < 0.6 * res.n_iter * y.shape[0]  # observed 0.23


def test_lloyd_tolerance_controls_the_work() -> None:
    y = SphericalBeta(64, 2).rvs(10_000, seed=1)
    init = y[:32].copy()
    loose = lloyd_max(init, y, tol=1e-2)
    tight = lloyd_max(init, y, tol=1e-5)
    assert loose.n_iter < tight.n_iter
    assert tight.mse <= loose.mse


def test_empty_cells_are_reseeded() -> None:
    y = SphericalBeta(64, 2).rvs(5_000, seed=2)
    init = np.vstack([y[:6], [[50.0, 50.0], [60.0, -60.0]], y[:2]])  # far codewords and duplicates
    res = lloyd_max(init, y, tol=1e-6)
    assert res.n_empty_fixed >= 4
    idx, _ = nearest_codeword(y, res.points)
    assert np.bincount(idx, minlength=10).min() > 0
    assert np.abs(res.points).max() < 1.0


def test_lloyd_reproduces_the_scalar_reference() -> None:
    t = SphericalBeta(16, 1).rvs(20_000, seed=4)
    res = lloyd_max(np.quantile(t, (np.arange(4) + 0.5) / 4)[:, None], t, tol=0.0, max_iter=500)
    ref = lloyd_max_from_samples(t[:, 0], 4, iterations=500)
    np.testing.assert_allclose(np.sort(res.points[:, 0]), ref, atol=1e-9)


def test_lloyd_is_deterministic_and_thread_count_independent() -> None:
    y = SphericalBeta(64, 8).rvs(10_000, seed=5)
    init = y[:64].copy()
    a = lloyd_max(init, y, tol=1e-5)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = lloyd_max(init, y, tol=1e-5)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(a.points, b.points)
    assert a.mse == b.mse and a.n_iter == b.n_iter


def test_lloyd_is_independent_of_the_parallel_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tunables of fibquant_theory.config are read at call time (kernel arguments, not compiled-in
    globals); forcing the parallel drivers with odd row blocks changes no bit, including the local search."""
    from fibquant_theory import config

    y = SphericalBeta(64, 4).rvs(6_000, seed=7)
    init = y[:1030].copy()  # >= LOCAL_MIN_CODEWORDS: the neighbour-list search runs too
    a = lloyd_max(init, y, max_iter=6, tol=0.0, assign="exhaustive")
    assert a.n_local_searches > 0
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(config, "ASSIGN_BLOCK", 37)
    b = lloyd_max(init, y, max_iter=6, tol=0.0, assign="exhaustive")
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.history, b.history)
    assert (a.n_full_searches, a.n_local_searches) == (b.n_full_searches, b.n_local_searches)


def test_kdtree_assignment_gives_the_same_lloyd_run() -> None:
    y = SphericalBeta(64, 4).rvs(4_000, seed=6)
    init = y[:40].copy()
    a = lloyd_max(init, y, tol=1e-4, assign="exhaustive")
    b = lloyd_max(init, y, tol=1e-4, assign="kdtree")
    assert b.assign == "kdtree" and a.n_iter == b.n_iter
    np.testing.assert_allclose(a.points, b.points, rtol=1e-12, atol=1e-14)


def test_lloyd_rejects_bad_input() -> None:
    y = np.zeros((10, 2))
    with pytest.raises(ValueError, match="at least as many samples"):
        lloyd_max(np.zeros((11, 2)), y)
    with pytest.raises(ValueError, match="tol"):
        lloyd_max(np.zeros((2, 2)), y, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        lloyd_max(np.zeros((2, 2)), y, max_iter=0)
    with pytest.raises(ValueError, match="assign"):
        lloyd_max(np.zeros((2, 2)), y, assign="ann")
    with pytest.raises(ValueError, match="NaN or Inf"):
        lloyd_max(np.zeros((2, 2)), np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        lloyd_max(np.zeros((2, 2)), np.zeros((10, 3)))
    init = np.zeros((2, 2))
    lloyd_max(init, np.ones((10, 2)))
    assert np.all(init == 0)  # the input is not modified


@pytest.mark.parametrize("scale", [1e160, 1e200])
def test_overflowing_distances_are_refused(scale: float) -> None:
    """D11: inputs near 1e160 overflowed the squared distances: nearest_codeword returned index 0
    for every row and lloyd_max reported converged=True with mse=inf. Now both raise."""
    from fibquant_theory.search.encoders import ExhaustiveSearch, TwoStageSearch

    rng = np.random.default_rng(0)
    pts = rng.standard_normal((8, 2))
    x = scale * rng.standard_normal((50, 2))
    with pytest.raises(ValueError, match="too large for squared distances"):
        nearest_codeword(x, pts)
    with pytest.raises(ValueError, match="too large for squared distances"):
        nearest_codeword(x, pts, method="kdtree")
    with pytest.raises(ValueError, match="too large for squared distances"):
        lloyd_max(pts, x)
    with pytest.raises(ValueError, match="too large for squared distances"):
        lloyd_max(pts * scale, x / scale)  # huge codewords, modest samples
    for search in (ExhaustiveSearch(pts), TwoStageSearch(pts, np.arange(8) % 2)):
        with pytest.raises(ValueError, match="too large for squared distances"):
            search.search(x)
    # the largest inputs that are still safe give finite, correct answers
    safe = 1e150 * rng.standard_normal((50, 2))
    idx, dist = nearest_codeword(safe, pts * 1e150)
    ref_idx, _ = nearest_codeword_naive(safe / 1e150, pts)
    np.testing.assert_array_equal(idx, ref_idx)
    assert np.isfinite(dist).all()
