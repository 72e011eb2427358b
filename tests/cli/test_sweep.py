"""``fibquant rd-sweep`` / ``codebook-sweep`` / ``kv-pareto --workers``: 2 workers as in process, resuming, errors, no dask."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fibquant_theory.cli.main import main

_RD = ["rd-sweep", "--method", "turboquant", "fibquant", "--dim", "8", "--bits", "1", "2", "--block", "2",
       "--train", "2000", "--samples", "500", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rd_sweep_on_two_workers_writes_what_the_in_process_run_writes_and_resumes_without_a_cluster(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_RD, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    table = capsys.readouterr().out
    assert main([*_RD, "--out", str(tmp_path / "one"), "--workers", "0"]) == 0
    capsys.readouterr()
    csv = (tmp_path / "two" / "rd_sweep.csv").read_bytes()
    assert csv == (tmp_path / "one" / "rd_sweep.csv").read_bytes()
    assert csv.count(b"\n") == 1 + 4 and b"bits=2 block=2 n_train=2000" in csv
    assert len(list((tmp_path / "two" / "points").glob("*.json"))) == 4
    # every point is cached: nothing is computed, so no scheduler is ever asked (nothing listens there)
    assert main([*_RD, "--out", str(tmp_path / "two"), "--scheduler", f"tcp://127.0.0.1:{_free_port()}"]) == 0
    assert capsys.readouterr().out == table


def test_codebook_sweep_reports_the_designs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fibquant_theory.codebooks.design import design_codebook

    argv = ["codebook-sweep", "--dim", "8", "--block", "2", "3", "--codewords", "8", "--seeds", "0", "1",
            "--train", "4000", "--heldout", "2000", "--restarts", "1", "--workers", "0", "--no-progress", "--json"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["k"], r["seed"]) for r in rows] == [(2, 0), (2, 1)]  # 3 does not divide 8
    fresh = design_codebook(8, 2, 8, seed=1, n_train=4000, n_heldout=2000, n_restarts=1, cache=False)
    assert rows[1]["content_hash"] == fresh.content_hash and rows[1]["heldout_mse"] == fresh.heldout_mse
    assert (tmp_path / "codebook_sweep.csv").read_text().count("\n") == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*_RD, "--workers", "-1"], "--workers must be 0 (in this process) or more, got -1"),
        ([*_RD, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give --workers or --scheduler, not both"),
        ([*_RD, "--scheduler", "nonsense"], "bad scheduler address 'nonsense'"),
        (["kv-pareto", "--workers", "-2"], "--workers must be 0 (in this process) or more, got -2"),
        (["kv-pareto", "--workers", "1", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
    ],
)
def test_bad_cluster_arguments_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2  # kv-pareto: before any model is loaded
    err = capsys.readouterr().err
    assert err.startswith(f"fibquant {argv[0]}: error: ") and message in err and err.count("\n") == 1


def test_unknown_grid_or_method_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["kv-pareto", "--grid", "huge"])
    with pytest.raises(SystemExit):
        main(["rd-sweep", "--method", "nope", "--dim", "8", "--bits", "1"])
    assert "invalid choice" in capsys.readouterr().err


_WITHOUT_DASK = r"""
import sys
sys.modules["dask"] = sys.modules["distributed"] = None  # any import of them fails
import fibquant_theory, fibquant_theory.cli.main, fibquant_theory.experiments.sweep
import fibquant_theory.experiments.sweep_grids, fibquant_theory.kv.pareto
assert not [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed") and sys.modules[m] is not None]
sys.exit(fibquant_theory.cli.main.main(sys.argv[1:]))
"""


def test_the_package_and_an_in_process_sweep_need_no_dask(tmp_path: Path) -> None:
    argv = ["rd-sweep", "--method", "turboquant", "--dim", "8", "--bits", "1", "--samples", "200", "--no-progress"]
    res = subprocess.run([sys.executable, "-c", _WITHOUT_DASK, *argv, "--workers", "0", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "turboquant" in res.stdout and (tmp_path / "rd_sweep.csv").is_file()
    res = subprocess.run([sys.executable, "-c", _WITHOUT_DASK, *argv, "--workers", "2", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "needs dask.distributed" in res.stderr, res.stderr[-3000:]
