r"""Decode-attention from codes on the GPU: its shared-memory plan and its kernel.

One query per head against ``T`` encoded keys and values, in one launch: the
context of every head is split over blocks, each block scores its tokens from
per-block lookup tables of ``q . codewords`` (no dequantised K), accumulates the
softmax weights of V per (block, codeword) in integer bins, and the last block
of a head merges the splits and rotates the weighted sum back once (no
dequantised V). See :func:`attention_kernel`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from numba import float32, int32, int64, types, uint8, uint16, uint32

from fibquant_theory.config import GPU_MAX_SPLITS

from . import codegen
from ._compat import SIMULATOR
from .device import HDR_F16, HDR_F32, OUT_BF16, OUT_F16, OUT_F32, ROT_HADAMARD, THREADS, WARPS, bits_f32, f16_norm, prmt

__all__ = ["MAX_SPLITS", "Q_BF16", "Q_F16", "Q_F32", "attention_config", "attention_kernel", "attention_layout", "attention_plan", "row_stride"]

#: Query formats of :func:`attention_kernel`: float32, float16, bfloat16 (as ``uint16`` bits).
Q_F32, Q_F16, Q_BF16 = 0, 1, 2

#: Most context splits per head of :func:`attention_kernel` (:data:`fibquant_theory.config.GPU_MAX_SPLITS`).
MAX_SPLITS: int = GPU_MAX_SPLITS


def row_stride(n_codewords: int) -> int:
    """Row stride (words) of the per-block weight and transposed-codebook tables: 16-byte rows when possible."""
    return n_codewords + 4 if n_codewords % 4 == 0 else n_codewords + 1


def attention_layout(d: int, k: int, n: int, r: int, chunk: int) -> dict[str, int]:
    """Offsets (4-byte words) of the shared arrays of :func:`attention_kernel` and their total bytes.

    Parameters
    ----------
    d, k, n : int
        Dimension, block size and codebook size.
    r : int
        Copies of the lookup table and the weight bins.
    chunk : int
        Tokens per chunk (their scores are kept in shared memory).

    Returns
    -------
    dict
        ``m``, ``R``, ``ST`` (words per table row), ``chunk``, the offsets ``lut``, ``bins``,
        ``sc``, ``wacc``, ``cbt``, ``q``, ``red``, ``flag`` and the total ``bytes``.
    """
    m = d // k
    st = r * m
    lay = {"m": m, "R": r, "ST": st, "chunk": chunk, "lut": 0, "bins": n * st, "sc": 2 * n * st}
    lay["wacc"] = lay["sc"] + max(chunk, 3 * MAX_SPLITS)  # scores of a chunk, or the merge's split weights
    lay["cbt"] = lay["wacc"] + m * row_stride(n)
    lay["q"] = lay["cbt"] + k * row_stride(n)
    lay["red"] = lay["q"] + d
    lay["flag"] = lay["red"] + 3 * WARPS
    lay["bytes"] = 4 * (lay["flag"] + 1)
    return lay


def attention_plan(d: int, k: int, n_codewords: int, chunk: int, smem_bytes: int) -> dict[str, int]:
    """Shared-memory plan of :func:`attention_kernel` (offsets in 4-byte words) for at most ``smem_bytes``.

    The lookup table and the weight bins hold ``R`` copies of every block's row
    (``R = 32 / m`` when ``m = d / k`` is a power of two up to 32, fewer when
    they would not fit): lane ``l`` reads and adds into copy ``(l // m) % R`` and
    visits its record's blocks starting at block ``l % m``, so the 32 lanes of a
    warp touch 32 different banks at every step. ``chunk`` tokens' scores are
    kept between the two passes over a chunk; the chunk is halved (down to
    ``THREADS``) after the copies.

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    chunk : int
        Tokens per chunk wanted (at least ``THREADS`` are used).
    smem_bytes : int
        Shared memory a block may use.

    Returns
    -------
    dict
        :func:`attention_layout` of the largest copies and chunk that fit.

    Raises
    ------
    ValueError
        Even one copy and a chunk of ``THREADS`` tokens do not fit.
    """
    m = d // k
    n = n_codewords
    r = 32 // m if (m & (m - 1)) == 0 and m <= 32 else 1
    chunk = max(THREADS, chunk)
    while True:
        plan = attention_layout(d, k, n, r, chunk)
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


def attention_config(
    head: tuple[int, int, int, int, int], okind: int, words32: bool, q_kind: int, options: Any, smem_bytes: int
) -> tuple[tuple[Any, ...], int]:
    """Arguments of :func:`attention_kernel` and its dynamic shared bytes for a codec's options.

    Parameters
    ----------
    head : tuple of int
        ``(d, k, N, hkind, rot)`` of the codec.
    okind, q_kind : int
        Output and query formats.
    words32 : bool
        Whole 32-bit word loads.
    options : GPUOptions
        ``attention_unroll``, ``attention_chunk`` and ``attention_registers`` are used.
    smem_bytes : int
        Shared memory a block may use.

    Returns
    -------
    tuple
        ``(arguments of attention_kernel, shared bytes)``.

    Raises
    ------
    ValueError
        ``attention_unroll`` records per thread do not fit in shared memory.
    """
    d, k, n, hkind, rot = head
    unroll = int(options.attention_unroll)
    per_it = THREADS * unroll
    # the chunk is the kernel's capacity (compile-time); a shorter split skips the iterations past its end
    chunk = max(per_it, int(options.attention_chunk) // per_it * per_it)
    plan = attention_plan(d, k, n, chunk, smem_bytes)
    chunk = plan["chunk"] // per_it * per_it
    if chunk < per_it:
        raise ValueError(f"attention_unroll={unroll} needs a chunk of {per_it} tokens, which does not fit in shared memory")
    conf = (d, k, n, hkind, rot, okind, unroll, options.attention_registers, plan["R"], chunk, words32, q_kind)
    return conf, plan["bytes"]


@lru_cache(maxsize=None)
def attention_kernel(
    d: int, k: int, n_codewords: int, hkind: int, rot: int, okind: int, unroll: int, max_registers: int | None,
    replicas: int, chunk: int, words32: bool, q_kind: int = Q_F32, device_length: bool = False,
) -> Any:
    """Split-context decode-attention from codes, one launch (``plan = attention_plan(...)``; dynamic shared memory ``plan["bytes"]``).

    Signature ``(q (BH, d), kpay, vpay, T, group, per_split, scale, codebook f32[::1], signs f32[::1],
    mat f32[:, ::1], pmax f32[:, ::1], psum f32[:, ::1], pacc f32[:, :, ::1], counter i32[::1], out (BH, d),
    err i64[::1])``; grid ``(n_splits, BH)``. ``kpay``/``vpay`` are the payloads
    viewed as ``uint32`` words (``words32``) or as ``uint{8 g}`` with
    ``g = record_granularity(R)``; ``signs`` holds the Hadamard signs and
    ``1/sqrt(d)`` last; ``mat`` is ``M^T`` (dense). Query head ``h`` reads the records of
    key/value head ``h // group`` (grouped-query attention: ``group`` query heads share one
    key/value head; 1 for multi-head attention).

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

    Parameters
    ----------
    d, k, n_codewords : int
        Dimension, block size and codebook size.
    hkind, rot, okind : int
        Header format (``HDR_*``), rotation (``ROT_*``) and output format (``OUT_*``) of
        :mod:`~fibquant_theory.gpu.device`.
    unroll : int
        Records in flight per thread; ``chunk`` must be a multiple of ``THREADS * unroll``.
    max_registers : int or None
        Register cap per thread.
    replicas, chunk : int
        ``plan["R"]`` and the chunk of :func:`attention_plan`.
    words32 : bool
        Read the payloads as 32-bit words (else in elements of the record granularity).
    q_kind : int
        Format of the queries: ``Q_F32``, ``Q_F16`` or ``Q_BF16`` (bfloat16 read as its ``uint16`` bits).
    device_length : bool
        Take one more argument after ``err``, ``length`` (int64 ``[1]`` on the device): every head
        attends over its first ``min(length[0], T)`` records, while ``T`` stays the stride between
        heads (a preallocated cache of capacity ``T``; read on the device, so a CUDA graph replays it).

    Returns
    -------
    numba.cuda dispatcher
        The kernel (launch ``kern[(n_splits, BH), THREADS, stream, plan["bytes"]]``).
    """
    m = d // k
    ncw = n_codewords
    w = (ncw - 1).bit_length()
    hbits = 32 if hkind == HDR_F32 else 16
    rbits = hbits + m * w
    R = replicas
    st = R * m
    lay = attention_layout(d, k, ncw, R, chunk)
    o_lut, o_bins, o_sc, o_wacc, o_cbt = lay["lut"], lay["bins"], lay["sc"], lay["wacc"], lay["cbt"]
    o_q, o_red, o_flag = lay["q"], lay["red"], lay["flag"]
    nr = row_stride(ncw)
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

    def qload(col: str) -> str:
        """Source of query coordinate ``col`` of head ``h`` as a float32."""
        if q_kind == Q_BF16:
            return f"_bits_f32(int64(q[h, {col}]) << 16)"
        return f"float32(q[h, {col}])"

    def loader(prefix: str, buf: str, rec: str, indent: str, upto: int = 0) -> None:
        if words32:
            src.extend(codegen.loader32(prefix, buf, rec, rbits, indent, upto))
        else:
            src.extend(codegen.record_loader(prefix, buf, rec, rbits, indent, upto)[0])

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
                a(f"{indent}{prefix}g{j} = {codegen.field(prefix, hbits + j * w, w)}")
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

    a("def kern(q, kpay, vpay, T, group, per_split, scale, codebook, signs, mat, pmax, psum, pacc, counter, out, err"
      + (", length):" if device_length else "):"))
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
        warp_hadamard("    ", f"{qload('ci')} * signs[ci]")
        a(f"    if warp == 0 and lane < {hl}:")
        for t in range(V):
            a(f"        fs[{o_q} + lane * {V} + {t}] = x{t} * signs[{d}]")
    else:
        a(f"    for i in range(tid, {d}, THREADS):")
        a("        acc = float32(0.0)")
        a(f"        for l in range({d}):")
        a(f"            acc += {qload('l')} * mat[l, i]")
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
    a("    t_hi = min(t_lo + per_split, min(T, length[0]))" if device_length else "    t_hi = min(t_lo + per_split, T)")
    a("    rec0 = int64(h // group) * T")
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
        a(f"{ind}nu = {hdr(codegen.field(f'k{u}', 0, hbits))}")
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
        a(f"{ind}s{u} = nu * {codegen.tree_sum(terms)} if ok{u} else ninf")
        a(f"{ind}fs[uint64({o_sc} + it * {per_it} + {u * THREADS} + tid)] = s{u}")
        a(f"{ind}nv{u} = max({hdr(codegen.field(f'h{u}', 0, hbits))}, float32(0.0))")
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
    a(f"            fs[{o_red + WARPS} + warp] = pl")
    a(f"            fs[{o_red + 2 * WARPS} + warp] = pg")
    a("        cuda.syncthreads()")
    a("        cm = ninf")
    a(f"        for i in range({WARPS}):")
    a(f"            cm = max(cm, fs[{o_red} + i])")
    a("        cl = float32(0.0)")
    a("        cg = float32(0.0)")
    a(f"        for i in range({WARPS}):")
    a(f"            wm = fs[{o_red} + i]")
    a("            if wm > ninf:")
    a("                fe = math.exp(wm - cm)")
    a(f"                cl += fs[{o_red + WARPS} + i] * fe")
    a(f"                cg += fs[{o_red + 2 * WARPS} + i] * fe")
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
        a(f"{i2}nu = {hdr(codegen.field(f'v{u}', 0, hbits))}")
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
    pay_t = uint32 if words32 else {1: uint8, 2: uint16, 4: uint32}[codegen.record_granularity(rbits)]
    q_t = {Q_F32: float32, Q_F16: types.float16, Q_BF16: uint16}[q_kind]
    sig = (
        q_t[:, ::1], pay_t[::1], pay_t[::1], int64, int64, int64, float32, float32[::1], float32[::1], float32[:, ::1],
        float32[:, ::1], float32[:, ::1], float32[:, :, ::1], int32[::1], out_t[:, ::1], int64[::1],
    ) + ((int64[::1],) if device_length else ())
    ns = codegen.namespace()
    ns.update({"int32": int32, "_prmt": prmt, "_f16_norm": f16_norm, "_bits_f32": bits_f32})
    label = (
        f"attention d={d} k={k} N={ncw} h={hkind} rot={rot} o={okind} u={unroll} r={max_registers} R={R} "
        f"chunk={chunk} w32={words32} q={q_kind}" + (" length" if device_length else "")
    )
    return codegen.compile_kernel("\n".join(src), "kern", ns, sig, label, max_registers)
