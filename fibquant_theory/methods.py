"""Codecs by name, so that every method is swappable on the command line and in scripts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .turboquant import TurboQuantMSE, TurboQuantProd

__all__ = ["METHODS", "make_codec"]

#: name -> factory(d, bits=..., seed=..., **options)
METHODS: dict[str, Callable[..., Any]] = {
    "turboquant": lambda d, *, bits, seed=0, **_: TurboQuantMSE(d, bits, seed),
    "turboquant-prod": lambda d, *, bits, seed=0, **_: TurboQuantProd(d, bits, seed),
}


def make_codec(method: str, d: int, **options: Any) -> Any:
    """Build the codec called ``method`` for dimension ``d`` (options such as ``bits``, ``seed``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return METHODS[method](d, **options)
