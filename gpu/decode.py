r"""Decode kernel of the FibQuant GPU codec: packed records to vectors (chunked Hadamard or dense rotation).

Work layout
-----------
A vector of dimension ``d`` is handled by ``L`` consecutive lanes of a warp
(``L`` a power of two, at most 32), each holding ``V = d / L`` coordinates in
registers, so a warp handles ``G = 32 / L`` vectors at a time. The Hadamard
decode holds ``V = max(16, k)`` coordinates per lane as chunks of
``s = max(8, k)`` consecutive ones interleaved over the vector's lanes (chunk
``c`` of lane ``l`` starts at ``(c L + l) s``), so that one 16-byte store per
lane writes ``L s`` contiguous outputs per vector
(:mod:`~fibquant_theory.gpu.column_decode` has a second Hadamard decode, by
columns, without shuffles); the dense decode holds 8 consecutive coordinates
per lane. The randomized Hadamard rotation is applied stage by stage in
ascending coordinate-bit order (the same arithmetic for every layout):
in-register butterflies for the bits a lane holds, warp shuffles
(``shfl.xor``) for the lane bits. The dense decode sums the rows of the rotated
codebook table. The codebook lives in shared memory.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from numba import float32, int64, types, uint8, uint16

from . import codegen
from ._compat import SIMULATOR
from .device import HDR_F32, OUT_BF16, OUT_F16, OUT_F32, ROT_HADAMARD, THREADS, WARPS

__all__ = ["decode_kernel"]


@lru_cache(maxsize=None)
def decode_kernel(
    d: int, k: int, n_codewords: int, hkind: int, okind: int, rot: int, vector_store: bool = True, per_lane: int = 0,
    chunk: int = 0, max_registers: int | None = None,
) -> tuple[Any, Callable[[int], int]]:
    """Decode kernel ``(payload u8[::1], n, codebook f32[::1], signs f32[::1], table f32[:, :, ::1], out, out_addr, err)``.

    ``codebook`` is ``points.ravel()`` (``N k``); ``signs`` the Hadamard signs
    times ``1/sqrt(d)`` (Hadamard only); ``table`` (dense only) the rotated
    codebook ``P[b, n] = c_n @ M[b k:(b+1) k]`` of shape ``(m, N, d)``, so
    ``x = nu sum_b P[b, i_b]``. ``out`` is ``(n, d)`` float16 / uint16
    (bfloat16 bits) / float32 and ``out_addr`` its device address (16-byte
    stores when possible). ``err[0]`` receives (atomic min) the first record
    with an index ``>= N`` or a corrupt norm header (:data:`~fibquant_theory.gpu.runtime.NO_ERROR` when none).
    The body is generated with every per-lane loop unrolled into scalars.

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    hkind, okind, rot : int
        Header format (``HDR_*``), output format (``OUT_*``) and rotation (``ROT_*``) of
        :mod:`~fibquant_theory.gpu.device`.
    vector_store : bool
        Use 16-byte stores where the layout allows them (GPU only).
    per_lane : int
        Coordinates per lane (0: ``max(16, k)`` for the Hadamard rotation, 8 for the dense one).
    chunk : int
        Consecutive coordinates per interleaved chunk, a power of two (0: ``max(8, k)``; Hadamard).
    max_registers : int or None
        Register cap per thread.

    Returns
    -------
    tuple
        ``(kernel, grid_fn)``: ``grid_fn(n)`` is the number of blocks for ``n`` records
        (``THREADS`` threads each).
    """
    m = d // k
    w = (n_codewords - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    hadamard = rot == ROT_HADAMARD
    # Hadamard: max(16, k) coordinates per lane in chunks of max(8, k) (fastest of the layouts tried
    # on an H100 for k = 8 and k = 32, see research/gpu-notes.md: the shuffles cost d log2(L) per vector and
    # share the shared-memory pipe with the codebook reads); dense: 8 (each lane gathers m table rows)
    lanes, vper = codegen.lane_layout(d, per_lane or (max(16, k) if hadamard else 8))
    chunk = chunk or max(8, k)
    per_warp = 32 // lanes
    per_block = per_warp * WARPS
    nk = n_codewords * k
    kp = k + 1 if k > 1 else 1  # padded row: random rows spread over the banks
    hadamard = rot == ROT_HADAMARD
    esize = 4 if okind == OUT_F32 else 2
    stores = codegen.vector_stores() if vector_store else None
    vec_store = stores is not None and min(chunk, vper) % 8 == 0 and (d * esize) % 16 == 0
    sign_mask = hadamard and vper <= 64
    Z = [f"z{t}" for t in range(vper)]
    src = []
    a = src.append
    a("def kern(payload, n, codebook, signs, table, out, out_addr, err):")
    a("    tid = cuda.threadIdx.x")
    a("    lane = tid % 32")
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
    ns = codegen.namespace()
    if stores is not None:
        ns.update({"_st_f16": stores[0], "_st_bf16": stores[1], "_st_f32": stores[2]})
    out_t = {OUT_F16: types.float16, OUT_BF16: uint16, OUT_F32: float32}[okind]
    sig = (uint8[::1], int64, float32[::1], float32[::1], float32[:, :, ::1], out_t[:, ::1], int64, int64[::1])
    label = f"decode d={d} k={k} N={n_codewords} h={hkind} o={okind} rot={rot} vst={vec_store} L={lanes} s={min(chunk, vper)} r={max_registers}"
    kern = codegen.compile_kernel("\n".join(src), "kern", ns, sig, label, max_registers)
    return kern, (lambda n: codegen.grid_blocks(n, per_block))
