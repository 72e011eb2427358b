"""GPU (Numba-CUDA) codecs for FibQuant, installed as :mod:`fibquant_theory.gpu`.

* :class:`~fibquant_theory.gpu.codec.GPUFibQuantCodec`: encode, decode and
  decode-attention from codes on the GPU, bit-compatible with the CPU codec
  (``"fixed"`` packing); PyTorch CUDA tensors in and out without host copies.
  Its kernel choices and tuning are a frozen
  :class:`~fibquant_theory.gpu.options.GPUOptions`.
* The kernels, generated per configuration, one module each:
  :mod:`~fibquant_theory.gpu.decode` (chunked Hadamard and dense decode),
  :mod:`~fibquant_theory.gpu.column_decode` (the Hadamard decode without shuffles,
  ``decode_layout="columns"``), :mod:`~fibquant_theory.gpu.encode` and
  :mod:`~fibquant_theory.gpu.attention` (decode-attention and its shared-memory plan);
  their shared parts: :mod:`~fibquant_theory.gpu.device` (device helpers, format
  codes) and :mod:`~fibquant_theory.gpu.codegen` (source generation, compilation,
  launch helpers). Their tunables are in the GPU section of :mod:`fibquant_theory.config`.
* ``python -m fibquant_theory.gpu.bench``: the benchmark table (decode bandwidth
  against a device copy, encode throughput, decode-attention against fp16 SDPA).

Importing this package does not import ``numba.cuda``; the first access to
:class:`GPUFibQuantCodec` does (through :mod:`fibquant_theory.gpu._compat`,
which makes numba-cuda importable under NumPy 2.5). Set
``NUMBA_ENABLE_CUDASIM=1`` before that to run the kernels in the simulator.
"""

from __future__ import annotations

from typing import Any

from .options import GPUOptions

__all__ = ["GPUFibQuantCodec", "GPUOptions"]


def __getattr__(name: str) -> Any:
    if name == "GPUFibQuantCodec":
        from .codec import GPUFibQuantCodec

        return GPUFibQuantCodec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
