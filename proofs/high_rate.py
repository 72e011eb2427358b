r"""Zador–Gersho high-rate theory for the spherical-Beta source: closed forms and their checks.

The closed forms live in :mod:`fibquant_theory.theory.highrate`; this module checks them
against 30-digit quadrature, checks the table of lattice second moments by Monte
Carlo with the exact nearest-lattice-point decoders of
:mod:`fibquant_theory.codebooks.lattices`, checks that the high-rate
prediction is approached by the exact scalar Lloyd–Max MSE as the rate grows, and
(once codebooks can be designed) by designed ``k``-dim codebooks. See ``high_rate.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import numpy as np

from fibquant_theory.codebooks.lattices import nearest_lattice_point
from fibquant_theory.theory import highrate
from fibquant_theory.theory.scalar import lloyd_max_scalar

from ._common import Check, make_check
from ._designs import evaluate_mse, small_design

__all__ = [
    "check_power_integral_closed_form",
    "check_scalar_high_rate_limit",
    "check_gaussian_shape_limit",
    "nearest_lattice_point",
    "monte_carlo_nsm",
    "check_lattice_table",
    "check_lattice_bounds",
    "check_designed_high_rate",
    "CHECKS",
]

KS = (1, 2, 3, 4, 8, 16, 32)
DS = (16, 64, 128, 256)


def check_power_integral_closed_form(
    ks: tuple[int, ...] = KS, ds: tuple[int, ...] = DS, *, dps: int = 30, exponent_shift: float = 0.0,
    constant_factor: float = 1.0,
) -> Check:
    r"""Closed form of :math:`\int_{B^k}f_{d,k}^{k/(k+2)}` against 30-digit radial quadrature.

    The quadrature uses the density with exponent :math:`(d-k-2)/2` + ``exponent_shift``
    and constant :math:`c_{d,k}` x ``constant_factor``; ``value`` is the largest relative
    difference over all ``k < d`` pairs.

    Parameters
    ----------
    ks : tuple of int
        Block sizes ``k``.
    ds : tuple of int
        Dimensions ``d``.
    dps : int, default 30
        Decimal digits of the mpmath arithmetic.
    exponent_shift : float, default 0.0
        Perturbation of the density's exponent (see above); 0 checks the claim, any other value must fail.
    constant_factor : float, default 1.0
        Factor on the normalising constant :math:`c_{d,k}` (a perturbation); 1 checks the claim.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    with mpmath.workdps(dps):
        for d in ds:
            for k in ks:
                if k >= d:
                    continue
                alpha = mpmath.mpf(k) / (k + 2)
                closed = mpmath.e ** mpmath.mpf(highrate.log_power_integral(d, k, float(alpha)))
                logc = mpmath.log(constant_factor) + mpmath.loggamma(mpmath.mpf(d) / 2) - (
                    mpmath.mpf(k) / 2) * mpmath.log(mpmath.pi) - mpmath.loggamma(mpmath.mpf(d - k) / 2)
                e = (mpmath.mpf(d - k - 2) / 2 + mpmath.mpf(exponent_shift)) * alpha
                area = 2 * mpmath.pi ** (mpmath.mpf(k) / 2) / mpmath.gamma(mpmath.mpf(k) / 2)
                scale = area * mpmath.e ** (alpha * logc) / closed  # integrate the ratio directly (O(1) values)
                grid = mpmath.linspace(0, 1, 33)
                val = mpmath.quad(lambda r: scale * r ** (k - 1) * (1 - r * r) ** e, grid, method="tanh-sinh")
                worst = max(worst, float(abs(val - 1)))
    # closed form is evaluated in float64 (gammaln): ~1e-13 relative is all one can ask
    return make_check(
        "high_rate.power_integral_closed_form", worst, 0.0, 1e-11, "==",
        "max relative difference, closed-form int f_dk^(k/(k+2)) vs 30-digit quadrature, k in "
        f"{list(ks)}, d in {list(ds)}",
    )


def check_scalar_high_rate_limit(
    ds: tuple[int, ...] = (16, 64, 256), *, G: float = 1.0 / 12.0, max_bits: int = 8, tolerance: float = 0.01,
) -> Check:
    r"""The exact Lloyd–Max MSE approaches :math:`d\,G_1\,h_{d,1}\,2^{-2b}` as ``b`` grows.

    ``value`` is :math:`\max_d|\mathrm{MSE}/\text{prediction}-1|` at ``b = max_bits``
    (must be below ``tolerance``); the ratio must also move monotonically towards 1 for
    ``b >= 2`` (otherwise ``value`` is ``inf``). ``G`` replaces the interval's 1/12.

    Parameters
    ----------
    ds : tuple of int
        Dimensions ``d``.
    G : float, default 1/12
        Normalised second moment of the cell (the scalar cell's); another value must fail.
    max_bits : int
        Top rate ``b`` of the comparison.
    tolerance : float
        Allowed relative difference at the top rate.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    ratios: dict[int, list[float]] = {}
    for d in ds:
        rs = [lloyd_max_scalar(d, b).mse / highrate.high_rate_mse(d, 1, b, G=G) for b in range(1, max_bits + 1)]
        ratios[d] = rs
        gaps = [abs(r - 1) for r in rs[1:]]
        if not all(b < a for a, b in zip(gaps, gaps[1:])):
            worst = math.inf
        worst = max(worst, abs(rs[-1] - 1))
    return make_check(
        f"high_rate.scalar_limit[b<={max_bits}]", worst, 0.0, tolerance, "<=",
        "|Lloyd-Max MSE / (d/12 h_d1 2^-2b) - 1| at the top rate; ratios at d=" + str(ds[-1]) + ": "
        + ", ".join(f"{r:.4f}" for r in ratios[ds[-1]]),
        ratios=ratios,
    )


def check_gaussian_shape_limit(ks: tuple[int, ...] = (2, 3, 4, 8, 16, 32), *, d: int = 10**7) -> Check:
    r"""As :math:`d\to\infty` the density-matching gain tends to the Gaussian shape advantage.

    For i.i.d. Gaussian coordinates :math:`h_1/h_k = 3^{3/2}/((k+2)/k)^{(k+2)/2}`
    (Lookabaugh & Gray 1989) and the memory term vanishes. ``value``: largest dB
    difference at ``d = 10^7``.

    Parameters
    ----------
    ks : tuple of int
        Block sizes ``k``.
    d : int
        Dimension.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    for k in ks:
        g = highrate.gain_decomposition(d, k)
        gauss_db = highrate.db(3.0**1.5 / ((k + 2) / k) ** ((k + 2) / 2))
        worst = max(worst, abs(g.density_matching_db - gauss_db), abs(g.memory_db))
    return make_check(
        "high_rate.gaussian_shape_limit", worst, 0.0, 1e-4, "==",
        f"max |density-matching dB - Gaussian shape advantage|, |memory dB| at d={d}",
    )


# ----------------------------------------------------------------- lattice decoders
# The exact nearest-lattice-point decoders live in the library: fibquant_theory.codebooks.lattices.
#: name -> (dimension, volume of a Voronoi cell, sampling box side lengths).
_LATTICES: dict[str, tuple[int, float, tuple[float, ...]]] = {
    "Z": (1, 1.0, (1.0,)),
    "A2": (2, math.sqrt(3.0) / 2.0, (1.0, math.sqrt(3.0))),
    "A3*": (3, 0.5, (1.0, 1.0, 1.0)),
    "D4": (4, 2.0, (2.0,) * 4),
    "E8": (8, 1.0, (2.0,) * 8),
}


def monte_carlo_nsm(name: str, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo normalised second moment ``(G, standard error)`` of a lattice quantizer.

    Points uniform in a period box; :math:`G = E\\|x-Q(x)\\|^2 / (k\\,V^{2/k})`.

    Parameters
    ----------
    name : str
        A lattice of :data:`~fibquant_theory.theory.highrate.LATTICE_SECOND_MOMENTS`
        (``"Z"``, ``"A2"``, ``"A3*"``, ``"D4"``, ``"E8"``).
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.

    Returns
    -------
    G : float
        The estimate.
    se : float
        Its standard error.
    """
    k, vol, box = _LATTICES[name]
    rng = np.random.default_rng(seed)
    x = rng.random((n, k)) * np.asarray(box)
    err = np.sum((x - nearest_lattice_point(name, x)) ** 2, axis=1) / (k * vol ** (2.0 / k))
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(n))


def check_lattice_table(*, n: int = 200_000, seed: int = 0, z_max: float = 5.0, table_scale: float = 1.0) -> Check:
    """Monte Carlo NSM of Z, A2, A3*, D4, E8 agrees with :data:`~fibquant_theory.theory.highrate.LATTICE_SECOND_MOMENTS`.

    ``value`` is the largest ``|MC - table| / SE`` (must be below ``z_max``);
    ``table_scale`` multiplies the table values (to see the check fail).

    Parameters
    ----------
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.
    z_max : float
        Largest allowed difference, in standard errors.
    table_scale : float, default 1.0
        Factor on the tabulated values (a perturbation); 1 checks the table.

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    worst = 0.0
    names = {"Z": 1, "A2": 2, "A3*": 3, "D4": 4, "E8": 8}
    for i, (name, k) in enumerate(names.items()):
        g, se = monte_carlo_nsm(name, n, seed + i)
        worst = max(worst, abs(g - table_scale * highrate.LATTICE_SECOND_MOMENTS[k].G) / se)
    return make_check(
        "high_rate.lattice_table_mc", worst, 0.0, z_max, "<=",
        f"max |Monte Carlo NSM - table| / SE over Z, A2, A3*, D4, E8 (n={n} each)",
    )


def check_lattice_bounds(*, sphere_bound: Callable[[int], float] = highrate.sphere_bound_G) -> Check:
    """Every tabulated :math:`G_k` lies between Zador's sphere bound and ``1/12`` (value: number of violations).

    Parameters
    ----------
    sphere_bound : callable
        ``k -> `` lower bound on :math:`G_k` (a perturbation replaces Zador's).

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    bad = 0
    for k, rec in highrate.LATTICE_SECOND_MOMENTS.items():
        lo = sphere_bound(k)
        if not (lo <= rec.G <= 1.0 / 12.0 + 1e-15) or (k > 1 and rec.G >= 1.0 / 12.0):
            bad += 1
    return make_check(
        "high_rate.lattice_bounds", bad, 0, 0, "==",
        "tabulated G_k outside [sphere bound, 1/12] (strictly below 1/12 for k > 1)",
    )


def check_designed_high_rate(
    d: int = 64, k: int = 2, bits: tuple[int, ...] = (1, 2, 3, 4), *, n: int = 200_000, seed: int = 2,
    tolerance_db: float = 0.15, G: float | None = None,
) -> Check:
    r"""Designed codebooks approach the high-rate prediction :math:`d\,G_k h_{d,k} 2^{-2b}` as ``b`` grows.

    ``value`` is the gap :math:`|10\log_{10}(\mathrm{MSE}/\text{prediction})|` at the top rate
    (must be below ``tolerance_db``); the gaps must shrink strictly with ``b``
    (otherwise ``value`` is ``inf``). ``G`` replaces the best known lattice :math:`G_k`.

    Parameters
    ----------
    d : int
        Dimension.
    k : int
        Block size.
    bits : tuple of int
        Rates ``b`` of the designs.
    n : int
        Monte Carlo samples.
    seed : int
        Seed of the samples.
    tolerance_db : float
        Allowed gap in dB at the top rate.
    G : float, optional
        :math:`G_k` of the prediction (default: the best known lattice's; a perturbation changes it).

    Returns
    -------
    Check
        The outcome: ``passed``, ``value``, ``expected``, ``tolerance`` (see above).
    """
    gaps = []
    for b in bits:
        mse, _ = evaluate_mse(small_design(d, k, 2 ** (k * b)), n=n, seed=seed)
        gaps.append(highrate.db(mse / highrate.high_rate_mse(d, k, b, G=G)))
    shrinking = all(abs(g2) < abs(g1) for g1, g2 in zip(gaps, gaps[1:]))
    return make_check(
        f"high_rate.designed_limit[d={d},k={k}]", abs(gaps[-1]) if shrinking else math.inf, 0.0, tolerance_db, "<=",
        "gap dB of designed codebooks to d G_k h_dk 2^-2b at b=" + ",".join(map(str, bits)) + ": "
        + ", ".join(f"{g:+.3f}" for g in gaps),
        gaps_db=dict(zip(bits, gaps)),
    )


#: Zero-argument callables, each returning a Check (the default run).
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_power_integral_closed_form,
    check_scalar_high_rate_limit,
    check_gaussian_shape_limit,
    check_lattice_table,
    check_lattice_bounds,
    check_designed_high_rate,
)
