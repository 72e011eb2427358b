"""Codecs by name, so that every method is swappable on the command line and in scripts.

* ``"turboquant"``, ``"turboquant-prod"``: ``bits``, ``seed``;
* ``"fibquant"``: ``block`` (k), ``codewords`` (N) or ``bits`` (then
  ``N = 2**(bits*k)``), ``seed``, ``rotation``, ``norm_dtype``, ``encoder``,
  ``packing``, ``probes``, ``n_clusters``, ``top`` and the design options
  ``n_train``, ``n_heldout``, ``cache``;
* ``"kivi"``: ``bits``, ``seed`` (unused), ``mode``, ``group_size``, ``meta_dtype``.

Every codec has ``d``, ``name``, ``rate_bits``, ``bits_per_vector``,
``compression_ratio``, ``encode``, ``decode``, ``decode_row`` and
``inner_product``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .codec import FibQuantCodec
from .kivi import KIVICodec
from .turboquant import TurboQuantMSE, TurboQuantProd

__all__ = ["METHODS", "make_codec"]


def _fibquant(
    d: int,
    *,
    block: int | None = None,
    codewords: int | None = None,
    bits: int | None = None,
    seed: int = 0,
    rotation: str = "haar",
    norm_dtype: str = "float16",
    encoder: str = "exhaustive",
    packing: str = "auto",
    n_train: int | None = None,
    n_heldout: int | None = None,
    cache: bool | None = None,
    **encoder_options: Any,
) -> FibQuantCodec:
    """FibQuant on ``design_codebook(d, block, codewords, seed=seed)`` with the rotation drawn from ``seed``."""
    if block is None:
        raise ValueError("method 'fibquant' needs block=k (the block size) and codewords=N (or bits=b, N = 2**(b*k))")
    if codewords is None:
        if bits is None:
            raise ValueError("method 'fibquant' needs codewords=N or bits=b (then N = 2**(b*k))")
        codewords = 2 ** (int(bits) * int(block))
    from .codebook import design_codebook  # imported here: the codebook module is heavy

    design: dict[str, Any] = {}
    if n_train is not None:
        design["n_train"] = n_train
    if n_heldout is not None:
        design["n_heldout"] = n_heldout
    if cache is not None:
        design["cache"] = cache
    codebook = design_codebook(d, block, codewords, seed=seed, **design)
    return FibQuantCodec(
        codebook, seed, rotation=rotation, norm_dtype=norm_dtype, encoder=encoder, packing=packing, **encoder_options
    )


#: name -> factory(d, **options)
METHODS: dict[str, Callable[..., Any]] = {
    "turboquant": lambda d, *, bits, seed=0, **_: TurboQuantMSE(d, bits, seed),
    "turboquant-prod": lambda d, *, bits, seed=0, **_: TurboQuantProd(d, bits, seed),
    "fibquant": _fibquant,
    "kivi": lambda d, *, bits, seed=0, mode="per-token", group_size=32, meta_dtype="float16", **_: KIVICodec(
        d, bits, seed, mode=mode, group_size=group_size, meta_dtype=meta_dtype
    ),
}


def make_codec(method: str, d: int, **options: Any) -> Any:
    """Build the codec called ``method`` for dimension ``d``.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    d : int
        Vector dimension.
    **options
        Factory options (see the module docstring), e.g. ``bits=2, seed=0`` or
        ``block=8, codewords=256, seed=0``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return METHODS[method](d, **options)
