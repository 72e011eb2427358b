"""What the KV caches do with stored codes without decoding them: select positions, keep a prefix, count bytes.

Every codec of the registry selects its own codes (``codec.take``, see
:mod:`fibquant_theory.codecs.base`): indices, signs, norm headers and metadata
are indexed as they are, so no token is quantized twice. torch is not needed here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["codes_nbytes", "keep_tokens", "stored_norms", "take_codes"]


def codes_nbytes(codes: Any, codec: Any) -> int:
    """Stored bytes of a codes object.

    Parameters
    ----------
    codes : Codes
        Codes of ``codec``.
    codec : Codec
        The codec that made them.

    Returns
    -------
    int
        ``codes.nbytes``: the real size of packed codes (FibQuant, KIVI), and
        the fixed-rate packed size ``ceil(n * bits_per_vector / 8)`` of the
        reference TurboQuant codes (which keep one array entry per index/sign,
        for clarity). Codes without ``nbytes`` are counted at their codec's
        packed size, ``codec.packed_nbytes(n)``.
    """
    if hasattr(codes, "nbytes"):
        return int(codes.nbytes)
    return int(codec.packed_nbytes(math.prod(codes.shape)))


def take_codes(codes: Any, codec: Any, index: object, axis: int = 0) -> Any:
    """The codes of positions ``index`` along axis ``axis`` of the leading shape, exactly.

    The stored indices, signs, norm headers and metadata are indexed as they are
    (records are unpacked and packed again where they are bit-packed); nothing is
    decoded and re-encoded, so the result is identical to encoding the selected
    vectors.

    Parameters
    ----------
    codes : Codes
        Codes with leading shape ``codes.shape`` (FibQuantCodes, ScalarCodes,
        QJLCodes, KIVICodes, or those of any registered codec).
    codec : Codec
        The codec that made ``codes`` (its ``take`` does the work).
    index : array_like of int or bool
        Positions along ``axis`` (repeats and any order allowed), or a boolean mask.
    axis : int
        Axis of ``codes.shape``. For per-channel KIVI codes along their last
        (token) axis, only a prefix ``arange(n)`` is supported: the metadata of a
        token group cannot be split.

    Returns
    -------
    Codes
        The same kind of codes, with leading shape ``codes.shape`` where axis
        ``axis`` has ``len(index)`` entries.

    Raises
    ------
    TypeError
        A codec without ``take``, or codes that are not the codec's.
    ValueError, IndexError
        A bad axis or index (see :func:`fibquant_theory.codecs.base.take_positions`).
    """
    take = getattr(codec, "take", None)
    if not callable(take):
        raise TypeError(f"take_codes does not know codes of type {type(codes).__name__} (their codec has no take)")
    return take(codes, index, axis)


def keep_tokens(chunks: list[Any], codec: Any, n: int) -> list[Any]:
    """The first ``n`` tokens (last leading axis) of a list of token chunks of codes.

    Parameters
    ----------
    chunks : list of Codes
        Chunks of codes along their last leading (token) axis, in order.
    codec : Codec
        The codec that made them.
    n : int
        Tokens to keep (``<= 0``: none).

    Returns
    -------
    list of Codes
        The chunks that hold the first ``n`` tokens, the last one cut with :func:`take_codes`.
    """
    out, left = [], n
    for c in chunks:
        t = c.shape[-1]
        if left <= 0:
            break
        out.append(c if t <= left else take_codes(c, codec, np.arange(left), axis=-1))
        left -= t
    return out


def stored_norms(codes: Any, codec: Any) -> np.ndarray:
    """The norms that codes store in their headers, float64 of shape ``codes.shape``.

    Parameters
    ----------
    codes : Codes
        Codes of a codec that stores one norm per vector (FibQuant, TurboQuant-mse
        and -prod).
    codec : Codec
        The codec that made them.

    Returns
    -------
    numpy.ndarray
        The norms, as decoded from the headers.

    Raises
    ------
    TypeError
        Codes without a norm header (e.g. KIVI's, fp8's).
    """
    norms = getattr(codes, "norms", None)
    if norms is not None:
        return np.asarray(norms, dtype=np.float64).reshape(codes.shape)
    unpack = getattr(codec, "unpack", None)
    if callable(unpack) and hasattr(codec, "n_blocks"):
        return np.asarray(unpack(codes)[1], dtype=np.float64).reshape(codes.shape)
    raise TypeError(f"codes of type {type(codes).__name__} store no norm: norm correction needs FibQuant or TurboQuant")
