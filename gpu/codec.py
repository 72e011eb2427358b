r"""FibQuant on the GPU: encode, decode and decode-attention from codes (Numba-CUDA).

:class:`GPUFibQuantCodec` wraps a CPU :class:`~fibquant_theory.codecs.fibquant.FibQuantCodec`
and runs its three hot paths on the GPU with the *same packed layout, bit for
bit* (``"fixed"`` packing; ``"mixed-radix"`` is CPU-only):

``encode``
    float16 / bfloat16 / float32 vectors ``(n, d)`` -> packed records (norm
    header + indices), exhaustive or two-stage nearest-codeword search with the
    codebook in shared memory; ``precision="float64"`` reproduces the CPU
    encoder's indices, ``"float32"`` (default) is the fast path.
``decode``
    packed records -> fp16 / bf16 / fp32 vectors ``(n, d)``, inverse rotation
    applied (fast Hadamard with the in-block transform folded into the codebook,
    :mod:`~fibquant_theory.gpu.column_decode`, or with warp shuffles,
    ``GPUOptions(decode_layout="chunks")``; or dense).
``decode_attention``
    one query per head against ``T`` encoded keys and values (multi-head or
    grouped-query, ``kv_heads=``): scores from per-block lookup tables of
    ``q . codewords`` (no dequantised K), softmax, and the weighted sum of V
    accumulated per codeword and rotated back once.

Arrays go in and out as GPU arrays: PyTorch CUDA tensors (no host copies;
results are torch tensors on the same device, launched on torch's current
stream, so the calls can be captured in a CUDA graph with ``check=False``) or
Numba device arrays. NumPy arrays are accepted too and are copied to the device
(results are then Numba device arrays). Kernel choices and tuning are a frozen
:class:`~fibquant_theory.gpu.options.GPUOptions`, fixed per codec.

``check=True`` (the default) raises at once on bad data (one synchronisation);
``check=False`` records it for :meth:`GPUFibQuantCodec.check_errors`.

Example
-------
>>> import torch  # doctest: +SKIP
>>> from fibquant_theory.codebooks.design import design_codebook  # doctest: +SKIP
>>> from fibquant_theory.codecs.fibquant import FibQuantCodec  # doctest: +SKIP
>>> from fibquant_theory.gpu.codec import GPUFibQuantCodec  # doctest: +SKIP
>>> g = GPUFibQuantCodec(FibQuantCodec(design_codebook(128, 8, 256), rotation="hadamard"))  # doctest: +SKIP
>>> x = torch.randn(4096, 128, device="cuda", dtype=torch.float16)  # doctest: +SKIP
>>> payload = g.encode(x)                   # uint8 tensor, 18 bytes per vector  # doctest: +SKIP
>>> x_hat = g.decode(payload, 4096)         # (4096, 128) float16 tensor  # doctest: +SKIP
>>> out = g.decode_attention(q, kp, vp, 4096, check=False)  # the decoding step  # doctest: +SKIP
>>> g.check_errors()                        # raises if any check=False call saw bad data  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from fibquant_theory.config import (
    GPU_ATTENTION_MIN_SPLIT_TOKENS,
    GPU_DEFAULT_SMS,
    GPU_DENSE_TABLE_LIMIT,
    GPU_SHARED_DEFAULT,
    GPU_SHARED_OPTIN,
)
from fibquant_theory.numerics.fixed_order import matmul_rows

from ._compat import SIMULATOR, cuda
from .arrays import Input, View, all_finite, as_input, constant, empty, length_input, payload_codes, result
from .attention_lse import split_log_sum_exp
from .attention import MAX_SPLITS, Q_BF16, Q_F16, Q_F32, attention_config, attention_kernel
from .codegen import record_granularity
from .column_decode import column_codebook, column_decode_kernel, column_plan
from .decode import decode_kernel
from .device import HDR_BF16, HDR_F16, HDR_F32, OUT_BF16, OUT_F16, OUT_F32, ROT_DENSE, ROT_HADAMARD
from .encode import IN_BF16, IN_F16, IN_F32, encode_kernel, encode_shared_bytes
from .launch import stream_handle
from .options import GPUOptions
from .runtime import NO_ERROR, KernelRunner

__all__ = ["INPUT_DTYPES", "OUTPUT_DTYPES", "PRECISIONS", "GPUFibQuantCodec", "GPUOptions"]

#: Output formats of :meth:`GPUFibQuantCodec.decode` and ``decode_attention``.
OUTPUT_DTYPES = ("float16", "bfloat16", "float32")
#: Input formats of :meth:`GPUFibQuantCodec.encode` and of the queries of ``decode_attention``.
INPUT_DTYPES = ("float16", "bfloat16", "float32")
#: Arithmetic of the encoder's rotation and search.
PRECISIONS = ("float32", "float64")

_HDR = {"float16": HDR_F16, "bfloat16": HDR_BF16, "float32": HDR_F32}
_OUT = {"float16": OUT_F16, "bfloat16": OUT_BF16, "float32": OUT_F32}
_IN = {"float32": IN_F32, "float16": IN_F16, "bfloat16": IN_BF16}
_Q = {"float32": Q_F32, "float16": Q_F16, "bfloat16": Q_BF16}
_NP = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}
_NP_OUT = {OUT_F16: np.float16, OUT_BF16: np.uint16, OUT_F32: np.float32}
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(GPUOptions))


class GPUFibQuantCodec:
    """GPU kernels for one :class:`~fibquant_theory.codecs.fibquant.FibQuantCodec` (same layout, bit for bit).

    Parameters
    ----------
    codec : FibQuantCodec
        The CPU codec: codebook, rotation (``"haar"`` or ``"hadamard"``), norm
        header format, encoder (``"exhaustive"`` or ``"two-stage"``) and
        packing (``"fixed"`` only: mixed-radix packing is CPU-only).
    precision : {"float32", "float64"}
        Arithmetic of the encoder's normalisation, rotation and distances.
        ``"float64"`` follows the CPU encoder operation by operation, so its
        indices are the CPU's (up to exact ties in the last bit); ``"float32"``
        is faster and picks a codeword whose distance is within float32
        rounding of the nearest one.
    options : GPUOptions, optional
        Kernel choices and tuning (default ``GPUOptions()``); make variants
        with :func:`dataclasses.replace`.

    Raises
    ------
    ValueError
        Mixed-radix packing, the clustered encoder, or a codebook too large for shared memory.
    TypeError
        ``options`` is not a :class:`GPUOptions`.

    Notes
    -----
    A codec caches its launches (parameter blocks, workspaces): use one per thread.
    """

    def __init__(self, codec: Any, *, precision: str = "float32", options: GPUOptions | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if options is None:
            options = GPUOptions()
        elif not isinstance(options, GPUOptions):
            raise TypeError(f"options must be a GPUOptions, got {type(options).__name__}")
        self._options = options
        if codec.packing != "fixed":
            raise ValueError(
                f"the GPU kernels read and write the 'fixed' packing only; packing={codec.packing!r} is CPU-only "
                "(build the codec with packing='fixed')"
            )
        if codec.encoder not in ("exhaustive", "two-stage"):
            raise ValueError(f"the GPU encoder supports 'exhaustive' and 'two-stage', not {codec.encoder!r} (CPU-only)")
        self.codec = codec
        self.precision = precision
        self.d, self.k, self.n_codewords = codec.d, codec.k, codec.n_codewords
        self.n_blocks = codec.n_blocks
        self.layout = codec.layout
        self._hkind = _HDR[codec.norm_dtype]
        self._rot = ROT_HADAMARD if codec.rotation.kind == "hadamard" else ROT_DENSE
        nk = self.n_codewords * self.k
        if (nk + self.k) * 4 + 8 * self.d + 64 > GPU_SHARED_DEFAULT:  # the chunked decode's static codebook
            raise ValueError(f"codebook of {self.n_codewords} x {self.k} is too large for the GPU kernels' shared memory")
        fp64 = precision == "float64"
        self._enc_shared = encode_shared_bytes(self.d, self.k, self.n_codewords, fp64)
        if self._enc_shared > GPU_SHARED_OPTIN:
            raise ValueError(f"codebook of {self.n_codewords} x {self.k} is too large for the GPU encoder in {precision}")
        search_dt = np.float64 if fp64 else np.float32
        s = codec.search
        if codec.encoder == "two-stage":
            pts, n2 = s._sorted, s._sorted_norm2
            order, offsets, radii = s._order, s._offsets, s.radii
            self._two_stage, self._n_shells, self._probes = True, int(s.n_shells), int(s.probes)
        else:
            pts, n2 = s.points, s._norm2
            order, offsets, radii = np.zeros(1, np.int64), np.zeros(2, np.int64), np.zeros(1)
            self._two_stage, self._n_shells, self._probes = False, 0, 0
        d = self.d
        if self._rot == ROT_HADAMARD:
            signs = np.asarray(codec.rotation.signs, dtype=np.float64)
            mat_fwd = np.zeros((1, 1))
            table = np.zeros((1, 1, 1))
        else:
            signs = np.ones(d)
            m = codec.rotation.matrix
            mat_fwd = m.T  # z = u @ M^T, x = z @ M
            if self.n_blocks * self.n_codewords * d * 4 > GPU_DENSE_TABLE_LIMIT:
                raise ValueError(
                    f"the dense-rotation decode table (m, N, d) would exceed {GPU_DENSE_TABLE_LIMIT >> 20} MiB; "
                    "use rotation='hadamard'"
                )
            # rotated codebook P[b, n] = c_n @ M[b k:(b+1) k], x = nu sum_b P[b, i_b]; fixed-order products (no BLAS)
            blocks = m.reshape(self.n_blocks, self.k, d)
            table = np.stack([matmul_rows(codec.points, blocks[b]) for b in range(self.n_blocks)])
        scale = 1.0 / np.sqrt(d)
        f32 = np.float32
        self._cb32 = constant(codec.points.ravel().astype(f32))
        self._dec_signs = constant((signs * scale).astype(f32))
        self._dec_table = constant(table.astype(f32))
        self._enc = [constant(np.asarray(pts).ravel().astype(search_dt)), constant(np.asarray(n2, dtype=search_dt)),
                     constant(np.asarray(order, dtype=np.int64)), constant(np.asarray(offsets, dtype=np.int64)),
                     constant(np.asarray(radii, dtype=search_dt)), constant(signs.astype(search_dt)),
                     constant(np.asarray(mat_fwd, dtype=search_dt))]
        self._att_signs = constant(np.append(signs, scale).astype(f32))
        self._att_mat = constant(np.asarray(mat_fwd, dtype=f32))
        self._runner = KernelRunner(options.direct_launch)
        self._workspaces: dict[tuple[int, int], tuple[Input, ...]] = {}
        self._column_tables: dict[tuple[int, int], Input] = {}
        self._plans: dict[Any, Any] = {}
        self._nbytes_memo: dict[int, int] = {}  # nbytes(n) of plain ints: the hot path skips the checks
        self._device_info: tuple[int, int] | None = None

    def __repr__(self) -> str:
        opts = "" if self._options == GPUOptions() else f", options={self._options!r}"
        return f"GPUFibQuantCodec({self.codec!r}, precision={self.precision!r}{opts})"

    @property
    def options(self) -> GPUOptions:
        """Kernel choices and tuning of this codec (frozen)."""
        return self._options

    @property
    def direct_launch(self) -> bool:
        """True when kernels are launched through the driver directly (a GPU and ``options.direct_launch``)."""
        return self._runner.direct

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OPTION_NAMES:  # the former tuning attributes: fail loudly rather than be ignored
            raise AttributeError(
                f"{name} is an option: build GPUFibQuantCodec(codec, options=dataclasses.replace(g.options, {name}=...))"
            )
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ helpers
    @property
    def bits_per_vector(self) -> int:
        """Bits of one packed record (norm header + indices)."""
        return self.layout.record_bits

    def nbytes(self, n: int) -> int:
        """Bytes of the packed stream of ``n`` records.

        Parameters
        ----------
        n : int
            Number of records.

        Returns
        -------
        int
            ``ceil(n R / 8)`` for records of ``R`` bits.
        """
        if type(n) is int:  # the per-call path: the layout's checks once per count (bool and numpy ints go through them)
            got = self._nbytes_memo.get(n)
            if got is None:
                if len(self._nbytes_memo) >= 1024:
                    self._nbytes_memo.clear()
                got = self._nbytes_memo[n] = self.layout.nbytes(n)
            return got
        return self.layout.nbytes(n)

    def check_errors(self, stream: Any = None) -> None:
        """Raise if a call made with ``check=False`` since the last check saw bad data (and reset the record).

        Parameters
        ----------
        stream : None, int, numba stream or torch.cuda.Stream
            The stream the calls ran on (None: the legacy default stream).

        Raises
        ------
        ValueError
            Naming the operation and the first bad row or record.
        """
        self._runner.check_errors(stream)

    def _sms_and_shared(self) -> tuple[int, int]:
        """(multiprocessors, opt-in shared memory per block) of the current device (the simulator: the defaults)."""
        if self._device_info is None:
            if SIMULATOR:
                self._device_info = (GPU_DEFAULT_SMS, GPU_SHARED_OPTIN)
            else:
                dev = cuda.get_current_device()
                try:
                    optin = int(dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
                except Exception:  # pragma: no cover - depends on the driver bindings
                    optin = GPU_SHARED_DEFAULT
                self._device_info = (int(dev.MULTIPROCESSOR_COUNT), optin)
        return self._device_info

    def _payload(self, payload: Any, n: int, name: str = "payload") -> Input:
        arr = as_input(payload, name, ("uint8",))
        if len(arr.shape) != 1:
            raise ValueError(f"{name} must be 1-D uint8, got shape {arr.shape}")
        expected = self.nbytes(n)
        if arr.shape[0] != expected:
            kind = "truncated" if arr.shape[0] < expected else "too long"
            raise ValueError(
                f"{name} is {kind}: {n} records of {self.bits_per_vector} bits need {expected} bytes, got {arr.shape[0]}"
            )
        return arr

    def _words32(self, *payloads: Input, allowed: bool) -> bool:
        """Read whole 32-bit words: every stream starts 4-byte aligned and is a whole number of words."""
        return (not SIMULATOR or allowed) and all(p.shape[0] % 4 == 0 and p.ptr % 4 == 0 for p in payloads)

    def _stream(self, stream: Any, like: Input) -> int:
        return 0 if SIMULATOR else stream_handle(stream, like.tensor is not None)

    # ------------------------------------------------------------------ encode
    def encode(self, x: Any, *, check: bool = True, stream: Any = None) -> Any:
        """Encode vectors into the packed record stream.

        Parameters
        ----------
        x : torch.Tensor, device array or numpy.ndarray
            Vectors, shape ``(n, d)``, float16, bfloat16 (torch) or float32.
        check : bool
            Raise ``ValueError`` naming the first row with NaN/Inf or with a norm
            that overflows the header format (as the CPU codec does): one
            synchronisation. With ``check=False`` such rows are encoded as zero
            vectors and recorded for :meth:`check_errors`.
        stream : None, int, numba stream or torch.cuda.Stream
            Stream to launch on (None: torch's current stream for torch input, else the default stream).

        Returns
        -------
        torch.Tensor or device array
            Shape ``(nbytes(n),)``, uint8: the same bytes as
            ``FibQuantCodec.encode(x).payload`` (torch when ``x`` is torch).
        """
        xi = as_input(x, "x", INPUT_DTYPES)
        if len(xi.shape) != 2 or xi.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {xi.shape}")
        n = xi.shape[0]
        nbytes = self.nbytes(n)
        n_words = max((n * self.bits_per_vector + 31) // 32, 1)
        out = empty((4 * n_words,), "uint8", xi)
        res = result(out)
        if n == 0:
            return res[:0]
        in_kind = _IN[xi.dtype]
        fp64 = self.precision == "float64"
        conf = (self.d, self.k, self.n_codewords, self._hkind, self._rot, self._two_stage, self._n_shells, self._probes, fp64)

        def make() -> tuple[Any, int]:
            return encode_kernel(*conf, in_kind)[0], self._enc_shared

        grid = encode_kernel(*conf, in_kind)[1](n)
        words = View(out, np.uint32, (n_words,))
        args = [xi, n, *self._enc, words, None]
        err = self._runner.run(("encode", in_kind), make, args, (0, 1, 9), grid, self._stream(stream, xi), "encode", check, 10)
        if err is not None:
            if err[0] != NO_ERROR:
                raise ValueError(f"x contains NaN or Inf (first bad row {int(err[0])})")
            if err[1] != NO_ERROR:
                raise ValueError(
                    f"the norm of row {int(err[1])} overflows the {self.codec.norm_dtype} norm header; use norm_dtype='float32'"
                )
        return res[:nbytes]

    # ------------------------------------------------------------------ decode
    def decode(self, payload: Any, n: int, *, dtype: str = "float16", check: bool = True, stream: Any = None) -> Any:
        """Decode ``n`` packed records into vectors.

        Parameters
        ----------
        payload : torch.Tensor, device array or numpy.ndarray
            The record stream, 1-D uint8 of exactly ``nbytes(n)`` bytes.
        n : int
            Number of records.
        dtype : {"float16", "bfloat16", "float32"}
            Output format (rounded to nearest even from float32 arithmetic).
        check : bool
            Raise ``ValueError`` naming the first record with an index ``>= N``
            or a norm header that is not a finite number ``>= 0`` (one
            synchronisation). With ``check=False`` such records decode as zeros
            and are recorded for :meth:`check_errors`.
        stream : None, int, numba stream or torch.cuda.Stream
            Stream to launch on (None: torch's current stream for torch input, else the default stream).

        Returns
        -------
        torch.Tensor or device array
            Shape ``(n, d)``: torch ``float16``/``bfloat16``/``float32`` when the
            payload is a torch tensor; otherwise a device array (``uint16`` bit
            patterns for ``"bfloat16"``).
        """
        if dtype not in OUTPUT_DTYPES:
            raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        pay = self._payload(payload, n)
        out = empty((n, self.d), dtype, pay)
        if n:
            okind = _OUT[dtype]
            sh = self._stream(stream, pay)
            err = self._column_decode(pay, n, okind, out, check, sh)
            if err is False:
                o = self._options
                conf = (self.d, self.k, self.n_codewords, self._hkind, okind, self._rot)
                tune = {"per_lane": o.decode_per_lane, "chunk": o.decode_chunk, "max_registers": o.decode_registers}

                def make() -> tuple[Any, int]:
                    return decode_kernel(*conf, **tune)[0], 0

                grid = decode_kernel(*conf, **tune)[1](n)
                args = [pay, n, self._cb32, self._dec_signs, self._dec_table, out, out.ptr, None]
                err = self._runner.run(("decode-chunks", okind), make, args, (0, 1, 5, 6), grid, sh, "decode", check, 7)
            if err is not None and err[0] != NO_ERROR:
                raise ValueError(f"packed data is corrupt: record {int(err[0])} has an index >= N or a bad norm header")
        return result(out)

    def _column_decode(self, pay: Input, n: int, okind: int, out: Input, check: bool, sh: int) -> Any:
        """Decode with :func:`column_decode_kernel` when it applies (``False``: use the chunked kernel); returns the flags."""
        o = self._options
        if self._rot != ROT_HADAMARD or o.decode_layout != "columns":
            return False
        key = ("plan-columns", okind)
        if key not in self._plans:
            try:
                self._plans[key] = column_plan(self.d, self.k, self.n_codewords, okind, int(o.decode_columns), int(o.decode_replicas))
            except ValueError:
                if o.decode_columns or o.decode_replicas:  # asked for explicitly: say why it does not fit
                    raise
                self._plans[key] = None  # e.g. k = 1 or too many blocks per lane: the chunked layout handles it
        plan = self._plans[key]
        if plan is None:
            return False
        words32 = self._words32(pay, allowed=o.decode_words32)
        conf = (self.d, self.k, self.n_codewords, self._hkind, okind, plan["C"], words32, o.decode_prefetch,
                o.decode_registers, plan["R"])
        tkey = (plan["C"], plan["R"])
        if tkey not in self._column_tables:
            self._column_tables[tkey] = constant(column_codebook(self.codec.points, plan))

        def make() -> tuple[Any, int]:
            return column_decode_kernel(*conf)[0], plan["bytes"]

        grid = column_decode_kernel(*conf)[1](n)
        gran = 4 if words32 else record_granularity(self.bits_per_vector)
        pay_v = View(pay, {1: np.uint8, 2: np.uint16, 4: np.uint32}[gran], (pay.shape[0] // gran,))
        ow = 4 if plan["out_words"] == 1 else 8
        out_v = View(out, np.uint32 if ow == 4 else np.uint64, (n * self.d * np.dtype(_NP_OUT[okind]).itemsize // ow,))
        args = [pay_v, n, self._column_tables[tkey], self._dec_signs, out_v, None]
        return self._runner.run(("decode-columns", okind, words32), make, args, (0, 1, 4), grid, sh, "decode", check, 5)

    # ------------------------------------------------------------------ attention
    def _workspace(self, bh: int, n_split: int) -> tuple[Input, ...]:
        key = (bh, n_split)
        if key not in self._workspaces:
            self._workspaces[key] = (
                constant(np.zeros((bh, n_split), np.float32)), constant(np.zeros((bh, n_split), np.float32)),
                constant(np.zeros((bh, n_split, self.d), np.float32)), constant(np.zeros(bh, dtype=np.int32)),
            )
        return self._workspaces[key]

    def decode_attention(
        self,
        q: Any,
        k_payload: Any,
        v_payload: Any,
        context: int,
        *,
        kv_heads: int | None = None,
        scale: float | None = None,
        dtype: str | None = None,
        n_splits: int | None = None,
        check: bool = True,
        stream: Any = None,
        length: Any = None,
        return_lse: bool = False,
    ) -> Any:
        r"""Attention of one query per head over encoded keys and values (the decoding step).

        .. math:: o_h = \sum_i \operatorname{softmax}_i(\mathrm{scale}\,\langle q_h,\hat k_{g(h),i}\rangle)\,\hat v_{g(h),i}

        with :math:`\hat k, \hat v` the decoded vectors, computed without forming them, and
        :math:`g(h)` the key/value head of query head :math:`h`. The softmax weights of V are
        summed per (block, codeword) in 32-bit fixed point scaled to each chunk's total weight
        (native shared-memory integer atomics, so the result is deterministic; about ``2**-31``
        relative rounding per token), then in float32 across chunks and splits.

        Parameters
        ----------
        q : torch.Tensor, device array or numpy.ndarray
            Queries, shape ``(..., H, d)`` (e.g. ``(B, H, d)``), float16, bfloat16 (torch) or float32.
        k_payload, v_payload : uint8 arrays
            Records of the keys and values in ``(..., H_kv, context)`` row-major order:
            ``prod(q.shape[:-2]) * H_kv * context`` records each.
        context : int
            Tokens per head ``T >= 1``.
        kv_heads : int, optional
            Key/value heads ``H_kv`` (grouped-query attention: query head ``h`` of a batch row
            reads key/value head ``h // (H / H_kv)``, as ``scaled_dot_product_attention(...,
            enable_gqa=True)``). Default ``H`` (multi-head attention).
        scale : float, optional
            Softmax scale (default :math:`1/\sqrt d`, as ``scaled_dot_product_attention``).
        dtype : {"float16", "bfloat16", "float32"}, optional
            Output format (default: ``q``'s).
        n_splits : int, optional
            Context splits per head, at most ``MAX_SPLITS`` = 128 (default: enough blocks to fill
            the GPU in one wave, ``options.attention_blocks_per_sm`` blocks per SM).
        check : bool
            Raise ``ValueError`` on NaN/Inf queries or a corrupt record (synchronises). With
            ``check=False`` nothing on the device is read by the host: corrupt records are
            recorded for :meth:`check_errors`, and the call can be captured in a CUDA graph.
        stream : None, int, numba stream or torch.cuda.Stream
            Stream to launch on (None: torch's current stream for torch input, else the default stream).
        length : int64 array of shape (1,), optional
            On the device, read by the kernel (CUDA graphs follow it): attend over the first ``min(length[0], context)`` records, ``context`` staying the stride between heads.
        return_lse : bool
            Also return the log-sum-exp of every head's scaled scores (:func:`~fibquant_theory.gpu.attention_lse.split_log_sum_exp`).

        Returns
        -------
        torch.Tensor or device array
            Shape ``q.shape``; with ``return_lse``, the pair ``(output, lse)``, ``lse`` a float32 torch tensor of shape ``q.shape[:-1]``.

        Raises
        ------
        ValueError
            Shapes that do not match, ``H`` not a multiple of ``kv_heads``, a bad ``scale``,
            ``dtype`` or ``context``, and (with ``check``) bad data.
        """
        qi = as_input(q, "q", INPUT_DTYPES)
        qshape = qi.shape
        if len(qshape) < 1 or qshape[-1] != self.d:
            raise ValueError(f"q must have shape (..., {self.d}), got {qshape}")
        lead = qshape[:-1]
        bh = math.prod(lead)
        group = 1
        if kv_heads is not None:
            heads = lead[-1] if lead else 1
            if int(kv_heads) < 1 or heads % int(kv_heads):
                raise ValueError(f"kv_heads must be >= 1 and divide the {heads} query heads, got {kv_heads}")
            group = heads // int(kv_heads)
        T = int(context)
        if T < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        ka = self._payload(k_payload, bh // group * T, "k_payload")
        va = self._payload(v_payload, bh // group * T, "v_payload")
        if dtype is None:
            dtype = qi.dtype
        if dtype not in OUTPUT_DTYPES:
            raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
        scale = 1.0 / math.sqrt(self.d) if scale is None else float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        if check and not all_finite(qi):
            raise ValueError("q has NaN or Inf entries")
        o = self._options
        if n_splits is None:
            sms = self._sms_and_shared()[0]
            # whole waves of attention_blocks_per_sm blocks per SM (a partial wave costs a whole one)
            n_splits = max(1, min(-(-T // GPU_ATTENTION_MIN_SPLIT_TOKENS), (o.attention_blocks_per_sm * sms) // bh))
        n_splits = max(1, min(int(n_splits), T, MAX_SPLITS))
        per_split = -(-T // n_splits)
        n_splits = -(-T // per_split)  # every split non-empty
        words32 = self._words32(ka, va, allowed=o.attention_words32)
        q_kind, okind = _Q[qi.dtype], _OUT[dtype]
        key = ("attention-conf", q_kind, okind, words32)
        if key not in self._plans:
            head = (self.d, self.k, self.n_codewords, self._hkind, self._rot)
            self._plans[key] = attention_config(head, okind, words32, q_kind, self._options, self._sms_and_shared()[1])
        kern_conf, shared = self._plans[key]
        out = empty((bh, self.d), dtype, qi)
        gran = 4 if words32 else record_granularity(self.bits_per_vector)
        pdt = {1: np.uint8, 2: np.uint16, 4: np.uint32}[gran]
        k_v, v_v = (View(a, pdt, (a.shape[0] // gran,)) for a in (ka, va))
        q_v = View(qi, _NP[qi.dtype], (bh, self.d))
        ws = self._workspace(bh, n_splits)
        args = [q_v, k_v, v_v, T, group, per_split, np.float32(scale), self._cb32, self._att_signs, self._att_mat, *ws, out, None]
        dev_len = length is not None and args.append(length_input(length)) is None  # valid records, on the device

        def make() -> tuple[Any, int]:
            return attention_kernel(*kern_conf, dev_len), shared

        err = self._runner.run(
            ("attention", q_kind, okind, words32, bh, n_splits, dev_len), make, args, (0, 1, 2, 3, 4, 5, 6, 14, 16)[: 8 + dev_len],
            (n_splits, bh), self._stream(stream, qi), "attention", check, 15,
        )
        if err is not None and err[0] != NO_ERROR:
            raise ValueError(f"packed data is corrupt: record {int(err[0])} has an index >= N or a bad norm header")
        res = result(out)
        res = res.reshape(qshape) if out.tensor is not None or len(qshape) != 2 else res
        return (res, split_log_sum_exp(ws[0], ws[1]).reshape(qshape[:-1])) if return_lse else res

    # ------------------------------------------------------------------ host interop
    def to_codes(self, payload: Any, shape: tuple[int, ...]) -> Any:
        """Copy a device record stream of ``prod(shape)`` records to the host (:func:`~fibquant_theory.gpu.arrays.payload_codes`)."""
        return payload_codes(self.codec, self._payload(payload, math.prod(shape)), shape)
