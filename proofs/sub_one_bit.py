r"""The sub-one-bit regime: lower bounds for the uniform sphere vs FibQuant at ``b < 1``.

Two lower bounds on the full unit-vector MSE (:mod:`fibquant_theory.theory.highrate`):

* the **Shannon lower bound** of the ``k``-block source,
  :math:`D \ge \frac{d}{2\pi e}2^{2h(f_{d,k})/k}\,2^{-2b}`, valid for every code of
  each ``k``-block with ``kb`` bits (FibQuant and TurboQuant alike);
* the **cap bound** for any quantizer of the whole unit vector with :math:`2^{db}`
  cells, :math:`D \ge 1 - m(\tau)^2` (one spherical cap of probability
  :math:`2^{-db}` reconstructed at its centroid).

The scalar code cannot go below one bit per coordinate; the best it can do at
``b < 1`` is to spend one bit on a fraction ``b`` of the coordinates and zero on the
rest (time sharing), :math:`D = (1-b) + b\,D_{\text{LM}}(1)`. FibQuant reaches
``b = log2(N)/k < 1`` directly with ``k > 1``. See ``sub_one_bit.md``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mpmath
import numpy as np
from scipy import special

from fibquant_theory.theory import highrate
from fibquant_theory.theory.scalar import lloyd_max_scalar

from ._common import Check, make_check
from ._designs import evaluate_mse, small_design

__all__ = [
    "time_sharing_scalar_mse",
    "check_entropy_closed_form",
    "check_cap_supporting_line",
    "check_bounds_below_scalar",
    "check_sub_one_bit",
    "SUB_ONE_BIT_CONFIGS",
    "CHECKS",
]

#: (d, k, N) FibQuant operating points below one bit per coordinate.
SUB_ONE_BIT_CONFIGS: tuple[tuple[int, int, int], ...] = ((64, 4, 4), (64, 8, 16), (64, 16, 16))


def time_sharing_scalar_mse(d: int, rate_bits: float) -> float:
    r"""Best scalar (Lloyd–Max) MSE at ``0 <= b <= 1``: one bit on a fraction ``b`` of coordinates, zero elsewhere.

    :math:`D = (1-b)\cdot 1 + b\,D_{\text{LM}}(d, 1)` (a zeroed coordinate costs
    :math:`E u_i^2 = 1/d`, ``d`` of them cost 1); this is the lower convex envelope of the
    scalar points ``(0, 1)`` and ``(1, D_LM(1))``.

    Parameters
    ----------
    d : int
        Dimension.
    rate_bits : float
        Rate ``b`` in ``[0, 1]``.

    Returns
    -------
    float
        :math:`E\|u-\hat u\|^2` of a unit vector.
    """
    b = float(rate_bits)
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"rate_bits must lie in [0, 1], got {rate_bits}")
    return (1.0 - b) + b * lloyd_max_scalar(d, 1).mse


def check_entropy_closed_form(
    cases: tuple[tuple[int, int], ...] = ((16, 2), (64, 8), (64, 16), (256, 4), (256, 32)), *, dps: int = 30,
    constant_factor: float = 1.0,
) -> Check:
    r"""Closed-form :math:`h(f_{d,k})` against :math:`-\int f\log_2 f` by 30-digit radial quadrature.

    ``constant_factor`` rescales the density used in the quadrature (it then no longer
    integrates to one, and the check fails).

    Parameters
    ----------
    cases : tuple of (int, int)
        Pairs ``(d, k)``.
    dps : int, default 30
        Decimal digits of the mpmath arithmetic.
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    with mpmath.workdps(dps):
        for d, k in cases:
            logc = mpmath.log(constant_factor) + mpmath.loggamma(mpmath.mpf(d) / 2) - (
                mpmath.mpf(k) / 2) * mpmath.log(mpmath.pi) - mpmath.loggamma(mpmath.mpf(d - k) / 2)
            a = mpmath.mpf(d - k - 2) / 2
            area = 2 * mpmath.pi ** (mpmath.mpf(k) / 2) / mpmath.gamma(mpmath.mpf(k) / 2)
            c = mpmath.e**logc

            def integrand(r: mpmath.mpf) -> mpmath.mpf:
                w = 1 - r * r
                return -area * r ** (k - 1) * c * w**a * (logc + a * mpmath.log(w)) / mpmath.log(2)

            val = mpmath.quad(integrand, mpmath.linspace(0, 1, 33))
            worst = max(worst, float(abs(val - highrate.block_entropy(d, k))))
    return make_check(
        "sub_one_bit.entropy_closed_form", worst, 0.0, 1e-10, "==",
        "max |h(f_dk) closed form - quadrature| in bits",
    )


def check_cap_supporting_line(
    d: int = 64, rates: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0), *, n_grid: int = 4000, slope_factor: float = 1.0,
) -> Check:
    r"""The cap bound's averaging step: :math:`\varphi(p) = p(1-m(p)^2)` lies above its tangent at :math:`2^{-db}`.

    Then :math:`\sum_i\varphi(p_i) \ge \sum_i\ell(p_i) = N\ell(1/N) = \varphi(1/N)` for any cell
    probabilities summing to 1, which is the step from "each cell is at least a cap" to
    :math:`D \ge 1-m(\tau)^2`. Tangent slope :math:`\varphi'(p) = 1 - 2m\tau + m^2`
    (from :math:`dF/dp = \tau` for :math:`F = \int_\tau^1 t f`). ``value`` is the smallest
    :math:`(\varphi-\ell)/\max(p,p_0)` over a grid of ``p`` (log-spaced to :math:`p_0^2`, then linear);
    ``slope_factor`` tilts the claimed tangent (to see the check fail).

    Parameters
    ----------
    d : int
        Dimension.
    rates : tuple of float
        Rates ``b`` at which the tangent is taken.
    n_grid : int
        Grid points of ``p``.
    slope_factor : float, default 1.0
        Factor on the tangent's slope (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = math.inf
    h = (d - 1) / 2.0
    for b in rates:
        log2_p0 = -d * b
        p0 = 2.0**log2_p0
        phi0 = p0 * highrate._cap_distortion(d, log2_p0)
        m0 = math.sqrt(max(0.0, 1.0 - phi0 / p0))
        tau0 = math.sqrt(1.0 - special.betaincinv(h, 0.5, 2.0 * p0)) if p0 <= 0.5 else -math.sqrt(
            1.0 - special.betaincinv(h, 0.5, 2.0 * (1.0 - p0)))
        slope = slope_factor * (1.0 - 2.0 * m0 * tau0 + m0 * m0)
        log_grid = np.linspace(2 * log2_p0, -1.0, n_grid)
        grid = np.concatenate((2.0**log_grid, np.linspace(0.5, 1.0, n_grid // 4)))
        for p in grid:
            phi = p * highrate._cap_distortion(d, math.log2(p))
            line = phi0 + slope * (p - p0)
            worst = min(worst, (phi - line) / max(p, p0))
    return make_check(
        f"sub_one_bit.cap_supporting_line[d={d}]", worst, 0.0, 1e-9, ">=",
        "min over p of (phi(p) - tangent at 2^-db) / max(p, p0); >= 0 makes the cap bound valid",
    )


def check_bounds_below_scalar(ds: tuple[int, ...] = (16, 64, 256), *, bound_scale: float = 1.0) -> Check:
    """Both lower bounds lie below the exact Lloyd–Max MSE for ``b = 1..8`` (value: max bound / MSE).

    The SLB is checked for ``k = 1`` and for every ``k`` in ``(2, 4, 8)`` with ``k < d``
    (the scalar code is a ``k``-block code too). ``bound_scale`` inflates the bounds.

    Parameters
    ----------
    ds : tuple of int
        Dimensions ``d``.
    bound_scale : float, default 1.0
        Factor on the bounds (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    for d in ds:
        for b in range(1, 9):
            mse = lloyd_max_scalar(d, b).mse
            bounds = [highrate.sphere_cap_bound(d, b)] + [
                highrate.shannon_lower_bound(d, k, b) for k in (1, 2, 4, 8) if k < d
            ]
            worst = max(worst, bound_scale * max(bounds) / mse)
    return make_check(
        "sub_one_bit.bounds_below_scalar", worst, 1.0, 0.0, "<",
        "max over d, b of (lower bound) / (Lloyd-Max MSE): must be < 1",
    )


def check_sub_one_bit(
    configs: tuple[tuple[int, int, int], ...] = SUB_ONE_BIT_CONFIGS, *, n: int = 200_000, seed: int = 3,
    z: float = 5.0, bound_scale: float = 1.0,
) -> list[Check]:
    """FibQuant below one bit: above both lower bounds and below the scalar time-sharing MSE.

    Two records per ``(d, k, N)``: ``bound_gap`` = MSE / max(SLB, cap bound) (must be
    ``>= 1`` within ``z`` SE; otherwise a "bound" would be violated) and ``vs_scalar`` =
    gain in dB over :func:`time_sharing_scalar_mse` (must exceed ``z`` SE). ``bound_scale``
    inflates the lower bounds (to see the first record fail).

    Parameters
    ----------
    configs : tuple of (int, int, int)
        Triples ``(d, k, N)``.
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.
    z : float
        Allowed shortfall, in standard errors.
    bound_scale : float, default 1.0
        Factor on the bounds (a perturbation); 1 checks the claim.

    Returns
    -------
    list of Check
        One outcome per claim (see above).
    """
    out = []
    for d, k, n_code in configs:
        cb = small_design(d, k, n_code)
        b = cb.rate_bits
        mse, se = evaluate_mse(cb, n=n, seed=seed)
        bound = bound_scale * max(highrate.shannon_lower_bound(d, k, b), highrate.sphere_cap_bound(d, b))
        ts = time_sharing_scalar_mse(d, b)
        tag = f"[d={d},k={k},N={n_code},b={b:.3g}]"
        out.append(make_check(
            f"sub_one_bit.above_bounds{tag}", mse / bound, 1.0, z * se / bound, ">=",
            f"FibQuant MSE {mse:.4f} / max(SLB, cap bound) {bound:.4f}",
            mse=mse, slb=highrate.shannon_lower_bound(d, k, b), cap=highrate.sphere_cap_bound(d, b),
        ))
        gain = highrate.db(ts / mse)
        out.append(make_check(
            f"sub_one_bit.beats_scalar{tag}", gain, 0.0, z * 10 / math.log(10) * se / mse, ">",
            f"gain dB over scalar time sharing (MSE {ts:.4f})", time_sharing=ts,
        ))
    return out


#: Zero-argument callables, each returning a Check or a list of Checks (the default run).
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_entropy_closed_form,
    check_cap_supporting_line,
    functools.partial(check_cap_supporting_line, 16),
    check_bounds_below_scalar,
    check_sub_one_bit,
)
