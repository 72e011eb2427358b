r"""Lemma 1 (spherical-Beta marginal): symbolic derivation and numerical / Monte Carlo checks.

Claim. For :math:`u` uniform on :math:`S^{d-1}` and :math:`1\le k<d`, the block
:math:`y=(u_1,\dots,u_k)` has density
:math:`f_{d,k}(y)=c_{d,k}(1-\|y\|^2)^{(d-k-2)/2}` on the unit ball with
:math:`c_{d,k}=\Gamma(d/2)/(\pi^{k/2}\Gamma((d-k)/2))`; :math:`\|y\|^2\sim\mathrm{Beta}(k/2,(d-k)/2)`;
and :math:`\sqrt d\,y\to N(0,I_k)` as :math:`d\to\infty`. See ``spherical_beta.md`` for the proof.

Every check takes perturbation keywords (``exponent_shift``, ``constant_factor``)
that falsify the claim it checks, so that the test suite can see it fail.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mpmath
import numpy as np
import sympy as sp
from scipy import integrate, stats

from fibquant_theory.theory.source import SphericalBeta

from ._common import Check, make_check

__all__ = [
    "derive_sphere_area",
    "derive_normalizer",
    "check_normalizer_symbolic",
    "check_normalizer_numeric",
    "check_package_density",
    "check_radius_law_symbolic",
    "check_moments_symbolic",
    "check_gaussian_limit_symbolic",
    "check_gaussian_limit_rate",
    "check_radius_ks",
    "check_joint_chi2",
    "CHECKS",
]

d_, k_ = sp.symbols("d k", positive=True)
_r, _s, _p, _q = sp.symbols("r s p q", positive=True)

#: (d, k) pairs for the 30-digit quadrature, d <= 256, including the boundary case k = d - 1.
NUMERIC_CASES: tuple[tuple[int, int], ...] = (
    (3, 1), (3, 2), (4, 2), (16, 1), (16, 2), (16, 8), (16, 15), (64, 3), (64, 8), (64, 32), (128, 4),
    (128, 16), (256, 2), (256, 32), (256, 128), (256, 255),
)


@functools.lru_cache(maxsize=1)
def _beta_integral() -> sp.Expr:
    """SymPy: int_0^1 s^(p-1) (1-s)^(q-1) ds for symbolic p, q > 0, reduced to Gamma functions."""
    raw = sp.integrate(_s ** (_p - 1) * (1 - _s) ** (_q - 1), (_s, 0, 1), meijerg=True)
    return sp.gammasimp(sp.hyperexpand(raw))


@functools.lru_cache(maxsize=1)
def derive_sphere_area() -> sp.Expr:
    r"""SymPy derivation of :math:`|S^{k-1}| = 2\pi^{k/2}/\Gamma(k/2)`.

    From :math:`\pi^{k/2} = \int_{\mathbb R^k} e^{-\|x\|^2}dx = |S^{k-1}|\int_0^\infty r^{k-1}e^{-r^2}dr`.

    Returns
    -------
    sympy.Expr
        :math:`2\pi^{k/2}/\Gamma(k/2)` in the symbol ``k``.
    """
    radial = sp.integrate(_r ** (k_ - 1) * sp.exp(-(_r**2)), (_r, 0, sp.oo), conds="none")
    return sp.gammasimp(sp.pi ** (k_ / 2) / radial)


def _ball_integral(exponent: sp.Expr) -> sp.Expr:
    r""":math:`\int_{B^k}(1-\|y\|^2)^{e}dy = |S^{k-1}|\cdot\frac12 B(k/2, e+1)` (polar coordinates, ``s = r^2``)."""
    return derive_sphere_area() * sp.Rational(1, 2) * _beta_integral().subs({_p: k_ / 2, _q: exponent + 1})


def _claimed_constant(constant_factor: float = 1.0) -> sp.Expr:
    return sp.nsimplify(constant_factor) * sp.gamma(d_ / 2) / (sp.pi ** (k_ / 2) * sp.gamma((d_ - k_) / 2))


def derive_normalizer(exponent_shift: float = 0.0) -> sp.Expr:
    r"""SymPy derivation of :math:`c_{d,k} = 1/\int_{B^k}(1-\|y\|^2)^{(d-k-2)/2}dy` for symbolic ``d, k``.

    Parameters
    ----------
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.

    Returns
    -------
    sympy.Expr
        :math:`\Gamma(d/2)/(\pi^{k/2}\Gamma((d-k)/2))` (for ``exponent_shift = 0``).
    """
    exponent = (d_ - k_ - 2) / 2 + sp.nsimplify(exponent_shift)
    return sp.gammasimp(1 / _ball_integral(exponent))


def check_normalizer_symbolic(*, exponent_shift: float = 0.0, constant_factor: float = 1.0) -> Check:
    r"""Symbolically, :math:`c_{d,k}\int_{B^k}(1-\|y\|^2)^{(d-k-2)/2}dy \equiv 1` for all ``d > k``.

    ``value`` is the simplified integral evaluated at ``(d, k) = (64, 8)``; the check
    passes only if the symbolic difference to 1 simplifies to exactly 0.

    Parameters
    ----------
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    exponent = (d_ - k_ - 2) / 2 + sp.nsimplify(exponent_shift)
    total = sp.gammasimp(_claimed_constant(constant_factor) * _ball_integral(exponent))
    identically_one = sp.simplify(total - 1) == 0
    value = float(total.subs({d_: 64, k_: 8}))
    chk = make_check(
        "spherical_beta.normalizer_symbolic", value, 1.0, 0.0, "==",
        f"SymPy: c_dk * int_ball (1-|y|^2)^((d-k-2)/2) dy = {total} for symbolic d, k",
    )
    if not identically_one and chk.passed:  # a coincidence at (64, 8) must not pass
        chk = make_check(chk.name, math.nan, 1.0, 0.0, "==", chk.detail)
    return chk


def _unit_integral(d: int, k: int, scale: mpmath.mpf, e: mpmath.mpf) -> mpmath.mpf:
    r""":math:`\mathrm{scale}\int_0^1 r^{k-1}(1-r^2)^e\,dr` by Gauss–Legendre quadrature in two smooth halves.

    ``r`` in :math:`[0, 1/\sqrt2]` directly, and the part near ``r = 1`` in :math:`v = \sqrt{1-r^2}`
    (:math:`r^{k-1}(1-r^2)^e dr = (1-v^2)^{k/2-1}v^{2e+1}dv`), which removes the endpoint
    singularity of ``k = d - 1``. ``scale`` goes inside: mpmath's error control is absolute.
    16 panels per half resolve the peak of width :math:`\sim d^{-1/2}`.
    """
    h = mpmath.mpf(k) / 2 - 1
    grid = mpmath.linspace(0, mpmath.sqrt(mpmath.mpf(1) / 2), 17)
    lower = mpmath.quad(lambda r: scale * r ** (k - 1) * (1 - r * r) ** e, grid, method="gauss-legendre")
    upper = mpmath.quad(lambda v: scale * (1 - v * v) ** h * v ** (2 * e + 1), grid, method="gauss-legendre")
    return lower + upper


def check_normalizer_numeric(
    cases: tuple[tuple[int, int], ...] = NUMERIC_CASES, *, dps: int = 30, exponent_shift: float = 0.0,
    constant_factor: float = 1.0, package_tolerance: float = 1e-12,
) -> Check:
    r"""mpmath at ``dps`` digits: :math:`|S^{k-1}|\int_0^1 c_{d,k} r^{k-1}(1-r^2)^{(d-k-2)/2}dr = 1`, claim and package.

    Two integrals per ``(d, k)``, by the same quadrature:

    * the *claim*, with :math:`c_{d,k}` and the exponent from the formula in mpmath, must be 1 to
      :math:`10^{5-\text{dps}}` (otherwise ``value`` is ``nan``);
    * the *package*, with :attr:`~fibquant_theory.theory.source.SphericalBeta.log_normalizer`
      (:func:`fibquant_theory.theory.source.log_normalizer`, float64) and
      :attr:`~fibquant_theory.theory.source.SphericalBeta.exponent`: ``value`` is its largest
      :math:`|I-1|`, to be within ``package_tolerance``.

    Parameters
    ----------
    cases : tuple of (int, int)
        Pairs ``(d, k)``.
    dps : int, default 30
        Decimal digits of the mpmath arithmetic.
    exponent_shift : float, default 0.0
        Perturbation of the claimed density's exponent (see above); 0 checks the claim, any other value must fail.
    constant_factor : float, default 1.0
        Factor on the claimed normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.
    package_tolerance : float, default 1e-12
        Largest allowed :math:`|I-1|` of the package's density (observed :math:`1.4\times10^{-13}`:
        the rounding of the float64 ``lgamma`` values in :math:`\log c_{d,k}`, ``d <= 256``).

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst_claim = worst_package = 0.0
    with mpmath.workdps(dps):
        for d, k in cases:
            c = mpmath.mpf(constant_factor) * mpmath.gamma(mpmath.mpf(d) / 2) / (
                mpmath.pi ** (mpmath.mpf(k) / 2) * mpmath.gamma(mpmath.mpf(d - k) / 2)
            )
            area = 2 * mpmath.pi ** (mpmath.mpf(k) / 2) / mpmath.gamma(mpmath.mpf(k) / 2)
            e = mpmath.mpf(d - k - 2) / 2 + mpmath.mpf(exponent_shift)
            claim = _unit_integral(d, k, area * c, e)
            worst_claim = max(worst_claim, float(abs(claim - 1)))
            src = SphericalBeta(d, k)
            c_pkg = mpmath.e ** mpmath.mpf(src.log_normalizer)
            e_pkg = mpmath.mpf(src.exponent)
            # the same integrand up to the constant when the exponents agree: no second quadrature
            package = claim * c_pkg / c if e_pkg == e else _unit_integral(d, k, area * c_pkg, e_pkg)
            worst_package = max(worst_package, float(abs(package - 1)))
    value = worst_package if worst_claim <= 10.0 ** (5 - dps) else math.nan
    return make_check(
        f"spherical_beta.normalizer_numeric[dps={dps}]", value, 0.0, package_tolerance, "==",
        f"max |int f_dk - 1| over {len(cases)} (d, k) pairs with d <= {max(d for d, _ in cases)}: "
        f"package {worst_package:.1e} (SphericalBeta.log_normalizer, float64), formula {worst_claim:.1e}",
    )


def check_package_density(
    cases: tuple[tuple[int, int], ...] = ((16, 2), (64, 8), (128, 4), (256, 32)), *, n_points: int = 200,
    seed: int = 0, exponent_shift: float = 0.0, constant_factor: float = 1.0,
) -> Check:
    """``SphericalBeta(d, k).logpdf`` agrees with the 30-digit mpmath formula (max relative density error).

    Parameters
    ----------
    cases : tuple of (int, int)
        Pairs ``(d, k)``.
    n_points : int
        Random points per case.
    seed : int
        Seed of the samples.
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    with mpmath.workdps(30):
        for d, k in cases:
            src = SphericalBeta(d, k)
            y = src.rvs(n_points, seed=rng)
            got = src.logpdf(y)
            logc = (
                mpmath.log(constant_factor) + mpmath.loggamma(mpmath.mpf(d) / 2)
                - (mpmath.mpf(k) / 2) * mpmath.log(mpmath.pi) - mpmath.loggamma(mpmath.mpf(d - k) / 2)
            )
            e = mpmath.mpf(d - k - 2) / 2 + mpmath.mpf(exponent_shift)
            for row, g in zip(y, got):
                s = mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in row)
                ref = logc + e * mpmath.log1p(-s)
                worst = max(worst, abs(math.expm1(float(g - ref))))
    return make_check(
        "spherical_beta.package_density", worst, 0.0, 1e-12, "==",
        "max relative error of SphericalBeta.pdf against the 30-digit formula at sampled points",
    )


def check_radius_law_symbolic(*, exponent_shift: float = 0.0) -> Check:
    r"""The density of :math:`s=\|y\|^2` implied by :math:`f_{d,k}` is the :math:`\mathrm{Beta}(k/2,(d-k)/2)` density.

    Polar coordinates: :math:`p(s) = c_{d,k}\,|S^{k-1}|\,\tfrac12 s^{k/2-1}(1-s)^{(d-k-2)/2}`;
    the ratio to :math:`s^{k/2-1}(1-s)^{(d-k)/2-1}/B(k/2,(d-k)/2)` must simplify to 1.

    Parameters
    ----------
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    exponent = (d_ - k_ - 2) / 2 + sp.nsimplify(exponent_shift)
    implied = _claimed_constant() * derive_sphere_area() / 2 * _s ** (k_ / 2 - 1) * (1 - _s) ** exponent
    beta_pdf = _s ** (k_ / 2 - 1) * (1 - _s) ** ((d_ - k_) / 2 - 1) * sp.gamma(d_ / 2) / (
        sp.gamma(k_ / 2) * sp.gamma((d_ - k_) / 2)
    )
    ratio = sp.simplify(sp.powsimp(sp.gammasimp(implied / beta_pdf), force=True))
    value = float(ratio.subs({d_: 64, k_: 8, _s: sp.Rational(1, 10)}))
    chk = make_check(
        "spherical_beta.radius_law_symbolic", value, 1.0, 0.0, "==",
        f"SymPy: p_|y|^2(s) / Beta(k/2,(d-k)/2) pdf = {ratio}",
    )
    if sp.simplify(ratio - 1) != 0 and chk.passed:
        chk = make_check(chk.name, math.nan, 1.0, 0.0, "==", chk.detail)
    return chk


def check_moments_symbolic(*, exponent_shift: float = 0.0) -> list[Check]:
    r"""Moments from the density equal the moments from symmetry / the Gaussian construction.

    * :math:`E\|y\|^2 = k/d` (each :math:`E u_i^2 = 1/d` by exchangeability), from the
      (renormalised) radial law with the claimed exponent;
    * :math:`E u_1^4 = 3/(d(d+2))` (:math:`E g_1^4 = E\|g\|^4 E u_1^4` with
      :math:`E\|g\|^4 = d(d+2)`), from :math:`f_{d,1}`.

    Renormalising makes the checks sensitive to the *exponent* alone.

    Parameters
    ----------
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.

    Returns
    -------
    list of Check
        One outcome per claim (see above).
    """
    e = (d_ - k_ - 2) / 2 + sp.nsimplify(exponent_shift)
    beta = _beta_integral()
    # E s with s ~ s^(k/2-1) (1-s)^e / B(k/2, e+1).
    m2 = sp.gammasimp(beta.subs({_p: k_ / 2 + 1, _q: e + 1}) / beta.subs({_p: k_ / 2, _q: e + 1}))
    diff2 = sp.simplify(m2 - k_ / d_)
    # E t^4 for k = 1: t^2 = s ~ Beta(1/2, e1 + 1).
    e1 = e.subs(k_, 1)
    m4 = sp.gammasimp(beta.subs({_p: sp.Rational(5, 2), _q: e1 + 1}) / beta.subs({_p: sp.Rational(1, 2), _q: e1 + 1}))
    diff4 = sp.simplify(m4 - 3 / (d_ * (d_ + 2)))
    out = []
    for name, diff, expr, target in (
        ("second_moment", diff2, m2, "k/d"), ("fourth_moment", diff4, m4, "3/(d(d+2))"),
    ):
        value = float(abs(diff.subs({d_: 64, k_: 8})))
        chk = make_check(
            f"spherical_beta.{name}_symbolic", value, 0.0, 0.0, "==",
            f"SymPy: moment from the density = {sp.simplify(expr)}; claim {target}",
        )
        if diff != 0 and chk.passed:
            chk = make_check(chk.name, math.nan, 0.0, 0.0, "==", chk.detail)
        out.append(chk)
    return out


@functools.lru_cache(maxsize=1)
def _gamma_ratio_limit() -> sp.Expr:
    r"""SymPy: :math:`\lim_{m\to\infty}\Gamma(m)/(\Gamma(m-k/2)\,m^{k/2})` for symbolic ``k`` (slow; cached)."""
    m = sp.symbols("m", positive=True)
    return sp.limit(sp.gamma(m) / (sp.gamma(m - k_ / 2) * m ** (k_ / 2)), m, sp.oo)


def check_gaussian_limit_symbolic(*, constant_factor: float = 1.0, scale_power: float = 0.5) -> Check:
    r"""SymPy limits: the density :math:`d^{-k/2}f_{d,k}(z/\sqrt d)` of :math:`z=\sqrt d\,y` tends to N(0, I_k)'s.

    Two limits for symbolic ``k`` and ``t = ||z||^2``:
    :math:`(1-t/d)^{(d-k-2)/2}\to e^{-t/2}` and, with :math:`m=d/2`,
    :math:`\Gamma(m)/(\Gamma(m-k/2)m^{k/2})\to1`, so that
    :math:`c_{d,k}d^{-k/2} = [\Gamma(m)/(\Gamma(m-k/2)m^{k/2})](2\pi)^{-k/2}\to(2\pi)^{-k/2}`.
    ``scale_power`` replaces the :math:`\sqrt d` scaling (to see the check fail).

    Parameters
    ----------
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.
    scale_power : float, default 0.5
        Power of ``d`` in the scaling of the coordinates (a perturbation); 0.5 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    t, m = sp.symbols("t m", positive=True)
    w = sp.nsimplify(scale_power)
    shape = sp.limit((1 - t / d_ ** (2 * w)) ** ((d_ - k_ - 2) / 2), d_, sp.oo)
    ratio = _gamma_ratio_limit()
    # c_{d,k} d^{-k w} = ratio * m^{k/2} pi^{-k/2} (2m)^{-k w}: finite only at w = 1/2.
    const = sp.nsimplify(constant_factor) * ratio * sp.limit(
        m ** (k_ / 2) * sp.pi ** (-k_ / 2) * (2 * m) ** (-k_ * w) * (2 * sp.pi) ** (k_ / 2), m, sp.oo
    )
    target = sp.exp(-t / 2)
    err = sp.simplify(shape * const - target)
    value = float(abs(err.subs({t: 1, k_: 3}))) if err.subs({t: 1, k_: 3}).is_finite else math.inf
    chk = make_check(
        "spherical_beta.gaussian_limit_symbolic", value, 0.0, 0.0, "==",
        f"SymPy: lim (1-t/d)^((d-k-2)/2) = {shape}, lim c_dk d^(-k/2) (2 pi)^(k/2) = {const}",
    )
    if err != 0 and chk.passed:
        chk = make_check(chk.name, math.nan, 0.0, 0.0, "==", chk.detail)
    return chk


def check_gaussian_limit_rate(dims: tuple[int, ...] = (16, 64, 256, 1024), *, constant_factor: float = 1.0) -> Check:
    r"""Total variation :math:`\mathrm{TV}(\sqrt d\,u_1, N(0,1))` is :math:`O(1/d)`: ``d * TV`` bounded, TV falling.

    ``value`` is :math:`\max_d d\,\mathrm{TV}_d / (d_0\mathrm{TV}_{d_0})` (expected near 1,
    allowed up to 1.5) after checking that TV decreases strictly; a wrong constant makes TV
    converge to a non-zero limit and the ratio blow up.

    Parameters
    ----------
    dims : tuple of int
        Dimensions ``d``.
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    tvs = []
    for d in dims:
        src = SphericalBeta(d, 1)
        f = lambda z: abs(constant_factor * float(src.pdf(z / math.sqrt(d))) / math.sqrt(d) - stats.norm.pdf(z))  # noqa: E731
        tv = 0.5 * 2.0 * integrate.quad(f, 0.0, math.sqrt(d), limit=400, epsabs=1e-13)[0]
        tv += 0.5 * 2.0 * stats.norm.sf(math.sqrt(d))
        tvs.append(tv)
    scaled = [d * tv for d, tv in zip(dims, tvs)]
    decreasing = all(b < a for a, b in zip(tvs, tvs[1:]))
    value = max(scaled) / scaled[0] if decreasing else math.inf
    return make_check(
        "spherical_beta.gaussian_limit_rate", value, 1.0, 0.5, "<=",
        "max_d d*TV(sqrt(d) u_1, N(0,1)) / (d0*TV_d0), TV: "
        + ", ".join(f"d={d}: {tv:.2e}" for d, tv in zip(dims, tvs)),
        tv=dict(zip(dims, tvs)),
    )


def check_radius_ks(
    d: int = 64, k: int = 8, *, n: int = 100_000, seed: int = 20260525, alpha: float = 1e-3,
    exponent_shift: float = 0.0,
) -> Check:
    r"""Monte Carlo: KS test of :math:`\|y\|^2` of normalised Gaussians against :math:`\mathrm{Beta}(k/2,(d-k)/2)`.

    The samples come from the *definition* (``rvs(method="gaussian")``), independent of the
    density formula. ``exponent_shift`` adds to the second Beta parameter (i.e. to the
    density exponent); passes when the p-value is at least ``alpha``.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size.
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.
    alpha : float
        Significance level: the check fails when the p-value is below it.
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    y = SphericalBeta(d, k).rvs(n, seed=seed, method="gaussian")
    law = stats.beta(k / 2.0, (d - k) / 2.0 + exponent_shift)
    p = stats.kstest(np.einsum("ij,ij->i", y, y), law.cdf).pvalue
    return make_check(
        f"spherical_beta.radius_ks[d={d},k={k}]", p, alpha, 0.0, ">=",
        f"KS p-value of |y|^2 (n={n}) against Beta(k/2, (d-k)/2)",
    )


def check_joint_chi2(
    d: int = 32, *, n: int = 100_000, seed: int = 20260526, radial_bins: int = 10, angular_bins: int = 8,
    alpha: float = 1e-3, exponent_shift: float = 0.0,
) -> Check:
    r"""Monte Carlo: :math:`\chi^2` test of ``k = 2`` blocks on radius x angle cells equiprobable under :math:`f_{d,2}`.

    Radius edges are quantiles of the claimed radius law, angles are uniform sectors;
    under the claim every one of the ``radial_bins * angular_bins`` cells has
    probability ``1/(radial_bins*angular_bins)`` (radius and direction independent).

    Parameters
    ----------
    d : int
        Dimension.
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.
    radial_bins : int
        Radius cells.
    angular_bins : int
        Angle cells.
    alpha : float
        Significance level: the check fails when the p-value is below it.
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    y = SphericalBeta(d, 2).rvs(n, seed=seed, method="gaussian")
    law = stats.beta(1.0, (d - 2) / 2.0 + exponent_shift)
    ri = np.minimum((law.cdf(np.einsum("ij,ij->i", y, y)) * radial_bins).astype(np.int64), radial_bins - 1)
    ai = np.minimum(((np.arctan2(y[:, 1], y[:, 0]) + math.pi) / (2 * math.pi) * angular_bins).astype(np.int64),
                    angular_bins - 1)
    counts = np.bincount(ri * angular_bins + ai, minlength=radial_bins * angular_bins)
    p = stats.chisquare(counts).pvalue
    return make_check(
        f"spherical_beta.joint_chi2[d={d},k=2]", p, alpha, 0.0, ">=",
        f"chi^2 p-value, {radial_bins}x{angular_bins} equiprobable radius-angle cells, n={n}",
    )


#: Zero-argument callables, each returning a Check or a list of Checks (the default run).
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_normalizer_symbolic,
    check_normalizer_numeric,
    check_package_density,
    check_radius_law_symbolic,
    check_moments_symbolic,
    check_gaussian_limit_symbolic,
    check_gaussian_limit_rate,
    check_radius_ks,
    functools.partial(check_radius_ks, 256, 2, seed=7),
    check_joint_chi2,
)
