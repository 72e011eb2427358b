"""FibQuant: universal fixed-rate vector quantization for KV caches.

Reference implementation, numerical-theory companion and verification suite.
The GPU kernels are :mod:`fibquant_theory.gpu` (from the repository's ``gpu/``
folder) and the symbolic proofs :mod:`fibquant_theory.proofs` (from ``proofs/``).
"""

from .rd import rate_distortion, shannon_bound
from .rotation import haar_orthogonal
from .scalar import ScalarQuantizer, lloyd_max_scalar
from .source import SphericalBeta, sample_unit_vectors
from .turboquant import TurboQuantMSE, TurboQuantProd

__version__ = "0.1.0"

__all__ = [
    "SphericalBeta",
    "sample_unit_vectors",
    "haar_orthogonal",
    "ScalarQuantizer",
    "lloyd_max_scalar",
    "TurboQuantMSE",
    "TurboQuantProd",
    "rate_distortion",
    "shannon_bound",
    "__version__",
]
