r"""Strict dominance: the vector code strictly improves on its scalar product specialisation.

Argument (see ``dominance.md``). The scalar product code at ``b`` bits per coordinate
is the ``k``-dim codebook :math:`C_\otimes = L^k` (``L`` the Lloyd–Max levels of
:math:`f_{d,1}`), :math:`N = 2^{kb}` points, whose nearest-neighbour cells are boxes
:math:`\prod_i[t_{j_i}, t_{j_i+1}]`. Its distortion under :math:`f_{d,k}` equals
``k`` times the scalar Lloyd–Max MSE (only marginals matter). Replace each codeword
by the :math:`f_{d,k}`-centroid of its box; by the parallel-axis identity

.. math::

    D(\text{boxes}, \text{centroids}) = D_\otimes - \sum_{\text{boxes }B} P(B)\,\|q_B - \mu_B\|^2 =: D_\otimes - \Delta,

and re-assigning to the nearest new codeword can only lower it further. So
:math:`\Delta>0` (the product codebook is *not* a fixed point of the ``k``-dim Lloyd
map for :math:`f_{d,k}`) proves that some ``N``-point ``k``-dim code (at the same rate)
strictly beats the scalar product code. Because :math:`f_{d,k}` is not a product
density, the centroids move whenever ``b >= 2``: along a strip :math:`y_1\in I_j` the
:math:`y_1`-centroid of the box decreases strictly as the :math:`y_2`-cell moves outwards
(monotone likelihood ratio), so the box with :math:`y_2` in the innermost cell moves
*outwards* and the one with :math:`y_2` in the outermost cell moves *inwards*; in a mixed box
(:math:`y_1` outer, :math:`y_2` inner) the outer coordinate moves outwards and the inner one
inwards. At ``b = 1`` the boxes are orthants and, by the sign symmetry of
:math:`f_{d,k}`, their centroids are exactly :math:`(\pm E|u_1|,\dots)` = the codewords:
:math:`\Delta = 0`, the product code is a Lloyd fixed point and the argument gives
nothing (which is what the prototype saw at ``b = 1, k = 2``).

The box moments are computed by quadrature that is exact in the innermost
coordinate (incomplete Beta functions) and adaptive (``scipy.integrate.quad_vec``)
in the outer ones; the quadrature is validated by reproducing total mass 1 and the
scalar Lloyd–Max distortion. The certified bounds :math:`\Delta\ge k\,\delta>0` on the grid
``d`` in 16..1024 (powers of two), ``2 <= k <= 32`` (``k < d``), ``2 <= b <= 8`` (interval
arithmetic) are in :mod:`~fibquant_theory.proofs.dominance_rigorous`; its checks run here.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special

from fibquant_theory.search.kernel import nearest_exhaustive
from fibquant_theory.theory.highrate import db as highrate_db
from fibquant_theory.theory.highrate import log_normalizer
from fibquant_theory.theory.scalar import lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta, as_generator

from ._common import Check, make_check
from ._designs import paired_mse, small_design
from .dominance_rigorous import CHECKS as _RIGOROUS_CHECKS

__all__ = [
    "box_moments",
    "ProductLloydStep",
    "product_lloyd_step",
    "check_product_distortion",
    "check_not_fixed_point",
    "check_fixed_point_at_one_bit",
    "check_lloyd_step_monte_carlo",
    "check_designed_beats_product",
    "check_no_gain_one_bit_k2",
    "one_bit_k2_lloyd_starts",
    "check_one_bit_k2_lloyd_starts",
    "CHECKS",
]

_EPSREL = 1e-12


def _box_moments_1d(e: float, a: float, b: float) -> np.ndarray:
    r"""``[mass, first, second]`` of :math:`(1-t^2)^e` on ``[a, b] ∩ [0, 1]`` (closed forms)."""
    a, b = min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)
    if b <= a:
        return np.zeros(3)
    a2, b2 = a * a, b * b
    mass = 0.5 * special.beta(0.5, e + 1.0) * (special.betaincc(0.5, e + 1.0, a2) - special.betaincc(0.5, e + 1.0, b2))
    first = ((1.0 - a2) ** (e + 1.0) - (1.0 - b2) ** (e + 1.0)) / (2.0 * (e + 1.0))
    second = (
        0.5 * special.beta(1.5, e + 1.0) * (special.betaincc(1.5, e + 1.0, a2) - special.betaincc(1.5, e + 1.0, b2))
    )
    return np.array([mass, first, second])


def _breakpoints(lo: float, hi: float, rest_bounds: Sequence[tuple[float, float]]) -> list[float]:
    """Values of x in (lo, hi) where a corner of the remaining box touches the sphere x^2 + |t'|^2 = 1."""
    pts = set()
    for r in range(1, len(rest_bounds) + 1):
        for idx in itertools.combinations(range(len(rest_bounds)), r):
            for choice in itertools.product((0, 1), repeat=r):
                s = sum(rest_bounds[i][c] ** 2 for i, c in zip(idx, choice))
                if s < 1.0:
                    x = math.sqrt(1.0 - s)
                    if lo < x < hi:
                        pts.add(x)
    return sorted(pts)


def _box_moments_rec(e: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    r"""``[mass, first_1..first_k, second]`` of :math:`(1-\|t\|^2)^e` on a box in the positive orthant ∩ unit ball.

    Recursion on the first coordinate ``x``: given ``x`` the rest lives in the ball of
    radius :math:`R=\sqrt{1-x^2}` with weight :math:`(R^2-\|t'\|^2)^e`, i.e. the same
    problem scaled by ``R`` (a factor :math:`R^{2e+k-1}`).
    """
    k = lower.size
    if k == 1:
        return _box_moments_1d(e, float(lower[0]), float(upper[0]))
    lo, hi = float(lower[0]), min(float(upper[0]), 1.0)
    if hi <= lo or float(np.sum(lower**2)) >= 1.0:
        return np.zeros(k + 2)
    rest_lo, rest_hi = lower[1:], upper[1:]

    def integrand(x: float) -> np.ndarray:
        r2 = 1.0 - x * x
        out = np.zeros(k + 2)
        if r2 <= 0.0:
            return out
        r = math.sqrt(r2)
        sub = _box_moments_rec(e, rest_lo / r, rest_hi / r)
        w = r ** (2.0 * e + k - 1.0)
        out[0] = w * sub[0]
        out[1] = x * w * sub[0]
        out[2 : k + 1] = w * r * sub[1:k]
        out[k + 1] = x * x * w * sub[0] + w * r2 * sub[k]
        return out

    pts = _breakpoints(lo, hi, list(zip(rest_lo.tolist(), rest_hi.tolist())))
    val, _err = integrate.quad_vec(integrand, lo, hi, epsabs=1e-16, epsrel=_EPSREL, points=pts or None, limit=400)
    return val


def box_moments(d: int, lower: Sequence[float], upper: Sequence[float]) -> tuple[float, np.ndarray, float]:
    r"""Mass, first moments and second moment of :math:`f_{d,k}` on a box in the positive orthant.

    Parameters
    ----------
    d : int
        Dimension; ``k = len(lower)`` with ``1 <= k <= 3`` (quadrature cost grows fast with ``k``).
    lower, upper : sequence of float
        Box corners, ``0 <= lower <= upper`` (the box is intersected with the unit ball).

    Returns
    -------
    tuple
        ``(mass, first, second)``: :math:`P(B)`, :math:`\int_B y f` of shape ``(k,)``,
        :math:`\int_B\|y\|^2 f`.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    k = lower.size
    if lower.shape != upper.shape or lower.ndim != 1 or not 1 <= k <= 3:
        raise ValueError(
            f"lower and upper must have the same shape (k,) with 1 <= k <= 3, got {lower.shape}, {upper.shape}"
        )
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))) or np.any(lower < 0) or np.any(upper < lower):
        raise ValueError("need finite 0 <= lower <= upper")
    if k >= d:
        raise ValueError(f"need k < d, got k={k}, d={d}")
    e = (d - k - 2) / 2.0
    c = math.exp(log_normalizer(d, k))
    m = _box_moments_rec(e, lower, upper) * c
    return float(m[0]), m[1 : k + 1].copy(), float(m[k + 1])


@dataclass(frozen=True)
class ProductLloydStep:
    """One exact Lloyd centroid step applied to the scalar product codebook.

    Attributes
    ----------
    d, k, bits : int
        Dimension, block size, bits per coordinate.
    product_mse : float
        Full unit-vector MSE of the product code, ``lloyd_max_scalar(d, bits).mse``.
    quadrature_mse : float
        The same distortion recomputed from the box moments (quadrature check).
    total_mass : float
        Sum of the box masses (should be 1).
    decrease : float
        :math:`(d/k)\\,\\Delta`: the exact full-vector MSE decrease of the centroid step.
    max_shift : float
        Largest :math:`\\|q_B - \\mu_B\\|` over the boxes.
    codewords, centroids : numpy.ndarray
        Positive-orthant codewords and their box centroids, shape ``(n_boxes, k)``.
    """

    d: int
    k: int
    bits: int
    product_mse: float
    quadrature_mse: float
    total_mass: float
    decrease: float
    max_shift: float
    codewords: np.ndarray
    centroids: np.ndarray

    @property
    def relative_decrease(self) -> float:
        """``decrease / product_mse``."""
        return self.decrease / self.product_mse

    def full_codebook(self) -> np.ndarray:
        """All ``2**(k*bits)`` centroid codewords (sign-symmetric extension).

        Returns
        -------
        numpy.ndarray
            Shape ``(N, k)``.
        """
        out = []
        for signs in itertools.product((1.0, -1.0), repeat=self.k):
            out.append(self.centroids * np.asarray(signs))
        return np.concatenate(out)


def product_lloyd_step(d: int, k: int, bits: int) -> ProductLloydStep:
    """Exact (quadrature) Lloyd centroid step from the scalar product codebook ``L^k``.

    Uses the sign symmetry (positive orthant only) and the permutation symmetry
    (one box per sorted multi-index) of :math:`f_{d,k}`.

    Parameters
    ----------
    d : int
        Dimension, ``d > k``.
    k : int
        Block size, ``1 <= k <= 3``.
    bits : int
        Scalar bits per coordinate (``N = 2**(k*bits)``).

    Returns
    -------
    ProductLloydStep
    """
    q = lloyd_max_scalar(d, bits)
    m = q.n_levels // 2
    pos = np.asarray(q.levels[m:])
    edges = np.concatenate(([0.0], np.asarray(q.thresholds[m:]), [1.0]))
    n_orth = 2**k
    total_mass = 0.0
    dist = 0.0
    decrease = 0.0
    max_shift = 0.0
    boxes: dict[tuple[int, ...], np.ndarray] = {}
    for idx in itertools.combinations_with_replacement(range(m), k):
        mult = len(set(itertools.permutations(idx)))
        lo = edges[list(idx)]
        hi = edges[[i + 1 for i in idx]]
        mass, first, second = box_moments(d, lo, hi)
        code = pos[list(idx)]
        cent = first / mass
        shift2 = float(np.sum((code - cent) ** 2))
        total_mass += n_orth * mult * mass
        dist += n_orth * mult * (second - 2.0 * float(code @ first) + float(code @ code) * mass)
        decrease += n_orth * mult * mass * shift2
        max_shift = max(max_shift, math.sqrt(shift2))
        for perm in itertools.permutations(range(k)):
            # every distinct permutation of the multi-index is its own box, with permuted centroid
            boxes.setdefault(tuple(idx[p] for p in perm), cent[list(perm)])
    scale = d / k
    keys = sorted(boxes)
    codewords = pos[np.asarray(keys)]
    cents = [boxes[key] for key in keys]
    return ProductLloydStep(
        d=d, k=k, bits=bits, product_mse=q.mse, quadrature_mse=scale * dist, total_mass=total_mass,
        decrease=scale * decrease, max_shift=max_shift, codewords=codewords, centroids=np.asarray(cents),
    )


def check_product_distortion(d: int = 64, k: int = 2, bits: int = 2, *, level_scale: float = 1.0) -> list[Check]:
    """Quadrature sanity: box masses sum to 1 and the product distortion equals ``lloyd_max_scalar(d, b).mse``.

    ``level_scale`` rescales the claimed scalar levels' MSE reference (to see the check fail).

    Parameters
    ----------
    d, k, bits : int
        Dimension, block size (``1 <= k <= 3``), bits per coordinate.
    level_scale : float
        Factor on the reference MSE (``!= 1`` falsifies the claim).

    Returns
    -------
    list of Check
        Total box mass 1; quadrature MSE / Lloyd–Max MSE = 1.
    """
    step = product_lloyd_step(d, k, bits)
    ref = step.product_mse * level_scale
    return [
        make_check(
            f"dominance.box_mass[d={d},k={k},b={bits}]", step.total_mass, 1.0, 1e-9, "==",
            "sum of f_dk box masses by quadrature",
        ),
        make_check(
            f"dominance.product_mse_quadrature[d={d},k={k},b={bits}]", step.quadrature_mse / ref, 1.0, 1e-8, "==",
            "product-code MSE under f_dk by box quadrature / scalar Lloyd-Max MSE (only marginals matter)",
        ),
    ]


def check_not_fixed_point(d: int = 64, k: int = 2, bits: int = 2) -> Check:
    r"""The product codebook is not a Lloyd fixed point: :math:`\Delta/D_\otimes > 0` beyond the quadrature error.

    ``tolerance`` is :math:`10^{3}` times the quadrature's mass defect plus :math:`10^{-12}`
    (the relative error of :math:`\Delta` is of the order of the mass defect).

    Parameters
    ----------
    d, k, bits : int
        Dimension, block size (``1 <= k <= 3``), bits per coordinate.

    Returns
    -------
    Check
    """
    step = product_lloyd_step(d, k, bits)
    tol = 1e3 * abs(step.total_mass - 1.0) + 1e-12
    return make_check(
        f"dominance.not_fixed_point[d={d},k={k},b={bits}]", step.relative_decrease, 0.0, tol, ">",
        f"exact MSE decrease of one Lloyd centroid step / product MSE (max codeword shift {step.max_shift:.3e})",
        decrease=step.decrease, product_mse=step.product_mse,
    )


def check_fixed_point_at_one_bit(d: int = 64, k: int = 2, *, bits: int = 1) -> Check:
    r"""At ``b = 1`` the product codebook *is* a fixed point (:math:`\Delta = 0` to quadrature accuracy).

    The honest counterpart of :func:`check_not_fixed_point`: the one-step argument
    proves nothing at one bit, consistent with the prototype finding no gain at ``b = 1, k = 2``.
    (``bits`` other than 1 makes the claim false: the check then fails.)

    Parameters
    ----------
    d, k : int
        Dimension and block size (``1 <= k <= 3``).
    bits : int
        Bits per coordinate (the claim holds at 1 only).

    Returns
    -------
    Check
    """
    step = product_lloyd_step(d, k, bits)
    return make_check(
        f"dominance.fixed_point_one_bit[d={d},k={k}]", step.relative_decrease, 0.0, 1e-12, "==",
        "relative MSE decrease of a Lloyd centroid step at b = 1 (orthant centroids = codewords)",
    )


def _nearest(points: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``points (N, k)`` to every row of ``y (n, k)``: the package's exact kernel."""
    return nearest_exhaustive(y, points)[0]


def check_lloyd_step_monte_carlo(
    d: int = 16, k: int = 2, bits: int = 2, *, n: int = 400_000, seed: int = 5, z_min: float = 5.0,
) -> Check:
    r"""Monte Carlo: the full Lloyd step (centroids, then nearest-neighbour cells) beats the product code.

    Paired on the same ``n`` blocks from the definition sampler; ``value`` is the z-score of
    the mean squared-error decrease, which must exceed ``z_min``. Also ``extra`` holds the
    measured and the exact (box-partition) decrease.

    Parameters
    ----------
    d, k, bits : int
        Dimension, block size (``1 <= k <= 3``), bits per coordinate.
    n, seed : int
        Number of blocks and their seed.
    z_min : float
        Smallest accepted z-score.

    Returns
    -------
    Check
    """
    step = product_lloyd_step(d, k, bits)
    q = lloyd_max_scalar(d, bits)
    y = SphericalBeta(d, k).rvs(n, seed=as_generator(seed), method="gaussian")
    prod = q.decode(q.encode(y))
    new = step.full_codebook()
    err_p = np.sum((y - prod) ** 2, axis=1)
    err_v = np.sum((y - new[_nearest(new, y)]) ** 2, axis=1)
    diff = (err_p - err_v) * (d / k)
    z = float(diff.mean() / (diff.std(ddof=1) / math.sqrt(n)))
    return make_check(
        f"dominance.lloyd_step_mc[d={d},k={k},b={bits}]", z, z_min, 0.0, ">=",
        f"z-score of the paired MSE decrease (measured {diff.mean():.3e}, "
        f"exact box-partition bound {step.decrease:.3e})",
        measured=float(diff.mean()), exact_lower=step.decrease,
    )


def check_designed_beats_product(
    d: int = 64, k: int = 2, bits: int = 2, *, n: int = 200_000, seed: int = 1, z_min: float = 5.0,
    scalar_scale: float = 1.0,
) -> Check:
    """A designed ``N = 2**(k*bits)`` codebook beats the scalar Lloyd–Max code at the same integer rate.

    ``value`` is the matched-rate gain in dB on ``n`` fresh blocks (paired); it must exceed
    ``z_min`` standard errors. ``scalar_scale`` multiplies the scalar code's MSE (``< 1``
    makes the scalar code look better, to see the check fail).

    Parameters
    ----------
    d, k, bits : int
        Dimension, block size, bits per coordinate.
    n, seed : int
        Evaluation blocks and their seed.
    z_min : float
        Required gain in standard errors.
    scalar_scale : float
        Factor on the scalar code's MSE.

    Returns
    -------
    Check
    """
    cb = small_design(d, k, 2 ** (k * bits))
    pm = paired_mse(cb, bits, n=n, seed=seed)
    gain = 10.0 * math.log10(scalar_scale * pm.scalar_mse / pm.vector_mse)
    return make_check(
        f"dominance.designed_beats_product[d={d},k={k},b={bits}]", gain, 0.0, z_min * pm.gain_db_se, ">",
        f"gain dB of a designed N={cb.n_codewords} codebook (MSE {pm.vector_mse:.5f}) over Lloyd-Max "
        f"(exact MSE {lloyd_max_scalar(d, bits).mse:.5f}); tolerance = {z_min:g} SE",
        vector_mse=pm.vector_mse, scalar_mse=pm.scalar_mse,
    )


def check_no_gain_one_bit_k2(
    d: int = 64, *, n: int = 200_000, seed: int = 1, z_max: float = 5.0, scalar_scale: float = 1.0
) -> Check:
    """Honest negative result: at ``k = 2, b = 1`` (N = 4) the designed code does *not* beat the product code.

    The product codebook is a Lloyd fixed point there (:func:`check_fixed_point_at_one_bit`)
    and, by the rotational symmetry of :math:`f_{d,2}`, any square of 4 points is
    equivalent to it. Passes when the gain is at most ``z_max`` standard errors above 0
    (``scalar_scale > 1`` inflates the scalar MSE, to see the check fail).

    Parameters
    ----------
    d : int
        Dimension.
    n, seed : int
        Evaluation blocks and their seed.
    z_max : float
        Largest accepted gain in standard errors.
    scalar_scale : float
        Factor on the scalar code's MSE.

    Returns
    -------
    Check
    """
    cb = small_design(d, 2, 4)
    pm = paired_mse(cb, 1, n=n, seed=seed)
    gain = pm.gain_db + highrate_db(scalar_scale)
    return make_check(
        f"dominance.no_gain_one_bit[d={d},k=2,b=1]", gain, 0.0, z_max * pm.gain_db_se, "<=",
        f"gain dB of the designed N=4 codebook over the 1-bit product code (MSE {pm.vector_mse:.5f} vs "
        f"{pm.scalar_mse:.5f} on the same blocks)",
    )


def _one_bit_starts(level: float, seed: int) -> dict[str, np.ndarray]:
    """Named N = 4 starting codebooks in 2-D, ``level`` = the 1-bit Lloyd–Max level E|y_1|."""
    rng, r = np.random.default_rng([seed, 4, 2]), math.sqrt(2.0) * level

    def ring(radius: float, degrees: Sequence[float]) -> np.ndarray:
        return radius * np.stack([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))], axis=1)

    starts = {
        "product square": ring(r, (45, 135, 225, 315)),
        "square rotated 22.5 deg, radius x0.5": ring(0.5 * r, (22.5, 112.5, 202.5, 292.5)),
        "diamond (45 deg), radius x1.5": ring(1.5 * r, (0, 90, 180, 270)),
        "centre + triangle": np.concatenate([np.zeros((1, 2)), ring(1.2 * r, (90, 210, 330))]),
        "collinear": np.array([[-1.5, 0.0], [-0.5, 0.0], [0.5, 0.0], [1.5, 0.0]]) * level,
        "kite (3 near + 1 far)": np.concatenate([ring(0.4 * r, (80, 100, 270)), ring(2.0 * r, (0,))]),
    }
    starts.update({f"random Gaussian #{i}": rng.normal(scale=level, size=(4, 2)) for i in range(4)})
    return starts


def _lloyd(points: np.ndarray, samples: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Plain Lloyd on samples (exact nearest codeword, centroids by ``bincount``); stops on relative decrease <= tol."""
    pts = np.array(points, dtype=np.float64)
    prev = math.inf
    for it in range(1, max_iter + 1):
        idx, d2 = nearest_exhaustive(samples, pts)
        mse = float(d2.mean())
        if math.isfinite(prev) and prev - mse <= tol * prev:
            return pts, it
        prev = mse
        counts = np.bincount(idx, minlength=len(pts))
        for c, nz in ((c, counts > 0) for c in range(pts.shape[1])):
            pts[nz, c] = np.bincount(idx, weights=samples[:, c], minlength=len(pts))[nz] / counts[nz]
    return pts, max_iter


def one_bit_k2_lloyd_starts(
    d: int, *, n_train: int = 50_000, n_test: int = 100_000, seed: int = 3, max_iter: int = 300
) -> list[dict[str, float | str]]:
    r"""Run Lloyd (N = 4, k = 2) on :math:`f_{d,2}` from structured and random starts; compare with the 1-bit product code.

    Parameters
    ----------
    d : int
        Dimension, ``d >= 3``.
    n_train : int
        Training blocks (definition sampler) for Lloyd's algorithm (exact nearest codeword, centroid update).
    n_test : int
        Fresh blocks on which every result is paired with the product code ``{±E|y_1|}^2``.
    seed : int
        Seed of the samples and of the random starts.
    max_iter : int
        Largest number of Lloyd iterations (tolerance ``1e-8`` on the relative decrease).

    Returns
    -------
    list of dict
        Per start: ``start``, ``iterations``, ``mse``, ``product_mse`` (full-vector MSE on the same test
        blocks), ``gain_db`` (``> 0``: better than the product code), ``gain_se``, and the shape reached:
        ``radius_ratio`` (min / max codeword norm), ``angle_error_deg`` (max angular gap error vs 90 deg).
    """
    q, src = lloyd_max_scalar(d, 1), SphericalBeta(d, 2)
    train = src.rvs(n_train, seed=np.random.default_rng([seed, 1, d]), method="gaussian")
    test = src.rvs(n_test, seed=np.random.default_rng([seed, 2, d]), method="gaussian")
    err_p = np.sum((test - q.decode(q.encode(test))) ** 2, axis=1) * (d / 2)
    rows = []
    for name, start in _one_bit_starts(float(q.levels[-1]), seed).items():
        points, n_iter = _lloyd(start, train, max_iter, 1e-8)
        norms = np.sqrt(np.sum(points**2, axis=1))
        angles = np.sort(np.degrees(np.arctan2(points[:, 1], points[:, 0])))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 360.0]))
        err_v = np.sum((test - points[_nearest(points, test)]) ** 2, axis=1) * (d / 2)
        diff = err_p - err_v
        rows.append({
            "start": name, "iterations": n_iter, "mse": float(err_v.mean()), "product_mse": float(err_p.mean()),
            "gain_db": 10.0 * math.log10(err_p.mean() / err_v.mean()),
            "gain_se": 10.0 / math.log(10.0) * float(diff.std(ddof=1)) / math.sqrt(n_test) / float(err_v.mean()),
            "radius_ratio": float(norms.min() / norms.max()), "angle_error_deg": float(np.max(np.abs(gaps - 90.0))),
        })
    return rows


def check_one_bit_k2_lloyd_starts(d: int = 64, *, z_max: float = 5.0, scalar_scale: float = 1.0) -> Check:
    """Evidence for "no gain at k = 2, b = 1": no Lloyd start reaches a lower MSE than the 1-bit product code.

    ``value`` is the largest paired gain (dB) over the starts of :func:`one_bit_k2_lloyd_starts`
    (``5e4`` / ``1e5`` blocks, at most 150 iterations); passes when it is at most ``z_max`` of its
    standard errors above 0. Empirical only: these starts, not every 4-point code.

    Parameters
    ----------
    d : int
        Dimension.
    z_max : float
        Largest accepted gain in standard errors.
    scalar_scale : float
        Factor on the product code's MSE (``> 1`` makes the check fail).

    Returns
    -------
    Check
    """
    rows = one_bit_k2_lloyd_starts(d, max_iter=150)
    best = max(rows, key=lambda r: r["gain_db"])
    gain = float(best["gain_db"]) + highrate_db(scalar_scale)
    return make_check(
        f"dominance.one_bit_lloyd_starts[d={d},k=2,N=4]", gain, 0.0, z_max * float(best["gain_se"]), "<=",
        f"best of {len(rows)} Lloyd starts ({best['start']!r}): MSE {best['mse']:.5f} vs product "
        f"{best['product_mse']:.5f}; worst start MSE {max(r['mse'] for r in rows):.5f}",
        rows=rows,
    )


#: Zero-argument callables, each returning a Check or a list of Checks (the default run).
CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    functools.partial(check_product_distortion, 64, 2, 2),
    functools.partial(check_product_distortion, 16, 3, 2),
    *(functools.partial(check_not_fixed_point, d, k, b) for d, k, b in (
        (16, 2, 2), (64, 2, 2), (256, 2, 2), (64, 2, 3), (64, 3, 2))),
    functools.partial(check_fixed_point_at_one_bit, 64, 2),
    check_lloyd_step_monte_carlo,
    *(functools.partial(check_designed_beats_product, d, k, b) for d, k, b in ((64, 2, 2), (64, 4, 2), (64, 8, 1))),
    check_no_gain_one_bit_k2,
    *(functools.partial(check_one_bit_k2_lloyd_starts, d) for d in (16, 64, 256)),
    *_RIGOROUS_CHECKS,
)
