"""The registry's ``"fibquant"`` factory: codec options as a user gives them, checked, to a :class:`FibQuantCodec`.

``N`` comes from ``codewords`` or ``bits`` (``N = 2**(bits*block)``), encoder
options are refused for the encoders that would ignore them, and the codebook is
designed (or read from the cache) by
:func:`~fibquant_theory.codebooks.design.design_codebook`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from fibquant_theory._validation import check_int
from fibquant_theory.codecs.fibquant import FibQuantCodec

__all__ = ["make_fibquant"]


def _fibquant_codewords(block: int, codewords: object, bits: object) -> object:
    """The codebook size ``N`` from ``codewords`` and/or ``bits`` (``N = 2**(bits*block)``); checks they agree."""
    if bits is None:
        if codewords is None:
            raise ValueError("method 'fibquant' needs codewords=N or bits=b (then N = 2**(b*k))")
        return codewords  # checked by design_codebook
    if isinstance(bits, bool) or not isinstance(bits, numbers.Real) or not math.isfinite(float(bits)) or bits <= 0:
        raise ValueError(f"method 'fibquant': bits must be a finite number > 0, got {bits!r}")
    exponent = float(bits) * block
    index_bits = round(exponent)
    if index_bits < 1 or abs(exponent - index_bits) > 1e-9 * max(1.0, exponent):
        raise ValueError(
            f"method 'fibquant': bits*block must be an integer >= 1 (N = 2**(bits*block) codewords), "
            f"got bits={bits!r} and block={block} (bits*block = {exponent:g})"
        )
    n_codewords = 2**index_bits
    if codewords is not None:
        given = check_int(codewords, "codewords", minimum=2)
        if given != n_codewords:
            raise ValueError(
                f"method 'fibquant': codewords={codewords!r} and bits={bits!r} disagree: with block={block}, "
                f"bits={bits!r} means N = 2**{index_bits} = {n_codewords} codewords; give one of them"
            )
    return n_codewords


def make_fibquant(
    d: int,
    *,
    block: int | None = None,
    codewords: int | None = None,
    bits: float | None = None,
    seed: int = 0,
    rotation: str = "haar",
    norm_dtype: str = "float16",
    encoder: str = "exhaustive",
    packing: str = "auto",
    probes: int | None = None,
    n_clusters: int | None = None,
    top: int | None = None,
    spill: int | None = None,
    n_train: int | None = None,
    n_heldout: int | None = None,
    cache: bool | None = None,
    family: str = "shells",
) -> FibQuantCodec:
    """FibQuant on ``design_codebook(d, block, N, seed=seed, family=family)`` with the rotation drawn from ``seed``.

    ``N`` is ``codewords``, or ``2**(bits*block)`` (both may be given when they
    agree). ``probes`` needs ``encoder="two-stage"``; ``n_clusters``, ``top`` and
    ``spill`` need ``encoder="clustered"``. ``n_train``, ``n_heldout`` and ``cache`` go to
    :func:`~fibquant_theory.codebooks.design.design_codebook` (its defaults when ``None``).

    Parameters
    ----------
    d : int
        Vector dimension (divisible by ``block``).
    block : int
        Block size ``k`` (required).
    codewords : int, optional
        Codebook size ``N``.
    bits : float, optional
        Bits per coordinate, ``N = 2**(bits*block)`` (``bits*block`` an integer ``>= 1``).
    seed : int
        Seed of the codebook design and of the rotation.
    rotation, norm_dtype, encoder, packing : str
        As in :class:`FibQuantCodec`.
    probes, n_clusters, top, spill : int, optional
        Encoder options (as in :class:`FibQuantCodec`).
    n_train, n_heldout : int, optional
        Design samples (``design_codebook``'s defaults when ``None``).
    cache : bool, optional
        Whether the design is read from / written to the codebook cache.
    family : str
        Codebook family (``design_codebook``'s ``family``): ``"shells"`` (the
        default, the Lloyd-refined FibQuant design) or a structured family such
        as ``"d4"``, ``"e8"``, ``"hurwitz"`` (which fix ``block`` and constrain ``N``).

    Returns
    -------
    FibQuantCodec
        The codec (its codebook designed, or loaded from the cache).
    """
    if block is None:
        raise ValueError("method 'fibquant' needs block=k (the block size) and codewords=N (or bits=b, N = 2**(b*k))")
    block = check_int(block, "block", minimum=1)
    n_codewords = _fibquant_codewords(block, codewords, bits)
    encoder_options: dict[str, int] = {}
    for name, value, needs in (
        ("probes", probes, "two-stage"),
        ("n_clusters", n_clusters, "clustered"),
        ("top", top, "clustered"),
        ("spill", spill, "clustered"),
    ):
        if value is None:
            continue
        if encoder != needs:  # the other encoders would ignore it
            raise ValueError(f"method 'fibquant': {name} applies only to encoder={needs!r}, got encoder={encoder!r}")
        encoder_options[name] = value
    from fibquant_theory.codebooks.design import design_codebook  # imported here: the codebook module is heavy

    design: dict[str, Any] = {}
    if n_train is not None:
        design["n_train"] = n_train
    if n_heldout is not None:
        design["n_heldout"] = n_heldout
    if cache is not None:
        design["cache"] = cache
    codebook = design_codebook(d, block, n_codewords, seed=seed, family=family, **design)
    return FibQuantCodec(
        codebook, seed, rotation=rotation, norm_dtype=norm_dtype, encoder=encoder, packing=packing, **encoder_options
    )
