"""The spherical-Beta source: density, radius law, both exact samplers, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from fibquant_theory import SphericalBeta, haar_orthogonal, sample_unit_vectors
from tests.reference import marginal_pdf_1d

CASES = [(2, 1), (3, 1), (3, 2), (8, 2), (16, 3), (64, 8), (128, 4), (33, 32)]


@pytest.mark.parametrize("d,k", CASES)
@pytest.mark.parametrize("method", ["gaussian", "radial"])
def test_squared_radius_is_beta(d: int, k: int, method: str) -> None:
    """KS test of ||y||^2 against Beta(k/2, (d-k)/2), fixed seed."""
    y = SphericalBeta(d, k).rvs(20_000, seed=11, method=method)
    res = stats.kstest(np.sum(y * y, axis=1), stats.beta(k / 2, (d - k) / 2).cdf)
    assert res.pvalue > 1e-3, res


@pytest.mark.parametrize("d,k", CASES)
def test_two_samplers_agree(d: int, k: int) -> None:
    """Two-sample KS on the radius and on the first coordinate; means and second moments."""
    src = SphericalBeta(d, k)
    a = src.rvs(20_000, seed=1, method="gaussian")
    b = src.rvs(20_000, seed=2, method="radial")
    assert stats.ks_2samp(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)).pvalue > 1e-3
    assert stats.ks_2samp(a[:, 0], b[:, 0]).pvalue > 1e-3
    # E y = 0 and E||y||^2 = k/d, within 5 standard errors.
    for s in (a, b):
        se = s.std(axis=0) / math.sqrt(len(s))
        assert np.all(np.abs(s.mean(axis=0)) < 5 * se + 1e-12)
        r2 = np.sum(s * s, axis=1)
        assert abs(r2.mean() - k / d) < 5 * r2.std() / math.sqrt(len(r2)) + 1e-12


@pytest.mark.parametrize("d", [2, 3, 5, 64, 257])
def test_one_dim_marginal_matches_beta_law(d: int) -> None:
    """k = 1: density equals the reference f_{d,1} and integrates to 1."""
    src = SphericalBeta(d, 1)
    t = np.linspace(-0.999, 0.999, 41)
    assert np.allclose(src.pdf(t), [marginal_pdf_1d(d, x) for x in t], rtol=1e-12, atol=0)
    total = integrate.quad(lambda x: float(src.pdf(x)), -1, 1, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("d,k", [(8, 2), (16, 3), (64, 4), (10, 9), (40, 8)])
def test_density_integrates_to_one_radially(d: int, k: int) -> None:
    """int_ball f = |S^{k-1}| int_0^1 f(r e1) r^{k-1} dr = 1."""
    src = SphericalBeta(d, k)
    area = 2 * math.pi ** (k / 2) / math.gamma(k / 2)
    e = np.zeros(k)

    def radial(r: float) -> float:
        e[0] = r
        return float(src.pdf(e)) * r ** (k - 1)

    total = area * integrate.quad(radial, 0, 1, limit=200)[0]
    assert total == pytest.approx(1.0, rel=1e-8)


def test_density_integrates_to_one_2d() -> None:
    src = SphericalBeta(12, 2)
    f = lambda y, x: float(src.pdf([x, y]))  # noqa: E731
    total = integrate.dblquad(f, -1, 1, lambda x: -math.sqrt(1 - x * x), lambda x: math.sqrt(1 - x * x))[0]
    assert total == pytest.approx(1.0, abs=1e-7)


def test_radius_pdf_cdf_ppf_consistent() -> None:
    src = SphericalBeta(64, 8)
    r = np.linspace(0.05, 0.95, 19)
    cdf_num = [integrate.quad(lambda s: float(src.radius_pdf(s)), 0, x)[0] for x in r]
    assert np.allclose(src.radius_cdf(r), cdf_num, atol=1e-10)
    q = np.linspace(0.01, 0.99, 25)
    assert np.allclose(src.radius_cdf(src.radius_ppf(q)), q, atol=1e-12)
    assert src.radius_cdf(-1.0) == 0.0 and src.radius_cdf(2.0) == 1.0


def test_logpdf_outside_and_boundary() -> None:
    assert SphericalBeta(16, 2).logpdf([1.0, 0.5]) == -np.inf
    assert SphericalBeta(16, 2).pdf([0.6, 0.8]) == 0.0  # exponent 6 > 0: zero on the sphere
    assert SphericalBeta(5, 3).pdf([0.6, 0.8, 0.0]) == pytest.approx(math.exp(SphericalBeta(5, 3).log_normalizer))
    assert SphericalBeta(5, 4).pdf([0.6, 0.8, 0, 0]) == np.inf  # k = d - 1: integrable singularity


def test_k_equals_d_minus_one_density_shape() -> None:
    src = SphericalBeta(9, 8)
    assert src.exponent == -0.5
    y = src.rvs(5000, seed=3)
    assert np.all(np.linalg.norm(y, axis=1) < 1)


def test_k_equals_d_is_the_sphere() -> None:
    src = SphericalBeta(7, 7)
    for method in ("gaussian", "radial"):
        y = src.rvs(1000, seed=4, method=method)
        assert np.allclose(np.linalg.norm(y, axis=1), 1.0)
    with pytest.raises(ValueError, match="no density"):
        src.pdf(np.zeros(7))
    assert np.all(src.radius_ppf([0.0, 0.3, 1.0]) == 1.0)
    assert list(src.radius_cdf([0.5, 1.0])) == [0.0, 1.0]


def test_gaussian_limit_of_scaled_coordinate() -> None:
    """sqrt(d) * y_1 is close to N(0, 1) for large d (KS distance shrinks with d)."""
    dist = []
    for d in (8, 64, 1024):
        z = math.sqrt(d) * SphericalBeta(d, 1).rvs(50_000, seed=5)[:, 0]
        dist.append(stats.kstest(z, "norm").statistic)
    assert dist[0] > dist[1] > dist[2]  # observed 0.0199, 0.0041, 0.0027
    assert dist[0] > 0.015  # d = 8 is visibly not Gaussian (the KS test can tell)
    assert dist[2] < 0.006


def test_sampling_is_deterministic() -> None:
    a = SphericalBeta(32, 4).rvs(100, seed=7)
    b = SphericalBeta(32, 4).rvs(100, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, SphericalBeta(32, 4).rvs(100, seed=8))
    assert np.array_equal(sample_unit_vectors(10, 16, 3), sample_unit_vectors(10, 16, 3))


@pytest.mark.parametrize("bad", [(1, 1), (4, 0), (4, 5), (2.5, 1), ("8", 2), (True, 1)])
def test_bad_dimensions_raise(bad: tuple) -> None:
    with pytest.raises(ValueError):
        SphericalBeta(*bad)


def test_bad_points_and_arguments_raise() -> None:
    src = SphericalBeta(16, 2)
    with pytest.raises(ValueError, match="shape"):
        src.pdf(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        src.pdf([np.nan, 0.0])
    with pytest.raises(ValueError):
        src.radius_ppf(1.5)
    with pytest.raises(ValueError):
        src.rvs(-1)
    with pytest.raises(ValueError, match="method"):
        src.rvs(3, method="magic")


@pytest.mark.parametrize("d", [1, 2, 5, 64])
def test_haar_orthogonal(d: int) -> None:
    q = haar_orthogonal(d, seed=d)
    assert np.allclose(q @ q.T, np.eye(d), atol=1e-12)
    assert np.array_equal(q, haar_orthogonal(d, seed=d))


def test_haar_is_haar() -> None:
    """First column of a Haar matrix is uniform on the sphere: q11^2 ~ Beta(1/2, (d-1)/2)."""
    d = 6
    rng = np.random.default_rng(0)
    vals = np.array([haar_orthogonal(d, rng)[0, 0] ** 2 for _ in range(3000)])
    assert stats.kstest(vals, stats.beta(0.5, (d - 1) / 2).cdf).pvalue > 1e-3
    # The sign fix matters: without it the diagonal of Q is biased; check E[q11] = 0.
    diag = np.array([haar_orthogonal(d, rng)[0, 0] for _ in range(3000)])
    assert abs(diag.mean()) < 5 * diag.std() / math.sqrt(diag.size)


@pytest.mark.parametrize("d,k", [*CASES, (129, 1), (256, 255), (4096, 32), (100_000, 3)])
def test_log_normalizer_is_one_implementation(d: int, k: int) -> None:
    """SphericalBeta, highrate and the scalar design share one log c_{d,k} (portable lgamma), bit for bit."""
    import mpmath

    from fibquant_theory.theory import highrate, scalar
    from fibquant_theory.theory.source import log_normalizer

    value = log_normalizer(d, k)
    assert SphericalBeta(d, k).log_normalizer == value
    assert highrate.log_normalizer(d, k) == value
    if k == 1:
        assert scalar._log_c1(d) == value
    with mpmath.workdps(40):
        exact = mpmath.loggamma(mpmath.mpf(d) / 2) - mpmath.mpf(k) / 2 * mpmath.log(mpmath.pi) - mpmath.loggamma(
            mpmath.mpf(d - k) / 2
        )
    # the two log-Gamma values cancel: the error is a few ulps of log Gamma(d/2), not of the difference
    assert abs(value - float(exact)) <= 1e-14 * max(1.0, abs(float(mpmath.loggamma(mpmath.mpf(d) / 2))))


def test_log_normalizer_rejects_the_degenerate_block() -> None:
    from fibquant_theory.theory.source import log_normalizer

    with pytest.raises(ValueError, match="no density"):
        log_normalizer(8, 8)
    with pytest.raises(ValueError, match="exceeds the dimension"):
        log_normalizer(8, 9)
