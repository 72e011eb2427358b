r"""Row-wise linear algebra in a fixed order: the same bits on every x86-64 machine.

BLAS (``@``, ``np.dot``, ``np.einsum``, ``np.linalg``) picks its kernels by the
CPU it runs on: the summation order, the vector width and the use of fused
multiply-adds differ between an AVX2 and an AVX-512 machine, between Intel and
AMD, between OpenBLAS core types, and even between a stacked and a 2-D matrix
product of the same rows. Every product the design, the codecs and the
rate–distortion estimates depend on goes through the kernels of this module
instead:

* each output entry is one sum over the inner index taken in increasing order,
  with a separate multiply and add (no ``contract``/``reassoc`` fastmath, so no
  fused multiply-add and no reordering by the compiler);
* a row's result depends on that row only, never on the batch it came in, its
  leading shape or the chunk size;
* the only vectorisation left to the compiler is across independent output
  entries, which does not change any result.

IEEE-754 addition, multiplication, division and square root are correctly
rounded, so these kernels give bit-identical results on every x86-64 CPU.
They are the reference's kernels, not fast ones: a dense product costs about
one nanosecond per multiply-add.

:func:`haar_orthogonal` is built on :func:`householder_qr`, a plain Householder
QR in the same fixed order (LAPACK's blocked QR would again depend on BLAS).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "householder_qr",
    "matmul_rows",
    "row_dots",
    "row_norms",
    "row_sumsq",
]


# ----------------------------------------------------------------------------- kernels
@njit("void(float64[:, ::1], float64[:, ::1], float64[:, ::1])", cache=True, nogil=True)
def _matmul_rows(x, m, out):  # pragma: no cover - compiled
    """``out = x @ m``, every entry summed over the inner index in increasing order."""
    n, d = x.shape
    e = m.shape[1]
    for i in range(n):
        for j in range(e):
            out[i, j] = 0.0
        for l in range(d):
            a = x[i, l]
            for j in range(e):
                out[i, j] += a * m[l, j]


@njit("void(float64[:, ::1], float64[::1])", cache=True, nogil=True)
def _row_sumsq(x, out):  # pragma: no cover - compiled
    """``out[i] = sum_t x[i, t]**2`` in increasing ``t``."""
    n, d = x.shape
    for i in range(n):
        s = 0.0
        for t in range(d):
            s += x[i, t] * x[i, t]
        out[i] = s


@njit("void(float64[:, ::1], float64[:, ::1], float64[::1])", cache=True, nogil=True)
def _row_dots(a, b, out):  # pragma: no cover - compiled
    """``out[i] = sum_t a[i, t] * b[i, t]`` in increasing ``t``."""
    n, d = a.shape
    for i in range(n):
        s = 0.0
        for t in range(d):
            s += a[i, t] * b[i, t]
        out[i] = s


#: Row maxima outside [_SAFE_LOW, _SAFE_HIGH] are rescaled before squaring (no overflow or underflow).
_SAFE_LOW = 2.0**-500
_SAFE_HIGH = 2.0**500


@njit("void(float64[:, ::1], float64[::1])", cache=True, nogil=True)
def _row_norms(x, out):  # pragma: no cover - compiled
    """Euclidean row norms without overflow or underflow (rows of huge or tiny entries are rescaled)."""
    n, d = x.shape
    for i in range(n):
        big = 0.0
        for t in range(d):
            v = abs(x[i, t])
            if v > big:
                big = v
        if big == 0.0 or big == np.inf:
            out[i] = big
        elif _SAFE_LOW <= big <= _SAFE_HIGH:
            s = 0.0
            for t in range(d):
                s += x[i, t] * x[i, t]
            out[i] = np.sqrt(s)
        else:
            # scale by a power of two (exact) so that the largest entry lies in [0.5, 1)
            e = math.frexp(big)[1]
            s = 0.0
            for t in range(d):
                v = math.ldexp(x[i, t], -e)
                s += v * v
            out[i] = math.ldexp(np.sqrt(s), e)


@njit("void(float64[:, ::1], float64[:, ::1], float64[::1])", cache=True, nogil=True)
def _householder_qr(a, q, rdiag):  # pragma: no cover - compiled
    """In-place Householder QR of the square ``a``: ``a`` becomes ``R`` (upper part), ``q`` the factor ``Q``.

    Reflector ``j`` is ``H_j = I - 2 v v^T / (v^T v)`` with ``v = a[j:, j] + sign(a_jj) ||a[j:, j]|| e_1``
    (sign(0) = +1); ``R_jj = -sign(a_jj) ||a[j:, j]||`` is written to ``rdiag[j]``.
    ``Q = H_0 H_1 ... H_{n-1}`` is accumulated from the identity.
    """
    n = a.shape[0]
    vs = np.zeros((n, n))
    vnorm2 = np.zeros(n)
    for j in range(n):
        s = 0.0
        for i in range(j, n):
            s += a[i, j] * a[i, j]
        norm = np.sqrt(s)
        alpha = -norm if a[j, j] >= 0.0 else norm
        for i in range(j, n):
            vs[j, i] = a[i, j]
        vs[j, j] -= alpha
        vv = 0.0
        for i in range(j, n):
            vv += vs[j, i] * vs[j, i]
        vnorm2[j] = vv
        rdiag[j] = alpha
        if vv == 0.0:
            continue
        for c in range(j, n):
            dot = 0.0
            for i in range(j, n):
                dot += vs[j, i] * a[i, c]
            f = 2.0 * dot / vv
            for i in range(j, n):
                a[i, c] -= f * vs[j, i]
    for i in range(n):
        for c in range(n):
            q[i, c] = 1.0 if i == c else 0.0
    for j in range(n - 1, -1, -1):
        vv = vnorm2[j]
        if vv == 0.0:
            continue
        for c in range(j, n):
            dot = 0.0
            for i in range(j, n):
                dot += vs[j, i] * q[i, c]
            f = 2.0 * dot / vv
            for i in range(j, n):
                q[i, c] -= f * vs[j, i]


# ----------------------------------------------------------------------------- wrappers
def _writable(arr: np.ndarray) -> np.ndarray:
    """C-contiguous float64 that the compiled kernels accept (read-only arrays are copied)."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    return arr if arr.flags.writeable else arr.copy()


def _rows(x: object, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (..., d), got a scalar")
    return _writable(arr.reshape(-1, arr.shape[-1])), arr.shape


def matmul_rows(x: object, m: object) -> np.ndarray:
    """``x @ m`` for rows ``x`` of shape ``(..., d)`` and a matrix ``m`` of shape ``(d, e)``.

    Parameters
    ----------
    x : array_like, shape (..., d)
        Rows (converted to float64).
    m : array_like, shape (d, e)
        Matrix.

    Returns
    -------
    numpy.ndarray, shape (..., e)
        Every entry is :math:`\\sum_l x_l m_{l j}` summed in increasing ``l``:
        bit-identical on every machine and for any leading shape of ``x``.
    """
    mat = _writable(np.asarray(m, dtype=np.float64))
    if mat.ndim != 2:
        raise ValueError(f"m must be a matrix of shape (d, e), got {mat.shape}")
    rows, shape = _rows(x, "x")
    if rows.shape[1] != mat.shape[0]:
        raise ValueError(f"x of shape {shape} and m of shape {mat.shape} do not chain (x @ m)")
    out = np.empty((rows.shape[0], mat.shape[1]))
    if rows.shape[0] and mat.shape[1]:
        if rows.shape[1]:
            _matmul_rows(rows, mat, out)
        else:
            out[:] = 0.0
    return out.reshape(shape[:-1] + (mat.shape[1],))


def row_sumsq(x: object) -> np.ndarray:
    """:math:`\\sum_t x_t^2` of every row of ``x (..., d)``, in increasing ``t``; shape ``(...)``.

    Parameters
    ----------
    x : array_like
        Rows, shape ``(..., d)``.

    Returns
    -------
    numpy.ndarray
        The sums of squares, shape ``(...)``, float64.
    """
    rows, shape = _rows(x, "x")
    out = np.empty(rows.shape[0])
    if rows.shape[0]:
        _row_sumsq(rows, out)
    return out.reshape(shape[:-1])


def row_dots(a: object, b: object) -> np.ndarray:
    """:math:`\\sum_t a_t b_t` of matching rows of ``a`` and ``b`` (broadcast to one shape ``(..., d)``).

    Parameters
    ----------
    a, b : array_like
        Rows of ``d`` numbers, broadcast against each other to one shape ``(..., d)``.

    Returns
    -------
    numpy.ndarray
        The dot products, shape ``(...)``, float64, summed in increasing ``t``.
    """
    a_arr, b_arr = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    ra, shape = _rows(a_arr, "a")
    rb, _ = _rows(b_arr, "b")
    out = np.empty(ra.shape[0])
    if ra.shape[0]:
        _row_dots(ra, rb, out)
    return out.reshape(shape[:-1])


def row_norms(x: object) -> np.ndarray:
    """Euclidean norm of every row of ``x (..., d)``, shape ``(...)``.

    Rows whose largest entry lies outside :math:`[2^{-500}, 2^{500}]` are scaled
    by a power of two first, so the norm neither overflows (entries up to the
    float64 maximum) nor underflows. NaN entries give NaN.

    Parameters
    ----------
    x : array_like
        Rows, shape ``(..., d)``.

    Returns
    -------
    numpy.ndarray
        The norms, shape ``(...)``, float64.
    """
    rows, shape = _rows(x, "x")
    out = np.empty(rows.shape[0])
    if rows.shape[0]:
        _row_norms(rows, out)
        nan = np.isnan(rows).any(axis=1)
        out[nan] = np.nan
    return out.reshape(shape[:-1])


def householder_qr(a: object) -> tuple[np.ndarray, np.ndarray]:
    """QR decomposition of a square matrix by Householder reflections, in a fixed order.

    Parameters
    ----------
    a : array_like, shape (n, n)
        Finite square matrix.

    Returns
    -------
    q : numpy.ndarray, shape (n, n)
        Orthogonal factor.
    r : numpy.ndarray, shape (n, n)
        Upper-triangular factor, ``a = q @ r`` up to rounding; its diagonal has
        the sign opposite to the pivot column's leading entry (LAPACK's convention).
    """
    mat = np.array(a, dtype=np.float64, order="C", copy=True)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1] or mat.shape[0] < 1:
        raise ValueError(f"a must be a non-empty square matrix, got shape {mat.shape}")
    if not np.isfinite(mat).all():
        raise ValueError("a contains NaN or Inf")
    n = mat.shape[0]
    q = np.empty((n, n))
    rdiag = np.empty(n)
    _householder_qr(mat, q, rdiag)
    r = np.triu(mat)
    r[np.arange(n), np.arange(n)] = rdiag
    return q, r
