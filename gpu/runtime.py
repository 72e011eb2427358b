"""Launching the codec's kernels and reading their error flags: cached launches, streams, ``check=`` modes.

:class:`KernelRunner` is the part of :class:`~fibquant_theory.gpu.codec.GPUFibQuantCodec`
that is not about FibQuant: it keeps one :class:`~fibquant_theory.gpu.launch.DirectLaunch`
per kernel configuration (its constant arguments written once), launches on the
caller's stream (torch's current stream for torch inputs), and owns two error
buffers per operation:

* with ``check=True`` the operation's *checked* buffer is reset, the kernel
  runs, and the flags are read back on the same stream (one synchronisation);
* with ``check=False`` the kernel records into the *deferred* buffer, which
  only :meth:`KernelRunner.check_errors` reads (and resets): no host work per
  call, so the call can be captured in a CUDA graph, and nothing is lost.

The kernels record the smallest bad row or record index with an atomic min, so a
flag is "no error" exactly when it still holds :data:`NO_ERROR`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import launch as drv
from ._compat import SIMULATOR, cuda
from .device import THREADS

__all__ = ["NO_ERROR", "OPERATIONS", "KernelRunner"]

#: The value of an error flag that no kernel has written (the largest int64).
NO_ERROR: int = np.iinfo(np.int64).max
#: Operations with their own error flags.
OPERATIONS = ("encode", "decode", "attention")


class KernelRunner:
    """Cached kernel launches and the per-operation error flags of one codec.

    Parameters
    ----------
    direct : bool
        Launch through the driver (:class:`~fibquant_theory.gpu.launch.DirectLaunch`) when one
        is available; else through Numba's dispatcher.
    """

    def __init__(self, direct: bool) -> None:
        self._direct = bool(direct) and drv.available()
        fresh = np.full(2, NO_ERROR, dtype=np.int64)
        self._flags = {(op, checked): cuda.to_device(fresh) for op in OPERATIONS for checked in (True, False)}
        self._flag_ptr = {key: (0 if SIMULATOR else int(a.__cuda_array_interface__["data"][0])) for key, a in self._flags.items()}
        self._reset_host = (ctypes.c_int64 * 2)(NO_ERROR, NO_ERROR)
        self._read_host = (ctypes.c_int64 * 2)()
        self._launches: dict[Any, Any] = {}

    @property
    def direct(self) -> bool:
        """True when kernels are launched through the driver directly."""
        return self._direct

    def flag_array(self, op: str, check: bool) -> Any:
        """The error buffer (int64 ``[2]`` device array) a kernel of ``op`` writes in mode ``check``."""
        return self._flags[(op, bool(check))]

    def run(
        self, key: Any, make: Callable[[], tuple[Any, int]], args: Sequence[Any], varying: Sequence[int], grid: Any,
        stream: int, op: str, check: bool, err_index: int,
    ) -> np.ndarray | None:
        """Launch the kernel of configuration ``key`` and, with ``check``, return its error flags.

        Parameters
        ----------
        key : hashable
            The kernel configuration (one cached launch per key).
        make : callable
            Returns ``(compiled kernel, dynamic shared bytes)``; called once per key.
        args : sequence
            Kernel arguments: :class:`~fibquant_theory.gpu.arrays.Input` for arrays, numbers for
            scalars; the error buffer at ``err_index`` is filled in here.
        varying : sequence of int
            Indices of ``args`` that may change between calls with the same key (the others
            are written into the cached parameter block once).
        grid : int or tuple
            Blocks of the launch (``THREADS`` threads each).
        stream : int
            Stream handle (:func:`~fibquant_theory.gpu.launch.stream_handle`).
        op : str
            One of :data:`OPERATIONS`.
        check : bool
            Reset, launch, read back (synchronises ``stream``); else record into the deferred flags.
        err_index : int
            Position of the error buffer among the arguments.

        Returns
        -------
        numpy.ndarray or None
            The two flags with ``check``, else None.
        """
        entry = self._launches.get(key)
        if entry is None:
            kern, shared = make()
            entry = [kern, int(shared), None]
            if self._direct:
                entry[2] = drv.DirectLaunch(kern, shared)
                varying = range(len(args))  # the first call writes every argument
            self._launches[key] = entry
        kern, shared, fast = entry
        flag = (op, bool(check))
        if fast is not None:
            for i in varying:
                a = args[i]
                if i == err_index:
                    fast.set_array(i, self._flag_ptr[flag], (2,))
                elif hasattr(a, "ptr"):
                    fast.set_array(i, a.ptr, a.shape)
                else:
                    fast.set_scalar(i, a)
            fast.set_pointer(err_index, self._flag_ptr[flag])
            if check:
                drv.copy_to_device(self._flag_ptr[flag], self._reset_host, stream)
            fast.launch(grid, THREADS, stream)
            if check:
                drv.copy_from_device(self._read_host, self._flag_ptr[flag], stream)
                return np.array(self._read_host, dtype=np.int64)
            return None
        buf = self._flags[flag]
        nargs = [buf if i == err_index else (a.numba() if hasattr(a, "numba") else a) for i, a in enumerate(args)]
        s = cuda.external_stream(stream) if (stream and not SIMULATOR) else 0
        if check:
            buf.copy_to_device(np.full(2, NO_ERROR, dtype=np.int64), stream=s)
        kern[grid, THREADS, s, shared](*nargs)
        if check:
            out = buf.copy_to_host(stream=s)
            if s:
                s.synchronize()
            return out
        return None

    def check_errors(self, stream: Any = None) -> None:
        """Raise if a call made with ``check=False`` since the last call of this method saw bad input.

        Parameters
        ----------
        stream : None, int, numba stream or torch.cuda.Stream
            Stream the calls ran on (None: the legacy default stream, which waits for the blocking
            streams; pass torch's current stream when it is not the default one).

        Raises
        ------
        ValueError
            Naming, per operation, the first bad row (encode: NaN/Inf or a norm that overflows
            the header) or record (decode, attention: an index ``>= N`` or a bad norm header).
            The deferred flags are reset either way.
        """
        handle = drv.stream_handle(stream, False)
        problems = []
        for op in OPERATIONS:
            buf = self._flags[(op, False)]
            if self._direct:
                drv.copy_from_device(self._read_host, self._flag_ptr[(op, False)], handle)
                got = np.array(self._read_host, dtype=np.int64)
                drv.copy_to_device(self._flag_ptr[(op, False)], self._reset_host, handle)
                drv.synchronize(handle)
            else:
                got = buf.copy_to_host()
                buf.copy_to_device(np.full(2, NO_ERROR, dtype=np.int64))
            if got[0] != NO_ERROR:
                what = "has NaN or Inf" if op == "encode" else "has an index >= N or a bad norm header"
                problems.append(f"{op}: {'row' if op == 'encode' else 'record'} {int(got[0])} {what}")
            if op == "encode" and got[1] != NO_ERROR:
                problems.append(f"encode: the norm of row {int(got[1])} overflows the norm header")
        if problems:
            raise ValueError("calls made with check=False saw bad input: " + "; ".join(problems))
