"""The same bits on every x86-64 machine: golden hashes, and the same run under imitated CPUs.

The design path (sampling, shell search, Lloyd, held-out MSE), the codecs and the
rate–distortion estimate use no BLAS, no fastmath ``reassoc``/``contract``, no C
library transcendental functions and no NumPy sampler tails (see
:mod:`fibquant_theory.numerics.fixed_order` and :mod:`fibquant_theory.numerics.portable_math`). The
literal hashes below were written down from a run on an AMD EPYC (Zen 5, AVX-512)
machine on 2026-12-02 (Python 3.11.7, NumPy 2.4.6, SciPy 1.17.1, Numba 0.68.1), and all of
them were reproduced the same day on an Intel Xeon (the GPU machine's host: Python
3.12.3, NumPy 2.5.2, SciPy 1.18.1, Numba 0.68.0). :func:`test_same_bits_under_imitated_cpus` re-runs the probe
in subprocesses that imitate other CPUs on this one: Numba code compiled for a
baseline x86-64 (SSE2, no FMA) or for Haswell (AVX2 + FMA), glibc's libm without
its FMA/AVX variants, NumPy without its AVX2/AVX-512 loops, other OpenBLAS kernels
and one or two threads. Before this file existed, a design differed between an
Intel and an AMD machine (e.g. the docs' 0.10648416146734999 vs 0.10641238500474778).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fibquant_theory.codebooks.design import design_codebook

from .reproducibility_probe import fingerprint

#: Content hashes of designs with the default options (written down from a run; see the module docstring).
GOLDEN_CODEBOOKS = {
    (16, 2, 16): "31d5e00fd6978293407c2491570eedcffce0cf1f8197d6dc21488dad0550fbc6",
    (64, 4, 256): "98b635c3cae9fcf78638bc7c01d87e98dc41b16960cfb7f9142ed5583e0a1dcb",
    (64, 32, 128): "d108628bbd5af9363394376c0731138c1ba2cce11edb49b77133d56c87dd7386",
}

#: Every fingerprint of tests/reproducibility_probe.py (16-digit SHA-256 prefixes of the result bytes).
GOLDEN = {
    **{f"codebook{args}": h for args, h in GOLDEN_CODEBOOKS.items()},
    "TurboQuantMSE": "88469b8c2c5a44ea",
    "TurboQuantProd": "1b78ca5fdb9ba02b",
    "beta_quantile_radii": "5f78ad398e13e5aa",
    "clustered": "5484ac5085cd29ee",
    "directions": "834a8df41b7610eb",
    "fibquant_haar_codes": "64ba330249357e8c",
    "fibquant_haar_decode": "b004bc8ed87b1fc3",
    "fibquant_haar_inner": "58e83ab8dfcf0568",
    "fibquant_hadamard_codes": "2f6cc0ccebfb51a8",
    "fibquant_hadamard_decode": "a35fe39a0dc85bf3",
    "fibquant_hadamard_inner": "5dbc7f3028c79c29",
    "haar_orthogonal(128)": "4d68085436c0afa1",
    "kivi": "d798c8bb5e888caa",
    "lloyd_max_scalar": "f696337f633bc8ac",
    "randomized_hadamard": "f8ff3b04149b3592",
    "rate_distortion": "[0.09783166011184152, 0.0063092509209231595, -0.00012271646894314374]",
    "sample_unit_vectors": "3ad3333dd80e9ee8",
    "spherical_beta_radial": "ac10899908c9143f",
    "standard_normal": "ca3b4eeade6bd7c2",
}

_NO_SIMD = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR AVX2 FMA3"
#: Environments that make this machine compute like another one.
IMITATED = {
    "baseline-x86-64": {
        "NUMBA_CPU_NAME": "generic",
        "NUMBA_NUM_THREADS": "1",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX,-FMA4",
        "NPY_DISABLE_CPU_FEATURES": _NO_SIMD,
        "OPENBLAS_CORETYPE": "Prescott",
    },
    "haswell": {"NUMBA_CPU_NAME": "haswell", "NUMBA_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell"},
}


@pytest.mark.parametrize("args", sorted(GOLDEN_CODEBOOKS), ids=lambda a: "d{}k{}N{}".format(*a))
def test_golden_codebook_hash(args: tuple[int, int, int]) -> None:
    assert design_codebook(*args, cache=False).content_hash == GOLDEN_CODEBOOKS[args]


def test_fingerprint_is_golden() -> None:
    assert fingerprint() == GOLDEN


def test_same_bits_under_imitated_cpus(tmp_path: Path) -> None:
    """Both imitations run at once (one per core); each compiles its kernels afresh (about 40 s)."""
    root = Path(__file__).resolve().parents[1]
    procs = {}
    for name, extra in IMITATED.items():
        env = dict(os.environ, **extra, NUMBA_CACHE_DIR=str(tmp_path / name), PYTHONHASHSEED="0")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.reproducibility_probe"],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        got = json.loads(out)
        diff = {k: (got.get(k), v) for k, v in GOLDEN.items() if got.get(k) != v}
        assert not diff, (name, diff)
