"""Shared random rotations."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from numba import njit

from fibquant_theory._validation import check_int
from fibquant_theory.numerics.fixed_order import _matmul_rows, householder_qr
from fibquant_theory.theory.source import as_generator, standard_normal

__all__ = [
    "ROTATION_KINDS",
    "DenseRotation",
    "RandomizedHadamard",
    "Rotation",
    "dense_rotation",
    "haar_orthogonal",
    "make_rotation",
    "randomized_hadamard",
]


def haar_orthogonal(d: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix.

    QR decomposition of a standard Gaussian matrix with the sign fix
    ``Q @ diag(sign(diag(R)))`` (Mezzadri 2007), which makes the law exactly Haar.
    The QR is :func:`~fibquant_theory.numerics.fixed_order.householder_qr` (fixed order,
    no BLAS), so the matrix has the same bits on every machine.

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
    q, r = householder_qr(standard_normal((d, d), rng))
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return q * signs[None, :]


# ----------------------------------------------------------------------------- rotation objects
#: Rotation kinds understood by :func:`make_rotation`.
ROTATION_KINDS = ("haar", "hadamard")

@njit("void(float64[:, ::1], float64[::1], boolean, float64[:, ::1])", cache=True, nogil=True)
def _rowwise_hadamard(x, signs, inverse, out):  # pragma: no cover - compiled
    """Row-wise ``H D x / sqrt(d)`` (forward) or ``D H x / sqrt(d)`` (inverse); ``d`` a power of two."""
    n, d = x.shape
    scale = 1.0 / np.sqrt(d)
    for i in range(n):
        for j in range(d):
            out[i, j] = x[i, j] if inverse else x[i, j] * signs[j]
        h = 1
        while h < d:
            for s in range(0, d, 2 * h):
                for j in range(s, s + h):
                    a = out[i, j]
                    b = out[i, j + h]
                    out[i, j] = a + b
                    out[i, j + h] = a - b
            h *= 2
        for j in range(d):
            out[i, j] *= scale * signs[j] if inverse else scale


class Rotation(ABC):
    """A shared orthogonal rotation :math:`\\Pi` of :math:`\\mathbb{R}^d`, applied row-wise.

    ``forward(u)`` is :math:`\\Pi u` for every row ``u`` (``u @ matrix.T``) and
    ``inverse(z)`` is :math:`\\Pi^\\top z` (``z @ matrix``). Each row is computed
    by a compiled kernel in a fixed order, without fused multiply-adds, so the
    result for one row is bit-for-bit the same whether it is transformed alone
    or inside a batch, and on every machine.
    Build one with :func:`make_rotation`, :func:`dense_rotation` or
    :func:`randomized_hadamard`.

    Attributes
    ----------
    kind : str
        ``"haar"`` or ``"hadamard"``.
    d : int
        Dimension.
    seed : int
        The seed it was drawn from.
    """

    kind: str
    d: int
    seed: int

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, seed={self.seed})"

    @property
    @abstractmethod
    def matrix(self) -> np.ndarray:
        """The rotation as a dense orthogonal matrix, shape ``(d, d)``."""

    @abstractmethod
    def _apply(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        """Rows ``x (n, d)`` C-contiguous float64 -> rotated rows ``(n, d)``."""

    def _rows(self, x: object, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.d:
            raise ValueError(f"{name} must have shape (..., {self.d}), got {np.shape(x)}")
        return np.ascontiguousarray(arr.reshape(-1, self.d)), arr.shape

    def forward(self, u: object) -> np.ndarray:
        """:math:`\\Pi u` for rows ``u`` of shape ``(..., d)``; returns ``(..., d)`` float64.

        Parameters
        ----------
        u : array_like
            Rows, shape ``(..., d)``.

        Returns
        -------
        numpy.ndarray
            The rotated rows, shape ``(..., d)``, float64.
        """
        rows, shape = self._rows(u, "u")
        return self._apply(rows, False).reshape(shape)

    def inverse(self, z: object) -> np.ndarray:
        """:math:`\\Pi^\\top z` for rows ``z`` of shape ``(..., d)``; returns ``(..., d)`` float64.

        Parameters
        ----------
        z : array_like
            Rows, shape ``(..., d)``.

        Returns
        -------
        numpy.ndarray
            The rows rotated back, shape ``(..., d)``, float64.
        """
        rows, shape = self._rows(z, "z")
        return self._apply(rows, True).reshape(shape)


class DenseRotation(Rotation):
    """Rotation by a dense orthogonal matrix (``haar_orthogonal(d, seed)`` by default).

    Parameters
    ----------
    d : int
        Dimension, ``d >= 1``.
    seed : int
        Seed of :func:`haar_orthogonal`; the matrix is the same as TurboQuant's
        for the same ``(d, seed)``.
    """

    kind = "haar"

    def __init__(self, d: int, seed: int = 0) -> None:
        self.d = check_int(d, "d", minimum=1)
        self.seed = check_int(seed, "seed", minimum=0)
        self._m = np.ascontiguousarray(haar_orthogonal(self.d, self.seed))
        self._mt = np.ascontiguousarray(self._m.T)

    @property
    def matrix(self) -> np.ndarray:
        return self._m.copy()

    def _apply(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        out = np.empty_like(x)
        if x.shape[0]:
            _matmul_rows(x, self._m if inverse else self._mt, out)
        return out


class RandomizedHadamard(Rotation):
    """Fast randomized Hadamard rotation :math:`\\Pi = H D/\\sqrt d`.

    ``D`` is a diagonal of i.i.d. random signs drawn from ``seed`` and ``H`` the
    (Sylvester) Walsh–Hadamard matrix; applying it costs :math:`O(d\\log d)`
    per vector instead of :math:`O(d^2)`. It is orthogonal but not Haar
    distributed: the coordinates of :math:`\\Pi u` are only approximately
    spherical-Beta (exactly so in the limit of large ``d``).

    Parameters
    ----------
    d : int
        Dimension; must be a power of two. Any other ``d`` raises
        ``ValueError`` (use the dense ``"haar"`` rotation then; zero-padding is
        not done because it would change the block structure of the code).
    seed : int
        Seed of the random signs.
    """

    kind = "hadamard"

    def __init__(self, d: int, seed: int = 0) -> None:
        self.d = check_int(d, "d", minimum=1)
        if self.d & (self.d - 1):
            raise ValueError(
                f"the randomized Hadamard rotation needs d to be a power of two, got d={self.d}; "
                "use the dense Haar rotation (rotation='haar') for this dimension"
            )
        self.seed = check_int(seed, "seed", minimum=0)
        rng = np.random.default_rng([self.seed, 0x48414441])
        self.signs = np.where(rng.random(self.d) < 0.5, -1.0, 1.0)

    @property
    def matrix(self) -> np.ndarray:
        return self.forward(np.eye(self.d)).T.copy()

    def _apply(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        out = np.empty_like(x)
        if x.shape[0]:
            _rowwise_hadamard(x, self.signs, inverse, out)
        return out


def dense_rotation(d: int, seed: int = 0) -> DenseRotation:
    """The dense Haar rotation of :func:`haar_orthogonal` as a :class:`Rotation` object.

    Parameters
    ----------
    d : int
        Dimension.
    seed : int, default 0
        Seed of the Gaussian matrix.

    Returns
    -------
    DenseRotation
        The rotation.
    """
    return DenseRotation(d, seed)


def randomized_hadamard(d: int, seed: int = 0) -> RandomizedHadamard:
    """The randomized Hadamard rotation :math:`H D/\\sqrt d` (``d`` a power of two); see :class:`RandomizedHadamard`.

    Parameters
    ----------
    d : int
        Dimension, a power of two.
    seed : int, default 0
        Seed of the random signs.

    Returns
    -------
    RandomizedHadamard
        The rotation.
    """
    return RandomizedHadamard(d, seed)


def make_rotation(kind: str, d: int, seed: int = 0) -> Rotation:
    """Build the shared rotation ``kind`` (``"haar"`` or ``"hadamard"``) of dimension ``d`` from ``seed``.

    Parameters
    ----------
    kind : {"haar", "hadamard"}
        Which rotation.
    d : int
        Dimension (a power of two for ``"hadamard"``).
    seed : int, default 0
        Seed of the rotation.

    Returns
    -------
    Rotation
        The rotation: ``forward`` applies it, ``inverse`` undoes it.
    """
    if kind == "haar":
        return DenseRotation(d, seed)
    if kind == "hadamard":
        return RandomizedHadamard(d, seed)
    raise ValueError(f"rotation must be one of {ROTATION_KINDS}, got {kind!r}")
