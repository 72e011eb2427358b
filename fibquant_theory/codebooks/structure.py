r"""Codebook structures: what a codebook family knows about its points beyond the points themselves.

A :class:`~fibquant_theory.codebooks.codebook.Codebook` is ``N`` points of the
unit ball :math:`B^k` plus an optional *structure*. The structure names the
family the points come from, carries the family's own fields (which are part
of the content hash and of the file), checks that the points really are what
the fields say, and, when the family has one, builds an exact structured
nearest-codeword search:

:class:`ShellStructure` (family ``"shells"``)
    The Lloyd-refined shells design: the number of shells, their Beta-quantile
    radii, the shell every codeword was initialised on and the direction family
    of the initial codebook. Its points are the output of Lloyd–Max, so it has
    no closed-form nearest-point rule (its :meth:`~CodebookStructure.search`
    raises ``ValueError``).
:class:`~fibquant_theory.codebooks.product.ProductStructure` (families ``"d4"``, ``"e8"``, ``"hurwitz"``)
    Product codes :math:`\{\rho_s v_m\}` of ``S`` radii and a fixed spherical
    code with an exact closed-form decoder.

The registry of families is :data:`fibquant_theory.codebooks.families.FAMILIES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from fibquant_theory._validation import check_int

__all__ = ["CodebookStructure", "ShellStructure", "readonly_array"]


def readonly_array(a: object, dtype: type) -> np.ndarray:
    """A C-contiguous read-only copy of ``a`` with the given ``dtype``.

    Parameters
    ----------
    a : array_like
        The data.
    dtype : type
        Its dtype in the copy.

    Returns
    -------
    numpy.ndarray
        A C-contiguous copy that cannot be written.
    """
    arr = np.array(a, dtype=dtype, copy=True, order="C")
    arr.setflags(write=False)
    return arr


class CodebookStructure(ABC):
    """Base class of the family-specific part of a codebook.

    A structure is immutable once built. Subclasses set :attr:`family` and
    implement the abstract methods; the shell attributes (:attr:`n_shells`,
    :attr:`shell_radii`, :attr:`shell_index`, :attr:`directions`) are
    optional and raise ``AttributeError`` where a family has no shells.

    Attributes
    ----------
    family : str
        Name of the family (a key of :data:`~fibquant_theory.codebooks.families.FAMILIES`).
    has_shells : bool
        Whether the shell attributes are defined.
    """

    family: ClassVar[str] = ""
    #: Whether the family has radius shells (:attr:`n_shells` ... are defined).
    has_shells: ClassVar[bool] = False

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only (it is part of the codebook's content hash)")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The family's scalar fields, JSON-serialisable (hashed, stored in the file's metadata).

        Returns
        -------
        dict of str to Any
            The structure's scalar fields, JSON-serialisable (hashed and stored in the file's metadata).
        """

    @abstractmethod
    def arrays(self) -> tuple[tuple[str, np.ndarray, str], ...]:
        """The family's arrays as ``(name, array, little-endian dtype)`` in hash order (hashed and stored).

        Returns
        -------
        tuple of (str, numpy.ndarray, str)
            ``(name, array, little-endian dtype)`` of every stored array, in hash order.
        """

    @classmethod
    @abstractmethod
    def from_stored(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> CodebookStructure:
        """Rebuild the structure from a file's metadata and arrays (``KeyError`` when a field is missing).

        Parameters
        ----------
        meta : mapping
            The file's metadata (the fields of :meth:`meta`).
        arrays : mapping of str to numpy.ndarray
            The file's arrays (the names of :meth:`array_names`).

        Returns
        -------
        CodebookStructure
            The structure.
        """

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        """Names of the arrays a file of this family stores besides ``points`` and ``initial_points``.

        Returns
        -------
        tuple of str
            Names of the arrays a file stores besides ``points`` and ``initial_points``.
        """
        return ()

    @abstractmethod
    def check_points(self, points: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``points (N, k)`` are consistent with the structure.

        Parameters
        ----------
        points : numpy.ndarray
            Codewords, shape ``(N, k)``.
        """

    def search(self, points: np.ndarray) -> Any:
        """The exact structured nearest-codeword search of ``points (N, k)``.

        Parameters
        ----------
        points : numpy.ndarray
            Codewords, shape ``(N, k)``.

        Returns
        -------
        fibquant_theory.search.encoders.NearestCodewordSearch

        Raises
        ------
        ValueError
            When the family has no exact structured decoder.
        """
        raise ValueError(
            f"codebook family {self.family!r} has no exact structured decoder; use encoder 'exhaustive' "
            "(or 'two-stage' / 'clustered')"
        )

    # ----------------------------------------------------------------- optional shell view
    def _no_shells(self, name: str) -> AttributeError:
        return AttributeError(f"codebook family {self.family!r} has no radius shells ({name})")

    @property
    def n_shells(self) -> int:
        """Number of radius shells :math:`S`."""
        raise self._no_shells("n_shells")

    @property
    def shell_radii(self) -> np.ndarray:
        """Radii of the shells, shape ``(S,)``, increasing."""
        raise self._no_shells("shell_radii")

    @property
    def shell_index(self) -> np.ndarray:
        """Shell of every codeword, shape ``(N,)``, int64."""
        raise self._no_shells("shell_index")

    @property
    def directions(self) -> str:
        """Name of the direction set (or direction family of the initial codebook)."""
        raise self._no_shells("directions")


class ShellStructure(CodebookStructure):
    """The structure of a shells design (family ``"shells"``): shells it was initialised on.

    Parameters
    ----------
    n_shells : int
        Number of radius shells :math:`S \\ge 1`.
    shell_radii : array_like, shape (S,)
        Beta-quantile radii of the shells (strictly increasing).
    shell_index : array_like of int, shape (N,)
        Shell of every codeword, in ``[0, S)``: the shell it was initialised on (for an
        initialisation without shells, the rank of its radius in groups of ``N/S``).
    directions : str
        Direction family of the initial codebook (``"sign"``, ``"fibonacci-circle"``,
        ``"fibonacci-sphere"``, ``"roberts-kronecker"``) or the non-shell initialisation
        that won (``"sunflower"``, ``"samples"``).

    Raises
    ------
    ValueError
        On a field of the wrong type, shape or range.
    """

    family = "shells"
    has_shells = True

    def __init__(self, n_shells: int, shell_radii: object, shell_index: object, directions: str) -> None:
        s = check_int(n_shells, "n_shells", minimum=1)
        radii = readonly_array(np.asarray(shell_radii, dtype=np.float64), np.float64)
        if radii.shape != (s,) or (s > 1 and not np.all(np.diff(radii) > 0)):
            raise ValueError(f"shell_radii must be {s} increasing radii, got {radii}")
        labels = np.asarray(shell_index)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"shell_index must be integers of shape (N,), got shape {labels.shape} ({labels.dtype})")
        if labels.size and (labels.min() < 0 or labels.max() >= s):
            raise ValueError(f"shell_index must lie in [0, {s})")
        if not isinstance(directions, str):
            raise ValueError(f"directions must be a string, got {directions!r}")
        self._set("_n_shells", s)
        self._set("_radii", radii)
        self._set("_labels", readonly_array(labels, np.int64))
        self._set("_directions", directions)

    def __repr__(self) -> str:
        return f"ShellStructure(n_shells={self._n_shells}, directions={self._directions!r})"

    # the legacy (pre-family) hash: exactly these fields, in this order
    def meta(self) -> dict[str, Any]:
        """The structure's scalar fields (number of shells, direction family).

        Returns
        -------
        dict of str to Any
            The structure's scalar fields, JSON-serialisable (hashed and stored in the file's metadata).
        """
        return {"n_shells": self._n_shells, "directions": self._directions}

    def arrays(self) -> tuple[tuple[str, np.ndarray, str], ...]:
        """The stored arrays: shell index of every codeword and shell radii.

        Returns
        -------
        tuple of (str, numpy.ndarray, str)
            ``(name, array, little-endian dtype)`` of every stored array, in hash order.
        """
        return (("shell_radii", self._radii, "<f8"), ("shell_index", self._labels, "<i8"))

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        """Names of the stored arrays (shell indices and radii).

        Returns
        -------
        tuple of str
            Names of the arrays a file stores besides ``points`` and ``initial_points``.
        """
        return ("shell_radii", "shell_index")

    @classmethod
    def from_stored(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ShellStructure:
        """Rebuild the structure from a file's metadata and arrays.

        Parameters
        ----------
        meta : mapping
            The file's metadata (the fields of :meth:`meta`).
        arrays : mapping of str to numpy.ndarray
            The file's arrays (the names of :meth:`array_names`).

        Returns
        -------
        ShellStructure
            The structure.
        """
        return cls(meta["n_shells"], arrays["shell_radii"], arrays["shell_index"], meta["directions"])

    def check_points(self, points: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``points`` match the shell indices.

        Parameters
        ----------
        points : numpy.ndarray
            Codewords, shape ``(N, k)``.
        """
        if self._labels.shape != (points.shape[0],):
            raise ValueError(f"shell_index must be integers of shape ({points.shape[0]},), got {self._labels.shape}")

    @property
    def n_shells(self) -> int:
        return self._n_shells

    @property
    def shell_radii(self) -> np.ndarray:
        return self._radii

    @property
    def shell_index(self) -> np.ndarray:
        return self._labels

    @property
    def directions(self) -> str:
        return self._directions

