r"""Elementary and special functions with the same bits on every x86-64 machine.

The C library picks its ``exp``, ``log``, ``pow``, ``sin`` and ``cos`` by the CPU
(glibc has separate FMA, AVX2 and SSE2 versions that round differently in the
last bit), and so do SciPy's special functions built on them. A codebook is
designed from Beta quantiles, trigonometric directions and inverse normal CDF
values, so its bits would depend on the machine. The functions here use only
IEEE-754 ``+ - * /``, ``sqrt``, ``floor``, ``frexp`` and ``ldexp`` (all exact or
correctly rounded) in a fixed order, compiled without fastmath: they give the
same bits everywhere. Their accuracy is a few units in the last place (the
tests check them against mpmath/SciPy); what they buy is reproducibility.

* :func:`exp`, :func:`log`, :func:`log1p`: argument reduction and a series.
* :func:`sincos_turns`: :math:`(\sin 2\pi t, \cos 2\pi t)` for an angle given in
  *turns*, so the reduction to an octant is exact.
* :func:`ndtri`: the inverse standard normal CDF (Wichura's AS 241).
* :func:`lgamma`, :func:`betainc`, :func:`betaincinv`: the regularised
  incomplete Beta function by its continued fraction, and its inverse by a
  bracketed Newton iteration.

Random variates built on them are in :mod:`fibquant_theory.numerics.portable_random`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

__all__ = [
    "betainc",
    "betaincc",
    "betaincinv",
    "exp",
    "lgamma",
    "log",
    "log1p",
    "ndtri",
    "sincos_turns",
]

_LN2_HI = 6.93147180369123816490e-01  # the high part of log(2) has 21 trailing zero bits
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT_HALF = 0.70710678118654752440
_HALF_LOG_2PI = 0.91893853320467274178
_QUARTER_PI = 0.78539816339744830962


# ----------------------------------------------------------------------------- exp / log
@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _exp(x):  # pragma: no cover - compiled
    if x != x:
        return x
    if x > 709.782712893384:
        return np.inf
    if x < -745.1332191019412:
        return 0.0
    n = math.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO  # |r| <= 0.35
    # Taylor series to degree 13: the remainder is below 5e-18 relative
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r * r + r
    return math.ldexp(1.0 + p, int(n))


@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _log(x):  # pragma: no cover - compiled
    if x != x or x < 0.0:
        return np.nan
    if x == 0.0:
        return -np.inf
    if x == np.inf:
        return x
    m, e = math.frexp(x)  # x = m 2^e, 0.5 <= m < 1
    if m < _SQRT_HALF:
        m *= 2.0
        e -= 1
    f = m - 1.0  # exact (Sterbenz); -0.293 < f < 0.415
    s = f / (2.0 + f)
    z = s * s
    # log(1 + f) = 2 atanh(s) = f - s (f - R), R = sum_j 2 z^j / (2j + 1); z <= 0.0295
    r = 2.0 / 25.0
    r = r * z + 2.0 / 23.0
    r = r * z + 2.0 / 21.0
    r = r * z + 2.0 / 19.0
    r = r * z + 2.0 / 17.0
    r = r * z + 2.0 / 15.0
    r = r * z + 2.0 / 13.0
    r = r * z + 2.0 / 11.0
    r = r * z + 2.0 / 9.0
    r = r * z + 2.0 / 7.0
    r = r * z + 2.0 / 5.0
    r = r * z + 2.0 / 3.0
    r = r * z
    dk = float(e)
    return dk * _LN2_HI + (f - (s * (f - r) - dk * _LN2_LO))


@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _log1p(x):  # pragma: no cover - compiled
    u = 1.0 + x
    if u == 1.0:
        return x
    if u == np.inf:
        return u
    # Goldberg's correction: log(u) * x / (u - 1) compensates the rounding of 1 + x
    return _log(u) * (x / (u - 1.0))


# ----------------------------------------------------------------------------- sin / cos
@njit("UniTuple(float64, 2)(float64)", cache=True, nogil=True, error_model="numpy")
def _sincos_small(a):  # pragma: no cover - compiled
    """``(sin a, cos a)`` for ``0 <= a <= pi/4`` by Taylor series (remainders below 1e-19)."""
    z = a * a
    s = 1.0 / 355687428096000.0
    s = s * z - 1.0 / 1307674368000.0
    s = s * z + 1.0 / 6227020800.0
    s = s * z - 1.0 / 39916800.0
    s = s * z + 1.0 / 362880.0
    s = s * z - 1.0 / 5040.0
    s = s * z + 1.0 / 120.0
    s = s * z - 1.0 / 6.0
    sin_a = a + a * z * s
    c = 1.0 / 20922789888000.0
    c = c * z - 1.0 / 87178291200.0
    c = c * z + 1.0 / 479001600.0
    c = c * z - 1.0 / 3628800.0
    c = c * z + 1.0 / 40320.0
    c = c * z - 1.0 / 720.0
    c = c * z + 1.0 / 24.0
    cos_a = 1.0 - 0.5 * z + z * z * c
    return sin_a, cos_a


@njit("UniTuple(float64, 2)(float64)", cache=True, nogil=True, error_model="numpy")
def _sincos_turns(t):  # pragma: no cover - compiled
    """``(sin 2 pi t, cos 2 pi t)``: octant found exactly from ``8 t``, then a series on ``[0, pi/4]``."""
    if not math.isfinite(t):
        return np.nan, np.nan
    t = t - math.floor(t)  # [0, 1]
    e = 8.0 * t  # exact
    o = math.floor(e)
    f = e - o  # exact, in [0, 1)
    octant = int(o) % 8
    if octant % 2 == 0:
        s, c = _sincos_small(_QUARTER_PI * f)
    else:
        s, c = _sincos_small(_QUARTER_PI * (1.0 - f))
    if octant == 0:
        return s, c
    if octant == 1:
        return c, s
    if octant == 2:
        return c, -s
    if octant == 3:
        return s, -c
    if octant == 4:
        return -s, -c
    if octant == 5:
        return -c, -s
    if octant == 6:
        return -c, s
    return -s, c


# ----------------------------------------------------------------------------- normal quantile
@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _ndtri(p):  # pragma: no cover - compiled
    """Wichura's AS 241 (PPND16), relative accuracy about 1e-16, with the logarithm of this module."""
    if p != p or p < 0.0 or p > 1.0:
        return np.nan
    if p == 0.0:
        return -np.inf
    if p == 1.0:
        return np.inf
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e3 * r + 3.3430575583588128105e4) * r + 6.7265770927008700853e4) * r
                   + 4.5921953931549871457e4) * r + 1.3731693765509461125e4) * r + 1.9715909503065514427e3) * r
                + 1.3314166789178437745e2) * r + 3.3871328727963666080e0) * q
        den = (((((((5.2264952788528545610e3 * r + 2.8729085735721942674e4) * r + 3.9307895800092710610e4) * r
                   + 2.1213794301586595867e4) * r + 5.3941960214247511077e3) * r + 6.8718700749205790830e2) * r
                + 4.2313330701600911252e1) * r + 1.0)
        return num / den
    r = p if q <= 0.0 else 1.0 - p
    r = np.sqrt(-_log(r))
    if r <= 5.0:
        r = r - 1.6
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r + 2.41780725177450611770e-1) * r
                   + 1.27045825245236838258e0) * r + 3.64784832476320460504e0) * r + 5.76949722146069140550e0) * r
                + 4.63033784615654529590e0) * r + 1.42343711074968357734e0)
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r + 1.51986665636164571966e-2) * r
                   + 1.48103976427480074590e-1) * r + 6.89767334985100004550e-1) * r + 1.67638483018380384940e0) * r
                + 2.05319162663775882187e0) * r + 1.0)
    else:
        r = r - 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 1.24266094738807843860e-3) * r
                   + 2.65321895265761230930e-2) * r + 2.96560571828504891230e-1) * r + 1.78482653991729133580e0) * r
                + 5.46378491116411436990e0) * r + 6.65790464350110377720e0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r + 1.84631831751005468180e-5) * r
                   + 7.86869131145613259100e-4) * r + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
                + 5.99832206555887937690e-1) * r + 1.0)
    x = num / den
    return -x if q < 0.0 else x


# ----------------------------------------------------------------------------- gamma / beta
#: Stirling's series is used from this argument on (its first omitted term is below 1e-19 there).
_STIRLING_MIN = 15.0


@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _stirling_correction(x):  # pragma: no cover - compiled
    """``log Gamma(x) - ((x - 1/2) log x - x + log(2 pi)/2)`` for ``x >= 15`` (Stirling's series)."""
    z = 1.0 / (x * x)
    series = 1.0 / 156.0
    series = series * z - 691.0 / 360360.0
    series = series * z + 1.0 / 1188.0
    series = series * z - 1.0 / 1680.0
    series = series * z + 1.0 / 1260.0
    series = series * z - 1.0 / 360.0
    series = series * z + 1.0 / 12.0
    return series / x


@njit("float64(float64)", cache=True, nogil=True, error_model="numpy")
def _lgamma(x):  # pragma: no cover - compiled
    """``log Gamma(x)`` for ``x > 0``: upward recurrence to ``x >= 15``, then Stirling's series."""
    if x != x or x <= 0.0:
        return np.nan
    if x == np.inf:
        return x
    shift = 1.0
    while x < _STIRLING_MIN:
        shift *= x
        x += 1.0
    out = (x - 0.5) * _log(x) - x + _HALF_LOG_2PI + _stirling_correction(x)
    if shift != 1.0:
        out -= _log(shift)
    return out


@njit("float64(float64, float64)", cache=True, nogil=True, error_model="numpy")
def _log_beta(a, b):  # pragma: no cover - compiled
    """``log B(a, b)``; for large arguments the Stirling terms are combined first, so nothing large cancels."""
    if a > b:
        a, b = b, a
    if b < _STIRLING_MIN:
        return _lgamma(a) + _lgamma(b) - _lgamma(a + b)
    s = a + b
    if a < _STIRLING_MIN:
        # log Gamma(b) - log Gamma(a + b) = -(b - 1/2) log(1 + a/b) - a log(s) + a + corrections
        diff = -(b - 0.5) * _log1p(a / b) - a * _log(s) + a + _stirling_correction(b) - _stirling_correction(s)
        return _lgamma(a) + diff
    return (
        _HALF_LOG_2PI - 0.5 * _log(s) + (a - 0.5) * _log(a / s) + (b - 0.5) * _log1p(-a / s)
        + _stirling_correction(a) + _stirling_correction(b) - _stirling_correction(s)
    )


@njit("float64(float64, float64, float64)", cache=True, nogil=True, error_model="numpy")
def _beta_cf(a, b, x):  # pragma: no cover - compiled
    """Continued fraction of ``I_x(a, b)`` (modified Lentz), converging fast for ``x < (a+1)/(a+b+2)``."""
    tiny = 1e-300
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, 100_000):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) <= 3e-16:
            break
    return h


@njit("UniTuple(float64, 2)(float64, float64, float64, float64)", cache=True, nogil=True, error_model="numpy")
def _betainc_pair_lb(a, b, x, log_beta):  # pragma: no cover - compiled
    """``(I_x(a, b), 1 - I_x(a, b))`` given ``log B(a, b)``; the smaller one is computed directly."""
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    front = _exp(a * _log(x) + b * _log1p(-x) - log_beta)
    if x < (a + 1.0) / (a + b + 2.0):
        lower = front * _beta_cf(a, b, x) / a
        return lower, 1.0 - lower
    upper = front * _beta_cf(b, a, 1.0 - x) / b
    return 1.0 - upper, upper


@njit("UniTuple(float64, 2)(float64, float64, float64)", cache=True, nogil=True, error_model="numpy")
def _betainc_pair(a, b, x):  # pragma: no cover - compiled
    """``(I_x(a, b), 1 - I_x(a, b))``, the smaller of the two computed directly (full relative precision)."""
    return _betainc_pair_lb(a, b, x, _log_beta(a, b))


@njit("float64(float64, float64, float64, boolean)", cache=True, nogil=True, error_model="numpy")
def _beta_quantile(a, b, p, upper):  # pragma: no cover - compiled
    """The ``x`` with ``I_x(a, b) = p`` (``upper``: with ``1 - I_x(a, b) = p``).

    Newton's method from the mean, kept inside a bracket that every step
    shrinks (a step that would leave it bisects instead); it stops when a step
    changes ``x`` by less than a few ulps or the bracket has closed.
    """
    if p != p or p < 0.0 or p > 1.0:
        return np.nan
    if p == 0.0:
        return 1.0 if upper else 0.0
    if p == 1.0:
        return 0.0 if upper else 1.0
    lb = _log_beta(a, b)
    lo = 0.0
    hi = 1.0
    x = a / (a + b)
    for _ in range(1000):
        lower, up = _betainc_pair_lb(a, b, x, lb)
        # f = I_x - target, from whichever tail is accurate
        f = (p - up) if upper else (lower - p)
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        density = _exp((a - 1.0) * _log(x) + (b - 1.0) * _log1p(-x) - lb)
        nxt = x - f / density if density > 0.0 else 0.5 * (lo + hi)
        if not (lo < nxt < hi):
            nxt = 0.5 * (lo + hi)
        if nxt == x or abs(nxt - x) <= 4e-16 * x or nxt <= lo or nxt >= hi:
            return nxt if lo < nxt < hi else x
        x = nxt
    return x


@njit("float64(float64, float64, float64)", cache=True, nogil=True, error_model="numpy")
def _betaincinv(a, b, q):  # pragma: no cover - compiled
    """The ``x`` in ``[0, 1]`` with ``I_x(a, b) = q``; the upper tail is solved for ``q > 1/2``."""
    if q > 0.5:
        return _beta_quantile(a, b, 1.0 - q, True)
    return _beta_quantile(a, b, q, False)


# ----------------------------------------------------------------------------- array wrappers
@vectorize(["float64(float64)"], cache=True)
def _exp_u(x):  # pragma: no cover - compiled
    return _exp(x)


@vectorize(["float64(float64)"], cache=True)
def _log_u(x):  # pragma: no cover - compiled
    return _log(x)


@vectorize(["float64(float64)"], cache=True)
def _log1p_u(x):  # pragma: no cover - compiled
    return _log1p(x)


@vectorize(["float64(float64)"], cache=True)
def _sin_turns_u(t):  # pragma: no cover - compiled
    return _sincos_turns(t)[0]


@vectorize(["float64(float64)"], cache=True)
def _cos_turns_u(t):  # pragma: no cover - compiled
    return _sincos_turns(t)[1]


@vectorize(["float64(float64)"], cache=True)
def _ndtri_u(p):  # pragma: no cover - compiled
    return _ndtri(p)


@vectorize(["float64(float64)"], cache=True)
def _lgamma_u(x):  # pragma: no cover - compiled
    return _lgamma(x)


@vectorize(["float64(float64, float64, float64)"], cache=True)
def _betainc_u(a, b, x):  # pragma: no cover - compiled
    return _betainc_pair(a, b, x)[0]


@vectorize(["float64(float64, float64, float64)"], cache=True)
def _betaincc_u(a, b, x):  # pragma: no cover - compiled
    return _betainc_pair(a, b, x)[1]


@vectorize(["float64(float64, float64, float64)"], cache=True)
def _betaincinv_u(a, b, q):  # pragma: no cover - compiled
    return _betaincinv(a, b, q)


def _f8(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def exp(x: object) -> np.ndarray:
    """:math:`e^x`, elementwise (float64, within about 1 ulp).

    Parameters
    ----------
    x : array_like
        Arguments.

    Returns
    -------
    numpy.ndarray
        The values, of ``x``'s shape, float64.
    """
    return _exp_u(_f8(x))


def log(x: object) -> np.ndarray:
    """Natural logarithm, elementwise (``-inf`` at 0, NaN below 0; within about 1 ulp).

    Parameters
    ----------
    x : array_like
        Arguments.

    Returns
    -------
    numpy.ndarray
        The values, of ``x``'s shape, float64.
    """
    return _log_u(_f8(x))


def log1p(x: object) -> np.ndarray:
    """:math:`\\log(1 + x)`, accurate for small ``x``, elementwise.

    Parameters
    ----------
    x : array_like
        Arguments, ``>= -1``.

    Returns
    -------
    numpy.ndarray
        The values, of ``x``'s shape, float64.
    """
    return _log1p_u(_f8(x))


def sincos_turns(t: object) -> tuple[np.ndarray, np.ndarray]:
    """:math:`(\\sin 2\\pi t, \\cos 2\\pi t)` for angles ``t`` in turns (any real ``t``), elementwise.

    The reduction is exact: ``t`` modulo 1 and the octant ``floor(8 t)`` need no
    rounding, so large arguments lose no accuracy beyond that of ``t`` itself.

    Parameters
    ----------
    t : array_like
        Angles in turns (``1`` is a full turn).

    Returns
    -------
    sin : numpy.ndarray
        The sines, of ``t``'s shape, float64.
    cos : numpy.ndarray
        The cosines, of ``t``'s shape, float64.
    """
    arr = _f8(t)
    return _sin_turns_u(arr), _cos_turns_u(arr)


def ndtri(p: object) -> np.ndarray:
    """Inverse of the standard normal CDF for ``p`` in ``[0, 1]`` (``-inf``/``inf`` at the ends), elementwise.

    Parameters
    ----------
    p : array_like
        Probabilities in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        The quantiles, of ``p``'s shape, float64.
    """
    return _ndtri_u(_f8(p))


def lgamma(x: object) -> np.ndarray:
    """:math:`\\log\\Gamma(x)` for ``x > 0``, elementwise (NaN otherwise).

    Parameters
    ----------
    x : array_like
        Arguments.

    Returns
    -------
    numpy.ndarray
        The values, of ``x``'s shape, float64.
    """
    return _lgamma_u(_f8(x))


def betainc(a: object, b: object, x: object) -> np.ndarray:
    """Regularised incomplete Beta function :math:`I_x(a, b)` (``a, b > 0``, ``x`` clipped to ``[0, 1]``).

    Parameters
    ----------
    a, b : array_like
        Parameters, ``> 0``.
    x : array_like
        Arguments (clipped to ``[0, 1]``); ``a``, ``b`` and ``x`` broadcast together.

    Returns
    -------
    numpy.ndarray
        The values, of the broadcast shape, float64.
    """
    return _betainc_u(_f8(a), _f8(b), _f8(x))


def betaincc(a: object, b: object, x: object) -> np.ndarray:
    """:math:`1 - I_x(a, b)`, computed directly in the upper tail (full relative precision there).

    Parameters
    ----------
    a, b : array_like
        Parameters, ``> 0``.
    x : array_like
        Arguments in ``[0, 1]``; ``a``, ``b`` and ``x`` broadcast together.

    Returns
    -------
    numpy.ndarray
        The values, of the broadcast shape, float64.
    """
    return _betaincc_u(_f8(a), _f8(b), _f8(x))


def betaincinv(a: object, b: object, q: object) -> np.ndarray:
    """Inverse of :func:`betainc` in ``x``: the quantile of the :math:`\\mathrm{Beta}(a, b)` law at level ``q``.

    Parameters
    ----------
    a, b : array_like
        Parameters, ``> 0``.
    q : array_like
        Levels in ``[0, 1]``; ``a``, ``b`` and ``q`` broadcast together.

    Returns
    -------
    numpy.ndarray
        The quantiles in ``[0, 1]``, of the broadcast shape, float64.
    """
    return _betaincinv_u(_f8(a), _f8(b), _f8(q))
