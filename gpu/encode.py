r"""Encode kernel of the FibQuant GPU codec: vectors to packed records (exhaustive or two-stage search).

Work layout
-----------
A vector of dimension ``d`` is handled by ``L`` consecutive lanes of a warp
(``L`` a power of two, at most 32), each holding ``V = d / L`` consecutive
coordinates (about 8, :func:`~fibquant_theory.gpu.codegen.lane_layout`), so a
warp handles ``G = 32 / L`` vectors at a time. The norm is reduced with warp
shuffles, the randomized Hadamard rotation runs in registers and shuffles (the
dense rotation goes through a per-warp shared-memory staging row), and the
nearest codeword of every (vector, block) item is searched by one or more
lanes in the chosen precision, with the codebook in shared memory.

Each warp owns a chunk of ``T`` vectors whose ``T R`` bits are a whole number
of 32-bit words, assembles those words in shared memory and writes them once,
so no two warps touch a word.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from numba import float32, float64, int64, types, uint32

from . import codegen
from ._compat import SIMULATOR, cuda
from .device import HDR_BF16, HDR_F16, HDR_F32, ROT_HADAMARD, THREADS, WARPS, bits_f32, header_bits, shfl_xor, warp_sync

__all__ = ["IN_BF16", "IN_F16", "IN_F32", "encode_kernel", "encode_shared_bytes"]

#: Input formats of :func:`encode_kernel`: float32, float16, bfloat16 (as ``uint16`` bits).
IN_F32, IN_F16, IN_BF16 = 0, 1, 2


def _search_layout(d: int, k: int, n_codewords: int, fp64: bool) -> tuple[int, int, int, int, int]:
    """``(row stride of the codebook, offset of the norms, offset of the staging rows, total words, split)`` in shared memory.

    When several lanes search one block (``split > 1``) the codebook rows are padded to an odd
    stride, so the lanes' different codewords fall in different banks.
    """
    lanes, _ = codegen.lane_layout(d)
    items = (32 // lanes) * (d // k)
    split = 1
    if items < 32:
        while split * 2 * items <= 32:
            split *= 2
    kp = k + 1 if split > 1 and k % 2 == 0 else k
    o_n2 = n_codewords * kp
    o_zb = o_n2 + n_codewords
    total = o_zb + WARPS * (32 // lanes) * d
    return kp, o_n2, o_zb, total, split


def encode_shared_bytes(d: int, k: int, n_codewords: int, fp64: bool) -> int:
    """Dynamic shared memory of :func:`encode_kernel` (codebook, its norms, the rotated vectors of every warp).

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    fp64 : bool
        Float64 search (8-byte words) or float32.

    Returns
    -------
    int
        Bytes per block.
    """
    return _search_layout(d, k, n_codewords, fp64)[3] * (8 if fp64 else 4)


@lru_cache(maxsize=None)
def encode_kernel(
    d: int, k: int, n_codewords: int, hkind: int, rot: int, two_stage: bool, n_shells: int, probes: int, fp64: bool, in_kind: int
) -> tuple[Any, Callable[[int], int]]:
    """Encode kernel ``(x, n, cb, cbn2, order, offsets, radii, signs, mat, words u32[::1], err i64[::1])``.

    Launched with :func:`encode_shared_bytes` of dynamic shared memory. ``x`` is ``(n, d)``
    float32, float16 or bfloat16 (its ``uint16`` bits); ``cb`` ``(N k,)`` and ``cbn2``
    ``(N,)`` in the search precision (for the two-stage search: sorted by
    shell, with ``order (N,)``, ``offsets (S+1,)`` and ``radii (S,)``);
    ``signs`` the Hadamard signs, ``mat`` ``M^T`` (dense forward ``z = u @ M^T``).
    ``words`` (``ceil(n R / 32)`` uint32) receives the packed records; every
    word is written. ``err[0]`` receives (atomic min) the first row with a
    non-finite value, ``err[1]`` the first row whose norm overflows the header.

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    hkind, rot : int
        Header format (``HDR_*``) and rotation (``ROT_*``) of :mod:`~fibquant_theory.gpu.device`.
    two_stage : bool
        Two-stage search (nearest shells in radius, then exhaustive inside them); else exhaustive.
    n_shells, probes : int
        Shells of the two-stage codebook and shells searched per block.
    fp64 : bool
        Normalisation, rotation and distances in float64 (the CPU encoder's arithmetic); else float32.
    in_kind : int
        The input format: ``IN_F32``, ``IN_F16`` or ``IN_BF16``.

    Returns
    -------
    tuple
        ``(kernel, grid_fn)``: ``grid_fn(n)`` is the number of blocks for ``n`` vectors
        (``THREADS`` threads each).
    """
    ft = float64 if fp64 else float32
    npft = np.float64 if fp64 else np.float32
    m = d // k
    w = (n_codewords - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    lanes, vper = codegen.lane_layout(d)
    per_warp = 32 // lanes
    chunk_c = 32 // math.gcd(rbits, 32)  # vectors whose records fill whole words
    tvec = max(chunk_c, per_warp)  # both powers of two: lcm == max
    n_iter = tvec // per_warp
    wpc = tvec * rbits // 32  # words per chunk
    items = per_warp * m
    kp, o_n2, o_zb, _, split = _search_layout(d, k, n_codewords, fp64)
    reps = -(-items // 32) if split == 1 else 1
    ncw = n_codewords
    nk = n_codewords * k
    hadamard = rot == ROT_HADAMARD
    scale = npft(1.0 / np.sqrt(d))
    big = npft(np.inf)
    zero = npft(0.0)
    two = npft(2.0)
    n_sh = max(1, n_shells)
    n_mask = -(-n_sh // 64)  # words of the chosen-shells mask
    scratch_n = THREADS if SIMULATOR else 1
    in_bf16 = in_kind == IN_BF16
    x_t = {IN_F32: float32, IN_F16: types.float16, IN_BF16: types.uint16}[in_kind]
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
        sh = cuda.shared.array(0, ft)  # [codebook rows of kp | norms | staging rows (warp, vector, d)]
        wb = cuda.shared.array((WARPS, wpc), uint32)
        scratch = cuda.shared.array(scratch_n, float64)
        for i in range(tid, nk, THREADS):
            sh[(i // k) * kp + i % k] = codebook[i]
        for i in range(tid, ncw, THREADS):
            sh[o_n2 + i] = cbn2[i]
        zrow = o_zb + warp * (per_warp * d)
        chosen = cuda.local.array(n_mask, int64)
        z = cuda.local.array(vper, ft)
        xs = cuda.local.array(vper, float64)
        yb = cuda.local.array(k, ft)
        cuda.syncthreads()
        n_words = (n * rbits + 31) // 32
        n_chunks = (n + tvec - 1) // tvec
        cbase = int64(cuda.blockIdx.x) * WARPS
        cstride = int64(cuda.gridDim.x) * WARPS
        while cbase < n_chunks:  # block-uniform
            chunk = cbase + warp
            v0 = chunk * tvec
            for i in range(lane, wpc, 32):
                wb[warp, i] = uint32(0)
            warp_sync()
            for it in range(n_iter):
                vloc = it * per_warp + grp  # vector within the chunk
                vec = v0 + vloc
                active = vec < n
                ss = 0.0
                for t in range(vper):
                    if in_bf16:
                        xs[t] = float64(bits_f32(int64(x[vec, j0 + t]) << 16)) if active else 0.0
                    else:
                        xs[t] = float64(x[vec, j0 + t]) if active else 0.0
                    ss += xs[t] * xs[t]
                msk = 1
                while msk < lanes:
                    ss += shfl_xor(scratch, tid, ss, msk)
                    msk *= 2
                if active and not (ss < np.inf):  # NaN or Inf somewhere in the row
                    cuda.atomic.min(err, 0, vec)
                    ss = 0.0
                    for t in range(vper):
                        xs[t] = 0.0
                norm = math.sqrt(ss)
                if active and sub == 0:
                    hb = header_bits(norm, hkind)
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
                            p = shfl_xor(scratch, tid, z[t], msk)
                            z[t] = p - z[t] if (sub & msk) else z[t] + p
                        msk *= 2
                    for t in range(vper):
                        sh[zrow + grp * d + j0 + t] = z[t] * scale
                    warp_sync()
                else:
                    for t in range(vper):
                        sh[zrow + grp * d + j0 + t] = ft((xs[t] / norm) if norm > 0.0 else xs[t])
                    warp_sync()
                    for t in range(vper):
                        acc = zero
                        for l in range(d):
                            acc += sh[zrow + grp * d + l] * mat[l, j0 + t]
                        z[t] = acc
                    warp_sync()
                    for t in range(vper):
                        sh[zrow + grp * d + j0 + t] = z[t]
                    warp_sync()
                # ---- nearest codeword of every (vector, block) item of this warp iteration
                for r in range(reps):
                    item = (lane // split) + r * (32 // split)
                    s_id = lane % split
                    ok = item < items
                    it_v = item // m if ok else 0
                    it_b = item % m if ok else 0
                    for t in range(k):
                        yb[t] = sh[zrow + it_v * d + it_b * k + t]
                    best = big
                    best_i = int64(ncw)
                    if two_stage:
                        rho2 = zero
                        for t in range(k):
                            rho2 += yb[t] * yb[t]
                        rho = math.sqrt(rho2)
                        for q in range(n_mask):
                            chosen[q] = int64(0)
                        for _ in range(probes):
                            s_best = 0
                            gap_best = big
                            for s in range(n_sh):
                                gap = abs(rho - radii[s])
                                if not ((chosen[s >> 6] >> (s & 63)) & 1) and gap < gap_best:
                                    gap_best = gap
                                    s_best = s
                            chosen[s_best >> 6] |= int64(1) << (s_best & 63)
                            for p in range(offsets[s_best] + s_id, offsets[s_best + 1], split):
                                dot = zero
                                for t in range(k):
                                    dot += yb[t] * sh[p * kp + t]
                                score = sh[o_n2 + p] - two * dot
                                o = order[p]
                                if score < best or (score == best and o < best_i):
                                    best = score
                                    best_i = o
                    else:
                        for p in range(s_id, ncw, split):
                            dot = zero
                            for t in range(k):
                                dot += yb[t] * sh[p * kp + t]
                            score = sh[o_n2 + p] - two * dot
                            if score < best:
                                best = score
                                best_i = p
                    msk = 1
                    while msk < split:  # lexicographic (score, index) minimum over the split lanes
                        ob = shfl_xor(scratch, tid, best, msk)
                        oi = int64(shfl_xor(scratch, tid, best_i, msk))
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
                warp_sync()
            w0 = chunk * wpc
            for i in range(lane, wpc, 32):
                if w0 + i < n_words:
                    words[w0 + i] = wb[warp, i]
            warp_sync()
            cbase += cstride

    label = f"encode d={d} k={k} N={n_codewords} rot={rot} two_stage={two_stage} fp64={fp64} in={in_kind}"
    kern = codegen.jit_kernel(body, sig, label)
    return kern, (lambda n: codegen.grid_blocks(-(-n // tvec), WARPS))
