r"""Source generation, compilation and launch helpers of the FibQuant GPU kernels.

Every kernel is built by a factory for one configuration (dimension, block
size, codebook size, header and output formats, rotation, search, precision):
the configuration is baked in as compile-time constants, so loops over a
vector's coordinates unroll and per-lane arrays stay in registers. Factories
are cached. The decode and decode-attention kernels are generated as Python
source with every per-lane loop unrolled into scalar variables, so nothing is
indexed at run time in registers (no local memory) and record fields are read
with constant shifts (:func:`record_loader`, :func:`loader32`, :func:`field`).
Array indices in the hot loops are cast to ``uint64``: with a signed index
numba adds 64-bit negative-index wraparound arithmetic to every access
(removing it, with a branch-free fp16 header read and fewer load guards, cut the
executed instructions of decode-attention 1.6x; see research/gpu-notes.md).

The packed layout is the CPU one, bit for bit (:mod:`fibquant_theory.codecs.packing`,
``"fixed"`` mode): record ``i`` is ``[header | m indices of w bits]`` starting
at bit ``i * R``, LSB first.

Every kernel is compiled with the fastmath flags
:data:`fibquant_theory.config.GPU_FASTMATH` and registered in :data:`COMPILED`
(see :func:`kernel_resources`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from numba import float32, float64, int64, types, uint16

from fibquant_theory.config import GPU_FASTMATH, GPU_MAX_GRID, GPU_SHARED_DEFAULT

from ._compat import SIMULATOR, cuda
from .device import THREADS, bf16_bits, header_value, read_field, shfl_xor, to_f16

__all__ = [
    "COMPILED",
    "FASTMATH",
    "allow_dynamic_shared",
    "compile_kernel",
    "field",
    "grid_blocks",
    "jit_kernel",
    "kernel_resources",
    "lane_layout",
    "loader32",
    "loader32_parts",
    "namespace",
    "record_granularity",
    "record_loader",
    "tree_sum",
    "vector_stores",
]

#: Named fastmath flags of every kernel (:data:`fibquant_theory.config.GPU_FASTMATH`).
FASTMATH: frozenset[str] = GPU_FASTMATH

#: Compiled kernels by a description of their configuration (see :func:`kernel_resources`).
COMPILED: dict[str, Any] = {}


# ----------------------------------------------------------------------------- layout
def lane_layout(d: int, per_lane: int = 8) -> tuple[int, int]:
    """Lanes per vector ``L`` and coordinates per lane ``V = d / L`` for dimension ``d``.

    Parameters
    ----------
    d : int
        Vector dimension.
    per_lane : int
        Coordinates a lane should hold (about).

    Returns
    -------
    tuple of int
        ``(L, V)``: ``L`` is the largest power of two dividing ``d`` that is at most
        ``min(32, max(1, d // per_lane))``.
    """
    cap = min(32, max(1, d // per_lane))
    lanes = 1
    while lanes * 2 <= cap and d % (lanes * 2) == 0:
        lanes *= 2
    return lanes, d // lanes


def grid_blocks(n_units: int, per_block: int) -> int:
    """Blocks of a grid-stride launch over ``n_units`` work units, ``per_block`` a block (at most ``GPU_MAX_GRID``)."""
    return max(1, min(-(-n_units // per_block), GPU_MAX_GRID))


def record_granularity(rbits: int) -> int:
    """Bytes per load (1, 2 or 4) when reading whole records of ``rbits`` bits: every record start is aligned to it."""
    for g in (4, 2):
        if rbits % (8 * g) == 0:
            return g
    return 1


# ----------------------------------------------------------------------------- generated record reads
def record_loader(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> tuple[list[str], int]:
    """Source lines loading record ``rec`` of ``buf`` into 32-bit words ``{prefix}s0..`` (shifted to bit 0).

    ``buf`` is read in elements of ``record_granularity(rbits)`` bytes. Only the
    elements holding the first ``upto`` bits of the record are read (all when
    ``upto == 0``). Returns ``(lines, number of words)``.
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


def field(prefix: str, p: int, width: int) -> str:
    """Source expression of the ``width``-bit field at bit ``p`` of the loaded words ``{prefix}s0..``."""
    j, o = divmod(p, 32)
    mask = (1 << width) - 1
    if o + width <= 32:
        return f"(({prefix}s{j} >> {o}) & {mask})"
    return f"((({prefix}s{j} >> {o}) | ({prefix}s{j + 1} << {32 - o})) & {mask})"


def tree_sum(terms: list[str]) -> str:
    """``terms`` summed as a balanced tree (dependency depth log2 of the count, not the count)."""
    while len(terms) > 1:
        terms = [f"({terms[i]} + {terms[i + 1]})" if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def loader32(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> list[str]:
    """Source lines loading record ``rec`` of the 32-bit word stream ``buf`` into words ``{prefix}s0..`` (shifted to bit 0).

    Record ``i`` starts at bit ``i R``: its offset in a word is a multiple of ``gcd(R, 32)``, so
    ``ceil((32 - gcd + need) / 32)`` aligned loads hold the first ``need`` bits (``upto``, or the
    whole record); words past the end of the stream read as 0. Byte-aligned offsets are shifted
    with ``prmt`` (one instruction per word).
    """
    loads, align = loader32_parts(prefix, buf, rec, rbits, indent, upto)
    return loads + align


def loader32_parts(prefix: str, buf: str, rec: str, rbits: int, indent: str, upto: int = 0) -> tuple[list[str], list[str]]:
    """:func:`loader32` as ``(loads, align)``.

    The loads define ``{prefix}p`` and ``{prefix}w0..``, which are all that
    ``align`` reads, so a kernel can issue the loads of its next record before
    aligning the current one (with the words copied to another prefix in between).
    """
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


# ----------------------------------------------------------------------------- 16-byte stores
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
def vector_stores() -> tuple[Any, Any, Any] | None:
    """Foreign 16-byte store helpers ``(f16, bf16, f32)`` (8 values per call), or None where unavailable (simulator, no NVRTC)."""
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


# ----------------------------------------------------------------------------- compilation
def namespace() -> dict[str, Any]:
    """Globals of the generated kernel sources common to every kernel (the kernel modules add their own).

    The sources call the device helpers of :mod:`~fibquant_theory.gpu.device` by
    the private names bound here (``_xor``, ``_rd``, ``_header_value``, ...).
    """
    return {
        "cuda": cuda, "math": math, "np": np, "float32": float32, "float64": float64, "int64": int64, "uint64": types.uint64,
        "uint16": uint16, "_xor": shfl_xor, "_rd": read_field, "_header_value": header_value, "_to_f16": to_f16,
        "_bf16_bits": bf16_bits, "THREADS": THREADS,
    }


def jit_kernel(fn: Callable[..., Any], sig: tuple[Any, ...], label: str, max_registers: int | None = None) -> Any:
    """Compile the Python kernel ``fn`` (eagerly for ``sig``, with :data:`FASTMATH`, on a GPU) and register it as ``label``.

    Parameters
    ----------
    fn : callable
        The kernel body.
    sig : tuple
        Numba argument types (ignored by the simulator, which compiles lazily).
    label : str
        Key of the kernel in :data:`COMPILED`.
    max_registers : int, optional
        Register cap per thread (None: the compiler's choice).

    Returns
    -------
    numba.cuda dispatcher
        The compiled kernel.
    """
    opts = {} if max_registers is None else {"max_registers": max_registers}
    kern = cuda.jit(fn) if SIMULATOR else cuda.jit(sig, fastmath=set(FASTMATH), **opts)(fn)
    COMPILED[label] = kern
    return kern


def compile_kernel(
    src: str, name: str, env: dict[str, Any], sig: tuple[Any, ...] | None, label: str = "",
    max_registers: int | None = None,
) -> Any:
    """Exec generated kernel source and compile its function ``name`` with :func:`jit_kernel`.

    The kernel modules call this through the module (``codegen.compile_kernel``), so
    a tool can replace it to capture the sources instead (research/gpu_static.py does).

    Parameters
    ----------
    src : str
        Python source defining the kernel function ``name``.
    name : str
        Name of the kernel function in ``src``.
    env : dict
        Globals of the source (:func:`namespace` plus the kernel's own).
    sig : tuple or None
        Numba argument types.
    label : str
        Key in :data:`COMPILED` (default ``name``).
    max_registers : int, optional
        Register cap per thread.

    Returns
    -------
    numba.cuda dispatcher
        The compiled kernel.
    """
    ns = dict(env)
    exec(compile(src, f"<fibquant-gpu {name}>", "exec"), ns)  # noqa: S102 - our own generated code
    return jit_kernel(ns[name], sig, label or name, max_registers)


def kernel_resources() -> list[dict[str, object]]:
    """Registers, local (spill) memory and static shared memory per thread/block of every compiled kernel.

    Returns
    -------
    list of dict
        One row per kernel of :data:`COMPILED` (none in the simulator).
    """
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


# ----------------------------------------------------------------------------- launch
_SHARED_OPTED: dict[int, int] = {}


def allow_dynamic_shared(kern: Any, nbytes: int) -> None:
    """Let ``kern`` (compiled) launch with ``nbytes`` of dynamic shared memory (opt-in above 48 KiB, once per kernel)."""
    if SIMULATOR or nbytes <= max(GPU_SHARED_DEFAULT, _SHARED_OPTED.get(id(kern), 0)):
        return
    from numba.cuda.cudadrv import driver as drv

    attr = drv.binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    for ov in kern.overloads.values():
        f = ov._codelibrary.get_cufunc()
        drv.driver.cuKernelSetAttribute(attr, int(nbytes), f.handle, f.device.id)
    _SHARED_OPTED[id(kern)] = int(nbytes)
