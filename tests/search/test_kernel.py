"""The one exhaustive nearest-codeword kernel == the naive NumPy search, bit for bit (issue #14)."""

from __future__ import annotations

import numpy as np
import pytest

from fibquant_theory import config
from fibquant_theory.codebooks.lloyd import nearest_codeword as lloyd_nearest_codeword
from fibquant_theory.search.encoders import (
    ClusteredSearch,
    ExhaustiveSearch,
    TwoStageSearch,
)
from fibquant_theory.search.kernel import (
    SCORES,
    nearest_exhaustive,
    nearest_with_runner_up,
)
from tests.reference import nearest_codeword_naive, nearest_codeword_ordered_naive

#: (n, N, k): tiny, one codeword, k >= 8 (NumPy's pairwise sums), and one big enough for the parallel driver.
SIZES = [(1, 1, 1), (300, 1, 3), (500, 7, 1), (2_000, 64, 3), (1_500, 300, 8), (700, 40, 33), (20_000, 64, 8)]


def _tie_heavy(n: int, n_code: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks and codewords on small integer grids: all arithmetic is exact, so exact ties abound."""
    rng = np.random.default_rng(seed)
    y = rng.integers(-2, 3, (n, k)).astype(np.float64) * 0.5
    pts = rng.integers(-1, 2, (n_code, k)).astype(np.float64)
    pts[n_code // 2] = pts[0]  # duplicate codewords: ties go to the lower index
    return y, pts


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize(("n", "n_code", "k"), SIZES)
def test_kernel_equals_the_ordered_naive_search_exactly(score: str, n: int, n_code: int, k: int) -> None:
    rng = np.random.default_rng(n + n_code + k)
    y = rng.standard_normal((n, k))
    pts = rng.standard_normal((n_code, k))
    idx, dist = nearest_exhaustive(y, pts, score=score)
    ref_idx, ref_dist, _ = nearest_codeword_ordered_naive(y, pts, score)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)  # the same bits, not merely close
    assert idx.dtype == np.int64 and dist.dtype == np.float64


@pytest.mark.parametrize(("n", "n_code", "k"), [(500, 7, 1), (2_000, 64, 3), (3_000, 64, 6)])
def test_kernel_equals_the_plain_naive_search_exactly_below_eight_coordinates(n: int, n_code: int, k: int) -> None:
    """Below k = 8 NumPy's ``sum`` adds in coordinate order too, so even the plain reference matches bit for bit."""
    rng = np.random.default_rng(k)
    y = rng.standard_normal((n, k))
    pts = rng.standard_normal((n_code, k))
    ref_idx, ref_dist = nearest_codeword_naive(y, pts)
    for score in SCORES:
        idx, dist = nearest_exhaustive(y, pts, score=score)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)


@pytest.mark.parametrize(("n", "n_code", "k", "seed"), [(4_000, 9, 1, 0), (4_000, 40, 2, 1), (3_000, 60, 3, 2), (1_000, 30, 8, 3)])
def test_tie_heavy_inputs_go_to_the_lowest_index(n: int, n_code: int, k: int, seed: int) -> None:
    y, pts = _tie_heavy(n, n_code, k, seed)
    ref_idx, ref_dist, full = nearest_codeword_ordered_naive(y, pts)
    n_tied = int(((full == ref_dist[:, None]).sum(axis=1) > 1).sum())
    assert n_tied > n // 10  # the case is really tie-heavy
    for score in SCORES:
        idx, dist = nearest_exhaustive(y, pts, score=score)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)
    # the first minimum of every row is the lowest index among the tied codewords
    np.testing.assert_array_equal(idx, np.argmax(full == ref_dist[:, None], axis=1))
    # the callers of the kernel agree: Lloyd's search (direct score), the exhaustive encoder (first-minimum
    # scan) and the grouped scans of the other encoders when they search everything (ties by original index)
    np.testing.assert_array_equal(lloyd_nearest_codeword(y, pts)[0], ref_idx)
    np.testing.assert_array_equal(ExhaustiveSearch(pts).search(y)[0], ref_idx)
    shells = np.arange(n_code) % 3
    np.testing.assert_array_equal(TwoStageSearch(pts, shells, probes=3).search(y)[0], ref_idx)
    np.testing.assert_array_equal(ClusteredSearch(pts, n_clusters=5, top=5).search(y)[0], ref_idx)


@pytest.mark.parametrize(("n", "n_code", "k"), [(1, 1, 2), (900, 1, 2), (2_000, 50, 4), (1_000, 33, 9)])
def test_runner_up_is_the_second_smallest_distance(n: int, n_code: int, k: int) -> None:
    y, pts = _tie_heavy(n, n_code, k, seed=n_code)
    y += np.random.default_rng(0).standard_normal(y.shape) * (np.arange(n) % 2)[:, None]  # half exact, half random
    idx, dist, second = nearest_with_runner_up(y, pts)
    ref_idx, ref_dist, full = nearest_codeword_ordered_naive(y, pts)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)
    ref_second = np.full(n, np.inf) if n_code == 1 else np.partition(full, 1, axis=1)[:, 1]
    np.testing.assert_array_equal(second, ref_second)  # equal to dist on an exact tie


def test_parallel_and_serial_drivers_agree_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thresholds are read from fibquant_theory.config at call time; the row blocks change nothing."""
    rng = np.random.default_rng(7)
    y = rng.standard_normal((3_001, 5))
    pts = rng.standard_normal((97, 5))
    serial = nearest_with_runner_up(y, pts)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK", 0)
    for block in (1, 7, 256, 5_000):
        monkeypatch.setattr(config, "ASSIGN_BLOCK", block)
        for got, want in zip(nearest_with_runner_up(y, pts), serial):
            np.testing.assert_array_equal(got, want)


def test_kernel_rejects_bad_input() -> None:
    pts = np.zeros((3, 2))
    with pytest.raises(ValueError, match="score must be one of"):
        nearest_exhaustive(np.zeros((4, 2)), pts, score="cosine")
    with pytest.raises(ValueError, match=r"blocks contains NaN or Inf \(first bad row 2"):
        nearest_exhaustive(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, np.nan]]), pts)
    with pytest.raises(ValueError, match=r"blocks must have shape \(n, 2\)"):
        nearest_exhaustive(np.zeros((4, 3)), pts)
    with pytest.raises(ValueError, match="points must hold at least one codeword"):
        nearest_with_runner_up(np.zeros((4, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"points must have shape \(n, k\)"):
        nearest_exhaustive(np.zeros((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="real numeric array"):
        nearest_exhaustive(np.zeros((4, 2), dtype=complex), pts)
    with pytest.raises(ValueError, match="too large for squared distances"):
        nearest_exhaustive(np.full((2, 2), 1e200), pts)
    idx, dist = nearest_exhaustive(np.zeros((0, 2)), pts)
    assert idx.shape == dist.shape == (0,)
    # read-only and integer input is accepted (copied)
    ro = np.array([[1, 0], [0, 1]])
    ro.setflags(write=False)
    np.testing.assert_array_equal(nearest_exhaustive(ro, np.eye(2))[0], [0, 1])
