r"""Numba-CUDA kernels of the FibQuant GPU codec (private; use :mod:`fibquant_theory.gpu.codec`).

Every kernel is built by a factory for one configuration (dimension, block
size, codebook size, header and output formats, rotation, search, precision):
the configuration is baked in as compile-time constants, so loops over a
vector's coordinates unroll and per-lane arrays stay in registers. Factories
are cached.

Work layout (decode and encode)
-------------------------------
A vector of dimension ``d`` is handled by ``L`` consecutive lanes of a warp
(``L`` a power of two, at most 32), each holding ``V = d / L`` coordinates in
registers, so a warp handles ``G = 32 / L`` vectors at a time (``V = 8``,
consecutive coordinates, except in the Hadamard decode). The Hadamard decode
holds ``V = max(16, k)`` coordinates per lane as chunks of ``s = max(8, k)``
consecutive ones interleaved over the vector's lanes (chunk ``c`` of lane ``l``
starts at ``(c L + l) s``), so that one 16-byte store per lane writes ``L s``
contiguous outputs per vector (:mod:`~fibquant_theory.gpu.column_decode` has a second
Hadamard decode, by columns, without shuffles). The decode and decode-attention kernels are
generated as Python source with every per-lane loop unrolled into scalar
variables, so nothing is indexed at run time in registers (no local memory) and
record fields are read with constant shifts. The randomized Hadamard rotation
is applied stage by stage in ascending coordinate-bit order (the same arithmetic
for every layout): in-register butterflies for the bits a lane holds, warp
shuffles (``shfl.xor``) for the lane bits; the dense rotation goes through a
per-warp shared-memory staging row. The codebook lives in shared memory.
Array indices in the hot loops are cast to ``uint64``: with a signed index
numba adds 64-bit negative-index wraparound arithmetic to every access (removing
it, with a branch-free fp16 header read and fewer load guards, cut the executed
instructions of decode-attention 1.6x; see gpu/NOTES.md).

The packed layout is the CPU one, bit for bit (:mod:`fibquant_theory.codecs.packing`,
``"fixed"`` mode): record ``i`` is ``[header | m indices of w bits]`` starting
at bit ``i * R``, LSB first. The encoder lets each warp own a chunk of ``T``
vectors whose ``T R`` bits are a whole number of 32-bit words, assembles those
words in shared memory and writes them once, so no two warps touch a word.

Simulator
---------
The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) has no warp shuffles, warp
barriers or libdevice bit casts; the helpers below fall back to a shared
scratch array with block barriers and to NumPy views there. All loops that
contain an exchange or a barrier have block-uniform trip counts, which is what
both the simulator's block barrier and ``shfl.sync`` with a full mask require.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import float32, float64, int32, int64, types, uint8, uint16, uint32, uint64

from ._compat import SIMULATOR, cuda

__all__ = [
    "THREADS",
    "COMPILED",
    "MAX_SPLITS",
    "attention_kernel",
    "kernel_resources",
    "decode_kernel",
    "encode_kernel",
    "lane_layout",
    "record_granularity",
]

#: Threads per block of every kernel (8 warps).
THREADS = 256
_WARPS = THREADS // 32
_FULL = 0xFFFFFFFF

# header kinds / output kinds
HDR_F16, HDR_BF16, HDR_F32 = 0, 1, 2
OUT_F16, OUT_BF16, OUT_F32 = 0, 1, 2
ROT_HADAMARD, ROT_DENSE = 0, 1

# ----------------------------------------------------------------------------- helpers
if SIMULATOR:

    @cuda.jit(device=True)
    def _xor(scratch, tid, v, mask):  # pragma: no cover - exercised through the kernels
        """Value of ``v`` held by lane ``lane ^ mask`` (simulator: via shared memory)."""
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[tid ^ mask]

    @cuda.jit(device=True)
    def _bcast(scratch, tid, v, src_lane):  # pragma: no cover
        """Value of ``v`` held by lane ``src_lane`` of this warp."""
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[(tid // 32) * 32 + src_lane]

    @cuda.jit(device=True)
    def _wsync():  # pragma: no cover
        cuda.syncthreads()

    @cuda.jit(device=True)
    def _f32_bits(x):  # pragma: no cover
        return int64(np.float32(x).view(np.uint32))

    @cuda.jit(device=True)
    def _bits_f32(b):  # pragma: no cover
        return np.uint32(b & 0xFFFFFFFF).view(np.float32)

    @cuda.jit(device=True)
    def _f64_bits(x):  # pragma: no cover
        return int64(np.float64(x).view(np.int64))

    @cuda.jit(device=True)
    def _to_f16(x):  # pragma: no cover
        return np.float16(x)

    @cuda.jit(device=True)
    def _prmt(x, y, s):  # pragma: no cover
        """``prmt.b32``: byte ``i`` of the result is byte ``(s >> 4 i) & 7`` of the 8 bytes ``y:x``."""
        v = ((int(y) & 0xFFFFFFFF) << 32) | (int(x) & 0xFFFFFFFF)
        r = 0
        for i in range(4):
            r |= ((v >> (8 * ((int(s) >> (4 * i)) & 7))) & 0xFF) << (8 * i)
        return r

else:

    @cuda.jit(device=True, inline=True)
    def _xor(scratch, tid, v, mask):  # pragma: no cover - compiled
        return cuda.shfl_xor_sync(_FULL, v, mask)

    @cuda.jit(device=True, inline=True)
    def _bcast(scratch, tid, v, src_lane):  # pragma: no cover - compiled
        return cuda.shfl_sync(_FULL, v, src_lane)

    @cuda.jit(device=True, inline=True)
    def _wsync():  # pragma: no cover - compiled
        cuda.syncwarp(_FULL)

    @cuda.jit(device=True, inline=True)
    def _f32_bits(x):  # pragma: no cover - compiled
        return int64(cuda.libdevice.float_as_int(x)) & 0xFFFFFFFF

    @cuda.jit(device=True, inline=True)
    def _bits_f32(b):  # pragma: no cover - compiled
        return cuda.libdevice.int_as_float(int32(b if b < 0x80000000 else b - 0x100000000))

    @cuda.jit(device=True, inline=True)
    def _f64_bits(x):  # pragma: no cover - compiled
        return cuda.libdevice.double_as_longlong(x)

    @cuda.jit(device=True, inline=True)
    def _to_f16(x):  # pragma: no cover - compiled
        return types.float16(x)

    @cuda.jit(device=True, inline=True)
    def _prmt(x, y, s):  # pragma: no cover - compiled
        return cuda.libdevice.byte_perm(int32(x), int32(y), int32(s))


@cuda.jit(device=True, inline=True)
def _read_bits(buf, pos, nbits):  # pragma: no cover - compiled
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
def _header_value(bits, hkind):  # pragma: no cover - compiled
    """Norm from header bits; negative when the header is not a finite number >= 0 (corrupt)."""
    if hkind == HDR_F16:
        e = (bits >> 10) & 0x1F
        mant = bits & 0x3FF
        if bits >> 15 or e == 0x1F:
            return float32(-1.0)
        if e == 0:
            return float32(mant) * float32(5.9604644775390625e-08)  # mant * 2**-24, exact
        return float32(1024 + mant) * _bits_f32((e - 25 + 127) << 23)  # exact: 2**(e-25) is normal
    if hkind == HDR_BF16:
        bits = bits << 16
    if (bits >> 31) or ((bits >> 23) & 0xFF) == 0xFF:
        return float32(-1.0)
    return _bits_f32(bits)


@cuda.jit(device=True, inline=True)
def _f16_norm(bits):  # pragma: no cover - compiled
    """Norm from fp16 header bits without branches; negative when not a finite number >= 0 (corrupt).

    The exponent is rebiased in the integer bits (``+ 112``); a subnormal is read
    with exponent 1 and its implicit ``2**-14`` subtracted, which is exact and
    never forms a float32 subnormal (so flush-to-zero arithmetic is safe).
    """
    sub = (bits & 0x7C00) == 0
    v = _bits_f32(((bits & 0x7FFF) << 13) + ((113 << 23) if sub else (112 << 23)))
    v = v - (float32(6.103515625e-05) if sub else float32(0.0))
    return v if bits < 0x7C00 else float32(-1.0)


@cuda.jit(device=True, inline=True)
def _f16_bits_rne(v):  # pragma: no cover - compiled
    """Bit pattern of ``float16(v)`` (round to nearest even) for a float64 ``v >= 0``; 0x7C00 on overflow."""
    b = _f64_bits(v)
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
def _header_bits(v, hkind):  # pragma: no cover - compiled
    """Header bit pattern of a norm ``v >= 0`` (float64), as :func:`fibquant_theory.codecs.fibquant.encode_norms`."""
    if hkind == HDR_F16:
        return _f16_bits_rne(v)
    u = _f32_bits(float32(v))
    if hkind == HDR_BF16:
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u


@cuda.jit(device=True, inline=True)
def _bf16_bits(x):  # pragma: no cover - compiled
    u = _f32_bits(float32(x))
    return uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


# ----------------------------------------------------------------------------- layout
def lane_layout(d: int, per_lane: int = 8) -> tuple[int, int]:
    """Lanes per vector ``L`` and coordinates per lane ``V = d / L`` for dimension ``d``.

    ``L`` is the largest power of two dividing ``d`` that is at most
    ``min(32, max(1, d // per_lane))``: about ``per_lane`` coordinates per lane.
    """
    cap = min(32, max(1, d // per_lane))
    lanes = 1
    while lanes * 2 <= cap and d % (lanes * 2) == 0:
        lanes *= 2
    return lanes, d // lanes


def _grid(n_units: int, per_block: int) -> int:
    return max(1, min(-(-n_units // per_block), 132 * 16))


# ----------------------------------------------------------------------------- code generation
@cuda.jit(device=True, inline=True)
def _rd(buf, pos, nbits):  # pragma: no cover - compiled
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


_ST8_SRC = r"""
extern "C" __device__ int fq_st8_%(name)s(int* ret, unsigned long long addr,
    float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7) {
  unsigned int r0, r1, r2, r3;
  asm("cvt.rn.%(cvt)s.f32 %%0, %%1, %%2;" : "=r"(r0) : "f"(a1), "f"(a0));
  asm("cvt.rn.%(cvt)s.f32 %%0, %%1, %%2;" : "=r"(r1) : "f"(a3), "f"(a2));
  asm("cvt.rn.%(cvt)s.f32 %%0, %%1, %%2;" : "=r"(r2) : "f"(a5), "f"(a4));
  asm("cvt.rn.%(cvt)s.f32 %%0, %%1, %%2;" : "=r"(r3) : "f"(a7), "f"(a6));
  asm volatile("st.global.v4.b32 [%%0], {%%1, %%2, %%3, %%4};" :: "l"(addr), "r"(r0), "r"(r1), "r"(r2), "r"(r3) : "memory");
  *ret = 0;
  return 0;
}
"""
_ST8_F32_SRC = r"""
extern "C" __device__ int fq_st8_f32(int* ret, unsigned long long addr,
    float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7) {
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(addr), "f"(a0), "f"(a1), "f"(a2), "f"(a3) : "memory");
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(addr + 16), "f"(a4), "f"(a5), "f"(a6), "f"(a7) : "memory");
  *ret = 0;
  return 0;
}
"""


@lru_cache(maxsize=None)
def _vector_stores() -> tuple[object, object, object] | None:
    """Foreign 16-byte store helpers (8 values per call), or None where unavailable (simulator, no NVRTC)."""
    if SIMULATOR:
        return None
    try:
        sig = "int32(uint64, float32, float32, float32, float32, float32, float32, float32, float32)"
        f16 = cuda.declare_device("fq_st8_f16", sig, link=cuda.CUSource(_ST8_SRC % {"name": "f16", "cvt": "f16x2"}))
        bf16 = cuda.declare_device("fq_st8_bf16", sig, link=cuda.CUSource(_ST8_SRC % {"name": "bf16", "cvt": "bf16x2"}))
        f32 = cuda.declare_device("fq_st8_f32", sig, link=cuda.CUSource(_ST8_F32_SRC))
    except Exception:  # pragma: no cover - depends on the installation
        return None
    return f16, bf16, f32


#: Named fastmath flags of every kernel (no ``nnan``/``ninf``: NaN/Inf checks must stay).
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Compiled kernels by a description of their configuration (see :func:`kernel_resources`).
COMPILED: dict[str, object] = {}


def _compile(src: str, name: str, namespace: dict, sig: tuple | None, label: str = "", max_registers: int | None = None):
    """Exec generated kernel source and compile it (eagerly with ``sig`` on a GPU)."""
    ns = dict(namespace)
    exec(compile(src, f"<fibquant-gpu {name}>", "exec"), ns)  # noqa: S102 - our own generated code
    fn = ns[name]
    fm = set(FASTMATH)
    opts = {} if max_registers is None else {"max_registers": max_registers}
    kern = cuda.jit(fn) if SIMULATOR else cuda.jit(sig, fastmath=fm, **opts)(fn)
    COMPILED[label or name] = kern
    return kern


def kernel_resources() -> list[dict[str, object]]:
    """Registers, local (spill) memory and static shared memory per thread/block of every compiled kernel."""
    rows = []
    for label, kern in COMPILED.items():
        if SIMULATOR:
            continue
        row: dict[str, object] = {"kernel": label}
        for key, getter in (("regs", "get_regs_per_thread"), ("local B", "get_local_mem_per_thread"), ("shared B", "get_shared_mem_per_block")):
            try:
                row[key] = int(getattr(kern, getter)())
            except Exception:  # pragma: no cover - older numba-cuda
                row[key] = None
        rows.append(row)
    return rows


def _namespace() -> dict:
    return {
        "cuda": cuda, "math": math, "np": np, "float32": float32, "float64": float64, "int64": int64, "uint64": types.uint64,
        "uint16": uint16, "_xor": _xor, "_rd": _rd, "_header_value": _header_value, "_to_f16": _to_f16,
        "_bf16_bits": _bf16_bits, "THREADS": THREADS,
    }


# ----------------------------------------------------------------------------- decode
@lru_cache(maxsize=None)
def decode_kernel(
    d: int, k: int, n_codewords: int, hkind: int, okind: int, rot: int, vector_store: bool = True, per_lane: int = 0,
    chunk: int = 0, max_registers: int | None = None,
):
    """Decode kernel ``(payload u8[::1], n, codebook f32[::1], signs f32[::1], table f32[:, :, ::1], out, out_addr, err)``.

    ``codebook`` is ``points.ravel()`` (``N k``); ``signs`` the Hadamard signs
    times ``1/sqrt(d)`` (Hadamard only); ``table`` (dense only) the rotated
    codebook ``P[b, n] = c_n @ M[b k:(b+1) k]`` of shape ``(m, N, d)``, so
    ``x = nu sum_b P[b, i_b]``. ``out`` is ``(n, d)`` float16 / uint16
    (bfloat16 bits) / float32 and ``out_addr`` its device address (16-byte
    stores when possible). ``err[0]`` receives (atomic min) the first record
    with an index ``>= N`` or a corrupt norm header; it must hold ``n`` on entry.
    The body is generated with every per-lane loop unrolled into scalars.
    Returns ``(kernel, grid_fn)``.
    """
    m = d // k
    w = (n_codewords - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    hadamard = rot == ROT_HADAMARD
    # Hadamard: max(16, k) coordinates per lane in chunks of max(8, k) (fastest of the layouts tried
    # on an H100 for k = 8 and k = 32, see gpu/NOTES.md: the shuffles cost d log2(L) per vector and
    # share the shared-memory pipe with the codebook reads); dense: 8 (each lane gathers m table rows)
    lanes, vper = lane_layout(d, per_lane or (max(16, k) if hadamard else 8))
    chunk = chunk or max(8, k)
    per_warp = 32 // lanes
    per_block = per_warp * _WARPS
    nk = n_codewords * k
    kp = k + 1 if k > 1 else 1  # padded row: random rows spread over the banks
    hadamard = rot == ROT_HADAMARD
    esize = 4 if okind == OUT_F32 else 2
    stores = _vector_stores() if vector_store else None
    vec_store = stores is not None and min(chunk, vper) % 8 == 0 and (d * esize) % 16 == 0
    sign_mask = hadamard and vper <= 64
    Z = [f"z{t}" for t in range(vper)]
    src = []
    a = src.append
    a("def kern(payload, n, codebook, signs, table, out, out_addr, err):")
    a("    tid = cuda.threadIdx.x")
    a(f"    lane = tid % 32")
    a(f"    grp = lane // {lanes}")
    a(f"    sub = lane % {lanes}")
    a(f"    j0 = sub * {vper}")
    a(f"    row = (tid // 32) * {per_warp} + grp")
    a(f"    cb = cuda.shared.array({n_codewords * kp}, float32)")
    a(f"    scratch = cuda.shared.array({THREADS if SIMULATOR else 1}, float64)")
    a(f"    for i in range(tid, {nk}, THREADS):")
    a(f"        cb[(i // {k}) * {kp} + i % {k}] = codebook[i]")
    # Hadamard: a lane holds C chunks of s consecutive coordinates, interleaved over the L lanes
    # of its vector (chunk c of lane `sub` is coordinates (c L + sub) s ... + s - 1), so the L
    # lanes' 16-byte stores of chunk c cover L s contiguous outputs (whole sectors).
    s_ch = min(chunk, vper)
    n_ch = vper // s_ch
    log_s, log_l = s_ch.bit_length() - 1, lanes.bit_length() - 1

    def g0(c: int) -> str:
        return f"(({c} * {lanes} + sub) * {s_ch})"

    if sign_mask:  # bit t set: the coordinate of slot t has a negative sign
        a("    smask = int64(0)")
        a("    pscale = float32(0.0)")
        a(f"    for t in range({vper}):")
        a(f"        sv = signs[((t // {s_ch}) * {lanes} + sub) * {s_ch} + t % {s_ch}]")
        a("        pscale = abs(sv)")
        a("        if sv < 0:")
        a("            smask |= int64(1) << t")
        a("    nscale = -pscale")
    elif hadamard:
        for t in range(vper):
            a(f"    sg{t} = signs[{g0(t // s_ch)} + {t % s_ch}]")
    a("    cuda.syncthreads()")
    a(f"    base = int64(cuda.blockIdx.x) * {per_block}")
    a(f"    stride = int64(cuda.gridDim.x) * {per_block}")
    a("    while base < n:")
    a("        vec = base + row")
    for z in Z:
        a(f"        {z} = float32(0.0)")
    a("        if vec < n:")
    a(f"            pos = vec * {rbits}")
    a(f"            norm = _header_value(_rd(payload, pos, {hbits}), {hkind})")
    a("            if norm < 0:")
    a("                cuda.atomic.min(err, 0, vec)")
    a("                norm = float32(0.0)")
    if hadamard:
        per_read = min(s_ch, k)  # coordinates per codeword read: a chunk inside one block, or whole blocks
        for c in range(n_ch):
            for u in range(s_ch // per_read):
                a(f"            ix = _rd(payload, pos + {hbits} + ({g0(c)} // {k} + {u}) * {w}, {w})")
                a(f"            if ix >= {n_codewords}:")
                a("                cuda.atomic.min(err, 0, vec)")
                a("                ix = 0")
                a(f"            cbase = ix * {kp} + {g0(c)} % {k}")
                for t in range(per_read):
                    a(f"            z{c * s_ch + u * per_read + t} = norm * cb[uint64(cbase + {t})]")
        # butterflies in ascending coordinate-bit order (the same arithmetic for every layout):
        # bits of the in-chunk offset and of the chunk number are in registers, the lane bits shuffle
        for bit in range(d.bit_length() - 1):
            if log_s <= bit < log_s + log_l:
                msk = 1 << (bit - log_s)
                a(f"        hi = (sub & {msk}) != 0")
                for t in range(vper):
                    a(f"        p = _xor(scratch, tid, z{t}, {msk})")
                    a(f"        z{t} = (p - z{t}) if hi else (z{t} + p)")
            else:
                h = 1 << (bit if bit < log_s else bit - log_l)
                for t in range(vper):
                    if not t & h:
                        a(f"        z{t}, z{t + h} = z{t} + z{t + h}, z{t} - z{t + h}")
        for t in range(vper):
            if sign_mask:
                a(f"        z{t} = z{t} * (nscale if (smask >> {t}) & 1 else pscale)")
            else:
                a(f"        z{t} = z{t} * sg{t}")
    else:
        a(f"            for b in range({m}):")
        a(f"                ix = _rd(payload, pos + {hbits} + b * {w}, {w})")
        a(f"                if ix >= {n_codewords}:")
        a("                    cuda.atomic.min(err, 0, vec)")
        a("                    ix = 0")
        for t in range(vper):
            a(f"                z{t} += table[b, ix, j0 + {t}]")
        for t in range(vper):
            a(f"            z{t} = z{t} * norm")
    a("        if vec < n:")
    # output column of slot t: chunked (Hadamard) or contiguous (dense, j0 + t)
    col = (lambda t: f"{g0(t // s_ch)} + {t % s_ch}") if hadamard else (lambda t: f"j0 + {t}")
    if vec_store:
        name = {OUT_F16: "_st_f16", OUT_BF16: "_st_bf16", OUT_F32: "_st_f32"}[okind]
        for g8 in range(0, vper, 8):
            a(f"            {name}(uint64(out_addr + (vec * {d} + {col(g8)}) * {esize}), {', '.join(Z[g8:g8 + 8])})")
    else:
        for t in range(vper):
            conv = {OUT_F16: f"_to_f16(z{t})", OUT_BF16: f"_bf16_bits(z{t})", OUT_F32: f"z{t}"}[okind]
            a(f"            out[vec, {col(t)}] = {conv}")
    a("        base += stride")
    ns = _namespace()
    if stores is not None:
        ns.update({"_st_f16": stores[0], "_st_bf16": stores[1], "_st_f32": stores[2]})
    out_t = {OUT_F16: types.float16, OUT_BF16: uint16, OUT_F32: float32}[okind]
    sig = (uint8[::1], int64, float32[::1], float32[::1], float32[:, :, ::1], out_t[:, ::1], int64, int64[::1])
    label = f"decode d={d} k={k} N={n_codewords} h={hkind} o={okind} rot={rot} vst={vec_store} L={lanes} s={min(chunk, vper)} r={max_registers}"
    kern = _compile("\n".join(src), "kern", ns, sig, label, max_registers)
    return kern, (lambda n: _grid(n, per_block))


# ----------------------------------------------------------------------------- encode
@lru_cache(maxsize=None)
def encode_kernel(
    d: int, k: int, n_codewords: int, hkind: int, rot: int, two_stage: bool, n_shells: int, probes: int, fp64: bool, in_f16: bool
):
    """Encode kernel ``(x, n, cb, cbn2, order, offsets, radii, signs, mat, words u32[::1], err i64[::1])``.

    ``x`` is ``(n, d)`` float16 or float32; ``cb`` ``(N k,)`` and ``cbn2``
    ``(N,)`` in the search precision (for the two-stage search: sorted by
    shell, with ``order (N,)``, ``offsets (S+1,)`` and ``radii (S,)``);
    ``signs`` the Hadamard signs, ``mat`` ``M^T`` (dense forward ``z = u @ M^T``).
    ``words`` (``ceil(n R / 32)`` uint32) receives the packed records; every
    word is written. ``err[0]`` receives (atomic min) the first row with a
    non-finite value, ``err[1]`` the first row whose norm overflows the header.
    Returns ``(kernel, grid_fn)``.
    """
    ft = float64 if fp64 else float32
    npft = np.float64 if fp64 else np.float32
    m = d // k
    w = (n_codewords - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    lanes, vper = lane_layout(d)
    per_warp = 32 // lanes
    chunk_c = 32 // math.gcd(rbits, 32)  # vectors whose records fill whole words
    tvec = max(chunk_c, per_warp)  # both powers of two: lcm == max
    n_iter = tvec // per_warp
    wpc = tvec * rbits // 32  # words per chunk
    items = per_warp * m
    if items >= 32:
        split = 1
    else:
        split = 1
        while split * 2 * items <= 32:
            split *= 2
    reps = -(-items // 32) if split == 1 else 1
    ncw = n_codewords
    nk = n_codewords * k
    hadamard = rot == ROT_HADAMARD
    scale = npft(1.0 / np.sqrt(d))
    big = npft(np.inf)
    zero = npft(0.0)
    two = npft(2.0)
    n_sh = max(1, n_shells)
    scratch_n = THREADS if SIMULATOR else 1
    x_t = types.float16 if in_f16 else float32
    sig = (
        x_t[:, ::1], int64, ft[::1], ft[::1], int64[::1], int64[::1], ft[::1], ft[::1], ft[:, ::1], uint32[::1], int64[::1]
    )

    def body(x, n, codebook, cbn2, order, offsets, radii, signs, mat, words, err):  # pragma: no cover - compiled
        tid = cuda.threadIdx.x
        warp = tid // 32
        lane = tid % 32
        grp = lane // lanes
        sub = lane % lanes
        j0 = sub * vper
        cb = cuda.shared.array(nk, ft)
        n2 = cuda.shared.array(ncw, ft)
        zb = cuda.shared.array((_WARPS, per_warp, d), ft)
        wb = cuda.shared.array((_WARPS, wpc), uint32)
        scratch = cuda.shared.array(scratch_n, float64)
        for i in range(tid, nk, THREADS):
            cb[i] = codebook[i]
        for i in range(tid, ncw, THREADS):
            n2[i] = cbn2[i]
        z = cuda.local.array(vper, ft)
        xs = cuda.local.array(vper, float64)
        yb = cuda.local.array(k, ft)
        cuda.syncthreads()
        n_words = (n * rbits + 31) // 32
        n_chunks = (n + tvec - 1) // tvec
        cbase = int64(cuda.blockIdx.x) * _WARPS
        cstride = int64(cuda.gridDim.x) * _WARPS
        while cbase < n_chunks:  # block-uniform
            chunk = cbase + warp
            v0 = chunk * tvec
            for i in range(lane, wpc, 32):
                wb[warp, i] = uint32(0)
            _wsync()
            for it in range(n_iter):
                vloc = it * per_warp + grp  # vector within the chunk
                vec = v0 + vloc
                active = vec < n
                ss = 0.0
                for t in range(vper):
                    xs[t] = float64(x[vec, j0 + t]) if active else 0.0
                    ss += xs[t] * xs[t]
                msk = 1
                while msk < lanes:
                    ss += _xor(scratch, tid, ss, msk)
                    msk *= 2
                if active and not (ss < np.inf):  # NaN or Inf somewhere in the row
                    cuda.atomic.min(err, 0, vec)
                    ss = 0.0
                    for t in range(vper):
                        xs[t] = 0.0
                norm = math.sqrt(ss)
                if active and sub == 0:
                    hb = _header_bits(norm, hkind)
                    if (hkind == HDR_F16 and hb >= 0x7C00) or (hkind == HDR_BF16 and hb >= 0x7F80):
                        cuda.atomic.min(err, 1, vec)
                    pos = vloc * rbits
                    cuda.atomic.or_(wb, (warp, pos >> 5), uint32((hb << (pos & 31)) & 0xFFFFFFFF))
                    if (pos & 31) + hbits > 32:
                        cuda.atomic.or_(wb, (warp, (pos >> 5) + 1), uint32(hb >> (32 - (pos & 31))))
                if hadamard:
                    for t in range(vper):
                        z[t] = ft((xs[t] / norm) if norm > 0.0 else xs[t]) * signs[j0 + t]
                    h = 1
                    while h < vper:
                        for s in range(0, vper, 2 * h):
                            for jj in range(s, s + h):
                                a = z[jj]
                                b = z[jj + h]
                                z[jj] = a + b
                                z[jj + h] = a - b
                        h *= 2
                    msk = 1
                    while msk < lanes:
                        for t in range(vper):
                            p = _xor(scratch, tid, z[t], msk)
                            z[t] = p - z[t] if (sub & msk) else z[t] + p
                        msk *= 2
                    for t in range(vper):
                        zb[warp, grp, j0 + t] = z[t] * scale
                    _wsync()
                else:
                    for t in range(vper):
                        zb[warp, grp, j0 + t] = ft((xs[t] / norm) if norm > 0.0 else xs[t])
                    _wsync()
                    for t in range(vper):
                        acc = zero
                        for l in range(d):
                            acc += zb[warp, grp, l] * mat[l, j0 + t]
                        z[t] = acc
                    _wsync()
                    for t in range(vper):
                        zb[warp, grp, j0 + t] = z[t]
                    _wsync()
                # ---- nearest codeword of every (vector, block) item of this warp iteration
                for r in range(reps):
                    item = (lane // split) + r * (32 // split)
                    s_id = lane % split
                    ok = item < items
                    it_v = item // m if ok else 0
                    it_b = item % m if ok else 0
                    for t in range(k):
                        yb[t] = zb[warp, it_v, it_b * k + t]
                    best = big
                    best_i = int64(ncw)
                    if two_stage:
                        rho2 = zero
                        for t in range(k):
                            rho2 += yb[t] * yb[t]
                        rho = math.sqrt(rho2)
                        chosen = int64(0)
                        for _ in range(probes):
                            s_best = 0
                            gap_best = big
                            for s in range(n_sh):
                                gap = abs(rho - radii[s])
                                if not ((chosen >> s) & 1) and gap < gap_best:
                                    gap_best = gap
                                    s_best = s
                            chosen |= int64(1) << s_best
                            for p in range(offsets[s_best] + s_id, offsets[s_best + 1], split):
                                dot = zero
                                for t in range(k):
                                    dot += yb[t] * cb[p * k + t]
                                score = n2[p] - two * dot
                                o = order[p]
                                if score < best or (score == best and o < best_i):
                                    best = score
                                    best_i = o
                    else:
                        for p in range(s_id, ncw, split):
                            dot = zero
                            for t in range(k):
                                dot += yb[t] * cb[p * k + t]
                            score = n2[p] - two * dot
                            if score < best:
                                best = score
                                best_i = p
                    msk = 1
                    while msk < split:  # lexicographic (score, index) minimum over the split lanes
                        ob = _xor(scratch, tid, best, msk)
                        oi = int64(_xor(scratch, tid, best_i, msk))
                        if ob < best or (ob == best and oi < best_i):
                            best = ob
                            best_i = oi
                        msk *= 2
                    if ok and s_id == 0 and v0 + it * per_warp + it_v < n:
                        pos = (it * per_warp + it_v) * rbits + hbits + it_b * w
                        val = best_i if best_i < ncw else 0
                        cuda.atomic.or_(wb, (warp, pos >> 5), uint32((val << (pos & 31)) & 0xFFFFFFFF))
                        if (pos & 31) + w > 32:
                            cuda.atomic.or_(wb, (warp, (pos >> 5) + 1), uint32(val >> (32 - (pos & 31))))
                _wsync()
            w0 = chunk * wpc
            for i in range(lane, wpc, 32):
                if w0 + i < n_words:
                    words[w0 + i] = wb[warp, i]
            _wsync()
            cbase += cstride

    kern = cuda.jit(body) if SIMULATOR else cuda.jit(sig, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})(body)
    COMPILED[f"encode d={d} k={k} N={n_codewords} rot={rot} two_stage={two_stage} fp64={fp64} f16={in_f16}"] = kern
    return kern, (lambda n: _grid(-(-n // tvec), _WARPS))


# ----------------------------------------------------------------------------- decode-attention
def record_granularity(rbits: int) -> int:
    """Bytes per load (1, 2 or 4) when reading whole records of ``rbits`` bits: every record start is aligned to it."""
    for g in (4, 2):
        if rbits % (8 * g) == 0:
            return g
    return 1


def _record_loader(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> tuple[list[str], int]:
    """Source lines loading record ``rec`` of ``buf`` into 32-bit words ``{prefix}s0..`` (shifted to bit 0).

    Only the elements holding the first ``upto`` bits of the record are read (all when ``upto == 0``).
    """
    g = record_granularity(rbits)
    need = upto or rbits
    lines = [f"{indent}{prefix}pos = ({rec}) * {rbits}"]
    if g == 1:
        n_el = (need + 7 + 7) // 8 if rbits % 8 else (need + 7) // 8
        lines.append(f"{indent}{prefix}e0 = {prefix}pos >> 3")
        lines.append(f"{indent}{prefix}off = {prefix}pos & 7" if rbits % 8 else f"{indent}{prefix}off = 0")
    else:
        n_el = -(-need // (8 * g))
        lines.append(f"{indent}{prefix}e0 = ({prefix}pos >> 3) // {g}")
    for i in range(n_el):
        lines.append(f"{indent}{prefix}b{i} = int64({buf}[uint64({prefix}e0 + {i})]) if {prefix}e0 + {i} < {buf}.shape[0] else int64(0)")
    per_word = 4 // g
    n_words = -(-n_el // per_word)
    for j in range(n_words):
        parts = [f"({prefix}b{j * per_word + u} << {8 * g * u})" for u in range(per_word) if j * per_word + u < n_el]
        lines.append(f"{indent}{prefix}w{j} = {' | '.join(parts)}")
    lines.append(f"{indent}{prefix}w{n_words} = int64(0)")
    if g == 1 and rbits % 8:
        for j in range(n_words):
            lines.append(
                f"{indent}{prefix}s{j} = (({prefix}w{j} >> {prefix}off) | ({prefix}w{j + 1} << (32 - {prefix}off))) & 0xFFFFFFFF"
            )
    else:
        for j in range(n_words):
            lines.append(f"{indent}{prefix}s{j} = {prefix}w{j}")
    lines.append(f"{indent}{prefix}s{n_words} = int64(0)")
    return lines, n_words


def _field(prefix: str, p: int, width: int) -> str:
    j, o = divmod(p, 32)
    mask = (1 << width) - 1
    if o + width <= 32:
        return f"(({prefix}s{j} >> {o}) & {mask})"
    return f"((({prefix}s{j} >> {o}) | ({prefix}s{j + 1} << {32 - o})) & {mask})"




def _tree_sum(terms: list[str]) -> str:
    """``terms`` summed as a balanced tree (dependency depth log2 of the count, not the count)."""
    while len(terms) > 1:
        terms = [f"({terms[i]} + {terms[i + 1]})" if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _loader32(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> list[str]:
    """Source lines loading record ``rec`` of the 32-bit word stream ``buf`` into words ``{prefix}s0..`` (shifted to bit 0).

    Record ``i`` starts at bit ``i R``: its offset in a word is a multiple of ``gcd(R, 32)``, so
    ``ceil((32 - gcd + need) / 32)`` aligned loads hold the first ``need`` bits (``upto``, or the
    whole record); words past the end of the stream read as 0. Byte-aligned offsets are shifted
    with ``prmt`` (one instruction per word).
    """
    loads, align = _loader32_parts(prefix, buf, rec, rbits, indent, upto)
    return loads + align


def _loader32_parts(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> tuple[list[str], list[str]]:
    """:func:`_loader32` as ``(loads, align)``: the loads define ``{prefix}p`` and ``{prefix}w0..``, which
    are all that ``align`` reads, so a kernel can issue the loads of its next record before aligning
    the current one (with the words copied to another prefix in between)."""
    need = upto or rbits
    gran = math.gcd(rbits, 32)
    max_off = 32 - gran if gran < 32 else 0
    n_load = -(-(max_off + need) // 32)
    n_s = -(-need // 32)
    loads = [f"{indent}{prefix}p = ({rec}) * {rbits}", f"{indent}{prefix}e = {prefix}p >> 5"]
    for t in range(n_load):
        # word t holds a bit of the record for every offset when 32 t < need; later ones may be past the end
        guard = "" if 32 * t < need else f" if {prefix}e + {t} < {buf}.shape[0] else int64(0)"
        loads.append(f"{indent}{prefix}w{t} = int64({buf}[uint64({prefix}e + {t})]){guard}")
    lines: list[str] = []
    if max_off == 0:
        for j in range(n_s):
            lines.append(f"{indent}{prefix}s{j} = {prefix}w{j}")
    else:
        lines.append(f"{indent}{prefix}o = {prefix}p & 31")
        if gran % 8 == 0:  # byte-aligned offsets: one byte permute per word
            lines.append(f"{indent}{prefix}sel = 0x3210 + ({prefix}o >> 3) * 0x1111")
        for j in range(n_s):
            hi = f"{prefix}w{j + 1}" if j + 1 < n_load else "int64(0)"
            if gran % 8 == 0:
                lines.append(f"{indent}{prefix}s{j} = _prmt({prefix}w{j}, {hi}, {prefix}sel) & 0xFFFFFFFF")
            else:
                lines.append(f"{indent}{prefix}s{j} = (({prefix}w{j} >> {prefix}o) | ({hi} << (32 - {prefix}o))) & 0xFFFFFFFF")
    lines.append(f"{indent}{prefix}s{n_s} = int64(0)")
    return loads, lines


#: Most context splits per head of :func:`attention_kernel` (the merge keeps their weights in shared memory).
MAX_SPLITS = 128


def _row(n_codewords: int) -> int:
    """Row stride (words) of the per-block weight and transposed-codebook tables: 16-byte rows when possible."""
    return n_codewords + 4 if n_codewords % 4 == 0 else n_codewords + 1


def _attention_layout(d: int, k: int, n: int, r: int, chunk: int) -> dict[str, int]:
    """Offsets (4-byte words) of the shared arrays of :func:`attention_kernel` and their total bytes."""
    m = d // k
    st = r * m
    lay = {"m": m, "R": r, "ST": st, "chunk": chunk, "lut": 0, "bins": n * st, "sc": 2 * n * st}
    lay["wacc"] = lay["sc"] + max(chunk, 3 * MAX_SPLITS)  # scores of a chunk, or the merge's split weights
    lay["cbt"] = lay["wacc"] + m * _row(n)
    lay["q"] = lay["cbt"] + k * _row(n)
    lay["red"] = lay["q"] + d
    lay["flag"] = lay["red"] + 3 * _WARPS
    lay["bytes"] = 4 * (lay["flag"] + 1)
    return lay


def attention_plan(d: int, k: int, n_codewords: int, chunk: int, smem_bytes: int) -> dict[str, int]:
    """Shared-memory plan of :func:`attention_kernel` (offsets in 4-byte words) for at most ``smem_bytes``.

    The lookup table and the weight bins hold ``R`` copies of every block's row
    (``R = 32 / m`` when ``m = d / k`` is a power of two up to 32, fewer when
    they would not fit): lane ``l`` reads and adds into copy ``(l // m) % R`` and
    visits its record's blocks starting at block ``l % m``, so the 32 lanes of a
    warp touch 32 different banks at every step. ``chunk`` tokens' scores are
    kept between the two passes over a chunk. Raises ``ValueError`` when even one
    copy and a chunk of ``THREADS`` tokens do not fit.
    """
    m = d // k
    n = n_codewords
    r = 32 // m if (m & (m - 1)) == 0 and m <= 32 else 1
    chunk = max(THREADS, chunk)
    while True:
        plan = _attention_layout(d, k, n, r, chunk)
        if plan["bytes"] <= smem_bytes:
            return plan
        if r > 1:
            r //= 2
        elif chunk > THREADS:
            chunk //= 2
        else:
            raise ValueError(
                f"decode-attention needs {plan['bytes']} bytes of shared memory for d={d}, k={k}, N={n}; "
                f"the device allows {smem_bytes} per block"
            )


@lru_cache(maxsize=None)
def attention_kernel(
    d: int, k: int, n_codewords: int, hkind: int, rot: int, okind: int, unroll: int, max_registers: int | None,
    replicas: int, chunk: int, words32: bool, q_f16: bool = False,
):
    """Split-context decode-attention from codes, one launch (``plan = attention_plan(...)``; dynamic shared memory ``plan["bytes"]``).

    Signature ``(q f32[:, ::1] (BH, d), kpay, vpay, T, per_split, scale, codebook f32[::1], signs f32[::1],
    mat f32[:, ::1], pmax f32[:, ::1], psum f32[:, ::1], pacc f32[:, :, ::1], counter i32[::1], out (BH, d),
    err i64[::1])``; grid ``(n_splits, BH)``. ``kpay``/``vpay`` are the payloads
    viewed as ``uint32`` words (``words32``) or as ``uint{8 g}`` with
    ``g = record_granularity(R)``; ``signs`` holds the Hadamard signs and
    ``1/sqrt(d)`` last; ``mat`` is ``M^T`` (dense).

    Block ``(s, h)`` rotates query ``h`` (``Pi q``, warp shuffles for the
    Hadamard), builds ``LUT[b, n] = scale <(Pi q)_b, c_n>`` in shared memory
    (``replicas`` copies, see :func:`attention_plan`) and walks its tokens in
    chunks of ``chunk``. Pass 1 scores every token of the chunk,
    ``s_i = nu_i sum_b LUT[b, i_b]`` (``unroll`` records in flight per thread, no K
    dequantised), keeps the scores in shared memory and reduces, per block,
    ``M = max s``, ``L = sum exp(s - M)`` and ``G = sum exp(s - M) nu'_i``. Pass 2
    adds ``p_i nu'_i`` for every value block into integer bins
    ``W[b, i'_b]`` in fixed point of scale ``2^30 / G`` (the bins cannot
    overflow, rounding is ``2^-31`` of the chunk's weight per token, native
    shared atomics, deterministic). The bins are folded into float
    accumulators rescaled to the running maximum after every chunk, and
    ``(sum_n W[b, n] c_n)_b = sum_i p_i (Pi v_i)_b`` is formed once per block. The last
    block of a head (atomic ticket) merges the splits and applies the inverse
    rotation, so V is never materialised either.
    """
    m = d // k
    ncw = n_codewords
    w = (ncw - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    R = replicas
    st = R * m
    lay = _attention_layout(d, k, ncw, R, chunk)
    o_lut, o_bins, o_sc, o_wacc, o_cbt = lay["lut"], lay["bins"], lay["sc"], lay["wacc"], lay["cbt"]
    o_q, o_red, o_flag = lay["q"], lay["red"], lay["flag"]
    nr = _row(ncw)
    hadamard = rot == ROT_HADAMARD
    check_ix = ncw != (1 << w)
    per_it = THREADS * unroll
    n_it = chunk // per_it
    assert chunk % per_it == 0, (chunk, per_it)
    prmt_path = w == 8 and m % 4 == 0 and (m & (m - 1)) == 0 and hbits % 16 == 0
    rot_span = min(m, 32)  # lane rotations 0 .. rot_span - 1
    n_rot_bits = (rot_span - 1).bit_length()
    V = max(1, d // 32)  # coordinates per lane of the warp Hadamard
    hl = d // V  # lanes holding coordinates
    P = 1
    while P * 2 * d <= THREADS and P * 2 <= 32:
        P *= 2
    src: list[str] = []
    a = src.append

    def loader(prefix: str, buf: str, rec: str, indent: str, upto: int = 0) -> None:
        if words32:
            src.extend(_loader32(prefix, buf, rec, rbits, indent, upto))
        else:
            src.extend(_record_loader(prefix, buf, rec, rbits, indent, upto)[0])

    def rotated_fields(prefix: str, indent: str) -> None:
        """Fields ``{prefix}g0..`` = the record's block indices rotated by this lane's ``rot``."""
        if prmt_path:
            nq = m // 4
            for j in range(nq):
                if hbits == 32:
                    a(f"{indent}{prefix}z{j} = {prefix}s{j + 1}")
                else:
                    a(f"{indent}{prefix}z{j} = _prmt({prefix}s{j}, {prefix}s{j + 1}, 0x5432)")
            for beta in range(max(0, n_rot_bits - 2)):  # whole-word part of the rotation
                sh = 1 << beta
                if sh >= nq:
                    break
                tmp = [f"{prefix}z{(j + sh) % nq} if rq{beta} else {prefix}z{j}" for j in range(nq)]
                a(f"{indent}{', '.join(f'{prefix}z{j}' for j in range(nq))} = {', '.join(tmp)}" + ("," if nq == 1 else ""))
            for j in range(nq):
                a(f"{indent}{prefix}y{j} = _prmt({prefix}z{j}, {prefix}z{(j + 1) % nq}, rsel)")
            for j in range(m):
                a(f"{indent}{prefix}g{j} = ({prefix}y{j // 4} >> {8 * (j % 4)}) & 255")
        else:
            for j in range(m):
                a(f"{indent}{prefix}g{j} = {_field(prefix, hbits + j * w, w)}")
            for beta in range(n_rot_bits):
                sh = 1 << beta
                tmp = [f"{prefix}g{(j + sh) % m} if rb{beta} else {prefix}g{j}" for j in range(m)]
                a(f"{indent}{', '.join(f'{prefix}g{j}' for j in range(m))} = {', '.join(tmp)}" + ("," if m == 1 else ""))

    def hdr(bits: str) -> str:
        return f"_f16_norm({bits})" if hkind == HDR_F16 else f"_header_value({bits}, {hkind})"

    def slot(j: int) -> str:
        """Word offset of this lane's copy of the block it visits at step ``j`` (inside a row of ``st`` words)."""
        if m <= 32:
            return f"o{j}"
        return f"(rot + {j} - ({m} if rot >= {m - j} else 0))"

    def warp_hadamard(indent: str, load: str) -> None:
        """``x0..`` := the unnormalised Hadamard transform of ``load(i)`` (coordinates lane * V + t), every warp."""
        for t in range(V):
            a(f"{indent}ci = lane * {V} + {t}")
            a(f"{indent}x{t} = {load} if lane < {hl} else float32(0.0)")
        hh = 1
        while hh < V:
            for t in range(V):
                if not t & hh:
                    a(f"{indent}x{t}, x{t + hh} = x{t} + x{t + hh}, x{t} - x{t + hh}")
            hh *= 2
        msk = 1
        while msk < hl:
            a(f"{indent}hi = (lane & {msk}) != 0")
            for t in range(V):
                a(f"{indent}pv = _xor(scratch, tid, x{t}, {msk})")
                a(f"{indent}x{t} = (pv - x{t}) if hi else (x{t} + pv)")
            msk *= 2

    a("def kern(q, kpay, vpay, T, per_split, scale, codebook, signs, mat, pmax, psum, pacc, counter, out, err):")
    a("    tid = cuda.threadIdx.x")
    a("    lane = tid % 32")
    a("    warp = tid // 32")
    a("    split = cuda.blockIdx.x")
    a("    h = cuda.blockIdx.y")
    a("    n_split = cuda.gridDim.x")
    a("    fs = cuda.shared.array(0, float32)")
    a("    ins = cuda.shared.array(0, int32)")
    a(f"    scratch = cuda.shared.array({THREADS if SIMULATOR else 1}, float64)")
    a("    ninf = float32(-np.inf)")
    a(f"    for i in range(tid, {ncw * st}, THREADS):")
    a(f"        ins[{o_bins} + i] = int32(0)")
    a(f"    for i in range(tid, {m * nr}, THREADS):")
    a(f"        fs[{o_wacc} + i] = float32(0.0)")
    # ---- rotated query into fs[o_q:]
    if hadamard:
        warp_hadamard("    ", "float32(q[h, ci]) * signs[ci]")
        a(f"    if warp == 0 and lane < {hl}:")
        for t in range(V):
            a(f"        fs[{o_q} + lane * {V} + {t}] = x{t} * signs[{d}]")
    else:
        a(f"    for i in range(tid, {d}, THREADS):")
        a("        acc = float32(0.0)")
        a(f"        for l in range({d}):")
        a("            acc += float32(q[h, l]) * mat[l, i]")
        a(f"        fs[{o_q} + i] = acc")
    a("    cuda.syncthreads()")
    # ---- lookup tables (R copies) and the transposed codebook
    a(f"    for n in range(tid, {ncw}, THREADS):")
    for t in range(k):
        a(f"        c{t} = codebook[n * {k} + {t}]")
        a(f"        fs[{o_cbt + t * nr} + n] = c{t}")
    for b in range(m):
        a(f"        v = ({' + '.join(f'c{t} * fs[{o_q + b * k + t}]' for t in range(k))}) * scale")
        for r in range(R):
            a(f"        fs[{o_lut} + n * {st} + {r * m + b}] = v")
    # ---- lane constants of the conflict-free visiting order
    a(f"    rot = lane % {m}")
    a(f"    repm = ((lane // {m}) % {R}) * {m}")
    if m <= 32:
        for j in range(m):
            a(f"    o{j} = repm + (rot + {j}) % {m}")
    if prmt_path:
        a("    rsel = 0x3210 + (rot & 3) * 0x1111")
        for beta in range(max(0, n_rot_bits - 2)):
            a(f"    rq{beta} = ((rot >> {beta + 2}) & 1) != 0")
    else:
        for beta in range(n_rot_bits):
            a(f"    rb{beta} = ((rot >> {beta}) & 1) != 0")
    a("    cuda.syncthreads()")
    a("    t_lo = int64(split) * per_split")
    a("    t_hi = min(t_lo + per_split, T)")
    a("    rec0 = int64(h) * T")
    a("    run_max = ninf")
    a("    run_sum = float32(0.0)")
    a("    c_lo = t_lo")
    a("    while c_lo < t_hi:")
    a(f"        c_hi = min(c_lo + {chunk}, t_hi)")
    a("        pm = ninf")
    a("        pl = float32(0.0)")
    a("        pg = float32(0.0)")
    # ---- pass 1: scores
    a(f"        for it in range({n_it}):")
    a(f"            base = c_lo + it * {per_it}")
    a("            if base < c_hi:")
    ind = "                "
    for u in range(unroll):
        a(f"{ind}i{u} = base + {u * THREADS} + tid")
        a(f"{ind}ok{u} = i{u} < c_hi")
        a(f"{ind}r{u} = rec0 + (i{u} if ok{u} else c_lo)")
        loader(f"k{u}", "kpay", f"r{u}", ind)
        loader(f"h{u}", "vpay", f"r{u}", ind, hbits)
    for u in range(unroll):
        a(f"{ind}nu = {hdr(_field(f'k{u}', 0, hbits))}")
        a(f"{ind}if nu < 0:")
        a(f"{ind}    if ok{u}:")
        a(f"{ind}        cuda.atomic.min(err, 0, r{u})")
        a(f"{ind}    nu = float32(0.0)")
        rotated_fields(f"k{u}", ind)
        terms = []
        for j in range(m):
            if check_ix:
                a(f"{ind}if k{u}g{j} >= {ncw}:")
                a(f"{ind}    if ok{u}:")
                a(f"{ind}        cuda.atomic.min(err, 0, r{u})")
                a(f"{ind}    k{u}g{j} = 0")
            terms.append(f"fs[uint64({o_lut} + k{u}g{j} * {st} + {slot(j)})]")
        a(f"{ind}s{u} = nu * {_tree_sum(terms)} if ok{u} else ninf")
        a(f"{ind}fs[uint64({o_sc} + it * {per_it} + {u * THREADS} + tid)] = s{u}")
        a(f"{ind}nv{u} = max({hdr(_field(f'h{u}', 0, hbits))}, float32(0.0))")
    a(f"{ind}mx = max(pm, {', '.join(f's{u}' for u in range(unroll))})" if unroll > 1 else f"{ind}mx = max(pm, s0)")
    a(f"{ind}if mx > ninf:")
    a(f"{ind}    fo = math.exp(pm - mx) if pm > ninf else float32(0.0)")
    a(f"{ind}    pl = pl * fo")
    a(f"{ind}    pg = pg * fo")
    for u in range(unroll):
        a(f"{ind}    if ok{u}:")
        a(f"{ind}        e = math.exp(s{u} - mx)")
        a(f"{ind}        pl += e")
        a(f"{ind}        pg += e * nv{u}")
    a(f"{ind}    pm = mx")
    # ---- block reduction of (max, sum p, sum p nu')
    for msk in (1, 2, 4, 8, 16):
        a(f"        om = _xor(scratch, tid, pm, {msk})")
        a(f"        ol = _xor(scratch, tid, pl, {msk})")
        a(f"        og = _xor(scratch, tid, pg, {msk})")
        a("        mx = max(pm, om)")
        a("        fa = math.exp(pm - mx) if pm > ninf else float32(0.0)")
        a("        fb = math.exp(om - mx) if om > ninf else float32(0.0)")
        a("        pl = pl * fa + ol * fb")
        a("        pg = pg * fa + og * fb")
        a("        pm = mx")
    a("        if lane == 0:")
    a(f"            fs[{o_red} + warp] = pm")
    a(f"            fs[{o_red + _WARPS} + warp] = pl")
    a(f"            fs[{o_red + 2 * _WARPS} + warp] = pg")
    a("        cuda.syncthreads()")
    a("        cm = ninf")
    a(f"        for i in range({_WARPS}):")
    a(f"            cm = max(cm, fs[{o_red} + i])")
    a("        cl = float32(0.0)")
    a("        cg = float32(0.0)")
    a(f"        for i in range({_WARPS}):")
    a(f"            wm = fs[{o_red} + i]")
    a("            if wm > ninf:")
    a("                fe = math.exp(wm - cm)")
    a(f"                cl += fs[{o_red + _WARPS} + i] * fe")
    a(f"                cg += fs[{o_red + 2 * _WARPS} + i] * fe")
    # fixed point: sum_i round(p_i nu'_i qs) <= 2**30 (1 + 1e-6) + chunk / 2 < 2**31 in every bin
    a(f"        qs = float32({float(2 ** 30)}) / cg if cg > 0 else float32(0.0)")
    # ---- pass 2: value weights into the bins
    a(f"        for it in range({n_it}):")
    a(f"            base = c_lo + it * {per_it}")
    a("            if base < c_hi:")
    for u in range(unroll):
        a(f"{ind}i{u} = base + {u * THREADS} + tid")
        a(f"{ind}ok{u} = i{u} < c_hi")
        a(f"{ind}r{u} = rec0 + (i{u} if ok{u} else c_lo)")
        loader(f"v{u}", "vpay", f"r{u}", ind)
    for u in range(unroll):
        a(f"{ind}if ok{u}:")
        i2 = ind + "    "
        a(f"{i2}nu = {hdr(_field(f'v{u}', 0, hbits))}")
        a(f"{i2}if nu < 0:")
        a(f"{i2}    cuda.atomic.min(err, 0, r{u})")
        a(f"{i2}    nu = float32(0.0)")
        a(f"{i2}p = math.exp(fs[uint64({o_sc} + it * {per_it} + {u * THREADS} + tid)] - cm)")
        a(f"{i2}pw = int32(p * nu * qs + float32(0.5))")
        rotated_fields(f"v{u}", i2)
        for j in range(m):
            if check_ix:
                a(f"{i2}if v{u}g{j} >= {ncw}:")
                a(f"{i2}    cuda.atomic.min(err, 0, r{u})")
                a(f"{i2}    v{u}g{j} = 0")
            a(f"{i2}cuda.atomic.add(ins, uint64({o_bins} + v{u}g{j} * {st} + {slot(j)}), pw)")
    a("        cuda.syncthreads()")
    # ---- fold the bins into the float accumulators (rescaled to the running maximum), zero them
    a("        nm = max(run_max, cm)")
    a("        fo = math.exp(run_max - nm) if run_max > ninf else float32(0.0)")
    a("        fc = math.exp(cm - nm) if cm > ninf else float32(0.0)")
    a("        run_sum = run_sum * fo + cl * fc")
    a("        run_max = nm")
    a("        inv = fc / qs if qs > 0 else float32(0.0)")
    n_words = ncw * st
    a(f"        for r2 in range({-(-n_words // THREADS)}):")
    a("            wi = tid + r2 * THREADS")
    a("            bv = int32(0)")
    a(f"            if wi < {n_words}:")
    a(f"                bv = ins[uint64({o_bins} + wi)]")
    a(f"                ins[uint64({o_bins} + wi)] = int32(0)")
    msk = m
    while R > 1 and msk < 32:  # sum the R copies (lanes that differ in the copy bits)
        a(f"            bv = int32(bv + _xor(scratch, tid, bv, {msk}))")
        msk *= 2
    a(f"            bb = wi % {st}")
    a(f"            if wi < {n_words} and bb < {m}:")
    a(f"                ea = uint64({o_wacc} + bb * {nr} + wi // {st})")
    a("                fs[ea] = fs[ea] * fo + float32(bv) * inv")
    a("        c_lo += " + str(chunk))
    a("    cuda.syncthreads()")
    # ---- this split's weighted sum of V (rotated frame): out_b = sum_n W[b, n] c_n, P threads per output
    a(f"    jj = tid // {P}")
    a(f"    part = tid % {P}")
    a(f"    for j0 in range(0, {d}, {THREADS // P}):")
    a("        j = j0 + jj")
    a("        acc = float32(0.0)")
    a(f"        if j < {d}:")
    if ncw % P == 0:  # part p sums codewords p N/P ... (p + 1) N/P - 1, unrolled (constant offsets, vector loads)
        span = ncw // P
        a(f"            bw = {o_wacc} + (j // {k}) * {nr} + part * {span}")
        a(f"            bc = {o_cbt} + (j % {k}) * {nr} + part * {span}")
        for i in range(span):
            a(f"            acc += fs[uint64(bw + {i})] * fs[uint64(bc + {i})]")
    else:
        a(f"            bw = {o_wacc} + (j // {k}) * {nr}")
        a(f"            bc = {o_cbt} + (j % {k}) * {nr}")
        a(f"            for n in range(part, {ncw}, {P}):")
        a("                acc += fs[uint64(bw + n)] * fs[uint64(bc + n)]")
    pm_ = 1
    while pm_ < P:
        a(f"        acc += _xor(scratch, tid, acc, {pm_})")
        pm_ *= 2
    a(f"        if j < {d} and part == 0:")
    a("            pacc[h, split, j] = acc")
    a("    if tid == 0:")
    a("        pmax[h, split] = run_max")
    a("        psum[h, split] = run_sum")
    a("    cuda.threadfence()")
    a("    cuda.syncthreads()")
    a("    if tid == 0:")
    a("        ticket = cuda.atomic.add(counter, h, 1)")
    a(f"        ins[{o_flag}] = 1 if ticket == n_split - 1 else 0")
    a("    cuda.syncthreads()")
    a(f"    if ins[{o_flag}] == 0:")
    a("        return")
    a("    cuda.threadfence()")
    # ---- last block of the head: merge the splits, inverse rotation
    ow, osum, oexp = o_sc, o_sc + MAX_SPLITS, o_sc + 2 * MAX_SPLITS
    a("    for s in range(tid, n_split, THREADS):")
    a(f"        fs[uint64({ow} + s)] = pmax[h, s]")
    a(f"        fs[uint64({osum} + s)] = psum[h, s]")
    a("    cuda.syncthreads()")
    a("    gmax = ninf")
    a("    for s in range(n_split):")
    a(f"        gmax = max(gmax, fs[uint64({ow} + s)])")
    a("    for s in range(tid, n_split, THREADS):")
    a(f"        sm = fs[uint64({ow} + s)]")
    a(f"        fs[uint64({oexp} + s)] = math.exp(sm - gmax) if sm > ninf else float32(0.0)")
    a("    cuda.syncthreads()")
    a("    tot = float32(0.0)")
    a("    for s in range(n_split):")
    a(f"        tot += fs[uint64({osum} + s)] * fs[uint64({oexp} + s)]")
    a(f"    for j in range(tid, {d}, THREADS):")
    a("        acc = float32(0.0)")
    a("        for s0 in range(0, n_split, 4):  # four independent loads in flight")
    for e in range(4):
        a(f"            if s0 + {e} < n_split:")
        a(f"                acc += pacc[h, uint64(s0 + {e}), j] * fs[uint64({oexp} + s0 + {e})]")
    a(f"        fs[{o_q} + j] = acc / tot if tot > 0 else float32(0.0)")
    a("    cuda.syncthreads()")
    conv = {OUT_F16: "_to_f16({})", OUT_BF16: "_bf16_bits({})", OUT_F32: "{}"}[okind]
    if hadamard:
        warp_hadamard("    ", f"fs[{o_q} + ci]")
        a(f"    if warp == 0 and lane < {hl}:")
        for t in range(V):
            a(f"        ci = lane * {V} + {t}")
            a(f"        out[h, ci] = {conv.format(f'x{t} * signs[ci] * signs[{d}]')}")
    else:
        a(f"    for i in range(tid, {d}, THREADS):")
        a("        acc = float32(0.0)")
        a(f"        for l in range({d}):")
        a(f"            acc += fs[{o_q} + l] * mat[i, l]")
        a(f"        out[h, i] = {conv.format('acc')}")
    a("    if tid == 0:")
    a("        counter[h] = 0")
    out_t = {OUT_F16: types.float16, OUT_BF16: uint16, OUT_F32: float32}[okind]
    pay_t = uint32 if words32 else {1: uint8, 2: uint16, 4: uint32}[record_granularity(rbits)]
    q_t = types.float16 if q_f16 else float32
    sig = (
        q_t[:, ::1], pay_t[::1], pay_t[::1], int64, int64, float32, float32[::1], float32[::1], float32[:, ::1],
        float32[:, ::1], float32[:, ::1], float32[:, :, ::1], int32[::1], out_t[:, ::1], int64[::1],
    )
    ns = _namespace()
    ns.update({"int32": int32, "_prmt": _prmt, "_f16_norm": _f16_norm})
    label = (
        f"attention d={d} k={k} N={ncw} h={hkind} rot={rot} o={okind} u={unroll} r={max_registers} R={R} "
        f"chunk={chunk} w32={words32} q16={q_f16}"
    )
    return _compile("\n".join(src), "kern", ns, sig, label, max_registers)


_SHARED_OPTED: dict[int, int] = {}


def allow_dynamic_shared(kern, nbytes: int) -> None:
    """Let ``kern`` (compiled) launch with ``nbytes`` of dynamic shared memory (opt-in above 48 KiB, once per kernel)."""
    if SIMULATOR or nbytes <= max(48 * 1024, _SHARED_OPTED.get(id(kern), 0)):
        return
    from numba.cuda.cudadrv import driver as drv

    attr = drv.binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    for ov in kern.overloads.values():
        f = ov._codelibrary.get_cufunc()
        drv.driver.cuKernelSetAttribute(attr, int(nbytes), f.handle, f.device.id)
    _SHARED_OPTED[id(kern)] = int(nbytes)
