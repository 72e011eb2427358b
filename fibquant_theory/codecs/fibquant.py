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

The codes are :class:`~fibquant_theory.codecs.fibquant_codes.FibQuantCodes` and
the norm headers :mod:`fibquant_theory.codecs.norms` (both names are re-exported
here); :func:`~fibquant_theory.codecs.fibquant_factory.make_fibquant` is the
factory of the registry's ``"fibquant"``.

Example
-------
>>> import numpy as np
>>> from fibquant_theory.codecs.fibquant import FibQuantCodec
>>> from fibquant_theory.codebooks.design import design_codebook  # doctest: +SKIP
>>> codec = FibQuantCodec(design_codebook(64, 32, 128), seed=0)  # doctest: +SKIP
>>> codec.bits_per_vector, round(codec.compression_ratio, 2)  # doctest: +SKIP
(30, 34.13)
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import numpy as np
from numba import njit

from fibquant_theory._validation import as_vectors, check_int
from fibquant_theory.codecs.base import RateAccounting, check_same_codec, flat_index, take_positions
from fibquant_theory.codecs.fibquant_codes import CODEBOOK_HASH, FibQuantCodes
from fibquant_theory.codecs.norms import NORM_DTYPES, check_norm_dtype, decode_norms, encode_norms
from fibquant_theory.codecs.packing import PACKING_MODES, RecordLayout
from fibquant_theory.numerics.fixed_order import matmul_rows, row_norms
from fibquant_theory.search.encoders import ENCODERS, NearestCodewordSearch, make_search
from fibquant_theory.theory.rotation import ROTATION_KINDS, Rotation, make_rotation

__all__ = [
    "NORM_DTYPES",
    "FibQuantCodec",
    "FibQuantCodes",
    "decode_norms",
    "encode_norms",
]

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
    "void(float64[:, ::1], float64[:, :, ::1], int64[::1], int64[::1], int64[:, ::1], float64[:, ::1], float64[::1], float64[::1])",
    cache=True,
    nogil=True,
)
def _ip_pairs(qr, lut, qrow, crow, idx, points, norms, out):  # pragma: no cover - compiled
    """``out[o] = norms[c] * sum_b s_b`` with ``q = qrow[o], c = crow[o]``.

    The block score ``s_b`` is the table entry ``lut[q, b, idx[c, b]]`` when
    ``lut`` has rows, else ``<qr[q, block b], points[idx[c, b]]>`` (gathered).
    """
    m = idx.shape[1]
    k = points.shape[1]
    use_lut = lut.shape[0] > 0
    for o in range(out.size):
        q = qrow[o]
        c = crow[o]
        acc = 0.0
        for b in range(m):
            p = idx[c, b]
            if use_lut:
                acc += lut[q, b, p]
            else:
                for t in range(k):
                    acc += qr[q, b * k + t] * points[p, t]
        out[o] = norms[c] * acc


#: The ``lut`` argument of :func:`_ip_pairs` that selects gathering.
_NO_LUT = np.empty((0, 0, 0))


# ----------------------------------------------------------------------------- codec
def _codebook_hash(codebook: Any, points: np.ndarray) -> str:
    h = getattr(codebook, "content_hash", None)
    if callable(h):
        h = h()
    if not (isinstance(h, str) and CODEBOOK_HASH.fullmatch(h)):  # no (usable) content hash: hash the points
        h = hashlib.sha256(np.ascontiguousarray(points, dtype=np.float64).tobytes()).hexdigest()
    return h


class FibQuantCodec(RateAccounting):
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
        ``probes`` (two-stage), ``n_clusters``, ``top``, ``spill`` (clustered).

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
    codes_type: ClassVar[type] = FibQuantCodes

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
        check_norm_dtype(norm_dtype)
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
    def side_bits_per_vector(self) -> int:
        """Bits of the norm header (the only side information); ``bits_per_vector`` is the record length."""
        return self.norm_bits

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
        """Pack indices ``(..., m)`` and norms ``(...)`` into :class:`FibQuantCodes` (norms rounded to the header).

        Parameters
        ----------
        indices : array_like of int
            Codeword indices, shape ``(..., m)``.
        norms : array_like of float
            Norms, shape ``(...)``.

        Returns
        -------
        FibQuantCodes
            The packed records, leading shape ``norms.shape``.
        """
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

        Parameters
        ----------
        x : array_like
            Vectors, shape ``(..., d)``.

        Returns
        -------
        FibQuantCodes
            One record per vector, leading shape ``x.shape[:-1]``.
        """
        return self.pack(*self.encode_indices(x))

    # ------------------------------------------------------------------ decode
    def _check_codes(self, codes: object) -> FibQuantCodes:
        if not isinstance(codes, FibQuantCodes):
            raise TypeError(f"expected FibQuantCodes, got {type(codes).__name__}")
        mine = (self.d, self.k, self.n_codewords, self.norm_dtype, self.packing, self.rotation.kind, self.seed, self.codebook_hash)
        theirs = (codes.d, codes.k, codes.n_codewords, codes.norm_dtype, codes.packing, codes.rotation, codes.seed, codes.codebook_hash)
        check_same_codec(("d", "k", "n_codewords", "norm_dtype", "packing", "rotation", "seed", "codebook_hash"), mine, theirs)
        return codes

    def unpack(self, codes: FibQuantCodes, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(count, m)`` and norms ``(count,)`` of records ``start .. start+count-1`` (flat order).

        Validates the data (length, index range, norm headers); raises ``ValueError`` on corruption.

        Parameters
        ----------
        codes : FibQuantCodes
            Codes made by this codec.
        start : int, default 0
            First record (flat row-major order).
        count : int, optional
            Records to read (default: all from ``start``).

        Returns
        -------
        indices : numpy.ndarray
            Codeword indices, shape ``(count, m)``.
        norms : numpy.ndarray
            Norms (the header values), shape ``(count,)``, float64.
        """
        codes = self._check_codes(codes)
        header, idx = self.layout.unpack(codes.payload, codes.n_vectors, start, count)
        return idx, decode_norms(header, self.norm_dtype, first_record=start)

    def decode_indices(self, indices: object, norms: object, dtype: Any = np.float64) -> np.ndarray:
        """Reconstruct ``(..., d)`` from indices ``(..., m)`` and norms ``(...)``.

        Parameters
        ----------
        indices : array_like of int
            Codeword indices, shape ``(..., m)``.
        norms : array_like of float
            Norms, shape ``(...)``.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``(..., d)``: the codewords, rotated back and scaled by the norms.
        """
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
        """Reconstruct all vectors: shape ``codes.shape + (d,)``, ``dtype`` (float64 by default).

        Parameters
        ----------
        codes : FibQuantCodes
            Codes made by this codec.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``codes.shape + (d,)``.
        """
        idx, norms = self.unpack(codes)
        return self.decode_indices(idx.reshape(codes.shape + (self.n_blocks,)), norms.reshape(codes.shape), dtype)

    def decode_row(self, codes: FibQuantCodes, i: int | tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
        """Decode vector ``i`` alone (random access), shape ``(d,)``.

        ``i`` is a flat (row-major) index into ``codes.shape`` or a tuple of
        indices. Only the bytes of record ``i`` are read; the result equals
        ``decode(codes).reshape(-1, d)[i]`` exactly.

        Parameters
        ----------
        codes : FibQuantCodes
            Codes made by this codec.
        i : int or tuple of int
            Flat (row-major) index into ``codes.shape``, or a tuple of indices.
        dtype : numpy dtype, default numpy.float64
            Output dtype.

        Returns
        -------
        numpy.ndarray
            Shape ``(d,)``.
        """
        codes = self._check_codes(codes)
        flat = flat_index(codes.shape, i)
        idx, norms = self.unpack(codes, flat, 1)
        return self.decode_indices(idx, norms, dtype)[0]

    def take(self, codes: FibQuantCodes, index: object, axis: int = 0) -> FibQuantCodes:
        """The codes of positions ``index`` along axis ``axis``, exactly; see :meth:`fibquant_theory.codecs.base.Codec.take`.

        The records are unpacked and packed again (the norms are header
        values, so packing them again is exact); nothing is decoded.

        Parameters
        ----------
        codes : FibQuantCodes
            Codes made by this codec.
        index : array_like of int
            Positions along ``axis``.
        axis : int, default 0
            Axis of ``codes.shape``.

        Returns
        -------
        FibQuantCodes
            The codes at those positions.
        """
        codes = self._check_codes(codes)
        idx, ax = take_positions(codes.shape, index, axis)
        indices, norms = self.unpack(codes)
        indices = np.take(indices.reshape(codes.shape + (self.n_blocks,)), idx, axis=ax)
        return self.pack(indices, np.take(norms.reshape(codes.shape), idx, axis=ax))

    # ------------------------------------------------------------------ inner products
    def lookup_tables(self, q: object) -> np.ndarray:
        r"""Per-block tables :math:`L_{b,n} = \langle(\Pi q)_b, c_n\rangle`, shape ``(..., m, N)`` for ``q (..., d)``.

        Parameters
        ----------
        q : array_like
            Queries, shape ``(..., d)``.

        Returns
        -------
        numpy.ndarray
            The tables, shape ``(..., m, N)``, float64.
        """
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
        lut = _NO_LUT
        if method == "lut" or (method == "auto" and 4 * n_q * self.n_codewords <= out.size):
            lut = np.ascontiguousarray(matmul_rows(qr.reshape(n_q, self.n_blocks, self.k), self.points.T))
        _ip_pairs(qr, lut, qrow, crow, idx, self.points, norms, out)
        return out.reshape(out_shape)
