"""FibQuant: universal fixed-rate vector quantization for KV caches.

Reference implementation, numerical-theory companion and verification suite.
The GPU kernels are :mod:`fibquant_theory.gpu` (from the repository's ``gpu/``
folder) and the symbolic proofs :mod:`fibquant_theory.proofs` (from ``proofs/``).
"""

from fibquant_theory.codebooks.codebook import CODEBOOK_VERSION, Codebook, load_codebook, save_codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codebooks.directions import (
    covering_radius,
    fibonacci_circle,
    fibonacci_sphere,
    fibonacci_sunflower,
    roberts_kronecker_directions,
    spherical_cap_discrepancy,
)
from fibquant_theory.codebooks.lloyd import LloydResult, lloyd_max, nearest_codeword
from fibquant_theory.codebooks.shells import beta_quantile_radii, factorisations
from fibquant_theory.codecs.fibquant import FibQuantCodec, FibQuantCodes
from fibquant_theory.codecs.kivi import KIVICodec
from fibquant_theory.codecs.packing import RecordLayout
from fibquant_theory.codecs.registry import METHODS, make_codec
from fibquant_theory.codecs.turboquant import TurboQuantMSE, TurboQuantProd
from fibquant_theory.experiments.rd import gaussian_reference, lower_bounds, rate_distortion
from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch, TwoStageSearch
from fibquant_theory.theory.highrate import (
    gain_decomposition,
    gain_table,
    high_rate_mse,
    shannon_lower_bound,
    sphere_cap_bound,
)
from fibquant_theory.theory.rotation import haar_orthogonal, make_rotation, randomized_hadamard
from fibquant_theory.theory.scalar import ScalarQuantizer, lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta, sample_unit_vectors

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
    "gaussian_reference",
    "lower_bounds",
    "high_rate_mse",
    "gain_decomposition",
    "gain_table",
    "shannon_lower_bound",
    "sphere_cap_bound",
    "__version__",
]
