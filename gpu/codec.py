r"""FibQuant on the GPU: encode, decode and decode-attention from codes (Numba-CUDA).

:class:`GPUFibQuantCodec` wraps a CPU :class:`~fibquant_theory.codecs.fibquant.FibQuantCodec`
and runs its three hot paths on the GPU with the *same packed layout, bit for
bit* (``"fixed"`` packing; ``"mixed-radix"`` is CPU-only):

``encode``
    fp16/fp32 vectors ``(n, d)`` -> packed records (norm header + indices),
    exhaustive or two-stage nearest-codeword search with the codebook in
    shared memory; ``precision="float64"`` reproduces the CPU encoder's
    indices, ``"float32"`` (default) is the fast path.
``decode``
    packed records -> fp16 / bf16 / fp32 vectors ``(n, d)``, inverse rotation
    applied (fast Hadamard with warp shuffles, or, with
    ``GPUOptions(decode_layout="columns")``, with the in-block transform folded
    into the codebook and no shuffles, see :mod:`~fibquant_theory.gpu.column_decode`;
    or dense).
``decode_attention``
    one query per head against ``T`` encoded keys and values: scores from
    per-block lookup tables of ``q . codewords`` (no dequantised K), softmax,
    and the weighted sum of V accumulated per codeword and rotated back once.

Arrays go in and out as GPU arrays: PyTorch CUDA tensors (through
``__cuda_array_interface__``, no host copies; results are torch tensors on the
same device) or Numba device arrays. NumPy arrays are accepted too and are
copied to the device (results are then Numba device arrays). Kernel choices and
tuning are a frozen :class:`~fibquant_theory.gpu.options.GPUOptions`, fixed per codec.

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
>>> from dataclasses import replace  # doctest: +SKIP
>>> g2 = GPUFibQuantCodec(g.codec, options=replace(g.options, decode_layout="columns"))  # doctest: +SKIP
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
from .attention import MAX_SPLITS, attention_kernel, attention_plan
from .codegen import allow_dynamic_shared, lane_layout, record_granularity
from .column_decode import column_codebook, column_decode_kernel, column_plan
from .decode import decode_kernel
from .device import HDR_BF16, HDR_F16, HDR_F32, OUT_BF16, OUT_F16, OUT_F32, ROT_DENSE, ROT_HADAMARD, THREADS
from .encode import encode_kernel
from .options import GPUOptions

__all__ = ["GPUFibQuantCodec", "GPUOptions", "OUTPUT_DTYPES", "PRECISIONS"]

#: Output formats of :meth:`GPUFibQuantCodec.decode` and ``decode_attention``.
OUTPUT_DTYPES = ("float16", "bfloat16", "float32")
#: Arithmetic of the encoder's rotation and search.
PRECISIONS = ("float32", "float64")

_HDR = {"float16": HDR_F16, "bfloat16": HDR_BF16, "float32": HDR_F32}
_OUT = {"float16": OUT_F16, "bfloat16": OUT_BF16, "float32": OUT_F32}
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(GPUOptions))


def _smem_optin(dev: Any) -> int:
    """Shared memory a block may opt in to on ``dev`` (227 KiB on an H100; the simulator: the same)."""
    if dev is None:
        return GPU_SHARED_OPTIN
    try:
        return int(dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
    except Exception:  # pragma: no cover - depends on the driver bindings
        return GPU_SHARED_DEFAULT


def _is_torch(a: Any) -> bool:
    return type(a).__module__.startswith("torch") and hasattr(a, "is_cuda")


def _device_view(a: Any, name: str, dtypes: tuple[Any, ...]) -> tuple[Any, Any]:
    """``(numba device array, torch tensor or None)`` without a host copy for GPU inputs."""
    if _is_torch(a):
        if not a.is_cuda:
            raise ValueError(f"{name} is a CPU torch tensor; move it to the GPU first")
        t = a.contiguous()
        if t.dtype.is_floating_point and str(t.dtype).replace("torch.", "") not in ("float16", "float32"):
            raise ValueError(f"{name} must be float16 or float32, got {t.dtype}")
        return cuda.as_cuda_array(t.detach()), t
    if hasattr(a, "copy_to_host"):  # a Numba device array (or the simulator's)
        arr = a
    elif hasattr(a, "__cuda_array_interface__"):
        arr = cuda.as_cuda_array(a)
    else:
        host = np.asarray(a)
        if host.dtype not in dtypes:
            raise ValueError(f"{name} must have dtype in {[np.dtype(x).name for x in dtypes]}, got {host.dtype}")
        arr = cuda.to_device(np.ascontiguousarray(host))
    if np.dtype(arr.dtype) not in [np.dtype(x) for x in dtypes]:
        raise ValueError(f"{name} must have dtype in {[np.dtype(x).name for x in dtypes]}, got {arr.dtype}")
    if not arr.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous")
    return arr, None


def _empty(shape: tuple[int, ...], np_dtype: Any, like: Any) -> tuple[Any, Any]:
    """Allocate ``(numba view, torch tensor or None)`` on the device, as torch when ``like`` is torch."""
    if like is not None:
        import torch

        tdt = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32, np.dtype(np.uint8): torch.uint8,
               np.dtype(np.int32): torch.int32, np.dtype(np.uint16): torch.int16, np.dtype(np.uint32): torch.int32}[np.dtype(np_dtype)]
        t = torch.empty(shape, dtype=tdt, device=like.device)
        view = cuda.as_cuda_array(t)
        if np.dtype(np_dtype) in (np.dtype(np.uint16), np.dtype(np.uint32)):
            view = view.view(np_dtype)
        return view, t
    return cuda.device_array(shape, dtype=np_dtype), None


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
        Mixed-radix packing, the clustered encoder, a two-stage codebook with
        more than 63 shells, or a codebook too large for shared memory.
    TypeError
        ``options`` is not a :class:`GPUOptions`.
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
        fs = 8 if precision == "float64" else 4
        nk = self.n_codewords * self.k
        if (nk + self.k + 2 * self.n_blocks * (self.n_codewords + 1)) * 4 + 8 * self.d + 64 > GPU_SHARED_DEFAULT:
            raise ValueError(f"codebook of {self.n_codewords} x {self.k} is too large for the GPU kernels' shared memory")
        vper = lane_layout(self.d)[1]
        rbits = self.layout.record_bits
        wpc = max(32 // math.gcd(rbits, 32), 32 // lane_layout(self.d)[0]) * rbits // 32
        if nk * fs + self.n_codewords * fs + 8 * 32 * vper * fs + 8 * 4 * wpc > GPU_SHARED_DEFAULT:
            raise ValueError(f"codebook of {self.n_codewords} x {self.k} is too large for the GPU encoder in {precision}")
        search_dt = np.float64 if precision == "float64" else np.float32
        s = codec.search
        if codec.encoder == "two-stage":
            if s.n_shells > 63:
                raise ValueError(f"the GPU two-stage search supports at most 63 shells, the codebook has {s.n_shells}")
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
            mat_inv = np.zeros((1, 1))
        else:
            signs = np.ones(d)
            m = codec.rotation.matrix
            mat_fwd, mat_inv = m.T, m  # z = u @ M^T, x = z @ M
            if self.n_blocks * self.n_codewords * d * 4 > GPU_DENSE_TABLE_LIMIT:
                raise ValueError(
                    f"the dense-rotation decode table (m, N, d) would exceed {GPU_DENSE_TABLE_LIMIT >> 20} MiB; "
                    "use rotation='hadamard'"
                )
        scale = 1.0 / np.sqrt(d)
        to = cuda.to_device
        self._cb32 = to(np.ascontiguousarray(codec.points.ravel(), dtype=np.float32))
        self._dec_signs = to(np.ascontiguousarray(signs * scale, dtype=np.float32))
        if self._rot == ROT_DENSE:  # rotated codebook P[b, n] = c_n @ M[b k:(b+1) k], x = nu sum_b P[b, i_b]
            blocks = mat_inv.reshape(self.n_blocks, self.k, d)
            # fixed-order products (no BLAS): the same table bits on every host CPU
            table = np.stack([matmul_rows(codec.points, blocks[b]) for b in range(self.n_blocks)])
        else:
            table = np.zeros((1, 1, 1))
        self._dec_table = to(np.ascontiguousarray(table, dtype=np.float32))
        self._enc_cb = to(np.ascontiguousarray(np.asarray(pts).ravel(), dtype=search_dt))
        self._enc_n2 = to(np.ascontiguousarray(n2, dtype=search_dt))
        self._enc_order = to(np.ascontiguousarray(order, dtype=np.int64))
        self._enc_offsets = to(np.ascontiguousarray(offsets, dtype=np.int64))
        self._enc_radii = to(np.ascontiguousarray(radii, dtype=search_dt))
        self._enc_signs = to(np.ascontiguousarray(signs, dtype=search_dt))
        self._enc_mat = to(np.ascontiguousarray(mat_fwd, dtype=search_dt))
        self._att_signs = to(np.ascontiguousarray(np.append(signs, scale), dtype=np.float32))
        self._att_mat = to(np.ascontiguousarray(mat_fwd, dtype=np.float32))
        self._err = cuda.to_device(np.zeros(2, dtype=np.int64))
        self._workspaces: dict[tuple[int, int], tuple[Any, Any, Any, Any]] = {}
        self._column_tables: dict[tuple[int, int], Any] = {}

    def __repr__(self) -> str:
        opts = "" if self._options == GPUOptions() else f", options={self._options!r}"
        return f"GPUFibQuantCodec({self.codec!r}, precision={self.precision!r}{opts})"

    @property
    def options(self) -> GPUOptions:
        """Kernel choices and tuning of this codec (frozen)."""
        return self._options

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
        """Bytes of the packed stream of ``n`` records."""
        return self.layout.nbytes(n)

    def _reset_err(self, n: int, check: bool) -> None:
        if check:
            self._err.copy_to_device(np.array([n, n], dtype=np.int64))

    def _read_err(self) -> np.ndarray:
        return self._err.copy_to_host()

    @staticmethod
    def _launch_config(grid: Any, stream: Any) -> tuple[Any, ...]:
        """``kernel[config]`` of a launch on ``stream`` (the default stream when None), no dynamic shared memory."""
        return (grid, THREADS) if stream is None else (grid, THREADS, stream)

    # ------------------------------------------------------------------ encode
    def encode(self, x: Any, *, check: bool = True, stream: Any = None) -> Any:
        """Encode vectors into the packed record stream.

        Parameters
        ----------
        x : torch.Tensor, device array or numpy.ndarray
            Vectors, shape ``(n, d)``, float16 or float32.
        check : bool
            Copy the kernel's error flags back (a synchronisation) and raise
            ``ValueError`` naming the first row with NaN/Inf or with a norm that
            overflows the header format (as the CPU codec does). With
            ``check=False`` such rows are encoded as zero vectors silently.
        stream : numba stream, optional
            Stream to launch on (e.g. ``cuda.external_stream(torch.cuda.current_stream().cuda_stream)``).

        Returns
        -------
        torch.Tensor or device array
            Shape ``(nbytes(n),)``, uint8: the same bytes as
            ``FibQuantCodec.encode(x).payload`` (torch when ``x`` is torch).
        """
        arr, t = _device_view(x, "x", (np.float16, np.float32))
        if arr.ndim != 2 or arr.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {tuple(arr.shape)}")
        n = int(arr.shape[0])
        nbytes = self.nbytes(n)
        n_words = (n * self.bits_per_vector + 31) // 32
        words, wt = _empty((max(n_words, 1),), np.uint32, t)
        if n == 0:
            return wt.view(__import__("torch").uint8)[:0] if wt is not None else words.view(np.uint8)[:0]
        kern, grid = encode_kernel(
            self.d, self.k, self.n_codewords, self._hkind, self._rot, self._two_stage, self._n_shells, self._probes,
            self.precision == "float64", np.dtype(arr.dtype) == np.float16,
        )
        self._reset_err(n, check)
        kern[self._launch_config(grid(n), stream)](
            arr, n, self._enc_cb, self._enc_n2, self._enc_order, self._enc_offsets, self._enc_radii, self._enc_signs,
            self._enc_mat, words, self._err,
        )
        if check:
            err = self._read_err()
            if err[0] < n:
                raise ValueError(f"x contains NaN or Inf (first bad row {int(err[0])})")
            if err[1] < n:
                raise ValueError(
                    f"the norm of row {int(err[1])} overflows the {self.codec.norm_dtype} norm header; use norm_dtype='float32'"
                )
        if wt is not None:
            import torch

            return wt.view(torch.uint8)[:nbytes]
        return words.view(np.uint8)[:nbytes]

    # ------------------------------------------------------------------ decode
    def _payload(self, payload: Any, n: int, name: str = "payload") -> tuple[Any, Any]:
        arr, t = _device_view(payload, name, (np.uint8,))
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D uint8, got shape {tuple(arr.shape)}")
        expected = self.nbytes(n)
        if arr.shape[0] != expected:
            kind = "truncated" if arr.shape[0] < expected else "too long"
            raise ValueError(
                f"{name} is {kind}: {n} records of {self.bits_per_vector} bits need {expected} bytes, got {arr.shape[0]}"
            )
        return arr, t

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
            or a norm header that is not a finite number ``>= 0`` (a
            synchronisation). With ``check=False`` such records decode as zeros.
        stream : numba stream, optional
            Stream to launch on.

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
        arr, t = self._payload(payload, n)
        np_dt = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[dtype]
        out, ot = _empty((n, self.d), np_dt, t)
        if n:
            if not self._column_decode(arr, n, _OUT[dtype], out, check, stream):
                o = self._options
                kern, grid = decode_kernel(
                    self.d, self.k, self.n_codewords, self._hkind, _OUT[dtype], self._rot,
                    per_lane=o.decode_per_lane, chunk=o.decode_chunk, max_registers=o.decode_registers,
                )
                self._reset_err(n, check)
                addr = out.__cuda_array_interface__["data"][0] if not SIMULATOR else 0
                kern[self._launch_config(grid(n), stream)](
                    arr, n, self._cb32, self._dec_signs, self._dec_table, out, addr, self._err
                )
            if check:
                err = self._read_err()
                if err[0] < n:
                    raise ValueError(f"packed data is corrupt: record {int(err[0])} has an index >= N or a bad norm header")
        if ot is not None:
            import torch

            return ot.view(torch.bfloat16) if dtype == "bfloat16" else ot
        return out

    def _column_decode(self, arr: Any, n: int, okind: int, out: Any, check: bool, stream: Any) -> bool:
        """Decode with :func:`column_decode_kernel` when it applies (False: use the chunked kernel)."""
        o = self._options
        if self._rot != ROT_HADAMARD or o.decode_layout != "columns":
            return False
        try:
            plan = column_plan(self.d, self.k, self.n_codewords, okind, int(o.decode_columns), int(o.decode_replicas))
        except ValueError:
            if o.decode_columns or o.decode_replicas:  # asked for explicitly: say why it does not fit
                raise
            return False  # e.g. k = 1 or too many blocks per lane: the chunked layout handles it
        rbits = self.bits_per_vector
        # whole 32-bit words when the stream starts 4-byte aligned and is a whole number of words
        words32 = (not SIMULATOR or o.decode_words32) and arr.shape[0] % 4 == 0
        words32 = words32 and (SIMULATOR or arr.__cuda_array_interface__["data"][0] % 4 == 0)
        kern, grid, plan = column_decode_kernel(
            self.d, self.k, self.n_codewords, self._hkind, okind, plan["C"], words32, o.decode_prefetch,
            o.decode_registers, plan["R"],
        )
        key = (plan["C"], plan["R"])
        if key not in self._column_tables:
            self._column_tables[key] = cuda.to_device(column_codebook(self.codec.points, plan))
        gran = 4 if words32 else record_granularity(rbits)
        pay = arr.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[gran]) if gran > 1 else arr
        outw = out.view(np.uint32 if plan["out_words"] == 1 else np.uint64).reshape(-1)
        allow_dynamic_shared(kern, plan["bytes"])
        self._reset_err(n, check)
        kern[grid(n), THREADS, 0 if stream is None else stream, plan["bytes"]](
            pay, n, self._column_tables[key], self._dec_signs, outw, self._err
        )
        return True

    # ------------------------------------------------------------------ attention
    def _workspace(self, bh: int, n_split: int) -> tuple[Any, Any, Any, Any]:
        key = (bh, n_split)
        if key not in self._workspaces:
            self._workspaces[key] = (
                cuda.device_array((bh, n_split), np.float32),
                cuda.device_array((bh, n_split), np.float32),
                cuda.device_array((bh, n_split, self.d), np.float32),
                cuda.to_device(np.zeros(bh, dtype=np.int32)),
            )
        return self._workspaces[key]

    def decode_attention(
        self,
        q: Any,
        k_payload: Any,
        v_payload: Any,
        context: int,
        *,
        scale: float | None = None,
        dtype: str | None = None,
        n_splits: int | None = None,
        check: bool = True,
        stream: Any = None,
    ) -> Any:
        r"""Attention of one query per head over encoded keys and values (the decoding step).

        .. math:: o_h = \sum_i \operatorname{softmax}_i(\mathrm{scale}\,\langle q_h,\hat k_{h,i}\rangle)\,\hat v_{h,i}

        with :math:`\hat k, \hat v` the decoded vectors, computed without forming them. The
        softmax weights of V are summed per (block, codeword) in 32-bit fixed point scaled to each
        chunk's total weight (native shared-memory integer atomics, so the result is deterministic;
        about ``2**-31`` relative rounding per token), then in float32 across chunks and splits.

        Parameters
        ----------
        q : torch.Tensor, device array or numpy.ndarray
            Queries, shape ``(..., d)`` (e.g. ``(B, H, d)``), float16 or float32.
        k_payload, v_payload : uint8 arrays
            Records of the keys and values, ``prod(q.shape[:-1]) * context``
            records each, in ``(..., context)`` row-major order.
        context : int
            Tokens per head ``T >= 1``.
        scale : float, optional
            Softmax scale (default :math:`1/\sqrt d`, as ``scaled_dot_product_attention``).
        dtype : {"float16", "bfloat16", "float32"}, optional
            Output format (default: ``q``'s).
        n_splits : int, optional
            Context splits per head, at most ``MAX_SPLITS`` = 128 (default: enough blocks to fill
            the GPU in one wave, ``options.attention_blocks_per_sm`` blocks per SM).
        check : bool
            Raise ``ValueError`` on a corrupt record (a synchronisation).
        stream : numba stream, optional
            Stream to launch on.

        Returns
        -------
        torch.Tensor or device array
            Shape ``q.shape``.
        """
        qa, qt = _device_view(q, "q", (np.float16, np.float32))
        qshape = tuple(int(s) for s in qa.shape)
        if len(qshape) < 1 or qshape[-1] != self.d:
            raise ValueError(f"q must have shape (..., {self.d}), got {qshape}")
        lead = qshape[:-1]
        bh = math.prod(lead)
        T = int(context)
        if T < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        ka, _ = self._payload(k_payload, bh * T, "k_payload")
        va, _ = self._payload(v_payload, bh * T, "v_payload")
        if dtype is None:
            dtype = "float16" if np.dtype(qa.dtype) == np.float16 else "float32"
        if dtype not in OUTPUT_DTYPES:
            raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
        scale = 1.0 / math.sqrt(self.d) if scale is None else float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        if qt is not None:  # fp16 queries are read as they are (no conversion launch)
            import torch

            q2 = qt.reshape(bh, self.d)
            if q2.dtype != torch.float16:
                q2 = q2.float()
            q2 = q2.contiguous()
            if check and not bool(torch.isfinite(q2).all()):
                raise ValueError("q has NaN or Inf entries")
            qarr = cuda.as_cuda_array(q2)
        else:  # device arrays: copied back only to check them or to reshape them
            host = qa.copy_to_host() if check or qa.ndim != 2 else None
            if check and not np.isfinite(host).all():
                raise ValueError("q has NaN or Inf entries")
            qarr = qa if qa.ndim == 2 else cuda.to_device(host.reshape(bh, self.d))
        q_f16 = np.dtype(qarr.dtype) == np.float16
        o = self._options
        dev = None if SIMULATOR else cuda.get_current_device()
        if n_splits is None:
            sms = GPU_DEFAULT_SMS if dev is None else dev.MULTIPROCESSOR_COUNT
            # whole waves of attention_blocks_per_sm blocks per SM (a partial wave costs a whole one)
            n_splits = max(1, min(-(-T // GPU_ATTENTION_MIN_SPLIT_TOKENS), (o.attention_blocks_per_sm * sms) // bh))
        n_splits = max(1, min(int(n_splits), T, MAX_SPLITS))
        per_split = -(-T // n_splits)
        n_splits = -(-T // per_split)  # every split non-empty
        pmax, psum, pacc, counter = self._workspace(bh, n_splits)
        np_dt = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[dtype]
        out, ot = _empty((bh, self.d), np_dt, qt)
        unroll = int(o.attention_unroll)
        per_it = THREADS * unroll
        # the chunk is the kernel's capacity (compile-time); a shorter split skips the iterations past its end
        chunk = max(per_it, int(o.attention_chunk) // per_it * per_it)
        plan = attention_plan(self.d, self.k, self.n_codewords, chunk, _smem_optin(dev))
        chunk = plan["chunk"] // per_it * per_it
        if chunk < per_it:
            raise ValueError(f"attention_unroll={unroll} needs a chunk of {per_it} tokens, which does not fit in shared memory")
        # whole 32-bit words when every record stream starts 4-byte aligned and is a whole number of words
        words32 = not SIMULATOR or o.attention_words32
        words32 = words32 and all(
            a.shape[0] % 4 == 0 and (SIMULATOR or a.__cuda_array_interface__["data"][0] % 4 == 0) for a in (ka, va)
        )
        kern = attention_kernel(
            self.d, self.k, self.n_codewords, self._hkind, self._rot, _OUT[dtype], unroll, o.attention_registers,
            plan["R"], chunk, words32, q_f16,
        )
        allow_dynamic_shared(kern, plan["bytes"])
        gran = 4 if words32 else record_granularity(self.bits_per_vector)
        if gran > 1:
            view_dt = np.uint16 if gran == 2 else np.uint32
            ka, va = ka.view(view_dt), va.view(view_dt)
        self._reset_err(bh * T, check)
        kern[(n_splits, bh), THREADS, 0 if stream is None else stream, plan["bytes"]](
            qarr, ka, va, T, per_split, np.float32(scale), self._cb32, self._att_signs, self._att_mat,
            pmax, psum, pacc, counter, out, self._err,
        )
        if check:
            err = self._read_err()
            if err[0] < bh * T:
                raise ValueError(f"packed data is corrupt: record {int(err[0])} has an index >= N or a bad norm header")
        if ot is not None:
            import torch

            res = ot.view(torch.bfloat16) if dtype == "bfloat16" else ot
            return res.reshape(lead + (self.d,))
        return out.reshape(lead + (self.d,)) if lead != (bh,) else out

    # ------------------------------------------------------------------ host interop
    def to_codes(self, payload: Any, shape: tuple[int, ...]) -> Any:
        """Copy a device record stream to the host as :class:`~fibquant_theory.codecs.fibquant.FibQuantCodes` of leading ``shape``."""
        from fibquant_theory.codecs.fibquant import FibQuantCodes

        n = math.prod(shape)
        arr, t = self._payload(payload, n)
        host = t.cpu().numpy() if t is not None else arr.copy_to_host()
        c = self.codec
        return FibQuantCodes(
            payload=np.ascontiguousarray(host, dtype=np.uint8), shape=tuple(shape), d=c.d, k=c.k, n_codewords=c.n_codewords,
            norm_dtype=c.norm_dtype, packing=c.packing, rotation=c.rotation.kind, seed=c.seed, codebook_hash=c.codebook_hash,
        )
