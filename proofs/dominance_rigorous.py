r"""Computer-assisted part of Theorem 1: certified lower bounds on the Lloyd-step decrease :math:`\Delta`.

Reduction (``dominance.md``, *Quantitative bound*). For a block size ``k`` with
``2 <= k < d`` and ``b >= 2`` bits per coordinate, group the boxes of the product code
by the cell :math:`I_j` of one coordinate :math:`y_i` and a union of cells of a second
coordinate :math:`y_{i'}`. Jensen's inequality inside every group and the consistency of
the spherical-Beta marginals (the law of :math:`(y_i, y_{i'})` is :math:`f_{d,2}` for every
``k``) give

.. math::

    \Delta(d,k,b) \;\ge\; k\,\delta(d,b),\qquad
    \delta = 4\sum_{j}\sum_{g} P_{jg}\,(\mu_{jg}-\bar\mu_j)^2,

with :math:`P_{jg}, \mu_{jg}` the :math:`f_{d,2}`-mass and :math:`y_1`-centroid of the region
:math:`I_j\times G_g` of the positive quadrant (:math:`G_g`: consecutive unions of
``y_2``-cells, split at a few thresholds) and :math:`\bar\mu_j` the centroid of the whole
strip :math:`I_j\times[0,1]`. The bound does not depend on the reconstruction levels, only
on the thresholds, and :math:`\Delta/D_\otimes \ge \delta/D_1` for every ``k``.

The moments are enclosed by :func:`~fibquant_theory.proofs._interval.region_moments`
(closed-form recurrences in integer fixed-point and :mod:`mpmath.iv` interval arithmetic):
the bound is certified for the package's Lloyd–Max table, its thresholds read as exact
binary numbers, and (``robust_lower``, an explicit perturbation bound) for every table
whose thresholds lie within :data:`ETA` of it, which covers the exact Lloyd–Max table
(:func:`lloyd_max_reference` measures the distance). The result has the same bits on every machine.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath
import numpy as np

from fibquant_theory.theory.scalar import coordinate_moments, lloyd_max_scalar

from ._common import Check, make_check
from ._interval import IV_PREC, Edges, clip_nonnegative, region_cached, region_moments

__all__ = [
    "GRID_D", "GRID_K", "GRID_BITS", "ETA",
    "region_moments", "RigorousDelta", "delta_lower_bound", "centroid_shifts", "lloyd_max_reference",
    "check_rigorous_delta", "check_rigorous_grid", "check_table_accuracy", "check_centroid_directions", "CHECKS",
]

#: The certified grid: ``d`` (powers of two), block sizes ``k`` (every ``2 <= k < d``), bits ``b``.
GRID_D: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
GRID_K: tuple[int, ...] = tuple(range(2, 33))
GRID_BITS: tuple[int, ...] = tuple(range(2, 9))
#: Threshold perturbation covered by the robust bound (the exact Lloyd–Max table is within it).
ETA = Fraction(1, 2 * 10**9)

# --------------------------------------------------------------------- the bound


@dataclass(frozen=True)
class RigorousDelta:
    r"""Certified lower bounds of :math:`\delta(d,b)`, hence of :math:`\Delta(d,k,b)\ge k\delta` for all ``2 <= k < d``.

    Attributes
    ----------
    d, bits : int
        Dimension and bits per coordinate.
    taus : tuple of float
        The ``y_2``-thresholds splitting each strip into groups (plus the rest of the strip).
    lower, upper : float
        Enclosure of :math:`\delta` for the package's table (its thresholds as exact binary
        numbers), outward-rounded to float; ``lower`` is the certified bound.
    relative_lower : float
        ``lower / D_1`` (``D_1`` the table's per-coordinate MSE): a lower bound of :math:`\Delta/D_\otimes`, any ``k``.
    eta : float
        Threshold perturbation covered by ``robust_lower``.
    robust_lower, robust_relative_lower : float
        Certified lower bound of :math:`\delta` (and over ``D_1``) for *every* table whose positive
        thresholds lie within ``eta`` of the package's (the exact Lloyd–Max table among them).
    mass_error : float
        Distance from 1 of the enclosure of the total :math:`f_{d,2}` mass (sum of the strips).
    marginal_error : float
        Largest relative deviation of the strip masses / first moments from the scalar
        closed forms (:func:`~fibquant_theory.theory.scalar.coordinate_moments`, float).
    seconds : float
        Wall time.
    cells : tuple of float
        Certified lower bounds of the per-cell contributions to ``lower``.
    """

    d: int
    bits: int
    taus: tuple[float, ...]
    lower: float
    upper: float
    relative_lower: float
    eta: float
    robust_lower: float
    robust_relative_lower: float
    mass_error: float
    marginal_error: float
    seconds: float
    cells: tuple[float, ...] = field(default=(), repr=False)


def _down(x: mpmath.ctx_iv.ivmpf) -> float:
    """The lower end point of ``x`` as a float, rounded down."""
    f = float(x.a)
    return math.nextafter(f, -math.inf) if f > x.a else f


def _up(x: mpmath.ctx_iv.ivmpf) -> float:
    """The upper end point of ``x`` as a float, rounded up."""
    f = float(x.b)
    return math.nextafter(f, math.inf) if f < x.b else f


def _abs_lower(x: mpmath.ctx_iv.ivmpf) -> mpmath.ctx_iv.ivmpf:
    """A point interval below ``|x|`` (0 when ``x`` contains 0)."""
    if x.a > 0:
        return x.a
    if x.b < 0:
        return -x.b
    return mpmath.iv.mpf(0)


def _breaks(thresholds: np.ndarray, d: int, tau_sigma: Sequence[float]) -> tuple[float, ...]:
    """The positive thresholds nearest to ``c / sqrt(d)`` for each ``c`` (distinct, sorted)."""
    sigma = 1.0 / math.sqrt(d)
    out = {float(min(thresholds, key=lambda t: (abs(t - c * sigma), t))) for c in tau_sigma}
    return tuple(sorted(out))


def _positive_edges(d: int, bits: int) -> np.ndarray:
    q = lloyd_max_scalar(d, bits)
    m = q.n_levels // 2
    return np.concatenate(([0.0], np.asarray(q.thresholds[m:]), [1.0]))


def _strip_groups(ed: Edges, c2: mpmath.ctx_iv.ivmpf, a: float, b: float, taus: Sequence[float]) -> tuple:
    """``(P_strip, mu_strip, [(P_g, mu_g), ...])``: f_{d,2}-masses and y_1-centroids of the groups of one strip."""
    ms, fs = region_cached(ed, a, b, None)
    prev_m, prev_f, groups = mpmath.iv.mpf(0), mpmath.iv.mpf(0), []
    for tau in taus:
        if a * a + tau * tau >= 1.0:
            break
        m, f = region_cached(ed, a, b, tau)
        groups.append((c2 * (m - prev_m), (f - prev_f) / (m - prev_m)))
        prev_m, prev_f = m, f
    groups.append((c2 * (ms - prev_m), (fs - prev_f) / (ms - prev_m)))
    return c2 * ms, fs / ms, groups


def _ivq(x: Fraction) -> mpmath.ctx_iv.ivmpf:
    """Enclosure of a rational number."""
    return mpmath.iv.mpf(x.numerator) / mpmath.iv.mpf(x.denominator)


_Iv = mpmath.ctx_iv.ivmpf


def _robust_cell(
    p_s: _Iv, mu_s: _Iv, groups: Sequence[tuple[_Iv, _Iv]], a: float, b: float, e: int, c2: _Iv, eta: Fraction
) -> _Iv:
    r"""Lower bound of a cell's between-group variance for all thresholds within ``eta`` of ``(a, b, taus)``.

    Moving each edge by at most :math:`\eta` changes every region by slivers of total area
    :math:`\le 6\eta` on which :math:`f_{d,2}\le c_{d,2}\rho`, :math:`\rho=(1-(a-\eta)_+^2)^e`:
    masses move by :math:`\le\varepsilon=6c_{d,2}\rho\eta` and centroids (all inside
    :math:`[a-\eta,b+\eta]`) by :math:`\le (b-a+2\eta)\,\varepsilon/(P-\varepsilon)`.
    """
    iv = mpmath.iv
    lo = _ivq(max(Fraction(a) - eta, Fraction(0)))
    rho = (1 - lo * lo) ** e
    eps = 6 * c2 * rho * _ivq(eta)
    width = _ivq(Fraction(b) - Fraction(a) + 2 * eta)
    if not (p_s - eps).a > 0:
        return iv.mpf(0)
    shift_s = width * eps / (p_s - eps)
    out = iv.mpf(0)
    for p_g, mu_g in groups:
        if not (p_g - eps).a > 0:
            continue
        r = _abs_lower(mu_g - mu_s) - (width * eps / (p_g - eps)).b - shift_s.b
        if r.a > 0:
            out += (p_g - eps).a * r.a**2
    return out


@functools.cache
def delta_lower_bound(
    d: int, bits: int, *, tau_sigma: tuple[float, ...] = (0.45, 0.95, 1.6), eta: Fraction = ETA,
    exponent: int | None = None,
) -> RigorousDelta:
    r"""Certified lower bound of :math:`\delta(d,b)`, hence :math:`\Delta(d,k,b)\ge k\,\delta` for all ``2 <= k < d``.

    Parameters
    ----------
    d : int
        Even dimension, ``d >= 6``.
    bits : int
        Bits per coordinate (``1`` gives the trivial bound 0: one cell per half-line).
    tau_sigma : tuple of float
        Each ``y_2``-break is the positive threshold nearest to ``c / sqrt(d)``.
    eta : Fraction
        Threshold perturbation covered by the robust bound.
    exponent : int, optional
        Override of :math:`e=(d-4)/2` (a wrong density, to see the consistency checks fail).

    Returns
    -------
    RigorousDelta
    """
    if d % 2 or d < 6:
        raise ValueError(f"need an even d >= 6, got {d}")
    t0 = time.perf_counter()
    e = (d - 4) // 2 if exponent is None else int(exponent)
    edges = _positive_edges(d, bits)
    taus = _breaks(edges[1:-1], d, tau_sigma) if edges.size > 2 else ()
    iv = mpmath.iv
    old = iv.prec
    iv.prec = IV_PREC
    try:
        ed = Edges(e, Fraction(0))
        c2 = iv.mpf(d - 2) / (2 * iv.pi)
        total, robust, mass_sum = iv.mpf(0), iv.mpf(0), iv.mpf(0)
        marg = 0.0
        cells = []
        sm, sf, _ = coordinate_moments(d, edges[:-1], edges[1:])
        for j in range(edges.size - 1):
            a, b = float(edges[j]), float(edges[j + 1])
            p_s, mu_s, groups = _strip_groups(ed, c2, a, b, taus)
            mass_sum += p_s
            marg = max(marg, abs(float((2 * p_s).mid) / sm[j] - 1.0), abs(float((2 * p_s * mu_s).mid) / sf[j] - 1.0))
            v = iv.mpf(0)
            for p_g, mu_g in groups:
                v += p_g * (mu_g - mu_s) ** 2
            v = clip_nonnegative(v)  # a between-group variance is >= 0
            cells.append(_down(4 * v))
            total += v
            robust += _robust_cell(p_s, mu_s, groups, a, b, e, c2, eta)
        lower, upper = _down(4 * total), _up(4 * total)
        robust_lower = _down(4 * robust)
        mass_error = _up(abs(4 * mass_sum - 1))
    finally:
        iv.prec = old
    d1 = lloyd_max_scalar(d, bits).mse_per_coordinate
    return RigorousDelta(
        d=d, bits=bits, taus=taus, lower=lower, upper=upper, relative_lower=lower / d1, eta=float(eta),
        robust_lower=robust_lower, robust_relative_lower=robust_lower / d1, mass_error=mass_error,
        marginal_error=marg, seconds=time.perf_counter() - t0, cells=tuple(cells),
    )


def centroid_shifts(d: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Enclosures of :math:`\mu_{jm}-\bar\mu_j`: ``y_1``-centroid of every positive box minus that of its strip.

    :math:`\bar\mu_j` is the exact Lloyd–Max level :math:`\ell_j` when the thresholds are exact
    (centroid condition), so the sign says whether the box centroid moves outwards (``> 0``)
    or inwards (``< 0``) under the Lloyd centroid step.

    Parameters
    ----------
    d : int
        Even dimension, ``d >= 6``.
    bits : int
        Bits per coordinate, ``>= 2``.

    Returns
    -------
    lower, upper : numpy.ndarray
        Shape ``(M, M)``, ``M = 2**(bits-1)``; entry ``[j, m]`` encloses the shift of the box
        :math:`I_j\times I_m` (``x`` in cell ``j``, ``y`` in cell ``m``, cells counted from 0
        outwards); ``nan`` for a box outside the disk. Rounded outwards.
    """
    edges = _positive_edges(d, bits)
    m_cells = edges.size - 1
    lo = np.full((m_cells, m_cells), np.nan)
    hi = np.full((m_cells, m_cells), np.nan)
    old = mpmath.iv.prec
    mpmath.iv.prec = IV_PREC
    try:
        ed = Edges((d - 4) // 2, Fraction(0))
        for j in range(m_cells):
            a, b = float(edges[j]), float(edges[j + 1])
            ms, fs = region_cached(ed, a, b, None)
            prev = (mpmath.iv.mpf(0), mpmath.iv.mpf(0))
            for m in range(m_cells):
                top = float(edges[m + 1])
                if a * a + float(edges[m]) ** 2 >= 1.0:
                    break
                cur = (ms, fs) if m == m_cells - 1 or a * a + top * top >= 1.0 else region_cached(ed, a, b, top)
                shift = (cur[1] - prev[1]) / (cur[0] - prev[0]) - fs / ms
                lo[j, m], hi[j, m] = _down(shift), _up(shift)
                prev = cur
    finally:
        mpmath.iv.prec = old
    return lo, hi


def lloyd_max_reference(d: int, bits: int, *, dps: int = 40) -> list[mpmath.mpf]:
    r"""The exact Lloyd–Max thresholds of :math:`f_{d,1}` to ``dps`` digits (Newton's method in :mod:`mpmath`).

    Not interval arithmetic: a high-precision reference to measure how far the package's
    float table is from the exact one (the robust bound needs it within :data:`ETA`).

    Parameters
    ----------
    d : int
        Dimension, ``d >= 3``.
    bits : int
        Bits per coordinate, ``>= 1``.
    dps : int
        Decimal digits.

    Returns
    -------
    list of mpmath.mpf
        The positive thresholds :math:`t_1<\dots<t_{M-1}`.
    """
    q = lloyd_max_scalar(d, bits)
    m_cells = q.n_levels // 2
    with mpmath.mp.workdps(dps + 10):
        h = mpmath.mpf(d - 3) / 2
        c = [mpmath.mpf(float(x)) for x in q.levels[m_cells:]]

        def cdf(x: mpmath.mpf) -> mpmath.mpf:
            return mpmath.betainc(0.5, h + 1, 0, x * x) / 2

        for _ in range(40):
            t = [mpmath.mpf(0)] + [(c[i] + c[i + 1]) / 2 for i in range(m_cells - 1)] + [mpmath.mpf(1)]
            g = [(1 - x * x) ** h for x in t]
            cum = [cdf(x) for x in t]
            mass = [cum[i + 1] - cum[i] for i in range(m_cells)]
            mu = [((1 - t[i] ** 2) ** (h + 1) - (1 - t[i + 1] ** 2) ** (h + 1)) / (2 * (h + 1)) / mass[i]
                  for i in range(m_cells)]
            res = [mu[i] - c[i] for i in range(m_cells)]
            if max(abs(r) for r in res) < mpmath.mpf(10) ** (-dps - 5):
                break
            # Jacobian of mu - c (tridiagonal); the end points 0 and 1 are fixed
            dlo = [g[i] * (mu[i] - t[i]) / mass[i] / 2 if i > 0 else mpmath.mpf(0) for i in range(m_cells)]
            dhi = [g[i + 1] * (t[i + 1] - mu[i]) / mass[i] / 2 if i < m_cells - 1 else mpmath.mpf(0)
                   for i in range(m_cells)]
            diag = [dlo[i] + dhi[i] - 1 for i in range(m_cells)]
            # Thomas sweep for J x = -res, J[i, i-1] = dlo[i], J[i, i] = diag[i], J[i, i+1] = dhi[i]
            cp, xp = [mpmath.mpf(0)] * m_cells, [mpmath.mpf(0)] * m_cells
            for i in range(m_cells):
                den = diag[i] - (dlo[i] * cp[i - 1] if i else 0)
                cp[i] = dhi[i] / den
                xp[i] = (-res[i] - (dlo[i] * xp[i - 1] if i else 0)) / den
            for i in range(m_cells - 2, -1, -1):
                xp[i] -= cp[i] * xp[i + 1]
            c = [c[i] + xp[i] for i in range(m_cells)]
        return [+((c[i] + c[i + 1]) / 2) for i in range(m_cells - 1)]


# --------------------------------------------------------------------- checks


def check_rigorous_delta(d: int, bits: Sequence[int] = GRID_BITS, *, exponent_shift: int = 0) -> list[Check]:
    r"""Certified :math:`\Delta(d,k,b)\ge k\,\delta(d,b)>0` for every ``b`` in ``bits`` (any ``2 <= k < d``).

    Two records: the consistency of the enclosed moments (total :math:`f_{d,2}` mass 1 and the
    strips reproducing the scalar marginal's closed forms, relative ``1e-10``), and the
    smallest certified lower bound of :math:`\Delta/D_\otimes` over ``bits``, which must be
    ``> 0`` (the value is already a rigorous lower end point: tolerance 0).
    ``exponent_shift`` changes the density's exponent (to see the consistency check fail).

    Parameters
    ----------
    d : int
        Even dimension, ``d >= 6``.
    bits : sequence of int
        Bits per coordinate.
    exponent_shift : int
        Added to the density exponent :math:`(d-4)/2`.

    Returns
    -------
    list of Check
    """
    res = [delta_lower_bound(d, b, exponent=(d - 4) // 2 + exponent_shift) if exponent_shift else delta_lower_bound(d, b)
           for b in bits]
    err = max(max(r.mass_error, r.marginal_error) for r in res)
    worst = min(res, key=lambda r: r.relative_lower)
    label = f"d={d},b={min(bits)}..{max(bits)}"
    return [
        make_check(
            f"dominance.rigorous_moments[{label}]", err, 0.0, 1e-10, "==",
            "interval moments of f_d2: |total mass - 1| and strips vs scalar marginal closed forms (relative)",
        ),
        make_check(
            f"dominance.rigorous_delta[{label}]", worst.relative_lower, 0.0, 0.0, ">",
            f"certified lower bound of Delta/D_prod (all 2<=k<d), min at b={worst.bits}: Delta >= k*{worst.lower:.4e}",
            **{f"b={r.bits}": r.relative_lower for r in res},
        ),
    ]


def check_rigorous_grid(
    ds: Sequence[int] = GRID_D, ks: Sequence[int] = GRID_K, bits: Sequence[int] = GRID_BITS
) -> list[Check]:
    r"""Theorem 1 on the whole grid: certified :math:`\Delta>0` at every ``(d, k, b)`` with ``k < d``.

    Two records: the smallest certified lower bound of :math:`\Delta/D_\otimes` for the
    package's table, and the same for every table within :data:`ETA` of it (the robust
    bound, which covers the exact Lloyd–Max table). Both must be ``> 0``.

    Parameters
    ----------
    ds, ks, bits : sequence of int
        The grid (``k < d`` is imposed).

    Returns
    -------
    list of Check
    """
    points = [(d, k, b) for d in ds for k in ks for b in bits if k < d]
    res = {(d, b): delta_lower_bound(d, b) for d in ds for b in bits}
    out = []
    for kind, rel, low in (("table", "relative_lower", "lower"), ("robust", "robust_relative_lower", "robust_lower")):
        d0, _k0, b0 = min(points, key=lambda p: (getattr(res[p[0], p[2]], rel), p))
        dmin, kmin, bmin = min(points, key=lambda p: (p[1] * getattr(res[p[0], p[2]], low), p))
        val = getattr(res[d0, b0], rel)
        absolute = kmin * getattr(res[dmin, bmin], low)
        out.append(make_check(
            f"dominance.rigorous_grid_{kind}[{len(points)} points]", val, 0.0, 0.0, ">",
            f"min certified Delta/D_prod over d in {tuple(ds)}, 2<=k<min(d,{max(ks) + 1}), b in {tuple(bits)}: "
            f"at d={d0},b={b0} (any k); min Delta >= {absolute:.4e} at d={dmin},k={kmin},b={bmin}"
            + (f"; thresholds within {float(ETA):g} of the table" if kind == "robust" else ""),
            min_absolute=absolute,
        ))
    return out


def check_table_accuracy(points: Sequence[tuple[int, int]] | None = None, *, eta: Fraction = ETA) -> Check:
    """The package's Lloyd–Max thresholds are within :data:`ETA` of the exact ones (40-digit Newton reference).

    ``value`` is the largest :math:`|t_\\mathrm{exact}-t_\\mathrm{table}|/\\eta` over ``points``
    (default: the whole grid); it must be ``< 1`` for the robust bound to cover the exact
    Lloyd–Max table. A smaller ``eta`` makes the check fail.

    Parameters
    ----------
    points : sequence of (int, int), optional
        ``(d, bits)`` pairs.
    eta : Fraction
        The perturbation the robust bound covers.

    Returns
    -------
    Check
    """
    points = [(d, b) for d in GRID_D for b in GRID_BITS] if points is None else list(points)
    worst, where = 0.0, points[0]
    for d, b in points:
        ref = lloyd_max_reference(d, b)
        tab = lloyd_max_scalar(d, b)
        table = tab.thresholds[tab.n_levels // 2:]
        err = max(abs(float(r - mpmath.mpf(float(t)))) for r, t in zip(ref, table))
        worst, where = max((worst, where), (err, (d, b)))
    return make_check(
        f"dominance.table_accuracy[{len(points)} tables]", worst / float(eta), 1.0, 0.0, "<",
        f"max |exact - table| Lloyd-Max threshold / eta (eta={float(eta):g}): {worst:.2e} at (d, b)={where}",
        max_error=worst,
    )


def check_centroid_directions(d: int = 64, bits: int = 3, *, sign: int = 1) -> Check:
    r"""Direction of the centroid step: in every strip :math:`I_j` the ``y_1``-centroid strictly decreases outwards in ``y_2``.

    Certified: for every ``j``, :math:`\mu_{j,0}>\bar\mu_j>\mu_{j,M-1}` (the box with the
    innermost ``y_2``-cell moves outwards, the one with the outermost moves inwards) and
    :math:`\mu_{j,m}>\mu_{j,m+1}`. In particular in the mixed box (``y_1`` outer, ``y_2``
    inner) the outer coordinate moves *outwards*. ``value`` is the smallest certified margin
    times ``sign`` (``sign=-1`` claims the opposite direction: the check then fails).

    Parameters
    ----------
    d : int
        Even dimension, ``d >= 6``.
    bits : int
        Bits per coordinate, ``>= 2``.
    sign : int
        ``1``: the stated direction; ``-1``: the opposite claim.

    Returns
    -------
    Check
    """
    lo, hi = centroid_shifts(d, bits)
    m_cells = lo.shape[0]
    margins = []
    for j in range(m_cells):
        ok = ~np.isnan(lo[j])
        row_lo, row_hi = lo[j][ok], hi[j][ok]
        margins += [row_lo[0], -row_hi[-1]] + list(row_lo[:-1] - row_hi[1:])  # outward, inward, decreasing
    lo_sign = min(margins) if sign > 0 else min(-x for x in margins)
    return make_check(
        f"dominance.centroid_direction[d={d},b={bits}]", lo_sign, 0.0, 0.0, ">",
        f"certified min over strips of (mu_j0 - mu_j, mu_j - mu_j,last, mu_jm - mu_j,m+1); mixed box "
        f"(y1 outer, y2 inner): outer coordinate shift in [{lo[-1, 0]:.3e}, {hi[-1, 0]:.3e}] (outwards), "
        f"inner coordinate (y1 inner, y2 outer) in [{lo[0, -1]:.3e}, {hi[0, -1]:.3e}] (inwards)",
        mixed_outer_shift=float(lo[-1, 0]), mixed_inner_shift=float(hi[0, -1]),
    )


#: Zero-argument callables, each returning a Check or a list of Checks (spliced into ``dominance.CHECKS``).
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    *(functools.partial(check_rigorous_delta, d) for d in GRID_D),
    check_rigorous_grid,
    check_table_accuracy,
    check_centroid_directions,
)
