"""GPU (Numba-CUDA) codecs for FibQuant, installed as :mod:`fibquant_theory.gpu`.

The kernels are added by the GPU issue; importing this package never imports
``numba.cuda`` by itself, so CPU-only installations are unaffected.
"""

__all__: list[str] = []
