r"""Lattices and their first shells: nearest-lattice-point decoders and spherical codes with exact decoders.

Nearest lattice point
    :func:`nearest_lattice_point` is the exact nearest point of :math:`\mathbb Z`,
    :math:`A_2`, :math:`A_3^*`, :math:`D_4` and :math:`E_8` (Conway & Sloane 1982,
    "Fast quantizing and decoding algorithms for lattice quantizers and codes"),
    built on :func:`round_dn` (nearest point of :math:`D_n`) and :func:`closer`
    (the nearer of two candidates, for a lattice that is a union of two cosets).

Spherical codes from lattice shells
    The normalised vectors of a lattice shell form a spherical code with a
    closed-form *direction decoder*: the code vector :math:`v_m` that maximises
    :math:`\langle y, v_m\rangle` for a block :math:`y`. Three pieces make up
    every code used by the structured codebook families
    (:mod:`~fibquant_theory.codebooks.d4`, :mod:`~fibquant_theory.codebooks.e8`,
    :mod:`~fibquant_theory.codebooks.hurwitz`):

    * :func:`root_directions`: :math:`(\pm1,\pm1,0^{k-2})/\sqrt2` in all positions,
      :math:`2k(k-1)` vectors; the maximiser takes the two largest :math:`|y_i|` with their signs;
    * :func:`axis_directions`: :math:`\pm e_i`, :math:`2k` vectors; the largest :math:`|y_i|`;
    * :func:`sign_directions`: :math:`(\pm1)^k/\sqrt k`, :math:`2^k` vectors (``even``: the
      :math:`2^{k-1}` with an even number of minus signs); the signs of :math:`y`, with a
      parity fix on the smallest :math:`|y_i|`.

    Every piece has a table (the order of its vectors) and a decoder
    (:func:`decode_roots`, :func:`decode_axes`, :func:`decode_signs`) returning
    the index of the maximiser in that table and the maximum
    :math:`t = \langle y, v_m\rangle`. Ties go to the lower coordinate (the
    larger of equal :math:`|y_i|` is the one with the lower index) and to the
    ``+`` sign (for :math:`y_i = 0`), so the decoders are deterministic; for
    :math:`y = 0` they return index 0 and :math:`t = 0`. The decoders are Numba
    kernels without fastmath that sum in increasing coordinate order, so they
    give the same bits on every x86-64 machine.

Table orders (``k`` coordinates):

* roots: pairs :math:`p < q` in lexicographic order, then the signs
  :math:`(+,+), (+,-), (-,+), (-,-)` of :math:`(y_p, y_q)`: index
  :math:`4\,\mathrm{pair}(p,q) + 2[s_p<0] + [s_q<0]`;
* axes: :math:`+e_0, -e_0, +e_1, \dots`: index :math:`2i + [s_i<0]`;
* signs: the minus-sign bits of the coordinates read as a binary number, the first
  coordinate the most significant bit; with ``even`` only the first ``k - 1`` bits
  (the last sign is the parity of the others).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fibquant_theory._validation import as_rows, check_int

__all__ = [
    "LATTICES",
    "axis_directions",
    "closer",
    "decode_axes",
    "decode_roots",
    "decode_signs",
    "nearest_lattice_point",
    "root_directions",
    "round_dn",
    "sign_directions",
]

#: Lattices :func:`nearest_lattice_point` decodes, with their dimensions.
LATTICES: dict[str, int] = {"Z": 1, "A2": 2, "A3*": 3, "D4": 4, "E8": 8}


# --------------------------------------------------------------------------- lattice points
def round_dn(x: np.ndarray) -> np.ndarray:
    r"""Nearest point of :math:`D_n = \{z\in\mathbb Z^n: \sum_i z_i \text{ even}\}` (Conway & Sloane 1982).

    Round every coordinate; if the sum is odd, round the coordinate farthest from
    an integer the other way.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, k)
        Points (finite).

    Returns
    -------
    numpy.ndarray, shape (n, k)
        The nearest :math:`D_k` point of every row.

    Examples
    --------
    >>> round_dn(np.array([[0.6, 0.2, 0.0, 0.0]])).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
    """
    f = np.rint(x)
    odd = (np.sum(f, axis=1) % 2) != 0
    if odd.any():
        r = x[odd] - f[odd]
        j = np.argmax(np.abs(r), axis=1)
        rows = np.arange(r.shape[0])
        fo = f[odd]
        fo[rows, j] += np.where(r[rows, j] > 0, 1.0, -1.0)
        f[odd] = fo
    return f


def closer(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row by row, the one of the candidates ``a`` and ``b`` nearer to ``x`` (``a`` on a tie); all shape ``(n, k)``.

    Parameters
    ----------
    x : numpy.ndarray
        Points, shape ``(n, k)``.
    a, b : numpy.ndarray
        Candidates, shape ``(n, k)`` each.

    Returns
    -------
    numpy.ndarray
        The nearer candidate of each row, shape ``(n, k)``.
    """
    da = np.sum((x - a) ** 2, axis=1)
    db = np.sum((x - b) ** 2, axis=1)
    return np.where((da <= db)[:, None], a, b)


def nearest_lattice_point(name: str, x: np.ndarray) -> np.ndarray:
    r"""Exact nearest point of the lattice ``name`` (one of :data:`LATTICES`).

    ``A2`` is the hexagonal lattice with unit minimum distance, as the union of
    :math:`\mathbb Z\times\sqrt3\mathbb Z` and its translate by :math:`(1/2,\sqrt3/2)`;
    ``A3*`` (body-centred cubic) is :math:`\mathbb Z^3\cup(\mathbb Z^3+\tfrac12)`;
    ``D4`` is :math:`D_4` (:func:`round_dn`); ``E8`` is :math:`D_8\cup(D_8+\tfrac12)`.

    Parameters
    ----------
    name : {"Z", "A2", "A3*", "D4", "E8"}
        The lattice.
    x : array_like, shape (n, k)
        Points, ``k`` the lattice's dimension (finite).

    Returns
    -------
    numpy.ndarray, shape (n, k)
        The nearest lattice point of every row.

    Raises
    ------
    ValueError
        On an unknown lattice, a wrong shape or NaN/Inf entries.

    Examples
    --------
    >>> nearest_lattice_point("E8", np.full((1, 8), 0.4)).tolist()
    [[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]
    """
    if name not in LATTICES:
        raise ValueError(f"unknown lattice {name!r}; choose from {sorted(LATTICES)}")
    x = np.asarray(x, dtype=np.float64)
    k = LATTICES[name]
    if x.ndim != 2 or x.shape[1] != k:
        raise ValueError(f"points of lattice {name} must have shape (n, {k}), got {x.shape}")
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"points contain NaN or Inf (first bad row {int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])})")
    if name == "Z":
        return np.rint(x)
    if name == "A2":
        s = np.array([1.0, math.sqrt(3.0)])
        a = np.rint(x / s) * s
        b = (np.rint(x / s - 0.5) + 0.5) * s
        return closer(x, a, b)
    if name == "A3*":
        return closer(x, np.rint(x), np.rint(x - 0.5) + 0.5)
    if name == "D4":
        return round_dn(x)
    return closer(x, round_dn(x), round_dn(x - 0.5) + 0.5)


# --------------------------------------------------------------------------- direction tables
def _block(k: object) -> int:
    return check_int(k, "k", minimum=1)


def root_directions(k: int) -> np.ndarray:
    r"""The normalised roots :math:`(\pm1,\pm1,0^{k-2})/\sqrt2` of :math:`D_k`, in table order.

    Parameters
    ----------
    k : int
        Dimension, ``k >= 2``.

    Returns
    -------
    numpy.ndarray, shape (2 k (k - 1), k)
        Unit vectors (24 for ``k = 4``: the minimal vectors of :math:`D_4`, a 24-cell; 112 for ``k = 8``).

    Examples
    --------
    >>> root_directions(4).shape
    (24, 4)
    """
    k = check_int(k, "k", minimum=2)
    c = math.sqrt(0.5)
    rows = []
    for p in range(k):
        for q in range(p + 1, k):
            for sp in (c, -c):
                for sq in (c, -c):
                    v = np.zeros(k)
                    v[p], v[q] = sp, sq
                    rows.append(v)
    return np.array(rows)


def axis_directions(k: int) -> np.ndarray:
    r"""The unit vectors :math:`\pm e_i`, in table order :math:`+e_0, -e_0, +e_1, \dots`; shape ``(2k, k)``.

    Parameters
    ----------
    k : int
        Dimension.

    Returns
    -------
    numpy.ndarray
        Shape ``(2k, k)``, float64.
    """
    k = _block(k)
    out = np.zeros((2 * k, k))
    for i in range(k):
        out[2 * i, i], out[2 * i + 1, i] = 1.0, -1.0
    return out


def sign_directions(k: int, even: bool = False) -> np.ndarray:
    r"""The normalised sign vectors :math:`(\pm1)^k/\sqrt k`, in table order.

    Parameters
    ----------
    k : int
        Dimension, ``k >= 1`` (``k >= 2`` with ``even``).
    even : bool
        Only the vectors with an even number of minus signs (for ``k = 8`` these are,
        times :math:`\sqrt2/2`, the 128 half-integer minimal vectors of :math:`E_8`).

    Returns
    -------
    numpy.ndarray, shape (2**k, k) or (2**(k-1), k)
        Unit vectors.
    """
    k = check_int(k, "k", minimum=2 if even else 1)
    c = 1.0 / math.sqrt(k)
    free = k - 1 if even else k
    codes = np.arange(2**free)
    bits = (codes[:, None] >> np.arange(free - 1, -1, -1)[None, :]) & 1
    if even:
        bits = np.concatenate([bits, bits.sum(axis=1, keepdims=True) % 2], axis=1)
    return np.where(bits == 1, -c, c)


# --------------------------------------------------------------------------- decoders (Numba)
@njit("void(float64[:, ::1], int64[::1], float64[::1])", cache=True, nogil=True)
def _roots_kernel(y, m_out, t_out):  # pragma: no cover - compiled
    """Two largest ``|y_i|`` (ties to the lower ``i``) with their signs: index and ``<y, v>``."""
    n, k = y.shape
    c = np.sqrt(0.5)
    for i in range(n):
        a = 0
        b = 1
        if abs(y[i, 1]) > abs(y[i, 0]):
            a = 1
            b = 0
        for j in range(2, k):
            v = abs(y[i, j])
            if v > abs(y[i, a]):
                b = a
                a = j
            elif v > abs(y[i, b]):
                b = j
        p = min(a, b)
        q = max(a, b)
        pair = p * (2 * k - p - 1) // 2 + (q - p - 1)
        sp = 1 if y[i, p] < 0.0 else 0
        sq = 1 if y[i, q] < 0.0 else 0
        m_out[i] = 4 * pair + 2 * sp + sq
        t_out[i] = (abs(y[i, p]) + abs(y[i, q])) * c


@njit("void(float64[:, ::1], int64[::1], float64[::1])", cache=True, nogil=True)
def _axes_kernel(y, m_out, t_out):  # pragma: no cover - compiled
    """Largest ``|y_i|`` (ties to the lower ``i``) with its sign: index and ``<y, v>``."""
    n, k = y.shape
    for i in range(n):
        a = 0
        for j in range(1, k):
            if abs(y[i, j]) > abs(y[i, a]):
                a = j
        m_out[i] = 2 * a + (1 if y[i, a] < 0.0 else 0)
        t_out[i] = abs(y[i, a])


@njit("void(float64[:, ::1], boolean, int64[::1], float64[::1])", cache=True, nogil=True)
def _signs_kernel(y, even, m_out, t_out):  # pragma: no cover - compiled
    """Signs of ``y`` (``+`` for 0); with ``even``, an odd number of minus signs flips the smallest ``|y_i|``."""
    n, k = y.shape
    c = 1.0 / np.sqrt(float(k))
    free = k - 1 if even else k
    for i in range(n):
        total = 0.0
        code = 0
        parity = 0
        low = 0
        for j in range(k):
            v = abs(y[i, j])
            total += v
            bit = 1 if y[i, j] < 0.0 else 0
            parity ^= bit
            if j < free:
                code = 2 * code + bit
            if v < abs(y[i, low]):
                low = j
        if even and parity == 1:
            # flip the sign of the smallest |y_i|; the last sign is implied by the others
            if low < free:
                code ^= 1 << (free - 1 - low)
            total -= 2.0 * abs(y[i, low])
        m_out[i] = code
        t_out[i] = total * c


def _decoder_input(y: object, minimum_k: int) -> np.ndarray:
    arr = as_rows(y, "blocks")
    if arr.shape[1] < minimum_k:
        raise ValueError(f"blocks must have shape (n, k) with k >= {minimum_k}, got {arr.shape}")
    return arr


def decode_roots(y: object) -> tuple[np.ndarray, np.ndarray]:
    r"""The root :math:`v_m` of :func:`root_directions` that maximises :math:`\langle y, v_m\rangle`.

    Parameters
    ----------
    y : array_like, shape (n, k)
        Blocks, ``k >= 2``, finite.

    Returns
    -------
    index : numpy.ndarray, shape (n,), int64
        Row of :func:`root_directions(k) <root_directions>`.
    inner : numpy.ndarray, shape (n,)
        :math:`(|y_p| + |y_q|)/\sqrt2` for the two largest :math:`|y_p|, |y_q|`.
    """
    arr = _decoder_input(y, 2)
    m, t = np.empty(arr.shape[0], dtype=np.int64), np.empty(arr.shape[0])
    if arr.shape[0]:
        _roots_kernel(arr, m, t)
    return m, t


def decode_axes(y: object) -> tuple[np.ndarray, np.ndarray]:
    r"""The :math:`\pm e_i` of :func:`axis_directions` that maximises :math:`\langle y, v\rangle`: ``(index (n,), max |y_i| (n,))``.

    Parameters
    ----------
    y : array_like
        Blocks, shape ``(n, k)``.

    Returns
    -------
    index : numpy.ndarray
        Row of :func:`axis_directions`, shape ``(n,)``.
    value : numpy.ndarray
        ``max |y_i|``, shape ``(n,)``.
    """
    arr = _decoder_input(y, 1)
    m, t = np.empty(arr.shape[0], dtype=np.int64), np.empty(arr.shape[0])
    if arr.shape[0]:
        _axes_kernel(arr, m, t)
    return m, t


def decode_signs(y: object, even: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""The sign vector of :func:`sign_directions` that maximises :math:`\langle y, v\rangle`.

    Parameters
    ----------
    y : array_like, shape (n, k)
        Blocks, finite (``k >= 2`` with ``even``).
    even : bool
        Only sign vectors with an even number of minus signs: when the signs of
        :math:`y` have an odd number of minus signs, the coordinate with the smallest
        :math:`|y_i|` takes the other sign (the best even vector).

    Returns
    -------
    index : numpy.ndarray, shape (n,), int64
        Row of :func:`sign_directions(k, even) <sign_directions>`.
    inner : numpy.ndarray, shape (n,)
        :math:`(\sum_i |y_i| - 2\min_i|y_i|\,[\text{parity fix}])/\sqrt k`.
    """
    arr = _decoder_input(y, 2 if even else 1)
    m, t = np.empty(arr.shape[0], dtype=np.int64), np.empty(arr.shape[0])
    if arr.shape[0]:
        _signs_kernel(arr, bool(even), m, t)
    return m, t
