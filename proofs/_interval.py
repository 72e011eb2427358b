r"""Rigorous moments of :math:`f_{d,2}` on rectangles cut by the unit disk (interval arithmetic).

The building block of :mod:`~fibquant_theory.proofs.dominance_rigorous`. For the region
:math:`R=[a,b]\times[0,\tau]\cap\{x^2+y^2\le1\}` and :math:`h=1-x^2-y^2`, an integer
``e >= 1``:

* the divergence theorem for :math:`(x h^e, y h^e)` (:math:`\operatorname{div}=(2e+2)h^e-2eh^{e-1}`,
  and :math:`h=0` on the arc) gives :math:`(e+1)F_e = F_0 + \tfrac12\sum_{n=1}^{e}\Phi_n` with
  :math:`F_n=\iint_R h^n`, :math:`F_0` the area (an :math:`\arcsin`) and :math:`\Phi_n` the flux
  through the straight edges, a sum of :math:`\pm x\,K_n(1-x^2,w)`,
  :math:`K_n(A^2,w)=\int_0^w(A^2-y^2)^n\,dy`;
* :math:`K_n` obeys :math:`(2n+1)K_n = w(A^2-w^2)^n + 2nA^2K_{n-1}`, :math:`K_0=w`
  (integration by parts), all terms non-negative;
* :math:`\iint_R x\,h^e = [K_{e+1}(1-a^2,w_a)-K_{e+1}(1-b^2,w_b)]/(2e+2)` (inner integral in ``x``).

The :math:`K` recurrences run in fixed-point integer arithmetic with directed rounding
(320 fractional bits; a lower and an upper sequence), everything else in
:mod:`mpmath.iv` at 256 bits. Only integer and interval operations enter, so the
enclosures are the same on every machine.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import mpmath

__all__ = ["IV_PREC", "Pair", "k_chain", "iv_asin", "clip_nonnegative", "Edges", "region_moments", "region_cached"]

_P = 320  # fixed-point fractional bits of the K recurrences
IV_PREC = 256  # mpmath.iv working precision (bits)
_MARGIN = 1e-6  # a corner closer than this to the unit circle is refused (ambiguous case)
_ASIN_TERMS = 60

Pair = tuple[int, int]  # fixed-point interval [lo, hi] * 2**-_P, lo <= hi


# --------------------------------------------------------------------- fixed-point intervals


def _fix(x: Fraction, eta: Fraction = Fraction(0)) -> Pair:
    return math.floor((x - eta) * (1 << _P)), math.ceil((x + eta) * (1 << _P))


def _mul(u: Pair, v: Pair) -> Pair:
    """Product of two non-negative fixed-point intervals, rounded outwards."""
    return (u[0] * v[0]) >> _P, -((-u[1] * v[1]) >> _P)


def _one_minus_sq(x: Pair) -> Pair:
    """:math:`1-x^2` for ``0 <= x <= 1``."""
    s = _mul(x, x)
    return (1 << _P) - s[1], (1 << _P) - s[0]


def _sqrt(x: Pair) -> Pair:
    return math.isqrt(x[0] << _P), math.isqrt(x[1] << _P) + 1


def k_chain(a2: Pair, w: Pair, e: int) -> tuple[Pair, Pair, Pair]:
    r"""Enclosures of :math:`K_e`, :math:`K_{e+1}` and :math:`\sum_{n=1}^{e}K_n`, :math:`K_n=\int_0^w(A^2-y^2)^n\,dy`.

    Parameters
    ----------
    a2, w : tuple of int
        Fixed-point intervals (``2**-320`` units) of :math:`A^2` and ``w``, with the true
        values satisfying :math:`0 \le w \le A`.
    e : int
        Order, ``e >= 1``.

    Returns
    -------
    tuple
        Three fixed-point intervals ``(K_e, K_{e+1}, S_e)``. Every term of the recurrence
        :math:`(2n+1)K_n = w(A^2-w^2)^n + 2nA^2K_{n-1}`, :math:`K_0=w`, is non-negative and
        increasing in its inputs, so the lower (upper) sequence, rounded down (up), encloses it.
    """
    w2 = _mul(w, w)
    q = (max(0, a2[0] - w2[1]), max(0, a2[1] - w2[0]))
    k, p, s = w, (1 << _P, 1 << _P), (0, 0)
    ke = k
    for n in range(1, e + 2):
        p = _mul(p, q)
        num = _mul(w, p)
        rest = _mul(a2, k)
        lo = (num[0] + 2 * n * rest[0]) // (2 * n + 1)
        hi = -((-(num[1] + 2 * n * rest[1])) // (2 * n + 1))
        k = (lo, hi)
        if n <= e:
            s = (s[0] + lo, s[1] + hi)
        if n == e:
            ke = k
    return ke, k, s


# --------------------------------------------------------------------- interval (mpmath.iv) part


def _iv(p: Pair) -> mpmath.ctx_iv.ivmpf:
    lo = mpmath.iv.mpf(p[0]) / mpmath.iv.mpf(2) ** _P
    hi = mpmath.iv.mpf(p[1]) / mpmath.iv.mpf(2) ** _P
    return mpmath.iv.mpf([lo.a, hi.b])


def iv_asin(x: mpmath.ctx_iv.ivmpf) -> mpmath.ctx_iv.ivmpf:
    r"""Interval enclosure of :math:`\arcsin x` for ``0 <= x <= 1`` (``x`` an :mod:`mpmath.iv` interval).

    Three half-angle steps :math:`\arcsin x = 2\arcsin\big(x/\sqrt{2(1+\sqrt{1-x^2})}\big)` bring the
    argument below :math:`\sin(\pi/16)<0.2`; then the Taylor series
    :math:`\sum_n c_n s^{2n+1}`, :math:`c_n=\binom{2n}{n}/(4^n(2n+1))`, with the remainder
    :math:`0\le R_N\le c_N s^{2N+1}/(1-s^2)` (the :math:`c_n` decrease).

    Parameters
    ----------
    x : mpmath interval
        Argument, inside ``[0, 1]``.

    Returns
    -------
    mpmath interval
        An interval containing :math:`\arcsin` of every point of ``x``.
    """
    iv = mpmath.iv
    s = x
    for _ in range(3):
        s = s / iv.sqrt(2 * (1 + iv.sqrt(clip_nonnegative(1 - s * s))))
    s2 = s * s
    coeffs = _asin_coefficients()
    total = iv.mpf(0)
    for c in reversed(coeffs[:-1]):
        total = total * s2 + c
    remainder = coeffs[-1] * s2**_ASIN_TERMS / (1 - s2)  # 0 <= R_N / s <= c_N s^(2N) / (1 - s^2)
    return 8 * s * (total + iv.mpf([0, remainder.b]))


@functools.lru_cache(maxsize=1)
def _asin_coefficients() -> tuple[mpmath.ctx_iv.ivmpf, ...]:
    r"""Enclosures (at 256 bits) of :math:`c_n=\binom{2n}{n}/(4^n(2n+1))`, ``n = 0 .. _ASIN_TERMS``."""
    old = mpmath.iv.prec
    mpmath.iv.prec = IV_PREC
    try:
        return tuple(
            mpmath.iv.mpf(math.comb(2 * n, n)) / mpmath.iv.mpf(4**n * (2 * n + 1)) for n in range(_ASIN_TERMS + 1)
        )
    finally:
        mpmath.iv.prec = old


def clip_nonnegative(v: mpmath.ctx_iv.ivmpf) -> mpmath.ctx_iv.ivmpf:
    """Intersect with ``[0, inf)`` (the true value is known to be >= 0)."""
    lo = v.a if v.a > 0 else mpmath.iv.mpf(0)
    hi = v.b if v.b > 0 else mpmath.iv.mpf(0)
    return mpmath.iv.mpf([lo.a, hi.b])


def _prim(x: mpmath.ctx_iv.ivmpf) -> mpmath.ctx_iv.ivmpf:
    r""":math:`\int_0^x\sqrt{1-s^2}\,ds = \tfrac12(x\sqrt{1-x^2}+\arcsin x)`."""
    return (x * mpmath.iv.sqrt(clip_nonnegative(1 - x * x)) + iv_asin(x)) / 2


class Edges:
    """The exact thresholds of one table as fixed-point intervals, with a cache of the K recurrences."""

    def __init__(self, e: int, eta: Fraction) -> None:
        self.e = e
        self.eta = eta
        self._chains: dict[tuple[Pair, Pair], tuple[Pair, Pair, Pair]] = {}
        self._prims: dict[Pair, mpmath.ctx_iv.ivmpf] = {}

    def fix(self, x: float) -> Pair:
        eta = self.eta if 0.0 < x < 1.0 else Fraction(0)  # 0 and 1 are exact by symmetry / support
        return _fix(Fraction(x), eta)

    def prim(self, x: Pair) -> mpmath.ctx_iv.ivmpf:
        if x not in self._prims:
            self._prims[x] = _prim(_iv(x))
        return self._prims[x]

    def chain(self, a2: Pair, w: Pair) -> tuple[Pair, Pair, Pair]:
        key = (a2, w)
        if key not in self._chains:
            self._chains[key] = k_chain(a2, w, self.e)
        return self._chains[key]


def region_moments(
    a: float, b: float, tau: float | None, e: int, *, eta: Fraction = Fraction(0)
) -> tuple[mpmath.ctx_iv.ivmpf, mpmath.ctx_iv.ivmpf]:
    r"""Enclosures of :math:`\iint_R h^e` and :math:`\iint_R x\,h^e`, :math:`R=[a,b]\times[0,\tau]\cap\{x^2+y^2\le1\}`.

    Parameters
    ----------
    a, b : float
        ``0 <= a < b <= 1`` (each widened by ``eta`` unless it is 0 or 1).
    tau : float or None
        Height of the region (widened by ``eta``); ``None``: the whole strip :math:`[a,b]\times[0,1]`.
    e : int
        Exponent, ``e >= 1`` (:math:`f_{d,2}\propto h^{(d-4)/2}`).
    eta : Fraction
        Half-width of the input intervals.

    Returns
    -------
    tuple of mpmath intervals
        ``(mass, first)``, unnormalised (multiply by :math:`c_{d,2}=(d-2)/(2\pi)`).

    Raises
    ------
    ValueError
        If a corner lies within ``1e-6`` of the unit circle (case not decidable from the floats).
    """
    if not (0.0 <= a < b <= 1.0) or e < 1 or int(e) != e:
        raise ValueError(f"need 0 <= a < b <= 1 and an integer e >= 1, got a={a}, b={b}, e={e}")
    if tau is not None and not 0.0 < tau < 1.0:
        raise ValueError(f"need 0 < tau < 1 (or None for the strip), got {tau}")
    old = mpmath.iv.prec
    mpmath.iv.prec = IV_PREC
    try:
        return region_cached(Edges(int(e), eta), a, b, tau)
    finally:
        mpmath.iv.prec = old


def region_cached(ed: Edges, a: float, b: float, tau: float | None) -> tuple[mpmath.ctx_iv.ivmpf, mpmath.ctx_iv.ivmpf]:
    """:func:`region_moments` with a shared cache of K recurrences (``mpmath.iv.prec`` set by the caller)."""
    iv = mpmath.iv
    e = ed.e
    strip = tau is None
    t_f = 1.0 if strip else float(tau)
    tfx = (1 << _P, 1 << _P) if strip else ed.fix(t_f)
    big_x = (0, 0) if strip else _sqrt(_one_minus_sq(tfx))

    def inside(x: float) -> bool:  # x^2 + tau^2 < 1: the edge at x is cut by y = tau, not by the arc
        if strip:
            return False
        gap = x * x + t_f * t_f - 1.0
        if abs(gap) < _MARGIN:
            raise ValueError(f"corner ({x}, {t_f}) too close to the unit circle")
        return gap < 0

    flux = iv.mpf(0)
    first = iv.mpf(0)
    area = iv.mpf(0)
    for sign, x in ((1, b), (-1, a)):
        xfx = ed.fix(x)
        a2 = _one_minus_sq(xfx)
        w = tfx if inside(x) else _sqrt(a2)
        _ke, ke1, se = ed.chain(a2, w)
        flux += sign * _iv(xfx) * _iv(se)
        first -= sign * _iv(ke1)
        if not strip:
            top = ed.chain(_one_minus_sq(tfx), xfx if inside(x) else big_x)
            flux += sign * _iv(tfx) * _iv(top[2])
            area += sign * _iv(tfx) * _iv(xfx if inside(x) else big_x)
        area += sign * ed.prim(big_x if inside(x) else xfx)
    mass = (area + flux / 2) / (e + 1)
    return mass, first / (2 * e + 2)


