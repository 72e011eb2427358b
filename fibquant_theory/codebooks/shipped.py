r"""Codebooks shipped with the package: a manifest of designed ``.npz`` files, verified by SHA-256 on load.

Large codebooks (e.g. ``k = 8``, ``N = 65536``) take hours to design on a CPU; they are
designed once on a GPU (``research/gpu_design_codebooks.py``) and shipped in the package
folder ``fibquant_theory/codebooks/data/`` (:func:`data_dir`), so that users load them.
``data/manifest.json`` is a JSON list with one object per file:

``d``, ``k``, ``N``, ``seed``, ``family``
    the design (one entry per ``(d, k, N, seed, family)``);
``implementation``
    ``"torch"`` or ``"numba"`` (``params["implementation"]``, ``"numba"`` when absent);
``file``
    the file name inside the folder;
``sha256``
    SHA-256 of the file's bytes;
``heldout_mse``
    the codebook's :attr:`~fibquant_theory.codebooks.codebook.Codebook.heldout_mse`.

:func:`~fibquant_theory.codebooks.design.design_codebook` (with ``cache=True``) asks
:func:`shipped_codebook` first. A shipped file is checked three ways before it is returned:
its SHA-256 against the manifest, its own content hash
(:func:`~fibquant_theory.codebooks.codebook.load_codebook`) and its fields against the
entry; any failure raises :class:`ShippedCodebookError` (a ``ValueError``) naming the file,
never a silent re-design.

:func:`list_shipped` lists what is shipped; :func:`save_shipped` writes a codebook in the
shipped layout (every array in its narrowest exact dtype: a design rounded to float32 by
:func:`~fibquant_theory.codebooks.torch_design.float32_rounded` takes half the bytes);
the GPU designs are shipped that way — about 19 MiB for the set of ``research/gpu_design_codebooks.py``
instead of 37 MiB in float64, for a relative change of the points below :math:`2^{-24}` and of the
distortion of order :math:`10^{-10}`; ``params`` keep the float64 design's content hash and MSEs;
:func:`import_shipped` copies the files of another folder's manifest (the GPU script's
output) into the package folder, verifying each, and merges the manifests.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fibquant_theory.codebooks.codebook import Codebook, _canonical_json, load_codebook

__all__ = [
    "MANIFEST_FIELDS",
    "MANIFEST_NAME",
    "ShippedCodebookError",
    "data_dir",
    "file_sha256",
    "find_entry",
    "import_shipped",
    "list_shipped",
    "load_entry",
    "manifest_entry",
    "read_manifest",
    "save_shipped",
    "shipped_codebook",
    "write_manifest",
]

#: The folder of the shipped codebooks (tests point it elsewhere).
_DATA_DIR = Path(__file__).resolve().parent / "data"
#: File name of the manifest inside the folder.
MANIFEST_NAME = "manifest.json"
#: Fields of every manifest entry.
MANIFEST_FIELDS = ("d", "k", "N", "seed", "family", "implementation", "file", "sha256", "heldout_mse")
_KEY = ("d", "k", "N", "seed", "family")


class ShippedCodebookError(ValueError):
    """A shipped codebook or the manifest is corrupt, missing or inconsistent."""


def data_dir() -> Path:
    """The folder of the shipped codebooks and their manifest.

    Returns
    -------
    pathlib.Path
        ``fibquant_theory/codebooks/data`` of the installed package.
    """
    return _DATA_DIR


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not set(MANIFEST_FIELDS) <= set(entry):
        raise ShippedCodebookError(f"{where}: a manifest entry must be an object with the fields {MANIFEST_FIELDS}, got {entry!r}")
    for name in ("d", "k", "N", "seed"):
        if type(entry[name]) is not int or entry[name] < 0:
            raise ShippedCodebookError(f"{where}: field {name!r} must be an integer >= 0, got {entry[name]!r}")
    for name in ("family", "implementation", "file", "sha256"):
        if not isinstance(entry[name], str) or not entry[name]:
            raise ShippedCodebookError(f"{where}: field {name!r} must be a non-empty string, got {entry[name]!r}")
    if Path(entry["file"]).name != entry["file"]:
        raise ShippedCodebookError(f"{where}: field 'file' must be a bare file name inside the folder, got {entry['file']!r}")
    if len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in entry["sha256"]):
        raise ShippedCodebookError(f"{where}: field 'sha256' must be 64 lowercase hex digits, got {entry['sha256']!r}")
    if not isinstance(entry["heldout_mse"], (int, float)) or isinstance(entry["heldout_mse"], bool):
        raise ShippedCodebookError(f"{where}: field 'heldout_mse' must be a number, got {entry['heldout_mse']!r}")
    return entry


def read_manifest(folder: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The manifest entries of a folder (no manifest file: none).

    Parameters
    ----------
    folder : str, os.PathLike or None
        The folder; ``None``: :func:`data_dir`.

    Returns
    -------
    list of dict
        The entries, each with the fields :data:`MANIFEST_FIELDS`.

    Raises
    ------
    ShippedCodebookError
        If the manifest is not a JSON list of valid entries, or lists a design twice.
    """
    path = Path(folder if folder is not None else data_dir()) / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShippedCodebookError(f"{path}: not a readable manifest ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, list):
        raise ShippedCodebookError(f"{path}: the manifest must be a JSON list, got {type(raw).__name__}")
    entries = [_check_entry(e, str(path)) for e in raw]
    keys = [tuple(e[f] for f in _KEY) for e in entries]
    dupes = sorted({key for key in keys if keys.count(key) > 1})
    if dupes:
        raise ShippedCodebookError(f"{path}: designs listed more than once (d, k, N, seed, family): {dupes}")
    return entries


def find_entry(
    family: str, d: int, k: int, n_codewords: int, seed: int, folder: str | os.PathLike[str] | None = None
) -> dict[str, Any] | None:
    """The manifest entry of ``(d, k, N, seed, family)``, or ``None`` when it is not shipped.

    Parameters
    ----------
    family : str
        Codebook family.
    d, k, n_codewords, seed : int
        The design.
    folder : str, os.PathLike or None
        The folder; ``None``: :func:`data_dir`.

    Returns
    -------
    dict or None
        The entry.
    """
    key = (d, k, n_codewords, seed, family)
    for entry in read_manifest(folder):
        if tuple(entry[f] for f in _KEY) == key:
            return entry
    return None


def load_entry(entry: dict[str, Any], folder: str | os.PathLike[str] | None = None) -> Codebook:
    """Load the file of a manifest entry after checking its SHA-256, content hash and fields.

    Parameters
    ----------
    entry : dict
        A manifest entry.
    folder : str, os.PathLike or None
        The folder; ``None``: :func:`data_dir`.

    Returns
    -------
    Codebook
        The verified codebook.

    Raises
    ------
    ShippedCodebookError
        If the file is missing, its SHA-256 differs from the manifest's, it is not a valid
        codebook, or its fields differ from the entry.
    """
    path = Path(folder if folder is not None else data_dir()) / entry["file"]
    if not path.is_file():
        raise ShippedCodebookError(
            f"the manifest lists the shipped codebook {path}, but the file is missing (incomplete installation: "
            "reinstall the package; its package data must include codebooks/data/*.npz)"
        )
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise ShippedCodebookError(
            f"shipped codebook {path} is corrupt: SHA-256 {digest[:16]}... but the manifest says "
            f"{entry['sha256'][:16]}... (reinstall the package)"
        )
    try:
        cb = load_codebook(path)
    except ValueError as exc:
        raise ShippedCodebookError(f"shipped codebook {path} is corrupt: {exc}") from exc
    got = {"d": cb.d, "k": cb.k, "N": cb.n_codewords, "seed": cb.seed, "family": cb.family,
           "implementation": cb.params.get("implementation", "numba"), "heldout_mse": cb.heldout_mse}
    wrong = {f: (v, entry[f]) for f, v in got.items() if v != entry[f]}
    if wrong:
        raise ShippedCodebookError(f"shipped codebook {path} does not match its manifest entry (file, manifest): {wrong}")
    return cb


def shipped_codebook(
    family: str, d: int, k: int, n_codewords: int, seed: int, options: dict[str, Any], defaults: dict[str, Any]
) -> Codebook | None:
    """The shipped codebook of ``(d, k, N, seed, family)`` when the requested options allow it, else ``None``.

    It is returned when the requested result-changing ``options`` (without
    ``"implementation"``) are the ``defaults`` or those the shipped design was made with.

    Parameters
    ----------
    family : str
        Codebook family.
    d, k, n_codewords, seed : int
        The design.
    options : dict
        The requested design options (as in the cache key).
    defaults : dict
        The default design options of this family.

    Returns
    -------
    Codebook or None
        The verified shipped codebook, or ``None``.

    Raises
    ------
    ShippedCodebookError
        If the design is shipped but its file is corrupt (see :func:`load_entry`).
    """
    entry = find_entry(family, d, k, n_codewords, seed)
    if entry is None:
        return None
    cb = load_entry(entry)
    wanted = {n: v for n, v in options.items() if n != "implementation"}
    made = {n: v for n, v in dict(cb.params.get("options", {})).items() if n != "implementation"}
    return cb if wanted in (dict(defaults), made) else None


def manifest_entry(codebook: Codebook, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest entry of a codebook saved at ``path`` (the file's SHA-256 computed here).

    Parameters
    ----------
    codebook : Codebook
        The codebook written to ``path``.
    path : str or os.PathLike
        Its ``.npz`` file (the entry names the file only, not the folder).

    Returns
    -------
    dict
        The entry, fields :data:`MANIFEST_FIELDS` plus ``content_hash``.
    """
    return {
        "d": codebook.d,
        "k": codebook.k,
        "N": codebook.n_codewords,
        "seed": codebook.seed,
        "family": codebook.family,
        "implementation": codebook.params.get("implementation", "numba"),
        "file": Path(path).name,
        "sha256": file_sha256(path),
        "heldout_mse": codebook.heldout_mse,
        "content_hash": codebook.content_hash,
    }


def write_manifest(entries: list[dict[str, Any]], folder: str | os.PathLike[str]) -> Path:
    """Write a manifest (checked, sorted by design) into ``folder`` atomically.

    Parameters
    ----------
    entries : list of dict
        The entries (:func:`manifest_entry`); a design must appear once.
    folder : str or os.PathLike
        The folder (created if missing).

    Returns
    -------
    pathlib.Path
        The manifest file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checked = sorted((_check_entry(dict(e), str(folder)) for e in entries), key=lambda e: tuple(e[f] for f in _KEY))
    keys = [tuple(e[f] for f in _KEY) for e in checked]
    if len(set(keys)) != len(keys):
        raise ShippedCodebookError(f"designs listed more than once: {sorted({x for x in keys if keys.count(x) > 1})}")
    path = folder / MANIFEST_NAME
    tmp = folder / f".tmp-{secrets.token_hex(8)}-{MANIFEST_NAME}"
    tmp.write_text(json.dumps(checked, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def list_shipped(folder: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The shipped designs, one row per manifest entry (files not read).

    Parameters
    ----------
    folder : str, os.PathLike or None
        The folder; ``None``: :func:`data_dir`.

    Returns
    -------
    list of dict
        The entries sorted by ``(d, k, N, seed, family)``, each with ``rate_bits``
        (:math:`\\log_2 N / k`) and ``path`` (the file) added.
    """
    base = Path(folder if folder is not None else data_dir())
    rows = [{**e, "rate_bits": math.log2(e["N"]) / e["k"] if e["k"] else math.nan, "path": str(base / e["file"])}
            for e in read_manifest(base)]
    return sorted(rows, key=lambda e: tuple(e[f] for f in _KEY))


def _narrowest(arr: np.ndarray) -> np.ndarray:
    """``arr`` as float32 / int32 / int16 when that holds every value exactly, else unchanged."""
    if arr.dtype == np.float64:
        low = arr.astype(np.float32)
        return low if np.array_equal(low.astype(np.float64), arr) else arr
    if arr.dtype == np.int64:
        for kind in (np.int16, np.int32):
            info = np.iinfo(kind)
            if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
                return arr.astype(kind)
    return arr


def save_shipped(codebook: Codebook, path: str | os.PathLike[str]) -> Path:
    """Write a codebook as :func:`~fibquant_theory.codebooks.codebook.save_codebook` does, arrays narrowed.

    Every array is stored in the narrowest dtype that holds its values exactly (float32
    for float64 values that are float32 numbers, int16/int32 for small integers), so the
    file loads with :func:`~fibquant_theory.codebooks.codebook.load_codebook` to the same
    codebook (content hash checked here after writing).

    Parameters
    ----------
    codebook : Codebook
        The codebook.
    path : str or os.PathLike
        Destination ``.npz`` (parent folders are created; written atomically).

    Returns
    -------
    pathlib.Path
        The file.
    """
    if not isinstance(codebook, Codebook):
        raise TypeError(f"expected a Codebook, got {type(codebook).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**codebook._defining(), "design_seconds": codebook.design_seconds, "content_hash": codebook.content_hash}
    buf = io.BytesIO()
    np.savez(buf, **{name: _narrowest(arr) for name, arr, _ in codebook._hashed_arrays()},
             meta=np.array(_canonical_json(meta)))
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}-{path.name}"
    try:
        tmp.write_bytes(buf.getvalue())
        if load_codebook(tmp) != codebook:  # pragma: no cover - the narrowing is exact by construction
            raise RuntimeError(f"{path}: the narrowed file does not load to the same codebook")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def import_shipped(
    source: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *, replace: bool = False
) -> list[dict[str, Any]]:
    """Copy the codebooks listed in ``source``'s manifest into ``dest`` and merge the manifests.

    Every file is verified in ``source`` first (:func:`load_entry`: SHA-256, content hash,
    fields), copied, and verified again in ``dest``; ``dest``'s manifest is rewritten once,
    after all copies. A design already in ``dest`` with another file is an error unless
    ``replace``.

    Parameters
    ----------
    source : str or os.PathLike
        A folder with a manifest (e.g. the ``--out`` of ``research/gpu_design_codebooks.py``).
    dest : str, os.PathLike or None
        The target folder; ``None``: :func:`data_dir` (the package's own).
    replace : bool
        Replace designs already shipped in ``dest``.

    Returns
    -------
    list of dict
        The entries imported.

    Raises
    ------
    ShippedCodebookError
        If ``source`` lists nothing, a file fails its checks, or a design is already
        shipped with another file (and ``replace`` is false).
    """
    src = Path(source)
    target = Path(dest if dest is not None else data_dir())
    new = read_manifest(src)
    if not new:
        raise ShippedCodebookError(f"{src}: no manifest entries to import (is this the GPU script's --out?)")
    for entry in new:
        load_entry(entry, src)
    merged = {tuple(e[f] for f in _KEY): e for e in read_manifest(target)}
    for entry in new:
        key = tuple(entry[f] for f in _KEY)
        old = merged.get(key)
        if old is not None and old["sha256"] != entry["sha256"] and not replace:
            raise ShippedCodebookError(
                f"design {dict(zip(_KEY, key))} is already shipped in {target} as {old['file']}; pass replace=True"
            )
    target.mkdir(parents=True, exist_ok=True)
    for entry in new:
        if src.resolve() != target.resolve():
            shutil.copyfile(src / entry["file"], target / entry["file"])
        load_entry(entry, target)
        merged[tuple(entry[f] for f in _KEY)] = entry
    write_manifest(list(merged.values()), target)
    return new
