"""Import ``numba.cuda`` safely on every supported installation.

numba-cuda 0.30 uses ``np.row_stack`` in one of its kernel modules, which
NumPy 2.5 removed; importing :mod:`numba.cuda` then fails. This module restores
the alias (``np.row_stack`` is exactly ``np.vstack``) before importing
:mod:`numba.cuda`, so ``import fibquant_theory.gpu...`` works there too.

Attributes
----------
cuda : module
    :mod:`numba.cuda` (the simulator when ``NUMBA_ENABLE_CUDASIM=1`` was set
    before the first import).
SIMULATOR : bool
    True under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIMULATOR", "cuda", "gpu_available"]

if not hasattr(np, "row_stack"):  # NumPy >= 2.5 removed the deprecated alias
    np.row_stack = np.vstack  # type: ignore[attr-defined]

from numba import config as _config  # noqa: E402
from numba import cuda  # noqa: E402

SIMULATOR: bool = bool(_config.ENABLE_CUDASIM)


def gpu_available() -> bool:
    """True when kernels can run: a real CUDA GPU, or the simulator."""
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - driver problems
        return False
