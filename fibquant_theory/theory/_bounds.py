r"""Low-rate lower bounds on the MSE of quantizers of a uniform unit vector.

* :func:`shannon_lower_bound`: the Shannon lower bound of the ``k``-block source
  :math:`f_{d,k}` (codes that treat each block separably), from :func:`block_entropy`;
* :func:`sphere_cap_bound`: the spherical-cap bound for any quantizer of the whole unit
  vector with :math:`2^{db}` cells.

Their public home is :mod:`fibquant_theory.theory.highrate` (which re-exports them); they are the ``shannon_lb``
and ``cap_lb`` columns of :func:`fibquant_theory.experiments.rd.rate_distortion`. Unlike the
Gaussian reference :math:`2^{-2b}`, they are lower bounds for this source.
"""

from __future__ import annotations

import math

from scipy import special

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.theory.source import log_normalizer as _source_log_normalizer

__all__ = ["block_entropy", "shannon_lower_bound", "sphere_cap_bound"]


def _check_density(d: int, k: int) -> tuple[int, int]:
    d, k = check_dim_block(d, k)
    if k == d:
        raise ValueError(f"k = d = {d}: the block lies on the sphere and has no density on the ball")
    return d, k


def block_entropy(d: int, k: int) -> float:
    r"""Differential entropy of :math:`f_{d,k}` in bits.

    :math:`h = -\log c_{d,k} - a\,E\log(1-\|y\|^2)` with
    :math:`1-\|y\|^2\sim\mathrm{Beta}((d-k)/2, k/2)`, so
    :math:`E\log(1-\|y\|^2) = \psi((d-k)/2)-\psi(d/2)`.

    Parameters
    ----------
    d : int
        Dimension of the unit vector.
    k : int
        Block size, ``1 <= k < d``.

    Returns
    -------
    float
        :math:`h(f_{d,k})` in bits.
    """
    d, k = _check_density(d, k)
    a = (d - k - 2) / 2.0
    nats = -_source_log_normalizer(d, k) - a * (special.digamma((d - k) / 2.0) - special.digamma(d / 2.0))
    return float(nats / math.log(2.0))


def shannon_lower_bound(d: int, k: int, rate_bits: float) -> float:
    r"""Shannon lower bound on the full unit-vector MSE of any ``k``-block code at ``b`` bits/coord.

    Derivation: a code of one block :math:`y\sim f_{d,k}` with :math:`N = 2^{kb}` points (or
    entropy :math:`\le kb` bits) has :math:`kb \ge H(\hat y) \ge I(y;\hat y) \ge R(D_{\text{block}})`,
    and :math:`R(D) \ge h(f_{d,k}) - \frac k2\log_2(2\pi e D/k)` (the error of second moment
    :math:`D` has at most the entropy of a Gaussian with that moment). Solving for the block MSE,
    :math:`D_{\text{block}} \ge \frac{k}{2\pi e}2^{\frac2k(h(f_{d,k}) - kb)}`, and summing over
    the ``d/k`` blocks:

    .. math::

        D_{\text{vec}} \ge \frac{d}{2\pi e}\,2^{2h(f_{d,k})/k}\,2^{-2b},

    i.e. per coordinate :math:`\frac1{2\pi e}2^{2h(f_{d,k})/k - 2b}`
    (:func:`block_entropy` gives :math:`h`). Valid for every quantizer that codes each
    ``k``-block separably with ``k b`` bits (fixed or variable rate): FibQuant with block ``k``,
    and a scalar code such as TurboQuant-mse for every ``k`` (it codes each block too). Since
    :math:`h(f_{d,k}) \le k\,h(f_{d,1})`, the bound weakens as ``k`` grows; as
    :math:`d\to\infty` it tends to the Gaussian :math:`2^{-2b}` from below.

    Parameters
    ----------
    d : int
        Dimension of the unit vector.
    k : int
        Block size, ``1 <= k < d``.
    rate_bits : float
        Rate ``b`` in bits per coordinate.

    Returns
    -------
    float
        The bound on :math:`E\|u - \hat u\|^2` summed over the ``d`` coordinates.
    """
    d, k = _check_density(d, k)
    b = float(rate_bits)
    if not (b >= 0 and math.isfinite(b)):
        raise ValueError(f"rate_bits must be >= 0 and finite, got {rate_bits}")
    return d / (2.0 * math.pi * math.e) * 2.0 ** (2.0 * block_entropy(d, k) / k - 2.0 * b)


def sphere_cap_bound(d: int, rate_bits: float) -> float:
    r"""Cap lower bound on :math:`E\|u-\hat u\|^2` of any quantizer of the whole unit vector.

    Any quantizer of :math:`u` uniform on :math:`S^{d-1}` with :math:`N = 2^{db}` cells
    :math:`A_1..A_N` (any partition, any reconstruction points in :math:`\mathbb R^d`; a
    product of ``d/k`` block codes with :math:`2^{kb}` points each is one) satisfies

    .. math::

        D \ge 1 - m(\tau)^2,\qquad P(u_1 \ge \tau) = 2^{-db},\qquad
        m(\tau) = E[u_1 \mid u_1 \ge \tau] = \frac{c_{d,1}(1-\tau^2)^{(d-1)/2}}{(d-1)\,P(u_1\ge\tau)}.

    Derivation, with :math:`p_i = P(A_i)`:

    1. The best reconstruction of a cell is its centroid :math:`\mu_i = E[u\mid A_i]`, and as
       :math:`\|u\| = 1` the cell costs :math:`p_i(1 - \|\mu_i\|^2)`.
    2. :math:`\|\mu_i\| = \max_{\|e\|=1} E[\langle u, e\rangle \mid A_i]`, and among all sets of
       probability :math:`p_i` the one with the largest mean of :math:`\langle u, e\rangle` is the
       cap :math:`\{\langle u, e\rangle \ge \tau(p_i)\}` (bathtub principle). So a cell costs at
       least :math:`\varphi(p_i)`, :math:`\varphi(p) = p\,(1 - m(p)^2)`, the cost of a cap of
       probability :math:`p`, and :math:`D \ge \sum_i \varphi(p_i)` with :math:`\sum_i p_i = 1`.
    3. If the tangent :math:`\ell` of :math:`\varphi` at :math:`p_0 = 1/N` lies below
       :math:`\varphi` on :math:`[0, 1]` then :math:`\sum_i\varphi(p_i) \ge \sum_i \ell(p_i) =
       N\ell(1/N) = \varphi(1/N)`, which is the bound. :math:`\varphi` is not convex near
       :math:`p = 1`, so this supporting-line condition is checked numerically
       (:func:`fibquant_theory.proofs.sub_one_bit.check_cap_supporting_line`: ``d`` = 16, 64
       in ``fibquant verify``; it also holds at ``d`` = 8, 128 and ``b`` up to 8 where tried).

    ``m`` is computed as :math:`1/{}_2F_1(\frac12, \frac{d-1}2; \frac{d+1}2; 1-\tau^2)`, summed as a
    series so that tiny caps keep full relative precision. It is a one-shot bound for a
    single vector; at ``d = 64`` it exceeds the Gaussian reference :math:`2^{-2b}` for
    :math:`b \le 2` (0.2595 against 0.25 at ``b = 1``).

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    rate_bits : float
        Bits per coordinate ``b >= 0`` (``d b`` bits per vector).

    Returns
    -------
    float
        The bound (``1`` at ``b = 0``).
    """
    d = check_int(d, "d (dimension)", minimum=2)
    b = float(rate_bits)
    if not (b >= 0 and math.isfinite(b)):
        raise ValueError(f"rate_bits must be >= 0 and finite, got {rate_bits}")
    return _cap_distortion(d, -d * b)  # one cap of probability 2^{-db}


def _log_incomplete_beta_inverse(h: float, log_target: float) -> float:
    """``log w`` with ``I_w(h, 1/2) = exp(log_target)``, also far below the float range of ``betaincinv``."""
    if log_target > -600.0:
        return math.log(special.betaincinv(h, 0.5, math.exp(log_target)))
    # I_w(h, 1/2) = w^h (1-w)^(1/2) 2F1(h+1/2, 1; h+1; w) / (h B(h, 1/2)); Newton in log w (slope ~ h).
    const = math.log(h) + special.betaln(h, 0.5)
    lw = (log_target + const) / h
    for _ in range(50):
        w = math.exp(lw)
        val = h * lw + 0.5 * math.log1p(-w) - const + math.log(special.hyp2f1(h + 0.5, 1.0, h + 1.0, w)) - log_target
        step = val / h
        lw -= step
        if abs(step) < 1e-15 * max(1.0, abs(lw)):
            break
    return lw


def _cap_distortion(d: int, log2_p: float) -> float:
    """``1 - m^2`` for the cap ``{u_1 >= tau}`` of probability ``2**log2_p``, without cancellation.

    With ``w = 1 - tau^2`` and ``h = (d-1)/2``: ``P = I_w(h, 1/2) / 2`` and, for ``tau >= 0``,
    ``m = 1 / 2F1(1/2, h; h+1; w)``; writing ``2F1 = 1 + S`` (``S`` summed as a series),
    ``1 - m^2 = S (2 + S) / (1 + S)^2`` keeps full relative precision when the cap is tiny.
    """
    if log2_p >= 0.0:
        return 1.0
    h = (d - 1) / 2.0
    log_p = log2_p * math.log(2.0)
    if log2_p <= -1.0:
        w = math.exp(_log_incomplete_beta_inverse(h, math.log(2.0) + log_p))
        if w < 0.5:
            term, total, n = 1.0, 0.0, 0
            while True:
                n += 1
                term *= (n - 0.5) * (h + n - 1.0) / ((h + n) * n) * w
                total += term
                if term <= 1e-17 * total:
                    break
        else:
            total = float(special.hyp2f1(0.5, h, h + 1.0, w)) - 1.0
        return total * (2.0 + total) / (1.0 + total) ** 2
    # p > 1/2: tau < 0 and the odd part of t f cancels on [tau, |tau|]; P(u_1 >= |tau|) = 1 - p.
    log_w = math.log(special.betaincinv(h, 0.5, 2.0 * (1.0 - 2.0**log2_p)))
    log_m = _source_log_normalizer(d, 1) - math.log(d - 1) + h * log_w - log_p
    return float(-math.expm1(2.0 * log_m))
