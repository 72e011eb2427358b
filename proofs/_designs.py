"""Small designed codebooks shared by the checks, and a paired Monte Carlo comparison with the scalar code."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fibquant_theory.codebooks.codebook import Codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.theory.scalar import lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta

__all__ = ["small_design", "PairedMSE", "paired_mse", "evaluate_mse"]


def small_design(d: int, k: int, n_codewords: int, seed: int = 0) -> Codebook:
    """The codebook the checks use: one Lloyd restart, ``max(20000, 400 N)`` (at most 200000) training samples.

    Cached on disk (``FIBQUANT_CACHE_DIR``), so a second ``fibquant verify`` only loads it.
    """
    n_train = int(min(200_000, max(20_000, 400 * n_codewords)))
    return design_codebook(
        d, k, n_codewords, seed, n_train=n_train, n_heldout=20_000, n_restarts=1, cache=True, progress=False
    )


@dataclass(frozen=True)
class PairedMSE:
    """Full unit-vector MSEs of a codebook and of the scalar Lloyd–Max code on the same fresh blocks.

    ``diff = scalar - vector`` (positive: the codebook is better) with its standard error.
    """

    vector_mse: float
    vector_se: float
    scalar_mse: float
    diff: float
    diff_se: float

    @property
    def gain_db(self) -> float:
        """``10 log10(scalar / vector)``."""
        return 10.0 * math.log10(self.scalar_mse / self.vector_mse)

    @property
    def gain_db_se(self) -> float:
        """Delta-method standard error of :attr:`gain_db`."""
        return 10.0 / math.log(10.0) * self.diff_se / self.vector_mse


def _blocks(d: int, k: int, n: int, seed: int) -> np.ndarray:
    return SphericalBeta(d, k).rvs(n, seed=np.random.default_rng([seed, 9, d, k]), method="gaussian")


def evaluate_mse(cb: Codebook, n: int = 200_000, seed: int = 1) -> tuple[float, float]:
    """Full unit-vector MSE of ``cb`` on ``n`` fresh blocks (definition sampler) and its standard error."""
    y = _blocks(cb.d, cb.k, n, seed)
    _, rec = cb.quantize(y)
    err = np.sum((y - rec) ** 2, axis=1) * (cb.d / cb.k)
    return float(err.mean()), float(err.std(ddof=1) / math.sqrt(n))


def paired_mse(cb: Codebook, bits: int, n: int = 200_000, seed: int = 1) -> PairedMSE:
    """Codebook vs ``lloyd_max_scalar(d, bits)`` on the same ``n`` fresh ``k``-blocks."""
    y = _blocks(cb.d, cb.k, n, seed)
    _, rec = cb.quantize(y)
    q = lloyd_max_scalar(cb.d, bits)
    scale = cb.d / cb.k
    ev = np.sum((y - rec) ** 2, axis=1) * scale
    es = np.sum((y - q.decode(q.encode(y))) ** 2, axis=1) * scale
    diff = es - ev
    return PairedMSE(
        vector_mse=float(ev.mean()), vector_se=float(ev.std(ddof=1) / math.sqrt(n)), scalar_mse=float(es.mean()),
        diff=float(diff.mean()), diff_se=float(diff.std(ddof=1) / math.sqrt(n)),
    )
