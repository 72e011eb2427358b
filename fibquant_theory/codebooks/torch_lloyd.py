r"""Lloyd–Max on a torch device (CUDA or CPU): an exact assignment and integer cell sums, the same bits on every run.

The torch implementation of :func:`~fibquant_theory.codebooks.design.design_codebook`
(``device="cuda"``, ``"cuda:1"``, or ``"cpu"`` for testing) runs the Lloyd iterations
of :mod:`~fibquant_theory.codebooks.lloyd` with these two steps:

**assignment** (:class:`TorchAssigner`) — in chunks of samples, float32 scores
:math:`f_j = \|c_j\|^2/2 - \langle x, c_j\rangle` by one matrix product of the augmented
rows :math:`(x, 1)` and :math:`(-c_j, \|c_j\|^2/2)` (TF32 disabled), the ``m`` smallest
(:data:`~fibquant_theory.config.TORCH_CANDIDATES`; ``m = 1``: two ``min`` reductions, else a
``topk``) and the lowest score :math:`f_{(m+1)}` outside them, and the float64 direct distance
:math:`\|x - c_j\|^2` of those candidates, summed over ``t = 0, ..., k-1`` in that order
exactly like the CPU kernel (:func:`~fibquant_theory.search.kernel.nearest_exhaustive`).
The best candidate (ties to the lowest index) is *certified*: every float32 score is
within :math:`\varepsilon = 2(\gamma_{k+1} + 3u)(XC + C^2/2)` of its exact value
(:math:`u = 2^{-24}`, :math:`\gamma_K = Ku/(1-Ku)`, the bound of a float32 dot product of
``K`` terms in any order, with or without fused multiply-add; :math:`X`, :math:`C` the
largest sample and codeword norms), so a codeword outside the candidates has a distance
of at least :math:`\|x\|^2 + 2(f_{(m+1)} - \varepsilon)`; when that exceeds the best
candidate's float64 distance (less a float64 slack) the candidate is the nearest codeword,
otherwise the sample is searched over all codewords in float64 (rare). The assignment is
therefore **exact**: its indices and float64 distances have the bits of the CPU direct
search (ties to the lowest index), whatever the chunk size, the candidate count, the float32
rounding or the device. Each call also compares a few float32 scores with float64 ones and
raises ``RuntimeError`` if an error exceeds :math:`\varepsilon` (e.g. TF32 forced on).

**cell sums** — every sample is turned once into fixed point, :math:`q = \mathrm{round}(x\,2^s)`
in int64, and the cells are summed with ``index_add_`` on int64 (counts with ``bincount``).
Integer addition is associative, so any order (GPU atomics included) gives the same bits.
The shift (:func:`fixed_point_shift`) is the largest ``s`` with
:math:`n\,2^{s+e} \le 2^{62}` where :math:`\max|x| < 2^e` (``n`` the number of samples),
so no partial sum can overflow int64; a cell sum of :math:`n_j` samples is within
:math:`n_j 2^{-s-1}` of the float64 sum and a centroid within :math:`2^{-s-1}` (plus one
float64 rounding) of the exact mean. The training distortion is summed the same way
(squared distances in fixed point).

The loop is the CPU one (:func:`~fibquant_theory.codebooks.lloyd.lloyd_max`): stop when
the relative improvement is at most ``tol``, when the distortion stops decreasing (the
earlier codebook is kept), after ``max_iter`` assignments or when ``time_budget`` seconds
have passed (checked before each assignment after the first); an empty cell gets the
worst-quantized sample (ties to the lowest sample index). Every step is exact or integer
apart from IEEE float64 divisions and conversions, so the result is meant to have the same
bits on a CPU and on a GPU too (``research/gpu_design_codebooks.py`` checks it). torch is
imported on first use, never by ``import fibquant_theory``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from fibquant_theory import config
from fibquant_theory._validation import (
    as_codebook,
    as_rows,
    check_distance_range,
    check_int,
)
from fibquant_theory.codebooks.torch_device import (
    ieee_float32,
    resolve_device,
    torch_module,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "TorchAssigner",
    "TorchLloydResult",
    "cell_sums_fixed_point",
    "fixed_point_shift",
    "lloyd_max_torch",
    "nearest_codeword_torch",
]

_U32 = 2.0**-24
_U64 = 2.0**-53
#: Rows of every assignment whose float32 scores are compared with float64 ones (the precision guard).
_GUARD_ROWS = 64
_log = logging.getLogger(__name__)


def fixed_point_shift(n_rows: int, max_abs: float) -> int:
    r"""The fixed-point shift ``s`` of :math:`n` values of magnitude at most ``max_abs``: int64 sums cannot overflow.

    With :math:`\mathrm{max\_abs} < 2^e`, every :math:`|\mathrm{round}(v\,2^s)| \le 2^{s+e}`, and
    ``s = 62 - ceil(log2 n) - e`` makes any sum of at most ``n`` of them at most
    :math:`2^{62} < 2^{63}` in magnitude.

    Parameters
    ----------
    n_rows : int
        Most values in one sum (``>= 1``).
    max_abs : float
        Largest magnitude of a value (finite, ``>= 0``).

    Returns
    -------
    int
        The shift (at most 960, so that :math:`2^s` is a finite float64).

    Raises
    ------
    ValueError
        If ``n_rows`` is so large that fewer than 20 fraction bits would remain.
    """
    n_rows = check_int(n_rows, "n_rows", minimum=1)
    if not (math.isfinite(max_abs) and max_abs >= 0):
        raise ValueError(f"max_abs must be finite and >= 0, got {max_abs!r}")
    e = math.frexp(max_abs)[1] if max_abs > 0 else 0  # max_abs < 2**e
    s = min(960, 62 - (n_rows - 1).bit_length() - e)
    if s + min(e, 0) < 20:
        raise ValueError(f"{n_rows} values of magnitude < 2^{e} leave only {s} fraction bits in int64")
    return s


def cell_sums_fixed_point(
    samples_fixed: torch.Tensor, indices: torch.Tensor, n_codewords: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer cell sums and cell sizes (associative: the same bits in any order, on any device).

    Parameters
    ----------
    samples_fixed : torch.Tensor
        Samples in fixed point, ``round(x * 2**s)``, shape ``(n, k)``, int64.
    indices : torch.Tensor
        Cell of every sample, shape ``(n,)``, int64 in ``[0, n_codewords)``.
    n_codewords : int
        Number of cells ``N``.

    Returns
    -------
    sums : torch.Tensor
        Shape ``(N, k)``, int64: the sum of the fixed-point samples of every cell.
    counts : torch.Tensor
        Shape ``(N,)``, int64: the cell sizes.
    """
    torch = torch_module()
    if samples_fixed.dtype != torch.int64 or indices.dtype != torch.int64:
        raise ValueError(f"samples_fixed and indices must be int64, got {samples_fixed.dtype} and {indices.dtype}")
    counts = torch.bincount(indices, minlength=n_codewords)
    sums = torch.zeros((n_codewords, samples_fixed.shape[1]), dtype=torch.int64, device=samples_fixed.device)
    try:
        sums.index_add_(0, indices, samples_fixed)
    except (RuntimeError, NotImplementedError):  # pragma: no cover - a build without int64 index_add_
        return _segment_sums(samples_fixed, indices, counts), counts
    return sums, counts


def _segment_sums(samples_fixed: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The cell sums by sorting by cell and differencing an int64 prefix sum (the same integers as ``index_add_``).

    No prefix sum can overflow: :func:`fixed_point_shift` bounds the sum of all the samples' magnitudes by 2^62.
    """
    torch = torch_module()
    order = torch.argsort(indices, stable=True)
    prefix = torch.cumsum(samples_fixed[order], dim=0)
    ends = torch.cumsum(counts, dim=0)  # one past the last sample of every cell
    zero = torch.zeros((1, samples_fixed.shape[1]), dtype=torch.int64, device=samples_fixed.device)
    prefix = torch.cat([zero, prefix])
    return prefix[ends] - prefix[ends - counts]


def _ordered_sq_distance(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``sum_t (x_t - c_t)**2`` over the last axis, summed in the order ``t = 0, ..., k-1`` (the CPU kernel's bits)."""
    diff = x - c
    sq = diff * diff
    acc = sq[..., 0].clone()
    for t in range(1, sq.shape[-1]):
        acc = acc + sq[..., t]
    return acc


class TorchAssigner:
    """Exact nearest codeword of a fixed set of samples on a torch device (see the module docstring).

    Parameters
    ----------
    samples : torch.Tensor
        Samples, shape ``(n, k)``, float64, finite, on the device.
    chunk_rows : int or None
        Samples per chunk; ``None``: ``TORCH_SCORE_ELEMENTS // N``. The result does not depend on it.
    candidates : int or None
        Float32 candidates re-checked in float64; ``None``: ``TORCH_CANDIDATES``. The result does not depend on it.
    """

    def __init__(self, samples: torch.Tensor, *, chunk_rows: int | None = None, candidates: int | None = None) -> None:
        torch = torch_module()
        self.torch = torch
        self.x = samples
        n, k = samples.shape
        self.n, self.k = n, k
        self.xx = _ordered_sq_distance(samples, torch.zeros_like(samples[:1]))
        self.x_norm = float(self.xx.max().sqrt()) if n else 0.0
        self.xa = torch.cat([samples.float(), torch.ones((n, 1), dtype=torch.float32, device=samples.device)], 1)
        self.chunk_rows = None if chunk_rows is None else check_int(chunk_rows, "chunk_rows", minimum=1)
        self.candidates = check_int(
            config.TORCH_CANDIDATES if candidates is None else candidates, "candidates", minimum=1
        )
        #: samples that needed the full float64 search, summed over the calls
        self.n_fallback = 0

    def _bounds(self, pts: torch.Tensor) -> tuple[float, float]:
        """``(eps, eta)``: the float32 score error bound and the float64 distance slack for codebook ``pts``."""
        c = math.sqrt(float(_ordered_sq_distance(pts, self.torch.zeros_like(pts[:1])).max()))
        big_k = self.k + 1
        gamma = big_k * _U32 / (1.0 - big_k * _U32)
        eps = 2.0 * (gamma + 3.0 * _U32) * (self.x_norm * c + 0.5 * c * c) + 1e-300
        eta = 8.0 * (self.k + 4) * _U64 * (self.x_norm + c) ** 2 + 1e-300
        return eps, eta

    def _full(self, rows: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 direct search of ``x[rows]`` over all codewords (first minimum: ties to the lowest index)."""
        torch = self.torch
        idx = torch.empty(rows.numel(), dtype=torch.int64, device=pts.device)
        dist = torch.empty(rows.numel(), dtype=torch.float64, device=pts.device)
        step = max(1, config.TORCH_SCORE_ELEMENTS // (4 * pts.shape[0]))
        pt = pts.T.contiguous()
        for s in range(0, rows.numel(), step):
            xr = self.x[rows[s : s + step]]
            diff = xr[:, 0, None] - pt[0][None, :]
            d = diff * diff
            for t in range(1, self.k):  # one column at a time: (rows, N) temporaries, the order t = 0..k-1
                diff = xr[:, t, None] - pt[t][None, :]
                d = d + diff * diff
            best = torch.argmin(d, dim=1)
            idx[s : s + step] = best
            dist[s : s + step] = d.gather(1, best[:, None])[:, 0]
        return idx, dist

    def assign(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codeword of every sample among ``pts (N, k)`` float64 on the device.

        Parameters
        ----------
        pts : torch.Tensor
            Codebook, shape ``(N, k)``, float64, on the samples' device.

        Returns
        -------
        indices : torch.Tensor
            Shape ``(n,)``, int64: the nearest codeword (ties to the lowest index).
        sq_distances : torch.Tensor
            Shape ``(n,)``, float64: its squared distance, the CPU direct sum's bits.
        """
        torch = self.torch
        n_code = pts.shape[0]
        m = min(self.candidates, n_code)
        eps, eta = self._bounds(pts)
        pa = torch.cat([-pts.float(), (0.5 * _ordered_sq_distance(pts, torch.zeros_like(pts[:1]))).float()[:, None]], 1)
        pa = pa.T.contiguous()
        rows = self.chunk_rows or max(1, config.TORCH_SCORE_ELEMENTS // n_code)
        idx = torch.empty(self.n, dtype=torch.int64, device=pts.device)
        dist = torch.empty(self.n, dtype=torch.float64, device=pts.device)
        flagged = []
        with ieee_float32(torch):
            for s in range(0, self.n, rows):
                e = min(self.n, s + rows)
                scores = self.xa[s:e] @ pa
                if s == 0:
                    self._guard(scores, pts, eps)
                cand, last = self._candidates(scores, m)
                del scores
                d = _ordered_sq_distance(self.x[s:e, None, :], pts[cand])
                best = d.min(dim=1).values
                choice = torch.where(d == best[:, None], cand, n_code).min(dim=1).values
                idx[s:e] = choice
                dist[s:e] = best
                if m < n_code:
                    bound = self.xx[s:e] + 2.0 * (last.double() - eps) - eta
                    bad = torch.nonzero(~(bound > best))[:, 0]
                    if bad.numel():
                        flagged.append(bad + s)
        if flagged:
            rows_bad = torch.cat(flagged)
            self.n_fallback += int(rows_bad.numel())
            idx[rows_bad], dist[rows_bad] = self._full(rows_bad, pts)
        return idx, dist

    def _candidates(self, scores: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``m`` lowest float32 scores' columns and the lowest score outside them (``m = N``: the last kept).

        ``m = 1`` takes two ``min`` reductions (the second with the first column masked) instead of a
        ``topk``; either way every column not returned has a float32 score ``>= last``, which is all the
        certificate uses. Overwrites ``scores``.
        """
        torch = self.torch
        if m == 1:
            first, cand = scores.min(dim=1)
            if scores.shape[1] == 1:
                return cand[:, None], first
            scores.scatter_(1, cand[:, None], math.inf)
            return cand[:, None], scores.min(dim=1).values
        if m < scores.shape[1]:
            vals, cand = torch.topk(scores, m + 1, dim=1, largest=False, sorted=True)
            return cand[:, :m], vals[:, m]
        vals, cand = torch.topk(scores, m, dim=1, largest=False, sorted=True)
        return cand, vals[:, -1]

    def _guard(self, scores: torch.Tensor, pts: torch.Tensor, eps: float) -> None:
        """Raise when a float32 score of the first rows is further than ``eps`` from the float64 one."""
        r = min(_GUARD_ROWS, scores.shape[0])
        xa64 = self.xa[:r].double()
        xa64[:, :-1] = self.x[:r]
        ref = xa64 @ self.torch.cat([-pts, 0.5 * (pts * pts).sum(1, keepdim=True)], 1).T
        err = float((scores[:r].double() - ref).abs().max()) if r else 0.0
        if err > eps:
            raise RuntimeError(
                f"float32 matmul on {pts.device} is less precise than assumed (error {err:.3g} > bound {eps:.3g}): "
                "is TF32 or another reduced-precision mode forced on?"
            )

    def mse(self, pts: torch.Tensor) -> float:
        """Mean squared distance per sample to the nearest codeword (exact assignment, fixed-point sum).

        Parameters
        ----------
        pts : torch.Tensor or numpy.ndarray
            Codebook, shape ``(N, k)``.

        Returns
        -------
        float
            The distortion per block.
        """
        if isinstance(pts, np.ndarray):
            pts = self.torch.from_numpy(np.array(pts, dtype=np.float64))
        pts = pts.to(device=self.x.device, dtype=self.torch.float64)
        _, dist = self.assign(pts)
        return _fixed_mean(dist)


def _fixed_mean(values: torch.Tensor) -> float:
    """Mean of non-negative float64 values summed in int64 fixed point (order-free); within 2^-(s+1) of exact."""
    n = values.numel()
    s = fixed_point_shift(n, float(values.max()))
    torch = torch_module()
    total = int(torch.round(values * 2.0**s).to(torch.int64).sum())
    return math.ldexp(float(total), -s) / n


@dataclass(frozen=True)
class TorchLloydResult:
    """Outcome of :func:`lloyd_max_torch`.

    Attributes
    ----------
    points : numpy.ndarray, shape (N, k)
        Refined codebook (the one whose distortion is ``mse``), float64.
    mse : float
        Training distortion per block (fixed-point sum of the float64 squared distances).
    n_iter : int
        Assignment steps performed.
    converged : bool
        ``True`` when the tolerance test or a non-decreasing distortion stopped the loop.
    stopped : str
        ``"tol"``, ``"no_improvement"``, ``"max_iter"`` or ``"time_budget"``.
    history : numpy.ndarray, shape (n_iter,)
        Training distortion after each assignment.
    n_empty_fixed : int
        Empty cells re-seeded.
    shift : int
        Fixed-point shift of the cell sums (:func:`fixed_point_shift`).
    n_fallback : int
        Samples that needed the full float64 search, summed over the iterations.
    seconds : float
        Wall-clock time.
    """

    points: np.ndarray
    mse: float
    n_iter: int
    converged: bool
    stopped: str
    history: np.ndarray = field(repr=False)
    n_empty_fixed: int
    shift: int
    n_fallback: int
    seconds: float


def _as_device_rows(samples: object, k: int | None, dev: torch.device, name: str) -> torch.Tensor:
    torch = torch_module()
    if isinstance(samples, torch.Tensor):
        if samples.dtype != torch.float64 or samples.ndim != 2 or (k is not None and samples.shape[1] != k):
            raise ValueError(f"{name} must be a float64 tensor of shape (n, {k}), got {samples.dtype} {tuple(samples.shape)}")
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(f"{name} contain NaN or Inf")
        return samples.to(dev)
    return torch.from_numpy(np.ascontiguousarray(as_rows(samples, name, k=k))).to(dev)


def lloyd_max_torch(
    initial_points: object,
    samples: object,
    *,
    max_iter: int = 200,
    tol: float = 1e-5,
    device: object = "cpu",
    time_budget: float | None = None,
    chunk_rows: int | None = None,
    candidates: int | None = None,
    progress: bool = False,
    desc: str = "Lloyd (torch)",
) -> TorchLloydResult:
    """Lloyd–Max refinement on a torch device, deterministic (see the module docstring).

    Parameters
    ----------
    initial_points : array_like, shape (N, k)
        Starting codebook, ``N >= 1``; not modified.
    samples : array_like or torch.Tensor, shape (n, k)
        Training samples, ``n >= N`` (a float64 tensor stays where it is if on ``device``).
    max_iter : int
        Largest number of assignment steps (``>= 1``).
    tol : float
        Stop when the relative improvement is at most ``tol`` (``>= 0``).
    device : str or torch.device
        ``"cuda"``, ``"cuda:i"`` or ``"cpu"`` (:func:`resolve_device`).
    time_budget : float or None
        Stop before an assignment (after the first) once this many seconds have passed.
    chunk_rows, candidates : int or None
        See :class:`TorchAssigner` (no effect on the result).
    progress : bool
        Show a tqdm bar over the iterations.
    desc : str
        Its label.

    Returns
    -------
    TorchLloydResult
        The refined codebook and its record.
    """
    t0 = time.perf_counter()
    torch = torch_module()
    dev = resolve_device(device)
    if dev is None:
        raise ValueError("lloyd_max_torch needs a torch device ('cpu' or 'cuda'); use lloyd_max for the Numba path")
    pts_np = as_codebook(initial_points, "initial_points")
    n_code, k = pts_np.shape
    x = _as_device_rows(samples, k, dev, "samples")
    n = x.shape[0]
    if n < n_code:
        raise ValueError(f"need at least as many samples as codewords, got {n} < {n_code}")
    check_distance_range(x.abs().amax(0, keepdim=True).cpu().numpy() if n else np.zeros((0, k)), pts_np, "samples")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    deadline = _deadline(t0, time_budget)
    pts = torch.from_numpy(np.array(pts_np, dtype=np.float64)).to(dev)
    shift = fixed_point_shift(n, float(x.abs().max()))
    xq = torch.round(x * 2.0**shift).to(torch.int64)
    assigner = TorchAssigner(x, chunk_rows=chunk_rows, candidates=candidates)
    history: list[float] = []
    best_pts, best_mse, stopped, n_empty = pts, math.inf, "max_iter", 0
    bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False)
    try:
        for it in range(max_iter):
            if it and deadline is not None and time.perf_counter() > deadline:
                stopped = "time_budget"
                break
            idx, dist = assigner.assign(pts)
            mse = _fixed_mean(dist)
            history.append(mse)
            bar.update(1)
            bar.set_postfix(mse=f"{mse:.6g}", fallback=assigner.n_fallback)
            if mse >= best_mse:
                stopped = "no_improvement"
                break
            prev, best_pts, best_mse = best_mse, pts, mse
            if math.isfinite(prev) and (prev - mse) <= tol * prev:
                stopped = "tol"
                break
            sums, counts = cell_sums_fixed_point(xq, idx, n_code)
            filled = counts > 0
            means = (sums.to(torch.float64) / counts.clamp(min=1).to(torch.float64)[:, None]) * 2.0**-shift
            new = torch.where(filled[:, None], means, pts)
            empty = torch.nonzero(~filled)[:, 0]
            if empty.numel():
                worst = torch.argsort(-dist, stable=True)[: empty.numel()]
                new[empty] = x[worst]
                n_empty += int(empty.numel())
            pts = new
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    _log.info("%s: %d iterations, stopped by %s, mse/block %.10g, %d fallbacks, %.2f s",
              desc, len(history), stopped, best_mse, assigner.n_fallback, seconds)
    return TorchLloydResult(
        points=best_pts.cpu().numpy().astype(np.float64, copy=True),
        mse=float(best_mse),
        n_iter=len(history),
        converged=stopped in ("tol", "no_improvement"),
        stopped=stopped,
        history=np.asarray(history),
        n_empty_fixed=n_empty,
        shift=shift,
        n_fallback=assigner.n_fallback,
        seconds=seconds,
    )


def _deadline(t0: float, time_budget: float | None) -> float | None:
    if time_budget is None:
        return None
    budget = float(time_budget)
    if not (math.isfinite(budget) and budget >= 0):
        raise ValueError(f"time_budget must be None or a finite number of seconds >= 0, got {time_budget!r}")
    return t0 + budget


def nearest_codeword_torch(
    blocks: object, points: object, *, device: object = "cpu", chunk_rows: int | None = None,
    candidates: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest codeword of every block on a torch device: the bits of the CPU direct search.

    Parameters
    ----------
    blocks : array_like, shape (n, k)
        Blocks (finite reals).
    points : array_like, shape (N, k)
        Codebook, ``N >= 1``.
    device : str or torch.device
        ``"cuda"``, ``"cuda:i"`` or ``"cpu"``.
    chunk_rows, candidates : int or None
        See :class:`TorchAssigner` (no effect on the result).

    Returns
    -------
    indices : numpy.ndarray, shape (n,), int64
        Nearest codeword (ties to the lowest index).
    sq_distances : numpy.ndarray, shape (n,), float64
        Its squared distance (direct sum over ``t = 0..k-1``).
    """
    torch = torch_module()
    dev = resolve_device(device)
    if dev is None:
        raise ValueError("nearest_codeword_torch needs a torch device ('cpu' or 'cuda')")
    pts = as_codebook(points, "points")
    x = as_rows(blocks, "blocks", k=pts.shape[1])
    check_distance_range(x, pts, "blocks")
    if x.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    assigner = TorchAssigner(torch.from_numpy(np.ascontiguousarray(x)).to(dev), chunk_rows=chunk_rows, candidates=candidates)
    idx, dist = assigner.assign(torch.from_numpy(np.ascontiguousarray(pts)).to(dev))
    return idx.cpu().numpy(), dist.cpu().numpy()

