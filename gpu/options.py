"""Tuning options of :class:`~fibquant_theory.gpu.codec.GPUFibQuantCodec` (work layouts, register caps, loaders).

None of these changes what is computed beyond float32 rounding: they choose
between equivalent kernels and work layouts (the column and chunked Hadamard
decodes differ in rounding only; all layouts of one decode kernel write the same
bits on a GPU). Variants are made with :func:`dataclasses.replace`::

    from dataclasses import replace
    fast = GPUFibQuantCodec(codec, options=replace(GPUOptions(), decode_layout="columns"))

The defaults are the kernels timed in research/gpu-notes.md; the attention
defaults come from :mod:`fibquant_theory.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from numbers import Integral

from fibquant_theory.config import (
    GPU_ATTENTION_BLOCKS_PER_SM,
    GPU_ATTENTION_CHUNK,
    GPU_ATTENTION_REGISTERS,
    GPU_ATTENTION_UNROLL,
)

__all__ = ["DECODE_LAYOUTS", "GPUOptions"]

#: Hadamard decode kernels: ``"chunks"`` (:mod:`~fibquant_theory.gpu.decode`) and ``"columns"``
#: (:mod:`~fibquant_theory.gpu.column_decode`).
DECODE_LAYOUTS = ("chunks", "columns")

_MAX_REGISTERS = 255  # per thread, on every CUDA architecture


def _is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


@dataclass(frozen=True)
class GPUOptions:
    """Kernel choices and tuning of the GPU codec (frozen; make variants with :func:`dataclasses.replace`).

    Parameters
    ----------
    decode_layout : {"columns", "chunks"}
        Hadamard decode kernel. ``"columns"`` (default, the faster one on an H200): the in-block
        transform folded into the codebook, no shuffles; falls back to ``"chunks"`` where its layout
        does not fit (unless ``decode_columns`` or ``decode_replicas`` is set, which then raises why).
        ``"chunks"``: coordinates in interleaved chunks, warp shuffles.
    decode_columns : int
        Column decode: columns per lane, 0 or a power of two (0:
        :func:`~fibquant_theory.gpu.column_decode.column_default`).
    decode_replicas : int
        Column decode: codebook copies in shared memory, 0 or a power of two (0: as many as fit,
        see :func:`~fibquant_theory.gpu.column_decode.column_plan`).
    decode_prefetch : bool
        Column decode: load the next record before processing the current one.
    decode_per_lane : int
        Chunked decode: coordinates per lane, >= 0 (0: ``max(16, k)``, Hadamard; 8, dense).
    decode_chunk : int
        Chunked decode: coordinates per interleaved chunk, 0 or a power of two (0: ``max(8, k)``).
    decode_registers : int or None
        Register cap of the decode kernels, 1 to 255 (None: the compiler's choice).
    decode_words32 : bool
        Simulator only: read records as 32-bit words (True) or with the byte/halfword loader
        (False); on a GPU whole words are used whenever the stream is word-aligned.
    attention_unroll : int
        Decode-attention: key/value records in flight per thread, >= 1.
    attention_registers : int or None
        Register cap of the decode-attention kernel, 1 to 255 (None: the compiler's choice).
    attention_blocks_per_sm : int
        Decode-attention: blocks per SM of the default context split (one wave), >= 1.
    attention_chunk : int
        Decode-attention: tokens per chunk of the two passes (scores of a chunk stay in shared
        memory), >= 1; rounded down to a multiple of ``256 * attention_unroll`` (at least one).
    attention_words32 : bool
        Simulator only: as ``decode_words32``, for decode-attention.
    direct_launch : bool
        Launch through the driver with cached parameter blocks
        (:class:`~fibquant_theory.gpu.launch.DirectLaunch`, a few microseconds of host time) rather
        than through Numba's dispatcher (0.1-0.4 ms with torch tensors). Same kernels, same bits;
        ignored in the simulator.

    Raises
    ------
    ValueError
        An option out of its range (the message names it).
    """

    decode_layout: str = "columns"
    decode_columns: int = 0
    decode_replicas: int = 0
    decode_prefetch: bool = True
    decode_per_lane: int = 0
    decode_chunk: int = 0
    decode_registers: int | None = None
    decode_words32: bool = True
    attention_unroll: int = GPU_ATTENTION_UNROLL
    attention_registers: int | None = GPU_ATTENTION_REGISTERS
    attention_blocks_per_sm: int = GPU_ATTENTION_BLOCKS_PER_SM
    attention_chunk: int = GPU_ATTENTION_CHUNK
    attention_words32: bool = True
    direct_launch: bool = True

    def __post_init__(self) -> None:
        if self.decode_layout not in DECODE_LAYOUTS:
            raise ValueError(f"decode_layout must be one of {DECODE_LAYOUTS}, got {self.decode_layout!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith(("_prefetch", "_words32", "_launch")):
                if not isinstance(v, bool):
                    raise ValueError(f"{f.name} must be True or False, got {v!r}")
            elif f.name.endswith("_registers"):
                if v is not None and (not _is_int(v) or not 1 <= v <= _MAX_REGISTERS):
                    raise ValueError(f"{f.name} must be None or an integer from 1 to {_MAX_REGISTERS}, got {v!r}")
            elif f.name != "decode_layout" and not _is_int(v):
                raise ValueError(f"{f.name} must be an integer, got {v!r}")
        for name in ("decode_columns", "decode_replicas", "decode_chunk"):
            v = getattr(self, name)
            if v != 0 and not _is_pow2(v):
                raise ValueError(f"{name} must be 0 (the default) or a power of two, got {v}")
        if self.decode_per_lane < 0:
            raise ValueError(f"decode_per_lane must be >= 0 (0: the default), got {self.decode_per_lane}")
        for name in ("attention_unroll", "attention_blocks_per_sm", "attention_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)
