r"""More Lloyd–Max iterations for a finished shells design, on its own training samples (torch, deterministic).

A design of ``N = 65536`` codewords stops long before Lloyd–Max converges when its
time is short (the shipped GPU designs ran 6 final iterations). :func:`refine_codebook`
goes on from the codebook's points with
:func:`~fibquant_theory.codebooks.torch_lloyd.lloyd_max_torch` on the design's own
training samples (:func:`~fibquant_theory.codebooks.design.design_samples` with the
sizes in ``params``), so the iterations add up across calls and sessions.

Lloyd–Max keeps no state but the points (the assignment, the fixed-point cell sums and the
empty-cell rule depend on the points and the samples alone), and
:func:`~fibquant_theory.codebooks.torch_lloyd.lloyd_max_torch` returns the points whose
assignment was the best, before their centroid step. Hence, without an early stop,
``lloyd(p, a + b) == lloyd(lloyd(p, a).points, b + 1)`` bit for bit (the test suite checks
it): a refinement by ``b + 1`` iterations of a design that ran ``a`` final iterations is
that design run for ``a + b`` final iterations. Every refinement is recorded in
``params["refinements"]`` (the content hash it started from, its iterations and how it
stopped), so ``refine_codebook(start, max_iter=n_iter, tol=0)`` reproduces it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from fibquant_theory._validation import check_int
from fibquant_theory.codebooks.codebook import Codebook

__all__ = ["refine_codebook"]

#: ``params`` of a float32-rounded shipped file that do not describe the refined float64 points.
_ROUNDING_KEYS = ("stored_as", "designed_content_hash", "designed_train_mse", "designed_heldout_mse")


def _with_params(codebook: Codebook, params: dict[str, Any]) -> Codebook:
    """``codebook`` with other ``params`` (to draw the samples of another training size)."""
    return Codebook(points=codebook.points, d=codebook.d, k=codebook.k, seed=codebook.seed, structure=codebook.structure,
                    params=params, train_mse=codebook.train_mse, heldout_mse=codebook.heldout_mse,
                    design_seconds=codebook.design_seconds, initial_points=codebook.initial_points)


def refine_codebook(
    codebook: Codebook,
    max_iter: int,
    *,
    device: object = "cpu",
    tol: float = 0.0,
    time_budget: float | None = None,
    progress: bool = False,
    samples: tuple[np.ndarray, np.ndarray] | None = None,
    n_train: int | None = None,
) -> Codebook:
    """Run up to ``max_iter`` more Lloyd–Max iterations on a shells design's own training samples.

    Parameters
    ----------
    codebook : Codebook
        A shells design (CPU or torch; a shipped float32-rounded file too) whose ``params``
        hold ``n_train_used`` and ``options["n_heldout"]``.
    max_iter : int
        Most assignment steps (``>= 1``; the first one re-assigns the starting points).
    device : str or torch.device
        Torch device of the iterations (``"cuda"``, ``"cpu"``).
    tol : float
        Stop when the relative improvement of one iteration is at most ``tol`` (``>= 0``;
        ``0``: only ``max_iter``, no improvement, or the time budget stop it).
    time_budget : float or None
        Seconds; no iteration after the first starts once they have passed (the record's
        ``n_iter`` still reproduces the result).
    progress : bool
        Show a tqdm bar over the iterations.
    samples : tuple of numpy.ndarray or None
        The design's ``(train, heldout)`` when already drawn (the output of
        :func:`~fibquant_theory.codebooks.design.design_samples` for this codebook; only
        their shapes are checked); ``None`` draws them.
    n_train : int or None
        Train on this many samples of the design's source instead (``design_samples`` with
        this size; a design of few samples per codeword fits its samples more closely than
        the source): the result's ``params["n_train_used"]`` becomes ``n_train``, so later
        refinements use the new set, and the record notes ``n_train``. ``None``: the
        design's own set.

    Returns
    -------
    Codebook
        The refined float64 design: the same structure (codeword ``n`` keeps its shell
        label), ``train_mse`` and ``heldout_mse`` on the design's samples, ``params`` of the
        design plus ``"refinements"`` (a list, one record per call: ``from_content_hash``,
        ``n_iter``, ``stopped``, ``tol``, ``device_type``, ``seconds``, ``heldout_before``,
        ``heldout_after`` and ``history``, the training MSE per block of every assignment). ``design_seconds`` adds this call's seconds.

    Raises
    ------
    ValueError
        ``codebook`` is not a shells design with its sample sizes, or ``max_iter``, ``tol``
        or ``time_budget`` are out of range.

    Examples
    --------
    >>> from fibquant_theory.codebooks.design import design_codebook
    >>> cb = design_codebook(16, 2, 16, n_train=4000, n_heldout=2000, n_restarts=1, max_iter=2,
    ...                      device="cpu", cache=False)
    >>> better = refine_codebook(cb, 20)
    >>> better.heldout_mse <= cb.heldout_mse, len(better.params["refinements"])
    (True, 1)
    """
    from fibquant_theory.codebooks.torch_design import _mean_distance, codebook_samples
    from fibquant_theory.codebooks.torch_device import resolve_device, torch_module
    from fibquant_theory.codebooks.torch_lloyd import lloyd_max_torch

    if not isinstance(codebook, Codebook) or codebook.family != "shells":
        raise ValueError(f"refine_codebook takes a shells design, got {codebook!r}")
    p = dict(codebook.params)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    dev = resolve_device(device)
    if dev is None:
        raise ValueError("refine_codebook needs a torch device ('cpu' or 'cuda')")
    if n_train is not None:
        n_train = check_int(n_train, "n_train", minimum=codebook.n_codewords)
        p["n_train_used"] = n_train
    t0 = time.perf_counter()
    d, k, n_code = codebook.d, codebook.k, codebook.n_codewords
    target = codebook if n_train is None else _with_params(codebook, p)
    train, heldout = codebook_samples(target, samples)
    torch = torch_module()
    x = torch.from_numpy(train).to(dev)
    res = lloyd_max_torch(codebook.points, x, max_iter=max_iter, tol=tol, device=dev, time_budget=time_budget,
                          progress=progress, desc=f"refine d={d} k={k} N={n_code} ({dev.type})")
    del x
    heldout_mse = (d / k) * _mean_distance(heldout, res.points, dev)
    seconds = time.perf_counter() - t0
    record = {
        "from_content_hash": codebook.content_hash,
        "n_iter": res.n_iter,
        "stopped": res.stopped,
        "tol": tol,
        "device_type": dev.type,
        "seconds": seconds,
        "heldout_before": codebook.heldout_mse,
        "heldout_after": heldout_mse,
        "history": [float(v) for v in res.history],
    }
    if n_train is not None:
        record["n_train"] = n_train
    params: dict[str, Any] = {key: v for key, v in p.items() if key not in _ROUNDING_KEYS}
    params["refinements"] = [*p.get("refinements", ()), record]
    return Codebook(
        points=res.points,
        d=d,
        k=k,
        seed=codebook.seed,
        structure=codebook.structure,
        params=params,
        train_mse=(d / k) * res.mse,
        heldout_mse=heldout_mse,
        design_seconds=codebook.design_seconds + seconds,
        initial_points=np.asarray(codebook.initial_points, dtype=np.float64),
    )
