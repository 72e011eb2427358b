r"""The FibQuant reference codec: normalize, rotate, split into blocks, store codeword indices.

A vector :math:`x\in\mathbb{R}^d` is stored as

* its norm :math:`\nu=\|x\|` in a ``float16`` (default), ``bfloat16`` or
  ``float32`` header, and
* the indices of the nearest codewords of the ``m = d/k`` blocks of the rotated
  direction :math:`z=\Pi x/\nu`, each in ``[0, N)``,

packed into one fixed-length record per vector (:mod:`fibquant_theory.codecs.packing`),
so vector ``i`` starts at bit ``i * bits_per_vector`` and can be decoded alone.
The reconstruction is :math:`\hat x = \hat\nu\,\Pi^\top(c_{i_1},\dots,c_{i_m})`;
a zero vector has :math:`\hat\nu = 0` and decodes to exact zeros. Inner products
:math:`\langle q,\hat x\rangle = \hat\nu\sum_b \langle (\Pi q)_b, c_{i_b}\rangle`
are computed from the codes, either through per-block lookup tables
:math:`L_{b,n} = \langle(\Pi q)_b, c_n\rangle` (one table per query, shape
``(m, N)``) or by gathering the ``m`` codewords; :math:`\hat x` is never formed.

Example
-------
>>> import numpy as np
>>> from fibquant_theory.codecs.fibquant import FibQuantCodec
>>> from fibquant_theory.codebooks.codebook import design_codebook  # doctest: +SKIP
>>> codec = FibQuantCodec(design_codebook(64, 32, 128), seed=0)  # doctest: +SKIP
>>> codec.bits_per_vector, round(codec.compression_ratio, 2)  # doctest: +SKIP
(30, 34.13)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from fibquant_theory._validation import as_vectors, check_int
from fibquant_theory.search.encoders import ENCODERS, NearestCodewordSearch, make_search
from fibquant_theory.numerics.fixed_order import matmul_rows, row_norms
from fibquant_theory.codecs.packing import PACKING_MODES, RecordLayout
from fibquant_theory.numerics.rotation import ROTATION_KINDS, Rotation, make_rotation

__all__ = [
    "NORM_DTYPES",
    "FibQuantCodec",
    "FibQuantCodes",
    "decode_norms",
    "encode_norms",
]

#: Norm-header formats and their width in bits.
NORM_DTYPES: dict[str, int] = {"float16": 16, "bfloat16": 16, "float32": 32}
#: Smallest normal number of every header format: smaller non-zero norms are refused, like overflowing ones.
_SMALLEST_NORMAL = {"float16": 2.0**-14, "bfloat16": 2.0**-126, "float32": 2.0**-126}

_MAGIC = b"FQCODES2"
_OLD_MAGIC = b"FQCODES1"
#: Header fields of the serialised codes, in the order they are checked.
_HEADER_FIELDS = ("shape", "d", "k", "n_codewords", "norm_dtype", "packing", "rotation", "seed", "codebook_hash")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ----------------------------------------------------------------------------- norm header
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
    if norm_dtype not in NORM_DTYPES:
        raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
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
    b = np.asarray(bits, dtype=np.int64)
    if norm_dtype == "float16":
        return b.astype(np.uint16).view(np.float16).astype(np.float64)
    if norm_dtype == "bfloat16":
        return (b << 16).astype(np.uint32).view(np.float32).astype(np.float64)
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def decode_norms(bits: object, norm_dtype: str = "float16", first_record: int = 0) -> np.ndarray:
    """Norms from header bit patterns (inverse of :func:`encode_norms`), shape ``(n,)`` float64.

    Raises ``ValueError`` naming the first record (numbered from
    ``first_record``) whose header is not a finite, non-negative number
    (corrupt data).
    """
    if norm_dtype not in NORM_DTYPES:
        raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
    v = _header_values(np.asarray(bits), norm_dtype)
    bad = ~np.isfinite(v) | np.signbit(v)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"packed data is corrupt: record {first_record + i} has norm header {float(v[i])!r} (not a finite number >= 0)"
        )
    return v


# ----------------------------------------------------------------------------- kernels
@njit("void(int64[:, ::1], float64[::1], float64[:, ::1], float64[:, ::1])", cache=True, nogil=True)
def _gather_scaled(idx, norms, points, out):  # pragma: no cover - compiled
    """``out[i, b*k:(b+1)*k] = norms[i] * points[idx[i, b]]``."""
    n, m = idx.shape
    k = points.shape[1]
    for i in range(n):
        s = norms[i]
        for b in range(m):
            c = idx[i, b]
            for t in range(k):
                out[i, b * k + t] = s * points[c, t]


@njit(
    "void(float64[:, ::1], int64[::1], int64[::1], int64[:, ::1], float64[:, ::1], float64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _ip_gather(qr, qrow, crow, idx, points, norms, out):  # pragma: no cover - compiled
    """``out[o] = norms[c] * sum_b <qr[q, block b], points[idx[c, b]]>`` with ``q = qrow[o], c = crow[o]``."""
    m = idx.shape[1]
    k = points.shape[1]
    for o in range(out.size):
        q = qrow[o]
        c = crow[o]
        acc = 0.0
        for b in range(m):
            p = idx[c, b]
            for t in range(k):
                acc += qr[q, b * k + t] * points[p, t]
        out[o] = norms[c] * acc


@njit(
    "void(float64[:, :, ::1], int64[::1], int64[::1], int64[:, ::1], float64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _ip_lut(lut, qrow, crow, idx, norms, out):  # pragma: no cover - compiled
    """``out[o] = norms[c] * sum_b lut[q, b, idx[c, b]]`` with ``q = qrow[o], c = crow[o]``."""
    m = idx.shape[1]
    for o in range(out.size):
        q = qrow[o]
        c = crow[o]
        acc = 0.0
        for b in range(m):
            acc += lut[q, b, idx[c, b]]
        out[o] = norms[c] * acc


# ----------------------------------------------------------------------------- codes
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
    """Packed codes of :class:`FibQuantCodec` (one fixed-length record per vector).

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
        Norm-header format (a key of :data:`NORM_DTYPES`).
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
        if not isinstance(self.norm_dtype, str) or self.norm_dtype not in NORM_DTYPES:
            raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {self.norm_dtype!r}")
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

        The little-endian CRC-32 (``zlib.crc32``) covers everything before it, so
        :meth:`from_bytes` detects every single- and double-bit error (and any
        burst of up to 32 bits) anywhere in the blob. The in-memory
        :attr:`payload` carries no checksum: random access stays free.
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
        blob = json.dumps(header, sort_keys=True).encode()
        body = _MAGIC + struct.pack("<I", len(blob)) + blob + self.payload.tobytes()
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> FibQuantCodes:
        """Inverse of :meth:`to_bytes`.

        Raises
        ------
        TypeError
            If ``data`` is not bytes-like.
        ValueError
            On truncated, corrupt (checksum mismatch) or invalid data: every
            header field is checked for its type and range.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"FibQuant codes are bytes, got {type(data).__name__}")
        data = bytes(data)
        if data.startswith(_OLD_MAGIC):
            raise ValueError("FibQuant codes of format 1 (FQCODES1, no checksum) are not read any more; encode again")
        if len(data) < len(_MAGIC) + 8 or not data.startswith(_MAGIC):
            raise ValueError("not FibQuant codes: the data does not start with the FQCODES2 magic")
        body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if zlib.crc32(body) != crc:
            raise ValueError("FibQuant codes are corrupt or truncated: the CRC-32 checksum does not match")
        (hlen,) = struct.unpack_from("<I", body, len(_MAGIC))
        start = len(_MAGIC) + 4
        if start + hlen > len(body):
            raise ValueError("FibQuant codes are truncated: the header is incomplete")
        try:
            header = json.loads(body[start : start + hlen].decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"FibQuant codes have a corrupt header: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != 2:
            raise ValueError("FibQuant codes have a corrupt header: unknown format version")
        missing = [name for name in (*_HEADER_FIELDS, "payload_bytes") if name not in header]
        if missing:
            raise ValueError(f"FibQuant codes have a corrupt header: missing {missing}")
        fields = {name: header[name] for name in _HEADER_FIELDS}
        for name in ("d", "k", "n_codewords", "seed", "payload_bytes"):
            if type(header[name]) is not int:  # JSON true/1.0/"1" are not integers here
                raise ValueError(f"FibQuant codes have a corrupt header: {name} must be an integer, got {header[name]!r}")
        if not isinstance(fields["shape"], list) or any(type(v) is not int for v in fields["shape"]):
            raise ValueError(f"FibQuant codes have a corrupt header: shape must be a list of integers, got {fields['shape']!r}")
        if not (isinstance(fields["codebook_hash"], str) and _HEX64.fullmatch(fields["codebook_hash"])):
            raise ValueError("FibQuant codes have a corrupt header: codebook_hash must be 64 hex digits")
        payload = body[start + hlen :]
        if len(payload) != header["payload_bytes"]:
            kind = "truncated" if len(payload) < header["payload_bytes"] else "too long"
            raise ValueError(
                f"FibQuant codes are {kind}: the header announces {header['payload_bytes']} payload bytes, found {len(payload)}"
            )
        try:
            return cls(payload=np.frombuffer(payload, dtype=np.uint8).copy(), **fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"FibQuant codes have an invalid header: {exc}") from exc


# ----------------------------------------------------------------------------- codec
def _codebook_hash(codebook: Any, points: np.ndarray) -> str:
    h = getattr(codebook, "content_hash", None)
    if callable(h):
        h = h()
    if not (isinstance(h, str) and _HEX64.fullmatch(h)):  # no (usable) content hash: hash the points
        h = hashlib.sha256(np.ascontiguousarray(points, dtype=np.float64).tobytes()).hexdigest()
    return h


class FibQuantCodec:
    """FibQuant codec: norm header + shared rotation + block-wise nearest codeword + fixed-rate packing.

    Parameters
    ----------
    codebook : Codebook
        A :class:`fibquant_theory.codebooks.codebook.Codebook` (or any object with
        ``points (N, k)``, ``d`` and, for ``encoder="two-stage"``,
        ``shell_index (N,)``; ``content_hash`` is used when present). ``d``
        must be divisible by ``k``.
    seed : int
        Seed of the shared rotation (for ``"haar"`` the same matrix as
        :class:`~fibquant_theory.codecs.turboquant.TurboQuantMSE` with this seed).
    rotation : {"haar", "hadamard"}
        Dense Haar rotation or the fast randomized Hadamard (``d`` a power of two).
    norm_dtype : {"float16", "bfloat16", "float32"}
        Format of the per-vector norm header.
    encoder : {"exhaustive", "two-stage", "clustered"}
        Nearest-codeword search (:mod:`fibquant_theory.search.encoders`).
    packing : {"auto", "fixed", "mixed-radix"}
        Index layout; ``"auto"`` is ``"fixed"`` when ``N`` is a power of two
        and ``"mixed-radix"`` otherwise (never more bits than ``"fixed"``).
    **encoder_options
        ``probes`` (two-stage), ``n_clusters``, ``top`` (clustered).

    Attributes
    ----------
    d, k, n_blocks, n_codewords : int
        Dimension, block size, blocks per vector ``m = d / k``, codebook size ``N``.
    points : numpy.ndarray
        Codebook, shape ``(N, k)``.
    rotation : Rotation
        The shared rotation.
    search : NearestCodewordSearch
        The encoder.
    layout : RecordLayout
        Record layout of the packed codes.

    Examples
    --------
    >>> codec = FibQuantCodec(codebook, seed=0)  # doctest: +SKIP
    >>> codes = codec.encode(x)            # x of shape (..., d)  # doctest: +SKIP
    >>> x_hat = codec.decode(codes)        # (..., d) float64  # doctest: +SKIP
    >>> row = codec.decode_row(codes, 5)   # == x_hat.reshape(-1, d)[5]  # doctest: +SKIP
    >>> scores = codec.inner_product(q, codes)  # q (d,) -> (...)  # doctest: +SKIP
    """

    name = "fibquant"

    def __init__(
        self,
        codebook: Any,
        seed: int = 0,
        *,
        rotation: str = "haar",
        norm_dtype: str = "float16",
        encoder: str = "exhaustive",
        packing: str = "auto",
        **encoder_options: Any,
    ) -> None:
        points = np.asarray(getattr(codebook, "points", None))
        if points.ndim != 2 or points.shape[0] < 2:
            raise ValueError(f"codebook.points must have shape (N, k) with N >= 2, got {points.shape}")
        self.codebook = codebook
        self.d = check_int(getattr(codebook, "d", None), "codebook.d", minimum=2)
        self.k = check_int(points.shape[1], "block size k", minimum=1)
        if self.d % self.k:
            raise ValueError(f"the dimension d={self.d} is not divisible by the block size k={self.k}")
        cb_k = getattr(codebook, "k", self.k)
        if cb_k != self.k:
            raise ValueError(f"codebook.k={cb_k} does not match its points of shape {points.shape}")
        self.n_blocks = self.d // self.k
        self.n_codewords = int(points.shape[0])
        self.seed = check_int(seed, "seed", minimum=0)
        if rotation not in ROTATION_KINDS:
            raise ValueError(f"rotation must be one of {ROTATION_KINDS}, got {rotation!r}")
        if norm_dtype not in NORM_DTYPES:
            raise ValueError(f"norm_dtype must be one of {sorted(NORM_DTYPES)}, got {norm_dtype!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if packing == "auto":
            packing = "fixed" if self.n_codewords & (self.n_codewords - 1) == 0 else "mixed-radix"
        if packing not in PACKING_MODES:
            raise ValueError(f"packing must be 'auto' or one of {PACKING_MODES}, got {packing!r}")
        self.norm_dtype = norm_dtype
        self.packing = packing
        self.rotation: Rotation = make_rotation(rotation, self.d, self.seed)
        self.search: NearestCodewordSearch = make_search(encoder, codebook, **encoder_options)
        self.encoder = encoder
        self.points = self.search.points
        self.codebook_hash = _codebook_hash(codebook, self.points)
        self.layout = RecordLayout(self.n_codewords, self.n_blocks, NORM_DTYPES[norm_dtype], packing)

    def __repr__(self) -> str:
        return (
            f"FibQuantCodec(d={self.d}, k={self.k}, N={self.n_codewords}, seed={self.seed}, "
            f"rotation={self.rotation.kind!r}, norm_dtype={self.norm_dtype!r}, encoder={self.encoder!r}, "
            f"packing={self.packing!r})"
        )

    # ------------------------------------------------------------------ rates
    @property
    def rate_bits(self) -> float:
        r"""Nominal rate :math:`\log_2 N / k` bits per coordinate (the norm header is not counted)."""
        return math.log2(self.n_codewords) / self.k

    @property
    def index_bits_per_vector(self) -> int:
        """Bits of the packed indices of one vector (``m * ceil(log2 N)`` or ``ceil(m log2 N)``)."""
        return self.layout.payload_bits

    @property
    def norm_bits(self) -> int:
        """Bits of the norm header."""
        return NORM_DTYPES[self.norm_dtype]

    @property
    def bits_per_vector(self) -> int:
        """Exact storage of one vector in bits: norm header + packed indices."""
        return self.layout.record_bits

    @property
    def compression_ratio(self) -> float:
        """``16 d / bits_per_vector``: the size of the fp16 vector over its code (norm included)."""
        return 16.0 * self.d / self.bits_per_vector

    # ------------------------------------------------------------------ encode
    def encode_indices(self, x: object) -> tuple[np.ndarray, np.ndarray]:
        """Quantize without packing.

        Parameters
        ----------
        x : array_like
            Vectors, shape ``(..., d)``, finite.

        Returns
        -------
        indices : numpy.ndarray
            Codeword index of every block, shape ``(..., m)``, int64.
        norms : numpy.ndarray
            Norms rounded to the header format, shape ``(...)``, float64.
        """
        x = as_vectors(x, self.d)
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.d)
        norms = row_norms(rows)  # overflow-safe, fixed order
        if not np.isfinite(norms).all():
            bad = int(np.flatnonzero(~np.isfinite(norms))[0])
            raise ValueError(f"the norm of row {bad} of x overflows float64 (entries too large to encode)")
        header = encode_norms(norms, self.norm_dtype)
        u = rows / np.where(norms > 0, norms, 1.0)[:, None]
        z = self.rotation.forward(u)
        idx, _ = self.search.search(z.reshape(-1, self.k))
        return idx.reshape(lead + (self.n_blocks,)), decode_norms(header, self.norm_dtype).reshape(lead)

    def pack(self, indices: object, norms: object) -> FibQuantCodes:
        """Pack indices ``(..., m)`` and norms ``(...)`` into :class:`FibQuantCodes` (norms rounded to the header)."""
        idx = np.asarray(indices)
        nrm = np.asarray(norms, dtype=np.float64)
        if idx.ndim == 0 or idx.shape[-1] != self.n_blocks or idx.shape[:-1] != nrm.shape:
            raise ValueError(
                f"indices must have shape (..., {self.n_blocks}) and norms the leading shape; got {idx.shape} and {nrm.shape}"
            )
        header = encode_norms(nrm.reshape(-1), self.norm_dtype)
        payload = self.layout.pack(header, idx.reshape(-1, self.n_blocks))
        return FibQuantCodes(
            payload=payload,
            shape=nrm.shape,
            d=self.d,
            k=self.k,
            n_codewords=self.n_codewords,
            norm_dtype=self.norm_dtype,
            packing=self.packing,
            rotation=self.rotation.kind,
            seed=self.seed,
            codebook_hash=self.codebook_hash,
        )

    def encode(self, x: object) -> FibQuantCodes:
        """Encode vectors of shape ``(..., d)`` into packed :class:`FibQuantCodes` (leading shape kept).

        Raises ``ValueError`` for a wrong last dimension, NaN/Inf (naming the
        first bad row) or a norm that overflows the header format.
        """
        return self.pack(*self.encode_indices(x))

    # ------------------------------------------------------------------ decode
    def _check_codes(self, codes: object) -> FibQuantCodes:
        if not isinstance(codes, FibQuantCodes):
            raise TypeError(f"expected FibQuantCodes, got {type(codes).__name__}")
        mine = (self.d, self.k, self.n_codewords, self.norm_dtype, self.packing, self.rotation.kind, self.seed, self.codebook_hash)
        theirs = (codes.d, codes.k, codes.n_codewords, codes.norm_dtype, codes.packing, codes.rotation, codes.seed, codes.codebook_hash)
        if mine != theirs:
            names = ("d", "k", "n_codewords", "norm_dtype", "packing", "rotation", "seed", "codebook_hash")
            diff = [f"{n}={b!r} (codec has {a!r})" for n, a, b in zip(names, mine, theirs) if a != b]
            raise ValueError("codes were made by a different codec: " + ", ".join(diff))
        return codes

    def unpack(self, codes: FibQuantCodes, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(count, m)`` and norms ``(count,)`` of records ``start .. start+count-1`` (flat order).

        Validates the data (length, index range, norm headers); raises ``ValueError`` on corruption.
        """
        codes = self._check_codes(codes)
        header, idx = self.layout.unpack(codes.payload, codes.n_vectors, start, count)
        return idx, decode_norms(header, self.norm_dtype, first_record=start)

    def decode_indices(self, indices: object, norms: object, dtype: Any = np.float64) -> np.ndarray:
        """Reconstruct ``(..., d)`` from indices ``(..., m)`` and norms ``(...)``."""
        idx = np.asarray(indices)
        nrm = np.asarray(norms, dtype=np.float64)
        if idx.ndim == 0 or idx.shape[-1] != self.n_blocks or idx.shape[:-1] != nrm.shape:
            raise ValueError(f"indices must have shape (..., {self.n_blocks}) and norms the leading shape")
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= self.n_codewords):
            raise ValueError(f"indices must be integers in [0, {self.n_codewords})")
        lead = nrm.shape
        idx2 = np.ascontiguousarray(idx.reshape(-1, self.n_blocks), dtype=np.int64)
        nrm1 = np.ascontiguousarray(nrm.reshape(-1))
        scaled = np.empty((idx2.shape[0], self.d))
        if idx2.shape[0]:
            _gather_scaled(idx2, nrm1, self.points, scaled)
        return self.rotation.inverse(scaled).reshape(lead + (self.d,)).astype(dtype, copy=False)

    def decode(self, codes: FibQuantCodes, dtype: Any = np.float64) -> np.ndarray:
        """Reconstruct all vectors: shape ``codes.shape + (d,)``, ``dtype`` (float64 by default)."""
        idx, norms = self.unpack(codes)
        return self.decode_indices(idx.reshape(codes.shape + (self.n_blocks,)), norms.reshape(codes.shape), dtype)

    def _flat_index(self, codes: FibQuantCodes, i: int | tuple[int, ...]) -> int:
        if isinstance(i, tuple):
            if len(i) != len(codes.shape):
                raise ValueError(f"index {i} does not match the codes' shape {codes.shape}")
            for a, n in zip(i, codes.shape):
                check_int(a, "index", minimum=-n, maximum=n - 1)
            return int(np.ravel_multi_index(tuple(int(a) % n for a, n in zip(i, codes.shape)), codes.shape))
        n = codes.n_vectors
        if n == 0:
            raise ValueError("decode_row on empty codes: there is no vector to decode")
        return check_int(i, "index", minimum=-n, maximum=n - 1) % n

    def decode_row(self, codes: FibQuantCodes, i: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """Decode vector ``i`` alone (random access), shape ``(d,)``.

        ``i`` is a flat (row-major) index into ``codes.shape`` or a tuple of
        indices. Only the bytes of record ``i`` are read; the result equals
        ``decode(codes).reshape(-1, d)[i]`` exactly.
        """
        codes = self._check_codes(codes)
        flat = self._flat_index(codes, i)
        idx, norms = self.unpack(codes, flat, 1)
        return self.decode_indices(idx, norms, dtype)[0]

    # ------------------------------------------------------------------ inner products
    def lookup_tables(self, q: object) -> np.ndarray:
        r"""Per-block tables :math:`L_{b,n} = \langle(\Pi q)_b, c_n\rangle`, shape ``(..., m, N)`` for ``q (..., d)``."""
        q = as_vectors(q, self.d, "q")
        qr = self.rotation.forward(q).reshape(q.shape[:-1] + (self.n_blocks, self.k))
        return matmul_rows(qr, self.points.T)

    def inner_product(self, q: object, codes: FibQuantCodes, method: str = "auto") -> np.ndarray:
        r"""Estimate :math:`\langle q, x\rangle` from the codes, without reconstructing :math:`\hat x`.

        Parameters
        ----------
        q : array_like
            Queries of shape ``(d,)`` (one query against every code) or
            ``(..., d)`` broadcast against ``codes.shape`` (e.g. one query per
            code, as in :func:`~fibquant_theory.experiments.rd.rate_distortion`).
        codes : FibQuantCodes
            Encoded vectors of leading shape ``S``.
        method : {"auto", "lut", "gather"}
            ``"lut"``: one ``(m, N)`` lookup table per query row, then ``m``
            table reads per code; ``"gather"``: ``m`` codeword gathers and dot
            products per code. ``"auto"`` uses the tables when every table is
            used by at least 4 codes on average.

        Returns
        -------
        numpy.ndarray
            :math:`\hat\nu\sum_b\langle(\Pi q)_b, c_{i_b}\rangle`, shape
            ``broadcast(q.shape[:-1], S)``.
        """
        if method not in ("auto", "lut", "gather"):
            raise ValueError(f"method must be 'auto', 'lut' or 'gather', got {method!r}")
        q = as_vectors(q, self.d, "q")
        idx, norms = self.unpack(codes)
        q_lead = q.shape[:-1]
        try:
            out_shape = np.broadcast_shapes(q_lead, codes.shape)
        except ValueError as exc:
            raise ValueError(f"queries of leading shape {q_lead} do not broadcast against codes of shape {codes.shape}") from exc
        n_q = math.prod(q_lead)
        out = np.empty(math.prod(out_shape))
        if out.size == 0:
            return out.reshape(out_shape)
        # np.array copies: the kernels take writable contiguous arrays
        qrow = np.array(np.broadcast_to(np.arange(n_q, dtype=np.int64).reshape(q_lead), out_shape).reshape(-1))
        crow = np.array(np.broadcast_to(np.arange(codes.n_vectors, dtype=np.int64).reshape(codes.shape), out_shape).reshape(-1))
        qr = np.ascontiguousarray(self.rotation.forward(q.reshape(-1, self.d)))
        if method == "lut" or (method == "auto" and 4 * n_q * self.n_codewords <= out.size):
            lut = np.ascontiguousarray(matmul_rows(qr.reshape(n_q, self.n_blocks, self.k), self.points.T))
            _ip_lut(lut, qrow, crow, idx, norms, out)
        else:
            _ip_gather(qr, qrow, crow, idx, self.points, norms, out)
        return out.reshape(out_shape)

