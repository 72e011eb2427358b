"""The record every proof check returns, and how ``passed`` is decided."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "make_check", "RELATIONS"]

#: ``relation -> (description, predicate(value, expected, tolerance))``.
RELATIONS: dict[str, tuple[str, Any]] = {
    "==": ("|value - expected| <= tolerance", lambda v, e, t: abs(v - e) <= t),
    "<=": ("value <= expected + tolerance", lambda v, e, t: v <= e + t),
    ">=": ("value >= expected - tolerance", lambda v, e, t: v >= e - t),
    ">": ("value > expected + tolerance (strict, beyond the error bound)", lambda v, e, t: v > e + t),
    "<": ("value < expected - tolerance (strict, beyond the error bound)", lambda v, e, t: v < e - t),
}


@dataclass(frozen=True)
class Check:
    """Outcome of one verification check.

    Attributes
    ----------
    name : str
        Unique dotted name, ``module.check[parameters]``.
    passed : bool
        Whether ``value`` stands in ``relation`` to ``expected`` within ``tolerance``.
    value, expected, tolerance : float
        The measured / derived quantity, the claim, the allowed slack.
    relation : str
        One of :data:`RELATIONS`.
    detail : str
        One line saying what was computed.
    extra : dict
        Further numbers (not part of the JSON record).
    """

    name: str
    passed: bool
    value: float
    expected: float
    tolerance: float
    relation: str = "=="
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """The JSON record ``{"name", "passed", "value", "expected", "tolerance"}`` (NaN/Inf as strings)."""
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "value": _json_float(self.value),
            "expected": _json_float(self.expected),
            "tolerance": _json_float(self.tolerance),
        }


def _json_float(x: float) -> float | str:
    x = float(x)
    return x if math.isfinite(x) else str(x)


def make_check(
    name: str, value: float, expected: float, tolerance: float, relation: str = "==", detail: str = "", **extra: Any
) -> Check:
    """Build a :class:`Check`, deciding ``passed`` from ``relation`` (NaN never passes)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {sorted(RELATIONS)}, got {relation!r}")
    value, expected, tolerance = float(value), float(expected), float(tolerance)
    ok = not (math.isnan(value) or math.isnan(expected) or math.isnan(tolerance))
    ok = ok and bool(RELATIONS[relation][1](value, expected, tolerance))
    return Check(name, ok, value, expected, tolerance, relation, detail, dict(extra))
