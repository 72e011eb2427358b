r"""Device helpers of the FibQuant GPU kernels: format codes, warp exchanges, bit casts, header formats.

Everything here is a Numba-CUDA device function (inlined into the kernels) or a
compile-time constant shared by the kernel modules
(:mod:`~fibquant_theory.gpu.decode`, :mod:`~fibquant_theory.gpu.column_decode`,
:mod:`~fibquant_theory.gpu.encode`, :mod:`~fibquant_theory.gpu.attention`).
The generated kernel sources refer to these functions by their historical
private names (``_xor``, ``_rd``, ...): :func:`fibquant_theory.gpu.codegen.namespace`
binds those names.

Simulator
---------
The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp shuffles, warp
barriers or libdevice bit casts; the helpers below fall back to a shared
scratch array with block barriers and to NumPy views there. All loops that
contain an exchange or a barrier have block-uniform trip counts, which is what
both the simulator's block barrier and ``shfl.sync`` with a full mask require.
"""

from __future__ import annotations

import numpy as np
from numba import float32, int32, int64, types, uint16, uint64

from fibquant_theory.config import GPU_THREADS

from ._compat import SIMULATOR, cuda

__all__ = [
    "FULL_MASK",
    "HDR_BF16",
    "HDR_F16",
    "HDR_F32",
    "OUT_BF16",
    "OUT_F16",
    "OUT_F32",
    "ROT_DENSE",
    "ROT_HADAMARD",
    "THREADS",
    "WARPS",
    "bf16_bits",
    "bits_f32",
    "f16_bits",
    "f16_bits_rne",
    "f16_norm",
    "f32_bits",
    "f64_bits",
    "header_bits",
    "header_value",
    "prmt",
    "read_bits",
    "read_field",
    "shfl_bcast",
    "shfl_xor",
    "to_f16",
    "warp_sync",
]

#: Threads per block of every kernel (:data:`fibquant_theory.config.GPU_THREADS`).
THREADS: int = GPU_THREADS
#: Warps per block.
WARPS: int = THREADS // 32
#: Lane mask of a whole warp.
FULL_MASK = 0xFFFFFFFF

#: Norm header formats (``FibQuantCodec.norm_dtype``): float16, bfloat16, float32.
HDR_F16, HDR_BF16, HDR_F32 = 0, 1, 2
#: Output formats of decode and decode-attention: float16, bfloat16 (as ``uint16`` bits), float32.
OUT_F16, OUT_BF16, OUT_F32 = 0, 1, 2
#: Rotations: randomized Hadamard, dense (Haar) matrix.
ROT_HADAMARD, ROT_DENSE = 0, 1

# ----------------------------------------------------------------------------- exchanges and bit casts
if SIMULATOR:

    @cuda.jit(device=True)
    def shfl_xor(scratch, tid, v, mask):  # pragma: no cover - exercised through the kernels
        """Value of ``v`` held by lane ``lane ^ mask`` (simulator: via shared memory)."""
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[tid ^ mask]

    @cuda.jit(device=True)
    def shfl_bcast(scratch, tid, v, src_lane):  # pragma: no cover
        """Value of ``v`` held by lane ``src_lane`` of this warp."""
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[(tid // 32) * 32 + src_lane]

    @cuda.jit(device=True)
    def warp_sync():  # pragma: no cover
        """Barrier of the warp (simulator: of the block)."""
        cuda.syncthreads()

    @cuda.jit(device=True)
    def f32_bits(x):  # pragma: no cover
        """Bit pattern of ``float32(x)`` as a non-negative int64."""
        return int64(np.float32(x).view(np.uint32))

    @cuda.jit(device=True)
    def bits_f32(b):  # pragma: no cover
        """The float32 of bit pattern ``b`` (low 32 bits)."""
        return np.uint32(b & 0xFFFFFFFF).view(np.float32)

    @cuda.jit(device=True)
    def f64_bits(x):  # pragma: no cover
        """Bit pattern of the float64 ``x`` as an int64."""
        return int64(np.float64(x).view(np.int64))

    @cuda.jit(device=True)
    def f16_bits(x):  # pragma: no cover - exercised through the kernels
        """Bit pattern of ``float16(x)`` (round to nearest even) as a non-negative int64."""
        return int64(np.float16(x).view(np.uint16))

    @cuda.jit(device=True)
    def to_f16(x):  # pragma: no cover
        """``float16(x)``, round to nearest even."""
        return np.float16(x)

    @cuda.jit(device=True)
    def prmt(x, y, s):  # pragma: no cover
        """``prmt.b32``: byte ``i`` of the result is byte ``(s >> 4 i) & 7`` of the 8 bytes ``y:x``."""
        v = ((int(y) & 0xFFFFFFFF) << 32) | (int(x) & 0xFFFFFFFF)
        r = 0
        for i in range(4):
            r |= ((v >> (8 * ((int(s) >> (4 * i)) & 7))) & 0xFF) << (8 * i)
        return r

else:

    @cuda.jit(device=True, inline=True)
    def shfl_xor(scratch, tid, v, mask):  # pragma: no cover - compiled
        """Value of ``v`` held by lane ``lane ^ mask`` (``shfl.xor``; ``scratch`` and ``tid`` unused)."""
        return cuda.shfl_xor_sync(FULL_MASK, v, mask)

    @cuda.jit(device=True, inline=True)
    def shfl_bcast(scratch, tid, v, src_lane):  # pragma: no cover - compiled
        """Value of ``v`` held by lane ``src_lane`` of this warp."""
        return cuda.shfl_sync(FULL_MASK, v, src_lane)

    @cuda.jit(device=True, inline=True)
    def warp_sync():  # pragma: no cover - compiled
        """Barrier of the warp."""
        cuda.syncwarp(FULL_MASK)

    @cuda.jit(device=True, inline=True)
    def f32_bits(x):  # pragma: no cover - compiled
        """Bit pattern of ``float32(x)`` as a non-negative int64."""
        return int64(cuda.libdevice.float_as_int(x)) & 0xFFFFFFFF

    @cuda.jit(device=True, inline=True)
    def bits_f32(b):  # pragma: no cover - compiled
        """The float32 of bit pattern ``b`` (low 32 bits)."""
        return cuda.libdevice.int_as_float(int32(b if b < 0x80000000 else b - 0x100000000))

    @cuda.jit(device=True, inline=True)
    def f64_bits(x):  # pragma: no cover - compiled
        """Bit pattern of the float64 ``x`` as an int64."""
        return cuda.libdevice.double_as_longlong(x)

    @cuda.jit(device=True, inline=True)
    def f16_bits(x):  # pragma: no cover - compiled
        """Bit pattern of ``float16(x)`` (round to nearest even) as a non-negative int64."""
        return int64(cuda.libdevice.float2half_rn(float32(x))) & 0xFFFF

    @cuda.jit(device=True, inline=True)
    def to_f16(x):  # pragma: no cover - compiled
        """``float16(x)``, round to nearest even."""
        return types.float16(x)

    @cuda.jit(device=True, inline=True)
    def prmt(x, y, s):  # pragma: no cover - compiled
        """``prmt.b32``: byte ``i`` of the result is byte ``(s >> 4 i) & 7`` of the 8 bytes ``y:x``."""
        return cuda.libdevice.byte_perm(int32(x), int32(y), int32(s))


@cuda.jit(device=True, inline=True)
def bf16_bits(x):  # pragma: no cover - compiled
    """Bit pattern of ``bfloat16(x)`` (round to nearest even) as a uint16."""
    u = f32_bits(float32(x))
    return uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


# ----------------------------------------------------------------------------- packed records
@cuda.jit(device=True, inline=True)
def read_bits(buf, pos, nbits):  # pragma: no cover - compiled
    """Unsigned value of ``nbits <= 32`` bits of the byte stream ``buf`` from bit ``pos`` (LSB first)."""
    value = int64(0)
    shift = 0
    while nbits > 0:
        byte = pos >> 3
        off = pos & 7
        take = min(8 - off, nbits)
        value |= ((int64(buf[byte]) >> off) & ((1 << take) - 1)) << shift
        shift += take
        pos += take
        nbits -= take
    return value


@cuda.jit(device=True, inline=True)
def read_field(buf, pos, nbits):  # pragma: no cover - compiled
    """Unsigned field of ``nbits <= 32`` bits from bit ``pos`` of the byte stream ``buf`` (reads only its bytes)."""
    byte = uint64(pos >> 3)
    off = pos & 7
    v = int64(buf[byte])
    if off + nbits > 8:
        v |= int64(buf[byte + 1]) << 8
    if off + nbits > 16:
        v |= int64(buf[byte + 2]) << 16
    if off + nbits > 24:
        v |= int64(buf[byte + 3]) << 24
    if off + nbits > 32:
        v |= int64(buf[byte + 4]) << 32
    return (v >> off) & ((int64(1) << nbits) - 1)


# ----------------------------------------------------------------------------- norm headers
@cuda.jit(device=True, inline=True)
def header_value(bits, hkind):  # pragma: no cover - compiled
    """Norm from header bits; negative when the header is not a finite number >= 0 (corrupt)."""
    if hkind == HDR_F16:
        e = (bits >> 10) & 0x1F
        mant = bits & 0x3FF
        if bits >> 15 or e == 0x1F:
            return float32(-1.0)
        if e == 0:
            return float32(mant) * float32(5.9604644775390625e-08)  # mant * 2**-24, exact
        return float32(1024 + mant) * bits_f32((e - 25 + 127) << 23)  # exact: 2**(e-25) is normal
    if hkind == HDR_BF16:
        bits = bits << 16
    if (bits >> 31) or ((bits >> 23) & 0xFF) == 0xFF:
        return float32(-1.0)
    return bits_f32(bits)


@cuda.jit(device=True, inline=True)
def f16_norm(bits):  # pragma: no cover - compiled
    """Norm from fp16 header bits without branches; negative when not a finite number >= 0 (corrupt).

    The exponent is rebiased in the integer bits (``+ 112``); a subnormal is read
    with exponent 1 and its implicit ``2**-14`` subtracted, which is exact and
    never forms a float32 subnormal (so flush-to-zero arithmetic is safe).
    """
    sub = (bits & 0x7C00) == 0
    v = bits_f32(((bits & 0x7FFF) << 13) + ((113 << 23) if sub else (112 << 23)))
    v = v - (float32(6.103515625e-05) if sub else float32(0.0))
    return v if bits < 0x7C00 else float32(-1.0)


@cuda.jit(device=True, inline=True)
def f16_bits_rne(v):  # pragma: no cover - compiled
    """Bit pattern of ``float16(v)`` (round to nearest even) for a float64 ``v >= 0``; 0x7C00 on overflow."""
    b = f64_bits(v)
    e = ((b >> 52) & 0x7FF) - 1023
    mant = b & 0xFFFFFFFFFFFFF
    if v == 0.0:
        return int64(0)
    if e >= -14:
        if e > 15:
            return int64(0x7C00)
        q = ((e + 15) << 10) | (mant >> 42)
        rem = mant & ((int64(1) << 42) - 1)
        half = int64(1) << 41
        if rem > half or (rem == half and (q & 1)):
            q += 1
        return min(q, int64(0x7C00))
    shift = 28 - e  # value / 2**-24 = sig * 2**-(shift)
    if shift >= 62:
        return int64(0)
    sig = mant | (int64(1) << 52)
    q = sig >> shift
    rem = sig & ((int64(1) << shift) - 1)
    half = int64(1) << (shift - 1)
    if rem > half or (rem == half and (q & 1)):
        q += 1
    return q


@cuda.jit(device=True, inline=True)
def header_bits(v, hkind):  # pragma: no cover - compiled
    """Header bit pattern of a norm ``v >= 0`` (float64), as :func:`fibquant_theory.codecs.fibquant.encode_norms`."""
    if hkind == HDR_F16:
        return f16_bits_rne(v)
    u = f32_bits(float32(v))
    if hkind == HDR_BF16:
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u
