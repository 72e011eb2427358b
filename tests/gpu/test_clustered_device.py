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


@pytest.mark.parametrize(("layout", "lanes", "spill"), [("buckets", 8, 1), ("buckets", 8, 2), ("per-block", 1, 1),
                                                     ("per-block", 8, 2), ("per-block", 32, 1)])
def test_float64_is_the_cpu_kernel(points, blocks, layout, lanes, spill):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(points, n_clusters=64, top=8, spill=spill)
    want, _ = cpu.search(blocks)
    np.testing.assert_array_equal(GPUClusteredSearch(cpu, lanes=lanes, layout=layout).search(blocks), want)


def test_every_cluster_is_the_exhaustive_search(points, blocks):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch
    from fibquant_theory.search.kernel import nearest_exhaustive

    y = blocks[:3000]
    want, _ = nearest_exhaustive(y, points, score="expanded")
    for n_clusters in (1, 16):
        cpu = ClusteredSearch(points, n_clusters=n_clusters, top=n_clusters)
        for layout in ("buckets", "per-block"):
            np.testing.assert_array_equal(GPUClusteredSearch(cpu, lanes=32, layout=layout).search(y), want)


def test_float32_nearly_always_agrees_and_torch_input(points, blocks):
    torch = pytest.importorskip("torch")
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(points, n_clusters=64, top=8)
    want, _ = cpu.search(blocks)
    for layout in ("buckets", "per-block"):
        got32 = GPUClusteredSearch(cpu, precision="float32", layout=layout).search(blocks.astype(np.float32))
        assert np.mean(got32 == want) >= 0.995
    t = torch.as_tensor(blocks, device="cuda")
    got = GPUClusteredSearch(cpu).search(t)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layout", ["buckets", "per-block"])
def test_nan_rows_are_reported(points, blocks, layout):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    gpu = GPUClusteredSearch(ClusteredSearch(points, n_clusters=64, top=8), layout=layout)
    y = blocks[:1000].copy()
    y[[600, 333], 2] = np.nan
    with pytest.raises(ValueError, match="first bad row 333"):
        gpu.search(y)


def test_buckets_in_several_rounds_and_a_top_past_the_network(points, blocks, monkeypatch):
    """Rounds of fewer blocks give the same indices; a ``top`` above MAX_TOP runs per block, with the same result."""
    from fibquant_theory.gpu import cluster_buckets
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.clustered import nearest_clustered
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(points, n_clusters=64, top=8)
    want, _ = cpu.search(blocks)
    gpu = GPUClusteredSearch(cpu)
    monkeypatch.setattr(cluster_buckets, "ROUND_BLOCKS", 7_001)  # 5 rounds, the last one short
    np.testing.assert_array_equal(gpu.search(blocks), want)
    monkeypatch.undo()
    np.testing.assert_array_equal(gpu.search(blocks), want)
    top = cluster_buckets.MAX_TOP + 4
    np.testing.assert_array_equal(gpu.search(blocks[:2000], top=top), nearest_clustered(blocks[:2000], cpu.index, top)[0])
