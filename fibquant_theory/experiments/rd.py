r"""Monte Carlo rate–distortion of a codec on uniform unit vectors, with the reference and the lower bounds.

Every row of :func:`rate_distortion` carries three comparison values at the codec's rate
:math:`b` (bits per coordinate of the direction code):

* ``gaussian_ref`` :math:`= 2^{-2b}` (:func:`gaussian_reference`): the distortion–rate function
  of an i.i.d. Gaussian source of the same variance. It is a *reference*, not a bound:
  the unit-vector blocks are not Gaussian, the Gaussian is the hardest source of a given
  variance, and the distortion–rate function of this source lies below :math:`2^{-2b}`.
  ``gap_db`` :math:`= 10\log_{10}(\mathrm{mse}/2^{-2b})` is measured against it.
* ``shannon_lb``: the Shannon lower bound of the codec's ``k``-block source
  (:func:`~fibquant_theory.theory.highrate.shannon_lower_bound`, ``k = slb_block``);
* ``cap_lb``: the spherical-cap bound for any quantizer of the whole unit vector with
  :math:`2^{db}` cells (:func:`~fibquant_theory.theory.highrate.sphere_cap_bound`).

The two bounds are computed by :func:`lower_bounds`; see there for when they are theorems.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codecs.base import Codec
from fibquant_theory.numerics.fixed_order import row_dots, row_sumsq
from fibquant_theory.theory.highrate import shannon_lower_bound, sphere_cap_bound
from fibquant_theory.theory.source import sample_unit_vectors

__all__ = ["Codec", "bound_lines", "codec_block", "gaussian_reference", "lower_bounds", "rate_distortion"]


def gaussian_reference(rate_bits: float) -> float:
    r"""The Gaussian reference :math:`2^{-2b}` (a reference line, *not* a lower bound for unit vectors).

    :math:`2^{-2b}` is the distortion–rate function :math:`D(R)` of an i.i.d. Gaussian
    source with variance :math:`1/d` per coordinate, summed over the ``d`` coordinates
    (total variance 1, like a unit vector). The blocks of a uniform unit vector have the
    same variance but are not Gaussian; since the Gaussian is the hardest source of a
    given variance, their distortion–rate function lies *below* :math:`2^{-2b}`, so the
    reference bounds nothing. The valid lower bounds are :func:`lower_bounds`.

    Parameters
    ----------
    rate_bits : float
        Rate ``b`` in bits per coordinate.

    Returns
    -------
    float
        :math:`2^{-2b}`.
    """
    return 2.0 ** (-2.0 * float(rate_bits))


def lower_bounds(d: int, rate_bits: float, block: int = 1) -> dict[str, float]:
    r"""The two lower bounds on :math:`E\|u-\hat u\|^2` of a unit vector at ``b`` bits per coordinate.

    * ``shannon_lb``: the Shannon lower bound of the ``k``-block source :math:`f_{d,k}`
      (``k = block``), :math:`D \ge \frac{d}{2\pi e}\,2^{2h(f_{d,k})/k}\,2^{-2b}`
      (:func:`~fibquant_theory.theory.highrate.shannon_lower_bound`). It holds for every
      code that encodes each of the ``d/k`` blocks separately with ``k b`` bits (FibQuant
      with block ``k``; a scalar code is such a code for every ``k``). It grows as ``k``
      shrinks (:math:`h(f_{d,k}) \le k\,h(f_{d,1})`), so the largest valid one is the
      codec's own block. ``nan`` when ``k = d`` (the block then has no density).
    * ``cap_lb``: the cap bound for *any* quantizer of the whole unit vector with
      :math:`N = 2^{db}` cells and arbitrary reconstruction points in :math:`\mathbb R^d`,
      :math:`D \ge 1 - m(\tau)^2`, :math:`P(u_1\ge\tau) = 2^{-db}`,
      :math:`m(\tau) = E[u_1\mid u_1\ge\tau]`
      (:func:`~fibquant_theory.theory.highrate.sphere_cap_bound`, derivation there).

    Both are theorems for a code whose reconstruction of a unit vector is a function of
    its :math:`d b` index bits alone: FibQuant and TurboQuant-mse (their norm header of a
    unit vector is the constant 1). TurboQuant-prod (QJL signs of the whole residual and
    a residual-norm header), KIVI and fp8 (per-group / per-vector scales) carry side
    information that ``rate_bits`` does not count and TurboQuant-prod is not block
    separable; for them the values are the bounds at the nominal rate, reference lines.

    Parameters
    ----------
    d : int
        Dimension, ``d >= 2``.
    rate_bits : float
        Bits per coordinate ``b >= 0``.
    block : int
        Block size ``k`` of the code, ``1 <= k <= d``.

    Returns
    -------
    dict
        ``{"shannon_lb": float, "cap_lb": float}``.

    Raises
    ------
    ValueError
        If ``d``, ``block`` or ``rate_bits`` is out of range.

    Examples
    --------
    >>> b = lower_bounds(64, 2.0)
    >>> b["shannon_lb"] < 2.0**-4 < b["cap_lb"]  # the reference 2^(-2b) lies between the two bounds here
    True
    """
    d, k = check_dim_block(d, block)
    slb = math.nan if k == d else shannon_lower_bound(d, k, rate_bits)
    return {"shannon_lb": slb, "cap_lb": sphere_cap_bound(d, rate_bits)}


def bound_lines(d: int, rates: Sequence[float], blocks: Iterable[int] = (1,)) -> dict[str, list[float]]:
    """The reference and the two lower bounds along ``rates``, for the plots (:func:`lower_bounds`).

    The Shannon lower bound is the smallest over ``blocks`` (so it bounds a code of any of
    these block sizes); blocks with ``k = d`` have none and are skipped (all ``nan`` if no
    other is given).

    Parameters
    ----------
    d : int
        Dimension.
    rates : sequence of float
        Rates ``b`` (bits per coordinate).
    blocks : iterable of int
        Block sizes of the plotted codes.

    Returns
    -------
    dict
        ``gaussian_ref``, ``shannon_lb`` and ``cap_lb``, each a list along ``rates``.
    """
    ks = sorted({int(k) for k in blocks})
    out: dict[str, list[float]] = {"gaussian_ref": [], "shannon_lb": [], "cap_lb": []}
    for b in rates:
        per_block = [lower_bounds(d, b, k) for k in ks]
        slbs = [v["shannon_lb"] for v in per_block if not math.isnan(v["shannon_lb"])]
        out["gaussian_ref"].append(gaussian_reference(b))
        out["shannon_lb"].append(min(slbs) if slbs else math.nan)
        out["cap_lb"].append(sphere_cap_bound(d, b))
    return out


def codec_block(codec: Codec) -> int:
    """Block size ``k`` a codec encodes separately: its ``k`` attribute (FibQuant), else 1 (a coordinate).

    Parameters
    ----------
    codec : Codec
        Any codec.

    Returns
    -------
    int
        ``codec.k`` when the codec has an integer ``k``, else ``1``.
    """
    k = getattr(codec, "k", 1)
    return int(k) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else 1


def rate_distortion(codec: Codec, n_samples: int = 100_000, seed: int = 0, chunk: int = 20_000) -> dict[str, Any]:
    r"""Estimate distortion of ``codec`` on fresh uniform unit vectors.

    Parameters
    ----------
    codec : Codec
        A codec (:class:`fibquant_theory.codecs.base.Codec`); only ``d``,
        ``name``, ``rate_bits``, ``encode``, ``decode`` and ``inner_product``
        are used.
    n_samples : int
        Number of unit vectors (``>= 2``).
    seed : int
        Seed of the test vectors (independent of the codec's seed).
    chunk : int
        Vectors processed at once (memory bound), an integer ``>= 1``.

    Returns
    -------
    dict
        ``method``, ``d``, ``rate_bits``, ``n_samples``, ``mse``
        (:math:`E\|u-\hat u\|^2` summed over all ``d`` coordinates), ``mse_se``
        (its standard error), ``gaussian_ref`` (the reference :math:`2^{-2b}`, not a
        bound: :func:`gaussian_reference`), ``gap_db``
        (:math:`10\log_{10}(\mathrm{mse}/2^{-2b})`, against that reference), the lower
        bounds ``shannon_lb`` (of the ``slb_block``-block source, :func:`codec_block`) and
        ``cap_lb`` (:func:`lower_bounds`), ``ip_mse`` and ``ip_mse_se``
        (:math:`E(\langle q,u\rangle-\widehat{\langle q,u\rangle})^2` for an
        independent uniform unit ``q``) and ``ip_bias``, ``ip_bias_se`` (mean
        signed inner-product error).

    Raises
    ------
    ValueError
        If ``n_samples``, ``seed`` or ``chunk`` is not an integer in range.
    """
    n = check_int(n_samples, "n_samples", minimum=2)
    seed = check_int(seed, "seed", minimum=0)
    chunk = check_int(chunk, "chunk", minimum=1)
    rng_x = np.random.default_rng([seed, 1])
    rng_q = np.random.default_rng([seed, 2])
    err = np.empty(n)
    ip_err = np.empty(n)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        u = sample_unit_vectors(m, codec.d, rng_x)
        q = sample_unit_vectors(m, codec.d, rng_q)
        codes = codec.encode(u)
        u_hat = codec.decode(codes)
        err[start : start + m] = row_sumsq(u - u_hat)
        ip_err[start : start + m] = row_dots(q, u) - codec.inner_product(q, codes)
    mse = float(err.mean())
    rate = float(codec.rate_bits)
    ref = gaussian_reference(rate)
    block = codec_block(codec)
    bounds = lower_bounds(codec.d, rate, block)
    return {
        "method": codec.name,
        "d": int(codec.d),
        "rate_bits": rate,
        "n_samples": n,
        "seed": seed,
        "mse": mse,
        "mse_se": float(err.std(ddof=1) / math.sqrt(n)),
        "gaussian_ref": ref,
        "gap_db": 10.0 * math.log10(mse / ref) if mse > 0 else -math.inf,
        "shannon_lb": bounds["shannon_lb"],
        "slb_block": block,
        "cap_lb": bounds["cap_lb"],
        "ip_mse": float(np.mean(ip_err**2)),
        "ip_mse_se": float(np.std(ip_err**2, ddof=1) / math.sqrt(n)),
        "ip_bias": float(ip_err.mean()),
        "ip_bias_se": float(ip_err.std(ddof=1) / math.sqrt(n)),
    }
