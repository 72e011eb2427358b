"""Design one very large FibQuant codebook (e.g. d=64, k=8, N=65536) with PyTorch on a GPU.

The CPU design (:func:`fibquant_theory.codebooks.design.design_codebook`) is exact and
deterministic but needs hours on 2 cores for N = 65536 at k = 8 (an exact
k-d tree query costs ~0.3 ms per sample there). This script runs the same
construction on a CUDA GPU:

* the same training / held-out samples as ``design_codebook`` (same seeds),
* the shell search over every factorisation N = S * M on the first --n-screen
  training samples,
* one Lloyd–Max run from the best multi-shell initialisation (exhaustive
  assignment by float32 scores on the GPU, float64 distances and cell sums),
  stopped at relative improvement <= --tol or after --max-iter iterations,
* the held-out MSE by the library's exact exhaustive search on the CPU
  (:func:`fibquant_theory.search.kernel.nearest_exhaustive`, the search of the
  CPU design; about 35 s for 100k blocks at N = 65536, k = 8 on 2 cores),

and writes an ordinary ``Codebook`` ``.npz`` (``params["implementation"] ==
"torch-gpu"``) that ``load_codebook`` reads and checks. GPU atomics make the
cell sums order-dependent, so reruns can differ in the last bits. With
``--device cpu`` every search is the library's exact kernel (slow: for testing).

Usage::

    python research/gpu_large_codebook.py --dim 64 --block 8 --codewords 65536 --out cb.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from fibquant_theory.codebooks.codebook import CODEBOOK_VERSION, Codebook, save_codebook
from fibquant_theory.codebooks.design import design_samples
from fibquant_theory.codebooks.directions import resolve_direction_method
from fibquant_theory.codebooks.shells import shell_codebook, valid_factorisations
from fibquant_theory.search.kernel import nearest_exhaustive


def nearest(x: torch.Tensor, pts: torch.Tensor, chunk: int = 16384, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codeword of every row of ``x (n, k)`` among ``pts (N, k)``: ``(index (n,), squared distance (n,))``.

    With ``exact=True`` (the held-out MSE), or for tensors on the CPU, the
    library's exact kernel :func:`~fibquant_theory.search.kernel.nearest_exhaustive`
    (float64 direct distances, ties to the lowest index) runs on the CPU. Otherwise,
    on the GPU: float32 scores ``|p|^2/2 - <x, p>`` (one augmented matrix product
    per chunk of ``chunk`` rows), argmin, and the squared distance of the chosen
    codeword recomputed in float64 (near-ties may pick a slightly worse codeword).
    """
    if exact or x.device.type == "cpu":
        idx, dist = nearest_exhaustive(x.cpu().numpy(), pts.cpu().numpy())
        return torch.from_numpy(idx).to(x.device), torch.from_numpy(dist).to(x.device)
    p32 = pts.float()
    aug_p = torch.cat([-p32, 0.5 * (p32 * p32).sum(1, keepdim=True)], 1).T.contiguous()  # (k+1, N)
    idx = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dist = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xb = x[s : s + chunk]
        aug_x = torch.cat([xb.float(), torch.ones_like(xb[:, :1], dtype=torch.float32)], 1)
        best = (aug_x @ aug_p).argmin(1)
        idx[s : s + chunk] = best
        dist[s : s + chunk] = ((xb - pts[best]) ** 2).sum(-1)
    return idx, dist


def lloyd(
    init: torch.Tensor, x: torch.Tensor, tol: float, max_iter: int, deadline: float
) -> tuple[torch.Tensor, float, int, bool]:
    """Lloyd–Max from ``init``; returns points, distortion per block, iterations, converged."""
    pts = init.clone()
    best_pts, best_mse, n_iter, converged = pts, float("inf"), 0, False
    for _ in range(max_iter):
        if time.perf_counter() > deadline:
            break
        idx, dist = nearest(x, pts)
        mse = float(dist.mean())
        n_iter += 1
        print(f"  iter {n_iter}: mse/block {mse:.8f}", file=sys.stderr, flush=True)
        if mse >= best_mse:
            converged = True
            break
        prev, best_pts, best_mse = best_mse, pts, mse
        if prev < float("inf") and (prev - mse) <= tol * prev:
            converged = True
            break
        n = pts.shape[0]
        counts = torch.zeros(n, dtype=torch.float64, device=x.device).index_add_(0, idx, torch.ones_like(dist))
        sums = torch.zeros_like(pts).index_add_(0, idx, x)
        new = pts.clone()
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        empty = torch.nonzero(~filled)[:, 0]
        if empty.numel():
            worst = torch.argsort(-dist, stable=True)[: empty.numel()]
            new[empty] = x[worst]
        pts = new
    return best_pts, best_mse, n_iter, converged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--block", type=int, required=True)
    ap.add_argument("--codewords", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spc", type=int, default=128, help="training samples per codeword (default 128)")
    ap.add_argument("--n-heldout", type=int, default=100_000)
    ap.add_argument("--n-screen", type=int, default=1_000_000, help="samples scoring the factorisations")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--time-budget", type=float, default=1e9, help="stop the Lloyd iterations after this many seconds")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    d, k, n_code, seed = args.dim, args.block, args.codewords, args.seed
    dev = torch.device(args.device)
    t0 = time.perf_counter()
    n_train = max(200_000, args.spc * n_code)
    train_np, held_np = design_samples(d, k, n_code, seed, n_train, args.n_heldout)
    x = torch.from_numpy(train_np).to(dev)
    held = torch.from_numpy(held_np).to(dev)
    n_search = min(n_train, args.n_screen)
    screen = x[:n_search]
    method = resolve_direction_method(k)
    scale = d / k
    scored = []
    for s, m in valid_factorisations(d, k, n_code):
        pts, labels, radii = shell_codebook(d, k, s, m, method)
        _, dist = nearest(screen, torch.from_numpy(pts).to(dev))
        scored.append((float(dist.mean()), s, m, pts, labels, radii))
        print(f"S={s} M={m}: init mse {scale * scored[-1][0]:.5f}", file=sys.stderr, flush=True)
    scored.sort(key=lambda t: (t[0], t[1]))
    _, s_best, m_best, init, labels, radii = scored[0]
    deadline = t0 + args.time_budget
    pts, mse, n_iter, converged = lloyd(torch.from_numpy(init).to(dev), x, args.tol, args.max_iter, deadline)
    _, hd = nearest(held, pts, exact=True)
    heldout = scale * float(hd.mean())
    seconds = time.perf_counter() - t0
    params = {
        "implementation": "torch-gpu",
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else str(dev),
        "options": {"samples_per_codeword": args.spc, "tol": args.tol, "max_iter": args.max_iter, "n_restarts": 1},
        "n_train_used": n_train,
        "n_search_used": n_search,
        "direction_method": method,
        "factorisation_mse": {str(s): scale * v for v, s, *_ in sorted(scored, key=lambda t: t[1])},
        "init": f"{method}:S={s_best}",
        "factorisation": [s_best, m_best],
        "final_n_iter": n_iter,
        "final_converged": converged,
    }
    cb = Codebook(
        points=pts.cpu().numpy(),
        d=d,
        k=k,
        seed=seed,
        n_shells=s_best,
        shell_radii=radii,
        shell_index=labels,
        directions=method,
        params=params,
        train_mse=scale * mse,
        heldout_mse=heldout,
        design_seconds=seconds,
        initial_points=init,
        version=CODEBOOK_VERSION,
    )
    save_codebook(cb, args.out)
    print(json.dumps(cb.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
