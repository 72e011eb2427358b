"""Checks that several test modules share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def byte_flip_outcomes(raw: bytes, path: Path, load: Callable[[Path], Any], expected: Any) -> dict[str, int]:
    """Flip every byte of ``raw`` in turn (``^ 0xFF``), write the result to ``path`` and ``load`` it.

    Returns how many flips raised ``ValueError`` (``"error"``) and how many loaded
    ``expected`` again (``"same"``); a flip that loads anything else fails the test.
    """
    outcomes = {"error": 0, "same": 0}
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            back = load(path)
        except ValueError:
            outcomes["error"] += 1
            continue
        assert back == expected, i  # never a different result without an error
        outcomes["same"] += 1
    return outcomes


def assert_rejects_nan_and_inf(call: Callable[[np.ndarray], Any], x: np.ndarray, where: tuple[int, ...], nan_match: str) -> None:
    """``call(x)`` raises ``ValueError`` matching ``nan_match`` with ``x[where] = nan``, and "NaN or Inf" with ``+inf`` there.

    ``x`` is changed in place (it keeps the ``inf``).
    """
    x[where] = np.nan
    with pytest.raises(ValueError, match=nan_match):
        call(x)
    x[where] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(x)


def tiny_pareto_setup(seeds: tuple[int, ...]) -> tuple[Any, dict[str, Any], Any]:
    """A 2-layer random-weight Llama (seeded), one 32-token text and a small KV protocol: the kv-pareto tests' inputs."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from fibquant_theory.kv.evaluate import Protocol

    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    texts = {"a": torch.randint(0, 61, (1, 32), generator=torch.Generator().manual_seed(1))}
    return model, texts, Protocol(ctx=32, stride=32, chunk=8, seeds=seeds, fidelity_tokens=16)


def run_simulator_shards(test_file: str, shards: int = 2, timeout: float = 1200.0) -> tuple[int, int, str]:
    """Run ``test_file`` under the Numba CUDA simulator in ``shards`` parallel interpreters (CI has two cores).

    Each interpreter runs every ``shards``-th collected test (``FIBQUANT_SIM_SHARD=i/shards``,
    applied in ``tests/conftest.py``); the simulator is single-threaded Python, so two of them
    take about half the time of one.

    Returns
    -------
    passed, skipped : int
        Summed over the shards.
    output : str
        The end of every shard's output (for an assertion message).

    Raises
    ------
    AssertionError
        A shard failed (its output is in the message).
    """
    import os
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    procs = []
    for i in range(shards):
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FIBQUANT_GPU_SIM_INNER="1", FIBQUANT_SIM_SHARD=f"{i}/{shards}")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", "-W",
             "ignore::FutureWarning", test_file], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    passed = skipped = 0
    tails = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out[-6000:] + err[-3000:]
        summary = out.strip().splitlines()[-1]
        tails.append(out[-1500:])
        passed += int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0
        skipped += int(m.group(1)) if (m := re.search(r"(\d+) skipped", summary)) else 0
    return passed, skipped, "\n".join(tails)
