"""The clustered top-T GPU search under the Numba CUDA simulator: the CPU kernel's indices, exactly.

As in ``test_simulator.py``, the simulator must be enabled before :mod:`numba.cuda`
is first imported, so :func:`test_clustered_kernel_under_the_simulator` re-runs
this file in a fresh interpreter with ``NUMBA_ENABLE_CUDASIM=1``; the other tests
only run there, on tiny inputs (every CUDA thread is a Python thread).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

INNER = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and os.environ.get("FIBQUANT_GPU_SIM_INNER") == "1"
inner = pytest.mark.skipif(not INNER, reason="runs inside the simulator subprocess of test_clustered_kernel_under_the_simulator")


@pytest.mark.skipif(INNER, reason="this is the driver")
def test_clustered_kernel_under_the_simulator() -> None:
    from tests.helpers import run_simulator_shards

    passed, skipped, out = run_simulator_shards(__file__)
    assert passed >= 10 and skipped == 1, out  # only the driver skips


# ------------------------------------------------------------------------------------------- inner
def _codebook(n_codewords: int = 48, k: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.standard_normal((n_codewords, k))
    return pts / np.linalg.norm(pts, axis=1, keepdims=True) * rng.uniform(0.2, 1.0, (n_codewords, 1))


def _blocks(n: int, k: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)) * 0.5


@inner
@pytest.mark.parametrize(("layout", "lanes", "top", "spill"), [
    ("buckets", 8, 3, 2), ("buckets", 8, 1, 1), ("per-block", 1, 2, 1), ("per-block", 4, 3, 2), ("per-block", 32, 3, 1),
])
def test_float64_gives_the_cpu_kernel_indices(layout, lanes, top, spill):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(_codebook(), n_clusters=8, top=top, spill=spill, seed=3)
    y = _blocks(9 if lanes == 32 else 37)  # 37: not a multiple of the blocks per thread block
    want, _ = cpu.search(y)
    got = GPUClusteredSearch(cpu, lanes=lanes, layout=layout).search(y)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@inner
@pytest.mark.parametrize("lanes", [2, 8])
def test_all_clusters_is_the_exhaustive_search_and_ties_go_to_the_lowest_index(lanes):
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch

    half = _codebook(24, seed=4)
    pts = np.concatenate([half, half])  # every codeword twice: exact ties, won by the first copy
    cpu = ClusteredSearch(pts, n_clusters=6, top=6, seed=1)
    y = np.concatenate([_blocks(20, seed=5), pts[[30, 2, 47]]])
    want, _ = ExhaustiveSearch(pts).search(y)
    assert (want < 24).all()
    got = GPUClusteredSearch(cpu, lanes=lanes, layout="per-block").search(y)
    np.testing.assert_array_equal(got, want)
    # fewer clusters than lanes (idle lanes), top = K
    small = ClusteredSearch(pts, n_clusters=3, top=3, seed=2)
    np.testing.assert_array_equal(GPUClusteredSearch(small, lanes=lanes, layout="per-block").search(y), want)
    # bucketed: the same ties in every cluster's members, and between clusters (the lexicographic combine)
    np.testing.assert_array_equal(GPUClusteredSearch(cpu, layout="buckets").search(y), want)


@inner
def test_buckets_in_rounds_with_a_member_chunk_and_tied_parents(monkeypatch):
    """Several rounds, clusters longer than the staged chunk, and ties between parents and between clusters."""
    from fibquant_theory.gpu import cluster_buckets
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch

    monkeypatch.setattr(cluster_buckets, "ROUND_BLOCKS", 11)  # 3 rounds of 11, 11 and 8
    monkeypatch.setattr(cluster_buckets, "MEMBER_BYTES", 32 * (4 * 8 + 8 + 4))  # 32 staged members at a time
    cluster_buckets.bucket_kernels.cache_clear()
    try:
        cpu = ClusteredSearch(_codebook(96, seed=8), n_clusters=2, top=1, seed=0)
        assert np.diff(cpu.index.offsets).max() > 32
        y = _blocks(30, seed=9)
        np.testing.assert_array_equal(GPUClusteredSearch(cpu).search(y), cpu.search(y)[0])
    finally:
        cluster_buckets.bucket_kernels.cache_clear()
    # +-e_i / 2 in their own clusters: at y = 0 every parent and every codeword scores 1/4, so the CPU keeps
    # the clusters 0, 1, 2 (lowest c first) and then the lowest codeword of them; a tie broken the other way
    # in the parents' network or in the combine gives another index
    pts = 0.5 * np.concatenate([np.eye(4), -np.eye(4)])[[5, 0, 7, 2, 4, 1, 6, 3]]
    own = ClusteredSearch(pts, n_clusters=8, top=3, seed=0)
    y = np.zeros((4, 4))
    y[1, 0], y[2, 3] = 1e-3, -1e-3
    want, _ = own.search(y)
    assert want[0] == 0 and want[3] == 0
    np.testing.assert_array_equal(GPUClusteredSearch(own).search(y), want)


@inner
def test_float32_agrees_and_top_can_be_changed_per_call():
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.clustered import nearest_clustered
    from fibquant_theory.search.encoders import ClusteredSearch

    cpu = ClusteredSearch(_codebook(), n_clusters=8, top=2, seed=0)
    y = _blocks(30, seed=6)
    got32 = GPUClusteredSearch(cpu, precision="float32", lanes=4).search(y.astype(np.float32))
    assert np.mean(got32 == cpu.search(y)[0]) >= 0.9  # observed 1.0
    gpu = GPUClusteredSearch(cpu, lanes=4)
    np.testing.assert_array_equal(gpu.search(y, top=5), nearest_clustered(y, cpu.index, 5)[0])


@inner
def test_bad_input_is_refused():
    from fibquant_theory.gpu._compat import cuda
    from fibquant_theory.gpu.clustered_encode import GPUClusteredSearch
    from fibquant_theory.search.encoders import ClusteredSearch, ExhaustiveSearch

    cpu = ClusteredSearch(_codebook(), n_clusters=8, top=2)
    gpu = GPUClusteredSearch(cpu, lanes=8)
    y = _blocks(12)
    y[7, 2] = np.nan
    y[9, 0] = np.inf
    with pytest.raises(ValueError, match="first bad row 7"):
        gpu.search(y)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        gpu.search(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="top"):
        gpu.search(_blocks(3), top=9)
    with pytest.raises(ValueError, match="top"):
        gpu.search(_blocks(3), top=0)
    with pytest.raises(ValueError, match="float64"):
        gpu.search(cuda.to_device(np.zeros((3, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="precision"):
        GPUClusteredSearch(cpu, precision="float16")
    with pytest.raises(ValueError, match="lanes"):
        GPUClusteredSearch(cpu, lanes=3)
    with pytest.raises(ValueError, match="layout"):
        GPUClusteredSearch(cpu, layout="tiles")
    with pytest.raises(TypeError, match="ClusteredSearch"):
        GPUClusteredSearch(ExhaustiveSearch(_codebook()))
    assert gpu.search(np.zeros((0, 4))).shape == (0,)
    # device input and output
    dev = gpu.search(cuda.to_device(_blocks(5)), to_host=False)
    np.testing.assert_array_equal(dev.copy_to_host(), cpu.search(_blocks(5))[0])
