"""The ``fibquant`` command line: JSON keys, readable table, errors, the demo job."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fibquant_theory.cli import main


def test_rd_json_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rd", "--dim", "64", "--bits", "2", "--method", "turboquant", "--json", "--samples", "100000"]) == 0
    row = json.loads(capsys.readouterr().out)
    for key in ("rate_bits", "mse", "mse_se", "shannon_bound", "gap_db"):
        assert key in row
    assert row["rate_bits"] == 2.0
    assert row["shannon_bound"] == 2.0**-4
    assert row["gap_db"] == pytest.approx(10 * math.log10(row["mse"] / row["shannon_bound"]))
    assert row["mse"] == pytest.approx(0.1145, abs=4 * row["mse_se"] + 1e-4)  # exact design value 0.114526
    assert row["n_samples"] >= 100_000


def test_rd_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rd", "--dim", "16", "--bits", "1", "--method", "turboquant-prod", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "turboquant-prod" in out and "gap_db" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["rd", "--dim", "1", "--bits", "2"],
        ["rd", "--dim", "64", "--bits", "9"],
        ["rd", "--dim", "64", "--bits", "0"],
        ["rd", "--dim", "64", "--bits", "2", "--samples", "1"],
    ],
)
def test_rd_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rd", "--dim", "64", "--bits", "2", "--method", "nope"])
    assert exc.value.code == 2


def test_demo_writes_table_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--samples", "2000", "--no-progress", "--scalar-only"]) == 0
    out = capsys.readouterr().out
    assert "turboquant-prod" in out
    assert (tmp_path / "rd_scalar.png").stat().st_size > 10_000
    lines = (tmp_path / "rd_scalar.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 * 4  # header + methods x dims x bits


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("fibquant")
    res = subprocess.run([str(exe), "rd", "--dim", "8", "--bits", "1", "--samples", "500", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["d"] == 8
