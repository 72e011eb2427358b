"""Norm headers: the ``float16`` / ``bfloat16`` / ``float32`` formats every codec stores its norms in.

A codec that normalises its vectors (FibQuant, TurboQuant) stores each norm as
the bit pattern of one header format, and counts it at that width
(:data:`NORM_DTYPES`). :func:`encode_norms` rounds norms to the format and
refuses what it cannot hold (overflow, or a non-zero norm below the smallest
normal number); :func:`decode_norms` is its inverse and refuses corrupt
patterns. :func:`header_array` and :func:`check_header_array` are the same for
arrays of any shape kept unpacked (TurboQuant's reference codes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORM_DTYPES", "check_header_array", "check_norm_dtype", "decode_norms", "encode_norms", "header_array"]

#: Norm-header formats and their width in bits.
NORM_DTYPES: dict[str, int] = {"float16": 16, "bfloat16": 16, "float32": 32}
#: Smallest normal number of every header format: smaller non-zero norms are refused, like overflowing ones.
_SMALLEST_NORMAL = {"float16": 2.0**-14, "bfloat16": 2.0**-126, "float32": 2.0**-126}


def check_norm_dtype(norm_dtype: object) -> str:
    """``norm_dtype`` itself when it is a key of :data:`NORM_DTYPES`; ``ValueError`` naming the choices otherwise.

    Parameters
    ----------
    norm_dtype : object
        The header format to check.

    Returns
    -------
    str
        ``norm_dtype``.
    """
    if not isinstance(norm_dtype, str) or norm_dtype not in NORM_DTYPES:
        raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
    return norm_dtype


def encode_norms(norms: object, norm_dtype: str = "float16") -> np.ndarray:
    """Round non-negative norms to ``norm_dtype`` and return their bit patterns.

    Parameters
    ----------
    norms : array_like
        Norms, shape ``(n,)``, finite and ``>= 0``.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Header format. ``float16``/``float32`` round to nearest even from
        float64; ``bfloat16`` rounds the float32 value to nearest even.

    Returns
    -------
    numpy.ndarray
        Bit patterns, shape ``(n,)``, int64 in ``[0, 2**bits)``.

    Raises
    ------
    ValueError
        A norm that is negative, not finite, overflows the format, or is
        non-zero but below the format's smallest normal number (where it would
        keep only a few bits, or round to 0). The message names the first such
        row and suggests ``float32``. Exact zeros are stored exactly.
    """
    check_norm_dtype(norm_dtype)
    v = np.asarray(norms, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"norms must have shape (n,), got {v.shape}")
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        raise ValueError(f"norms must be finite and >= 0 (first bad row {int(np.flatnonzero(bad)[0])})")
    with np.errstate(over="ignore"):
        if norm_dtype == "float16":
            r = v.astype(np.float16)
            bits = r.view(np.uint16).astype(np.int64)
        else:
            r = v.astype(np.float32)
            u = r.view(np.uint32).astype(np.int64)
            if norm_dtype == "bfloat16":
                u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
                r = (u << 16).astype(np.uint32).view(np.float32)
            bits = u
    over = ~np.isfinite(r)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        hint = "use norm_dtype='float32'" if norm_dtype != "float32" else "rescale the data"
        raise ValueError(f"the norm of row {i} ({v[i]:.6g}) overflows the {norm_dtype} norm header; {hint}")
    under = (v > 0) & (v < _SMALLEST_NORMAL[norm_dtype])
    if under.any():
        i = int(np.flatnonzero(under)[0])
        hint = "use norm_dtype='float32'" if norm_dtype == "float16" else "rescale the data"
        raise ValueError(
            f"the norm of row {i} ({v[i]:.6g}) is below the smallest normal {norm_dtype} "
            f"({_SMALLEST_NORMAL[norm_dtype]:.3g}) and would lose its precision in the norm header; {hint}"
        )
    return bits


def _header_values(bits: np.ndarray, norm_dtype: str) -> np.ndarray:
    """Float64 values of header bit patterns (no checks)."""
    b = np.asarray(bits, dtype=np.int64)
    if norm_dtype == "float16":
        return b.astype(np.uint16).view(np.float16).astype(np.float64)
    if norm_dtype == "bfloat16":
        return (b << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def decode_norms(bits: object, norm_dtype: str = "float16", first_record: int = 0) -> np.ndarray:
    """Norms from header bit patterns (inverse of :func:`encode_norms`).

    Parameters
    ----------
    bits : array_like
        Bit patterns, shape ``(n,)``, integers.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Header format.
    first_record : int
        Number of the first record, for error messages.

    Returns
    -------
    numpy.ndarray
        Norms, shape ``(n,)``, float64.

    Raises
    ------
    ValueError
        Naming the first record (numbered from ``first_record``) whose header
        is not a finite, non-negative number (corrupt data).
    """
    check_norm_dtype(norm_dtype)
    v = _header_values(np.asarray(bits), norm_dtype)
    bad = ~np.isfinite(v) | np.signbit(v)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"packed data is corrupt: record {first_record + i} has norm header {float(v[i])!r} (not a finite number >= 0)"
        )
    return v


def _pattern_dtype(norm_dtype: str) -> type:
    return np.uint16 if NORM_DTYPES[norm_dtype] == 16 else np.uint32


def header_array(values: object, norm_dtype: str) -> np.ndarray:
    """Header bit patterns of norms of any shape, rounded to ``norm_dtype`` (:func:`encode_norms` per entry).

    Parameters
    ----------
    values : array_like
        Norms, any shape ``S``, finite and ``>= 0``.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Header format.

    Returns
    -------
    numpy.ndarray
        Bit patterns, shape ``S``, uint16 (16-bit formats) or uint32.

    Raises
    ------
    ValueError
        As :func:`encode_norms` (e.g. a norm that overflows the format).
    """
    v = np.asarray(values, dtype=np.float64)
    return encode_norms(v.reshape(-1), norm_dtype).astype(_pattern_dtype(norm_dtype)).reshape(v.shape)


def check_header_array(bits: object, norm_dtype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Validate stored header bit patterns: integers of ``shape`` that decode to finite norms ``>= 0``.

    Parameters
    ----------
    bits : array_like
        Bit patterns, shape ``shape``, integers in ``[0, 2**width)``.
    norm_dtype : {"float16", "bfloat16", "float32"}
        Header format.
    shape : tuple of int
        Expected shape.
    name : str
        Name of the argument in error messages.

    Returns
    -------
    numpy.ndarray
        The patterns as a read-only uint16 (16-bit formats) or uint32 array of shape ``shape``.

    Raises
    ------
    ValueError
        A wrong shape or dtype, a pattern out of range, or one that is not a finite number ``>= 0``.
    """
    arr = np.asarray(bits)
    if arr.shape != shape or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer header bit patterns of shape {shape}, got {arr.dtype} {arr.shape}")
    width = NORM_DTYPES[norm_dtype]
    if arr.size and (arr.min() < 0 or arr.max() >= 2**width):
        raise ValueError(f"{name} must be {width}-bit patterns")
    out = arr.astype(_pattern_dtype(norm_dtype))
    decode_norms(out.reshape(-1).astype(np.int64), norm_dtype)  # raises on corrupt headers
    out.setflags(write=False)
    return out
