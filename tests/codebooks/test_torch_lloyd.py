"""The torch design (``design_codebook(..., device=...)``), tested on the torch CPU device.

The CUDA path is the same code with another device; here every check runs on ``device="cpu"``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fibquant_theory import config
from fibquant_theory.codebooks.design import (
    _design_options,
    cache_path,
    design_codebook,
    design_samples,
)
from fibquant_theory.codebooks.torch_design import float32_rounded
from fibquant_theory.codebooks.torch_device import resolve_device
from fibquant_theory.codebooks.torch_lloyd import (
    TorchAssigner,
    _segment_sums,
    cell_sums_fixed_point,
    fixed_point_shift,
    lloyd_max_torch,
    nearest_codeword_torch,
)
from fibquant_theory.search.kernel import nearest_exhaustive

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
SMALL = {"n_train": 20_000, "n_heldout": 20_000}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on 2 shared cores, torch's OpenMP threads spin against each other (10-100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FIBQUANT_CACHE_DIR", str(folder))
    return folder


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ assignment
@pytest.mark.parametrize("k", [1, 2, 4, 8, 32])
def test_assignment_has_the_bits_of_the_cpu_direct_search(k: int) -> None:
    """Indices and float64 distances equal nearest_exhaustive's, for any candidate count and chunk size."""
    rng = np.random.default_rng(k)
    x = rng.normal(size=(1500, k)) / math.sqrt(k)
    pts = rng.normal(size=(97, k)) / math.sqrt(k)
    pts[5] = pts[2]  # an exact tie for every sample: the lowest index must win
    x[:10] = pts[:10]  # samples on codewords (distance 0)
    idx, dist = nearest_exhaustive(x, pts)
    for m in (1, 2, 4, 97):
        for rows in (7, 1500):
            got_i, got_d = nearest_codeword_torch(x, pts, chunk_rows=rows, candidates=m)
            assert _same(got_i, idx) and _same(got_d, dist), (m, rows)
    assert not (idx == 5).any()


def test_one_candidate_is_certified_for_almost_every_sample() -> None:
    """The certificate uses the lowest float32 score outside the candidates: with one candidate, only samples
    whose two best scores are within the error bound fall back to the full float64 search.

    Observed (k=8, N=4096, 20k Gaussian samples): 10 fallbacks with 1 candidate, 0 with 2 or 4; asserted: at
    most 200 (1 %).
    With every sample on a codeword duplicated at a higher index, every sample falls back.
    """
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.normal(size=(20_000, 8)) * 0.3)
    pts = torch.from_numpy(rng.normal(size=(4096, 8)) * 0.3)
    a = TorchAssigner(x, candidates=1)
    idx, dist = a.assign(pts)
    ref_i, ref_d = nearest_exhaustive(x.numpy(), pts.numpy())
    assert _same(idx.numpy(), ref_i) and _same(dist.numpy(), ref_d)
    assert a.n_fallback <= 200, a.n_fallback
    twins = torch.cat([pts, pts[:1]])  # codeword 4096 = codeword 0: an exact float32 tie for its samples
    b = TorchAssigner(x[ref_i == 0], candidates=1)
    got, _ = b.assign(twins)
    assert b.n_fallback == int((ref_i == 0).sum()) and bool((got == 0).all())


def test_the_assignment_does_not_depend_on_the_float32_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another BLAS (another summation order, FMA or not) rounds the float32 scores otherwise: imitated by
    perturbing every score by up to half the certified error bound, on samples placed at exact midpoints
    between codewords (near-ties). The indices and distances keep the CPU direct search's bits."""
    rng = np.random.default_rng(5)
    pts = rng.normal(size=(512, 8)) * 0.3
    pairs = rng.integers(0, 512, size=(2000, 2))
    x = np.concatenate([(pts[pairs[:, 0]] + pts[pairs[:, 1]]) / 2, rng.normal(size=(2000, 8)) * 0.3])
    ref_i, ref_d = nearest_exhaustive(x, pts)
    original = TorchAssigner._candidates
    noise = torch.Generator().manual_seed(0)

    def perturbed(self, scores, m):
        eps, _ = self._bounds(torch.from_numpy(pts))
        scores += ((torch.rand(scores.shape, generator=noise) - 0.5) * eps).float()
        return original(self, scores, m)

    monkeypatch.setattr(TorchAssigner, "_candidates", perturbed)
    for m in (1, 2, 4):
        got_i, got_d = nearest_codeword_torch(x, pts, candidates=m, chunk_rows=1000)
        assert _same(got_i, ref_i) and _same(got_d, ref_d), m


def test_a_single_codeword() -> None:
    got_i, got_d = nearest_codeword_torch(np.ones((5, 3)) * 0.1, np.zeros((1, 3)))
    assert got_i.tolist() == [0] * 5 and _same(got_d, nearest_exhaustive(np.ones((5, 3)) * 0.1, np.zeros((1, 3)))[1])


def test_assignment_ties_go_to_the_lowest_index() -> None:
    pts = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    x = np.array([[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [-0.5, -0.5]])
    for m in (1, 2, 4):
        idx, _ = nearest_codeword_torch(x, pts, candidates=m)
        assert idx.tolist() == [0, 2, 0, 1]


def test_precision_guard_refuses_inexact_float32_scores() -> None:
    """A float32 matmul less precise than the error bound (TF32, say) raises instead of mis-assigning."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(200, 4)) * 0.4)
    pts = torch.from_numpy(rng.normal(size=(16, 4)) * 0.4)
    a = TorchAssigner(x)
    eps, _ = a._bounds(pts)
    pa = torch.cat([-pts, 0.5 * (pts * pts).sum(1, keepdim=True)], 1).T.float()
    scores = a.xa @ pa
    a._guard(scores, pts, eps)  # the true float32 scores pass
    with pytest.raises(RuntimeError, match="less precise than assumed"):
        a._guard(scores + 1e-3, pts, eps)


# ------------------------------------------------------------------ fixed point
def test_fixed_point_shift_cannot_overflow_int64() -> None:
    for n, top in [(1, 1.0), (20_000, 1.0), (2**23, 0.999), (3, 2.5), (2**20, 1e-6)]:
        s = fixed_point_shift(n, top)
        e = math.frexp(top)[1]
        assert n * 2 ** (s + e) <= 2**62 and top < 2**e
        # the worst case: n values all at the largest magnitude, summed in int64
        q = torch.round(torch.full((n,), top, dtype=torch.float64) * 2.0**s).to(torch.int64)
        assert int(q.sum()) == n * round(top * 2**s) < 2**63
    with pytest.raises(ValueError, match="fraction bits"):
        fixed_point_shift(2**50, 1000.0)
    with pytest.raises(ValueError, match="max_abs"):
        fixed_point_shift(10, math.nan)


def test_integer_cell_sums_equal_the_float64_sums_within_the_fixed_point_bound() -> None:
    rng = np.random.default_rng(1)
    n, k, n_code = 50_000, 4, 33
    x = rng.uniform(-1, 1, size=(n, k))
    idx = rng.integers(0, n_code - 1, size=n)  # the last cell stays empty
    s = fixed_point_shift(n, float(np.abs(x).max()))
    xq = torch.round(torch.from_numpy(x) * 2.0**s).to(torch.int64)
    sums, counts = cell_sums_fixed_point(xq, torch.from_numpy(idx), n_code)
    assert counts.tolist() == np.bincount(idx, minlength=n_code).tolist() and counts[-1] == 0
    for j in range(n_code):
        cell = x[idx == j]
        ref = np.array([math.fsum(cell[:, t]) for t in range(k)])
        got = np.array([math.ldexp(int(v), -s) for v in sums[j]])
        assert np.all(np.abs(got - ref) <= len(cell) * 2.0 ** (-s - 1)), j
    # integer addition is associative: any order of the samples gives the same bits
    perm = torch.from_numpy(rng.permutation(n))
    sums2, counts2 = cell_sums_fixed_point(xq[perm], torch.from_numpy(idx)[perm], n_code)
    assert torch.equal(sums, sums2) and torch.equal(counts, counts2)
    # the sort-and-prefix-sum route (for a build without int64 index_add_) gives the same integers
    assert torch.equal(_segment_sums(xq[perm], torch.from_numpy(idx)[perm], counts), sums)


# ------------------------------------------------------------------ Lloyd and the design
def test_design_is_a_lloyd_fixed_point() -> None:
    """With tol=0 the loop runs until the distortion stops decreasing: every codeword is its cell's mean.

    Observed: the final run stopped by "no_improvement" after 74 iterations (s = 47); max |c_j - mean_j|
    = 1.1e-16, against the asserted bound 2^-(s+1) + 4e-16 = 3.9e-15.
    """
    cb = design_codebook(16, 2, 16, n_restarts=1, tol=0.0, max_iter=1000, device="cpu", cache=False, **SMALL)
    assert cb.params["final_stopped"] == "no_improvement", cb.params["final_stopped"]
    train, _ = design_samples(16, 2, 16, 0, cb.params["n_train_used"], SMALL["n_heldout"])
    idx, _ = nearest_exhaustive(train, cb.points)
    s = cb.params["fixed_point_shift"]
    for j in range(16):
        cell = train[idx == j]
        mean = np.array([math.fsum(cell[:, t]) for t in range(2)]) / len(cell)
        assert np.all(np.abs(cb.points[j] - mean) <= 2.0 ** (-s - 1) + 4e-16), (j, cb.points[j] - mean)


@pytest.mark.parametrize(("args", "observed"), [((16, 2, 16), 0.0983690053429485), ((32, 4, 64), 0.17992578260720887)])
def test_design_matches_the_cpu_design(args: tuple[int, int, int], observed: float) -> None:
    """Same samples, same initial codebooks, exact assignment: the torch design follows the CPU one.

    Observed (20k training and held-out samples): the same held-out MSE to the last digit
    (0.0983690053429485 at d=16,k=2,N=16; 0.17992578260720887 at d=32,k=4,N=64), the same
    winner and iteration counts, points within 3.4e-16 (the centroids' rounding differs).
    Asserted margin: held-out and training MSE within 1e-9 relative, points within 1e-12.
    """
    cpu = design_codebook(*args, cache=False, **SMALL)
    tor = design_codebook(*args, device="cpu", cache=False, **SMALL)
    assert cpu.heldout_mse == pytest.approx(observed, rel=1e-12)  # the CPU design itself is pinned elsewhere
    assert tor.heldout_mse == pytest.approx(cpu.heldout_mse, rel=1e-9)
    assert tor.train_mse == pytest.approx(cpu.train_mse, rel=1e-9)
    assert np.max(np.abs(tor.points - cpu.points)) <= 1e-12
    assert (tor.params["init"], tor.params["final_n_iter"]) == (cpu.params["init"], cpu.params["final_n_iter"])
    assert [r["n_iter"] for r in tor.params["restarts"]] == [r["n_iter"] for r in cpu.params["restarts"]]
    assert tor.params["implementation"] == "torch" and tor.params["device_type"] == "cpu"
    assert _same(tor.initial_points, cpu.initial_points)


def test_two_runs_and_any_chunking_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    a = design_codebook(32, 4, 64, device="cpu", cache=False, **SMALL)
    b = design_codebook(32, 4, 64, device="cpu", cache=False, **SMALL)
    assert a.content_hash == b.content_hash and _same(a.points, b.points)
    monkeypatch.setattr(config, "TORCH_SCORE_ELEMENTS", 64 * 333)  # 333 samples per chunk instead of all
    monkeypatch.setattr(config, "TORCH_CANDIDATES", 3)  # the topk path instead of the two min reductions
    c = design_codebook(32, 4, 64, device="cpu", cache=False, **SMALL)
    assert c.content_hash == a.content_hash and _same(c.points, a.points)


def test_time_budget_stops_early(_isolated_cache: Path) -> None:
    full = design_codebook(32, 4, 64, device="cpu", cache=False, **SMALL)
    assert full.params["final_n_iter"] > 1 and not full.params["stopped_by_time_budget"]
    cut = design_codebook(32, 4, 64, device="cpu", time_budget=0, **SMALL)
    assert cut.params["stopped_by_time_budget"] and cut.params["final_stopped"] == "time_budget"
    assert cut.params["final_n_iter"] == 1 and cut.params["restarts"][0]["n_iter"] == 1
    assert [r.get("skipped", False) for r in cut.params["restarts"]] == [False, True, True]
    assert not list(_isolated_cache.glob("*.npz"))  # a design cut by the clock is not cached
    rng = np.random.default_rng(0)
    res = lloyd_max_torch(rng.normal(size=(8, 2)) * 0.3, rng.normal(size=(4000, 2)) * 0.3, time_budget=0, tol=0)
    assert (res.n_iter, res.stopped, res.converged) == (1, "time_budget", False)


def test_torch_designs_have_their_own_cache_file(_isolated_cache: Path) -> None:
    a = design_codebook(16, 2, 8, device="cpu", **SMALL)
    path = cache_path(16, 2, 8, device="cpu", **SMALL)
    assert path.exists() and "-torch-" in path.name and path != cache_path(16, 2, 8, **SMALL)
    b = design_codebook(16, 2, 8, device="cpu", **SMALL)
    assert b == a and b.design_seconds == a.design_seconds  # loaded, not designed again
    assert a.params["options"]["implementation"] == "torch"
    cpu = design_codebook(16, 2, 8, **SMALL)
    assert "implementation" not in cpu.params["options"] and cpu != a
    assert len(list(_isolated_cache.glob("*.npz"))) == 2


def test_the_numba_design_options_are_unchanged() -> None:
    """The Numba path's cache key and hash read these options: device and time_budget are not among them."""
    assert list(_design_options()) == [
        "n_train", "n_heldout", "samples_per_codeword", "n_restarts", "max_iter", "tol", "restart_tol",
        "directions", "n_search", "assign",
    ]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "meta", 42, "cpu-Numba"])
def test_bad_devices_are_refused(device: object) -> None:
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)
    with pytest.raises(ValueError, match="device"):
        design_codebook(16, 2, 8, device=device, cache=False, **SMALL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        design_codebook(16, 2, 8, device="cuda", cache=False, **SMALL)


def test_numba_devices_need_no_torch_device() -> None:
    assert resolve_device(None) is None and resolve_device("cpu-numba") is None
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"family": "d4", "device": "cpu"}, "only to the Lloyd-designed family"),
        ({"time_budget": 5.0}, "applies only to the torch design"),
        ({"time_budget": -1.0, "device": "cpu"}, "time_budget must be"),
        ({"time_budget": math.nan, "device": "cpu"}, "time_budget must be"),
        ({"time_budget": "soon", "device": "cpu"}, "time_budget must be"),
    ],
)
def test_bad_design_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        design_codebook(32, 4, 48, cache=False, **{**SMALL, **kwargs})


@pytest.mark.parametrize(
    ("args", "match"), [((16, 2, 1), "n_codewords must be >= 2"), ((16, 3, 8), "must divide"), ((16, 32, 8), "exceeds"),
                        ((16, 2, 2**31), "n_codewords must be <=")],
)
def test_bad_sizes_raise_before_any_work(args: tuple[int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        design_codebook(*args, device="cpu", cache=False)


def test_lloyd_max_torch_refuses_bad_samples() -> None:
    pts = np.zeros((4, 2))
    with pytest.raises(ValueError, match="NaN or Inf"):
        lloyd_max_torch(pts, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="NaN or Inf"):
        lloyd_max_torch(pts, torch.full((10, 2), math.inf, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least as many samples"):
        lloyd_max_torch(pts, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="needs a torch device"):
        lloyd_max_torch(pts, np.zeros((10, 2)), device=None)
    with pytest.raises(ValueError, match="float64 tensor"):
        lloyd_max_torch(pts, torch.zeros((10, 2), dtype=torch.float32))


def test_import_fibquant_does_not_import_torch() -> None:
    code = (
        "import sys, fibquant_theory, fibquant_theory.codebooks.torch_design, fibquant_theory.codebooks.shipped\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


# ------------------------------------------------------------------ float32 rounding (shipping)
def test_float32_rounded_keeps_the_design_and_recomputes_its_distortions() -> None:
    """Observed (d=32, k=4, N=64): held-out and training MSE change by 3.0e-11 and 3.5e-11 relative; asserted 1e-6."""
    cb = design_codebook(32, 4, 64, device="cpu", cache=False, **SMALL)
    r = float32_rounded(cb, "cpu")
    assert np.array_equal(r.points, cb.points.astype(np.float32).astype(np.float64))
    assert np.array_equal(r.initial_points, cb.initial_points.astype(np.float32).astype(np.float64))
    assert r.params["stored_as"] == "float32" and r.params["designed_content_hash"] == cb.content_hash
    assert r.heldout_mse == pytest.approx(cb.heldout_mse, rel=1e-6) and r.heldout_mse != cb.heldout_mse
    assert r.train_mse == pytest.approx(cb.train_mse, rel=1e-6)
    _, heldout = design_samples(32, 4, 64, 0, cb.params["n_train_used"], SMALL["n_heldout"])
    _, dist = nearest_exhaustive(heldout, r.points)  # the CPU search and mean give the recorded bits
    assert r.heldout_mse == 8 * float(dist.mean())
    assert r.structure == cb.structure and r.content_hash != cb.content_hash
    with pytest.raises(ValueError, match="already rounded"):
        float32_rounded(r, "cpu")
    with pytest.raises(ValueError, match="needs a torch device"):
        float32_rounded(cb, None)
