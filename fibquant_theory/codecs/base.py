r"""The codec protocol: what every codec has, and the accounting and serialisation they share.

Every codec of :data:`~fibquant_theory.codecs.registry.METHODS` satisfies
:class:`Codec` and its codes satisfy :class:`Codes`:

* ``d``, ``name``: dimension and registry name;
* ``encode(x)``: vectors ``(..., d)`` -> codes of leading shape ``S``;
* ``decode(codes)``: codes -> vectors of shape ``S + (d,)``, float64;
* ``decode_row(codes, i)``: vector ``i`` (a flat row-major index, or a tuple)
  alone, shape ``(d,)``, equal to the row of ``decode(codes)``;
* ``inner_product(q, codes)``: :math:`\langle q, x\rangle` estimated from the
  codes, ``q`` of shape ``(d,)`` or ``(..., d)`` broadcast against ``S``;
* ``take(codes, index, axis)``: the codes of positions ``index`` along axis
  ``axis`` of ``S``, exactly (nothing is decoded and encoded again);
* ``rate_bits``: bits per coordinate of the direction code (side information
  not counted); ``bits_per_vector``: storage of one vector, side information
  (norm headers, metadata) included; ``compression_ratio``:
  ``16 d / bits_per_vector``, the fp16 size over the code size;
* ``codes_type``: the class of its codes (whose ``from_bytes`` reads them back).

Codes have ``shape`` (the leading shape ``S``), ``nbytes`` (their stored size),
``to_bytes()`` and the class method ``from_bytes(data)``. The serialised form
is :func:`frame`: an 8-byte magic, a little-endian uint32 header length, a
sorted-key JSON header, the payload bytes and a little-endian CRC-32 of all
that precedes it; :func:`unframe` checks every part of it.

Optional: per-query score tables (``lookup_tables(q)``, FibQuant's per-block
tables :math:`L_{b,n}`) exist only where a codec has them.

:class:`RateAccounting` is the one copy of the rate and storage accounting:
a codec gives ``index_bits_per_vector`` (the direction code) and
``side_bits_per_vector`` (norm headers, metadata) and gets
``bits_per_vector``, ``rate_bits``, ``compression_ratio`` and
:meth:`~RateAccounting.packed_nbytes` from it.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from fibquant_theory._validation import check_bits, check_int

__all__ = [
    "FP16_BITS",
    "Codec",
    "Codes",
    "RateAccounting",
    "check_same_codec",
    "flat_index",
    "frame",
    "integer_bits",
    "take_positions",
    "unframe",
]

#: Bits of one fp16 coordinate: the reference of every compression ratio.
FP16_BITS = 16


@runtime_checkable
class Codes(Protocol):
    """What the codes of every codec have (see the module docstring)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def nbytes(self) -> int: ...

    def to_bytes(self) -> bytes:
        """The codes as one self-describing blob (:func:`frame`).

        Returns
        -------
        bytes
            Magic, JSON header, payload and CRC-32; ``from_bytes`` of the same class
            reads it back exactly.
        """

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Codes:
        """Inverse of ``to_bytes``: the codes a blob of :func:`frame` holds, checked part by part.

        Parameters
        ----------
        data : bytes-like
            A blob written by ``to_bytes`` of this class.

        Returns
        -------
        Codes
            The codes, of this class.

        Raises
        ------
        TypeError
            If ``data`` is not bytes-like.
        ValueError
            On a wrong magic, truncated or corrupt data (checksum mismatch) or
            an invalid header: every header field is checked for its type and
            range (an implementation names any further checks).
        """
        ...


@runtime_checkable
class Codec(Protocol):
    """What every registered codec has (see the module docstring)."""

    d: int
    name: str
    codes_type: type

    @property
    def rate_bits(self) -> float: ...

    @property
    def bits_per_vector(self) -> int | float: ...

    @property
    def compression_ratio(self) -> float: ...

    def encode(self, x: Any) -> Any:
        """Encode vectors.

        Parameters
        ----------
        x : array_like
            Vectors of shape ``(..., d)``, finite.

        Returns
        -------
        Codes
            Codes of leading shape ``x.shape[:-1]`` (an instance of ``codes_type``).

        Raises
        ------
        ValueError
            If the last dimension is not ``d``, or ``x`` holds NaN or Inf (an
            implementation names any further checks).
        """

    def decode(self, codes: Any) -> np.ndarray:
        """Reconstruct every vector of ``codes``.

        Parameters
        ----------
        codes : Codes
            Codes made by this codec (or one of the same configuration).

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``, float64 unless the codec takes a ``dtype``.
        """

    def decode_row(self, codes: Any, i: int | tuple[int, ...]) -> np.ndarray:
        """Reconstruct vector ``i`` alone (random access).

        Parameters
        ----------
        codes : Codes
            Codes made by this codec.
        i : int or tuple of int
            A flat (row-major) index into ``codes.shape``, or a tuple of indices.

        Returns
        -------
        numpy.ndarray
            Shape ``(d,)``, equal to the row ``i`` of ``decode(codes)``.
        """

    def inner_product(self, q: Any, codes: Any) -> np.ndarray:
        r"""Estimate :math:`\langle q, x\rangle` from the codes, without reconstructing ``x``.

        Parameters
        ----------
        q : array_like
            Queries of shape ``(d,)`` or ``(..., d)``, broadcast against ``codes.shape``.
        codes : Codes
            Codes made by this codec.

        Returns
        -------
        numpy.ndarray
            The estimates, of the broadcast leading shape, float64.
        """

    def take(self, codes: Any, index: np.ndarray, axis: int) -> Any:
        """The codes of positions ``index`` along axis ``axis`` of ``codes.shape``, exactly (nothing is decoded).

        Parameters
        ----------
        codes : Codes
            Codes of this codec, leading shape ``S``.
        index : array_like of int or bool
            Positions along ``axis`` (see :func:`take_positions`).
        axis : int
            Axis of ``S``.

        Returns
        -------
        Codes
            Leading shape ``S`` with ``len(index)`` entries along ``axis``.
        """
        ...


class RateAccounting:
    """Rate and storage accounting shared by every codec (a mixin).

    A subclass has ``d`` and defines :attr:`index_bits_per_vector` and
    :attr:`side_bits_per_vector`; everything else follows from them here.
    """

    d: int
    #: Class of the codes this codec makes (set by every codec).
    codes_type: ClassVar[type]

    @property
    def index_bits_per_vector(self) -> int:
        """Bits of the direction code of one vector (indices, signs, integers)."""
        raise NotImplementedError

    @property
    def side_bits_per_vector(self) -> int | float:
        """Bits of the side information of one vector (norm headers, metadata; amortised where shared)."""
        raise NotImplementedError

    @property
    def bits_per_vector(self) -> int | float:
        """Storage of one vector in bits: the direction code plus the side information."""
        return self.index_bits_per_vector + self.side_bits_per_vector

    @property
    def rate_bits(self) -> float:
        """Bits per coordinate of the direction code, ``index_bits_per_vector / d`` (side information not counted)."""
        return self.index_bits_per_vector / self.d

    @property
    def compression_ratio(self) -> float:
        """``16 d / bits_per_vector``: the size of the fp16 vector over its code (side information included)."""
        return FP16_BITS * self.d / self.bits_per_vector

    def packed_nbytes(self, n_vectors: int) -> int:
        """Bytes of ``n_vectors`` fixed-rate records packed back to back, ``ceil(n * bits_per_vector / 8)``.

        Parameters
        ----------
        n_vectors : int
            Number of vectors, ``>= 0``.

        Returns
        -------
        int
            The packed size in bytes.
        """
        n = check_int(n_vectors, "n_vectors", minimum=0)
        return -(-n * int(self.bits_per_vector) // 8)


def flat_index(shape: tuple[int, ...], i: int | tuple[int, ...]) -> int:
    """The flat (row-major) position of vector ``i`` in codes of leading shape ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Leading shape of the codes.
    i : int or tuple of int
        A flat index in ``[-n, n)`` for ``n = prod(shape)``, or one index per
        axis of ``shape`` (negative ones count from the end).

    Returns
    -------
    int
        The flat index in ``[0, n)``.

    Raises
    ------
    ValueError
        For empty codes, an index out of range, or a tuple of the wrong length.
    """
    if isinstance(i, tuple):
        if len(i) != len(shape):
            raise ValueError(f"index {i} does not match the codes' shape {shape}")
        for a, n in zip(i, shape):
            check_int(a, "index", minimum=-n, maximum=n - 1)
        return int(np.ravel_multi_index(tuple(int(a) % n for a, n in zip(i, shape)), shape))
    n = math.prod(shape)
    if n == 0:
        raise ValueError("decode_row on empty codes: there is no vector to decode")
    return check_int(i, "index", minimum=-n, maximum=n - 1) % n


def take_positions(shape: tuple[int, ...], index: object, axis: int = 0) -> tuple[np.ndarray, int]:
    """Check positions ``index`` along axis ``axis`` of a leading shape, for :meth:`Codec.take`.

    Parameters
    ----------
    shape : tuple of int
        Leading shape of the codes.
    index : array_like of int or bool
        Positions along ``axis`` (repeats and any order allowed; negative ones
        count from the end), or a boolean mask of length ``shape[axis]``.
    axis : int
        Axis of ``shape`` (negative ones count from the end).

    Returns
    -------
    index : numpy.ndarray
        The positions, shape ``(n,)``, int64 in ``[0, shape[axis])``.
    axis : int
        The axis, in ``[0, len(shape))``.

    Raises
    ------
    ValueError
        Codes of a single vector (no leading shape), or an axis out of range.
    IndexError
        A position out of range, a mask of the wrong length, or an index that
        is not a 1-D array of integers or booleans.
    """
    shape = tuple(shape)
    if not shape:
        raise ValueError("take_codes needs codes with a leading shape, got the codes of a single vector")
    ax = axis + len(shape) if axis < 0 else axis
    if not 0 <= ax < len(shape):
        raise ValueError(f"axis {axis} is out of range for codes of leading shape {shape}")
    idx = np.asarray(index)
    if idx.dtype == bool:
        if idx.shape != (shape[ax],):
            raise IndexError(f"a boolean index must have shape ({shape[ax]},), got {idx.shape}")
        idx = np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise IndexError(f"index must be a 1-D array of integers or booleans, got {idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -shape[ax] or idx.max() >= shape[ax]):
        raise IndexError(f"index out of range for axis {axis} of size {shape[ax]}: {idx.min()}..{idx.max()}")
    return idx % max(shape[ax], 1), ax


def integer_bits(method: str, bits: object) -> int:
    """``bits`` of a method with an integer rate: required, an integer in 1..8 (an integral float such as ``2.0`` is accepted).

    Parameters
    ----------
    method : str
        The method's name, for error messages.
    bits : object
        The option value (``None`` when it was not given).

    Returns
    -------
    int
        The bits per coordinate.

    Raises
    ------
    ValueError
        ``bits`` missing, or not an integer in 1..8 (the message names the method).
    """
    if bits is None:
        raise ValueError(f"method {method!r} needs the option bits=b (bits per coordinate, an integer 1..8)")
    try:
        return check_bits(bits)
    except ValueError as exc:
        raise ValueError(f"method {method!r}: {exc}") from None


def check_same_codec(names: Sequence[str], mine: Sequence[Any], theirs: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming every field where codes (``theirs``) differ from their codec (``mine``).

    Parameters
    ----------
    names : sequence of str
        Field names.
    mine, theirs : sequence
        The codec's and the codes' values of those fields, in the same order.
    """
    diff = [f"{n}={b!r} (codec has {a!r})" for n, a, b in zip(names, mine, theirs) if a != b]
    if diff:
        raise ValueError("codes were made by a different codec: " + ", ".join(diff))


# ----------------------------------------------------------------------------- serialisation
def frame(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    """Serialise codes: ``magic``, a uint32 header length, the JSON ``header``, ``payload``, a CRC-32.

    Parameters
    ----------
    magic : bytes
        8 bytes naming the kind and format of the codes.
    header : dict
        JSON-serialisable fields (written with sorted keys).
    payload : bytes
        The packed data.

    Returns
    -------
    bytes
        The blob. The little-endian CRC-32 (``zlib.crc32``) covers everything
        before it, so :func:`unframe` detects every single- and double-bit
        error (and any burst of up to 32 bits) anywhere in it.
    """
    if len(magic) != 8:
        raise ValueError(f"magic must be 8 bytes, got {magic!r}")
    blob = json.dumps(header, sort_keys=True).encode()
    body = magic + struct.pack("<I", len(blob)) + blob + payload
    return body + struct.pack("<I", zlib.crc32(body))


def unframe(
    data: object,
    magic: bytes,
    label: str,
    *,
    version: int,
    fields: Sequence[str],
    int_fields: Sequence[str],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`frame`: the checked header and the payload.

    Parameters
    ----------
    data : bytes-like
        The blob.
    magic : bytes
        The expected magic.
    label : str
        What the codes are called in error messages (e.g. ``"FibQuant codes"``).
    version : int
        The expected ``header["format"]``.
    fields : sequence of str
        Header fields that must be present (``payload_bytes`` always is).
    int_fields : sequence of str
        Fields that must be JSON integers (``payload_bytes`` always is); a
        ``shape`` field must be a list of integers.
    check : callable, optional
        Further checks of the header, called before the payload length is checked.

    Returns
    -------
    header : dict
        The header (``format`` and ``payload_bytes`` included).
    payload : bytes
        Exactly ``header["payload_bytes"]`` bytes.

    Raises
    ------
    TypeError
        If ``data`` is not bytes-like.
    ValueError
        On a wrong magic, a checksum mismatch, truncated data, or a header
        field that is missing or has the wrong type.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label} are bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(magic) + 8 or not data.startswith(magic):
        raise ValueError(f"not {label}: the data does not start with the {magic.decode(errors='replace')} magic")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError(f"{label} are corrupt or truncated: the CRC-32 checksum does not match")
    (hlen,) = struct.unpack_from("<I", body, len(magic))
    start = len(magic) + 4
    if start + hlen > len(body):
        raise ValueError(f"{label} are truncated: the header is incomplete")
    try:
        header = json.loads(body[start : start + hlen].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{label} have a corrupt header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != version:
        raise ValueError(f"{label} have a corrupt header: unknown format version")
    missing = [name for name in (*fields, "payload_bytes") if name not in header]
    if missing:
        raise ValueError(f"{label} have a corrupt header: missing {missing}")
    for name in (*int_fields, "payload_bytes"):
        if type(header[name]) is not int:  # JSON true/1.0/"1" are not integers here
            raise ValueError(f"{label} have a corrupt header: {name} must be an integer, got {header[name]!r}")
    if "shape" in header and (not isinstance(header["shape"], list) or any(type(v) is not int for v in header["shape"])):
        raise ValueError(f"{label} have a corrupt header: shape must be a list of integers, got {header['shape']!r}")
    if check is not None:
        check(header)
    payload = body[start + hlen :]
    if len(payload) != header["payload_bytes"]:
        kind = "truncated" if len(payload) < header["payload_bytes"] else "too long"
        raise ValueError(f"{label} are {kind}: the header announces {header['payload_bytes']} payload bytes, found {len(payload)}")
    return header, payload
