"""Generate the documentation's figures and tables with the package's own commands.

Run by the MkDocs hook (``docs/hooks/fibquant_docs.py``) before every build, or by hand::

    .venv/bin/python docs/hooks/docs_assets.py --out docs/generated

Everything is written under ``--out`` (git-ignored ``docs/generated/`` by default):

``figures/rd_scalar.png``, ``figures/rd_scalar.csv``, ``figures/rd_fibquant.csv``, ``figures/rd_vs_fibquant.png``
    ``fibquant demo --samples N --no-kv --out figures`` (the rate–distortion parts of
    the main job, on fewer samples).
``figures/fig2_codebooks_k2.png``, ``figures/fig3_mse_vs_rate.png``, ``figures/fig3_frontier.{png,csv}``
    ``fibquant figures --quick --out figures``, only when that subcommand exists; the
    frontier figure and CSV are Fig. 3 rebuilt from the shipped codebooks
    (:func:`fibquant_theory.experiments.figures.plot_frontier`).
``shipped_frontier_table.md``
    The shipped d = 64 designs of ``fig3_frontier.csv`` (MSE from the hash-checked
    manifest) with their gap in dB to the reference 2^(−2b) and to the larger lower
    bound, as a Markdown table (:func:`frontier_markdown_table`); a note when the CSV is
    missing. Shown under the frontier figure and on the *Choosing a codec* page.
``rd_scalar_table.md``, ``rd_matched_table.md``
    The demo's TurboQuant rate–distortion rows, and FibQuant against TurboQuant-mse at
    the same rates, as Markdown tables.
``encoder_table.md``, ``encoder_summary.md``
    ``python -m fibquant_theory.experiments.encoder_table --codewords 256 4096 --codebook initial``: distortion
    penalty and speed-up of the fast encoders against the exhaustive search, measured
    in the same run, as a Markdown table and as the sentence quoted by the
    *Choosing a codec* page.
``gpu_results.md``
    The committed GPU measurements (``docs/results/gpu/*.json``) for the GPU page;
    empty when there are none.
``changelog.md``
    ``git log`` grouped by issue (:func:`docs_tables.changelog_markdown`).
``methods_table.md``
    ``fibquant methods --json`` as a Markdown table: every codec of the registry.
``machine.md``
    Machine, software versions, commit and date of the run (a Markdown list).
``kv_<model>_frontier.md``, ``kv_<model>_table.md``, ``kv_fit_summary.md``
    Markdown tables of the committed results of the three-model KV sweep
    (``docs/results/kv/``, written by ``make kv-sweep``: too long to run at every
    build), read from its CSV files; the frontier is recomputed from the rows with
    :func:`fibquant_theory.kv.pareto.frontier_table`.
``paper_figures.md``
    The paper's figures as Markdown images, or a note that ``fibquant figures`` is
    not part of this version. It is included in ``docs/tutorials/rate-distortion.md``
    and its image paths are relative to that page (``../generated/figures/``).

Nothing is hand-made: every number and image comes from the commands above.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["frontier_markdown_table", "generate", "kv_results_markdown", "machine_info", "rd_markdown_table",
           "has_subcommand", "has_option", "main"]

ROOT = Path(__file__).resolve().parents[2]

#: The paper's figures written by ``fibquant figures --quick``: file name -> caption.
PAPER_FIGURES: dict[str, str] = {
    "fig2_codebooks_k2.png": "FibQuant k = 2 codebooks and their Voronoi cells over the density f_{d,2}, "
    "before (open) and after (solid) Lloyd–Max refinement (paper Figure 2, quick settings).",
    "fig3_mse_vs_rate.png": "Held-out MSE per coordinate against the rate b = log2(N)/k: FibQuant for several "
    "block sizes k against scalar TurboQuant and the reference curves of the legend (paper Figure 3, quick settings).",
    "fig3_frontier.png": "Figure 3 built from the shipped data at d = 64: every codebook shipped with the package "
    "(stars and other large markers, labelled with k and N; held-out MSE from its hash-checked manifest entry), the "
    "lattice families d4, hurwitz and e8 (open markers), FibQuant designs for k = 2, 4, 8, 16, 32 (quick settings), "
    "scalar TurboQuant, the Gaussian reference 2^(-2b)/d (not a bound) and the Shannon and cap lower bounds; the "
    "right panel enlarges the sub-one-bit designs.",
}
#: File name of the Markdown table of the shipped designs (:func:`frontier_markdown_table`).
FRONTIER_TABLE = "shipped_frontier_table.md"


def _fibquant(args: Sequence[str], timeout: float = 600.0) -> str:
    """Run ``python -m fibquant_theory ARGS`` (the ``fibquant`` command) and return its stdout."""
    cmd = [sys.executable, "-m", "fibquant_theory", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`fibquant {' '.join(args)}` failed with status {proc.returncode}:\n{proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def has_subcommand(name: str) -> bool:
    """Whether the installed ``fibquant`` command has the subcommand ``name``."""
    from fibquant_theory.cli.main import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # argparse keeps subcommands here
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and name in choices:
            return True
    return False


def has_option(subcommand: str, option: str) -> bool:
    """Whether the ``fibquant`` subcommand ``subcommand`` accepts the option ``option`` (e.g. ``"--no-kv"``)."""
    from fibquant_theory.cli.main import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:
        sub = getattr(action, "choices", {}).get(subcommand)
        if sub is not None:
            return any(option in a.option_strings for a in sub._actions)
    return False


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    dirty = ""
    if proc.returncode == 0:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = " (with uncommitted changes)" if status.stdout.strip() else ""
    return proc.stdout.strip() + dirty if proc.returncode == 0 else "unknown"


def _tables() -> Any:
    """``docs/hooks/docs_tables.py`` (the hooks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fibquant_docs_tables", Path(__file__).with_name("docs_tables.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git_log() -> str:
    """``git log`` of the repository, one ``hash<TAB>date<TAB>subject`` line per commit ("" without git)."""
    try:
        proc = subprocess.run(
            ["git", "log", "--format=%h%x09%ad%x09%s", "--date=short"],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def machine_info() -> dict[str, str]:
    """Machine, software versions, commit and UTC date of this run.

    Returns
    -------
    dict of str to str
        Keys ``date``, ``cpu``, ``cores``, ``os``, ``python``, ``numpy``, ``scipy``,
        ``numba``, ``fibquant``, ``commit``.
    """
    import numba
    import numpy
    import scipy

    import fibquant_theory

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "fibquant": fibquant_theory.__version__,
        "commit": _git_commit(),
    }


def _fmt(value: str, digits: int = 4) -> str:
    x = float(value)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def rd_markdown_table(csv_path: str | Path) -> str:
    """The rows of ``rd_scalar.csv`` (written by ``fibquant demo``) as a Markdown table.

    Parameters
    ----------
    csv_path : str or pathlib.Path
        CSV with the keys of :func:`fibquant_theory.experiments.rd.rate_distortion`.

    Returns
    -------
    str
        A Markdown table: method, d, rate, MSE ± 2 standard errors, the reference 2^(−2b),
        gap in dB, inner-product MSE, inner-product bias ± 2 standard errors.

    Raises
    ------
    ValueError
        If the file has no rows or lacks a column.
    """
    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    need = {"method", "d", "rate_bits", "mse", "mse_se", "gaussian_ref", "gap_db", "ip_mse", "ip_bias", "ip_bias_se"}
    missing = need - set(rows[0])
    if missing:
        raise ValueError(f"{csv_path}: missing columns {sorted(missing)}")
    lines = [
        "| method | d | b | E‖u − û‖² ± 2 s.e. | 2^(−2b) | gap dB | ⟨q,u⟩ MSE | ⟨q,u⟩ bias ± 2 s.e. |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mse_2se = _fmt(str(2 * float(r["mse_se"])), 2)
        bias_2se = _fmt(str(2 * float(r["ip_bias_se"])), 2)
        lines.append(
            f"| {r['method']} | {r['d']} | {float(r['rate_bits']):g} | {_fmt(r['mse'])} ± {mse_2se} "
            f"| {_fmt(r['gaussian_ref'])} | {float(r['gap_db']):.2f} | {_fmt(r['ip_mse'], 3)} "
            f"| {_fmt(r['ip_bias'], 2)} ± {bias_2se} |"
        )
    return "\n".join(lines) + "\n"


def frontier_markdown_table(csv_path: str | Path) -> str:
    """The shipped designs of ``fig3_frontier.csv`` (written by ``fibquant figures``) as a Markdown table.

    Parameters
    ----------
    csv_path : str or pathlib.Path
        CSV with the columns of :data:`fibquant_theory.experiments.figures.FRONTIER_COLUMNS`.

    Returns
    -------
    str
        A Markdown table, one row per ``source == "shipped"`` row: d, k, N, rate, family,
        held-out E‖u − û‖², the reference 2^(−2b), the gap to it in dB, the larger lower
        bound, the gap to it in dB, and the exact TurboQuant MSE at the same rate when the
        CSV has a TurboQuant row there ("—" otherwise).

    Raises
    ------
    ValueError
        If the file lacks a column or has no shipped row.
    """
    from fibquant_theory.experiments.figures import FRONTIER_COLUMNS

    with Path(csv_path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = set(FRONTIER_COLUMNS) - set(rows[0]) if rows else set()
    if missing:
        raise ValueError(f"{csv_path}: missing columns {sorted(missing)}")
    shipped = [r for r in rows if r["source"] == "shipped"]
    if not shipped:
        raise ValueError(f"{csv_path}: no shipped row")
    scalar = {float(r["rate_bits"]): float(r["mse"]) for r in rows if r["source"] == "turboquant"}
    lines = [
        "| d | k | N | b | family | held-out E‖u − û‖² | 2^(−2b) | gap dB | larger lower bound "
        "| gap to it dB | TurboQuant at b |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in shipped:
        b = float(r["rate_bits"])
        tq = next((v for rate, v in scalar.items() if abs(rate - b) < 1e-9), None)
        lines.append(
            f"| {r['d']} | {r['k']} | {r['n_codewords']} | {b:.4g} | {r['family']} | {float(r['mse']):.4f} "
            f"| {float(r['gaussian_ref']):.4f} | {float(r['gap_db']):+.2f} | {float(r['lower_bound']):.4f} "
            f"| {float(r['bound_gap_db']):+.2f} | {'—' if tq is None else f'{tq:.4f}'} |"
        )
    return "\n".join(lines) + "\n"


def methods_markdown_table(methods: Sequence[dict[str, str]]) -> str:
    """The registry's methods (the rows of ``fibquant methods --json``) as a Markdown table."""
    if not methods:
        raise ValueError("fibquant methods printed no method")
    lines = ["| method | rate | KV cache | options | what it is |", "| --- | --- | --- | --- | --- |"]
    for m in methods:
        options = ", ".join(f"`{o}`" for o in m["options"].split(", ") if o)
        cells = [str(m["rate"]), str(m["kv"]), options, str(m["description"])]
        cells = [c.replace("|", "\\|") for c in cells]  # a `|` in a cell would split it (e.g. "max |x_i|")
        lines.append(f"| `{m['method']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: The committed results of ``make kv-sweep``.
KV_RESULTS = ROOT / "docs" / "results" / "kv"


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return {"True": True, "False": False}.get(text, text)


def _kv_rows(path: Path) -> list[dict[str, object]]:
    with path.open(newline="") as fh:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _rate(r: dict[str, object]) -> str:
    parts = []
    for key, name in (("block", "k"), ("codewords", "N"), ("value_codewords", "N_V"), ("bits", "b"),
                      ("value_bits", "b_V"), ("nbits", "b")):
        v = r.get(key)
        if isinstance(v, float):
            parts.append(f"{name}={int(v)}")
    return " ".join(parts) or "—"


def kv_results_markdown(results: str | Path = KV_RESULTS) -> dict[str, str]:
    """Markdown tables of the committed KV sweep: file name -> table.

    Parameters
    ----------
    results : str or pathlib.Path
        Folder with ``kv_pareto_<model>.csv`` and ``kv_fit_<model>.csv`` files.

    Returns
    -------
    dict of str to str
        ``kv_<model>_frontier.md`` and ``kv_<model>_table.md`` per model, and ``kv_fit_summary.md``.

    Raises
    ------
    FileNotFoundError
        When the folder holds no sweep CSV.
    """
    from fibquant_theory.kv.pareto import frontier_table

    results = Path(results)
    files = sorted(results.glob("kv_pareto_*.csv"))
    if not files:
        raise FileNotFoundError(f"no kv_pareto_*.csv in {results}: run `make kv-sweep` and copy its CSV files there")
    out: dict[str, str] = {}
    for path in files:
        model = path.stem.removeprefix("kv_pareto_")
        rows = [r for r in _kv_rows(path)]
        texts = [k.split(":", 1)[1] for k in rows[0] if k.startswith("ppl:")]
        head = ["setting", "rate", "compression", *(f"ppl {t}" for t in texts), "Δppl % (± s.d.)", "attn cos",
                "score cos", "attn KL", "key MSE", "seeds"]
        lines = ["| " + " | ".join(head) + " |", "| --- | --- | " + " | ".join(["---:"] * (len(head) - 2)) + " |"]
        for r in sorted(rows, key=lambda r: (str(r.get("label", r["method"])), float(r["compression"]))):
            ppl = [f"{float(r[f'ppl:{t}']):.3f}" for t in texts]
            lines.append(
                f"| {r.get('label', r['method'])} | {_rate(r)} | {float(r['compression']):.2f}× | {' | '.join(ppl)} "
                f"| {float(r['delta_ppl_pct']):+.2f} ± {float(r['delta_ppl_pct_std']):.2f} | {float(r['attn_cosine']):.4f} "
                f"| {float(r['score_cosine']):.4f} | {float(r['attn_kl']):.4f} | {float(r['key_mse']):.4f} | {int(r['seeds'])} |"
            )
        out[f"kv_{model}_table.md"] = "\n".join(lines) + "\n"
        front = frontier_table([r for r in rows if isinstance(r["compression"], float)])
        lines = ["| target | rank | setting | compression | Δppl % (± s.d.) | on the frontier | dominated by |",
                 "| ---: | ---: | --- | ---: | ---: | --- | --- |"]
        for f in front:
            lines.append(
                f"| {f['target']:g}× | {f['rank']} | {f['label']} | {f['compression']:.2f}× "
                f"| {f['delta_ppl_pct']:+.2f} ± {f['delta_ppl_pct_std']:.2f} | {'yes' if f['frontier'] else 'no'} "
                f"| {f['dominated_by'] or '—'} |"
            )
        out[f"kv_{model}_frontier.md"] = "\n".join(lines) + "\n"
    fits = sorted(results.glob("kv_fit_*.csv"))
    lines = ["| model | role | KS block-max raw (mean / max over layers) | centred | uniform reference "
             "| mean-energy fraction (mean / max) | outlier-channel ratio (max) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in fits:
        rows = _kv_rows(path)
        for role in ("key", "value"):
            rs = [r for r in rows if r["role"] == role]
            if not rs:
                continue

            def mm(col: str) -> str:
                vals = [float(r[col]) for r in rs]
                return f"{sum(vals) / len(vals):.3f} / {max(vals):.3f}"

            ratio = max(float(r["outlier_channel_ratio"]) for r in rs)
            lines.append(f"| {path.stem.removeprefix('kv_fit_')} | {role} | {mm('ks_block_max_raw')} "
                         f"| {mm('ks_block_max_centred')} | {mm('ks_block_max_uniform')} "
                         f"| {mm('mean_energy_fraction')} | {ratio:.1f} |")
    out["kv_fit_summary.md"] = "\n".join(lines) + "\n"
    return out


def _machine_markdown(info: dict[str, str], seconds: dict[str, float]) -> str:
    timing = ", ".join(f"`{k}` {v:.1f} s" for k, v in seconds.items())
    return (
        f"- **date**: {info['date']}\n"
        f"- **machine**: {info['cpu']}, {info['cores']} cores, {info['os']}\n"
        f"- **software**: fibquant {info['fibquant']} (commit {info['commit']}), Python {info['python']}, "
        f"NumPy {info['numpy']}, SciPy {info['scipy']}, Numba {info['numba']}\n"
        f"- **wall time of the commands**: {timing}\n"
    )


def _paper_figures_markdown(
    out_figures: Path, available: bool, prefix: str = "../generated/figures/", after: dict[str, str] | None = None
) -> str:
    if not available:
        return (
            '!!! note "Not in this version"\n'
            "    The paper's codebook and MSE-versus-rate figures are written by `fibquant figures`,\n"
            "    which this version of the package does not have yet.\n"
        )
    parts = []
    for name, caption in PAPER_FIGURES.items():
        if (out_figures / name).is_file():
            parts.append(f"![{caption}]({prefix}{name})\n\n*{caption}*\n")
            if after and name in after:
                parts.append(after[name])
    if not parts:
        raise RuntimeError(f"`fibquant figures --quick` wrote none of {sorted(PAPER_FIGURES)} in {out_figures}")
    return "\n".join(parts)


def generate(out: str | Path, samples: int = 20_000, seed: int = 0, verbose: bool = False) -> dict[str, float]:
    """Write the documentation's generated figures and tables under ``out``.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder (created); see the module docstring for its files.
    samples : int, default 20000
        Unit vectors per rate–distortion point of ``fibquant demo``.
    seed : int, default 0
        Seed of ``fibquant demo`` (the results are deterministic for a seed).
    verbose : bool, default False
        Print one line per command with its wall time.

    Returns
    -------
    dict of str to float
        Wall time in seconds of each command that ran.
    """
    if int(samples) < 1000:
        raise ValueError(f"samples must be >= 1000, got {samples}")
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    tables = _tables()
    cmd = ["demo", "--samples", str(int(samples)), "--seed", str(int(seed))]
    # The rate-distortion parts (TurboQuant, and FibQuant at the same rates: its codebooks
    # are designed once, about a minute on a cold cache, then read from the cache); the
    # real-model part needs the `kv` extra and takes minutes (see the Benchmarks page).
    if has_option("demo", "--no-kv"):
        cmd.append("--no-kv")
    t0 = time.perf_counter()
    _fibquant([*cmd, "--out", str(figures), "--no-progress"])
    seconds[f"fibquant {' '.join(cmd)}"] = time.perf_counter() - t0
    (out / "rd_scalar_table.md").write_text(rd_markdown_table(figures / "rd_scalar.csv"))
    (out / "rd_matched_table.md").write_text(
        tables.matched_rate_markdown(figures / "rd_scalar.csv", figures / "rd_fibquant.csv")
    )

    args = ["--codewords", "256", "4096", "--codebook", "initial"]
    command = ["-m", "fibquant_theory.experiments.encoder_table", *args]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(command)} failed with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    seconds["python " + " ".join(command)] = time.perf_counter() - t0
    printed = proc.stdout.strip()
    rows = tables.parse_text_table(printed)
    (out / "encoder_table.md").write_text(
        f"`python {' '.join(command)}` measured ({printed.splitlines()[0]}):\n\n{tables.encoder_markdown(rows)}"
    )
    summary = tables.encoder_summary(rows)
    (out / "encoder_summary.md").write_text(
        f"On the multi-shell initial codebooks of N = {summary['sizes']} codewords (d = 128, k = 8), "
        f"the two-stage search with one probed shell has a **{summary['two_stage_penalty']} % higher "
        f"distortion** than the exhaustive search, for a {summary['two_stage_speedup']}× speed-up; the "
        f"clustered search with T = {summary['clustered_top']} costs {summary['clustered_penalty']} % for "
        f"{summary['clustered_speedup']}×.\n"
    )

    t0 = time.perf_counter()
    (out / "methods_table.md").write_text(methods_markdown_table(json.loads(_fibquant(["methods", "--json"]))))
    seconds["fibquant methods --json"] = time.perf_counter() - t0

    with_figures = has_subcommand("figures")
    if with_figures:
        cmd = ["figures", "--quick", "--out", str(figures)]
        t0 = time.perf_counter()
        _fibquant(cmd)
        seconds["fibquant figures --quick"] = time.perf_counter() - t0
    frontier_csv = figures / "fig3_frontier.csv"
    if with_figures and frontier_csv.is_file():
        table = (
            "The shipped designs at d = 64, their held-out MSE read from the hash-checked manifest "
            "(`fibquant_theory/codebooks/data/manifest.json`) by `fibquant figures` during this build, "
            "and their gap to the Gaussian reference 2^(−2b) and to the larger of the two lower bounds "
            "(the Shannon bound of the design's own block and the cap bound):\n\n"
            + frontier_markdown_table(frontier_csv)
        )
    else:
        table = ('!!! note "Not in this build"\n'
                 "    The table of the shipped codebooks is written from `fibquant figures`, which did not write "
                 "`fig3_frontier.csv` in this version.\n")
    (out / FRONTIER_TABLE).write_text(table)
    (out / "paper_figures.md").write_text(
        _paper_figures_markdown(figures, with_figures, after={"fig3_frontier.png": table})
    )
    for name, text in kv_results_markdown().items():
        (out / name).write_text(text)
    (out / "gpu_results.md").write_text(tables.gpu_results_markdown(ROOT / "docs" / "results" / "gpu"))
    (out / "changelog.md").write_text(tables.changelog_markdown(_git_log()))
    (out / "machine.md").write_text(_machine_markdown(machine_info(), seconds))
    if verbose:
        for k, v in seconds.items():
            print(f"{k}: {v:.1f} s")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python docs/hooks/docs_assets.py [--out DIR] [--samples N] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "generated"))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.out, samples=args.samples, seed=args.seed, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
