"""rate_distortion's reference column and its two lower bounds, measured against every shipped codec."""

from __future__ import annotations

import math

import pytest

from fibquant_theory.codecs.registry import make_codec
from fibquant_theory.experiments.rd import bound_lines, codec_block, gaussian_reference, lower_bounds, rate_distortion
from fibquant_theory.theory import highrate as hr

#: (method, options) of a small run: every registered codec, d = 16 (FibQuant with a small design).
SHIPPED = [
    ("turboquant", {"bits": 1}),
    ("turboquant", {"bits": 3}),
    ("turboquant-prod", {"bits": 2}),
    ("fibquant", {"block": 2, "codewords": 16, "n_train": 20_000}),
    ("fibquant", {"block": 8, "codewords": 16, "n_train": 20_000}),
    ("kivi", {"bits": 2}),
    ("fp8", {}),
]


@pytest.mark.parametrize("method,options", SHIPPED, ids=[f"{m}-{o}" for m, o in SHIPPED])
def test_bounds_lie_below_every_shipped_codec(method: str, options: dict) -> None:
    codec = make_codec(method, 16, seed=0, **options)
    row = rate_distortion(codec, n_samples=4_000, seed=1)
    b = row["rate_bits"]
    assert row["gaussian_ref"] == 2.0 ** (-2 * b)
    assert row["gap_db"] == pytest.approx(10 * math.log10(row["mse"] / row["gaussian_ref"]))
    assert row["slb_block"] == codec_block(codec) == options.get("block", 1)
    assert row["shannon_lb"] == hr.shannon_lower_bound(16, row["slb_block"], b)
    assert row["cap_lb"] == hr.sphere_cap_bound(16, b)
    # a lower bound holds for the true MSE; the estimate is allowed 4 standard errors of noise
    assert max(row["shannon_lb"], row["cap_lb"]) < row["mse"] + 4 * row["mse_se"], row
    assert "shannon_bound" not in row


def test_reference_is_not_a_bound() -> None:
    """2^(-2b) lies below the cap bound at low rate (so it bounds nothing) and above the SLB."""
    for d, b in ((64, 0.5), (64, 1.0), (128, 2.0)):
        lb = lower_bounds(d, b)
        assert lb["shannon_lb"] < gaussian_reference(b) < lb["cap_lb"]


def test_lower_bounds_blocks_and_lines() -> None:
    # the SLB of a coarser block is weaker: h(f_dk) <= k h(f_d1)
    slbs = [lower_bounds(64, 2.0, k)["shannon_lb"] for k in (1, 2, 4, 8, 32)]
    assert all(a > b for a, b in zip(slbs, slbs[1:]))
    assert math.isnan(lower_bounds(16, 1.0, 16)["shannon_lb"])  # k = d: no density, no SLB
    lines = bound_lines(64, [0.5, 2.0], blocks=(1, 8, 64))
    assert lines["shannon_lb"] == [lower_bounds(64, b, 8)["shannon_lb"] for b in (0.5, 2.0)]
    assert lines["cap_lb"] == [hr.sphere_cap_bound(64, b) for b in (0.5, 2.0)]
    assert lines["gaussian_ref"] == [0.5, 2.0**-4]
    assert all(math.isnan(v) for v in bound_lines(16, [1.0], blocks=(16,))["shannon_lb"])
    with pytest.raises(ValueError):
        lower_bounds(16, 1.0, 17)
    with pytest.raises(ValueError):
        lower_bounds(16, -1.0)
