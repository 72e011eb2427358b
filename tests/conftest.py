"""Suite-wide settings: deterministic Hypothesis, an isolated codebook cache, the ``gpu`` marker.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``fibquant``, the default, is derandomized (the
same examples on every run and machine, each test's own ``max_examples``); ``thorough``
(``make verify-thorough``) draws fresh random examples and raises every property test's
budget to ``min(THOROUGH_MAX_EXAMPLES, THOROUGH_FACTOR * its own max_examples)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and machine.
settings.register_profile(
    "fibquant",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
#: ``thorough``: the examples of a test without its own ``max_examples``, and the cap of the raised budgets.
THOROUGH_MAX_EXAMPLES = 1000
#: ``thorough``: a test's own ``max_examples`` (its CI budget) is multiplied by this, up to the cap.
THOROUGH_FACTOR = 20
# Random property tests with many more examples (`make verify-thorough`): a fresh seed every run.
settings.register_profile(
    "thorough",
    derandomize=False,
    max_examples=THOROUGH_MAX_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fibquant")
settings.load_profile(PROFILE)

# Never read or write the user's codebook cache from the test suite.
os.environ["FIBQUANT_CACHE_DIR"] = tempfile.mkdtemp(prefix="fibquant-test-cache-")


def _has_real_gpu() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def thorough_budget(own: int) -> int:
    """The ``thorough`` profile's ``max_examples`` for a test whose own budget is ``own``."""
    return max(own, min(THOROUGH_MAX_EXAMPLES, THOROUGH_FACTOR * own))


def _raise_hypothesis_budgets(items: list[pytest.Item]) -> None:
    """``thorough``: raise each property test's explicit ``@settings(max_examples=...)`` (Hypothesis keeps those).

    Hypothesis reads the settings of a test from its ``_hypothesis_internal_use_settings``
    attribute when the test runs; a test without it is not a property test and is left alone.
    """
    for item in items:
        fn = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if own is not None and own.max_examples < thorough_budget(own.max_examples):
            fn._hypothesis_internal_use_settings = settings(
                own, max_examples=thorough_budget(own.max_examples), derandomize=False, deadline=None
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = os.environ.get("FIBQUANT_SIM_SHARD")  # "i/n": every n-th test from the i-th (tests/helpers.run_simulator_shards)
    if shard:
        i, n = (int(v) for v in shard.split("/"))
        config.hook.pytest_deselected(items=[it for j, it in enumerate(items) if j % n != i])
        items[:] = [it for j, it in enumerate(items) if j % n == i]
    if PROFILE == "thorough":
        _raise_hypothesis_budgets(items)
    # the marker itself, not `"gpu" in item.keywords`: keywords also hold the node names, so every test
    # under tests/gpu/ (simulator and static tests included) would be skipped
    if any(item.get_closest_marker("gpu") for item in items) and not _has_real_gpu():
        skip = pytest.mark.skip(reason="needs a real CUDA GPU (none found: nvidia-smi missing or failing)")
        for item in items:
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)
