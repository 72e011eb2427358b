r"""The clustered top-``T`` search on the GPU, bucketed by cluster: every cluster's members are read once per tile of blocks.

The per-block kernel of :mod:`~fibquant_theory.gpu.clustered_encode` reads the
``T`` chosen clusters' members from global memory for every block (``T N / K``
codewords of ``k`` floats a block, from L2). Here the work is regrouped so that
a cluster's members are staged in shared memory once and scored against every
block that chose that cluster, like the tiles of a matrix product:

1. ``parents``: one thread per block scores the ``K`` parents (shared memory,
   read by all the threads of a warp at once) and keeps its ``T`` best
   ``(score, c)`` pairs in registers (an unrolled insertion network), writes them
   to ``chosen (n, T)`` and counts the blocks of every cluster (a shared
   histogram, one global atomic per cluster and thread block).
2. ``scan``: the counts become bucket starts (one thread block).
3. ``scatter``: the ``n T`` (block, cluster) pairs go to their cluster's bucket
   (``pairs``), and every pair's position is kept (``slot``).
4. ``members``: thread block ``(x, c)`` stages cluster ``c``'s members in
   shared memory (in chunks) and scores ``P`` of its bucket's blocks per thread:
   the best ``(score, codeword)`` of every pair (ties to the lowest codeword).
5. ``combine``: the lexicographic minimum over a block's ``T`` pairs.

Where a pair lands in its bucket depends on the order of the atomics, but the
result of a pair depends only on the block and the cluster, and the last step is
a minimum: the indices are the same on every run. With the float64 arithmetic of
:data:`EXACT_FASTMATH` (the same sums in
the same order as the CPU kernel) they are the CPU kernel's, bit for bit; the
float32 kernels use all of :data:`~fibquant_theory.config.GPU_FASTMATH`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numba import float32, float64, int32, int64

from fibquant_theory.config import GPU_FASTMATH

from . import codegen
from ._compat import SIMULATOR, cuda
from .device import THREADS

__all__ = ["EXACT_FASTMATH", "MAX_TOP", "MEMBER_BYTES", "PAIRS_PER_THREAD", "ROUND_BLOCKS", "ClusterBuckets", "bucket_kernels", "member_chunk"]

#: Fastmath flags of the float64 kernels: those of GPU_FASTMATH that leave every sum and product exact.
EXACT_FASTMATH: frozenset[str] = frozenset(GPU_FASTMATH - {"contract", "reassoc"})
#: Largest ``T`` of the register insertion network (a larger ``top`` uses the per-block kernel).
MAX_TOP: int = 32
#: Static shared bytes of the ``members`` kernel's staged codewords (their points, norms and indices).
MEMBER_BYTES: int = 24 * 1024
#: Blocks scored per thread of the ``members`` kernel (each staged codeword is read once for all of them).
PAIRS_PER_THREAD: int = 4
#: Blocks per round: the workspaces hold ``ROUND_BLOCKS * T`` pairs (int32 positions).
ROUND_BLOCKS: int = 1 << 20
#: (block, cluster) pairs per thread block of the ``scatter`` kernel.
_SCATTER_SPAN: int = THREADS * 16


def member_chunk(k: int, fp64: bool) -> int:
    """Codewords staged at a time by the ``members`` kernel: a multiple of 32 within :data:`MEMBER_BYTES`."""
    size = 8 if fp64 else 4
    return max(32, MEMBER_BYTES // (k * size + size + 4) // 32 * 32)


@lru_cache(maxsize=None)
def bucket_kernels(k: int, n_clusters: int, n_codewords: int, top: int, fp64: bool) -> dict[str, Any]:
    """The five kernels of the bucketed search for one shape, compiled once.

    Parameters
    ----------
    k, n_clusters, n_codewords : int
        Block size, clusters ``K`` and codebook size ``N``.
    top : int
        Clusters searched ``T``, ``1 <= T <= min(K, MAX_TOP)``.
    fp64 : bool
        Float64 (the CPU kernel's arithmetic) or float32.

    Returns
    -------
    dict
        ``parents``, ``scan``, ``scatter``, ``members``, ``combine`` (numba-cuda dispatchers)
        and ``parents_shared`` (dynamic shared bytes of ``parents``).

    Raises
    ------
    ValueError
        ``top`` out of range.
    """
    if not 1 <= top <= min(n_clusters, MAX_TOP):
        raise ValueError(f"top must be in [1, {min(n_clusters, MAX_TOP)}] for the bucketed search, got {top}")
    ft = float64 if fp64 else float32
    ftn = "float64" if fp64 else "float32"
    K, T, N = n_clusters, top, n_codewords
    P = PAIRS_PER_THREAD
    mch = member_chunk(k, fp64)
    src: list[str] = []
    a = src.append
    ks = range(k)
    # ---- 1. parents: T best (score, c) per block, in registers; cluster counts
    a("def parents(y, n, par, pn2, chosen, counts, err):")
    a("    tid = cuda.threadIdx.x")
    a(f"    sp = cuda.shared.array(0, {ftn})")
    a(f"    hist = cuda.shared.array({K}, int32)")
    a(f"    for i in range(tid, {K * k}, {THREADS}):")
    a("        sp[i] = par[i]")
    a(f"    for i in range(tid, {K}, {THREADS}):")
    a(f"        sp[{K * k} + i] = pn2[i]")
    a("        hist[i] = 0")
    a("    cuda.syncthreads()")
    a(f"    base = int64(cuda.blockIdx.x) * {THREADS}")
    a("    while base < n:")
    a("        item = base + tid")
    a("        if item < n:")
    for t in ks:
        a(f"            y{t} = y[item, {t}]")
    a(f"            ss = {' + '.join(f'y{t} * y{t}' for t in ks)}")
    a("            if not (ss < BIG):")
    a("                cuda.atomic.min(err, 0, item)")
    for t in ks:
        a(f"                y{t} = ZERO")
    for r in range(T):
        a(f"            s{r} = BIG")
        a(f"            c{r} = int32({K})")
    a(f"            for c in range({K}):")
    a(f"                o = c * {k}")
    a("                dot = ZERO")
    for t in ks:
        a(f"                dot += y{t} * sp[o + {t}]")
    a(f"                v = sp[{K * k} + c] - TWO * dot")
    a(f"                if v < s{T - 1}:")
    a("                    vc = int32(c)")
    for r in range(T):
        a(f"                    if v < s{r} or (v == s{r} and vc < c{r}):")
        a(f"                        v, s{r} = s{r}, v")
        a(f"                        vc, c{r} = c{r}, vc")
    for r in range(T):
        a(f"            chosen[item * {T} + {r}] = c{r}")
        a(f"            cuda.atomic.add(hist, c{r}, 1)")
    a(f"        base += int64(cuda.gridDim.x) * {THREADS}")
    a("    cuda.syncthreads()")
    a(f"    for i in range(tid, {K}, {THREADS}):")
    a("        if hist[i] > 0:")
    a("            cuda.atomic.add(counts, i, hist[i])")
    # ---- 2. scan: bucket starts and cursors; the counts are zeroed for the next round
    a("def scan(counts, starts, cursor):")
    a("    tid = cuda.threadIdx.x")
    a(f"    sc = cuda.shared.array({K + 1}, int32)")
    a(f"    for i in range(tid, {K}, {THREADS}):")
    a("        sc[i] = counts[i]")
    a("        counts[i] = 0")
    a("    cuda.syncthreads()")
    a("    if tid == 0:")
    a("        acc = int32(0)")
    a(f"        for i in range({K}):")
    a("            cnt = sc[i]")
    a("            sc[i] = acc")
    a("            acc += cnt")
    a(f"        sc[{K}] = acc")
    a("    cuda.syncthreads()")
    a(f"    for i in range(tid, {K + 1}, {THREADS}):")
    a("        starts[i] = sc[i]")
    a(f"        if i < {K}:")
    a("            cursor[i] = sc[i]")
    # ---- 3. scatter: every (block, cluster) pair into its cluster's bucket
    a("def scatter(chosen, m, cursor, pairs, slot):")
    a("    tid = cuda.threadIdx.x")
    a(f"    hist = cuda.shared.array({K}, int32)")
    a(f"    start = cuda.shared.array({K}, int32)")
    a(f"    for i in range(tid, {K}, {THREADS}):")
    a("        hist[i] = 0")
    a("    cuda.syncthreads()")
    a(f"    e0 = int64(cuda.blockIdx.x) * {_SCATTER_SPAN}")
    a(f"    e1 = min(e0 + {_SCATTER_SPAN}, m)")
    a(f"    for e in range(e0 + tid, e1, {THREADS}):")
    a("        slot[e] = cuda.atomic.add(hist, chosen[e], 1)")
    a("    cuda.syncthreads()")
    a(f"    for i in range(tid, {K}, {THREADS}):")
    a("        if hist[i] > 0:")
    a("            start[i] = cuda.atomic.add(cursor, i, hist[i])")
    a("    cuda.syncthreads()")
    a(f"    for e in range(e0 + tid, e1, {THREADS}):")
    a("        pos = start[chosen[e]] + slot[e]")
    a(f"        pairs[pos] = int32(e // {T})")
    a("        slot[e] = pos")
    # ---- 4. members: cluster c's members staged in shared memory, P pairs of its bucket per thread
    a("def members(y, pairs, starts, pts, n2, order, offsets, res_s, res_o):")
    a("    tid = cuda.threadIdx.x")
    a("    c = cuda.blockIdx.y")
    a("    lo = int64(starts[c])")
    a("    hi = int64(starts[c + 1])")
    a("    mlo = offsets[c]")
    a("    mhi = offsets[c + 1]")
    a(f"    smp = cuda.shared.array({mch * k}, {ftn})")
    a(f"    smn = cuda.shared.array({mch}, {ftn})")
    a(f"    smo = cuda.shared.array({mch}, int32)")
    a(f"    base = lo + int64(cuda.blockIdx.x) * {THREADS * P}")
    a("    while base < hi:")
    for q in range(P):
        a(f"        j{q} = base + {q * THREADS} + tid")
        a(f"        it{q} = pairs[j{q}] if j{q} < hi else int32(0)")
        for t in ks:
            a(f"        y{q}_{t} = y[it{q}, {t}]")
        a(f"        b{q} = BIG")
        a(f"        o{q} = int32({N})")
    a("        m0 = mlo")
    a("        while m0 < mhi:")
    a(f"            cnt = min({mch}, mhi - m0)")
    a("            cuda.syncthreads()")
    a(f"            for i in range(tid, cnt * {k}, {THREADS}):")
    a(f"                smp[i] = pts[m0 * {k} + i]")
    a(f"            for i in range(tid, cnt, {THREADS}):")
    a("                smn[i] = n2[m0 + i]")
    a("                smo[i] = int32(order[m0 + i])")
    a("            cuda.syncthreads()")
    a("            for mm in range(cnt):")
    for t in ks:
        a(f"                p{t} = smp[mm * {k} + {t}]")
    a("                nn = smn[mm]")
    for q in range(P):
        a("                dot = ZERO")
        for t in ks:
            a(f"                dot += y{q}_{t} * p{t}")
        a("                v = nn - TWO * dot")
        a(f"                if v <= b{q}:")
        a("                    oo = smo[mm]")
        a(f"                    if v < b{q} or oo < o{q}:")
        a(f"                        b{q} = v")
        a(f"                        o{q} = oo")
    a(f"            m0 += {mch}")
    for q in range(P):
        a(f"        if j{q} < hi:")
        a(f"            res_s[j{q}] = b{q}")
        a(f"            res_o[j{q}] = o{q}")
    a(f"        base += int64(cuda.gridDim.x) * {THREADS * P}")
    # ---- 5. combine: the lexicographic minimum of a block's T pairs
    a("def combine(res_s, res_o, slot, n, order, out):")
    a("    i = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x")
    a("    while i < n:")
    a("        b = BIG")
    a(f"        bo = int32({N})")
    a(f"        for r in range({T}):")
    a(f"            p = slot[i * {T} + r]")
    a("            v = res_s[p]")
    a("            o = res_o[p]")
    a("            if v < b or (v == b and o < bo):")
    a("                b = v")
    a("                bo = o")
    a(f"        out[i] = int64(bo) if bo < {N} else order[0]")
    a("        i += int64(cuda.gridDim.x) * cuda.blockDim.x")
    npft = np.float64 if fp64 else np.float32
    ns = {"cuda": cuda, "int32": int32, "int64": int64, "float32": float32, "float64": float64,
          "BIG": npft(np.inf), "ZERO": npft(0.0), "TWO": npft(2.0)}
    exec(compile("\n".join(src), f"<fibquant-gpu cluster buckets k={k} K={K} T={T} fp64={fp64}>", "exec"), ns)  # noqa: S102
    i4, i8 = int32, int64
    sigs = {
        "parents": (ft[:, ::1], i8, ft[::1], ft[::1], i4[::1], i4[::1], i8[::1]),
        "scan": (i4[::1], i4[::1], i4[::1]),
        "scatter": (i4[::1], i8, i4[::1], i4[::1], i4[::1]),
        "members": (ft[:, ::1], i4[::1], i4[::1], ft[::1], ft[::1], i8[::1], i8[::1], ft[::1], i4[::1]),
        "combine": (ft[::1], i4[::1], i4[::1], i8, i8[::1], i8[::1]),
    }
    flags = set(EXACT_FASTMATH if fp64 else GPU_FASTMATH)
    out: dict[str, Any] = {}
    for name, sig in sigs.items():
        fn = ns[name]
        out[name] = cuda.jit(fn) if SIMULATOR else cuda.jit(sig, fastmath=flags)(fn)
    out["parents_shared"] = K * (k + 1) * (8 if fp64 else 4)
    return out


class ClusterBuckets:
    """Device workspaces and launches of the bucketed search for one cluster index (used by ``GPUClusteredSearch``).

    Parameters
    ----------
    arrays : tuple of device arrays
        ``(parents, parent_norm2, sorted_points, sorted_norm2, order, offsets)`` of the index, flat,
        in the search precision (``order`` and ``offsets`` int64).
    k, n_clusters, n_codewords : int
        Block size, clusters ``K``, codebook size ``N``.
    fp64 : bool
        Search precision.
    """

    def __init__(self, arrays: tuple[Any, ...], k: int, n_clusters: int, n_codewords: int, fp64: bool) -> None:
        self.arrays = arrays
        self.k, self.n_clusters, self.n_codewords, self.fp64 = k, n_clusters, n_codewords, fp64
        self._dtype = np.float64 if fp64 else np.float32
        self._counts = cuda.to_device(np.zeros(n_clusters, dtype=np.int32))
        self._starts = cuda.device_array(n_clusters + 1, dtype=np.int32)
        self._cursor = cuda.device_array(n_clusters, dtype=np.int32)
        self._space: dict[int, tuple[Any, ...]] = {}

    def _workspace(self, rows: int, top: int) -> tuple[Any, ...]:
        m = rows * top
        have = self._space.get(top)
        if have is None or have[0].shape[0] < m:
            self._space.clear()  # one top at a time: a new size replaces the old buffers
            have = (cuda.device_array(m, dtype=np.int32), cuda.device_array(m, dtype=np.int32),
                    cuda.device_array(m, dtype=np.int32), cuda.device_array(m, dtype=self._dtype),
                    cuda.device_array(m, dtype=np.int32))
            self._space[top] = have
        return have

    def search(self, blocks: Any, top: int, out: Any, err: Any, stream: Any = 0) -> None:
        """Write the codeword of every block of ``blocks (n, k)`` into ``out (n,)`` (int64), NaN/Inf rows into ``err``."""
        n = int(blocks.shape[0])
        kern = bucket_kernels(self.k, self.n_clusters, self.n_codewords, top, self.fp64)
        par, pn2, pts, n2, order, offsets = self.arrays
        shared = kern["parents_shared"]
        codegen.allow_dynamic_shared(kern["parents"], shared)
        rows = min(n, ROUND_BLOCKS)
        chosen, pairs, slot, res_s, res_o = self._workspace(rows, top)
        K = self.n_clusters
        for r0 in range(0, n, ROUND_BLOCKS):
            r1 = min(n, r0 + ROUND_BLOCKS)
            rn = r1 - r0
            y = blocks[r0:r1]
            m = rn * top
            g1 = codegen.grid_blocks(rn, THREADS)
            kern["parents"][g1, THREADS, stream, shared](y, rn, par, pn2, chosen, self._counts, err)
            kern["scan"][1, THREADS, stream](self._counts, self._starts, self._cursor)
            kern["scatter"][-(-m // _SCATTER_SPAN), THREADS, stream](chosen, m, self._cursor, pairs, slot)
            per_tile = THREADS * PAIRS_PER_THREAD
            tiles = max(1, math.ceil(2 * m / K / per_tile))
            kern["members"][(tiles, K), THREADS, stream](y, pairs, self._starts, pts, n2, order, offsets, res_s, res_o)
            g5 = codegen.grid_blocks(rn, THREADS)
            kern["combine"][g5, THREADS, stream](res_s, res_o, slot, rn, order, out[r0:r1])
