"""Shared random rotations."""

from __future__ import annotations

import numpy as np

from ._validation import check_int
from .source import as_generator

__all__ = ["haar_orthogonal"]


def haar_orthogonal(d: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix.

    QR decomposition of a standard Gaussian matrix with the sign fix
    ``Q @ diag(sign(diag(R)))`` (Mezzadri 2007), which makes the law exactly Haar.

    Parameters
    ----------
    d : int
        Dimension (``d >= 1``).
    seed : int or numpy.random.Generator
        Same integer seed, same matrix.

    Returns
    -------
    numpy.ndarray
        Orthogonal matrix of shape ``(d, d)``, float64.
    """
    d = check_int(d, "d", minimum=1)
    rng = as_generator(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs[None, :]
