r"""FibQuant codebooks: design, storage with an integrity hash, and an on-disk cache.

A codebook of :math:`N` points of the unit ball :math:`B^k` quantizes one
block of ``k`` coordinates of a uniform unit vector of :math:`\mathbb{R}^d`
(the spherical-Beta source :math:`f_{d,k}`) at the rate
:math:`b = \log_2(N)/k` bits per coordinate. :func:`design_codebook` builds it:

1. **training set** — ``n_train`` exact samples of :math:`f_{d,k}` (at least
   ``samples_per_codeword * N``) and an independent held-out set of
   ``n_heldout`` samples;
2. **shell search** — for every factorisation :math:`N = S\cdot M`
   (:func:`~fibquant_theory.shells.valid_factorisations`) the multi-shell
   initial codebook (Beta-quantile radii times quasi-uniform directions,
   :func:`~fibquant_theory.shells.shell_codebook`) is scored by its distortion
   on the first ``max(20000, 8 N)`` training samples;
3. **multi-restart Lloyd–Max** — up to ``n_restarts`` initial codebooks
   (the two best factorisations, then the Vogel sunflower for ``k = 2`` or
   random training samples, then randomly rotated copies of the best
   factorisation) are refined by :func:`~fibquant_theory.lloyd.lloyd_max` on the
   screening subset to relative tolerance ``restart_tol``; the best one is
   refined on the whole training set to ``tol``;
4. **held-out evaluation** by exhaustive (or exact k-d tree) nearest-codeword search.

Distortions are reported per *unit vector*: ``train_mse`` and ``heldout_mse``
are :math:`E\|u-\hat u\|^2 = (d/k)\,E\|y - Q(y)\|^2` over all ``d``
coordinates, comparable with :attr:`ScalarQuantizer.mse
<fibquant_theory.scalar.ScalarQuantizer.mse>`.

Every step is seeded and uses only machine-independent arithmetic (samples from
:func:`~fibquant_theory.source.standard_normal` and
:func:`~fibquant_theory.portable_math.beta_from_bits`, radii and directions from
:mod:`~fibquant_theory.portable_math`, products from
:mod:`~fibquant_theory.fixed_order`, Lloyd kernels without fastmath), so the same
arguments give a bit-identical codebook, with the same content hash, on every
x86-64 machine (``tests/test_reproducibility.py`` pins a few hashes). Designs
are cached under :func:`cache_dir` (environment variable
``FIBQUANT_CACHE_DIR``, default ``~/.cache/fibquant``) once per
``(d, k, N, seed, version, design parameters)``; cached files carry a SHA-256
content hash that is checked on load.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._validation import check_dim_block, check_int
from .directions import fibonacci_sunflower, resolve_direction_method
from .fixed_order import matmul_rows, row_sumsq
from .lloyd import assignment_method, lloyd_max, nearest_codeword
from .packing import MAX_CODEWORDS
from .rotation import haar_orthogonal
from .shells import beta_quantile_radii, shell_codebook, valid_factorisations
from .source import SphericalBeta

__all__ = [
    "CODEBOOK_VERSION",
    "Codebook",
    "FrozenParams",
    "cache_dir",
    "cache_path",
    "design_codebook",
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
#: Keyword-only arguments of design_codebook that do not change the design.
_NOT_DESIGN_OPTIONS = ("cache", "progress")

#: Samples that score each factorisation's initial codebook (at least 8 per codeword).
_FACTOR_SAMPLES = 20_000


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
            Search; see :func:`~fibquant_theory.lloyd.nearest_codeword`.

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


# -------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """The codebook cache folder: ``$FIBQUANT_CACHE_DIR`` or ``~/.cache/fibquant``."""
    env = os.environ.get("FIBQUANT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fibquant"


def _design_key(options: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical_json(options).encode()).hexdigest()[:12]


def cache_path(d: int, k: int, n_codewords: int, seed: int = 0, **design_options: Any) -> Path:
    """Cache file of the design ``(d, k, n_codewords, seed)`` with the given design options.

    ``design_options`` are the keyword arguments of :func:`design_codebook`
    that change the result (defaults filled in when omitted).
    """
    options = _design_options(**design_options)
    return cache_dir() / (
        f"fibquant-d{d}-k{k}-N{n_codewords}-s{seed}-v{CODEBOOK_VERSION}-{_design_key(options)}.npz"
    )


def _design_options(**overrides: Any) -> dict[str, Any]:
    """The result-changing options of :func:`design_codebook`, its defaults filled in.

    The defaults are read from :func:`design_codebook`'s signature, so the cache key
    can never disagree with the function.
    """
    params = inspect.signature(design_codebook).parameters
    names = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _NOT_DESIGN_OPTIONS]
    unknown = set(overrides) - set(names)
    if unknown:
        raise TypeError(f"unknown design options {sorted(unknown)}; known: {names}")
    return {n: overrides.get(n, params[n].default) for n in names}


# ------------------------------------------------------------------- design
def _rank_shells(points: np.ndarray, n_shells: int) -> np.ndarray:
    """Shell labels by radius rank: the ``N/S`` smallest radii are shell 0, and so on."""
    n = points.shape[0]
    order = np.argsort(row_sumsq(points), kind="stable")
    labels = np.empty(n, dtype=np.int64)
    labels[order] = (np.arange(n) * n_shells) // n
    return labels


def _distortion(samples: np.ndarray, points: np.ndarray, assign: str) -> float:
    _, dist = nearest_codeword(samples, points, method=assign)
    return float(dist.mean())


def design_codebook(
    d: int,
    k: int,
    n_codewords: int,
    seed: int = 0,
    *,
    n_train: int = 200_000,
    n_heldout: int = 100_000,
    samples_per_codeword: int = 128,
    n_restarts: int = 3,
    max_iter: int = 300,
    tol: float = 1e-4,
    restart_tol: float = 1e-3,
    directions: str = "auto",
    n_search: int = 50_000,
    assign: str = "auto",
    cache: bool = True,
    progress: bool = False,
) -> Codebook:
    r"""Design (or load from the cache) the FibQuant codebook for :math:`f_{d,k}` with ``N`` codewords.

    Parameters
    ----------
    d : int
        Dimension of the unit vectors, ``d >= 2``.
    k : int
        Block size, ``1 <= k <= d``, dividing ``d``.
    n_codewords : int
        Codebook size ``2 <= N <= 2**30``; the rate is :math:`\log_2(N)/k` bits per coordinate.
    seed : int
        Seed of the samples and of the random initialisations.
    n_train : int
        Training samples; the design uses ``max(n_train, samples_per_codeword * N)``.
    n_heldout : int
        Held-out samples for :attr:`Codebook.heldout_mse` (independent of the training set).
    samples_per_codeword : int
        Lower bound on training (and screening) samples per codeword.
    n_restarts : int
        Number of initial codebooks refined by Lloyd–Max (``>= 1``).
    max_iter : int
        Iteration cap of each Lloyd run.
    tol : float
        Relative-improvement tolerance of the final Lloyd run on all training samples.
    restart_tol : float
        Relative-improvement tolerance of the restarts on the screening subset.
    directions : str
        Direction family (see :func:`~fibquant_theory.directions.resolve_direction_method`).
    n_search : int
        Screening subset size (at least ``samples_per_codeword * N``, at most the training set).
    assign : {"auto", "exhaustive", "kdtree"}
        Nearest-codeword search of the Lloyd iterations and of the evaluation.
    cache : bool
        Load the design from / store it in :func:`cache_dir`. A cache file that
        cannot be read or verified is reported with a ``RuntimeWarning`` and
        replaced; a cache folder that cannot be written is reported with a
        ``RuntimeWarning`` and the design is returned uncached.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    Codebook

    Examples
    --------
    >>> cb = design_codebook(16, 2, 8, n_train=20_000, n_heldout=20_000, cache=False)
    >>> cb.points.shape, cb.rate_bits
    ((8, 2), 1.5)
    """
    d, k = check_dim_block(d, k)
    if d % k:
        raise ValueError(f"block size k={k} must divide the dimension d={d}")
    n_code = check_int(n_codewords, "n_codewords", minimum=2, maximum=MAX_CODEWORDS)
    seed = check_int(seed, "seed", minimum=0)
    options = _design_options(
        n_train=check_int(n_train, "n_train", minimum=1),
        n_heldout=check_int(n_heldout, "n_heldout", minimum=1),
        samples_per_codeword=check_int(samples_per_codeword, "samples_per_codeword", minimum=1),
        n_restarts=check_int(n_restarts, "n_restarts", minimum=1),
        max_iter=check_int(max_iter, "max_iter", minimum=1),
        tol=float(tol),
        restart_tol=float(restart_tol),
        directions=str(directions),
        n_search=check_int(n_search, "n_search", minimum=1),
        assign=str(assign),
    )
    for name in ("tol", "restart_tol"):
        if not (math.isfinite(options[name]) and options[name] >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {options[name]}")
    if assign not in ("auto", "exhaustive", "kdtree"):
        raise ValueError(f"assign must be 'auto', 'exhaustive' or 'kdtree', got {assign!r}")
    method = resolve_direction_method(k, directions)

    path = cache_path(d, k, n_code, seed, **options)
    if cache and path.exists():
        try:
            cb = load_codebook(path)
        except ValueError as exc:
            warnings.warn(f"ignoring a corrupt cached codebook, designing again: {exc}", RuntimeWarning, stacklevel=2)
        else:
            if (cb.d, cb.k, cb.n_codewords, cb.seed) == (d, k, n_code, seed) and cb.params.get("options") == options:
                return cb

    cb = _design(d, k, n_code, seed, options, method, progress)
    if cache:
        try:
            save_codebook(cb, path)
        except OSError as exc:
            warnings.warn(
                f"could not store the codebook in the cache ({exc}); returning it uncached "
                "(set FIBQUANT_CACHE_DIR to a writable folder, or pass cache=False)",
                RuntimeWarning,
                stacklevel=2,
            )
    return cb


def _design(
    d: int, k: int, n_code: int, seed: int, options: dict[str, Any], method: str, progress: bool
) -> Codebook:
    t0 = time.perf_counter()
    spc = options["samples_per_codeword"]
    n_train = max(options["n_train"], spc * n_code)
    n_search = min(n_train, max(options["n_search"], spc * n_code))
    assign = assignment_method(n_code, k) if options["assign"] == "auto" else options["assign"]
    source = SphericalBeta(d, k)
    train = source.rvs(n_train, seed=np.random.default_rng([1, seed, d, k, n_code]), method="radial")
    heldout = source.rvs(options["n_heldout"], seed=np.random.default_rng([2, seed, d, k, n_code]), method="radial")
    rng = np.random.default_rng([3, seed, d, k, n_code])
    screen = train[:n_search]
    scale = d / k
    bar = tqdm(desc=f"codebook d={d} k={k} N={n_code}", total=3, disable=not progress, leave=False)

    # 1. Shell search over the factorisations N = S * M.
    pairs = valid_factorisations(d, k, n_code)
    probe = screen[: min(n_search, max(_FACTOR_SAMPLES, 8 * n_code))]
    scored = []
    for s, m in tqdm(pairs, desc="factorisations", disable=not progress, leave=False):
        pts, labels, radii = shell_codebook(d, k, s, m, method)
        scored.append((_distortion(probe, pts, assign), s, m, pts, labels, radii))
    scored.sort(key=lambda t: (t[0], t[1]))
    factor_mse = {str(s): scale * mse for mse, s, _, _, _, _ in sorted(scored, key=lambda t: t[1])}
    bar.update(1)

    # 2. Initial codebooks for the restarts.
    best_s = scored[0][1]
    inits: list[tuple[str, np.ndarray, np.ndarray | None, int]] = []
    for _, s, _, pts, labels, _ in scored[:2]:
        inits.append((f"{method}:S={s}", pts, labels, s))
    if k == 2:
        inits.append(("sunflower", fibonacci_sunflower(n_code, d if d >= 3 else None), None, best_s))
    inits.append(("samples", screen[rng.choice(n_search, n_code, replace=False)], None, best_s))
    r = 0
    while len(inits) < options["n_restarts"]:
        _, s, _, pts, labels, _ = scored[0]
        rot = haar_orthogonal(k, int(rng.integers(2**31))) if k >= 2 else -np.eye(1)
        inits.append((f"{method}:S={s}:rotated{r}", matmul_rows(pts, rot.T), labels, s))
        r += 1
    inits = inits[: options["n_restarts"]]

    # 3. Multi-restart Lloyd on the screening subset, then the winner on all samples.
    runs = []
    for i, (name, pts, _, _) in enumerate(tqdm(inits, desc="restarts", disable=not progress, leave=False)):
        res = lloyd_max(
            pts, screen, max_iter=options["max_iter"], tol=options["restart_tol"], assign=assign, progress=progress,
            desc=f"restart {i}",
        )
        runs.append(res)
    winner = min(range(len(runs)), key=lambda i: (runs[i].mse, i))
    bar.update(1)
    final = lloyd_max(
        runs[winner].points, train, max_iter=options["max_iter"], tol=options["tol"], assign=assign,
        progress=progress, desc="final",
    )
    bar.update(1)
    bar.close()
    heldout_mse = scale * _distortion(heldout, final.points, assign)

    name, init_pts, labels, s_used = inits[winner]
    if labels is None:
        labels = _rank_shells(final.points, s_used)
    radii = beta_quantile_radii(d, k, s_used)
    params = {
        "options": options,
        "n_train_used": n_train,
        "n_search_used": n_search,
        "n_factor_samples": int(probe.shape[0]),
        "assign_used": assign,
        "direction_method": method,
        "factorisation_mse": factor_mse,
        "restarts": [
            {"init": nm, "screen_mse": scale * res.mse, "n_iter": res.n_iter, "converged": res.converged}
            for (nm, _, _, _), res in zip(inits, runs)
        ],
        "winner": winner,
        "init": name,
        "factorisation": [s_used, n_code // s_used],
        "final_n_iter": final.n_iter,
        "final_converged": final.converged,
        "n_empty_fixed": int(sum(r.n_empty_fixed for r in runs) + final.n_empty_fixed),
    }
    return Codebook(
        points=final.points,
        d=d,
        k=k,
        seed=seed,
        n_shells=s_used,
        shell_radii=radii,
        shell_index=labels,
        directions=method if ":" in name else name,
        params=params,
        train_mse=scale * final.mse,
        heldout_mse=heldout_mse,
        design_seconds=time.perf_counter() - t0,
        initial_points=init_pts,
    )
