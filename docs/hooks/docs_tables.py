"""Markdown tables and snippets of the site built from command outputs (used by ``docs_assets.py``).

Pure functions of text, CSV and JSON: no command runs here, so every one of them is
tested on small inputs in ``tests/test_docs.py``.

* :func:`parse_text_table` reads a table printed by the package's ``format_table``;
* :func:`encoder_markdown` and :func:`encoder_summary` turn the encoder table
  (``python -m fibquant_theory.experiments.encoder_table``) into a Markdown table and
  the figures quoted on the *Choosing a codec* page;
* :func:`matched_rate_markdown` is the FibQuant-against-TurboQuant table of the
  Benchmarks page, from the two CSV files of ``fibquant demo --no-kv``;
* :func:`gpu_results_markdown` renders committed GPU measurements
  (``docs/results/gpu/*.json``) for the GPU page, or nothing when there are none;
* :func:`changelog_markdown` groups ``git log`` lines by the issue they name.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "parse_text_table",
    "encoder_markdown",
    "encoder_summary",
    "matched_rate_markdown",
    "gpu_results_markdown",
    "changelog_markdown",
]


def parse_text_table(text: str) -> list[dict[str, str]]:
    """The rows of a table printed by ``fibquant_theory._table.format_table``.

    Parameters
    ----------
    text : str
        Printed output holding one such table: a header line, a line of dash runs (one
        run per column) and the rows; lines before the header are ignored.

    Returns
    -------
    list of dict of str to str
        One dict per row, column name -> cell text (stripped).

    Raises
    ------
    ValueError
        If no line of dashes is found.
    """
    lines = text.rstrip("\n").splitlines()
    rule = next((i for i, line in enumerate(lines) if line.strip() and set(line.strip()) <= {"-", " "}), None)
    if rule is None or rule == 0:
        raise ValueError("no table (header and line of dashes) in the text")
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    names = [lines[rule - 1][a:b].strip() for a, b in spans]
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append({name: line[a:b].strip() for name, (a, b) in zip(names, spans)})
    return rows


def encoder_markdown(rows: Sequence[dict[str, str]]) -> str:
    """The encoder table as Markdown (numbers as printed, the speed-up with a ×).

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`parse_text_table` on the encoder table's output.

    Returns
    -------
    str
        A Markdown table: codebook, N, encoder, MSE, penalty, changed blocks, distance
        evaluations per block, vectors per second, speed-up.
    """
    lines = [
        "| codebook | N | encoder | E‖u − û‖² | penalty % | blocks changed % | distances / block | vectors / s | speed-up |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['codebook']} | {r['N']} | {r['encoder']} | {r['mse']} | {float(r['penalty_%']):.1f} "
            f"| {float(r['changed_%']):.1f} | {float(r['cands']):g} | {r['vec_per_s']} | {float(r['speedup']):.2f}× |"
        )
    return "\n".join(lines) + "\n"


def encoder_summary(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """The ranges over codebook sizes that the *Choosing a codec* page quotes.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`parse_text_table` on the encoder table's output.

    Returns
    -------
    dict of str to str
        ``two_stage_penalty`` and ``two_stage_speedup`` (one probed shell),
        ``clustered_penalty`` and ``clustered_speedup`` (the largest top-T), each a
        range ``"a–b"`` over the codebook sizes, and ``sizes`` (the sizes, e.g.
        ``"256 and 4096"``).

    Raises
    ------
    ValueError
        If the table has no two-stage or no clustered row.
    """

    def pick(prefix: str) -> list[dict[str, str]]:
        return [r for r in rows if r["encoder"].startswith(prefix)]

    one_probe = pick("two-stage p=1 ")
    clustered = pick("clustered")
    if not one_probe or not clustered:
        raise ValueError("the encoder table has no two-stage p=1 or no clustered row")
    top = max(int(re.search(r"T=(\d+)", r["encoder"]).group(1)) for r in clustered)  # type: ignore[union-attr]
    widest = [r for r in clustered if f"T={top} " in r["encoder"] + " "]

    def span(rs: list[dict[str, str]], key: str, fmt: str) -> str:
        values = sorted(float(r[key]) for r in rs)
        lo, hi = format(values[0], fmt), format(values[-1], fmt)
        return lo if lo == hi else f"{lo}–{hi}"

    sizes = sorted({int(r["N"]) for r in rows})
    return {
        "two_stage_penalty": span(one_probe, "penalty_%", ".0f"),
        "two_stage_speedup": span(one_probe, "speedup", ".1f"),
        "clustered_top": str(top),
        "clustered_penalty": span(widest, "penalty_%", ".1f"),
        "clustered_speedup": span(widest, "speedup", ".1f"),
        "sizes": ", ".join(map(str, sizes[:-1])) + (" and " if len(sizes) > 1 else "") + str(sizes[-1]),
    }


def _read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def matched_rate_markdown(scalar_csv: str | Path, fibquant_csv: str | Path, baseline: str = "turboquant") -> str:
    """FibQuant against TurboQuant-mse at the same rate, from ``fibquant demo --no-kv``.

    Parameters
    ----------
    scalar_csv, fibquant_csv : str or pathlib.Path
        ``rd_scalar.csv`` and ``rd_fibquant.csv`` of one run of the demo.
    baseline : str, default "turboquant"
        The scalar method of ``scalar_csv`` to compare with.

    Returns
    -------
    str
        A Markdown table, one row per FibQuant shells design (``fibquant k=K``) with a
        baseline row at the same ``d`` and rate: both distortions with twice their
        standard errors, the codebook ``(k, N)`` and the gain
        :math:`10\\log_{10}(D_{\\mathrm{TQ}}/D_{\\mathrm{FQ}})` in dB.

    Raises
    ------
    ValueError
        If no FibQuant row has a baseline row at its rate.
    """
    base = {(r["d"], float(r["rate_bits"])): r for r in _read_csv(scalar_csv) if r["method"] == baseline}
    lines = [
        "| d | rate b | TurboQuant-mse E‖u − û‖² ± 2 s.e. | FibQuant | FibQuant E‖u − û‖² ± 2 s.e. | gain (dB) |",
        "| ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    n = 0
    for r in _read_csv(fibquant_csv):
        m = re.fullmatch(r"fibquant k=(\d+)", r["method"])
        b = base.get((r["d"], float(r["rate_bits"])))
        if m is None or b is None:
            continue
        k = int(m.group(1))
        codewords = round(2 ** (float(r["rate_bits"]) * k))
        gain = 10 * math.log10(float(b["mse"]) / float(r["mse"]))
        lines.append(
            f"| {r['d']} | {float(r['rate_bits']):g} | {float(b['mse']):.4f} ± {2 * float(b['mse_se']):.1e} "
            f"| k = {k}, N = {codewords} | {float(r['mse']):.4f} ± {2 * float(r['mse_se']):.1e} | {gain:.2f} |"
        )
        n += 1
    if not n:
        raise ValueError(f"no FibQuant row of {fibquant_csv} has a {baseline} row at its rate in {scalar_csv}")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def gpu_results_markdown(folder: str | Path, title: str = "Measured on H200") -> str:
    """The committed GPU measurements as Markdown, or ``""`` when there are none.

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder of JSON files (``docs/results/gpu``). Each file is one table: either a
        list of rows (dicts), or a dict with ``rows`` (that list) and optionally
        ``title``, ``machine``, ``date`` and ``command``.
    title : str
        Heading of the section.

    Returns
    -------
    str
        A ``## title`` section with one table per file (columns: the keys of the first
        row, in order), or ``""`` if the folder holds no JSON file.

    Raises
    ------
    ValueError
        If a file holds no rows.
    """
    files = sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []
    if not files:
        return ""
    parts = [f"## {title}\n", "Rendered when the site is built from the JSON files of `docs/results/gpu/`.\n"]
    for path in files:
        data = json.loads(path.read_text())
        meta = data if isinstance(data, dict) else {}
        rows = meta.get("rows", []) if isinstance(data, dict) else data
        if not rows:
            raise ValueError(f"{path}: no rows")
        parts.append(f"### {meta.get('title', path.stem)}\n")
        info = [f"{k}: {meta[k]}" for k in ("machine", "date", "command") if k in meta]
        if info:
            parts.append("; ".join(info) + ".\n")
        cols = list(rows[0])
        table = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
        table += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
        parts.append("\n".join(table) + "\n")
    return "\n".join(parts)


_ISSUE = re.compile(r"#(\d+)\b")


def changelog_markdown(log: str) -> str:
    """``git log`` lines grouped by the issues they name, newest first.

    Parameters
    ----------
    log : str
        Output of ``git log --format='%h%x09%ad%x09%s' --date=short`` (newest first).

    Returns
    -------
    str
        One section per group of commits: a commit that names issues (``#N``) starts a
        group for them; the commits after it that name none belong to its group; the
        commits before the first such commit form the first group.
    """
    entries = [line.split("\t", 2) for line in log.strip().splitlines() if line.count("\t") >= 2]
    if not entries:
        return "The git history was not available when this site was built.\n"
    groups: list[tuple[tuple[int, ...], list[list[str]]]] = []
    for entry in reversed(entries):  # oldest first
        issues = tuple(sorted({int(n) for n in _ISSUE.findall(entry[2])}))
        if issues or not groups:
            groups.append((issues, []))
        groups[-1][1].append(entry)
    out = []
    for issues, commits in reversed(groups):
        first, last = commits[0][1], commits[-1][1]
        when = first if first == last else f"{first} – {last}"
        name = ", ".join(f"#{i}" for i in issues)
        head = f"Issue {name}" if len(issues) == 1 else (f"Issues {name}" if issues else "First commits")
        out.append(f"## {head} ({when})\n")
        out += [f"- `{h}` {subject.replace('<', '&lt;')}" for h, _, subject in reversed(commits)]
        out.append("")
    return "\n".join(out)
