"""FibQuant: universal fixed-rate vector quantization for KV caches.

Reference implementation, numerical-theory companion and verification suite.
The GPU kernels are :mod:`fibquant_theory.gpu` (from the repository's ``gpu/``
folder) and the symbolic proofs :mod:`fibquant_theory.proofs` (from ``proofs/``).
"""

from .codebook import CODEBOOK_VERSION, Codebook, design_codebook, load_codebook, save_codebook
from .codec import FibQuantCodec, FibQuantCodes
from .directions import (
    covering_radius,
    fibonacci_circle,
    fibonacci_sphere,
    fibonacci_sunflower,
    roberts_kronecker_directions,
    spherical_cap_discrepancy,
)
from .lloyd import LloydResult, lloyd_max, nearest_codeword
from .encoders import ClusteredSearch, ExhaustiveSearch, TwoStageSearch
from .highrate import gain_decomposition, gain_table, high_rate_mse, shannon_lower_bound, sphere_cap_bound
from .kivi import KIVICodec
from .methods import METHODS, make_codec
from .packing import RecordLayout
from .rd import rate_distortion, shannon_bound
from .rotation import haar_orthogonal, make_rotation, randomized_hadamard
from .scalar import ScalarQuantizer, lloyd_max_scalar
from .shells import beta_quantile_radii, factorisations
from .source import SphericalBeta, sample_unit_vectors
from .turboquant import TurboQuantMSE, TurboQuantProd

__version__ = "0.1.0"

__all__ = [
    "SphericalBeta",
    "sample_unit_vectors",
    "haar_orthogonal",
    "make_rotation",
    "randomized_hadamard",
    "Codebook",
    "CODEBOOK_VERSION",
    "design_codebook",
    "save_codebook",
    "load_codebook",
    "fibonacci_circle",
    "fibonacci_sunflower",
    "fibonacci_sphere",
    "roberts_kronecker_directions",
    "covering_radius",
    "spherical_cap_discrepancy",
    "beta_quantile_radii",
    "factorisations",
    "LloydResult",
    "lloyd_max",
    "nearest_codeword",
    "FibQuantCodec",
    "FibQuantCodes",
    "ExhaustiveSearch",
    "TwoStageSearch",
    "ClusteredSearch",
    "RecordLayout",
    "KIVICodec",
    "METHODS",
    "make_codec",
    "ScalarQuantizer",
    "lloyd_max_scalar",
    "TurboQuantMSE",
    "TurboQuantProd",
    "rate_distortion",
    "shannon_bound",
    "high_rate_mse",
    "gain_decomposition",
    "gain_table",
    "shannon_lower_bound",
    "sphere_cap_bound",
    "__version__",
]
