r"""Direct driver launches of the compiled kernels: the host cost of a call without Numba's argument marshalling.

A Numba-CUDA launch (``kern[grid, block, stream, shared](*args)``) re-derives,
for every call and every argument, the device array behind it, its shape,
strides and item size, and converts each to a driver parameter; with PyTorch
tensors (``cuda.as_cuda_array`` per argument) that costs 0.1–0.4 ms per call,
more than the decode-attention kernel itself. :class:`DirectLaunch` keeps the
kernel's flattened parameter block (Numba's ABI: an array of ``ndim`` dimensions
is ``meminfo, parent, nitems, itemsize, data, shape[ndim], strides[ndim]``, a
scalar is its C type) in ctypes storage built once, so that a call only
rewrites the data pointers and scalars that changed and then calls
``cuLaunchKernel`` of ``libcuda`` through ctypes.

The same module holds the few other driver calls of the hot paths (stream-ordered
copies of the error flags, stream synchronisation), so that ``check=True`` reads
the flags on the stream the kernel ran on.

Nothing here exists in the CUDA simulator: there the codec launches through
Numba (:data:`available` is False).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from numba import types

from ._compat import SIMULATOR

__all__ = ["DirectLaunch", "available", "copy_from_device", "copy_to_device", "param_layout", "stream_handle", "synchronize"]

_MAX_DYNAMIC_SHARED = 8  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES


@lru_cache(maxsize=1)
def _libcuda() -> Any:
    """``libcuda.so.1`` with the argument types of the calls used here (None where it cannot be loaded)."""
    if SIMULATOR:
        return None
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:  # pragma: no cover - no driver
        return None
    vp, u, sz = ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t
    lib.cuLaunchKernel.argtypes = [vp, u, u, u, u, u, u, u, vp, vp, vp]
    lib.cuLaunchKernel.restype = ctypes.c_int
    lib.cuKernelGetFunction.argtypes = [ctypes.POINTER(vp), vp]
    lib.cuKernelGetFunction.restype = ctypes.c_int
    lib.cuFuncSetAttribute.argtypes = [vp, ctypes.c_int, ctypes.c_int]
    lib.cuFuncSetAttribute.restype = ctypes.c_int
    lib.cuMemcpyHtoDAsync_v2.argtypes = [ctypes.c_uint64, vp, sz, vp]
    lib.cuMemcpyHtoDAsync_v2.restype = ctypes.c_int
    lib.cuMemcpyDtoHAsync_v2.argtypes = [vp, ctypes.c_uint64, sz, vp]
    lib.cuMemcpyDtoHAsync_v2.restype = ctypes.c_int
    lib.cuStreamSynchronize.argtypes = [vp]
    lib.cuStreamSynchronize.restype = ctypes.c_int
    return lib


def available() -> bool:
    """True when kernels can be launched through the driver directly (a real GPU, not the simulator)."""
    return _libcuda() is not None


def _check(code: int, what: str) -> None:
    if code != 0:
        raise RuntimeError(f"{what} failed with CUDA driver error {code}")


def param_layout(argument_types: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """The flattened kernel parameters of Numba's ABI, per argument: ``(first slot, ctypes types)``.

    Parameters
    ----------
    argument_types : sequence of numba types
        The kernel's argument types (``overload.argument_types``).

    Returns
    -------
    list of tuple
        For argument ``i``: the index of its first parameter slot and the ctypes
        type of each of its slots (an array of ``ndim`` dimensions has
        ``5 + 2 ndim`` pointer-sized slots).

    Raises
    ------
    TypeError
        An argument type this module does not pass (records, tuples, complex).
    """
    scalars = {
        types.int8: ctypes.c_int8, types.int16: ctypes.c_int16, types.int32: ctypes.c_int32, types.int64: ctypes.c_int64,
        types.uint8: ctypes.c_uint8, types.uint16: ctypes.c_uint16, types.uint32: ctypes.c_uint32,
        types.uint64: ctypes.c_uint64, types.float32: ctypes.c_float, types.float64: ctypes.c_double,
        types.float16: ctypes.c_uint16,
    }
    out: list[tuple[int, list[Any]]] = []
    slot = 0
    for ty in argument_types:
        if isinstance(ty, types.Array):
            cts = [ctypes.c_int64] * (5 + 2 * ty.ndim)
        elif ty in scalars:
            cts = [scalars[ty]]
        else:
            raise TypeError(f"kernel argument type {ty} is not supported by the direct launch")
        out.append((slot, cts))
        slot += len(cts)
    return out


class DirectLaunch:
    """One compiled kernel with its parameter block in ctypes storage, launched with ``cuLaunchKernel``.

    Parameters
    ----------
    dispatcher : numba.cuda dispatcher
        A kernel compiled for exactly one signature (the kernel factories compile eagerly).
    shared_bytes : int
        Dynamic shared memory of every launch (the kernel is opted in to it once here).

    Raises
    ------
    RuntimeError
        No driver (simulator), or a driver call failed.

    Notes
    -----
    An instance is mutable state (the parameter block): use one per thread.
    """

    def __init__(self, dispatcher: Any, shared_bytes: int = 0) -> None:
        lib = _libcuda()
        if lib is None:
            raise RuntimeError("direct launches need a CUDA driver (not the simulator)")
        (overload,) = dispatcher.overloads.values()
        kernel = overload._codelibrary.get_cufunc().handle  # a CUkernel (cuda.core), valid in every context
        func = ctypes.c_void_p()
        _check(lib.cuKernelGetFunction(ctypes.byref(func), ctypes.c_void_p(int(kernel))), "cuKernelGetFunction")
        self._lib = lib
        self._func = func
        self.shared_bytes = int(shared_bytes)
        if self.shared_bytes > 48 * 1024:
            _check(lib.cuFuncSetAttribute(func, _MAX_DYNAMIC_SHARED, self.shared_bytes), "cuFuncSetAttribute")
        self._layout = param_layout(overload.argument_types)
        self._ndim = [len(cts) and (len(cts) - 5) // 2 for _, cts in self._layout]
        self._is_array = [isinstance(t, types.Array) for t in overload.argument_types]
        self._itemsize = [t.dtype.bitwidth // 8 if isinstance(t, types.Array) else 0 for t in overload.argument_types]
        self._slots = [ct() for _, cts in self._layout for ct in cts]
        self._params = (ctypes.c_void_p * max(1, len(self._slots)))(*[ctypes.addressof(s) for s in self._slots])

    def set_array(self, i: int, ptr: int, shape: Sequence[int]) -> None:
        """Argument ``i`` := the C-contiguous device array at ``ptr`` of ``shape`` (its item size is the kernel's)."""
        first, _ = self._layout[i]
        s = self._slots
        item = self._itemsize[i]
        s[first + 2].value = math.prod(shape)
        s[first + 3].value = item
        s[first + 4].value = int(ptr)
        nd = len(shape)
        stride = item
        for j in range(nd - 1, -1, -1):
            s[first + 5 + j].value = int(shape[j])
            s[first + 5 + nd + j].value = stride
            stride *= int(shape[j])

    def set_pointer(self, i: int, ptr: int) -> None:
        """Only the data pointer of array argument ``i`` (its shape unchanged)."""
        self._slots[self._layout[i][0] + 4].value = int(ptr)

    def set_scalar(self, i: int, value: Any) -> None:
        """Scalar argument ``i`` := ``value`` (a float16 scalar is given as its bit pattern)."""
        self._slots[self._layout[i][0]].value = value

    def set_args(self, args: Sequence[Any]) -> None:
        """Every argument: arrays as ``(ptr, shape)`` pairs or objects with ``__cuda_array_interface__``, scalars as numbers."""
        for i, a in enumerate(args):
            if self._is_array[i]:
                if hasattr(a, "__cuda_array_interface__"):
                    cai = a.__cuda_array_interface__
                    a = (cai["data"][0], cai["shape"])
                self.set_array(i, a[0], a[1])
            else:
                self.set_scalar(i, a)

    def launch(self, grid: int | tuple[int, ...], block: int, stream: int = 0) -> None:
        """``cuLaunchKernel`` with the current parameter block on the stream handle ``stream`` (0: the legacy default stream)."""
        g = (grid, 1, 1) if isinstance(grid, int) else tuple(grid) + (1,) * (3 - len(grid))
        code = self._lib.cuLaunchKernel(
            self._func, g[0], g[1], g[2], block, 1, 1, self.shared_bytes, stream or None, self._params, None
        )
        if code:
            _check(code, "cuLaunchKernel")


def _current_torch_stream() -> int:
    """Raw handle of torch's current stream on the current device (the accessor Triton uses: unlike
    ``torch.cuda.current_stream().cuda_stream`` it builds no Stream object)."""
    import torch

    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return int(raw(torch.cuda.current_device()))
    return int(torch.cuda.current_stream().cuda_stream)  # pragma: no cover - older torch


def stream_handle(stream: Any, torch_like: bool) -> int:
    """The ``CUstream`` handle (an int) of ``stream``: None means torch's current stream for torch inputs, else 0.

    Parameters
    ----------
    stream : None, int, numba stream or torch.cuda.Stream
        What the caller passed.
    torch_like : bool
        The inputs are torch tensors (then None is ``torch.cuda.current_stream()``).

    Returns
    -------
    int
        The raw handle (0 is the legacy default stream).
    """
    if stream is None:
        if torch_like:
            return _current_torch_stream()
        return 0
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
        return int(stream.cuda_stream)
    handle = getattr(stream, "handle", None)  # numba stream
    if handle is not None:
        value = getattr(handle, "value", handle)
        return int(value or 0)
    raise TypeError(f"stream must be None, an int handle, a numba stream or a torch.cuda.Stream, got {type(stream).__name__}")


def copy_to_device(ptr: int, host: Any, stream: int) -> None:
    """Stream-ordered copy of the host buffer ``host`` (a ctypes array) to device address ``ptr``."""
    _check(_libcuda().cuMemcpyHtoDAsync_v2(ptr, ctypes.addressof(host), ctypes.sizeof(host), stream or None), "cuMemcpyHtoDAsync")


def copy_from_device(host: Any, ptr: int, stream: int) -> None:
    """Stream-ordered copy from device address ``ptr`` into ``host`` (a ctypes array), then wait for the stream."""
    lib = _libcuda()
    _check(lib.cuMemcpyDtoHAsync_v2(ctypes.addressof(host), ptr, ctypes.sizeof(host), stream or None), "cuMemcpyDtoHAsync")
    synchronize(stream)


def synchronize(stream: int) -> None:
    """Wait for the work queued on stream handle ``stream``."""
    _check(_libcuda().cuStreamSynchronize(stream or None), "cuStreamSynchronize")
