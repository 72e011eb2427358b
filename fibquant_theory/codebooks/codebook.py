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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fibquant_theory._validation import check_dim_block, check_int
from fibquant_theory.codebooks.lloyd import nearest_codeword

__all__ = [
    "CODEBOOK_VERSION",
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


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True, order="C")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Codebook:
    r"""A FibQuant codebook for blocks of ``k`` coordinates of unit vectors in :math:`\mathbb{R}^d`.

    Build one with :func:`design_codebook`; load one with :func:`load_codebook`.
    The constructor validates every field and computes :attr:`content_hash`
    (if a non-empty ``content_hash`` is passed it must match, otherwise
    ``ValueError`` is raised: this is how corrupt files are detected).

    Attributes
    ----------
    points : numpy.ndarray, shape (N, k)
        Codewords (read-only float64).
    d, k : int
        Ambient dimension and block size (``k`` divides ``d``).
    seed : int
        Seed of the design.
    n_shells : int
        Number of radius shells :math:`S`.
    shell_radii : numpy.ndarray, shape (S,)
        Beta-quantile radii of the shells (increasing).
    shell_index : numpy.ndarray, shape (N,), int64
        Shell of every codeword: the shell it was initialised on (for an
        initialisation without shells, the rank of its radius in groups of ``N/S``).
    directions : str
        Direction family of the initial codebook (``"sign"``,
        ``"fibonacci-circle"``, ``"fibonacci-sphere"``, ``"roberts-kronecker"``)
        or the non-shell initialisation that won (``"sunflower"``, ``"samples"``).
    params : FrozenParams
        Construction parameters and design record (JSON-serialisable, read-only).
    train_mse, heldout_mse : float
        :math:`E\|u-\hat u\|^2` of a unit vector over all ``d`` coordinates, on
        the training and on the held-out samples.
    design_seconds : float
        Wall-clock seconds of the design, finite and ``>= 0`` (not part of the hash).
    initial_points : numpy.ndarray, shape (N, k)
        The initial codebook of the winning restart.
    content_hash : str
        Hex SHA-256 of the points, shells, initial points and defining fields.
    version : int
        :data:`CODEBOOK_VERSION` of the design.
    """

    points: np.ndarray
    d: int
    k: int
    seed: int
    n_shells: int
    shell_radii: np.ndarray
    shell_index: np.ndarray
    directions: str
    params: dict[str, Any]
    train_mse: float
    heldout_mse: float
    design_seconds: float
    initial_points: np.ndarray
    content_hash: str = ""
    version: int = CODEBOOK_VERSION

    def __post_init__(self) -> None:
        d, k = check_dim_block(self.d, self.k)
        if d % k:
            raise ValueError(f"block size k={k} must divide d={d}")
        points = _readonly(self.points, np.float64)
        if points.ndim != 2 or points.shape[1] != k or points.shape[0] < 2:
            raise ValueError(f"points must have shape (N, {k}) with N >= 2, got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or Inf")
        init = _readonly(self.initial_points, np.float64)
        if init.shape != points.shape:
            raise ValueError(f"initial_points must have shape {points.shape}, got {init.shape}")
        s = check_int(self.n_shells, "n_shells", minimum=1)
        radii = _readonly(self.shell_radii, np.float64)
        if radii.shape != (s,) or (s > 1 and not np.all(np.diff(radii) > 0)):
            raise ValueError(f"shell_radii must be {s} increasing radii, got {radii}")
        labels = np.asarray(self.shell_index)
        if labels.shape != (points.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"shell_index must be integers of shape ({points.shape[0]},), got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= s):
            raise ValueError(f"shell_index must lie in [0, {s})")
        labels = _readonly(labels, np.int64)
        for name, value in (("train_mse", self.train_mse), ("heldout_mse", self.heldout_mse)):
            if not (isinstance(value, (float, int, np.floating)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"params must be a mapping, got {type(self.params).__name__}")
        params = _freeze(json.loads(_canonical_json(dict(self.params))))
        seconds = self.design_seconds
        if not (isinstance(seconds, (float, int, np.floating, np.integer)) and not isinstance(seconds, bool)
                and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"design_seconds must be a finite number >= 0, got {seconds!r}")
        if not isinstance(self.directions, str):
            raise ValueError(f"directions must be a string, got {self.directions!r}")
        if not isinstance(self.content_hash, str):
            raise ValueError(f"content_hash must be a hex string, got {self.content_hash!r}")
        set_ = object.__setattr__
        set_(self, "d", d)
        set_(self, "k", k)
        set_(self, "seed", check_int(self.seed, "seed", minimum=0))
        set_(self, "n_shells", s)
        set_(self, "points", points)
        set_(self, "initial_points", init)
        set_(self, "shell_radii", radii)
        set_(self, "shell_index", labels)
        set_(self, "params", params)
        set_(self, "train_mse", float(self.train_mse))
        set_(self, "heldout_mse", float(self.heldout_mse))
        set_(self, "design_seconds", float(seconds))
        set_(self, "version", check_int(self.version, "version", minimum=1))
        digest = self._compute_hash()
        if self.content_hash and self.content_hash != digest:
            raise ValueError(
                f"codebook content hash mismatch (stored {self.content_hash[:16]}..., "
                f"computed {digest[:16]}...): the data are corrupt or were modified"
            )
        set_(self, "content_hash", digest)

    # ----------------------------------------------------------------- identity
    def _defining(self) -> dict[str, Any]:
        return {
            "d": self.d,
            "k": self.k,
            "n_codewords": self.n_codewords,
            "seed": self.seed,
            "n_shells": self.n_shells,
            "directions": self.directions,
            "params": self.params,
            "train_mse": self.train_mse,
            "heldout_mse": self.heldout_mse,
            "version": self.version,
        }

    def _compute_hash(self) -> str:
        h = hashlib.sha256(_HASH_TAG)
        h.update(_canonical_json(self._defining()).encode())
        for arr, dt in (
            (self.points, "<f8"),
            (self.initial_points, "<f8"),
            (self.shell_radii, "<f8"),
            (self.shell_index, "<i8"),
        ):
            h.update(np.ascontiguousarray(arr, dtype=dt).tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codebook) and other.content_hash == self.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        return (
            f"Codebook(d={self.d}, k={self.k}, n_codewords={self.n_codewords}, seed={self.seed}, "
            f"rate_bits={self.rate_bits:.4g}, n_shells={self.n_shells}, heldout_mse={self.heldout_mse:.6g}, "
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
        method : {"exhaustive", "kdtree", "auto"}
            Search; see :func:`~fibquant_theory.codebooks.lloyd.nearest_codeword`.

        Returns
        -------
        indices : numpy.ndarray, shape (n,), int64
        reconstruction : numpy.ndarray, shape (n, k)
            ``points[indices]``.
        """
        idx, _ = nearest_codeword(blocks, self.points, method=method)
        return idx, self.points[idx]

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Codewords for integer ``indices`` of any shape; returns shape ``indices.shape + (k,)``."""
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_codewords):
            raise ValueError(f"indices must lie in [0, {self.n_codewords}), got range [{idx.min()}, {idx.max()}]")
        return self.points[idx]

    def summary(self) -> dict[str, Any]:
        """Scalar facts of the codebook as a JSON-serialisable dict."""
        return {
            "d": self.d,
            "k": self.k,
            "n_codewords": self.n_codewords,
            "seed": self.seed,
            "rate_bits": self.rate_bits,
            "n_shells": self.n_shells,
            "directions": self.directions,
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
    np.savez(
        buf,
        points=codebook.points,
        initial_points=codebook.initial_points,
        shell_radii=codebook.shell_radii,
        shell_index=codebook.shell_index,
        meta=np.array(_canonical_json(meta)),
    )
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
        another format version, lacks a content hash, or its content does not
        match the stored hash (corrupt or modified).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no codebook file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: np.array(z[name]) for name in ("points", "initial_points", "shell_radii", "shell_index")}
            meta = json.loads(str(z["meta"]))
    except Exception as exc:  # noqa: BLE001 - any failure to parse (zipfile, zlib, npy, json, ...) means corrupt
        raise ValueError(f"{path}: not a readable FibQuant codebook file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt codebook metadata")  # noqa: TRY004 - a corrupt file, not a caller error
    version = meta.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: codebook format version {version!r}, this library reads {READABLE_VERSIONS}")
    stored_hash = meta.get("content_hash")
    if not (isinstance(stored_hash, str) and len(stored_hash) == 64 and all(c in "0123456789abcdef" for c in stored_hash)):
        raise ValueError(f"{path}: corrupt codebook metadata (no valid content hash to verify: {stored_hash!r})")
    try:
        return Codebook(
            points=arrays["points"],
            d=meta["d"],
            k=meta["k"],
            seed=meta["seed"],
            n_shells=meta["n_shells"],
            shell_radii=arrays["shell_radii"],
            shell_index=arrays["shell_index"],
            directions=meta["directions"],
            params=meta["params"],
            train_mse=meta["train_mse"],
            heldout_mse=meta["heldout_mse"],
            design_seconds=meta["design_seconds"],
            initial_points=arrays["initial_points"],
            content_hash=stored_hash,
            version=version,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: corrupt codebook metadata ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
