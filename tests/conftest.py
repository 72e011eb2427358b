"""Suite-wide settings: deterministic Hypothesis, an isolated codebook cache, the ``gpu`` marker."""

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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fibquant"))

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the marker itself, not `"gpu" in item.keywords`: keywords also hold the node names, so every test
    # under tests/gpu/ (simulator and static tests included) would be skipped
    if any(item.get_closest_marker("gpu") for item in items) and not _has_real_gpu():
        skip = pytest.mark.skip(reason="needs a real CUDA GPU (none found: nvidia-smi missing or failing)")
        for item in items:
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(skip)
