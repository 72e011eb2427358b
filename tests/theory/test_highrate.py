"""Closed-form high-rate functionals, lattice table, gain decomposition and low-rate bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from fibquant_theory.theory import highrate as hr
from fibquant_theory.theory.scalar import lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta


@pytest.mark.parametrize("d,k,alpha", [(16, 2, 0.5), (64, 8, 0.8), (256, 4, 2 / 3), (10, 9, 0.9), (5, 1, 1 / 3)])
def test_power_integral_matches_quadrature(d: int, k: int, alpha: float) -> None:
    """int f^alpha over the ball = |S^{k-1}| int_0^1 f(r e1)^alpha r^{k-1} dr (scipy quad, package pdf)."""
    src = SphericalBeta(d, k)
    e = np.zeros(k)

    def radial(r: float) -> float:
        e[0] = r
        return float(src.pdf(e)) ** alpha * r ** (k - 1)

    area = 2 * math.pi ** (k / 2) / math.gamma(k / 2)
    ref = area * integrate.quad(radial, 0, 1, limit=400, epsabs=0, epsrel=1e-12)[0]
    assert math.exp(hr.log_power_integral(d, k, alpha)) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("d,k", [(3, 1), (16, 2), (64, 32), (256, 255)])
def test_alpha_one_is_normalisation(d: int, k: int) -> None:
    assert hr.log_power_integral(d, k, 1.0) == pytest.approx(0.0, abs=1e-12)


#: (density matching, shape, memory) gains in dB at finite d, computed once with mpmath at 40 digits
#: from radial quadrature, not from the package's Gamma-function closed forms:
#: I(d, k, a) = |S^{k-1}| int_0^1 r^{k-1} (c_dk (1 - r^2)^((d-k-2)/2))^a dr (mpmath.quad, tanh-sinh on
#: 64 panels), h_dk = I(d, k, k/(k+2))^((k+2)/k), h_d1 = I(d, 1, 1/3)^3, product I(d, 1, k/(k+2))^(k+2);
#: density matching 10 log10(h_d1/h_dk) = shape 10 log10(h_d1/product) + memory 10 log10(product/h_dk).
DENSITY_MATCHING_DB = {
    (16, 2): (0.89638019633106, 0.758210026667529, 0.138170169663531),
    (64, 8): (2.19831699755002, 2.13467819709105, 0.0636388004589667),
    (256, 32): (2.64925686061719, 2.63166956289322, 0.0175872977239692),
}
#: G_k of the cell-shaping term from its exact form (A2, E8) or Zador's sphere bound (k = 32).
EXACT_G = {2: 5 / (36 * math.sqrt(3)), 8: 929 / 12960, 32: math.gamma(17) ** (1 / 16) / (34 * math.pi)}


@pytest.mark.parametrize("d,k", sorted(DENSITY_MATCHING_DB))
def test_functionals_and_decomposition_identities(d: int, k: int) -> None:
    """Every term of gain_decomposition against values computed independently (the literals above).

    (The name is the one the verification map of docs/theory.md cites; the terms are no longer
    checked against each other, which holds by construction, but against mpmath quadrature.)
    """
    dens, shape, memory = DENSITY_MATCHING_DB[(d, k)]
    cell = 10 * math.log10((1 / 12) / EXACT_G[k])
    g = hr.gain_decomposition(d, k)
    # float64 closed forms (gammaln): observed differences up to 2.8e-11 dB (shape, d = 256, k = 32)
    assert g.density_matching_db == pytest.approx(dens, abs=1e-10)
    assert g.shape_db == pytest.approx(shape, abs=1e-10)
    assert g.memory_db == pytest.approx(memory, abs=1e-10)
    assert g.cell_shaping_db == pytest.approx(cell, abs=1e-12)
    assert g.total_db == pytest.approx(cell + dens, abs=1e-10)
    assert g.sphere_bound_cell_db == pytest.approx(
        10 * math.log10((1 / 12) * (k + 2) * math.pi / math.gamma(k / 2 + 1) ** (2 / k)), abs=1e-12
    )


def test_memory_term_decays_and_scalar_gain_is_zero() -> None:
    # memory advantage shrinks like 1/d (coordinates decouple): observed 0.0340 dB at d=64, 0.0085 dB at d=256
    m64, m256 = hr.gain_decomposition(64, 2).memory_db, hr.gain_decomposition(256, 2).memory_db
    assert 3.5 < m64 / m256 < 4.5
    assert hr.gain_decomposition(64, 1).total_db == pytest.approx(0.0, abs=1e-12)


def test_gain_table_rows() -> None:
    rows = hr.gain_table()
    pairs = {(r["d"], r["k"]) for r in rows}
    assert (16, 16) not in pairs and (16, 32) not in pairs and (64, 32) in pairs
    assert len(rows) == 4 * 6 - 2
    # predicted total gains grow with k at fixed d (observed 1.24 dB at k=2 to 3.75 dB at k=32, d=64)
    tot = [r["total_db"] for r in rows if r["d"] == 64]
    assert all(b > a for a, b in zip(tot, tot[1:]))


def test_lattice_table_is_sourced_and_between_bounds() -> None:
    for k, rec in hr.LATTICE_SECOND_MOMENTS.items():
        assert rec.k == k and rec.source and rec.status
        assert hr.sphere_bound_G(k) <= rec.G <= 1 / 12
        if k > 1:
            assert rec.G < 1 / 12
    assert hr.best_known_G(32).lattice == "sphere bound"
    assert hr.best_known_G(32).G == hr.sphere_bound_G(32)
    for k in (1, 2, 3, 8, 24, 32, 100):
        assert hr.sphere_bound_G(k) < hr.zador_upper_G(k)
    # both bounds tend to 1/(2 pi e)
    assert hr.sphere_bound_G(10**5) == pytest.approx(1 / (2 * math.pi * math.e), rel=1e-3)
    assert hr.zador_upper_G(10**5) == pytest.approx(1 / (2 * math.pi * math.e), rel=1e-3)
    # exact forms
    assert hr.LATTICE_SECOND_MOMENTS[2].G == pytest.approx(0.0801875, abs=5e-8)
    assert hr.LATTICE_SECOND_MOMENTS[3].G == pytest.approx(0.0785433, abs=5e-8)
    assert hr.LATTICE_SECOND_MOMENTS[4].G == pytest.approx(0.0766032, abs=5e-8)
    assert hr.LATTICE_SECOND_MOMENTS[8].G == pytest.approx(0.0716821, abs=5e-8)
    assert hr.sphere_bound_G(1) == pytest.approx(1 / 12)  # the "ball" of dimension 1 is an interval


def test_high_rate_mse_scaling_and_scalar_limit() -> None:
    assert hr.high_rate_mse(64, 2, 3) / hr.high_rate_mse(64, 2, 4) == pytest.approx(4.0)
    assert hr.high_rate_mse(64, 1, 2) == pytest.approx(64 / 12 * hr.scalar_functional(64) / 16)
    # exact Lloyd-Max approaches the prediction: observed ratio 0.9922 at d=256, b=8
    assert lloyd_max_scalar(256, 8).mse / hr.high_rate_mse(256, 1, 8) == pytest.approx(1.0, abs=0.01)


def test_entropy_and_shannon_lower_bound() -> None:
    # Gaussian limit: h(f_{d,k}) ~ (k/2) log2(2 pi e / d)  => SLB -> 2^{-2b}
    d = 10**6
    assert hr.block_entropy(d, 4) == pytest.approx(2 * math.log2(2 * math.pi * math.e / d), abs=1e-4)
    assert hr.shannon_lower_bound(d, 4, 2.0) == pytest.approx(2.0**-4, rel=1e-4)
    # k = d - 1 (exponent -1/2) is still finite; uniform disk (d = 4, k = 2): h = log2(pi)
    assert math.isfinite(hr.block_entropy(16, 15))
    assert hr.block_entropy(4, 2) == pytest.approx(math.log2(math.pi), abs=1e-12)
    # Monte Carlo -E log2 f(Y) agrees (5 SE)
    src = SphericalBeta(64, 8)
    lf = src.logpdf(src.rvs(50_000, seed=3)) / math.log(2)
    assert abs(-lf.mean() - hr.block_entropy(64, 8)) < 5 * lf.std() / math.sqrt(lf.size)


#: Shannon lower bounds d/(2 pi e) 2^(2h/k - 2b) with the differential entropy h(f_dk) computed once
#: with mpmath at 40 digits by radial quadrature, h = -|S^{k-1}| int_0^1 r^{k-1} f ln f dr / ln 2
#: (mpmath.quad, 64 panels), not from the package's digamma closed form: (d, k, b) -> bound.
SLB_MPMATH = {
    (16, 2, 1.0): 0.24767939992862332,
    (64, 1, 2.0): 0.062476384944212828,
    (64, 8, 1.0): 0.24965939622467825,
    (64, 32, 0.5): 0.49670047588155347,
    (128, 4, 3.0): 0.015622047085929852,
}
#: Cap bounds 1 - m^2 computed once with mpmath at 40 digits: w = 1 - tau^2 from
#: mpmath.findroot of betainc((d-1)/2, 1/2, 0, w, regularized) / 2 = 2^(-d b) (in log w), then
#: m = E[u_1 | u_1 >= tau] = 2^(d b) c_d1 w^((d-1)/2) / (d - 1): (d, b) -> bound.
CAP_MPMATH = {
    (16, 3.0): 0.014167240410123017,
    (64, 0.5): 0.52136872691830928,
    (64, 1.0): 0.25949637474004696,
    (128, 2.0): 0.063424597133057616,
    (128, 4.0): 0.0038802728362258314,
}


def test_lower_bounds_against_mpmath() -> None:
    for (d, k, b), ref in SLB_MPMATH.items():
        assert hr.shannon_lower_bound(d, k, b) == pytest.approx(ref, rel=1e-12), (d, k, b)
    for (d, b), ref in CAP_MPMATH.items():
        assert hr.sphere_cap_bound(d, b) == pytest.approx(ref, rel=1e-12), (d, b)
    # the cap bound exceeds the Gaussian reference 2^(-2b) at low rate: the reference is no bound
    assert hr.sphere_cap_bound(64, 1.0) > 2.0**-2


def test_cap_bound_properties() -> None:
    assert hr.sphere_cap_bound(64, 0.0) == 1.0
    vals = [hr.sphere_cap_bound(64, b) for b in (0.01, 0.25, 0.5, 1, 2, 4, 8, 16, 40)]
    assert all(0 < b < a for a, b in zip(vals, vals[1:]))
    # d = 2: N points on the circle, the bound is exact: 1 - sinc(pi/N)^2
    n_pts = 2**6  # b = 3 bits per coordinate, d = 2
    sinc = math.sin(math.pi / n_pts) / (math.pi / n_pts)
    assert hr.sphere_cap_bound(2, 3) == pytest.approx(1 - sinc**2, rel=1e-9)
    # continuity across the switch to the asymptotic inverse (d b ~ 860 bits)
    assert hr.sphere_cap_bound(256, 3.37) == pytest.approx(hr.sphere_cap_bound(256, 3.38), rel=0.02)
    assert hr._log_incomplete_beta_inverse(127.5, -600.01) == pytest.approx(
        hr._log_incomplete_beta_inverse(127.5, -599.99), abs=1e-3
    )
    # the tiny-p inverse solves I_w(h, 1/2) = target
    lw = hr._log_incomplete_beta_inverse(20.0, -500.0)
    assert math.log(special.betainc(20.0, 0.5, math.exp(lw))) == pytest.approx(-500.0, rel=1e-10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: hr.zador_functional(16, 16),
        lambda: hr.log_power_integral(16, 2, 0.0),
        lambda: hr.log_power_integral(16, 2, float("nan")),
        lambda: hr.high_rate_mse(16, 2, -1.0),
        lambda: hr.high_rate_mse(16, 2, 1.0, G=0.0),
        lambda: hr.shannon_lower_bound(16, 2, float("inf")),
        lambda: hr.sphere_cap_bound(1, 1.0),
        lambda: hr.sphere_cap_bound(16, -0.5),
        lambda: hr.gain_decomposition(8, 9),
        lambda: hr.sphere_bound_G(0),
        lambda: hr.best_known_G(2.5),
    ],
)
def test_bad_input_raises(call) -> None:
    with pytest.raises(ValueError):
        call()
