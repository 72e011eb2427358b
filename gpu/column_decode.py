r"""Hadamard decode by columns: the in-block transform folded into the codebook, no warp shuffles.

The randomized Hadamard decode is :math:`x = \nu\, D H_d \hat u / \sqrt d` with
:math:`\hat u = (c_{i_0}, \dots, c_{i_{m-1}})` the record's codewords (``m = d / k``
blocks of ``k`` coordinates). With the Sylvester ordering, :math:`H_d = H_m \otimes H_k`
(block bits high, in-block bits low), so

.. math:: (H_d \hat u)_{b k + p} = \sum_{b'} (H_m)_{b b'}\, (H_k c_{i_{b'}})_p .

The kernel keeps the transformed codebook :math:`c'_n = H_k c_n` (formed once on the host
in float64) in shared memory, and lane ``l`` of a vector holds *columns*
``p = l C ... l C + C - 1`` of every block: its ``C m`` values need the ``m``-point
transform across blocks only, which is entirely in registers. No warp shuffles are
left (the shuffle stages of the chunked layout of :func:`~fibquant_theory.gpu.decode.decode_kernel`
shared the shared-memory pipe with the codebook reads and bounded it; see research/gpu-notes.md).

Layout: ``L = k / C`` lanes per vector, ``W = 32 / L`` vectors per warp. The codebook
holds ``R`` (at most ``W``) copies, element ``(copy r, row n, column p = l C + c)`` at
``n R k + c R L + r L + l``: vector ``w`` of a warp reads copy ``w % R``, so with ``R = W``
the 32 lanes of every load touch 32 different banks whatever the rows. Output words
(two 16-bit or one 32-bit value) are written directly when a block's outputs fill a
32-byte sector (``k * esize >= 32``); otherwise they are staged per warp in shared memory
(rows padded so the writes are conflict-free) and written back as whole rows, 128
contiguous bytes per warp store. The record of the next vector is loaded before the
current one is processed (``prefetch``, 32-bit word streams only).

The arithmetic is the same for every ``C`` (and ``R``, staging and prefetch), so all
layouts write the same bits; it differs from the chunked kernel's only in rounding
(float32, within the tolerance of the output formats).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from numba import float32, int64, uint8, uint16, uint32, uint64

from fibquant_theory.config import GPU_COLUMN_COPY_BUDGET, GPU_COLUMN_MAX_VALUES, GPU_COLUMN_MIN_VALUES, GPU_SHARED_OPTIN

from . import codegen
from .device import (
    HDR_F16,
    HDR_F32,
    OUT_F16,
    OUT_F32,
    THREADS,
    WARPS,
    bf16_bits,
    f16_bits,
    f16_norm,
    f32_bits,
    header_value,
    prmt,
    warp_sync,
)

__all__ = ["COPY_BUDGET", "MAX_VALUES", "MIN_VALUES", "SHARED_LIMIT", "column_codebook", "column_decode_kernel", "column_default", "column_plan"]

#: Fewest values (``C m``) a lane holds in the default layout (:data:`fibquant_theory.config.GPU_COLUMN_MIN_VALUES`).
MIN_VALUES: int = GPU_COLUMN_MIN_VALUES
#: Shared memory (bytes) the codebook copies may take by default (:data:`fibquant_theory.config.GPU_COLUMN_COPY_BUDGET`).
COPY_BUDGET: int = GPU_COLUMN_COPY_BUDGET
#: Most values (``C m``) a lane may hold in registers (:data:`fibquant_theory.config.GPU_COLUMN_MAX_VALUES`).
MAX_VALUES: int = GPU_COLUMN_MAX_VALUES
#: Most shared memory per block (an H100/H200 block may opt in to 227 KiB; :data:`fibquant_theory.config.GPU_SHARED_OPTIN`).
SHARED_LIMIT: int = GPU_SHARED_OPTIN


def _esize(okind: int) -> int:
    return 4 if okind == OUT_F32 else 2


def column_default(d: int, k: int, okind: int) -> int:
    """Default columns per lane ``C`` of :func:`column_plan`.

    Parameters
    ----------
    d, k : int
        Dimension and block size.
    okind : int
        Output format (``OUT_F16``, ``OUT_BF16`` or ``OUT_F32``).

    Returns
    -------
    int
        The fewest columns that give a lane at least :data:`MIN_VALUES` values (``C m``), whole
        output words, at most 16 bytes of a block's outputs and at most 32 lanes per vector.
    """
    esize = _esize(okind)
    m = d // k
    c = max(4 // esize, -(-k // 32))
    while c * m < MIN_VALUES and 2 * c * esize <= 16 and 2 * c <= k and 2 * c * m <= MAX_VALUES:
        c *= 2
    return c


def column_plan(d: int, k: int, n_codewords: int, okind: int, columns: int = 0, replicas: int = 0) -> dict[str, int]:
    """Work layout of :func:`column_decode_kernel` (lanes, copies, staging, shared bytes).

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    okind : int
        Output format (``OUT_F16``, ``OUT_BF16`` or ``OUT_F32``).
    columns : int
        Columns per lane ``C`` (0: :func:`column_default`).
    replicas : int
        Codebook copies ``R`` (0: as many as the ``W`` vectors of a warp, halved until they fit
        ``COPY_BUDGET``; fewer copies make ``W / R``-way bank conflicts on the codebook reads).

    Raises
    ------
    ValueError
        ``d`` or ``k`` not a power of two, ``k < 2``, ``columns`` not a power of two dividing ``k``
        with whole output words, at most 16 bytes a lane and block and at most 32 lanes per vector,
        more than ``MAX_VALUES`` values per lane, ``replicas`` not a power of two up to ``W``, or
        more shared memory than ``SHARED_LIMIT``.
    """
    if d & (d - 1) or k & (k - 1) or k < 2 or d % k:
        raise ValueError(f"the column decode needs powers of two k >= 2 dividing d, got d={d}, k={k}")
    esize = _esize(okind)
    m = d // k
    c = columns or column_default(d, k, okind)
    if c & (c - 1) or k % c or c * esize % 4 or k // c > 32 or c * esize > 16:
        raise ValueError(
            f"decode columns per lane must be a power of two dividing k={k}, from {max(4 // esize, -(-k // 32))} "
            f"to {16 // esize} (whole output words, at most 32 lanes per vector); got {c}"
        )
    if c * m > MAX_VALUES:
        raise ValueError(f"{c} columns x {m} blocks = {c * m} values per lane exceed {MAX_VALUES} (registers)")
    lanes = k // c
    per_warp = 32 // lanes
    copy_bytes = n_codewords * k * 4
    if replicas:
        if replicas & (replicas - 1) or replicas > per_warp:
            raise ValueError(f"decode replicas must be a power of two up to {per_warp} (vectors per warp), got {replicas}")
        r = replicas
    else:
        r = per_warp
        while r > 1 and r * copy_bytes > COPY_BUDGET:
            r //= 2
    cw = c * esize // 4  # 32-bit words per lane per block
    kb = k * esize // 4  # words per block
    row = d * esize // 4  # words per output row
    staged = k * esize < 32
    # staging rows padded to L (mod 32) words: the word (w, b kb + l cw) of lane (w, l) is in bank w L + b kb + l cw
    pad = (lanes - row) % 32 if staged else 0
    stage_words = WARPS * per_warp * (row + pad) if staged else 0
    nbytes = 4 * (r * n_codewords * k + stage_words)
    if nbytes > SHARED_LIMIT:
        raise ValueError(
            f"the column decode of a {n_codewords} x {k} codebook needs {nbytes} bytes of shared memory "
            f"({r} copies), more than {SHARED_LIMIT}"
        )
    return {
        "C": c, "L": lanes, "W": per_warp, "R": r, "m": m, "cw": cw, "kb": kb, "row": row, "staged": int(staged),
        "rowp": row + pad, "stage": r * n_codewords * k, "out_words": 1 if staged or cw % 2 else 2, "bytes": nbytes,
    }


def column_codebook(points: np.ndarray, plan: dict[str, int]) -> np.ndarray:
    """The transformed codebook ``H_k c_n`` (float64, then float32) in the replicated layout of ``plan``.

    Parameters
    ----------
    points : numpy.ndarray
        Codebook, shape ``(N, k)``.
    plan : dict
        :func:`column_plan` of the kernel.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(R N k,)``: element (copy ``r``, row ``n``, column ``p = l C + c``)
        at ``n R k + c R L + r L + l``.
    """
    pts = np.asarray(points, dtype=np.float64)
    n, k = pts.shape
    h = pts.copy()
    s = 1
    while s < k:  # unnormalised Sylvester Hadamard of every row, natural order
        h = h.reshape(n, -1, 2, s)
        h = np.stack([h[:, :, 0] + h[:, :, 1], h[:, :, 0] - h[:, :, 1]], axis=2).reshape(n, k)
        s *= 2
    c, lanes, r = plan["C"], plan["L"], plan["R"]
    # (n, p = l C + c) -> n R k + c R L + r L + l
    t = h.reshape(n, lanes, c).transpose(0, 2, 1)  # (n, c, l)
    out = np.broadcast_to(t[:, :, None, :], (n, c, r, lanes))
    return np.ascontiguousarray(out.reshape(-1), dtype=np.float32)


@lru_cache(maxsize=None)
def column_decode_kernel(
    d: int, k: int, n_codewords: int, hkind: int, okind: int, columns: int, words32: bool, prefetch: bool = True,
    max_registers: int | None = None, replicas: int = 0,
) -> tuple[Any, Callable[[int], int], dict[str, int]]:
    """Column decode ``(payload, n, cbt f32[::1], signs f32[::1], outw, err i64[::1])``; returns ``(kernel, grid_fn, plan)``.

    ``payload`` is the record stream viewed as ``uint32`` words (``words32``) or as
    ``uint{8 g}`` with ``g = record_granularity(R)``; ``cbt`` is
    :func:`column_codebook` of the plan; ``signs`` the Hadamard signs times
    ``1/sqrt(d)``; ``outw`` the ``(n, d)`` output as a flat view of ``uint32`` words, or
    of ``uint64`` where ``plan["out_words"] == 2`` (pairs of words a lane writes directly).
    Dynamic shared memory: ``plan["bytes"]``. ``err[0]`` receives (atomic min) the first record with an index
    ``>= N`` or a corrupt norm header (:data:`~fibquant_theory.gpu.runtime.NO_ERROR` when none).

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    hkind, okind : int
        Header format (``HDR_*``) and output format (``OUT_*``) of :mod:`~fibquant_theory.gpu.device`.
    columns, replicas : int
        Columns per lane and codebook copies (0: the defaults of :func:`column_plan`).
    words32 : bool
        Read the payload as 32-bit words (else in elements of the record granularity).
    prefetch : bool
        Load the next record before processing the current one (32-bit words only).
    max_registers : int or None
        Register cap per thread.

    Returns
    -------
    tuple
        ``(kernel, grid_fn, plan)``: ``grid_fn(n)`` is the number of blocks for ``n`` records.

    Raises
    ------
    ValueError
        As :func:`column_plan`.
    """
    plan = column_plan(d, k, n_codewords, okind, columns, replicas)
    C, L, W, R, m = plan["C"], plan["L"], plan["W"], plan["R"], plan["m"]
    cw, kb, row, rowp, staged, o_st = plan["cw"], plan["kb"], plan["row"], plan["rowp"], plan["staged"], plan["stage"]
    ncw = n_codewords
    wbits = (ncw - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * wbits
    check_ix = ncw != (1 << wbits)
    per_block = W * WARPS
    prefetch = prefetch and words32
    nv = C * m
    src: list[str] = []
    a = src.append

    def loads(prefix: str, rec: str, indent: str) -> list[str]:
        return codegen.loader32_parts(prefix, "payload", rec, rbits, indent)[0]

    a("def kern(payload, n, cbt, signs, outw, err):")
    a("    tid = cuda.threadIdx.x")
    a("    lane = tid % 32")
    a("    warp = tid // 32")
    a(f"    w = lane // {L}")
    a(f"    l = lane % {L}")
    a("    cbs = cuda.shared.array(0, float32)")
    a("    stg = cuda.shared.array(0, uint32)")
    a(f"    for i in range(tid, {o_st}, {THREADS}):")
    a("        cbs[i] = cbt[i]")
    a("    smask = int64(0)")
    a(f"    for t in range({nv}):")
    a(f"        if signs[(t // {C}) * {k} + l * {C} + t % {C}] < 0:")
    a("            smask |= int64(1) << t")
    a("    pscale = abs(signs[0])")
    a(f"    colo = (w % {R}) * {L} + l")  # (not `coff`: the byte loader uses {prefix}off)
    if staged:
        a(f"    wst = {o_st} + warp * {W * rowp}")
        a(f"    sto = wst + w * {rowp} + l * {cw}")  # this lane's staging words: sto + b kb + j
    a("    cuda.syncthreads()")
    a(f"    base = int64(cuda.blockIdx.x) * {per_block}")
    a(f"    stride = int64(cuda.gridDim.x) * {per_block}")
    a(f"    vofs = warp * {W} + w")
    a(f"    lim = n * {row}")
    if prefetch:
        src.extend(loads("f", "min(base + vofs, n - 1)", "    "))
    a("    while base < n:")
    a("        vec = base + vofs")
    a("        ok = vec < n")
    a("        rec = vec if ok else n - 1")
    if prefetch:
        ld = loads("f", "min(vec + stride, n - 1)", "        ")
        a("        cp = fp")  # the words loaded last iteration become the current record's
        for t in range(len(ld) - 2):
            a(f"        cw{t} = fw{t}")
        src.extend(ld)
        src.extend(codegen.loader32_parts("c", "payload", "rec", rbits, "        ")[1])
    elif words32:
        ld, align = codegen.loader32_parts("c", "payload", "rec", rbits, "        ")
        src.extend(ld + align)
    else:
        src.extend(codegen.record_loader("c", "payload", "rec", rbits, "        ")[0])
    prefix = "c"  # the record's words are c s0, c s1, ... whichever loader
    hdr = codegen.field(prefix, 0, hbits)
    a(f"        nu = {'_f16_norm(' + hdr + ')' if hkind == HDR_F16 else f'_header_value({hdr}, {hkind})'}")
    a("        if nu < 0:")
    a("            if ok:")
    a("                cuda.atomic.min(err, 0, vec)")
    a("            nu = float32(0.0)")
    a("        ap = nu * pscale")
    a("        an = -ap")
    for b in range(m):
        a(f"        g = {codegen.field(prefix, hbits + b * wbits, wbits)}")
        if check_ix:
            a(f"        if g >= {ncw}:")
            a("            if ok:")
            a("                cuda.atomic.min(err, 0, vec)")
            a("            g = 0")
        a(f"        rb = g * {R * k} + colo")
        for c in range(C):
            a(f"        z{b * C + c} = cbs[uint64(rb + {c * R * L})]")
    h = 1
    while h < m:  # the m-point transform across blocks, ascending bit order, per column
        for b in range(m):
            if not b & h:
                for c in range(C):
                    x, y = f"z{b * C + c}", f"z{(b + h) * C + c}"
                    a(f"        {x}, {y} = {x} + {y}, {x} - {y}")
        h *= 2
    for t in range(nv):
        a(f"        z{t} = z{t} * (an if (smask >> {t}) & 1 else ap)")

    def word(b: int, j: int) -> str:
        """32-bit output word ``j`` of block ``b`` of this lane."""
        if okind == OUT_F32:
            return f"_f32_bits(z{b * C + j})"
        lo, hi = f"z{b * C + 2 * j}", f"z{b * C + 2 * j + 1}"
        f = "_f16_bits" if okind == OUT_F16 else "_bf16_bits"
        return f"(int64({f}({lo})) | (int64({f}({hi})) << 16))"

    # the output is the flat (n * row / out_words,) word view: one base per iteration, constant offsets
    if staged:
        for b in range(m):
            for j in range(cw):
                a(f"        stg[uint64(sto + {b * kb + j})] = uint32({word(b, j)})")
        a("        _wsync()")
        # the warp's W rows are W row contiguous output words: 32 consecutive ones per step (128-byte stores)
        a(f"        gb = (base + warp * {W}) * {row} + lane")
        for it in range(m * cw):
            if row % 32 == 0:  # a step stays inside one row: constant staging offset
                a(f"        val = stg[uint64(wst + lane + {(it * 32 // row) * rowp + it * 32 % row})]")
            else:
                a(f"        q = {it * 32} + lane")
                a(f"        val = stg[uint64(wst + (q // {row}) * {rowp} + q % {row})]")
            a(f"        if gb + {it * 32} < lim:")
            a(f"            outw[uint64(gb + {it * 32})] = val")
        a("        _wsync()")
    else:
        ow = plan["out_words"]
        a("        if ok:")
        a(f"            ob = vec * {row // ow} + l * {cw // ow}")
        for b in range(m):
            for j in range(cw // ow):
                if ow == 1:
                    a(f"            outw[uint64(ob + {b * kb + j})] = uint32({word(b, j)})")
                else:
                    lo, hi = word(b, 2 * j), word(b, 2 * j + 1)
                    a(f"            outw[uint64(ob + {b * kb // 2 + j})] = uint64({lo}) | (uint64({hi}) << uint64(32))")
    a("        base += stride")
    ns = codegen.namespace()
    ns.update({
        "uint32": uint32, "_prmt": prmt, "_f16_norm": f16_norm, "_header_value": header_value, "_f32_bits": f32_bits,
        "_f16_bits": f16_bits, "_bf16_bits": bf16_bits, "_wsync": warp_sync,
    })
    pay_t = uint32 if words32 else {1: uint8, 2: uint16, 4: uint32}[codegen.record_granularity(rbits)]
    out_nb = uint32 if plan["out_words"] == 1 else uint64
    sig = (pay_t[::1], int64, float32[::1], float32[::1], out_nb[::1], int64[::1])
    label = (
        f"column decode d={d} k={k} N={ncw} h={hkind} o={okind} C={C} R={R} staged={bool(staged)} w32={words32} "
        f"prefetch={prefetch} r={max_registers}"
    )
    kern = codegen.compile_kernel("\n".join(src), "kern", ns, sig, label, max_registers)
    return kern, (lambda n: codegen.grid_blocks(n, per_block)), plan
