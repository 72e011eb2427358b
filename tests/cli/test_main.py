"""The ``fibquant`` command line: JSON keys, readable table, errors, the demo job."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fibquant_theory.cli.main import main


def test_rd_json_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rd", "--dim", "64", "--bits", "2", "--method", "turboquant", "--json", "--samples", "100000"]) == 0
    row = json.loads(capsys.readouterr().out)
    for key in ("rate_bits", "mse", "mse_se", "gaussian_ref", "gap_db", "shannon_lb", "slb_block", "cap_lb"):
        assert key in row
    assert row["rate_bits"] == 2.0
    assert row["gaussian_ref"] == 2.0**-4  # the Gaussian reference, not a bound
    assert row["gap_db"] == pytest.approx(10 * math.log10(row["mse"] / row["gaussian_ref"]))
    # the two lower bounds at d = 64, b = 2 (scalar code: the 1-block SLB): 0.062476, 0.063686
    assert row["slb_block"] == 1
    assert row["shannon_lb"] == pytest.approx(0.0624764, rel=1e-6)
    assert row["cap_lb"] == pytest.approx(0.0636864, rel=1e-6)
    assert row["cap_lb"] < row["mse"]
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


# ----------------------------------------------------------------------------- --out errors (D6)
#: each subcommand with --out: (arguments besides --out, what --out names, the function that does the work)
OUT_COMMANDS = {
    "codebook": (
        ["--dim", "8", "--block", "2", "--codewords", "4", "--train", "2000", "--heldout", "1000", "--restarts", "1",
         "--no-cache"],
        "file",
        ("fibquant_theory.codebooks.design", "design_codebook"),
    ),
    "figures": (["--quick", "--no-progress"], "folder", ("fibquant_theory.experiments.figures", "make_figures")),
    "demo": (["--samples", "2000", "--no-progress", "--scalar-only"], "folder", ("fibquant_theory.cli.main", "run_demo")),
    "kv-pareto": (["--no-progress", "--max-tokens", "16"], "folder", ("fibquant_theory.cli.kv", "_load")),
}


def _bad_out(tmp_path: Path, case: str, kind: str) -> Path:
    """An ``--out`` that cannot be written: the wrong kind of existing entry, or a path under a regular file."""
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder\n")
    if case == "under-a-file":
        return plain / "sub" / ("codebook.npz" if kind == "file" else "out")
    if kind == "file":  # an existing folder where the file should go
        folder = tmp_path / "a-folder"
        folder.mkdir()
        return folder
    return plain  # an existing regular file where the folder should go


@pytest.mark.parametrize("case", ["wrong-kind", "under-a-file"])
@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_unwritable_out_is_a_one_line_error_before_any_work(
    command: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, kind, (module, func) = OUT_COMMANDS[command]

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{command} started its work before checking --out")

    monkeypatch.setattr(f"{module}.{func}", work)
    out = _bad_out(tmp_path, case, kind)
    before = sorted(tmp_path.rglob("*"))
    assert main([command, *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fibquant {command}: error: --out"), captured.err
    assert str(out) in lines[0] and "Traceback" not in captured.err and captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before  # nothing was created


@pytest.mark.parametrize("case", ["wrong-kind", "under-a-file"])
def test_codebook_unwritable_out_end_to_end(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, kind, _ = OUT_COMMANDS["codebook"]
    out = _bad_out(tmp_path, case, kind)
    assert main(["codebook", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fibquant codebook: error: ") and err.count("\n") == 1


def test_codebook_out_in_new_folders_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = OUT_COMMANDS["codebook"]
    out = tmp_path / "new" / "deeper" / "cb.npz"
    assert main(["codebook", *argv, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out) and out.stat().st_size > 0


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "build/figures/fig2_codebooks_k2.png"),
        FileExistsError(17, "File exists", "build/figures"),
        OSError(28, "No space left on device"),
    ],
)
def test_os_errors_while_writing_are_one_line_errors(
    error: OSError, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def make_figures(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("fibquant_theory.experiments.figures.make_figures", make_figures)
    assert main(["figures", "--quick", "--no-progress", "--out", str(tmp_path / "figs")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"fibquant figures: error: {error}\n" and captured.out == ""


def test_out_in_a_read_only_folder_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == tmp_path else real_access(path, mode, **kw))
    monkeypatch.setattr("fibquant_theory.cli.main.run_demo", lambda **kwargs: pytest.fail("work started"))
    assert main(["demo", "--scalar-only", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fibquant demo: error: --out") and "cannot write" in err


# ----------------------------------------------------------------------------- rd options are never dropped (D4, CLI)
@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--method", "fibquant", "--block", "2", "--codewords", "4", "--bits", "2"], ("--codewords", "--bits")),
        (["--method", "turboquant", "--bits", "2", "--block", "4"], ("--block",)),
        (["--method", "kivi", "--bits", "2", "--codewords", "16"], ("--codewords",)),
        (["--method", "turboquant-prod", "--bits", "2", "--train", "5000"], ("--train",)),
    ],
)
def test_rd_rejects_options_it_would_ignore(argv: list[str], names: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rd", "--dim", "8", "--samples", "200", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fibquant rd: error: ") and all(name.lstrip("-") in err for name in names), err


def test_rd_fibquant_accepts_consistent_bits_and_codewords(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rd", "--dim", "8", "--method", "fibquant", "--block", "2", "--codewords", "4", "--bits", "1"]
    assert main([*argv, "--train", "2000", "--samples", "200", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["rate_bits"] == 1.0 and row["method"] == "fibquant"


# ----------------------------------------------------------------------------- rd builds any registered codec (issue #14)
def test_rd_fibquant_takes_fractional_bits_and_names_missing_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rd", "--dim", "8", "--method", "fibquant", "--block", "2", "--bits", "1.5", "--train", "2000"]
    assert main([*argv, "--samples", "200", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rate_bits"] == 1.5  # N = 2**3 codewords
    assert main(["rd", "--dim", "8", "--method", "fibquant", "--codewords", "4"]) == 2
    assert "method fibquant needs --block" in capsys.readouterr().err
    assert main(["rd", "--dim", "8", "--method", "kivi"]) == 2
    assert "method kivi needs --bits\n" in capsys.readouterr().err
    assert main(["rd", "--dim", "8", "--method", "turboquant", "--bits", "1.5"]) == 2
    assert "bits must be an integer" in capsys.readouterr().err
    assert main(["rd", "--dim", "8", "--method", "fibquant"]) == 2
    assert "method fibquant needs --block K and --codewords N (or --bits B)" in capsys.readouterr().err


def test_rd_family_goes_to_the_codebook_design(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fibquant_theory.codebooks.design as design

    seen = []
    real = design.design_codebook

    @functools.wraps(real)  # design_codebook reads its own signature
    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("family"))
        return real(*args, **kwargs)

    monkeypatch.setattr(design, "design_codebook", spy)
    argv = ["rd", "--dim", "16", "--method", "fibquant", "--block", "4", "--codewords", "24", "--family", "d4"]
    assert main([*argv, "--samples", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rate_bits"] == pytest.approx(math.log2(24) / 4)
    assert seen == ["d4"]
    assert main(["rd", "--dim", "16", "--method", "fibquant", "--block", "4", "--codewords", "24", "--family", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["rd", "--dim", "16", "--method", "turboquant", "--bits", "2", "--family", "d4"]) == 2
    assert "--family applies only to --method fibquant, not turboquant" in capsys.readouterr().err


def test_methods_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    """``fibquant methods`` prints every registered codec with its options (read from the registry)."""
    from fibquant_theory.codecs.registry import SPECS

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == list(SPECS)
    by_name = {r["method"]: r for r in rows}
    assert "family" in by_name["fibquant"]["options"].split(", ")
    assert by_name["turboquant"]["rate"] == "bits (integer bits)"
    assert main(["methods"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in SPECS)
