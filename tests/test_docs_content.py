"""The documentation's sources, without building the site.

* Every Markdown table has as many cells in each row as in its header (a ``|`` inside
  ``$…$`` used to split a cell and drop the values after it).
* The helpers of ``docs/hooks/docs_tables.py`` on small inputs.
* ``CITATION.cff`` has the fields of CFF 1.2.0 and the package's version.
* The values the proof pages show as observed are what ``fibquant verify`` measures,
  exactly at the printed precision.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(row: str) -> list[str]:
    """Cells of a Markdown table row: split on ``|`` outside code spans, ``\\|`` kept in the cell."""
    cells, cell, code, i = [], "", False, 0
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    while i < len(row):
        c = row[i]
        if c == "\\" and i + 1 < len(row):
            cell += row[i : i + 2]
            i += 2
            continue
        if c == "`":
            code = not code
        if c == "|" and not code:
            cells.append(cell)
            cell = ""
        else:
            cell += c
        i += 1
    return cells + [cell]


def _tables(text: str) -> list[list[str]]:
    tables, block = [], []
    fenced = False
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").replace(":", "").replace("-", "").strip()) == set():
            tables.append(block)
        block = []
    return tables


def _markdown_sources() -> list[Path]:
    files = [*(ROOT / "docs").rglob("*.md"), *(ROOT / "proofs").glob("*.md"), ROOT / "README.md"]
    return sorted(p for p in files if p.is_file())


def test_markdown_table_rows_have_the_header_s_cells() -> None:
    bad = []
    for path in _markdown_sources():
        for table in _tables(path.read_text()):
            n = len(_cells(table[0]))
            for row in table[2:]:
                if len(_cells(row)) != n:
                    bad.append(f"{path.relative_to(ROOT)}: {len(_cells(row))} cells, header {n}: {row.strip()[:100]}")
    assert not bad, "table rows that do not match their header (a `|` inside math? use \\lvert \\rvert):\n" + "\n".join(bad)


def test_cells_splits_like_python_markdown() -> None:
    assert _cells("| a | `x|y` | c\\|d |") == [" a ", " `x|y` ", " c\\|d "]
    assert len(_cells("| $|x|$ | b |")) == 4  # the bug this test exists for


# --------------------------------------------------------------------------- docs_tables


@pytest.fixture(scope="module")
def tables() -> Any:
    return _load("docs_tables", ROOT / "docs" / "hooks" / "docs_tables.py")


ENCODER_OUTPUT = """d=128, k=8, 20000 spherical-Beta blocks, single thread
codebook     N              encoder     mse  penalty_%  changed_%      cands  vec_per_s  speedup
--------  ----  -------------------  ------  ---------  ---------  ---------  ---------  -------
 initial   256           exhaustive  0.3594     0.0000     0.0000   256.0000      89721   1.0000
 initial   256   two-stage p=1 S=16  0.7630   112.3344    88.5750    32.0000     328849   3.6700
 initial   256   clustered T=4 K=32  0.3691     2.6980    11.5200    64.0000     119645   1.3300
 initial  4096           exhaustive  0.1796     0.0000     0.0000  4096.0000       6003   1.0000
 initial  4096   two-stage p=1 S=64  0.5034   180.2687    95.4500   128.0000     113383  18.8900
 initial  4096  clustered T=4 K=128  0.1857     3.3983    14.1400   256.0000      51148   8.5200
"""


def test_encoder_table_parsing_and_summary(tables: Any) -> None:
    rows = tables.parse_text_table(ENCODER_OUTPUT)
    assert len(rows) == 6 and rows[1]["encoder"] == "two-stage p=1 S=16" and rows[4]["speedup"] == "18.8900"
    summary = tables.encoder_summary(rows)
    assert summary == {
        "two_stage_penalty": "112–180", "two_stage_speedup": "3.7–18.9", "clustered_top": "4",
        "clustered_penalty": "2.7–3.4", "clustered_speedup": "1.3–8.5", "sizes": "256 and 4096",
    }
    md = tables.encoder_markdown(rows).splitlines()
    assert md[3] == "| initial | 256 | two-stage p=1 S=16 | 0.7630 | 112.3 | 88.6 | 32 | 328849 | 3.67× |"
    with pytest.raises(ValueError):
        tables.parse_text_table("no table here")


def test_matched_rate_table(tables: Any, tmp_path: Path) -> None:
    head = "method,d,rate_bits,n_samples,seed,mse,mse_se,gaussian_ref,gap_db,ip_mse,ip_mse_se,ip_bias,ip_bias_se\n"
    (tmp_path / "s.csv").write_text(head + "turboquant,64,2.0,1,0,0.1147,1.5e-4,0.0625,2.6,0,0,0,0\n")
    (tmp_path / "f.csv").write_text(head + "fibquant k=4,64,2.0,1,0,0.0955,9.7e-5,0.0625,1.8,0,0,0,0\n"
                                    "fibquant-d4 k=4 N=96,64,1.6462,1,0,0.21,1e-4,0.1,3.1,0,0,0,0\n")
    md = tables.matched_rate_markdown(tmp_path / "s.csv", tmp_path / "f.csv").splitlines()
    gain = 10 * math.log10(0.1147 / 0.0955)
    assert md[2:] == [f"| 64 | 2 | 0.1147 ± 3.0e-04 | k = 4, N = 256 | 0.0955 ± 1.9e-04 | {gain:.2f} |"]
    with pytest.raises(ValueError, match="no FibQuant row"):
        tables.matched_rate_markdown(tmp_path / "f.csv", tmp_path / "f.csv")


def test_gpu_results_markdown(tables: Any, tmp_path: Path) -> None:
    assert tables.gpu_results_markdown(tmp_path / "absent") == ""
    assert tables.gpu_results_markdown(tmp_path) == ""
    (tmp_path / "decode.json").write_text(json.dumps(
        {"title": "Decode", "machine": "H200", "rows": [{"d": 128, "GB/s": 3000.123}, {"d": 64, "GB/s": 2500.0}]}
    ))
    md = tables.gpu_results_markdown(tmp_path)
    assert md.startswith("## Measured on H200") and "### Decode" in md and "machine: H200" in md
    assert "| d | GB/s |" in md and "| 128 | 3000 |" in md


def test_changelog_groups_by_issue(tables: Any) -> None:
    log = "c3\t2026-12-03\tFollow-up fix\nc2\t2026-12-02\tBig change (#7)\nc1\t2026-12-01\tFirst commit <init>\n"
    md = tables.changelog_markdown(log)
    assert md.index("## Issue #7 (2026-12-02 – 2026-12-03)") < md.index("## First commits (2026-12-01)")
    assert "- `c3` Follow-up fix" in md and "&lt;init>" in md
    assert "not available" in tables.changelog_markdown("")


# --------------------------------------------------------------------------- citation


def test_citation_cff_is_cff_1_2_0_with_the_package_version() -> None:
    text = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.M)
    for key in ("message", "title", "authors", "type", "version", "preferred-citation"):
        assert re.search(rf"^{key}:", text, re.M), key
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert re.search(rf"^version: {re.escape(version)}$", text, re.M)
    assert "2605.11478" in text and "family-names: Lee" in text and "family-names: Kim" in text


# --------------------------------------------------------------------------- proof pages


def _tex_sci(x: float, digits: int) -> str:
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}\\times10^{{{int(exponent)}}}"


def test_proof_pages_show_what_verify_measures() -> None:
    """The "observed" values of the spherical-Beta and sub-one-bit pages, recomputed."""
    from fibquant_theory.experiments.verify import run_checks

    checks = {c.name: c for c in run_checks(["spherical_beta", "sub_one_bit"])}
    sb = (ROOT / "proofs" / "spherical_beta.md").read_text()
    want = [
        _tex_sci(checks["spherical_beta.normalizer_numeric[dps=30]"].value, 2),
        _tex_sci(checks["spherical_beta.package_density"].value, 2),
        f"$p={checks['spherical_beta.radius_ks[d=64,k=8]'].value:.2f}$",
        f"${checks['spherical_beta.radius_ks[d=256,k=2]'].value:.2g}$",
        f"$p={checks['spherical_beta.joint_chi2[d=32,k=2]'].value:.2f}$",
        ", ".join(f"${_tex_sci(v, 3)}$" for v in checks["spherical_beta.gaussian_limit_rate"].extra["tv"].values()),
    ]
    missing = [w for w in want if w not in sb]
    assert not missing, f"proofs/spherical_beta.md does not show {missing}"
    so = (ROOT / "proofs" / "sub_one_bit.md").read_text()
    want = [_tex_sci(checks["sub_one_bit.entropy_closed_form"].value, 1),
            f"largest ratio {checks['sub_one_bit.bounds_below_scalar'].value:.2f}"]
    gaps = []
    for name, c in checks.items():
        if name.startswith("sub_one_bit.above_bounds["):
            k, n, b = re.search(r"k=(\d+),N=(\d+),b=([\d.]+)", name).groups()
            gain = checks[name.replace("above_bounds", "beats_scalar")].value
            want.append(f"| {k} | {n} | {b} | {c.extra['mse']:.4f} | {c.extra['slb']:.4f} | {c.extra['cap']:.4f} |")
            want.append(f"| {gain:+.3f} dB |")
            gaps.append(10 * math.log10(c.extra["mse"] / max(c.extra["slb"], c.extra["cap"])))
    want.append(f"{gaps[1]:.2f} dB at $k=8,b=\\frac12$ and {gaps[2]:.2f} dB at $k=16,b=\\frac14$")
    missing = [w for w in want if w not in so]
    assert not missing, f"proofs/sub_one_bit.md does not show {missing}"


def test_benchmarks_quote_the_theory_page_s_high_rate_gains() -> None:
    """The high-rate predictions quoted on the Benchmarks page are those of ``gain_decomposition``."""
    from fibquant_theory.theory.highrate import gain_decomposition

    g = {k: f"{gain_decomposition(64, k).total_db:.2f}" for k in (2, 4, 8)}
    text = " ".join((ROOT / "docs" / "benchmarks.md").read_text().split())
    assert f"({g[2]} dB at \\(k = 2\\), {g[4]} dB at \\(k = 4\\), {g[8]} dB at \\(k = 8\\) for" in text
