r"""The :class:`Codebook` object: points of the unit ball, an optional structure, an integrity hash, files.

A codebook of :math:`N` points of the unit ball :math:`B^k` quantizes one
block of ``k`` coordinates of a uniform unit vector of :math:`\mathbb{R}^d`
at the rate :math:`b = \log_2(N)/k` bits per coordinate. It is designed by
:func:`~fibquant_theory.codebooks.design.design_codebook`; this module holds the
validated, read-only object, its SHA-256 content hash and the ``.npz`` storage
(:func:`save_codebook`, :func:`load_codebook`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import numpy as np

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codebooks.families import FAMILIES
from fibquant_theory.codebooks.lloyd import nearest_codeword
from fibquant_theory.codebooks.structure import CodebookStructure, ShellStructure, readonly_array

__all__ = [
    "CODEBOOK_VERSION",
    "POINTS_FAMILY",
    "READABLE_VERSIONS",
    "Codebook",
    "FrozenParams",
    "load_codebook",
    "save_codebook",
]

#: Version of the design algorithm and of the file format; part of every hash and cache key.
CODEBOOK_VERSION = 2
#: Versions :func:`load_codebook` reads. Version 1 (before 2026-12-02) designed with machine-dependent
#: arithmetic (BLAS, libm, fastmath); its files have the same format and still load, but the cache
#: never returns them (its file names carry the version), so a design is always a version-2 one.
READABLE_VERSIONS = (1, 2)

_HASH_TAG = b"fibquant-codebook"


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


class FrozenParams(dict):
    """A read-only ``dict`` (nested values are frozen too: dicts to ``FrozenParams``, lists to tuples).

    :attr:`Codebook.params` is part of the content hash, so it must not change
    after the hash is computed; every mutating method raises ``TypeError``.
    It is still a ``dict`` for ``json.dumps`` and comparisons.
    """

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Codebook.params is read-only (it is part of the content hash); build a new Codebook instead")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenParams, (dict(self),))


def _freeze(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return FrozenParams({k: _freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj


#: Legacy keyword fields of the shells family (before structures): ``Codebook(..., n_shells=, shell_radii=, ...)``.
_SHELL_FIELDS = ("n_shells", "shell_radii", "shell_index", "directions")
#: The family of a codebook without a structure (bare points).
POINTS_FAMILY = "points"


class Codebook:
    r"""A FibQuant codebook for blocks of ``k`` coordinates of unit vectors in :math:`\mathbb{R}^d`: points plus a structure.

    Build one with :func:`~fibquant_theory.codebooks.design.design_codebook`; load
    one with :func:`load_codebook`. The constructor validates every field and
    computes :attr:`content_hash` (if a non-empty ``content_hash`` is passed it
    must match, otherwise ``ValueError`` is raised: this is how corrupt files
    are detected). The object is read-only.

    The family-specific part is :attr:`structure`
    (:class:`~fibquant_theory.codebooks.structure.CodebookStructure`, see
    :data:`~fibquant_theory.codebooks.families.FAMILIES`). A shells design can
    also be built with the shell fields directly (``n_shells``, ``shell_radii``,
    ``shell_index``, ``directions``: a
    :class:`~fibquant_theory.codebooks.structure.ShellStructure`, the format
    before families). Without a structure and without shell fields the codebook
    is bare points (family ``"points"``).

    Parameters
    ----------
    points : array_like, shape (N, k)
        Codewords (finite, ``N >= 2``).
    d, k : int
        Ambient dimension and block size (``k`` divides ``d``).
    seed : int
        Seed of the design (``>= 0``).
    n_shells, shell_radii, shell_index, directions
        Fields of a :class:`~fibquant_theory.codebooks.structure.ShellStructure`
        (family ``"shells"``); not together with ``structure``.
    params : Mapping
        Construction parameters and design record (JSON-serialisable; frozen).
    train_mse, heldout_mse : float
        :math:`E\|u-\hat u\|^2` of a unit vector over all ``d`` coordinates, on
        the training and on the held-out samples (finite, ``>= 0``).
    design_seconds : float
        Wall-clock seconds of the design, finite and ``>= 0`` (not part of the hash).
    initial_points : array_like, shape (N, k)
        The initial codebook of the winning restart (for the structured families, the points).
    content_hash : str
        Expected hash (``""``: not checked).
    version : int
        :data:`CODEBOOK_VERSION` of the design.
    family : str or None
        Checked against the structure's family when given.
    structure : CodebookStructure or None
        The family structure (it must be consistent with ``points``).

    Attributes
    ----------
    points, initial_points : numpy.ndarray, shape (N, k)
        Read-only float64.
    d, k, seed, version : int
    params : FrozenParams
        Read-only.
    train_mse, heldout_mse, design_seconds : float
    structure : CodebookStructure or None
    content_hash : str
        Hex SHA-256 of the points, initial points, structure and defining fields. For the
        shells family exactly the hash of the format before families (same bits); for the
        other families the family name and its fields are hashed too.

    Raises
    ------
    ValueError
        On any invalid field, a structure inconsistent with the points, or a hash mismatch.
    """

    points: np.ndarray
    d: int
    k: int
    seed: int
    params: FrozenParams
    train_mse: float
    heldout_mse: float
    design_seconds: float
    initial_points: np.ndarray
    content_hash: str
    version: int
    structure: CodebookStructure | None

    def __init__(
        self,
        points: object,
        d: int,
        k: int,
        seed: int,
        n_shells: int | None = None,
        shell_radii: object = None,
        shell_index: object = None,
        directions: str | None = None,
        params: Mapping[str, Any] | None = None,
        train_mse: float | None = None,
        heldout_mse: float | None = None,
        design_seconds: float | None = None,
        initial_points: object = None,
        content_hash: str = "",
        version: int = CODEBOOK_VERSION,
        *,
        family: str | None = None,
        structure: CodebookStructure | None = None,
    ) -> None:
        d, k = check_dim_block(d, k)
        if d % k:
            raise ValueError(f"block size k={k} must divide d={d}")
        points = readonly_array(points, np.float64)
        if points.ndim != 2 or points.shape[1] != k or points.shape[0] < 2:
            raise ValueError(f"points must have shape (N, {k}) with N >= 2, got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or Inf")
        init = readonly_array(initial_points, np.float64)
        if init.shape != points.shape:
            raise ValueError(f"initial_points must have shape {points.shape}, got {init.shape}")
        legacy = (n_shells, shell_radii, shell_index, directions)
        if any(v is not None for v in legacy):
            if structure is not None:
                raise ValueError(f"pass either structure or the shell fields {_SHELL_FIELDS}, not both")
            structure = ShellStructure(*legacy)
        if structure is not None and not isinstance(structure, CodebookStructure):
            raise ValueError(f"structure must be a CodebookStructure or None, got {type(structure).__name__}")
        actual = structure.family if structure is not None else POINTS_FAMILY
        if family is not None and family != actual:
            raise ValueError(f"family {family!r} does not match the structure's family {actual!r}")
        if structure is not None:
            structure.check_points(points)
        for name, value in (("train_mse", train_mse), ("heldout_mse", heldout_mse)):
            if not (isinstance(value, (float, int, np.floating)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a mapping, got {type(params).__name__}")
        frozen = _freeze(json.loads(_canonical_json(dict(params))))
        seconds = design_seconds
        if not (isinstance(seconds, (float, int, np.floating, np.integer)) and not isinstance(seconds, bool)
                and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"design_seconds must be a finite number >= 0, got {seconds!r}")
        if not isinstance(content_hash, str):
            raise ValueError(f"content_hash must be a hex string, got {content_hash!r}")
        set_ = object.__setattr__
        set_(self, "points", points)
        set_(self, "d", d)
        set_(self, "k", k)
        set_(self, "seed", check_int(seed, "seed", minimum=0))
        set_(self, "structure", structure)
        set_(self, "params", frozen)
        set_(self, "train_mse", float(train_mse))  # type: ignore[arg-type]
        set_(self, "heldout_mse", float(heldout_mse))  # type: ignore[arg-type]
        set_(self, "design_seconds", float(seconds))  # type: ignore[arg-type]
        set_(self, "initial_points", init)
        set_(self, "version", check_int(version, "version", minimum=1))
        digest = self._compute_hash()
        if content_hash and content_hash != digest:
            raise ValueError(
                f"codebook content hash mismatch (stored {content_hash[:16]}..., "
                f"computed {digest[:16]}...): the data are corrupt or were modified"
            )
        set_(self, "content_hash", digest)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a Codebook is read-only")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: a Codebook is read-only")

    # ----------------------------------------------------------------- structure view
    @property
    def family(self) -> str:
        """Name of the codebook family (``"shells"``, ``"d4"``, ... or ``"points"`` without a structure)."""
        return self.structure.family if self.structure is not None else POINTS_FAMILY

    def _shell_view(self, name: str) -> Any:
        if self.structure is None:
            raise AttributeError(f"this codebook (family {POINTS_FAMILY!r}) has no structure, so no {name}")
        return getattr(self.structure, name)

    @property
    def n_shells(self) -> int:
        """Number of radius shells :math:`S` (shell-structured families)."""
        return self._shell_view("n_shells")

    @property
    def shell_radii(self) -> np.ndarray:
        """Radii of the shells, shape ``(S,)``, increasing: the Beta-quantile radii."""
        return self._shell_view("shell_radii")

    @property
    def shell_index(self) -> np.ndarray:
        """Shell of every codeword, shape ``(N,)``, int64 (for the shells design, the shell it was initialised on)."""
        return self._shell_view("shell_index")

    @property
    def directions(self) -> str:
        """Direction family of the initial codebook (shells) or the family's direction set (``"e8-roots"``, ...)."""
        return self._shell_view("directions")

    # ----------------------------------------------------------------- identity
    def _defining(self) -> dict[str, Any]:
        """The hashed scalar fields; for the shells family exactly the fields of the format before families."""
        fields: dict[str, Any] = {
            "d": self.d,
            "k": self.k,
            "n_codewords": self.n_codewords,
            "seed": self.seed,
            "params": self.params,
            "train_mse": self.train_mse,
            "heldout_mse": self.heldout_mse,
            "version": self.version,
        }
        extra = self.structure.meta() if self.structure is not None else {}
        clash = set(extra) & (set(fields) | {"family", "design_seconds", "content_hash"})
        if clash:
            raise ValueError(f"structure fields {sorted(clash)} clash with the codebook's own fields")
        fields.update(extra)
        if self.family != ShellStructure.family:
            fields["family"] = self.family
        return fields

    def _hashed_arrays(self) -> tuple[tuple[str, np.ndarray, str], ...]:
        own = (("points", self.points, "<f8"), ("initial_points", self.initial_points, "<f8"))
        return own + (self.structure.arrays() if self.structure is not None else ())

    def _compute_hash(self) -> str:
        h = hashlib.sha256(_HASH_TAG)
        h.update(_canonical_json(self._defining()).encode())
        for _, arr, dt in self._hashed_arrays():
            h.update(np.ascontiguousarray(arr, dtype=dt).tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codebook) and other.content_hash == self.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        shells = f"n_shells={self.structure.n_shells}, " if (self.structure is not None and self.structure.has_shells) else ""
        family = "" if self.family == ShellStructure.family else f"family={self.family!r}, "
        return (
            f"Codebook({family}d={self.d}, k={self.k}, n_codewords={self.n_codewords}, seed={self.seed}, "
            f"rate_bits={self.rate_bits:.4g}, {shells}heldout_mse={self.heldout_mse:.6g}, "
            f"hash={self.content_hash[:12]})"
        )

    # --------------------------------------------------------------- properties
    @property
    def n_codewords(self) -> int:
        """Number of codewords ``N``."""
        return int(self.points.shape[0])

    @property
    def rate_bits(self) -> float:
        r"""Bits per coordinate :math:`b = \log_2(N)/k`."""
        return math.log2(self.n_codewords) / self.k

    @property
    def mse_per_coordinate(self) -> float:
        """Held-out distortion per coordinate, ``heldout_mse / d``."""
        return self.heldout_mse / self.d

    # ------------------------------------------------------------------- coding
    def quantize(self, blocks: np.ndarray, *, method: str = "exhaustive") -> tuple[np.ndarray, np.ndarray]:
        """Nearest codeword of every block.

        Parameters
        ----------
        blocks : array_like, shape (n, k)
            Blocks to quantize (finite reals).
        method : {"exhaustive", "kdtree", "auto", "structured"}
            Search; see :func:`~fibquant_theory.codebooks.lloyd.nearest_codeword`.
            ``"structured"`` is the family's exact closed-form decoder
            (:meth:`CodebookStructure.search <fibquant_theory.codebooks.structure.CodebookStructure.search>`;
            ``ValueError`` for a family without one).

        Returns
        -------
        indices : numpy.ndarray, shape (n,), int64
        reconstruction : numpy.ndarray, shape (n, k)
            ``points[indices]``.
        """
        if method == "structured":
            if self.structure is None:
                raise ValueError(f"this codebook (family {POINTS_FAMILY!r}) has no exact structured decoder")
            idx, _ = self.structure.search(self.points).search(blocks)
        else:
            idx, _ = nearest_codeword(blocks, self.points, method=method)
        return idx, self.points[idx]

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Codewords for integer ``indices`` of any shape; returns shape ``indices.shape + (k,)``.

        Parameters
        ----------
        indices : numpy.ndarray
            Codeword indices in ``[0, N)``, any shape.

        Returns
        -------
        numpy.ndarray
            The codewords, shape ``indices.shape + (k,)``.
        """
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_codewords):
            raise ValueError(f"indices must lie in [0, {self.n_codewords}), got range [{idx.min()}, {idx.max()}]")
        return self.points[idx]

    def summary(self) -> dict[str, Any]:
        """Scalar facts of the codebook as a JSON-serialisable dict (``n_shells``, ``directions``: ``None`` without shells).

        Returns
        -------
        dict of str to Any
            Family, ``d``, ``k``, ``n_codewords``, seed, rate, shells and directions, training and held-out
            distortions, design time and content hash.
        """
        shelled = (self.structure is not None and self.structure.has_shells)
        return {
            "family": self.family,
            "d": self.d,
            "k": self.k,
            "n_codewords": self.n_codewords,
            "seed": self.seed,
            "rate_bits": self.rate_bits,
            "n_shells": self.structure.n_shells if shelled else None,
            "directions": self.structure.directions if shelled else None,
            "train_mse": self.train_mse,
            "heldout_mse": self.heldout_mse,
            "mse_per_coordinate": self.mse_per_coordinate,
            "design_seconds": self.design_seconds,
            "content_hash": self.content_hash,
            "version": self.version,
        }


# ------------------------------------------------------------------ storage
def save_codebook(codebook: Codebook, path: str | os.PathLike[str]) -> Path:
    """Write ``codebook`` to an ``.npz`` file (atomically: a temporary file is renamed).

    Parameters
    ----------
    codebook : Codebook
        The codebook.
    path : str or os.PathLike
        Destination; parent folders are created.

    Returns
    -------
    pathlib.Path
        The path written (with the permissions the process's umask gives a new file).

    Raises
    ------
    OSError
        If the file cannot be written (e.g. the folder is read-only).
    """
    if not isinstance(codebook, Codebook):
        raise TypeError(f"expected a Codebook, got {type(codebook).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(codebook._defining())
    meta["design_seconds"] = codebook.design_seconds
    meta["content_hash"] = codebook.content_hash
    buf = io.BytesIO()
    # the shells family writes exactly the arrays of the format before families
    arrays = {name: arr for name, arr, _ in codebook._hashed_arrays()}
    np.savez(buf, **arrays, meta=np.array(_canonical_json(meta)))
    # O_EXCL with mode 0o666: the file gets the caller's umask, like any file it creates
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}-{path.name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_codebook(path: str | os.PathLike[str]) -> Codebook:
    """Read a codebook written by :func:`save_codebook` and verify its content hash.

    A file without a ``family`` field is a shells design (every file written before
    families); other families are read through
    :data:`~fibquant_theory.codebooks.families.FAMILIES`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.

    Returns
    -------
    Codebook

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable codebook (any failure to parse it), has
        another format version or an unknown family, lacks a content hash, or its
        content does not match the stored hash (corrupt or modified).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no codebook file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            family = meta.get("family", ShellStructure.family) if isinstance(meta, dict) else None
            kind = FAMILIES.get(family) if isinstance(family, str) else None  # None: bare points or unknown
            names = ("points", "initial_points") + (kind.array_names() if kind is not None else ())
            arrays = {name: np.array(z[name]) for name in names}
    except Exception as exc:  # noqa: BLE001 - any failure to parse (zipfile, zlib, npy, json, ...) means corrupt
        raise ValueError(f"{path}: not a readable FibQuant codebook file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt codebook metadata")  # noqa: TRY004 - a corrupt file, not a caller error
    if family != POINTS_FAMILY and kind is None:
        raise ValueError(f"{path}: unknown codebook family {family!r}; this library reads {sorted(FAMILIES)}")
    version = meta.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: codebook format version {version!r}, this library reads {READABLE_VERSIONS}")
    stored_hash = meta.get("content_hash")
    if not (isinstance(stored_hash, str) and len(stored_hash) == 64 and all(c in "0123456789abcdef" for c in stored_hash)):
        raise ValueError(f"{path}: corrupt codebook metadata (no valid content hash to verify: {stored_hash!r})")
    try:
        structure = kind.from_stored(meta, arrays) if kind is not None else None
        return Codebook(
            points=arrays["points"],
            d=meta["d"],
            k=meta["k"],
            seed=meta["seed"],
            params=meta["params"],
            train_mse=meta["train_mse"],
            heldout_mse=meta["heldout_mse"],
            design_seconds=meta["design_seconds"],
            initial_points=arrays["initial_points"],
            content_hash=stored_hash,
            version=version,
            family=family,
            structure=structure,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: corrupt codebook metadata ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
