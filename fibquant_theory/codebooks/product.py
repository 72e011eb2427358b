r"""Product codebooks :math:`\{\rho_s v_m\}`: ``S`` radii times a spherical code with an exact decoder.

The structured families (:mod:`~fibquant_theory.codebooks.d4`,
:mod:`~fibquant_theory.codebooks.e8`, :mod:`~fibquant_theory.codebooks.hurwitz`)
are product codes of ``S`` radius shells :math:`0 < \rho_0 < \dots < \rho_{S-1}`
(the Beta-quantile radii :func:`~fibquant_theory.codebooks.shells.beta_quantile_radii`
of the shells design) and a fixed spherical code :math:`v_0, \dots, v_{M-1}`
(the normalised vectors of a lattice shell), so :math:`N = S\cdot M`; codeword
:math:`j = s M + m` is :math:`\rho_s v_m` (shell by shell, like
:func:`~fibquant_theory.codebooks.shells.shell_codebook`).

Exact nearest codeword
    With :math:`r = \|y\|` and :math:`t_m = \langle y, v_m\rangle`,

    .. math::

        \|y - \rho v_m\|^2 = r^2 + \rho^2 - 2\rho\, t_m ,

    so for every :math:`\rho > 0` the best direction is the one that maximises
    :math:`t_m` (the same for all shells: the family's closed-form direction
    decoder, :mod:`~fibquant_theory.codebooks.lattices`), and then the best
    radius is the one nearest :math:`t = \max_m t_m = r\,\max_m\langle u, v_m\rangle`
    (:math:`\rho^2 - 2\rho t = (\rho - t)^2 - t^2`), found by bisection of the
    sorted radii (ties to the smaller radius). :class:`ProductSearch` is this
    decoder as a :class:`~fibquant_theory.search.encoders.NearestCodewordSearch`
    (``encoder="structured"``): :math:`O(k)` for the direction and
    :math:`O(\log S)` for the radius per block, against :math:`O(N k)` for the
    exhaustive search. For :math:`y = 0` every codeword of the smallest shell is
    nearest and the decoder returns codeword 0 (the exhaustive search returns the
    one whose norm rounds smallest).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numba import njit

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codebooks.shells import beta_quantile_radii
from fibquant_theory.codebooks.structure import CodebookStructure, readonly_array
from fibquant_theory.config import MAX_CODEWORDS
from fibquant_theory.search.encoders import NearestCodewordSearch

__all__ = ["ProductSearch", "ProductStructure"]


@njit(
    "void(float64[:, ::1], float64[:, ::1], float64[::1], int64[::1], float64[::1], int64, int64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _product_kernel(y, points, radii, m, t, n_dirs, idx_out, dist_out):  # pragma: no cover - compiled
    """Radius nearest ``t`` (bisection, ties to the smaller), codeword ``s * M + m``, and ``|y - c|^2`` directly."""
    n, k = y.shape
    n_shells = radii.size
    for i in range(n):
        ti = t[i]
        lo = 0
        hi = n_shells  # first radius >= ti lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            if radii[mid] < ti:
                lo = mid + 1
            else:
                hi = mid
        s = lo
        if s == n_shells or (s > 0 and ti - radii[s - 1] <= radii[s] - ti):
            s -= 1
        j = s * n_dirs + m[i]
        idx_out[i] = j
        dist = 0.0
        for c in range(k):
            diff = y[i, c] - points[j, c]
            dist += diff * diff
        dist_out[i] = dist


class ProductStructure(CodebookStructure):
    """Radii times a fixed spherical code with an exact direction decoder (base of the structured families).

    A family subclass sets :attr:`family`, :attr:`block` and :attr:`variants`
    and implements :meth:`direction_table` and :meth:`decode_directions`.

    Parameters
    ----------
    shell_radii : array_like, shape (S,)
        Radii of the shells, finite, positive, strictly increasing.
    lattice_shells : int
        Which spherical code of the family (a key of :attr:`variants`).

    Attributes
    ----------
    block : int
        Block size ``k`` of the family (class attribute).
    variants : dict of int to str
        ``lattice_shells -> name of the direction set`` (class attribute).
    table : numpy.ndarray, shape (M, k)
        The unit direction vectors, read-only.

    Raises
    ------
    ValueError
        On radii that are not finite, positive and increasing, or an unknown variant.
    """

    has_shells = True
    block: ClassVar[int] = 0
    variants: ClassVar[dict[int, str]] = {}

    def __init__(self, shell_radii: object, lattice_shells: int = 1) -> None:
        variant = self.check_variant(lattice_shells)
        radii = readonly_array(np.asarray(shell_radii, dtype=np.float64), np.float64)
        if radii.ndim != 1 or radii.size < 1:
            raise ValueError(f"shell_radii must be a non-empty vector, got shape {radii.shape}")
        if not (np.isfinite(radii).all() and radii[0] > 0 and np.all(np.diff(radii) > 0)):
            raise ValueError(f"shell_radii must be finite, positive and strictly increasing, got {radii}")
        self._set("lattice_shells", variant)
        self._set("_radii", radii)
        self._set("table", readonly_array(self.direction_table(variant), np.float64))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_shells={self.n_shells}, directions={self.directions!r})"

    # ------------------------------------------------------------------ family interface
    @classmethod
    def check_variant(cls, lattice_shells: object) -> int:
        """``lattice_shells`` as an int after checking it is one of :attr:`variants`.

        Parameters
        ----------
        lattice_shells : object
            The variant to check.

        Returns
        -------
        int
            ``lattice_shells`` as an int.
        """
        if isinstance(lattice_shells, bool) or not isinstance(lattice_shells, (int, np.integer)) or int(
            lattice_shells
        ) not in cls.variants:
            raise ValueError(
                f"family {cls.family!r}: lattice_shells must be one of {sorted(cls.variants)} "
                f"({', '.join(f'{v}: {n}' for v, n in sorted(cls.variants.items()))}), got {lattice_shells!r}"
            )
        return int(lattice_shells)

    @classmethod
    @abstractmethod
    def direction_table(cls, lattice_shells: int) -> np.ndarray:
        """The unit direction vectors of variant ``lattice_shells``, shape ``(M, k)``, in decoder order.

        Parameters
        ----------
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        numpy.ndarray
            Unit vectors, shape ``(M, k)``, in decoder order.
        """

    @classmethod
    @abstractmethod
    def decode_directions(cls, y: np.ndarray, lattice_shells: int) -> tuple[np.ndarray, np.ndarray]:
        r"""Row of :meth:`direction_table` maximising :math:`\langle y, v\rangle`, and that maximum: ``(n,)`` each.

        Parameters
        ----------
        y : numpy.ndarray
            Blocks, shape ``(n, k)``.
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        index : numpy.ndarray
            Row of :meth:`direction_table` maximising the inner product with each block, shape ``(n,)``.
        value : numpy.ndarray
            That maximum, shape ``(n,)``.
        """

    @classmethod
    def n_directions(cls, lattice_shells: int) -> int:
        """Number ``M`` of directions of variant ``lattice_shells``.

        Parameters
        ----------
        lattice_shells : int
            The variant: how many shells of the lattice give the directions (one of :attr:`variants`).

        Returns
        -------
        int
            ``M``.
        """
        return int(cls.direction_table(cls.check_variant(lattice_shells)).shape[0])

    @classmethod
    def build(cls, d: int, k: int, n_codewords: int, lattice_shells: int | None = None) -> ProductStructure:
        """The structure of ``n_codewords = S * M`` codewords at the Beta-quantile radii of :math:`f_{d,k}`.

        Parameters
        ----------
        d, k : int
            Dimension and block size; ``k`` must be :attr:`block` and divide ``d``.
        n_codewords : int
            ``N``, a multiple of ``M``.
        lattice_shells : int or None
            Variant; ``None``: the first of :attr:`variants` whose ``M`` divides ``N``.

        Returns
        -------
        ProductStructure
            The structure (radii, variant and directions).

        Raises
        ------
        ValueError
            On a wrong block size or an ``N`` that is not ``S * M`` (the message lists the valid ``N``).
        """
        d, k = check_dim_block(d, k)
        if k != cls.block:
            raise ValueError(f"family {cls.family!r} needs block size k={cls.block}, got k={k}")
        if d % k:
            raise ValueError(f"block size k={k} must divide the dimension d={d}")
        n = check_int(n_codewords, "n_codewords", minimum=1, maximum=MAX_CODEWORDS)
        choices = sorted(cls.variants) if lattice_shells is None else [cls.check_variant(lattice_shells)]
        for variant in choices:
            m = cls.n_directions(variant)
            if n % m == 0 and (k < d or n == m):
                return cls(beta_quantile_radii(d, k, n // m), variant)
        raise ValueError(cls._invalid_size_message(d, k, n, choices))

    @classmethod
    def _invalid_size_message(cls, d: int, k: int, n: int, variants: list[int]) -> str:
        parts = []
        for variant in variants:
            m = cls.n_directions(variant)
            if k == d:  # every block has radius 1: one shell only
                parts.append(f"N = {m} ({cls.variants[variant]}; k = d allows one shell)")
                continue
            below = (n // m) * m
            near = [v for v in (below, below + m) if v >= m]
            parts.append(
                f"N = S x {m} for S = 1, 2, ... ({cls.variants[variant]}): {m}, {2 * m}, {3 * m}, ...; "
                f"nearest {' and '.join(map(str, near))}"
            )
        return f"family {cls.family!r} cannot make N={n} codewords; valid N: " + "; ".join(parts)

    # ------------------------------------------------------------------ structure interface
    @property
    def n_shells(self) -> int:
        return int(self._radii.size)

    @property
    def shell_radii(self) -> np.ndarray:
        return self._radii

    @property
    def shell_index(self) -> np.ndarray:
        out = np.repeat(np.arange(self.n_shells, dtype=np.int64), self.table.shape[0])
        out.setflags(write=False)
        return out

    @property
    def directions(self) -> str:
        return self.variants[self.lattice_shells]

    @property
    def n_codewords(self) -> int:
        """``N = S * M``."""
        return self.n_shells * int(self.table.shape[0])

    def points(self) -> np.ndarray:
        r"""The codewords :math:`\rho_s v_m`, row ``s M + m``, shape ``(S M, k)`` (one product per entry: exact).

        Returns
        -------
        numpy.ndarray
            The codewords, shape ``(S M, k)``, float64.
        """
        return (self._radii[:, None, None] * self.table[None, :, :]).reshape(-1, self.table.shape[1])

    def meta(self) -> dict[str, Any]:
        """The structure's scalar fields: number of shells, variant and direction family.

        Returns
        -------
        dict of str to Any
            The structure's scalar fields, JSON-serialisable (hashed and stored in the file's metadata).
        """
        return {"n_shells": self.n_shells, "lattice_shells": self.lattice_shells, "directions": self.directions}

    def arrays(self) -> tuple[tuple[str, np.ndarray, str], ...]:
        """The stored arrays: the shell radii.

        Returns
        -------
        tuple of (str, numpy.ndarray, str)
            ``(name, array, little-endian dtype)`` of every stored array, in hash order.
        """
        return (("shell_radii", self._radii, "<f8"),)

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        """Names of the stored arrays (the shell radii).

        Returns
        -------
        tuple of str
            Names of the arrays a file stores besides ``points`` and ``initial_points``.
        """
        return ("shell_radii",)

    @classmethod
    def from_stored(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ProductStructure:
        """Rebuild the structure from a file's metadata and arrays.

        Parameters
        ----------
        meta : mapping
            The file's metadata (the fields of :meth:`meta`).
        arrays : mapping of str to numpy.ndarray
            The file's arrays (the names of :meth:`array_names`).

        Returns
        -------
        ProductStructure
            The structure.
        """
        structure = cls(arrays["shell_radii"], meta["lattice_shells"])
        if meta["n_shells"] != structure.n_shells or meta["directions"] != structure.directions:
            raise ValueError(
                f"family {cls.family!r}: stored n_shells={meta['n_shells']!r}, directions={meta['directions']!r} "
                f"do not match the stored radii and variant ({structure.n_shells}, {structure.directions!r})"
            )
        return structure

    def check_points(self, points: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``points`` are the product codewords of this structure.

        Parameters
        ----------
        points : numpy.ndarray
            Codewords, shape ``(N, k)``.
        """
        expected = self.points()
        if points.shape != expected.shape:
            raise ValueError(
                f"family {self.family!r}: {self.n_shells} shells x {self.table.shape[0]} directions make points of "
                f"shape {expected.shape}, got {points.shape}"
            )
        if not np.array_equal(points, expected):
            bad = int(np.flatnonzero((points != expected).any(axis=1))[0])
            raise ValueError(
                f"family {self.family!r}: the points are not the product code radii x {self.directions} "
                f"(first differing codeword {bad})"
            )

    def search(self, points: np.ndarray) -> ProductSearch:
        """The exact structured nearest-codeword search: nearest shell per direction, best direction.

        Parameters
        ----------
        points : numpy.ndarray
            Codewords, shape ``(N, k)``.

        Returns
        -------
        ProductSearch
            The search; its ``search(y)`` returns indices and squared distances.
        """
        return ProductSearch(points, self)


class ProductSearch(NearestCodewordSearch):
    """Exact nearest codeword of a product codebook by its closed-form decoder (``encoder="structured"``).

    Parameters
    ----------
    points : array_like, shape (N, k)
        The codebook; must be exactly ``structure.points()``.
    structure : ProductStructure
        The family structure whose decoder is used.

    Raises
    ------
    ValueError
        When ``points`` are not the structure's product code.

    Notes
    -----
    The index is the exact nearest codeword of the product code :math:`\\{\\rho_s v_m\\}`
    in exact arithmetic; in floating point it can differ from the exhaustive search's
    only where two codewords are equidistant to within rounding (a few ulps of
    :math:`\\|y\\|^2`). The distance reported is :math:`\\|y - c\\|^2` computed directly
    from the coordinates in increasing order, with the same bits as the exhaustive
    search reports for the same codeword.
    """

    name = "structured"

    def __init__(self, points: object, structure: ProductStructure) -> None:
        super().__init__(points)
        if not isinstance(structure, ProductStructure):
            raise TypeError(f"structure must be a ProductStructure, got {type(structure).__name__}")
        structure.check_points(self.points)
        self.structure = structure
        self._radii = np.array(structure.shell_radii, dtype=np.float64, order="C")
        self._n_dirs = int(structure.table.shape[0])

    def __repr__(self) -> str:
        return (
            f"ProductSearch(N={self.n_codewords}, k={self.k}, family={self.structure.family!r}, "
            f"shells={self.structure.n_shells}, directions={self._n_dirs})"
        )

    @property
    def candidates_per_block(self) -> float:
        """One distance evaluation (the returned codeword) plus ``ceil(log2 S)`` radius comparisons."""
        return 1.0 + math.ceil(math.log2(self.structure.n_shells)) if self.structure.n_shells > 1 else 1.0

    def _run(self, y: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
        m, t = self.structure.decode_directions(y, self.structure.lattice_shells)
        _product_kernel(
            y, self.points, self._radii, np.ascontiguousarray(m, dtype=np.int64), np.ascontiguousarray(t),
            self._n_dirs, idx, dist,
        )
