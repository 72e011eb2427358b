"""Torch devices of the torch codebook design: which device a ``device=`` argument means, and IEEE float32 matmuls.

``design_codebook(..., device=...)`` takes ``None`` or ``"cpu-numba"`` (the CPU Numba
design, torch never imported) or a torch device of type ``"cpu"`` or ``"cuda"``
(:func:`resolve_device`). torch is imported only here, on first use (:func:`torch_module`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["IMPLEMENTATION", "NUMBA_DEVICES", "ieee_float32", "resolve_device", "torch_module"]

#: ``params["implementation"]`` of a torch design (part of its cache key).
IMPLEMENTATION = "torch"
#: Device strings that select the CPU Numba design (the default).
NUMBA_DEVICES = (None, "cpu-numba")


def torch_module() -> Any:
    """Import torch (on first use: ``import fibquant_theory`` never does).

    Returns
    -------
    module
        ``torch``.

    Raises
    ------
    ImportError
        With an install hint, when torch is missing.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed where the tests run
        raise ImportError(
            "design_codebook(device=...) needs PyTorch (pip install torch); device=None uses the CPU Numba design"
        ) from exc
    return torch


def resolve_device(device: object) -> torch.device | None:
    """The torch device of ``device``, or ``None`` for the CPU Numba design (``None`` or ``"cpu-numba"``).

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` / ``"cpu-numba"`` (the Numba design, torch not imported), or a torch
        device of type ``"cpu"`` or ``"cuda"`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``).

    Returns
    -------
    torch.device or None
        The device; ``None`` for the Numba design.

    Raises
    ------
    ValueError
        For anything else: an unparsable string, another device type, CUDA asked for
        where torch sees no GPU, or a CUDA index past the last GPU.
    """
    if device is None or (isinstance(device, str) and device in NUMBA_DEVICES):
        return None
    torch = torch_module()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be None, 'cpu-numba' or a torch device string, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"device must be None, 'cpu-numba', 'cpu' or 'cuda[:index]', got {device!r} ({exc})"
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device type must be 'cpu' or 'cuda' (the torch design supports no other), got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: torch {torch.__version__} sees no CUDA GPU "
                f"(built with CUDA {torch.version.cuda}); use device='cpu' or None"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextlib.contextmanager
def ieee_float32(torch: Any) -> Iterator[None]:
    """Disable TF32 (and any reduced-precision float32 matmul) inside the block, then restore the settings.

    Parameters
    ----------
    torch : module
        The torch module.

    Yields
    ------
    None
    """
    saved: list[tuple[Any, str, Any]] = []
    backends = [getattr(torch.backends.cuda, "matmul", None), getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)]
    for obj in backends:
        if obj is not None and hasattr(obj, "fp32_precision"):  # torch >= 2.9: only the new API (no mixing)
            saved.append((obj, "fp32_precision", obj.fp32_precision))
            obj.fp32_precision = "ieee"
    if not saved:  # pragma: no cover - older torch
        saved.append((torch.backends.cuda.matmul, "allow_tf32", torch.backends.cuda.matmul.allow_tf32))
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
