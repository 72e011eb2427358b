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
* ``fig3_frontier.png`` and ``fig3_frontier.csv`` — Fig. 3 rebuilt from the shipped data
  (:func:`plot_frontier`): the designed curves for :math:`k\in\{2,4,8,16,32\}` at ``d = 64``,
  every codebook shipped at that ``d`` (:mod:`~fibquant_theory.codebooks.shipped`, hash-checked,
  its held-out MSE read from the manifest), the structured lattice families (d4, hurwitz,
  e8) at a few sizes, TurboQuant, the reference and the two lower bounds; the CSV holds the
  plotted points with their gap to the reference and to the larger lower bound.

Codebooks come from :func:`~fibquant_theory.codebooks.design.design_codebook` (and its
cache); ``quick=True`` uses fewer samples, one restart and fewer rates.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fibquant_theory._validation import check_dim_block
from fibquant_theory.codebooks.codebook import Codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codebooks.lloyd import nearest_codeword
from fibquant_theory.codebooks.shipped import load_entry, read_manifest
from fibquant_theory.config import FIGURES_FULL, FIGURES_QUICK
from fibquant_theory.experiments.rd import bound_lines, gaussian_reference, lower_bounds
from fibquant_theory.theory.scalar import lloyd_max_scalar
from fibquant_theory.theory.source import SphericalBeta

__all__ = [
    "FIG2_NAME",
    "FIG3_NAME",
    "FRONTIER_BLOCKS",
    "FRONTIER_COLUMNS",
    "FRONTIER_CSV",
    "FRONTIER_LATTICE",
    "FRONTIER_NAME",
    "make_figures",
    "plot_codebooks_k2",
    "plot_frontier",
    "plot_mse_vs_rate",
    "rate_grid",
    "write_rows_csv",
]

FIG2_NAME = "fig2_codebooks_k2.png"
FIG3_NAME = "fig3_mse_vs_rate.png"
#: Fig. 3 from the shipped data (:func:`plot_frontier`), and its points.
FRONTIER_NAME = "fig3_frontier.png"
FRONTIER_CSV = "fig3_frontier.csv"
#: Block sizes of the designed curves of :func:`plot_frontier`.
FRONTIER_BLOCKS = (2, 4, 8, 16, 32)
#: ``(family, k, sizes N)`` of the structured lattice points of :func:`plot_frontier` (each a fraction of a second).
FRONTIER_LATTICE: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("d4", 4, (24, 48, 96, 192)),
    ("hurwitz", 4, (24, 48, 96, 192)),
    ("e8", 8, (240, 480, 960)),
)
#: The keys of every row of :func:`plot_frontier` (the columns of :data:`FRONTIER_CSV`).
FRONTIER_COLUMNS = (
    "source", "family", "d", "k", "n_codewords", "rate_bits", "mse", "mse_per_coordinate", "gaussian_ref",
    "gap_db", "lower_bound", "bound_gap_db",
)


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


def _frontier_row(source: str, family: str, d: int, k: int, n: int, mse: float) -> dict[str, Any]:
    """One point of :func:`plot_frontier`: its rate, MSE, the reference, the larger lower bound and the gaps."""
    b = math.log2(n) / k
    ref = gaussian_reference(b)
    bound = max(v for v in lower_bounds(d, b, k).values() if not math.isnan(v))
    gap = (lambda x: 10.0 * math.log10(mse / x) if mse > 0 else -math.inf)
    return {
        "source": source, "family": family, "d": d, "k": k, "n_codewords": n, "rate_bits": b, "mse": float(mse),
        "mse_per_coordinate": float(mse) / d, "gaussian_ref": ref, "gap_db": gap(ref), "lower_bound": bound,
        "bound_gap_db": gap(bound),
    }


#: Marker of each lattice family in :func:`plot_frontier`; the shipped designs take the markers of _SHIPPED_MARKERS.
_LATTICE_MARKERS = {"d4": "s", "hurwitz": "^", "e8": "D"}
_SHIPPED_MARKERS = ("*", "P", "X", "h", "p", "8", "v", "<", ">")


def _draw_frontier(ax: Any, rows: list[dict[str, Any]], color: dict[int, Any], *, label: bool, annotate: Any) -> None:
    """The points of ``rows`` on ``ax``; ``label``: give them legend labels; ``annotate(row)``: write k, N beside it."""
    for k in sorted({r["k"] for r in rows if r["source"] == "designed"}):
        rs = [r for r in rows if r["source"] == "designed" and r["k"] == k]
        ax.plot([r["rate_bits"] for r in rs], [r["mse_per_coordinate"] for r in rs], marker="o", ms=3, lw=1.2,
                color=color[k], label=f"designed k={k}" if label else None)
    for fam in sorted({r["family"] for r in rows if r["source"] == "lattice"}):
        rs = [r for r in rows if r["source"] == "lattice" and r["family"] == fam]
        sizes = ", ".join(str(r["n_codewords"]) for r in rs)
        ax.plot([r["rate_bits"] for r in rs], [r["mse_per_coordinate"] for r in rs], ls=":", lw=1,
                marker=_LATTICE_MARKERS.get(fam, "o"), ms=6, mfc="none", mew=1.3, color=color[rs[0]["k"]],
                label=f"lattice {fam} (k={rs[0]['k']}, N={sizes})" if label else None)
    tq = [r for r in rows if r["source"] == "turboquant"]
    ax.plot([r["rate_bits"] for r in tq], [r["mse_per_coordinate"] for r in tq], "k+", ms=11, mew=1.8, ls="none",
            label="TurboQuant (scalar, exact)" if label else None)
    shipped = [r for r in rows if r["source"] == "shipped"]
    for i, r in enumerate(shipped):
        marker = _SHIPPED_MARKERS[i % len(_SHIPPED_MARKERS)]
        ax.plot([r["rate_bits"]], [r["mse_per_coordinate"]], ls="none", marker=marker, ms=13, color=color[r["k"]],
                mec="black", mew=0.9, zorder=5,
                label=f"shipped k={r['k']}, N={r['n_codewords']} (b={r['rate_bits']:.4g}, {r['gap_db']:+.2f} dB)"
                if label else None)
        if annotate(r):
            ax.annotate(f"k={r['k']}\nN={r['n_codewords']}", (r["rate_bits"], r["mse_per_coordinate"]),
                        xytext=(9, 4), textcoords="offset points", fontsize=7.5, zorder=6)
    ax.set_yscale("log")
    ax.set_xlabel(r"rate $b=\log_2(N)/k$ (bits per coordinate)")
    ax.grid(True, which="both", alpha=0.3)


def plot_frontier(
    path: str | Path,
    d: int = 64,
    blocks: Sequence[int] = FRONTIER_BLOCKS,
    *,
    lattice: Sequence[tuple[str, int, Sequence[int]]] = FRONTIER_LATTICE,
    seed: int = 0,
    quick: bool = False,
    cache: bool = True,
    progress: bool = True,
    folder: str | Path | None = None,
    detail_rate: float = 0.5,
) -> tuple[Path, list[dict[str, Any]]]:
    r"""Fig. 3 from the shipped data: designed curves, shipped codebooks, lattice families, TurboQuant, bounds.

    At dimension ``d`` the figure shows, as held-out MSE per coordinate against the rate
    :math:`b = \log_2(N)/k` (log scale):

    * ``designed``: the shells designs of :func:`rate_grid` for every ``k`` in ``blocks``
      (:func:`~fibquant_theory.codebooks.design.design_codebook`, the settings of
      :func:`plot_mse_vs_rate`, so a run after it reads them from the cache);
    * ``shipped``: every codebook of the manifest at ``d`` (any ``k``, any family), each
      with its own marker and its ``k, N`` written beside it; the file is loaded and
      checked (:func:`~fibquant_theory.codebooks.shipped.load_entry`: SHA-256, content
      hash, fields) and the MSE is the manifest's ``heldout_mse``;
    * ``lattice``: the structured families of ``lattice`` whose block divides ``d`` (open
      markers, one per family);
    * ``turboquant``: scalar Lloyd–Max (exact) at the integer rates up to the largest plotted rate;
    * the Gaussian reference :math:`2^{-2b}/d` (not a bound), the Shannon lower bound of the
      largest plotted block below ``d`` (it bounds every plotted code) and the cap lower bound.

    A right-hand panel, drawn when some shipped design has a rate of at most
    ``detail_rate``, repeats the points around those designs (the sub-one-bit designs
    crowd the left end of the full range).

    Parameters
    ----------
    path : str or pathlib.Path
        PNG file to write.
    d : int
        Dimension; the manifest must ship at least one codebook at ``d``.
    blocks : sequence of int
        Block sizes of the designed curves, each dividing ``d`` (may be empty).
    lattice : sequence of (str, int, sequence of int)
        ``(family, k, sizes)`` of the structured points (:data:`FRONTIER_LATTICE`); entries
        whose ``k`` does not divide ``d`` are left out. Empty: none.
    seed : int
        Design seed of the designed and lattice codebooks.
    quick : bool
        The quick grid and settings of :func:`plot_mse_vs_rate` (``FIGURES_QUICK``).
    cache : bool
        Use the codebook cache.
    progress : bool
        Show a progress bar.
    folder : str, pathlib.Path or None
        Folder of the shipped codebooks and their manifest; ``None``:
        :func:`~fibquant_theory.codebooks.shipped.data_dir`.
    detail_rate : float
        Shipped designs of rate at most this get the right-hand detail panel, ``> 0``.

    Returns
    -------
    path : pathlib.Path
    rows : list of dict
        One per plotted point, keys :data:`FRONTIER_COLUMNS`: ``source`` (``"designed"``,
        ``"shipped"``, ``"lattice"`` or ``"turboquant"``), ``family``, ``d``, ``k``,
        ``n_codewords``, ``rate_bits``, ``mse`` (:math:`E\|u-\hat u\|^2` over the ``d``
        coordinates), ``mse_per_coordinate``, ``gaussian_ref`` (:math:`2^{-2b}`), ``gap_db``
        :math:`= 10\log_{10}(\mathrm{mse}/2^{-2b})`, ``lower_bound`` (the larger of the two
        bounds of :func:`~fibquant_theory.experiments.rd.lower_bounds` for the point's own
        block) and ``bound_gap_db`` :math:`= 10\log_{10}(\mathrm{mse}/\mathrm{lower\_bound})`.
        TurboQuant rows have ``k = 1`` and ``n_codewords = 2^b``.

    Raises
    ------
    ValueError
        If nothing is shipped at ``d`` (the message lists the dimensions that are), a block
        size does not divide ``d``, ``detail_rate <= 0``, or a lattice size is not valid
        for its family.
    ShippedCodebookError
        If a shipped file fails its checks.
    """
    d, _ = check_dim_block(d)
    ks = [check_dim_block(d, k)[1] for k in blocks]
    bad = [k for k in ks if d % k]
    if bad:
        raise ValueError(f"every block size must divide the dimension d={d}; {bad} do not")
    if not (isinstance(detail_rate, (int, float)) and math.isfinite(detail_rate) and detail_rate > 0):
        raise ValueError(f"detail_rate must be a finite number > 0, got {detail_rate!r}")
    entries = [e for e in read_manifest(folder) if e["d"] == d]
    if not entries:
        dims = sorted({e["d"] for e in read_manifest(folder)})
        raise ValueError(f"no codebook is shipped at d={d}; shipped dimensions: {dims or 'none'}")
    entries.sort(key=lambda e: (e["k"], e["N"], e["family"], e["seed"]))
    plt = _pyplot()
    opts = FIGURES_QUICK if quick else FIGURES_FULL
    lat_opts = {n: opts[n] for n in ("n_train", "n_heldout")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = [("designed", "shells", k, n) for k in ks for n in rate_grid(k, quick=quick)]
    jobs += [("lattice", fam, int(k), int(n)) for fam, k, sizes in lattice if d % int(k) == 0 for n in sizes]
    rows = []
    for source, fam, k, n in tqdm(jobs, desc="Fig. 3 (shipped) codebooks", disable=not progress):
        extra = opts if source == "designed" else {"family": fam, **lat_opts}
        cb = design_codebook(d, k, n, seed=seed, cache=cache, **extra)
        rows.append(_frontier_row(source, fam, d, k, n, cb.heldout_mse))
    for e in entries:
        load_entry(e, folder)  # SHA-256, content hash and fields; the MSE is the manifest's
        rows.append(_frontier_row("shipped", e["family"], d, e["k"], e["N"], float(e["heldout_mse"])))
    top = max(r["rate_bits"] for r in rows)
    for b in range(1, min(8, max(1, math.ceil(top - 1e-9))) + 1):
        rows.append(_frontier_row("turboquant", "scalar", d, 1, 2**b, lloyd_max_scalar(d, b).mse))

    all_k = sorted({r["k"] for r in rows if r["source"] != "turboquant"})
    color = {k: plt.cm.tab10(i % 10) for i, k in enumerate(all_k)}
    low = [r["rate_bits"] for r in rows if r["source"] == "shipped" and r["rate_bits"] <= detail_rate]
    fig, axes = plt.subplots(1, 2 if low else 1, figsize=(12.5 if low else 7.5, 5.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1.5, 1] if low else [1]})
    ax, zoom = axes[0, 0], (axes[0, 1] if low else None)
    rates = [r["rate_bits"] for r in rows]
    b = np.linspace(min(rates) * 0.9, max(rates) * 1.03, 240)
    bound_ks = set(all_k) | {1}
    lines = bound_lines(d, b.tolist(), bound_ks)
    slb_k = max(k for k in bound_ks if k < d)
    for a in (ax, zoom) if zoom is not None else (ax,):
        a.plot(b, np.asarray(lines["shannon_lb"]) / d, ":", color="0.3", lw=1.2,
               label=f"Shannon lower bound (k={slb_k} block)" if a is ax else None)
        a.plot(b, np.asarray(lines["cap_lb"]) / d, "-.", color="0.3", lw=1.2,
               label="cap lower bound" if a is ax else None)
        a.plot(b, np.asarray(lines["gaussian_ref"]) / d, "k--", lw=1,
               label=r"Gaussian reference $2^{-2b}/d$ (not a bound)" if a is ax else None)
    _draw_frontier(ax, rows, color, label=True, annotate=lambda r: zoom is None or r["rate_bits"] > detail_rate)
    if zoom is not None:  # the shipped designs of rate <= detail_rate, and what lies around them
        _draw_frontier(zoom, rows, color, label=False, annotate=lambda r: r["rate_bits"] <= detail_rate)
        pad = 0.06 + 0.15 * (max(low) - min(low))
        lo, hi = max(0.0, min(low) - pad), max(low) + pad
        near = [r["mse_per_coordinate"] for r in rows if lo <= r["rate_bits"] <= hi]
        near += [v / d for bb, v in zip(b, lines["cap_lb"]) if lo <= bb <= hi]
        zoom.set_xlim(lo, hi)
        zoom.set_ylim(min(near) / 1.05, max(near) * 1.05)
        zoom.yaxis.set_major_formatter(lambda y, _: f"{y:.3g}")
        zoom.yaxis.set_minor_formatter(lambda y, _: f"{y:.3g}")
        zoom.tick_params(axis="y", which="minor", labelsize=7)
        zoom.set_title(f"detail: the shipped designs of rate b ≤ {detail_rate:g}")
    ax.set_ylabel("held-out MSE per coordinate")
    ax.set_title(f"d={d}: designed, shipped and lattice codebooks" + (" (quick designs)" if quick else ""))
    handles, labels = ax.get_legend_handles_labels()
    ncol = 3 if zoom is not None else 2
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.028 * math.ceil(len(labels) / ncol), 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path, rows


def write_rows_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the rows of :func:`plot_frontier` as CSV (columns :data:`FRONTIER_COLUMNS`); returns the path.

    Parameters
    ----------
    rows : sequence of dict
        Rows with at least the keys :data:`FRONTIER_COLUMNS` (others are ignored).
    path : str or pathlib.Path
        The file (missing parent folders are created).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FRONTIER_COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: repr(r[c]) if isinstance(r[c], float) else r[c] for c in FRONTIER_COLUMNS} for r in rows)
    return path


def make_figures(out: str | Path = "build/figures", *, quick: bool = False, seed: int = 0, progress: bool = True) -> list[Path]:
    """Write :data:`FIG2_NAME`, :data:`FIG3_NAME`, :data:`FRONTIER_NAME` and :data:`FRONTIER_CSV` under ``out``.

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
        The three PNG files and the CSV of :func:`plot_frontier` (d = 64).
    """
    out = Path(out)
    p2 = plot_codebooks_k2(out / FIG2_NAME, seed=seed, quick=quick, progress=progress)
    p3, _ = plot_mse_vs_rate(out / FIG3_NAME, seed=seed, quick=quick, progress=progress)
    pf, rows = plot_frontier(out / FRONTIER_NAME, seed=seed, quick=quick, progress=progress)
    return [p2, p3, pf, write_rows_csv(rows, out / FRONTIER_CSV)]
