"""The clustered top-T search on a real CUDA GPU (``gpu`` marker: skipped without a GPU).

The float64 kernel gives the CPU kernel's indices exactly (no fused multiply-add,
no reassociation); with every cluster searched, the exhaustive search's.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

D, K, N = 128, 8, 4096


@pytest.fixture(scope="module")
def points():
    from fibquant_theory.experiments.encoder_table import initial_codebook

    return initial_codebook(D, K, N).points


@pytest.fixture(scope="module")
def blocks():
    from fibquant_theory.theory.source import SphericalBeta

    return SphericalBeta(D, K).rvs(30_000, seed=3)


@pytest.mark.parametrize("lanes", [1, 8, 32])
def test_float64_is_the_cpu_kernel(points, blocks, lanes):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(points, n_clusters=64, top=8, spill=1 if lanes != 8 else 2)
    want, _ = cpu.search(blocks)
    np.testing.assert_array_equal(GPUClusteredSearch(cpu, lanes=lanes).search(blocks), want)


def test_every_cluster_is_the_exhaustive_search(points, blocks):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch
    from fibquant_theory.search.kernel import nearest_exhaustive

    y = blocks[:3000]
    want, _ = nearest_exhaustive(y, points, score="expanded")
    for n_clusters in (1, 16):
        cpu = ClusteredSearch(points, n_clusters=n_clusters, top=n_clusters)
        np.testing.assert_array_equal(GPUClusteredSearch(cpu, lanes=32).search(y), want)


def test_float32_nearly_always_agrees_and_torch_input(points, blocks):
    torch = pytest.importorskip("torch")
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(points, n_clusters=64, top=8)
    want, _ = cpu.search(blocks)
    got32 = GPUClusteredSearch(cpu, precision="float32").search(blocks.astype(np.float32))
    assert np.mean(got32 == want) >= 0.995
    t = torch.as_tensor(blocks, device="cuda")
    got = GPUClusteredSearch(cpu).search(t)
    np.testing.assert_array_equal(got, want)


def test_nan_rows_are_reported(points, blocks):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    gpu = GPUClusteredSearch(ClusteredSearch(points, n_clusters=64, top=8))
    y = blocks[:1000].copy()
    y[[600, 333], 2] = np.nan
    with pytest.raises(ValueError, match="first bad row 333"):
        gpu.search(y)
