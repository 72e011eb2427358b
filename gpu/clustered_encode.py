r"""Clustered top-``T`` nearest-codeword search on the GPU: the kernel of :mod:`fibquant_theory.search.clustered`.

:class:`GPUClusteredSearch` takes a CPU
:class:`~fibquant_theory.search.encoders.ClusteredSearch` (its cluster index)
and encodes blocks ``(n, k)`` that are already rotated and normalised (what
:meth:`FibQuantCodec.encode_indices <fibquant_theory.codecs.fibquant.FibQuantCodec.encode_indices>`
passes to its search) into codeword indices.

Work layouts
------------
The default, ``layout="buckets"``, groups the blocks by the clusters they chose
and stages every cluster's members in shared memory once per tile of blocks
(:mod:`~fibquant_theory.gpu.cluster_buckets`). ``layout="per-block"`` is the
kernel below; both give the same indices.

Per block: ``L`` consecutive lanes of a warp (``lanes``, a power of two up to 32) search
one block. The ``K`` parents and their squared norms sit in shared memory; lane
``s`` scores parents ``s, s + L, ...`` and keeps its own sorted list of the
``T`` best ``(score, c)`` pairs; ``T`` rounds of a lexicographic shuffle
minimum over the ``L`` lanes merge them into the ``T`` best of all parents
(the CPU kernel's set). The members of those clusters (CSR, read from global
memory, consecutive members by consecutive lanes) are split over the lanes the
same way, and a last shuffle minimum of ``(score, codeword index)`` gives the
result, ties to the lowest index as on the CPU.

Precision
---------
``precision="float64"`` computes every score as the CPU kernel does (one sum
over the coordinates in increasing order, a separate multiply and add): it is
compiled with the fastmath flags of :data:`EXACT_FASTMATH` (those of
:data:`fibquant_theory.config.GPU_FASTMATH` that cannot change an addition or a
multiplication: no ``contract``, no ``reassoc``), so its indices are the CPU
kernel's, bit for bit. ``precision="float32"`` uses the float32 copies of the
blocks and the index with all of :data:`~fibquant_theory.config.GPU_FASTMATH`;
it may pick another codeword when two are nearly equidistant.

A block with a NaN or Inf coordinate is reported (the first such row, by an
atomic minimum) and :meth:`GPUClusteredSearch.search` raises ``ValueError``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numba import float32, float64, int64

from fibquant_theory.config import GPU_FASTMATH, GPU_SHARED_OPTIN
from fibquant_theory.search.encoders import ClusteredSearch

from . import codegen
from ._compat import SIMULATOR, cuda
from .cluster_buckets import EXACT_FASTMATH, MAX_TOP, ClusterBuckets
from .device import THREADS, shfl_xor

__all__ = ["EXACT_FASTMATH", "LAYOUTS", "PRECISIONS", "GPUClusteredSearch", "clustered_kernel", "clustered_shared_bytes"]

#: Work layouts of :class:`GPUClusteredSearch`: bucketed by cluster (:mod:`~fibquant_theory.gpu.cluster_buckets`), per block.
LAYOUTS = ("buckets", "per-block")
#: Search precisions of :class:`GPUClusteredSearch`.
PRECISIONS = ("float64", "float32")
#: The error flag's value when no row was bad (the largest int64).
_NO_ERROR = np.iinfo(np.int64).max


def clustered_shared_bytes(k: int, n_clusters: int, fp64: bool) -> int:
    """Dynamic shared memory of :func:`clustered_kernel`: the parents and their squared norms.

    Parameters
    ----------
    k, n_clusters : int
        Block size and number of clusters ``K``.
    fp64 : bool
        Float64 (8-byte words) or float32.

    Returns
    -------
    int
        Bytes per block.
    """
    return n_clusters * (k + 1) * (8 if fp64 else 4)


@lru_cache(maxsize=None)
def clustered_kernel(k: int, n_clusters: int, n_codewords: int, top: int, lanes: int, fp64: bool) -> tuple[Any, Any]:
    """Kernel ``(y, n, parents, parent_norm2, points, norm2, order, offsets, out i64[::1], err i64[::1])``.

    ``y`` is ``(n, k)`` in the search precision, ``parents (K k,)`` and
    ``parent_norm2 (K,)``, the members ``points (M k,)``, ``norm2 (M,)``,
    ``order (M,)`` and ``offsets (K + 1,)`` as in
    :class:`~fibquant_theory.search.clustered.ClusterIndex`. ``out[i]``
    receives the codeword of block ``i``, ``err[0]`` (atomic min) the first
    block with a NaN or Inf. Launched with :func:`clustered_shared_bytes` of
    dynamic shared memory and ``THREADS`` threads per block.

    Parameters
    ----------
    k, n_clusters, n_codewords : int
        Block size, clusters ``K`` and codebook size ``N``.
    top : int
        Clusters searched ``T``, ``1 <= T <= K``.
    lanes : int
        Lanes per block ``L``: 1, 2, 4, 8, 16 or 32.
    fp64 : bool
        Float64 (the CPU kernel's arithmetic) or float32.

    Returns
    -------
    tuple
        ``(kernel, grid_fn)``: ``grid_fn(n)`` is the number of blocks for ``n`` blocks of ``k``.
    """
    if lanes not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"lanes must be a power of two between 1 and 32, got {lanes}")
    if not 1 <= top <= n_clusters:
        raise ValueError(f"top must be in [1, {n_clusters}], got {top}")
    ft = float64 if fp64 else float32
    npft = np.float64 if fp64 else np.float32
    kk = n_clusters * k
    ncl = n_clusters
    ncw = n_codewords
    groups = THREADS // lanes  # blocks of k searched per thread block at a time
    big = npft(np.inf)
    zero = npft(0.0)
    two = npft(2.0)
    scratch_n = THREADS if SIMULATOR else 1
    sig = (ft[:, ::1], int64, ft[::1], ft[::1], ft[::1], ft[::1], int64[::1], int64[::1], int64[::1], int64[::1])

    def body(y, n, parents, parent_norm2, points, norm2, order, offsets, out, err):  # pragma: no cover - compiled
        tid = cuda.threadIdx.x
        sub = tid % lanes
        grp = tid // lanes
        sh = cuda.shared.array(0, ft)  # [parents (K k) | parent norms (K)]
        scratch = cuda.shared.array(scratch_n, float64)
        for i in range(tid, kk, THREADS):
            sh[i] = parents[i]
        for i in range(tid, ncl, THREADS):
            sh[kk + i] = parent_norm2[i]
        cuda.syncthreads()
        ls = cuda.local.array(top, ft)
        lid = cuda.local.array(top, int64)
        chosen = cuda.local.array(top, int64)
        yb = cuda.local.array(k, ft)
        base = int64(cuda.blockIdx.x) * groups
        stride = int64(cuda.gridDim.x) * groups
        while base < n:  # block-uniform: every lane takes part in every shuffle
            item = base + grp
            active = item < n
            src = item if active else int64(0)
            ss = zero
            for t in range(k):
                yb[t] = y[src, t]
                ss += yb[t] * yb[t]
            if not (ss < big):  # NaN or Inf in the block
                if active:
                    cuda.atomic.min(err, 0, item)
                for t in range(k):
                    yb[t] = zero
            # ---- this lane's T best parents, lexicographic (score, c)
            filled = 0
            for c in range(sub, ncl, lanes):
                dot = zero
                for t in range(k):
                    dot += yb[t] * sh[c * k + t]
                score = sh[kk + c] - two * dot
                if filled < top:
                    pos = filled
                    filled += 1
                elif score < ls[top - 1]:
                    pos = top - 1
                else:
                    continue
                while pos > 0 and ls[pos - 1] > score:
                    ls[pos] = ls[pos - 1]
                    lid[pos] = lid[pos - 1]
                    pos -= 1
                ls[pos] = score
                lid[pos] = c
            # ---- merge the lanes' lists: T rounds of a lexicographic minimum of the list heads
            h = 0
            for r in range(top):
                hs = ls[h] if h < filled else big
                hc = lid[h] if h < filled else int64(ncl)
                msk = 1
                while msk < lanes:
                    os_ = shfl_xor(scratch, tid, hs, msk)
                    oc = int64(shfl_xor(scratch, tid, hc, msk))
                    if os_ < hs or (os_ == hs and oc < hc):
                        hs = os_
                        hc = oc
                    msk *= 2
                chosen[r] = hc
                if h < filled and lid[h] == hc:
                    h += 1
            # ---- the members of the chosen clusters
            best = big
            best_o = int64(ncw)
            for r in range(top):
                c = chosen[r]
                for p in range(offsets[c] + sub, offsets[c + 1], lanes):
                    dot = zero
                    for t in range(k):
                        dot += yb[t] * points[p * k + t]
                    score = norm2[p] - two * dot
                    if score <= best:  # the codeword index is read only for a candidate that may win
                        o = order[p]
                        if score < best or o < best_o:
                            best = score
                            best_o = o
            msk = 1
            while msk < lanes:
                ob = shfl_xor(scratch, tid, best, msk)
                oo = int64(shfl_xor(scratch, tid, best_o, msk))
                if ob < best or (ob == best and oo < best_o):
                    best = ob
                    best_o = oo
                msk *= 2
            if active and sub == 0:
                out[item] = best_o if best_o < ncw else int64(0)
            base += stride

    label = f"clustered k={k} K={n_clusters} N={n_codewords} T={top} L={lanes} fp64={fp64}"
    flags = EXACT_FASTMATH if fp64 else GPU_FASTMATH
    kern = cuda.jit(body) if SIMULATOR else cuda.jit(sig, fastmath=set(flags))(body)
    codegen.COMPILED[label] = kern
    return kern, (lambda n: codegen.grid_blocks(n, groups))


class GPUClusteredSearch:
    """The clustered top-``T`` search of a CPU :class:`~fibquant_theory.search.encoders.ClusteredSearch` on the GPU.

    Parameters
    ----------
    search : ClusteredSearch
        The CPU search: its cluster index is copied to the device, its ``top`` is the default.
    precision : {"float64", "float32"}
        Search precision (see the module docstring); float64 gives the CPU kernel's indices.
    lanes : int
        Lanes per block ``L`` of the per-block layout (1, 2, 4, 8, 16 or 32).
    layout : {"buckets", "per-block"}
        ``"buckets"`` (:mod:`~fibquant_theory.gpu.cluster_buckets`): blocks are grouped by
        the clusters they chose and every cluster's members are staged in shared memory once
        per tile of blocks (``top`` at most :data:`~fibquant_theory.gpu.cluster_buckets.MAX_TOP`;
        a larger ``top`` runs per block). ``"per-block"``: the ``L`` lanes of a block read
        its clusters' members from global memory. Both give the same indices.

    Attributes
    ----------
    top : int
        Clusters searched ``T``.
    k, n_clusters, n_codewords : int
        Block size, clusters ``K``, codebook size ``N``.
    """

    def __init__(self, search: ClusteredSearch, precision: str = "float64", lanes: int = 8, layout: str = "buckets") -> None:
        if not isinstance(search, ClusteredSearch):
            raise TypeError(f"search must be a ClusteredSearch, got {type(search).__name__}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if lanes not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"lanes must be a power of two between 1 and 32, got {lanes!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        ix = search.index
        self.layout = layout
        self.precision = precision
        self.lanes = int(lanes)
        self.top = search.top
        self.k = ix.k
        self.n_clusters = ix.n_clusters
        self.n_codewords = ix.n_codewords
        self._dtype = np.float64 if precision == "float64" else np.float32
        self._shared = clustered_shared_bytes(self.k, self.n_clusters, precision == "float64")
        if self._shared > GPU_SHARED_OPTIN:
            raise ValueError(f"K={self.n_clusters} parents of k={self.k} need {self._shared} bytes of shared memory "
                             f"(at most {GPU_SHARED_OPTIN}); use fewer clusters")
        self._arrays = tuple(
            cuda.to_device(np.ascontiguousarray(a.reshape(-1), dtype=dt))
            for a, dt in ((ix.parents, self._dtype), (ix.parent_norm2, self._dtype), (ix.sorted_points, self._dtype),
                          (ix.sorted_norm2, self._dtype), (ix.order, np.int64), (ix.offsets, np.int64))
        )
        self._err = cuda.to_device(np.full(1, _NO_ERROR, dtype=np.int64))
        self._buckets = (ClusterBuckets(self._arrays, self.k, self.n_clusters, self.n_codewords, precision == "float64")
                         if layout == "buckets" else None)

    def __repr__(self) -> str:
        return (f"GPUClusteredSearch(N={self.n_codewords}, k={self.k}, clusters={self.n_clusters}, top={self.top}, "
                f"lanes={self.lanes}, precision={self.precision!r}, layout={self.layout!r})")

    def _blocks(self, y: Any) -> Any:
        if hasattr(y, "copy_to_host") or hasattr(y, "__cuda_array_interface__"):
            arr = y if hasattr(y, "copy_to_host") else cuda.as_cuda_array(y)
            if arr.ndim != 2 or arr.shape[1] != self.k or np.dtype(arr.dtype) != self._dtype or not arr.is_c_contiguous():
                raise ValueError(f"device blocks must be C-contiguous {np.dtype(self._dtype).name} of shape (n, {self.k}), "
                                 f"got {np.dtype(arr.dtype).name} {arr.shape}")
            return arr
        host = np.asarray(y)
        if host.ndim != 2 or host.shape[1] != self.k or not np.issubdtype(host.dtype, np.floating):
            raise ValueError(f"blocks must be a real floating array of shape (n, {self.k}), got {host.dtype} {host.shape}")
        return cuda.to_device(np.ascontiguousarray(host, dtype=self._dtype))

    def search(self, y: Any, top: int | None = None, *, to_host: bool = True) -> Any:
        """Codeword index of every block.

        Parameters
        ----------
        y : array_like or device array
            Blocks, shape ``(n, k)``: a NumPy array (copied in the search
            precision) or a C-contiguous device array (Numba, or anything with
            ``__cuda_array_interface__``, e.g. a torch CUDA tensor) of that precision.
        top : int, optional
            Clusters searched, ``1 <= top <= K`` (default: the CPU search's ``top``).
        to_host : bool
            Return a NumPy array (else the int64 device array, without a synchronisation).

        Returns
        -------
        numpy.ndarray or device array
            Indices, shape ``(n,)``, int64 in ``[0, N)``.

        Raises
        ------
        ValueError
            For a wrong shape or dtype, ``top`` out of range, or (with ``to_host``) a block with NaN or Inf.
        """
        top = self.top if top is None else top
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= self.n_clusters:
            raise ValueError(f"top must be an integer in [1, {self.n_clusters}], got {top!r}")
        blocks = self._blocks(y)
        n = int(blocks.shape[0])
        out = cuda.device_array(n, dtype=np.int64)
        if n == 0:
            return out.copy_to_host() if to_host else out
        if to_host:
            self._err.copy_to_device(np.full(1, _NO_ERROR, dtype=np.int64))
        if self._buckets is not None and top <= MAX_TOP:
            self._buckets.search(blocks, int(top), out, self._err)
        else:
            kern, grid = clustered_kernel(self.k, self.n_clusters, self.n_codewords, int(top), self.lanes,
                                          self.precision == "float64")
            codegen.allow_dynamic_shared(kern, self._shared)
            kern[grid(n), THREADS, 0, self._shared](blocks, n, *self._arrays, out, self._err)
        if not to_host:
            return out
        bad = int(self._err.copy_to_host()[0])
        if bad != _NO_ERROR:
            raise ValueError(f"blocks has NaN or Inf (first bad row {bad})")
        return out.copy_to_host()
