"""The packed codes of :class:`~fibquant_theory.codecs.fibquant.FibQuantCodec` and their serialised form.

:class:`FibQuantCodes` holds one fixed-length record per vector (norm header +
codeword indices, :class:`~fibquant_theory.codecs.packing.RecordLayout`) and
what the codes were made with (dimension, block size, codebook size and hash,
header format, packing, rotation and seed), so that a codec refuses codes it
did not make. :meth:`FibQuantCodes.to_bytes` writes the ``FQCODES2`` format
(:func:`~fibquant_theory.codecs.base.frame`); :meth:`FibQuantCodes.from_bytes`
checks every part of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fibquant_theory._validation import check_int
from fibquant_theory.codecs.base import frame, unframe
from fibquant_theory.codecs.norms import NORM_DTYPES, check_norm_dtype
from fibquant_theory.codecs.packing import RecordLayout
from fibquant_theory.theory.rotation import ROTATION_KINDS

__all__ = ["CODEBOOK_HASH", "FibQuantCodes"]

_MAGIC = b"FQCODES2"
_OLD_MAGIC = b"FQCODES1"
#: Header fields of the serialised codes, in the order they are checked.
_HEADER_FIELDS = ("shape", "d", "k", "n_codewords", "norm_dtype", "packing", "rotation", "seed", "codebook_hash")
#: A codebook content hash: 64 lower-case hex digits (SHA-256).
CODEBOOK_HASH = re.compile(r"[0-9a-f]{64}")


def _shape_tuple(shape: object) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ValueError(f"codes shape must be a tuple of integers, got {shape!r}")
    try:
        out = tuple(check_int(s, "codes shape entry", minimum=0) for s in shape)  # type: ignore[union-attr]
    except TypeError as exc:
        raise ValueError(f"codes shape must be a tuple of integers, got {shape!r}") from exc
    return out


@dataclass(frozen=True, eq=False)
class FibQuantCodes:
    """Packed codes of :class:`~fibquant_theory.codecs.fibquant.FibQuantCodec` (one fixed-length record per vector).

    Attributes
    ----------
    payload : numpy.ndarray
        The record stream, 1-D uint8, ``ceil(n * bits_per_vector / 8)`` bytes
        for ``n = prod(shape)`` vectors; record ``i`` (row-major over
        ``shape``) starts at bit ``i * bits_per_vector``.
    shape : tuple of int
        Leading shape of the encoded array (``x.shape[:-1]``).
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    norm_dtype : str
        Norm-header format (a key of :data:`~fibquant_theory.codecs.norms.NORM_DTYPES`).
    packing : str
        ``"fixed"`` or ``"mixed-radix"``.
    rotation : str
        Rotation kind the codes were made with.
    seed : int
        Rotation seed the codes were made with.
    codebook_hash : str
        Content hash of the codebook the codes were made with.
    """

    payload: np.ndarray
    shape: tuple[int, ...]
    d: int
    k: int
    n_codewords: int
    norm_dtype: str
    packing: str
    rotation: str
    seed: int
    codebook_hash: str
    layout: RecordLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape_tuple(self.shape))
        d = check_int(self.d, "d", minimum=1)
        k = check_int(self.k, "k", minimum=1)
        if d % k:
            raise ValueError(f"d={d} is not divisible by the block size k={k}")
        check_norm_dtype(self.norm_dtype)
        if not isinstance(self.rotation, str) or self.rotation not in ROTATION_KINDS:
            raise ValueError(f"rotation must be one of {ROTATION_KINDS}, got {self.rotation!r}")
        if not isinstance(self.packing, str):
            raise ValueError(f"packing must be a string, got {self.packing!r}")
        if not isinstance(self.codebook_hash, str) or not self.codebook_hash:
            raise ValueError(f"codebook_hash must be a non-empty string, got {self.codebook_hash!r}")
        for name, value in (("d", d), ("k", k), ("seed", check_int(self.seed, "seed", minimum=0))):
            object.__setattr__(self, name, value)
        layout = RecordLayout(self.n_codewords, d // k, NORM_DTYPES[self.norm_dtype], self.packing)
        payload = np.asarray(self.payload)
        if payload.dtype != np.uint8 or payload.ndim != 1:
            raise ValueError(f"payload must be a 1-D uint8 array, got {payload.dtype} {payload.shape}")
        expected = layout.nbytes(self.n_vectors)
        if payload.size != expected:
            kind = "truncated" if payload.size < expected else "too long"
            raise ValueError(
                f"packed data is {kind}: {self.n_vectors} vectors of {layout.record_bits} bits need "
                f"{expected} bytes, got {payload.size}"
            )
        object.__setattr__(self, "layout", layout)

    @property
    def n_vectors(self) -> int:
        """Number of encoded vectors, ``prod(shape)``."""
        return math.prod(self.shape)

    @property
    def bits_per_vector(self) -> int:
        """Bits of one record (norm header + indices)."""
        return self.layout.record_bits

    @property
    def nbytes(self) -> int:
        """Bytes of the packed stream."""
        return int(self.payload.size)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of the codes of a single vector (shape ())")
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"FibQuantCodes(shape={self.shape}, d={self.d}, k={self.k}, N={self.n_codewords}, "
            f"{self.bits_per_vector} bits/vector, {self.nbytes} bytes)"
        )

    def to_bytes(self) -> bytes:
        """Serialise to ``b"FQCODES2"``, a uint32 header length, the JSON header, the payload and a CRC-32.

        The layout is :func:`~fibquant_theory.codecs.base.frame`'s. The
        little-endian CRC-32 (``zlib.crc32``) covers everything before it, so
        :meth:`from_bytes` detects every single- and double-bit error (and any
        burst of up to 32 bits) anywhere in the blob. The in-memory
        :attr:`payload` carries no checksum: random access stays free.

        Returns
        -------
        bytes
            The serialised codes.
        """
        header = {
            "format": 2,
            "shape": list(self.shape),
            "d": self.d,
            "k": self.k,
            "n_codewords": self.n_codewords,
            "norm_dtype": self.norm_dtype,
            "packing": self.packing,
            "rotation": self.rotation,
            "seed": self.seed,
            "codebook_hash": self.codebook_hash,
            "payload_bytes": self.nbytes,
        }
        return frame(_MAGIC, header, self.payload.tobytes())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> FibQuantCodes:
        """Inverse of :meth:`to_bytes`; see :meth:`fibquant_theory.codecs.base.Codes.from_bytes`.

        Parameters
        ----------
        data : bytes-like
            A blob written by :meth:`to_bytes`.

        Returns
        -------
        FibQuantCodes
            The codes it holds (records, shape, configuration and codebook hash).
        """
        if isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[: len(_OLD_MAGIC)]) == _OLD_MAGIC:
            raise ValueError("FibQuant codes of format 1 (FQCODES1, no checksum) are not read any more; encode again")

        def check_hash(header: dict[str, Any]) -> None:
            if not (isinstance(header["codebook_hash"], str) and CODEBOOK_HASH.fullmatch(header["codebook_hash"])):
                raise ValueError("FibQuant codes have a corrupt header: codebook_hash must be 64 hex digits")

        header, payload = unframe(
            data, _MAGIC, "FibQuant codes", version=2, fields=_HEADER_FIELDS,
            int_fields=("d", "k", "n_codewords", "seed"), check=check_hash,
        )
        fields = {name: header[name] for name in _HEADER_FIELDS}
        try:
            return cls(payload=np.frombuffer(payload, dtype=np.uint8).copy(), **fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"FibQuant codes have an invalid header: {exc}") from exc
