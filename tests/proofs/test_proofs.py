"""The proof checks: each passes as shipped, and each fails when what it checks is perturbed.

A check of a mathematical claim (symbolic, or a formula in mpmath) must fail when the claim
is perturbed (:data:`CHEAP`); a check of package code must fail when the *package* function
it checks is perturbed (monkeypatched, :data:`PACKAGE_PERTURBATIONS`), not its own reference.
Cheap checks run here directly; the ones that design codebooks use the small designs
(cached per test session in the temporary ``FIBQUANT_CACHE_DIR`` of ``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from fibquant_theory.proofs import Check, make_check
from fibquant_theory.proofs import dominance as dom
from fibquant_theory.proofs import high_rate as hr
from fibquant_theory.proofs import spherical_beta as sb
from fibquant_theory.proofs import sub_one_bit as sob

from fibquant_theory.cli.main import main
from fibquant_theory.theory import highrate
from fibquant_theory.theory import source as source_mod
from fibquant_theory.theory.source import SphericalBeta
from fibquant_theory.experiments import verify as verify_mod


def _checks(res: Check | list[Check]) -> list[Check]:
    return res if isinstance(res, list) else [res]


# (callable, perturbation kwargs that falsify the claim it checks): checks of mathematical claims
CHEAP = [
    (sb.check_normalizer_symbolic, {"exponent_shift": 1}),
    (sb.check_normalizer_symbolic, {"constant_factor": 1.01}),
    (sb.check_normalizer_numeric, {"exponent_shift": 0.5}),  # the formula half of the check
    (sb.check_normalizer_numeric, {"constant_factor": 1.0 + 1e-15}),
    (sb.check_radius_law_symbolic, {"exponent_shift": 1}),
    (sb.check_moments_symbolic, {"exponent_shift": 1}),
    (sb.check_gaussian_limit_symbolic, {"constant_factor": 1.01}),
    (sb.check_gaussian_limit_symbolic, {"scale_power": 0.6}),
    (functools.partial(dom.check_fixed_point_at_one_bit, 16, 2), {"bits": 2}),
    (functools.partial(dom.check_product_distortion, 64, 2, 2), {"level_scale": 1.0 + 1e-6}),
]


def _shifted(delta: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return lambda f: lambda *a, **kw: f(*a, **kw) + delta


def _scaled(factor: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return lambda f: lambda *a, **kw: f(*a, **kw) * factor


def _wrong_dimension(f: Callable[..., Any]) -> Callable[..., Any]:
    """``SphericalBeta.rvs`` drawing the blocks of a unit vector in ``d + 8`` dimensions instead of ``d``."""
    return lambda self, n, seed=0, method="radial": f(SphericalBeta(self.d + 8, self.k), n, seed=seed, method=method)


def _worse_lloyd_max(f: Callable[..., Any]) -> Callable[..., Any]:
    """``lloyd_max_scalar`` reporting a 2 % larger MSE."""
    return lambda d, bits: dataclasses.replace(f(d, bits), mse_per_coordinate=1.02 * f(d, bits).mse_per_coordinate)


# (id, check, object holding the package function, its name, wrapper): the check must fail when the
# package function it checks is replaced by the wrapped one (the check's own reference is untouched).
PACKAGE_PERTURBATIONS = [
    ("normalizer_numeric/log_normalizer+1e-11", sb.check_normalizer_numeric, source_mod, "log_normalizer",
     _shifted(1e-11)),
    ("package_density/log_normalizer+1e-10", sb.check_package_density, source_mod, "log_normalizer",
     _shifted(1e-10)),
    ("gaussian_limit_rate/pdf*1.01", sb.check_gaussian_limit_rate, SphericalBeta, "pdf", _scaled(1.01)),
    ("radius_ks/rvs(d+8)", sb.check_radius_ks, SphericalBeta, "rvs", _wrong_dimension),
    ("joint_chi2/rvs(d+8)", sb.check_joint_chi2, SphericalBeta, "rvs", _wrong_dimension),
    ("power_integral/log_normalizer+1e-9", functools.partial(hr.check_power_integral_closed_form, (1, 2, 8, 32), (64, 256)),
     highrate, "log_normalizer", _shifted(1e-9)),
    ("scalar_limit/lloyd_max_scalar*1.02", hr.check_scalar_high_rate_limit, hr, "lloyd_max_scalar", _worse_lloyd_max),
    ("gaussian_shape_limit/zador_functional*1.001", hr.check_gaussian_shape_limit, highrate, "zador_functional",
     _scaled(1.001)),
    ("entropy_closed_form/block_entropy+1e-8", sob.check_entropy_closed_form, highrate, "block_entropy",
     _shifted(1e-8)),
    ("cap_supporting_line/_cap_distortion*1.001", sob.check_cap_supporting_line, highrate, "_cap_distortion",
     _scaled(1.001)),
    ("bounds_below_scalar/sphere_cap_bound*1.3", sob.check_bounds_below_scalar, highrate, "sphere_cap_bound",
     _scaled(1.3)),
]


@pytest.mark.parametrize("name,fn,owner,attr,wrap", PACKAGE_PERTURBATIONS, ids=[p[0] for p in PACKAGE_PERTURBATIONS])
def test_check_fails_when_the_package_is_perturbed(
    name: str, fn: Callable[[], Any], owner: Any, attr: str, wrap: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check of package code passes as shipped and fails with the package function perturbed."""
    good = _checks(fn())
    assert good and all(c.passed for c in good), [c for c in good if not c.passed]
    monkeypatch.setattr(owner, attr, wrap(getattr(owner, attr)))
    bad = _checks(fn())
    assert not all(c.passed for c in bad), (name, bad)


@pytest.mark.parametrize("entry,fn", [
    # the table 0.3 % off: the Monte Carlo second moments disagree (observed 5.9 standard errors)
    ({k: 1.003 for k in (1, 2, 3, 4, 8)}, hr.check_lattice_table),
    ({2: 0.0790 / highrate.LATTICE_SECOND_MOMENTS[2].G}, hr.check_lattice_bounds),  # A2 below the sphere bound 0.0796
], ids=["table*1.003", "A2-below-sphere-bound"])
def test_lattice_checks_fail_on_a_perturbed_package_table(
    entry: dict[int, float], fn: Callable[[], Check], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lattice checks read highrate.LATTICE_SECOND_MOMENTS: a wrong entry there makes them fail."""
    assert fn().passed
    for k, factor in entry.items():
        rec = highrate.LATTICE_SECOND_MOMENTS[k]
        monkeypatch.setitem(highrate.LATTICE_SECOND_MOMENTS, k, dataclasses.replace(rec, G=rec.G * factor))
    assert not fn().passed


@pytest.mark.parametrize("fn,perturb", CHEAP, ids=[f"{getattr(f, '__name__', f)}-{p}" for f, p in CHEAP])
def test_check_passes_and_perturbation_fails(fn, perturb) -> None:
    """Every cheap check passes unperturbed and fails with its claim perturbed."""
    good = _checks(fn())
    assert good and all(c.passed for c in good), [c for c in good if not c.passed]
    bad = _checks(fn(**perturb))
    assert not all(c.passed for c in bad), bad
    for c in good + bad:
        rec = c.as_record()
        assert set(rec) == {"name", "passed", "value", "expected", "tolerance"}
        json.dumps(rec)


def test_derived_normalizer_is_the_package_constant() -> None:
    """SymPy derives c_{d,k} = Gamma(d/2) / (pi^{k/2} Gamma((d-k)/2)), equal to SphericalBeta's."""
    import sympy as sp

    from fibquant_theory.theory.source import SphericalBeta

    expr = sb.derive_normalizer()
    assert sp.simplify(expr - sp.gamma(sb.d_ / 2) / (sp.pi ** (sb.k_ / 2) * sp.gamma((sb.d_ - sb.k_) / 2))) == 0
    for d, k in ((5, 2), (64, 8), (255, 3)):
        assert float(sp.log(expr.subs({sb.d_: d, sb.k_: k})).evalf(30)) == pytest.approx(
            SphericalBeta(d, k).log_normalizer, rel=1e-13, abs=1e-12
        )
    assert sp.simplify(sb.derive_sphere_area() - 2 * sp.pi ** (sb.k_ / 2) / sp.gamma(sb.k_ / 2)) == 0


def test_one_bit_is_a_fixed_point_and_two_bits_is_not() -> None:
    """The honest b = 1 result: Delta = 0 there, Delta > 0 at b = 2 (same quadrature)."""
    assert dom.check_fixed_point_at_one_bit(16, 2).passed
    assert not dom.check_not_fixed_point(16, 2, 1).passed  # the strict claim fails at one bit
    assert dom.check_not_fixed_point(16, 2, 2).passed
    assert dom.check_fixed_point_at_one_bit(16, 3).passed  # orthant symmetry holds for every k


def test_lloyd_step_monte_carlo_matches_exact_bound() -> None:
    """The measured decrease of a full Lloyd step is at least the exact box-partition decrease (5 SE)."""
    chk = dom.check_lloyd_step_monte_carlo(16, 2, 2, n=200_000)
    assert chk.passed
    # measured includes the nearest-neighbour re-assignment, so it is >= the centroid-step decrease
    assert chk.extra["measured"] > 0.9 * chk.extra["exact_lower"]
    assert not dom.check_lloyd_step_monte_carlo(16, 2, 2, n=200_000, z_min=1e6).passed


def test_designed_checks_pass_and_fail() -> None:
    """Codebook-design checks: pass as shipped, fail when the scalar code / the bounds / G are perturbed."""
    assert dom.check_designed_beats_product(64, 2, 2).passed
    assert not dom.check_designed_beats_product(64, 2, 2, scalar_scale=0.9).passed
    assert dom.check_no_gain_one_bit_k2(64).passed
    assert not dom.check_no_gain_one_bit_k2(64, scalar_scale=1.05).passed
    recs = sob.check_sub_one_bit(((64, 8, 16),))
    assert all(r.passed for r in recs)
    assert not all(r.passed for r in sob.check_sub_one_bit(((64, 8, 16),), bound_scale=1.3))
    # top rate b = 3 here, where the gap is -0.154 dB (+0.075 dB at b = 4, the verify default; measured)
    hi = hr.check_designed_high_rate(64, 2, (1, 2, 3), tolerance_db=0.3)
    assert hi.passed and math.isfinite(hi.value)  # finite: the gaps shrink strictly with b
    assert not hr.check_designed_high_rate(64, 2, (1, 2, 3), tolerance_db=0.3, G=0.1).passed


def test_make_check_relations_and_nan() -> None:
    assert make_check("a", 1.0, 1.0, 0.0).passed
    assert not make_check("a", 1.0 + 1e-9, 1.0, 0.0).passed
    assert make_check("a", 0.5, 1.0, 0.0, "<").passed and not make_check("a", 1.0, 1.0, 0.0, "<").passed
    assert make_check("a", 2.0, 0.0, 1.0, ">").passed and not make_check("a", 1.0, 0.0, 1.0, ">").passed
    assert not make_check("a", math.nan, 0.0, math.inf, "<=").passed
    assert make_check("a", math.inf, 0.0, 1.0, "<=").as_record()["value"] == "inf"
    with pytest.raises(ValueError, match="relation"):
        make_check("a", 1.0, 1.0, 0.0, "~")


def test_verify_runner_reports_a_crashing_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that raises is a failed record, and the others still run."""

    def boom() -> Check:
        raise RuntimeError("kaput")

    monkeypatch.setattr(sb, "CHECKS", (sb.check_radius_law_symbolic, boom))
    checks = verify_mod.run_checks(["spherical_beta"])
    assert [c.passed for c in checks] == [True, False]
    assert "kaput" in checks[1].detail
    assert not verify_mod.all_passed(checks)
    assert "FAILED: 1" in verify_mod.format_report(checks)
    with pytest.raises(ValueError, match="unknown proof module"):
        verify_mod.run_checks(["nope"])


def test_cli_verify_json_and_exit_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``fibquant verify --json`` prints the records; exit status 1 when a check fails."""
    monkeypatch.setattr(sb, "CHECKS", (sb.check_radius_law_symbolic, sb.check_moments_symbolic))
    assert main(["verify", "--json", "--only", "spherical_beta"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 3 and all(r["passed"] for r in recs)
    assert all(set(r) == {"name", "passed", "value", "expected", "tolerance"} for r in recs)
    monkeypatch.setattr(sb, "CHECKS", (functools.partial(sb.check_radius_law_symbolic, exponent_shift=1),))
    assert main(["verify", "--only", "spherical_beta", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0/1 checks passed" in out
    assert main(["verify", "--only", "bogus"]) == 2
