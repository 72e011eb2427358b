r"""Quasi-uniform directions on the sphere :math:`S^{k-1}` and their quality diagnostics.

FibQuant's initial codebook puts :math:`M` directions on every radius shell.
The directions come from deterministic low-discrepancy constructions:

* ``k = 1`` — the two signs :math:`\pm 1` (:func:`sign_directions`);
* ``k = 2`` — :math:`M` equispaced angles, shell ``l`` rotated by the golden
  fraction :math:`\{l\varphi\}` of one cell so that consecutive shells
  interleave (:func:`fibonacci_circle`); the whole-disc alternative is Vogel's
  sunflower (:func:`fibonacci_sunflower`), optionally with its radii matched to
  the spherical-Beta radius law;
* ``k = 3`` — the Fibonacci sphere: equal-area latitude bands times the golden
  angle in azimuth (:func:`fibonacci_sphere`);
* any ``k`` — the Roberts–Kronecker sequence (generalised golden ratio
  :math:`R_k`): :math:`t_i = \{\tfrac12 + i\,\alpha\}\in[0,1)^k` with
  :math:`\alpha_j = \phi_k^{-j}` and :math:`\phi_k` the positive root of
  :math:`x^{k+1} = x + 1`, mapped to the sphere through the inverse normal CDF
  and normalisation (:func:`roberts_kronecker_directions`). The Gaussian is
  rotation invariant, so the image of a uniformly distributed sequence is
  uniformly distributed on :math:`S^{k-1}`.

Diagnostics: :func:`covering_radius` (largest angular distance from a point of
the sphere to its nearest direction; exact for ``k <= 2``, a Monte Carlo lower
estimate otherwise), :func:`spherical_cap_discrepancy` (largest deviation
between the fraction of directions in a spherical cap and the cap's normalised
area, over random caps) and :func:`min_separation` (smallest pairwise angle).
"""

from __future__ import annotations

import math

import numpy as np

from fibquant_theory._validation import check_finite_rows, check_int
from fibquant_theory.numerics.fixed_order import matmul_rows, row_norms
from fibquant_theory.numerics.portable_math import betainc, betaincinv, ndtri, sincos_turns
from fibquant_theory.theory.source import as_generator, sample_unit_vectors

__all__ = [
    "DIRECTION_METHODS",
    "GOLDEN_ANGLE",
    "GOLDEN_FRACTION",
    "GOLDEN_TURN",
    "cap_area_fraction",
    "covering_radius",
    "fibonacci_circle",
    "fibonacci_sphere",
    "fibonacci_sunflower",
    "generalized_golden_ratio",
    "min_separation",
    "resolve_direction_method",
    "roberts_kronecker_directions",
    "shell_directions",
    "sign_directions",
    "spherical_cap_discrepancy",
]

#: The golden angle :math:`\pi(3-\sqrt5)` in radians.
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
#: :math:`1/\varphi = (\sqrt5-1)/2`, the fractional part of the golden ratio.
GOLDEN_FRACTION = (math.sqrt(5.0) - 1.0) / 2.0
#: The golden angle in turns, :math:`(3-\sqrt5)/2 = 1 - 1/\varphi`.
GOLDEN_TURN = (3.0 - math.sqrt(5.0)) / 2.0
#: Direction families accepted by :func:`shell_directions` (``"auto"`` picks per ``k``).
DIRECTION_METHODS = ("auto", "sign", "fibonacci-circle", "fibonacci-sphere", "roberts-kronecker")


def _count(m: object, name: str = "m") -> int:
    return check_int(m, name, minimum=1)


def sign_directions(m: int, shell: int = 0) -> np.ndarray:
    """Directions on :math:`S^0 = \\{-1, +1\\}`: alternating signs, shape ``(m, 1)``.

    Parameters
    ----------
    m : int
        Number of directions (``>= 1``); ``m = 2`` gives both signs.
    shell : int
        Shell number; odd shells start with ``-1`` so that single-direction
        shells alternate in sign.

    Returns
    -------
    numpy.ndarray, shape (m, 1)
    """
    m = _count(m)
    shell = check_int(shell, "shell", minimum=0)
    signs = np.where((np.arange(m) + shell) % 2 == 0, 1.0, -1.0)
    return signs[:, None]


def fibonacci_circle(m: int, shell: int = 0) -> np.ndarray:
    r"""``m`` equispaced unit vectors on the circle, staggered by shell with the golden fraction.

    Direction ``j`` of shell ``l`` has angle
    :math:`2\pi\,(j + \{l/\varphi\})/m`, so shell 0 starts at angle 0 and every
    further shell is rotated by a golden-ratio fraction of one angular cell:
    the shells interleave as evenly as possible for any number of shells.

    Parameters
    ----------
    m : int
        Number of directions, ``>= 1``.
    shell : int
        Shell number ``l >= 0``.

    Returns
    -------
    numpy.ndarray, shape (m, 2)
        Unit vectors ``(cos, sin)``.
    """
    m = _count(m)
    shell = check_int(shell, "shell", minimum=0)
    phase = (shell * GOLDEN_FRACTION) % 1.0
    sin, cos = sincos_turns((np.arange(m) + phase) / m)
    return np.stack([cos, sin], axis=1)


def fibonacci_sunflower(n: int, d: int | None = None) -> np.ndarray:
    r"""Vogel's sunflower: ``n`` points filling the unit disc (golden-angle spiral).

    Point ``i`` has angle :math:`i\cdot` :data:`GOLDEN_ANGLE` and radius
    :math:`\sqrt{(i+\tfrac12)/n}` (equal area per point), or, when ``d`` is
    given, the :math:`(i+\tfrac12)/n` quantile of the radius law of
    :math:`f_{d,2}` (equal probability per point under the spherical-Beta source).

    Parameters
    ----------
    n : int
        Number of points, ``>= 1``.
    d : int, optional
        Ambient dimension (``d >= 3``) whose radius law sets the radii.

    Returns
    -------
    numpy.ndarray, shape (n, 2)
        Points of the open unit disc.
    """
    n = _count(n, "n")
    q = (np.arange(n) + 0.5) / n
    if d is None:
        r = np.sqrt(q)
    else:
        d = check_int(d, "d (dimension)", minimum=3)
        r = np.sqrt(betaincinv(1.0, (d - 2) / 2.0, q))
    sin, cos = sincos_turns(np.arange(n) * GOLDEN_TURN)
    return np.stack([r * cos, r * sin], axis=1)


def fibonacci_sphere(m: int, shell: int = 0) -> np.ndarray:
    r"""The Fibonacci sphere: ``m`` quasi-uniform unit vectors in :math:`\mathbb{R}^3`.

    Point ``i`` has height :math:`z_i = 1 - (2i+1)/m` (equal-area latitude
    bands) and azimuth :math:`i\cdot` :data:`GOLDEN_ANGLE`
    :math:`+\,2\pi\{l/\varphi\}` for shell ``l``.

    Parameters
    ----------
    m : int
        Number of directions, ``>= 1``.
    shell : int
        Shell number ``l >= 0`` (rotates the azimuths).

    Returns
    -------
    numpy.ndarray, shape (m, 3)
    """
    m = _count(m)
    shell = check_int(shell, "shell", minimum=0)
    i = np.arange(m)
    z = 1.0 - (2.0 * i + 1.0) / m
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    sin, cos = sincos_turns(i * GOLDEN_TURN + (shell * GOLDEN_FRACTION) % 1.0)
    return np.stack([rho * cos, rho * sin, z], axis=1)


def generalized_golden_ratio(k: int) -> float:
    r"""The positive root :math:`\phi_k` of :math:`x^{k+1} = x + 1` (``k = 1``: the golden ratio).

    Parameters
    ----------
    k : int
        Dimension of the Kronecker sequence, ``>= 1``.

    Returns
    -------
    float
    """
    k = _count(k, "k")
    # Newton's method on p(x) = x^(k+1) - x - 1 from x = 2 (p is convex on [1, 2], so the iterates
    # decrease monotonically to the root); powers by repeated multiplication, so no libm pow.
    x = 2.0
    for _ in range(200):
        power = 1.0
        for _ in range(k):
            power *= x  # x^k
        step = (power * x - x - 1.0) / ((k + 1) * power - 1.0)
        nxt = x - step
        if not nxt < x:
            break
        x = nxt
    return float(x)


def roberts_kronecker_directions(m: int, k: int, start: int = 0) -> np.ndarray:
    r"""Roberts–Kronecker (:math:`R_k` sequence) directions on :math:`S^{k-1}`.

    Terms ``start + 1, ..., start + m`` of :math:`t_i = \{\tfrac12 + i\alpha\}`,
    :math:`\alpha_j = \phi_k^{-j}` (:func:`generalized_golden_ratio`), are
    mapped by :math:`g = \Phi^{-1}(t)` (inverse standard normal CDF, applied
    coordinate-wise) and normalised, :math:`u = g/\|g\|`. For ``k = 1`` this
    returns the signs of :math:`g`.

    Parameters
    ----------
    m : int
        Number of directions, ``>= 1``.
    k : int
        Dimension, ``>= 1``.
    start : int
        Offset in the sequence (each shell of a codebook uses its own segment).

    Returns
    -------
    numpy.ndarray, shape (m, k)
        Unit vectors.
    """
    m = _count(m)
    k = _count(k, "k")
    start = check_int(start, "start", minimum=0)
    phi = generalized_golden_ratio(k)
    alpha = np.empty(k)
    power = 1.0
    for j in range(k):
        power /= phi
        alpha[j] = power  # phi^-(j+1)
    i = np.arange(start + 1, start + m + 1, dtype=np.float64)[:, None]
    t = np.mod(0.5 + i * alpha, 1.0)
    t = np.clip(t, 1e-15, 1.0 - 1e-15)
    g = ndtri(t)
    # A row of exact zeros needs t = 1/2 in every coordinate, impossible for irrational alpha.
    return g / row_norms(g)[:, None]


def resolve_direction_method(k: int, method: str = "auto") -> str:
    """The direction family used for block size ``k`` (``"auto"``: sign / circle / sphere / Kronecker).

    Raises ``ValueError`` for an unknown method or one that does not exist for ``k``.

    Parameters
    ----------
    k : int
        Block size.
    method : str, default "auto"
        A direction family, or ``"auto"``.

    Returns
    -------
    str
        The family's name.
    """
    k = _count(k, "k")
    if method not in DIRECTION_METHODS:
        raise ValueError(f"directions must be one of {DIRECTION_METHODS}, got {method!r}")
    if method == "auto":
        return {1: "sign", 2: "fibonacci-circle", 3: "fibonacci-sphere"}.get(k, "roberts-kronecker")
    needed = {"sign": 1, "fibonacci-circle": 2, "fibonacci-sphere": 3}
    if method in needed and needed[method] != k:
        raise ValueError(f"directions {method!r} exist only for k = {needed[method]}, got k = {k}")
    if method == "roberts-kronecker" and k == 1:
        return "sign"
    return method


def shell_directions(m: int, k: int, shell: int = 0, method: str = "auto") -> np.ndarray:
    """The ``m`` directions of shell number ``shell`` in dimension ``k``.

    Parameters
    ----------
    m : int
        Directions per shell, ``>= 1``.
    k : int
        Block size, ``>= 1``.
    shell : int
        Shell number ``>= 0``; shells are staggered (circle, sphere) or take
        consecutive segments of the sequence (Roberts–Kronecker).
    method : str
        One of :data:`DIRECTION_METHODS`.

    Returns
    -------
    numpy.ndarray, shape (m, k)
        Unit vectors.
    """
    method = resolve_direction_method(k, method)
    m = _count(m)
    shell = check_int(shell, "shell", minimum=0)
    if method == "sign":
        return sign_directions(m, shell)
    if method == "fibonacci-circle":
        return fibonacci_circle(m, shell)
    if method == "fibonacci-sphere":
        return fibonacci_sphere(m, shell)
    return roberts_kronecker_directions(m, k, start=shell * m)


# ---------------------------------------------------------------- diagnostics
def _directions(u: object) -> np.ndarray:
    arr = np.asarray(u, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"directions must have shape (m, k) with m, k >= 1, got {np.shape(u)}")
    check_finite_rows(arr, "directions")
    norms = row_norms(arr)
    if np.any(np.abs(norms - 1.0) > 1e-9):
        raise ValueError("directions must be unit vectors (row norms differ from 1 by more than 1e-9)")
    return arr


def covering_radius(directions: object, n_probe: int = 200_000, seed: int = 0) -> float:
    r"""Angular covering radius :math:`\max_{x\in S^{k-1}}\min_j \angle(x, u_j)` in radians.

    Exact for ``k = 1`` (0 if both signs are present, else :math:`\pi`) and
    ``k = 2`` (half the largest angular gap); for ``k >= 3`` a Monte Carlo
    estimate over ``n_probe`` uniform probe directions, which is a lower
    bound of the true value that tightens as ``n_probe`` grows.

    Parameters
    ----------
    directions : array_like, shape (m, k)
        Unit vectors.
    n_probe : int
        Probe directions for ``k >= 3``.
    seed : int
        Seed of the probes.

    Returns
    -------
    float
    """
    u = _directions(directions)
    _, k = u.shape
    if k == 1:
        return 0.0 if (u[:, 0] > 0).any() and (u[:, 0] < 0).any() else math.pi
    if k == 2:
        theta = np.sort(np.mod(np.arctan2(u[:, 1], u[:, 0]), 2.0 * math.pi))
        gaps = np.diff(np.concatenate([theta, theta[:1] + 2.0 * math.pi]))
        return float(0.5 * gaps.max())
    n_probe = check_int(n_probe, "n_probe", minimum=1)
    rng = as_generator(seed)
    lowest = 1.0  # smallest, over the probes, of the cosine to the nearest direction
    for start in range(0, n_probe, 20_000):
        x = sample_unit_vectors(min(20_000, n_probe - start), k, rng)
        lowest = min(lowest, float(matmul_rows(x, u.T).max(axis=1).min()))
    return float(np.arccos(np.clip(lowest, -1.0, 1.0)))


def cap_area_fraction(k: int, t: object) -> np.ndarray:
    r"""Normalised area of the cap :math:`\{x\in S^{k-1}: \langle x, c\rangle \ge t\}`.

    For :math:`0\le t\le 1` it is :math:`\tfrac12 I_{1-t^2}(\tfrac{k-1}{2}, \tfrac12)`
    and :math:`1 -` that at :math:`-t` for negative ``t``. For ``k = 1`` the
    sphere is the two points :math:`\pm1` with mass 1/2 each.

    Parameters
    ----------
    k : int
        Dimension of the ambient space, ``>= 1``.
    t : array_like
        Cap heights in ``[-1, 1]``.

    Returns
    -------
    numpy.ndarray
        Fractions in ``[0, 1]``, of the shape of ``t``.
    """
    k = _count(k, "k")
    t = np.asarray(t, dtype=np.float64)
    if np.isnan(t).any() or (np.abs(t) > 1).any():
        raise ValueError("cap heights must lie in [-1, 1]")
    if k == 1:
        return 0.5 * ((1.0 >= t).astype(np.float64) + (-1.0 >= t).astype(np.float64))
    half = 0.5 * betainc((k - 1) / 2.0, 0.5, 1.0 - t * t)
    return np.where(t >= 0, half, 1.0 - half)


def spherical_cap_discrepancy(directions: object, n_caps: int = 4_000, seed: int = 0) -> float:
    r"""Largest :math:`|\#\{j: \langle u_j, c\rangle\ge t\}/m - \sigma(\mathrm{cap})|` over random caps.

    Caps have uniform random centres :math:`c` and heights :math:`t` uniform
    on :math:`[-1, 1]`; the result is a Monte Carlo lower estimate of the
    spherical-cap discrepancy (deterministic for a given ``seed``). Uniform
    i.i.d. directions give about :math:`m^{-1/2}`; quasi-uniform constructions
    give less.

    Parameters
    ----------
    directions : array_like, shape (m, k)
        Unit vectors.
    n_caps : int
        Number of random caps.
    seed : int
        Seed of the caps.

    Returns
    -------
    float
    """
    u = _directions(directions)
    _, k = u.shape
    n_caps = check_int(n_caps, "n_caps", minimum=1)
    rng = as_generator(seed)
    worst = 0.0
    for start in range(0, n_caps, 1_000):
        c = min(1_000, n_caps - start)
        centres = sample_unit_vectors(c, k, rng) if k >= 2 else rng.choice([-1.0, 1.0], size=(c, 1))
        t = rng.uniform(-1.0, 1.0, c)
        frac = (matmul_rows(u, centres.T) >= t[None, :]).mean(axis=0)
        worst = max(worst, float(np.abs(frac - cap_area_fraction(k, t)).max()))
    return worst


def min_separation(directions: object) -> float:
    """Smallest angle (radians) between two of the directions; ``pi`` when ``m = 1``.

    Parameters
    ----------
    directions : array_like, shape (m, k)
        Unit vectors (``m`` up to a few thousand: the cost is ``O(m^2 k)``).

    Returns
    -------
    float
    """
    u = _directions(directions)
    if u.shape[0] == 1:
        return math.pi
    g = np.clip(matmul_rows(u, u.T), -1.0, 1.0)
    np.fill_diagonal(g, -1.0)
    return float(np.arccos(g.max()))
