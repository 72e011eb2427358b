"""Lloyd–Max scalar quantizer of f_{d,1}: optimality conditions, monotonicity, known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fibquant_theory import SphericalBeta, lloyd_max_scalar
from fibquant_theory.theory.scalar import EXACT_MAX_DIM, coordinate_moments
from tests.reference import cell_centroid_quad, lloyd_max_from_samples, nearest_level, scalar_mse_quad

DIMS = [2, 3, 16, 64, 128, 1024]


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8])
def test_centroid_condition_by_quadrature(d: int, bits: int) -> None:
    """Each level is the centroid of its cell to 1e-9, with centroids from adaptive quadrature."""
    q = lloyd_max_scalar(d, bits)
    edges = np.concatenate(([-1.0], q.thresholds, [1.0]))
    # Check every cell for small tables, a spread of cells (incl. both tails) for large ones.
    cells = range(q.n_levels) if q.n_levels <= 16 else sorted({0, 1, 2, q.n_levels // 2, q.n_levels - 1, 37 % q.n_levels, 101 % q.n_levels})
    for j in cells:
        assert abs(q.levels[j] - cell_centroid_quad(d, edges[j], edges[j + 1])) < 1e-9, (j, q.levels[j])


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_nearest_neighbour_condition(d: int, bits: int) -> None:
    q = lloyd_max_scalar(d, bits)
    assert np.all(np.diff(q.levels) > 0)
    assert np.allclose(q.thresholds, 0.5 * (q.levels[:-1] + q.levels[1:]), atol=1e-15, rtol=0)
    assert np.allclose(q.levels, -q.levels[::-1], atol=1e-15)
    t = np.concatenate((SphericalBeta(d, 1).rvs(4000, seed=bits)[:, 0], [-1, 1]))
    assert np.array_equal(q.encode(t), nearest_level(q.levels, t))
    # Exactly on a threshold: one of the two adjacent levels (rounding decides which is nearer).
    on = q.encode(q.thresholds).astype(int)
    assert np.all((on == np.arange(1, q.n_levels)) | (on == np.arange(q.n_levels - 1)))


@pytest.mark.parametrize("d", DIMS)
def test_mse_falls_with_bits_and_matches_quadrature(d: int) -> None:
    mses = [lloyd_max_scalar(d, b).mse_per_coordinate for b in range(1, 9)]
    assert all(a > b for a, b in zip(mses, mses[1:]))
    for b in (1, 2, 4, 7):
        q = lloyd_max_scalar(d, b)
        assert q.mse_per_coordinate == pytest.approx(scalar_mse_quad(d, q.levels, q.thresholds), rel=1e-7)


def test_uniform_case_d3_is_exact() -> None:
    """d = 3: f_{3,1} is uniform on [-1, 1]; Lloyd–Max is the uniform quantizer, MSE = Delta^2/12."""
    for b in range(1, 9):
        q = lloyd_max_scalar(3, b)
        n = 2**b
        assert np.allclose(q.levels, -1 + (2 * np.arange(n) + 1) / n, atol=1e-12)
        assert q.mse_per_coordinate == pytest.approx((2 / n) ** 2 / 12, rel=1e-9)


def test_gaussian_limit_one_bit() -> None:
    """Large d: levels ±sqrt(2/(pi d)), total MSE 1 - 2/pi."""
    d = 4096
    q = lloyd_max_scalar(d, 1)
    assert q.levels[1] * math.sqrt(d) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-3)
    assert q.mse == pytest.approx(1 - 2 / math.pi, rel=1e-3)


#: Positive Lloyd–Max levels of N(0, 1), 4 and 8 levels: computed once with mpmath at 40 digits
#: (200 Lloyd steps from a uniform start, then mpmath.findroot on the centroid conditions, with
#: mpmath.ncdf / mpmath.npdf); they agree with Max (1960), Table I, to its 4 digits.
GAUSS_LM_LEVELS = {
    2: (0.452780034636492, 1.510417608499095),
    3: (0.2450941789442217, 0.7560052812058773, 1.343909278505000, 2.151945704536987),
}
#: d * E(t - Q(t))^2 under the exact f_{d,1} of the table lloyd_max_scalar(d, bits) ships, computed
#: once with mpmath at 40 digits: quadrature of (x - level)^2 c_{d,1} d^{-1/2} (1 - x^2/d)^{(d-3)/2}
#: in x = sqrt(d) t, cell by cell (the outer cell split at +0.5, 1, 2, 4, 8, 16, 32 standard units).
MPMATH_MSE = {
    (4097, 8): 4.115547152950704e-5,
    (100_000, 2): 0.11747994647841401,
    (100_000, 8): 4.118386241585585e-5,
    (10**9, 4): 0.0095010079841670645,
    (10**9, 8): 4.1185082745041103e-5,
}


def test_gaussian_limit_levels_and_mse_against_mpmath() -> None:
    """Above EXACT_MAX_DIM: sqrt(d) * levels are the Gaussian Lloyd–Max levels, the MSE is f_{d,1}'s."""
    assert EXACT_MAX_DIM == 4096
    for bits, half in GAUSS_LM_LEVELS.items():
        for d in (4097, 10**6):
            q = lloyd_max_scalar(d, bits)
            assert np.allclose(q.levels[q.n_levels // 2 :] * math.sqrt(d), half, rtol=0, atol=1e-10)
    # the stated error of the reported MSE: O(d^-2), observed 4.5e-6 at d = 4097 and 7.6e-9 at 1e5 (8 bits)
    for (d, bits), ref in MPMATH_MSE.items():
        rel = {4097: 1e-5, 100_000: 2e-8}.get(d, 1e-10)
        assert lloyd_max_scalar(d, bits).mse == pytest.approx(ref, rel=rel), (d, bits)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_gaussian_limit_is_continuous_at_the_switch(bits: int) -> None:
    """From d = 4096 (exact) to 4097 (Gaussian limit) the table moves by its stated O(1/d) error only."""
    exact, limit, before = (lloyd_max_scalar(d, bits) for d in (EXACT_MAX_DIM, EXACT_MAX_DIM + 1, EXACT_MAX_DIM - 1))
    # MSE: observed relative jump 6.5e-8, -1.3e-9, -1.8e-7 at 1, 4, 8 bits (the exact step 4095 -> 4096: 5e-8 .. 4e-7)
    assert limit.mse == pytest.approx(exact.mse, rel=1e-6)
    assert abs(limit.mse - exact.mse) < 2 * abs(exact.mse - before.mse)  # no larger than two exact steps of d
    # levels in units of 1/sqrt(d): observed jump 4.9e-5, 1.4e-3, 6.5e-3 (stated bound 26.6/d = 6.5e-3)
    jump = np.max(np.abs(limit.levels * math.sqrt(EXACT_MAX_DIM + 1) - exact.levels * math.sqrt(EXACT_MAX_DIM)))
    assert jump <= 26.7 / EXACT_MAX_DIM
    # the Gaussian table is a good quantizer of f_{4097,1}: every level is its cell's centroid to O(1/d)
    edges = np.concatenate(([-1.0], limit.thresholds, [1.0]))
    for j in (limit.n_levels // 2, limit.n_levels - 1):
        centroid = cell_centroid_quad(EXACT_MAX_DIM + 1, edges[j], edges[j + 1])
        assert abs(limit.levels[j] - centroid) * math.sqrt(EXACT_MAX_DIM + 1) < 30.0 / EXACT_MAX_DIM


def test_large_dimensions_design() -> None:
    """No RuntimeError at any d (the exact path used to stall at 8 bits near d = 1e4, at 5 bits near 1e6)."""
    for d in (10**4, 5 * 10**5, 10**12):
        mses = [lloyd_max_scalar(d, b).mse for b in range(1, 9)]
        assert all(a > b for a, b in zip(mses, mses[1:]))
        assert mses[0] == pytest.approx(1 - 2 / math.pi, rel=1e-4)


def test_turboquant_reference_values() -> None:
    """TurboQuant's stated D_mse ≈ 0.36, 0.117, 0.03, 0.009 for b = 1..4 (moderate d)."""
    got = [lloyd_max_scalar(128, b).mse for b in range(1, 5)]
    # observed at d=128: 0.3609, 0.1160, 0.03397, 0.009315
    assert got[0] == pytest.approx(0.36, abs=0.005)
    assert got[1] == pytest.approx(0.117, abs=0.002)
    assert got[2] == pytest.approx(0.034, abs=0.002)
    assert got[3] == pytest.approx(0.0093, abs=0.0003)


def test_monte_carlo_mse_and_sample_lloyd_agree() -> None:
    d, b = 64, 3
    q = lloyd_max_scalar(d, b)
    t = SphericalBeta(d, 1).rvs(200_000, seed=9)[:, 0]
    err = (t - q.decode(q.encode(t))) ** 2
    assert abs(err.mean() - q.mse_per_coordinate) < 4 * err.std() / math.sqrt(t.size)
    # The design is a fixed point of the sample Lloyd map up to sampling noise: one step moves
    # every level by less than 4 standard errors of its cell mean (observed at most 1.5).
    idx = nearest_level(q.levels, t)
    cells = [t[idx == j] for j in range(q.n_levels)]
    step = np.array([c.mean() for c in cells])
    se = np.array([c.std(ddof=1) / math.sqrt(c.size) for c in cells])
    assert np.max(np.abs(step - q.levels) / se) < 4.0
    # ... while a perturbed table is not (it moves by far more than the noise; observed 15 standard errors).
    bad = q.levels * 1.10
    idx = nearest_level(bad, t)
    cells = [t[idx == j] for j in range(q.n_levels)]
    step = np.array([c.mean() for c in cells])
    se = np.array([c.std(ddof=1) / math.sqrt(c.size) for c in cells])
    assert np.max(np.abs(step - bad) / se) > 8.0
    # A full sample-based Lloyd run lands near the design (a slow common-mode drift remains: the
    # levels can shift together at almost no cost; observed 0.019/sqrt(d) on these 200k samples).
    levels = lloyd_max_from_samples(t, 2**b, iterations=60)
    assert np.allclose(levels, q.levels, atol=0.03 / math.sqrt(d))


def test_partial_moments_total() -> None:
    for d in (2, 5, 64):
        m0, m1, m2 = coordinate_moments(d, np.array([0.0]), np.array([1.0]))
        assert m0[0] == pytest.approx(0.5, abs=1e-14)
        assert m2[0] == pytest.approx(0.5 / d, rel=1e-12)  # E t^2 = 1/d
        assert m1[0] > 0
    with pytest.raises(ValueError):
        coordinate_moments(8, np.array([0.5]), np.array([0.2]))


@pytest.mark.parametrize("bad", [0, 9, -1, 2.5, None, "3"])
def test_bad_bits_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="bits"):
        lloyd_max_scalar(64, bad)


def test_bad_dim_and_indices_raise() -> None:
    with pytest.raises(ValueError):
        lloyd_max_scalar(1, 2)
    q = lloyd_max_scalar(16, 2)
    with pytest.raises(ValueError, match="range"):
        q.decode(np.array([0, 4]))
    with pytest.raises(ValueError, match="integers"):
        q.decode(np.array([0.5]))


def test_cached_and_read_only() -> None:
    assert lloyd_max_scalar(64, 4) is lloyd_max_scalar(64, 4)
    with pytest.raises(ValueError):
        lloyd_max_scalar(64, 4).levels[0] = 0.0
