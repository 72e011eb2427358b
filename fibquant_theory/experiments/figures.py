r"""Codebook figures (the ``fibquant figures`` command).

* ``fig2_codebooks_k2.png`` — the ``k = 2`` codebooks with their Voronoi cells
  over the heat-map of :math:`f_{d,2}`, for :math:`d \in \{16, 128\}` (rows) and
  :math:`N \in \{8, 16, 32, 64\}` (columns); open markers are the initial
  codebook of the winning restart, solid markers the Lloyd–Max codewords.
* ``fig3_mse_vs_rate.png`` — held-out MSE per coordinate against the rate
  :math:`b = \log_2(N)/k` at ``d = 64`` for :math:`k\in\{1,2,4,8,16,32\}`,
  scalar TurboQuant (Lloyd–Max, exact) at the integer rates, the two lower bounds of
  :func:`~fibquant_theory.experiments.rd.lower_bounds` (the Shannon lower bound of the
  largest plotted block, which bounds every curve, and the cap bound), per coordinate,
  and the Gaussian reference :math:`2^{-2b}/d` (not a bound).

Codebooks come from :func:`~fibquant_theory.codebooks.design.design_codebook` (and its
cache); ``quick=True`` uses fewer samples, one restart and fewer rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fibquant_theory.codebooks.codebook import Codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codebooks.lloyd import nearest_codeword
from fibquant_theory.config import FIGURES_FULL, FIGURES_QUICK
from fibquant_theory.experiments.rd import bound_lines
from fibquant_theory.theory.scalar import lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta

__all__ = ["FIG2_NAME", "FIG3_NAME", "make_figures", "plot_codebooks_k2", "plot_mse_vs_rate", "rate_grid"]

FIG2_NAME = "fig2_codebooks_k2.png"
FIG3_NAME = "fig3_mse_vs_rate.png"



def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _voronoi_panel(ax: Any, cb: Codebook, resolution: int = 500) -> None:
    src = SphericalBeta(cb.d, 2)
    extent = min(1.0, 1.15 * float(src.radius_ppf(0.999)))
    g = np.linspace(-extent, extent, resolution)
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    dens = src.pdf(grid).reshape(resolution, resolution)
    ax.imshow(dens, extent=(-extent, extent, -extent, extent), origin="lower", cmap="magma", interpolation="bilinear")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    try:
        from scipy.spatial import Voronoi, voronoi_plot_2d

        voronoi_plot_2d(
            Voronoi(cb.points), ax=ax, show_points=False, show_vertices=False, line_colors="white", line_width=0.7
        )
    except Exception:  # noqa: BLE001 - degenerate input for Qhull (e.g. N = 2): draw cell edges from pixels
        idx, _ = nearest_codeword(grid, cb.points)
        idx = idx.reshape(resolution, resolution)
        edge = np.zeros_like(idx, dtype=bool)
        edge[:, 1:] |= idx[:, 1:] != idx[:, :-1]
        edge[1:, :] |= idx[1:, :] != idx[:-1, :]
        overlay = np.zeros((resolution, resolution, 4))
        overlay[edge] = (1.0, 1.0, 1.0, 0.9)
        ax.imshow(overlay, extent=(-extent, extent, -extent, extent), origin="lower", interpolation="nearest")
    if extent >= 1.0:
        t = np.linspace(0, 2 * math.pi, 400)
        ax.plot(np.cos(t), np.sin(t), color="white", lw=0.6, alpha=0.6)
    ax.scatter(*cb.initial_points.T, s=22, facecolors="none", edgecolors="cyan", linewidths=0.9, label="initial")
    ax.scatter(*cb.points.T, s=12, color="white", edgecolors="black", linewidths=0.4, label="Lloyd–Max")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        f"d={cb.d}, N={cb.n_codewords} (b={cb.rate_bits:g})\nS={cb.n_shells}, MSE={cb.heldout_mse:.4f}", fontsize=11
    )


def plot_codebooks_k2(
    path: str | Path,
    dims: Sequence[int] = (16, 128),
    sizes: Sequence[int] = (8, 16, 32, 64),
    *,
    seed: int = 0,
    quick: bool = False,
    cache: bool = True,
    progress: bool = True,
) -> Path:
    """Fig. 2: ``k = 2`` codebooks, Voronoi cells and the :math:`f_{d,2}` heat-map; returns the path.

    Parameters
    ----------
    path : str or pathlib.Path
        PNG file to write.
    dims, sizes : sequence of int
        Dimensions (rows) and codebook sizes (columns).
    seed : int
        Design seed.
    quick : bool
        Fewer training samples and one restart.
    cache : bool
        Use the codebook cache.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    plt = _pyplot()
    opts = FIGURES_QUICK if quick else FIGURES_FULL
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(
        len(dims), len(sizes), figsize=(2.2 * len(sizes), 2.6 * len(dims)), squeeze=False, layout="constrained"
    )
    jobs = [(i, j, d, n) for i, d in enumerate(dims) for j, n in enumerate(sizes)]
    for i, j, d, n in tqdm(jobs, desc="Fig. 2 codebooks", disable=not progress):
        cb = design_codebook(d, 2, n, seed=seed, cache=cache, **opts)
        _voronoi_panel(axes[i, j], cb)
    axes[0, 0].legend(loc="lower left", fontsize=9, framealpha=0.6)
    fig.suptitle(
        "FibQuant $k=2$ codebooks on $B^2$ over the density $f_{d,2}$\n(open: initial, solid: Lloyd–Max)", fontsize=12
    )
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def rate_grid(k: int, *, quick: bool = False) -> list[int]:
    """Codebook sizes ``N`` of Fig. 3 for block size ``k`` (rates up to 4, 3, 1.5, 0.625, 0.3125 bits).

    Full: ``N = round(2^{j/2})`` for ``k <= 4`` (rate steps of ``1/(2k)``), powers of two otherwise,
    capped at 16 (k=1), 256 (k=2), 4096 (k=4, 8) and 1024 (k=16, 32). Quick: powers of two up to
    16 (k=1) or 64.

    Parameters
    ----------
    k : int
        Block size.
    quick : bool
        The quick grid.

    Returns
    -------
    list of int
        The sizes ``N``, increasing.
    """
    if quick:
        cap = 16 if k == 1 else 64
        return [2**j for j in range(1, int(math.log2(cap)) + 1)]
    cap = {1: 16, 2: 256, 4: 4096, 8: 4096}.get(k, 1024)
    if k == 1:
        return [2, 4, 8, 16]
    if k <= 4:
        return sorted({round(2 ** (j / 2)) for j in range(2, 2 * int(math.log2(cap)) + 1)})
    return [2**j for j in range(1, int(math.log2(cap)) + 1)]


def plot_mse_vs_rate(
    path: str | Path,
    d: int = 64,
    blocks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    *,
    seed: int = 0,
    quick: bool = False,
    cache: bool = True,
    progress: bool = True,
) -> tuple[Path, list[dict[str, Any]]]:
    """Fig. 3: held-out MSE per coordinate against the rate; returns the path and the plotted rows.

    Parameters
    ----------
    path : str or pathlib.Path
        PNG file to write.
    d : int
        Dimension (every ``k`` in ``blocks`` must divide it).
    blocks : sequence of int
        Block sizes.
    seed, quick, cache, progress
        As in :func:`plot_codebooks_k2`.

    Returns
    -------
    path : pathlib.Path
    rows : list of dict
        ``k``, ``n_codewords``, ``rate_bits``, ``mse_per_coordinate``, ``design_seconds``.
    """
    plt = _pyplot()
    opts = FIGURES_QUICK if quick else FIGURES_FULL
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(k, n) for k in blocks for n in rate_grid(k, quick=quick)]
    rows = []
    for k, n in tqdm(jobs, desc="Fig. 3 codebooks", disable=not progress):
        cb = design_codebook(d, k, n, seed=seed, cache=cache, **opts)
        rows.append(
            {
                "k": k,
                "n_codewords": n,
                "rate_bits": cb.rate_bits,
                "mse_per_coordinate": cb.mse_per_coordinate,
                "design_seconds": cb.design_seconds,
            }
        )
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(blocks)))
    for color, k in zip(colors, blocks):
        rs = [r for r in rows if r["k"] == k]
        ax.plot(
            [r["rate_bits"] for r in rs],
            [r["mse_per_coordinate"] for r in rs],
            marker="o",
            ms=3,
            color=color,
            label=f"FibQuant k={k}",
        )
    tq_rates = [1, 2, 3, 4]
    ax.plot(
        tq_rates,
        [lloyd_max_scalar(d, b).mse / d for b in tq_rates],
        "k+",
        ms=11,
        mew=1.8,
        ls="none",
        label="TurboQuant (scalar)",
    )
    b = np.linspace(min(r["rate_bits"] for r in rows) * 0.9, 4.05, 200)
    lines = bound_lines(d, b.tolist(), set(blocks) | {1})
    ax.plot(b, np.asarray(lines["shannon_lb"]) / d, ":", color="0.3", lw=1.2,
            label=f"Shannon lower bound (k={max(k for k in set(blocks) | {1} if k < d)} block)")
    ax.plot(b, np.asarray(lines["cap_lb"]) / d, "-.", color="0.3", lw=1.2, label="cap lower bound")
    ax.plot(b, np.asarray(lines["gaussian_ref"]) / d, "k--", lw=1,
            label=r"Gaussian reference $2^{-2b}/d$ (not a bound)")
    ax.set_yscale("log")
    ax.set_xlabel(r"rate $b=\log_2(N)/k$ (bits per coordinate)")
    ax.set_ylabel("held-out MSE per coordinate")
    ax.set_title(f"FibQuant on the spherical-Beta source, d={d}" + (" (quick)" if quick else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path, rows


def make_figures(out: str | Path = "build/figures", *, quick: bool = False, seed: int = 0, progress: bool = True) -> list[Path]:
    """Write :data:`FIG2_NAME` and :data:`FIG3_NAME` under ``out``; returns their paths.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder.
    quick : bool
        Fewer samples and rates.
    seed : int
        Design seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    list of pathlib.Path
        The two PNG files.
    """
    out = Path(out)
    p2 = plot_codebooks_k2(out / FIG2_NAME, seed=seed, quick=quick, progress=progress)
    p3, _ = plot_mse_vs_rate(out / FIG3_NAME, seed=seed, quick=quick, progress=progress)
    return [p2, p3]
