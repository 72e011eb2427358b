"""The codes of the TurboQuant codecs (:mod:`fibquant_theory.codecs.turboquant`) and their serialised form.

:class:`ScalarCodes` (TurboQuant-mse) and :class:`QJLCodes` (TurboQuant-prod)
keep one array entry per level index / sign, for clarity, and the norm
header bit patterns in the format they are counted in. They carry the
dimension, bit width, seed and header format they were made with, are
counted (:attr:`~ScalarCodes.nbytes`) and serialised
(:meth:`~ScalarCodes.to_bytes`) at their packed size: the norm header(s)
and ``d * bits`` bits of levels per vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fibquant_theory._validation import check_int
from fibquant_theory.codecs.base import frame, unframe
from fibquant_theory.codecs.norms import NORM_DTYPES, check_header_array, check_norm_dtype, decode_norms
from fibquant_theory.codecs.packing import pack_indices, unpack_indices

__all__ = ["QJLCodes", "ScalarCodes"]


def _check_fields(d: object, bits: object, seed: object, norm_dtype: object) -> tuple[int, int, int, str]:
    check_norm_dtype(norm_dtype)
    return (
        check_int(d, "d (dimension)", minimum=2),
        check_int(bits, "bits", minimum=1, maximum=8),
        check_int(seed, "seed", minimum=0),
        str(norm_dtype),
    )


def _level_indices(indices: object, d: int, bits: int, name: str = "indices") -> np.ndarray:
    """Validate level indices: integers of shape ``(..., d)`` in ``[0, 2**bits)``; returned read-only uint8."""
    idx = np.asarray(indices)
    if idx.ndim == 0 or idx.shape[-1] != d or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be integers of shape (..., {d}), got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**bits):
        raise ValueError(f"{name} must lie in [0, {2**bits}) for {bits} bits, got range [{idx.min()}, {idx.max()}]")
    idx = idx.astype(np.uint8)
    idx.setflags(write=False)
    return idx


class _HeaderCodes:
    """The leading shape, norms, size and serialised form of codes that store ``norm_header`` bit patterns.

    A subclass keeps its norm header(s) and its ``d`` level values per vector
    (``bits`` bits each); :meth:`to_bytes` packs them as they would be stored:
    the headers (little-endian) and then the levels, bit-packed.
    """

    norm_header: np.ndarray
    norm_dtype: str
    d: int
    bits: int
    seed: int
    #: Magic of the serialised form, what the codes are called in its errors, and the norm headers per vector.
    _magic: ClassVar[bytes]
    _label: ClassVar[str]
    _n_headers: ClassVar[int] = 1

    def __post_init__(self) -> None:
        d, bits, seed, norm_dtype = _check_fields(self.d, self.bits, self.seed, self.norm_dtype)
        scalars = (("d", d), ("bits", bits), ("seed", seed), ("norm_dtype", norm_dtype))
        for name, value in (*self._checked_arrays(d, bits, norm_dtype), *scalars):
            object.__setattr__(self, name, value)

    def _checked_arrays(self, d: int, bits: int, norm_dtype: str) -> list[tuple[str, Any]]:
        """The validated array fields, ``(name, value)`` (called with the checked scalar fields)."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape of the encoded array."""
        return tuple(self.norm_header.shape)

    def _values(self, header: np.ndarray) -> np.ndarray:
        return decode_norms(header.reshape(-1).astype(np.int64), self.norm_dtype).reshape(self.shape)

    @property
    def norms(self) -> np.ndarray:
        """The stored norms as float64, shape ``(...)``."""
        return self._values(self.norm_header)

    @property
    def n_vectors(self) -> int:
        """Number of encoded vectors, ``prod(shape)``."""
        return math.prod(self.shape)

    @property
    def bits_per_vector(self) -> int:
        """Bits of one packed vector: ``d * bits`` + the norm header(s)."""
        return self.d * self.bits + self._n_headers * NORM_DTYPES[self.norm_dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of the packed codes, ``ceil(n * bits_per_vector / 8)`` (the arrays here keep one entry per index)."""
        return -(-self.n_vectors * self.bits_per_vector // 8)

    def _headers(self) -> list[np.ndarray]:
        return [self.norm_header]

    def _levels(self) -> np.ndarray:  # (n, d) integers in [0, 2**bits)
        raise NotImplementedError

    @classmethod
    def _from_parts(cls, headers: list[np.ndarray], levels: np.ndarray, fields: dict[str, Any]) -> Any:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise: magic, uint32 header length, JSON header, payload, CRC-32 (:func:`~fibquant_theory.codecs.base.frame`).

        The payload is the norm header(s) as little-endian 16- or 32-bit
        patterns, then the ``d`` levels of every vector bit-packed at ``bits``
        bits each; it is :attr:`nbytes` long.

        Returns
        -------
        bytes
            The serialised codes.
        """
        dtype = "<u2" if NORM_DTYPES[self.norm_dtype] == 16 else "<u4"
        parts = [np.ascontiguousarray(h.reshape(-1), dtype=dtype).tobytes() for h in self._headers()]
        levels = self._levels()
        parts.append(pack_indices(levels, 1 << self.bits).tobytes() if levels.size else b"")
        payload = b"".join(parts)
        header = {
            "format": 1, "shape": list(self.shape), "d": self.d, "bits": self.bits, "seed": self.seed,
            "norm_dtype": self.norm_dtype, "payload_bytes": len(payload),
        }
        return frame(self._magic, header, payload)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Any:
        """Inverse of :meth:`to_bytes`; see :meth:`fibquant_theory.codecs.base.Codes.from_bytes`.

        The codes read back are validated like new ones.
        """
        label = cls._label
        names = ("shape", "d", "bits", "seed", "norm_dtype")
        header, payload = unframe(data, cls._magic, label, version=1, fields=names, int_fields=("d", "bits", "seed"))
        fields = {name: header[name] for name in names}
        try:
            d, bits, _, norm_dtype = _check_fields(fields["d"], fields["bits"], fields["seed"], fields["norm_dtype"])
            shape = tuple(check_int(v, "shape entry", minimum=0) for v in fields["shape"])
            n = math.prod(shape)
            width = NORM_DTYPES[norm_dtype] // 8
            expected = cls._n_headers * n * width + -(-n * d * bits // 8)
            if len(payload) != expected:
                raise ValueError(f"{n} vectors need {expected} payload bytes, the header announces {len(payload)}")
            dtype = "<u2" if width == 2 else "<u4"
            headers = [
                np.frombuffer(payload, dtype=dtype, count=n, offset=j * n * width).reshape(shape) for j in range(cls._n_headers)
            ]
            body = np.frombuffer(payload, dtype=np.uint8, offset=cls._n_headers * n * width).copy()
            levels = unpack_indices(body, n, d, 1 << bits) if n else np.zeros((0, d), dtype=np.int64)
            return cls._from_parts(headers, levels.reshape(shape + (d,)), fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label} have an invalid header: {exc}") from exc


@dataclass(frozen=True, eq=False)
class ScalarCodes(_HeaderCodes):
    """Codes of :class:`TurboQuantMSE`.

    Attributes
    ----------
    indices : numpy.ndarray
        Level indices of the rotated unit direction, shape ``(..., d)``, uint8.
    norm_header : numpy.ndarray
        Bit patterns of the norms in ``norm_dtype``, shape ``(...)`` (uint16 or uint32).
    d, bits, seed : int
        Dimension, bits per coordinate and rotation seed of the codec that made them.
    norm_dtype : str
        Header format of the norms (a key of :data:`~fibquant_theory.codecs.fibquant.NORM_DTYPES`).
    """

    indices: np.ndarray
    norm_header: np.ndarray
    d: int
    bits: int
    seed: int
    norm_dtype: str = "float16"

    _magic = b"TQMSECD1"
    _label = "TurboQuant codes"

    def select(self, index: Any) -> ScalarCodes:
        """The codes of ``index`` (any NumPy index into the leading shape), exactly.

        Parameters
        ----------
        index : int, slice, sequence or numpy.ndarray
            Any NumPy index into the leading shape.

        Returns
        -------
        ScalarCodes
            The selected codes (a copy), with the leading shape of the index.
        """
        return ScalarCodes(self.indices[index], self.norm_header[index], self.d, self.bits, self.seed, self.norm_dtype)

    def flat(self) -> ScalarCodes:
        """The same codes with leading shape ``(n,)`` (row-major), exactly.

        Returns
        -------
        ScalarCodes
            The codes with leading shape ``(n,)``, ``n = prod(shape)``.
        """
        return ScalarCodes(self.indices.reshape(-1, self.d), self.norm_header.reshape(-1), self.d, self.bits, self.seed, self.norm_dtype)

    def _checked_arrays(self, d: int, bits: int, norm_dtype: str) -> list[tuple[str, Any]]:
        idx = _level_indices(self.indices, d, bits)
        return [("indices", idx), ("norm_header", check_header_array(self.norm_header, norm_dtype, idx.shape[:-1], "norm_header"))]

    def _levels(self) -> np.ndarray:
        return self.indices.reshape(-1, self.d)

    @classmethod
    def _from_parts(cls, headers: list[np.ndarray], levels: np.ndarray, fields: dict[str, Any]) -> ScalarCodes:
        return cls(levels, headers[0], fields["d"], fields["bits"], fields["seed"], fields["norm_dtype"])


@dataclass(frozen=True, eq=False)
class QJLCodes(_HeaderCodes):
    """Codes of :class:`TurboQuantProd`.

    Attributes
    ----------
    indices : numpy.ndarray or None
        MSE-stage level indices, shape ``(..., d)`` (``None`` when ``bits == 1``).
    signs : numpy.ndarray
        QJL signs of the residual, shape ``(..., d)``, int8 in ``{-1, +1}``.
    residual_header, norm_header : numpy.ndarray
        Bit patterns of the residual norms and of the norms in ``norm_dtype``, shape ``(...)``.
    d, bits, seed : int
        Dimension, total bits per coordinate and seed of the codec that made them.
    norm_dtype : str
        Header format of both norms.
    """

    indices: np.ndarray | None
    signs: np.ndarray
    residual_header: np.ndarray
    norm_header: np.ndarray
    d: int
    bits: int
    seed: int
    norm_dtype: str = "float16"

    @property
    def residual_norms(self) -> np.ndarray:
        """The stored residual norms as float64, shape ``(...)``."""
        return self._values(self.residual_header)

    _magic = b"TQQJLCD1"
    _label = "TurboQuant-prod codes"
    _n_headers = 2

    def select(self, index: Any) -> QJLCodes:
        """The codes of ``index`` (any NumPy index into the leading shape), exactly.

        Parameters
        ----------
        index : int, slice, sequence or numpy.ndarray
            Any NumPy index into the leading shape.

        Returns
        -------
        QJLCodes
            The selected codes (a copy), with the leading shape of the index.
        """
        idx = None if self.indices is None else self.indices[index]
        return QJLCodes(
            idx, self.signs[index], self.residual_header[index], self.norm_header[index],
            self.d, self.bits, self.seed, self.norm_dtype,
        )

    def flat(self) -> QJLCodes:
        """The same codes with leading shape ``(n,)`` (row-major), exactly.

        Returns
        -------
        QJLCodes
            The codes with leading shape ``(n,)``, ``n = prod(shape)``.
        """
        return QJLCodes(
            None if self.indices is None else self.indices.reshape(-1, self.d),
            self.signs.reshape(-1, self.d), self.residual_header.reshape(-1), self.norm_header.reshape(-1),
            self.d, self.bits, self.seed, self.norm_dtype,
        )

    def _checked_arrays(self, d: int, bits: int, norm_dtype: str) -> list[tuple[str, Any]]:
        signs = np.asarray(self.signs)
        if signs.ndim == 0 or signs.shape[-1] != d or not np.issubdtype(signs.dtype, np.integer):
            raise ValueError(f"signs must be integers of shape (..., {d}), got {signs.dtype} {signs.shape}")
        if signs.size and not np.isin(signs, (-1, 1)).all():
            raise ValueError("signs must be -1 or +1")
        signs = signs.astype(np.int8)
        signs.setflags(write=False)
        idx = self.indices
        if (bits == 1) != (idx is None):
            raise ValueError(f"a {bits}-bit code has {'no' if bits == 1 else 'an'} MSE stage: indices must be "
                             f"{'None' if bits == 1 else 'given'}")
        shape = signs.shape[:-1]
        if idx is not None:
            idx = _level_indices(idx, d, bits - 1)
            if idx.shape[:-1] != shape:
                raise ValueError(f"indices have leading shape {idx.shape[:-1]}, signs {shape}")
        return [
            ("signs", signs),
            ("indices", idx),
            ("residual_header", check_header_array(self.residual_header, norm_dtype, shape, "residual_header")),
            ("norm_header", check_header_array(self.norm_header, norm_dtype, shape, "norm_header")),
        ]

    def _headers(self) -> list[np.ndarray]:
        return [self.norm_header, self.residual_header]

    def _levels(self) -> np.ndarray:
        """``2 * index + (sign > 0)``: the MSE index above the QJL sign bit, ``bits`` bits per coordinate."""
        sign_bit = (self.signs.reshape(-1, self.d) > 0).astype(np.int64)
        if self.indices is None:
            return sign_bit
        return (self.indices.reshape(-1, self.d).astype(np.int64) << 1) | sign_bit

    @classmethod
    def _from_parts(cls, headers: list[np.ndarray], levels: np.ndarray, fields: dict[str, Any]) -> QJLCodes:
        signs = np.where(levels & 1, 1, -1).astype(np.int8)
        indices = None if fields["bits"] == 1 else levels >> 1
        return cls(indices, signs, headers[1], headers[0], fields["d"], fields["bits"], fields["seed"], fields["norm_dtype"])
