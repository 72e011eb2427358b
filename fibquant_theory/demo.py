"""The main job (`make demo`): the scalar TurboQuant rate–distortion table and figure."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ._table import format_table
from .methods import make_codec
from .rd import rate_distortion

__all__ = ["scalar_rd_table", "plot_rd", "write_csv", "run_demo", "RD_COLUMNS"]

RD_COLUMNS = ["method", "d", "rate_bits", "mse", "mse_se", "shannon_bound", "gap_db", "ip_mse", "ip_bias"]


def scalar_rd_table(
    dims: Sequence[int] = (64, 128),
    bits: Sequence[int] = (1, 2, 3, 4),
    methods: Sequence[str] = ("turboquant", "turboquant-prod"),
    n_samples: int = 100_000,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Rate–distortion rows for every ``(method, d, bits)``; see :func:`~fibquant_theory.rd.rate_distortion`."""
    grid = [(m, d, b) for m in methods for d in dims for b in bits]
    rows = []
    for method, d, b in tqdm(grid, desc="rate-distortion", disable=not progress):
        rows.append(rate_distortion(make_codec(method, d, bits=b, seed=seed), n_samples=n_samples, seed=seed))
    return rows


def plot_rd(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Plot MSE against rate (log scale) per method and dimension with the Shannon bound; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["d"]), []).append(r)
    for (method, d), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["rate_bits"])
        ax.errorbar(
            [r["rate_bits"] for r in rs],
            [r["mse"] for r in rs],
            yerr=[2 * r["mse_se"] for r in rs],
            marker="o",
            capsize=2,
            label=f"{method}, d={d}",
        )
    rates = sorted({r["rate_bits"] for r in rows})
    if rates:
        grid = [rates[0] + (rates[-1] - rates[0]) * i / 100 for i in range(101)]
        ax.plot(grid, [2.0 ** (-2 * b) for b in grid], "k--", label=r"Shannon bound $2^{-2b}$")
    ax.set_yscale("log")
    ax.set_xlabel("rate b (bits per coordinate)")
    ax.set_ylabel(r"$E\|u-\hat u\|^2$ (unit vectors)")
    ax.set_title("Rate–distortion on uniform unit vectors")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` to a CSV file (columns from the first row); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_demo(out: str | Path = "build/demo", n_samples: int = 100_000, seed: int = 0, progress: bool = True) -> str:
    """Run the main job, write ``rd_scalar.csv`` and ``rd_scalar.png`` under ``out``; return the text table."""
    rows = scalar_rd_table(n_samples=n_samples, seed=seed, progress=progress)
    out = Path(out)
    csv_path = write_csv(rows, out / "rd_scalar.csv")
    png_path = plot_rd(rows, out / "rd_scalar.png")
    return f"{format_table(rows, RD_COLUMNS)}\n\nwrote {csv_path} and {png_path}"
