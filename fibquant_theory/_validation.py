"""Input checks shared by every public entry point.

Every function raises :class:`ValueError` (or :class:`TypeError` for a wrong
kind of object) with a message that names the offending argument, so that bad
input never turns into a silently wrong answer.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_int",
    "check_dim_block",
    "check_bits",
    "as_vectors",
    "as_rows",
    "as_codebook",
    "check_finite_rows",
    "check_distance_range",
]


def check_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` after checking type and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_dim_block(d: object, k: object = 1) -> tuple[int, int]:
    """Check an ambient dimension ``d >= 2`` and a block size ``1 <= k <= d``."""
    d = check_int(d, "d (dimension)", minimum=2)
    k = check_int(k, "k (block size)", minimum=1)
    if k > d:
        raise ValueError(f"block size k={k} exceeds the dimension d={d}")
    return d, k


def check_bits(bits: object, *, minimum: int = 1, maximum: int = 8) -> int:
    """Check an integer bit width ``minimum <= bits <= maximum``."""
    return check_int(bits, "bits", minimum=minimum, maximum=maximum)


def check_finite_rows(x: np.ndarray, name: str = "x") -> None:
    """Raise ``ValueError`` naming the first row of ``x`` that holds NaN or Inf."""
    finite = np.isfinite(x)
    if not finite.all():
        rows = np.flatnonzero(~finite.reshape(-1, x.shape[-1]).all(axis=1))
        idx = np.unravel_index(int(rows[0]), x.shape[:-1]) if x.ndim > 1 else ()
        where = f"row {tuple(int(i) for i in idx)}" if x.ndim > 2 else f"row {int(rows[0])}"
        raise ValueError(f"{name} contains NaN or Inf (first bad {where}; {rows.size} bad rows in all)")


def _check_real_dtype(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless ``arr`` holds real floating or integer numbers."""
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")


def as_vectors(x: object, d: int, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float64 array of shape ``(..., d)`` with finite entries.

    Accepts any real floating or integer array (or CPU/GPU torch tensor, any
    float dtype including ``bfloat16``) whose last axis has length ``d``; raises ``ValueError`` for a wrong last dimension, a non-numeric or
    complex dtype, an empty trailing axis, or NaN/Inf entries.
    """
    if hasattr(x, "detach") and hasattr(x, "numpy") and hasattr(x, "dtype"):  # a torch tensor
        x = x.detach().cpu()
        if not x.dtype.is_floating_point and x.dtype.is_complex:
            raise ValueError(f"{name} must be a real numeric tensor, got {x.dtype}")
        # NumPy has no bfloat16: widen it (exactly) before the conversion
        x = x.double() if x.dtype.is_floating_point else x
        x = x.numpy()
    arr = np.asarray(x)
    _check_real_dtype(arr, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (..., {d}), got a scalar")
    if arr.shape[-1] != d:
        raise ValueError(f"{name} must have shape (..., {d}), got {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.size:
        check_finite_rows(arr, name)
    return arr


def as_rows(x: object, name: str, *, k: int | None = None, min_rows: int = 0) -> np.ndarray:
    """Return ``x`` as a C-contiguous, writable float64 matrix of shape ``(n, k)`` with finite entries.

    The one check of the matrices that the compiled kernels take (codebooks,
    blocks, samples); read-only input is copied.

    Parameters
    ----------
    x : array_like
        Real floating or integer array of shape ``(n, k)``.
    name : str
        Name of the argument in the error messages.
    k : int, optional
        Required number of columns (any ``k >= 1`` when ``None``).
    min_rows : int
        Fewest rows accepted.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, k)``, float64.

    Raises
    ------
    ValueError
        For a non-numeric or complex dtype (``"... must be a real numeric array"``), a wrong
        shape (``"... must have shape (n, k)"``, ``"(n, 4)"`` for a given ``k``, ``"(N, k) with N >= 2"``
        for ``min_rows=2``), no column, or NaN/Inf entries (:func:`check_finite_rows`).
    """
    arr = np.asarray(x)
    _check_real_dtype(arr, name)
    cols = "k" if k is None else str(k)
    if arr.ndim != 2 or (k is not None and arr.shape[1] != k):
        rows = f"(N, {cols}) with N >= {min_rows}" if min_rows > 1 else f"(n, {cols})"
        raise ValueError(f"{name} must have shape {rows}, got {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have shape (N, {cols}) with N >= {min_rows}, got {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not arr.flags.writeable:  # the kernels take writable arrays
        arr = arr.copy()
    if arr.size:
        check_finite_rows(arr, name)
    return arr


def as_codebook(points: object, name: str = "points", *, k: int | None = None) -> np.ndarray:
    """:func:`as_rows` for a codebook ``(N, k)`` with ``N >= 1`` (``"... must hold at least one codeword"``)."""
    arr = as_rows(points, name, k=k)
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one codeword")
    return arr


def check_distance_range(x: np.ndarray, points: np.ndarray, name: str = "blocks") -> None:
    r"""Raise ``ValueError`` when a squared distance between a row of ``x`` and a codeword could overflow.

    Every squared distance is at most :math:`k\,(\max|x| + \max|c|)^2`; when
    that bound is not a finite float64 the nearest-codeword search would
    compare infinities (and return index 0 for every row), so it is refused.
    """
    if not x.size or not points.size:
        return
    bound = float(np.max(np.abs(x))) + float(np.max(np.abs(points)))
    with np.errstate(over="ignore"):
        limit = bound * bound * x.shape[-1]
    if not np.isfinite(limit):
        raise ValueError(
            f"{name} and codewords are too large for squared distances in float64 (largest entries "
            f"{float(np.max(np.abs(x))):.3g} and {float(np.max(np.abs(points))):.3g}); rescale the data"
        )
