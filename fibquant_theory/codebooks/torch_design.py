r"""The shells design on a torch device: ``design_codebook(..., device="cuda")``.

The construction of :func:`~fibquant_theory.codebooks.design.design_codebook` step for
step, with the CPU path's inputs and the torch Lloyd iterations of
:mod:`~fibquant_theory.codebooks.torch_lloyd`:

1. the same training and held-out samples
   (:func:`~fibquant_theory.codebooks.design.design_samples`, same seeds, same sizes);
2. the same shell search and initial codebooks (the shared helper of the CPU design, the
   same random draws), each factorisation scored by the exact torch assignment on the
   same shell-search samples;
3. the same multi-restart Lloyd–Max (restarts on the screening subset to ``restart_tol``,
   the winner, lowest screening distortion then lowest index, on all samples to ``tol``)
   with :func:`~fibquant_theory.codebooks.torch_lloyd.lloyd_max_torch`, under an optional
   time budget for the whole design;
4. the held-out distortion: the exact torch assignment on the device (its squared distances
   have the bits of the CPU direct search), averaged on the host by ``numpy.mean`` as the CPU
   design averages them.

:func:`float32_rounded` rounds a design to float32 for shipping (half the bytes) and
recomputes its distortions on the same samples.

The record (``params``) is the CPU design's plus ``implementation`` (``"torch"``),
``device_type``, each run's ``stopped`` reason and ``stopped_by_time_budget``; wall times
are in :attr:`~fibquant_theory.codebooks.codebook.Codebook.design_seconds` (not hashed) and
in the log (``logging`` under this package), so two runs of the same design have the same
content hash. The assignment is exact and the sums are integers, so the points do not depend
on the device (a CPU and a GPU are meant to give the same bits) and two runs agree bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from fibquant_theory.codebooks.codebook import Codebook
from fibquant_theory.codebooks.design import (
    _design_sizes,
    _initial_codebooks,
    _rank_shells,
    design_samples,
)
from fibquant_theory.codebooks.shells import beta_quantile_radii
from fibquant_theory.codebooks.torch_device import IMPLEMENTATION, torch_module
from fibquant_theory.codebooks.torch_lloyd import (
    TorchAssigner,
    _fixed_mean,
    lloyd_max_torch,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["codebook_samples", "design_torch", "float32_rounded"]

_log = logging.getLogger(__name__)


def design_torch(
    d: int,
    k: int,
    n_code: int,
    seed: int,
    options: dict[str, Any],
    method: str,
    device: torch.device,
    *,
    time_budget: float | None = None,
    progress: bool = False,
) -> Codebook:
    """The shells design of ``(d, k, N, seed)`` with the torch Lloyd iterations (validated arguments).

    Called by :func:`~fibquant_theory.codebooks.design.design_codebook`, which validates
    the arguments and handles the cache.

    Parameters
    ----------
    d, k, n_code, seed : int
        The design.
    options : dict
        The resolved design options, ``"implementation": "torch"`` among them.
    method : str
        Resolved direction method.
    device : torch.device
        Where the Lloyd iterations run.
    time_budget : float or None
        Seconds for the whole design; no Lloyd iteration starts after it (each run does one).
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    Codebook
        The design; ``params["stopped_by_time_budget"]`` says whether the budget cut it short.
    """
    if options.get("implementation") != IMPLEMENTATION:
        raise ValueError(f"options must carry implementation={IMPLEMENTATION!r}, got {options.get('implementation')!r}")
    torch = torch_module()
    t0 = time.perf_counter()
    deadline = None if time_budget is None else t0 + float(time_budget)

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.perf_counter())

    n_train, n_search, n_probe, _ = _design_sizes(n_code, k, options)
    train, heldout = design_samples(d, k, n_code, seed, n_train, options["n_heldout"])
    x = torch.from_numpy(train).to(device)
    screen = x[:n_search]
    scale = d / k
    timings: dict[str, float] = {"samples": time.perf_counter() - t0}
    bar = tqdm(desc=f"codebook d={d} k={k} N={n_code} ({device.type})", total=3, disable=not progress, leave=False)

    # 1.-2. Shell search (exact torch assignment on the CPU design's shell-search samples) and initial codebooks.
    probe = TorchAssigner(x[:n_probe])
    _, inits, factor_mse = _initial_codebooks(
        d, k, n_code, seed, train[:n_search], method, options["n_restarts"], probe.mse, progress
    )
    timings["shell_search"] = time.perf_counter() - t0 - sum(timings.values())
    bar.update(1)

    # 3. Multi-restart Lloyd on the screening subset (restarts not begun before the deadline are skipped).
    runs: list[Any] = []
    for i, (_, pts, _, _) in enumerate(tqdm(inits, desc="restarts", disable=not progress, leave=False)):
        left = remaining()
        if i and left is not None and left <= 0:
            runs.append(None)
            continue
        runs.append(lloyd_max_torch(
            pts, screen, max_iter=options["max_iter"], tol=options["restart_tol"], device=device, time_budget=left,
            progress=progress, desc=f"restart {i} ({device.type})",
        ))
    done = [i for i, r in enumerate(runs) if r is not None]
    winner = min(done, key=lambda i: (runs[i].mse, i))
    timings["restarts"] = time.perf_counter() - t0 - sum(timings.values())
    bar.update(1)
    final = lloyd_max_torch(
        runs[winner].points, x, max_iter=options["max_iter"], tol=options["tol"], device=device,
        time_budget=remaining(), progress=progress, desc=f"final ({device.type})",
    )
    timings["final"] = time.perf_counter() - t0 - sum(timings.values())
    bar.update(1)
    bar.close()
    del x, screen, probe
    heldout_mse = scale * _mean_distance(heldout, final.points, device)
    timings["heldout"] = time.perf_counter() - t0 - sum(timings.values())

    name, init_pts, labels, s_used = inits[winner]
    if labels is None:
        labels = _rank_shells(final.points, s_used)
    cut = final.stopped == "time_budget" or len(done) < len(runs) or any(runs[i].stopped == "time_budget" for i in done)
    params = {
        "options": options,
        "implementation": IMPLEMENTATION,
        "device_type": device.type,
        "n_train_used": n_train,
        "n_search_used": n_search,
        "n_factor_samples": n_probe,
        "assign_used": "exact-torch",
        "direction_method": method,
        "factorisation_mse": factor_mse,
        "restarts": [
            {"init": nm, "skipped": True} if res is None else
            {"init": nm, "screen_mse": scale * res.mse, "n_iter": res.n_iter, "converged": res.converged,
             "stopped": res.stopped}
            for (nm, _, _, _), res in zip(inits, runs)
        ],
        "winner": winner,
        "init": name,
        "factorisation": [s_used, n_code // s_used],
        "final_n_iter": final.n_iter,
        "final_converged": final.converged,
        "final_stopped": final.stopped,
        "stopped_by_time_budget": bool(cut),
        "fixed_point_shift": final.shift,
        "n_empty_fixed": int(sum(runs[i].n_empty_fixed for i in done) + final.n_empty_fixed),
    }
    seconds = time.perf_counter() - t0
    _log.info(
        "design d=%d k=%d N=%d seed=%d on %s: %.1f s (%s), final %d iterations (%s), heldout_mse %.10g, "
        "fallback samples %d", d, k, n_code, seed, device, seconds,
        ", ".join(f"{key} {v:.1f} s" for key, v in timings.items()), final.n_iter, final.stopped, heldout_mse,
        _fallbacks(runs, final),
    )
    if not math.isfinite(heldout_mse):  # pragma: no cover - the points are finite by construction
        raise RuntimeError(f"non-finite held-out distortion {heldout_mse}")
    return Codebook(
        points=final.points,
        d=d,
        k=k,
        seed=seed,
        n_shells=s_used,
        shell_radii=beta_quantile_radii(d, k, s_used),
        shell_index=labels,
        directions=method if ":" in name else name,
        params=params,
        train_mse=scale * final.mse,
        heldout_mse=heldout_mse,
        design_seconds=seconds,
        initial_points=np.asarray(init_pts, dtype=np.float64),
    )


def _fallbacks(runs: list[Any], final: Any) -> int:
    """Samples that needed the full float64 search in the restarts and the final run (for the log)."""
    return int(sum(r.n_fallback for r in runs if r is not None) + final.n_fallback)


def _mean_distance(blocks: np.ndarray, points: np.ndarray, device: torch.device) -> float:
    """``numpy.mean`` of the exact squared distances to the nearest codeword (the CPU design's held-out bits)."""
    torch = torch_module()
    assigner = TorchAssigner(torch.from_numpy(np.ascontiguousarray(blocks)).to(device))
    _, dist = assigner.assign(torch.from_numpy(np.ascontiguousarray(points)).to(device))
    return float(dist.cpu().numpy().mean())


def codebook_samples(
    codebook: Codebook, samples: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(train, heldout)`` blocks a shells design was made with (the sizes of its ``params``).

    Parameters
    ----------
    codebook : Codebook
        A shells design whose ``params`` hold ``n_train_used`` and ``options["n_heldout"]``.
    samples : tuple of numpy.ndarray or None
        Those blocks when already drawn (only their shapes are checked); ``None`` draws
        them (:func:`~fibquant_theory.codebooks.design.design_samples`).

    Returns
    -------
    train : numpy.ndarray, shape (n_train, k)
    heldout : numpy.ndarray, shape (n_heldout, k)

    Raises
    ------
    ValueError
        The params lack the sizes, or ``samples`` has other shapes.
    """
    p = codebook.params
    if "n_train_used" not in p or "n_heldout" not in dict(p.get("options", {})):
        raise ValueError("the codebook's params do not give its training sample sizes (n_train_used, options['n_heldout'])")
    sizes = (int(p["n_train_used"]), int(p["options"]["n_heldout"]))
    k = codebook.k
    if samples is None:
        return design_samples(codebook.d, k, codebook.n_codewords, codebook.seed, *sizes)
    train, heldout = samples
    if np.shape(train) != (sizes[0], k) or np.shape(heldout) != (sizes[1], k):
        raise ValueError(f"samples must be the design's (train {(sizes[0], k)}, heldout {(sizes[1], k)}) blocks, "
                         f"got shapes {np.shape(train)} and {np.shape(heldout)}")
    return np.ascontiguousarray(train, dtype=np.float64), np.ascontiguousarray(heldout, dtype=np.float64)


def float32_rounded(
    codebook: Codebook, device: object = "cpu", samples: tuple[np.ndarray, np.ndarray] | None = None
) -> Codebook:
    """The design with its points and initial points rounded to float32, its distortions recomputed.

    Shipped codebooks are stored this way (half the bytes of float64; a relative change of the
    points below :math:`2^{-24}`, of the distortion about :math:`10^{-8}`). The training and
    held-out distortions are recomputed exactly, on the design's own samples
    (:func:`~fibquant_theory.codebooks.design.design_samples` with the sizes of ``params``),
    the training one as the torch design sums it (fixed point), the held-out one as
    :func:`design_torch` does. ``params`` gain ``"stored_as": "float32"`` and the
    unrounded design's ``designed_content_hash``, ``designed_train_mse`` and
    ``designed_heldout_mse``.

    Parameters
    ----------
    codebook : Codebook
        A shells design (:func:`design_torch`, or the CPU design) with float64 points.
    device : str or torch.device
        Torch device of the recomputation (``"cuda"``, ``"cpu"``).
    samples : tuple of numpy.ndarray or None
        The design's ``(train, heldout)`` when already drawn (only their shapes are
        checked); ``None`` draws them.

    Returns
    -------
    Codebook
        The rounded codebook (its own content hash).

    Raises
    ------
    ValueError
        If ``codebook`` is not a shells design, is already rounded, or a rounded point
        leaves the unit ball.
    """
    from fibquant_theory.codebooks.torch_device import resolve_device

    dev = resolve_device(device)
    if dev is None:
        raise ValueError("float32_rounded needs a torch device ('cpu' or 'cuda')")
    if not isinstance(codebook, Codebook) or codebook.family != "shells" or "n_train_used" not in codebook.params:
        raise ValueError(f"float32_rounded takes a shells design, got {codebook!r}")
    if codebook.params.get("stored_as") == "float32":
        raise ValueError("the codebook is already rounded to float32")
    points = codebook.points.astype(np.float32).astype(np.float64)
    if not np.all(np.einsum("ij,ij->i", points, points) < 1.0):
        raise ValueError("a point rounded to float32 leaves the open unit ball")
    p = codebook.params
    d, k, n_code = codebook.d, codebook.k, codebook.n_codewords
    train, heldout = codebook_samples(codebook, samples)
    torch = torch_module()
    assigner = TorchAssigner(torch.from_numpy(train).to(dev))
    _, dist = assigner.assign(torch.from_numpy(points).to(dev))
    train_mse = (d / k) * _fixed_mean(dist)
    del assigner, dist, train
    params = {**dict(p), "stored_as": "float32", "designed_content_hash": codebook.content_hash,
              "designed_train_mse": codebook.train_mse, "designed_heldout_mse": codebook.heldout_mse}
    return Codebook(
        points=points,
        d=d,
        k=k,
        seed=codebook.seed,
        structure=codebook.structure,
        params=params,
        train_mse=train_mse,
        heldout_mse=(d / k) * _mean_distance(heldout, points, dev),
        design_seconds=codebook.design_seconds,
        initial_points=codebook.initial_points.astype(np.float32).astype(np.float64),
    )
