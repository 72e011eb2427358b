"""The Hypothesis profiles of tests/conftest.py: derandomized CI default, ``thorough`` with raised budgets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests import conftest


def test_profiles_are_registered() -> None:
    ci, thorough = settings.get_profile("fibquant"), settings.get_profile("thorough")
    assert ci.derandomize and ci.deadline is None
    assert not thorough.derandomize and thorough.deadline is None
    assert thorough.max_examples == conftest.THOROUGH_MAX_EXAMPLES == 1000


def test_thorough_raises_an_explicit_budget_and_runs_it() -> None:
    calls: list[int] = []

    @settings(max_examples=8, database=None)
    @given(st.integers())
    def prop(x: int) -> None:
        calls.append(x)

    class Item:
        obj = prop

    conftest._raise_hypothesis_budgets([Item()])
    raised = prop._hypothesis_internal_use_settings
    assert raised.max_examples == 8 * conftest.THOROUGH_FACTOR and not raised.derandomize
    prop()
    assert len(calls) >= 8 * conftest.THOROUGH_FACTOR
    assert [conftest.thorough_budget(n) for n in (1, 150, 2000)] == [20, 1000, 2000]
