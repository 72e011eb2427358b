"""Monte Carlo rate–distortion of a codec on uniform unit vectors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fibquant_theory._validation import check_int
from fibquant_theory.codecs.base import Codec
from fibquant_theory.numerics.fixed_order import row_dots, row_sumsq
from fibquant_theory.theory.source import sample_unit_vectors

__all__ = ["Codec", "rate_distortion", "shannon_bound"]


def shannon_bound(rate_bits: float) -> float:
    r"""Distortion–rate bound :math:`2^{-2R}` of a unit-variance-per-coordinate source (per vector of unit norm)."""
    return 2.0 ** (-2.0 * float(rate_bits))


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
        (its standard error), ``shannon_bound`` (:math:`2^{-2R}`), ``gap_db``
        (:math:`10\log_{10}(\mathrm{mse}/2^{-2R})`), ``ip_mse`` and ``ip_mse_se``
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
    bound = shannon_bound(rate)
    return {
        "method": codec.name,
        "d": int(codec.d),
        "rate_bits": rate,
        "n_samples": n,
        "seed": seed,
        "mse": mse,
        "mse_se": float(err.std(ddof=1) / math.sqrt(n)),
        "shannon_bound": bound,
        "gap_db": 10.0 * math.log10(mse / bound) if mse > 0 else -math.inf,
        "ip_mse": float(np.mean(ip_err**2)),
        "ip_mse_se": float(np.std(ip_err**2, ddof=1) / math.sqrt(n)),
        "ip_bias": float(ip_err.mean()),
        "ip_bias_se": float(ip_err.std(ddof=1) / math.sqrt(n)),
    }
