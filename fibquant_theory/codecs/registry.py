"""Codecs by name, so that every method is swappable on the command line and in scripts.

Options of every method (keyword arguments of :func:`make_codec`):

* ``"turboquant"``, ``"turboquant-prod"``: ``bits`` (required, an integer
  1..8), ``seed``, ``norm_dtype`` (the format the norms are stored and counted in);
* ``"fibquant"``: ``block`` (k, required), ``codewords`` (N) or ``bits`` (then
  ``N = 2**(bits*k)``; ``bits`` may be fractional when ``bits*k`` is an integer
  ``>= 1``, and when both are given they must agree), ``seed``, ``rotation``,
  ``norm_dtype``, ``encoder``, ``packing``, the encoder options ``probes``
  (``encoder="two-stage"`` only), ``n_clusters`` and ``top``
  (``encoder="clustered"`` only), and the design options ``n_train``,
  ``n_heldout``, ``cache``;
* ``"kivi"``: ``bits`` (required, an integer 1..8), ``seed`` (unused),
  ``mode``, ``group_size``, ``meta_dtype``.

An unknown (e.g. misspelled) option raises :class:`TypeError` naming it and
listing the valid ones; a bad or inconsistent value raises :class:`ValueError`
naming the argument. No option is dropped, truncated or overridden silently.

Every codec has ``d``, ``name``, ``rate_bits``, ``bits_per_vector``,
``compression_ratio``, ``encode``, ``decode``, ``decode_row`` and
``inner_product``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

from fibquant_theory._validation import check_bits, check_int
from fibquant_theory.codecs.fibquant import FibQuantCodec
from fibquant_theory.codecs.kivi import KIVICodec
from fibquant_theory.codecs.turboquant import TurboQuantMSE, TurboQuantProd

__all__ = ["METHODS", "make_codec"]


def _integer_bits(method: str, bits: object) -> int:
    """``bits`` of a scalar method: required, an integer in 1..8 (an integral float such as ``2.0`` is accepted)."""
    if bits is None:
        raise ValueError(f"method {method!r} needs the option bits=b (bits per coordinate, an integer 1..8)")
    try:
        return check_bits(bits)
    except ValueError as exc:
        raise ValueError(f"method {method!r}: {exc}") from None


def _turboquant(d: int, *, bits: int | None = None, seed: int = 0, norm_dtype: str = "float16") -> TurboQuantMSE:
    """TurboQuant-mse: ``TurboQuantMSE(d, bits, seed, norm_dtype=norm_dtype)``."""
    return TurboQuantMSE(d, _integer_bits("turboquant", bits), seed, norm_dtype=norm_dtype)


def _turboquant_prod(d: int, *, bits: int | None = None, seed: int = 0, norm_dtype: str = "float16") -> TurboQuantProd:
    """TurboQuant-prod (the QJL variant): ``TurboQuantProd(d, bits, seed, norm_dtype=norm_dtype)``."""
    return TurboQuantProd(d, _integer_bits("turboquant-prod", bits), seed, norm_dtype=norm_dtype)


def _kivi(
    d: int,
    *,
    bits: int | None = None,
    seed: int = 0,
    mode: str = "per-token",
    group_size: int = 32,
    meta_dtype: str = "float16",
) -> KIVICodec:
    """KIVI-style uniform integer quantization: ``KIVICodec(d, bits, seed, mode=..., ...)``."""
    return KIVICodec(d, _integer_bits("kivi", bits), seed, mode=mode, group_size=group_size, meta_dtype=meta_dtype)


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


def _fibquant(
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
    n_train: int | None = None,
    n_heldout: int | None = None,
    cache: bool | None = None,
) -> FibQuantCodec:
    """FibQuant on ``design_codebook(d, block, N, seed=seed)`` with the rotation drawn from ``seed``.

    ``N`` is ``codewords``, or ``2**(bits*block)`` (both may be given when they
    agree). ``probes`` needs ``encoder="two-stage"``; ``n_clusters`` and ``top``
    need ``encoder="clustered"``. ``n_train``, ``n_heldout`` and ``cache`` go to
    :func:`~fibquant_theory.codebooks.design.design_codebook` (its defaults when ``None``).
    """
    if block is None:
        raise ValueError("method 'fibquant' needs block=k (the block size) and codewords=N (or bits=b, N = 2**(b*k))")
    block = check_int(block, "block", minimum=1)
    n_codewords = _fibquant_codewords(block, codewords, bits)
    encoder_options: dict[str, int] = {}
    for name, value, needs in (("probes", probes, "two-stage"), ("n_clusters", n_clusters, "clustered"), ("top", top, "clustered")):
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
    codebook = design_codebook(d, block, n_codewords, seed=seed, **design)
    return FibQuantCodec(
        codebook, seed, rotation=rotation, norm_dtype=norm_dtype, encoder=encoder, packing=packing, **encoder_options
    )


#: name -> factory(d, **options); every option is an explicit keyword-only parameter
METHODS: dict[str, Callable[..., Any]] = {
    "turboquant": _turboquant,
    "turboquant-prod": _turboquant_prod,
    "fibquant": _fibquant,
    "kivi": _kivi,
}


def _option_names(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword-only parameters of ``factory``, or ``None`` when it takes ``**kwargs`` (then it checks them itself)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


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

    Raises
    ------
    TypeError
        For an option that ``method`` does not have (the message lists those it has).
    ValueError
        For an unknown method, a missing required option, or a bad or
        inconsistent value (the message names the argument).
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    factory = METHODS[method]
    valid = _option_names(factory)
    unknown = [name for name in options if valid is not None and name not in valid]
    if unknown:
        hints = [
            f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, valid, n=1)) else repr(name)
            for name in unknown
        ]
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for method {method!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return factory(d, **options)
