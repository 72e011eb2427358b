"""Quasi-uniform directions, Beta-quantile shells and their diagnostics (issue #3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fibquant_theory.codebooks.directions import (
    GOLDEN_ANGLE,
    GOLDEN_FRACTION,
    cap_area_fraction,
    covering_radius,
    fibonacci_circle,
    fibonacci_sphere,
    fibonacci_sunflower,
    generalized_golden_ratio,
    min_separation,
    resolve_direction_method,
    roberts_kronecker_directions,
    shell_directions,
    sign_directions,
    spherical_cap_discrepancy,
)
from fibquant_theory.codebooks.shells import (
    beta_quantile_radii,
    factorisations,
    shell_codebook,
    valid_factorisations,
)
from fibquant_theory.theory.source import SphericalBeta, sample_unit_vectors


@settings(deadline=None, max_examples=25)
@given(m=st.integers(1, 300), k=st.integers(1, 12), shell=st.integers(0, 5))
def test_shell_directions_are_unit_vectors(m: int, k: int, shell: int) -> None:
    u = shell_directions(m, k, shell)
    assert u.shape == (m, k)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-14)


def test_auto_method_per_block_size() -> None:
    assert [resolve_direction_method(k) for k in (1, 2, 3, 4, 9)] == [
        "sign",
        "fibonacci-circle",
        "fibonacci-sphere",
        "roberts-kronecker",
        "roberts-kronecker",
    ]
    assert resolve_direction_method(2, "roberts-kronecker") == "roberts-kronecker"
    with pytest.raises(ValueError, match="only for k = 3"):
        resolve_direction_method(4, "fibonacci-sphere")
    with pytest.raises(ValueError, match="directions must be one of"):
        resolve_direction_method(4, "spiral")


def test_sign_directions_alternate() -> None:
    assert sign_directions(2).ravel().tolist() == [1.0, -1.0]
    assert sign_directions(1, shell=0).item() == 1.0
    assert sign_directions(1, shell=1).item() == -1.0


def test_fibonacci_circle_is_equispaced_and_shells_interleave() -> None:
    m = 12
    u0, u1 = fibonacci_circle(m, 0), fibonacci_circle(m, 1)
    th0 = np.mod(np.arctan2(u0[:, 1], u0[:, 0]), 2 * math.pi)
    th1 = np.mod(np.arctan2(u1[:, 1], u1[:, 0]), 2 * math.pi)
    np.testing.assert_allclose(np.diff(np.sort(th0)), 2 * math.pi / m, atol=1e-12)
    # shell 1 is rotated by the golden fraction of one cell
    np.testing.assert_allclose(np.sort(th1)[0], 2 * math.pi * GOLDEN_FRACTION / m, atol=1e-12)
    assert covering_radius(u0) == pytest.approx(math.pi / m, abs=1e-12)
    assert min_separation(u0) == pytest.approx(2 * math.pi / m, abs=1e-12)


def test_fibonacci_sphere_equal_area_bands_and_golden_azimuth() -> None:
    m = 200
    u = fibonacci_sphere(m)
    np.testing.assert_allclose(u[:, 2], 1 - (2 * np.arange(m) + 1) / m, atol=1e-15)
    az = np.arctan2(u[:, 1], u[:, 0])
    steps = np.mod(np.diff(az), 2 * math.pi)
    np.testing.assert_allclose(steps, GOLDEN_ANGLE, atol=1e-12)


def test_fibonacci_sphere_beats_random_points() -> None:
    m = 256
    fib = fibonacci_sphere(m)
    rnd = sample_unit_vectors(m, 3, 11)
    # observed: covering 0.169 vs 0.335, cap discrepancy 0.019 vs 0.092, separation 0.194 vs 0.0074
    assert covering_radius(fib, n_probe=50_000) < 0.6 * covering_radius(rnd, n_probe=50_000)
    assert spherical_cap_discrepancy(fib, n_caps=2_000) < 0.6 * spherical_cap_discrepancy(rnd, n_caps=2_000)
    assert min_separation(fib) > 10 * min_separation(rnd)


def test_roberts_kronecker_low_discrepancy() -> None:
    for k, m in ((4, 256), (8, 512)):
        rk = roberts_kronecker_directions(m, k)
        rk_disc = spherical_cap_discrepancy(rk, n_caps=2_000)
        iid = np.median([spherical_cap_discrepancy(sample_unit_vectors(m, k, s), n_caps=2_000) for s in range(5)])
        # observed: 0.048 vs 0.074 (k=4, m=256) and 0.048 vs 0.059 (k=8, m=512)
        assert rk_disc < iid


def test_generalized_golden_ratio() -> None:
    assert generalized_golden_ratio(1) == pytest.approx((1 + math.sqrt(5)) / 2, rel=1e-15)
    assert generalized_golden_ratio(2) == pytest.approx(1.324717957244746, rel=1e-15)  # plastic number
    for k in (3, 8, 32):
        phi = generalized_golden_ratio(k)
        assert phi ** (k + 1) == pytest.approx(phi + 1, rel=1e-14)


def test_kronecker_segments_are_consecutive() -> None:
    whole = roberts_kronecker_directions(20, 5)
    np.testing.assert_array_equal(roberts_kronecker_directions(10, 5, start=10), whole[10:])
    np.testing.assert_array_equal(shell_directions(10, 5, shell=1), whole[10:])


def test_sunflower_radii_follow_the_radius_law() -> None:
    n, d = 400, 16
    pts = fibonacci_sunflower(n, d)
    r = np.sort(np.linalg.norm(pts, axis=1))
    src = SphericalBeta(d, 2)
    np.testing.assert_allclose(src.radius_cdf(r), (np.arange(n) + 0.5) / n, atol=1e-12)
    plain = np.linalg.norm(fibonacci_sunflower(n), axis=1)
    np.testing.assert_allclose(np.sort(plain) ** 2, (np.arange(n) + 0.5) / n, atol=1e-12)


def test_cap_area_fraction() -> None:
    t = np.linspace(-1, 1, 21)
    np.testing.assert_allclose(cap_area_fraction(3, t), (1 - t) / 2, atol=1e-14)  # Archimedes
    np.testing.assert_allclose(cap_area_fraction(2, t), np.arccos(t) / math.pi, atol=1e-14)
    assert cap_area_fraction(7, 0.0) == pytest.approx(0.5)
    x = sample_unit_vectors(200_000, 5, 3)
    assert (x[:, 0] >= 0.3).mean() == pytest.approx(float(cap_area_fraction(5, 0.3)), abs=4e-3)
    with pytest.raises(ValueError):
        cap_area_fraction(3, 1.5)


def test_covering_radius_of_the_octahedron() -> None:
    octa = np.vstack([np.eye(3), -np.eye(3)])
    exact = math.acos(1 / math.sqrt(3))
    est = covering_radius(octa, n_probe=100_000)
    assert est <= exact + 1e-12
    assert est > exact - 0.03  # observed 0.9525 against 0.9553
    assert min_separation(octa) == pytest.approx(math.pi / 2)
    assert covering_radius(np.array([[1.0], [-1.0]])) == 0.0
    assert covering_radius(np.array([[1.0]])) == math.pi


def test_discrepancy_of_iid_points_scales_like_inverse_sqrt() -> None:
    m = 1_000
    disc = spherical_cap_discrepancy(sample_unit_vectors(m, 4, 0), n_caps=2_000)
    assert 0.3 / math.sqrt(m) < disc < 3.0 / math.sqrt(m)


def test_diagnostics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="unit vectors"):
        covering_radius(np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        spherical_cap_discrepancy(np.array([[1.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        min_separation(np.ones(3))
    with pytest.raises(ValueError):
        shell_directions(0, 3)
    with pytest.raises(ValueError):
        fibonacci_sunflower(10, d=2)


# ---------------------------------------------------------------- shells
def test_beta_quantile_radii_are_mid_quantiles() -> None:
    d, k, s = 64, 4, 5
    r = beta_quantile_radii(d, k, s)
    assert np.all(np.diff(r) > 0)
    q = stats.beta(k / 2, (d - k) / 2).cdf(r**2)
    np.testing.assert_allclose(q, (np.arange(s) + 0.5) / s, atol=1e-12)
    np.testing.assert_array_equal(beta_quantile_radii(8, 8, 1), [1.0])


@settings(deadline=None, max_examples=30)
@given(n=st.integers(1, 5000))
def test_factorisations_are_complete(n: int) -> None:
    pairs = factorisations(n)
    assert all(s * m == n for s, m in pairs)
    assert [s for s, _ in pairs] == sorted(s for s in range(1, n + 1) if n % s == 0)


def test_valid_factorisations_respect_the_block_size() -> None:
    assert valid_factorisations(64, 1, 8) == [(4, 2), (8, 1)]
    assert valid_factorisations(8, 8, 16) == [(1, 16)]
    assert valid_factorisations(64, 4, 6) == factorisations(6)


def test_shell_codebook_layout() -> None:
    pts, labels, radii = shell_codebook(64, 3, 4, 10)
    assert pts.shape == (40, 3) and labels.tolist() == np.repeat(np.arange(4), 10).tolist()
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), radii[labels], rtol=1e-14)
    assert len({tuple(p) for p in np.round(pts, 12)}) == 40
