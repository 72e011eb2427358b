"""Array arguments of the GPU codec: PyTorch tensors, Numba device arrays and NumPy arrays, checked from metadata only.

:func:`as_input` looks at a caller's array once (type, device, dtype, shape,
contiguity, data pointer: no device data is read) and returns an
:class:`Input`; the codec launches from its pointer directly on a GPU, or from
a Numba view (:meth:`Input.numba`) in the simulator. :func:`empty` allocates
outputs as the caller's kind of array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._compat import SIMULATOR, cuda

__all__ = ["DTYPE_NAMES", "Input", "View", "all_finite", "as_input", "constant", "empty", "is_torch", "length_input",
           "payload_codes", "result"]

#: Element formats the kernels read and write, by name (bfloat16 travels as its uint16 bit pattern).
DTYPE_NAMES = ("float16", "bfloat16", "float32", "uint8", "uint16", "uint32", "int32", "int64")

_NP_OF = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32, "uint8": np.uint8, "uint16": np.uint16,
          "uint32": np.uint32, "int32": np.int32, "int64": np.int64}


def is_torch(a: Any) -> bool:
    """True for a PyTorch tensor (checked without importing torch)."""
    return type(a).__module__.startswith("torch") and hasattr(a, "is_cuda")


@dataclass
class Input:
    """One array argument as the kernels see it.

    Attributes
    ----------
    ptr : int
        Device address of element 0 (0 in the simulator).
    shape : tuple of int
        Its shape.
    dtype : str
        One of :data:`DTYPE_NAMES`.
    tensor : torch.Tensor or None
        The (contiguous) torch tensor, when the caller gave one.
    array : device array or None
        The Numba device array, when the caller gave one or NumPy data was copied.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: str
    tensor: Any = None
    array: Any = None

    def numba(self) -> Any:
        """A Numba device array of the data (bfloat16 as uint16), for launches through Numba."""
        if self.array is not None:
            return self.array
        import torch

        t = self.tensor
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        arr = cuda.as_cuda_array(t.detach())
        want = np.dtype(_NP_OF[self.dtype])
        return arr.view(want) if np.dtype(arr.dtype) != want else arr


def _torch_name(t: Any) -> str:
    return str(t.dtype).replace("torch.", "")


def as_input(a: Any, name: str, dtypes: tuple[str, ...]) -> Input:
    """Check ``a`` (metadata only) and describe it as an :class:`Input`.

    Parameters
    ----------
    a : torch.Tensor, device array, numpy.ndarray or Input
        A CUDA tensor (any strides: made contiguous), a Numba device array
        (C-contiguous), host data (copied to the device), or an :class:`Input`
        already describing device data (how bfloat16 bits in a ``uint16`` Numba
        array are passed).
    name : str
        Argument name for the error messages.
    dtypes : tuple of str
        Accepted element formats (names of :data:`DTYPE_NAMES`).

    Returns
    -------
    Input
        The array's pointer, shape and format.

    Raises
    ------
    ValueError
        A CPU tensor, a dtype not in ``dtypes`` or a non-contiguous device array.
    """
    if isinstance(a, Input):  # already described (e.g. bfloat16 bits in a uint16 device array)
        if a.dtype not in dtypes:
            raise ValueError(f"{name} must have dtype in {list(dtypes)}, got {a.dtype}")
        return a
    if is_torch(a):
        if not a.is_cuda:
            raise ValueError(f"{name} is a CPU torch tensor; move it to the GPU first")
        dt = _torch_name(a)
        if dt == "int16" and "uint16" in dtypes:
            dt = "uint16"
        if dt not in dtypes:
            raise ValueError(f"{name} must have dtype in {list(dtypes)}, got {a.dtype}")
        t = a if a.is_contiguous() else a.contiguous()
        return Input(int(t.data_ptr()), tuple(t.shape), dt, t, None)
    if hasattr(a, "copy_to_host"):  # a Numba device array (or the simulator's)
        arr = a
    elif hasattr(a, "__cuda_array_interface__"):
        arr = cuda.as_cuda_array(a)
    else:
        host = np.asarray(a)
        names = [d for d in dtypes if np.dtype(_NP_OF[d]) == host.dtype and d != "bfloat16"]
        if not names:
            raise ValueError(f"{name} must have dtype in {list(dtypes)}, got {host.dtype}")
        arr = cuda.to_device(np.ascontiguousarray(host))
    names = [d for d in dtypes if np.dtype(_NP_OF[d]) == np.dtype(arr.dtype) and d != "bfloat16"]
    if not names:
        raise ValueError(f"{name} must have dtype in {list(dtypes)}, got {np.dtype(arr.dtype).name}")
    if not arr.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous")
    ptr = 0 if SIMULATOR else int(arr.__cuda_array_interface__["data"][0] or 0)
    return Input(ptr, tuple(int(s) for s in arr.shape), names[0], None, arr)


def empty(shape: tuple[int, ...], dtype: str, like: Input | None) -> Input:
    """A new device array of ``shape`` and format ``dtype``: a torch tensor on ``like``'s device when ``like`` is torch.

    Parameters
    ----------
    shape : tuple of int
        Its shape.
    dtype : str
        One of :data:`DTYPE_NAMES` (``"bfloat16"``: a torch bfloat16 tensor, or uint16 bits).
    like : Input or None
        An input of the call (its kind and device are used).

    Returns
    -------
    Input
        The new array (``tensor`` set for torch, ``array`` for Numba).
    """
    if like is not None and like.tensor is not None:
        import torch

        tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "uint8": torch.uint8,
               "uint16": torch.int16, "uint32": torch.int32, "int32": torch.int32, "int64": torch.int64}[dtype]
        t = torch.empty(shape, dtype=tdt, device=like.tensor.device)
        return Input(int(t.data_ptr()), tuple(shape), dtype, t, None)
    arr = cuda.device_array(shape, dtype=_NP_OF[dtype])
    ptr = 0 if SIMULATOR else int(arr.__cuda_array_interface__["data"][0] or 0)
    return Input(ptr, tuple(shape), dtype, None, arr)


class View:
    """An array argument as another element type and shape (same memory): pointer, shape, and its Numba view."""

    __slots__ = ("base", "dtype", "ptr", "shape")

    def __init__(self, base: Input, dtype: Any, shape: tuple[int, ...]) -> None:
        self.base, self.dtype, self.ptr, self.shape = base, dtype, base.ptr, shape

    def numba(self) -> Any:
        """The Numba device array of this view (for launches through Numba)."""
        arr = self.base.numba()
        if np.dtype(arr.dtype) != np.dtype(self.dtype):
            arr = arr.view(self.dtype)
        return arr.reshape(self.shape) if tuple(arr.shape) != self.shape else arr


def constant(a: np.ndarray) -> Input:
    """A host array copied to the device, as an :class:`Input` (the kernels' constants and workspaces).

    Parameters
    ----------
    a : numpy.ndarray
        The data.

    Returns
    -------
    Input
        Its device copy.
    """
    arr = cuda.to_device(np.ascontiguousarray(a))
    ptr = 0 if SIMULATOR else int(arr.__cuda_array_interface__["data"][0] or 0)
    return Input(ptr, tuple(arr.shape), np.dtype(arr.dtype).name, None, arr)


def all_finite(a: Input) -> bool:
    """Whether every entry of a float input is finite (reads the data: a synchronisation).

    Parameters
    ----------
    a : Input
        A float16, bfloat16 (torch) or float32 input of :func:`as_input`.

    Returns
    -------
    bool
        False if any entry is NaN or infinite.
    """
    if a.tensor is not None:
        import torch

        return bool(torch.isfinite(a.tensor).all())
    return bool(np.isfinite(a.numba().copy_to_host()).all())


def result(o: Input) -> Any:
    """The caller's kind of array of an output: the torch tensor, else the Numba device array.

    Parameters
    ----------
    o : Input
        An output made by :func:`empty`.

    Returns
    -------
    torch.Tensor or device array
        The array to return.
    """
    return o.tensor if o.tensor is not None else o.array


def length_input(a: Any) -> Input:
    """A device token count: an int64 array of shape ``(1,)`` (``decode_attention(..., length=)``).

    Parameters
    ----------
    a : torch.Tensor, device array or numpy.ndarray
        The count (int64, one entry).

    Returns
    -------
    Input
        Its description.

    Raises
    ------
    ValueError
        Another dtype or shape.
    """
    li = as_input(a, "length", ("int64",))
    if li.shape != (1,):
        raise ValueError(f"length must have shape (1,), got {li.shape}")
    return li


def payload_codes(codec: Any, arr: Input, shape: tuple[int, ...]) -> Any:
    """A device record stream copied to the host as :class:`~fibquant_theory.codecs.fibquant.FibQuantCodes`.

    Parameters
    ----------
    codec : FibQuantCodec
        The CPU codec the records belong to.
    arr : Input
        The record stream (``uint8``) of ``prod(shape)`` records, checked by the caller.
    shape : tuple of int
        Leading shape of the codes.

    Returns
    -------
    FibQuantCodes
        The same records on the host, decodable by the CPU codec.
    """
    from fibquant_theory.codecs.fibquant import FibQuantCodes

    host = arr.tensor.cpu().numpy() if arr.tensor is not None else arr.array.copy_to_host()
    c = codec
    return FibQuantCodes(
        payload=np.ascontiguousarray(host, dtype=np.uint8), shape=tuple(shape), d=c.d, k=c.k, n_codewords=c.n_codewords,
        norm_dtype=c.norm_dtype, packing=c.packing, rotation=c.rotation.kind, seed=c.seed, codebook_hash=c.codebook_hash,
    )
