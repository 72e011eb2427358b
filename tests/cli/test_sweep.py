"""``fibquant rd-sweep`` / ``codebook-sweep`` / ``kv-pareto --workers``: 2 workers as in process, resuming, errors, no dask."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fibquant_theory.cli.main import main
from tests.helpers import tiny_pareto_setup

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


# ----------------------------------------------------------------------------- kv-pareto's runner, without a cluster
def _double(context: int, item: int) -> int:
    return context * item


@pytest.fixture
def fake_clusters(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``dask_client`` replaced by a record of its calls that yields no client (the points then run here); 8 cores."""
    import contextlib

    from fibquant_theory.experiments import sweep

    started: list[tuple] = []

    @contextlib.contextmanager
    def fake(workers=None, scheduler=None, timeout=10.0, compute_threads=None):
        started.append((workers, scheduler, compute_threads))
        yield None

    monkeypatch.setattr(sweep, "dask_client", fake)
    monkeypatch.setattr(sweep, "default_workers", lambda: 8)
    return started


@pytest.mark.parametrize(
    ("workers", "scheduler", "size", "started", "line"),
    [
        (None, None, lambda n: (3, f"three, for n={n}"), [(3, None, 2)],
         "kv: 4 points on a Dask LocalCluster of 3 workers (three, for n=4), 2 compute threads each"),
        (None, None, None, [(8, None, 1)],
         "kv: 4 points on a Dask LocalCluster of 8 workers (one per core (8 cores)), 1 compute thread each"),
        (1, None, lambda n: (3, "unused"), [(1, None, 8)],
         "kv: 4 points on a Dask LocalCluster of 1 worker (--workers), 8 compute threads each"),
        (None, None, lambda n: (0, "no worker fits"), [],
         "kv: 4 points in this process (no worker fits; --workers N starts N workers)"),
        (None, "tcp://10.0.0.5:8786", None, [(None, "tcp://10.0.0.5:8786", None)],
         "kv: 4 points on the Dask cluster at tcp://10.0.0.5:8786"),
    ],
)
def test_cluster_runner_sizes_the_cluster_at_its_first_call_and_says_so(
        fake_clusters: list[tuple], workers, scheduler, size, started: list[tuple], line: str) -> None:
    from fibquant_theory.cli.sweep import cluster_runner

    said: list[str] = []
    with cluster_runner(workers, scheduler, size=size, desc="kv", log=said.append) as runner:
        assert fake_clusters == [] and said == []  # nothing starts before the points are known
        assert dict(runner(_double, [1, 2, 3, 4], 10, ["a", "b", "c", "d"])) == {0: 10, 1: 20, 2: 30, 3: 40}
    assert fake_clusters == started and said == [line]


def test_cluster_runner_in_this_process_or_never_called_starts_nothing(fake_clusters: list[tuple]) -> None:
    from fibquant_theory.cli.sweep import cluster_runner

    with cluster_runner(0, None, size=lambda n: (3, "unused")) as runner:
        assert runner is None
    with cluster_runner(None, None, size=lambda n: (3, "unused")) as runner:
        assert callable(runner)
    assert fake_clusters == []


def test_kv_pareto_by_default_runs_where_cluster_size_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fake_clusters: list[tuple],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from fibquant_theory.experiments import sweep
    from fibquant_theory.kv import pareto

    model, texts, protocol = tiny_pareto_setup((0,))
    monkeypatch.setattr("fibquant_theory.cli.kv._load", lambda args: (model, None, texts, protocol))
    monkeypatch.setattr(pareto, "sweep_configs", lambda grid: [("fp", {}), ("kivi", {"bits": 4}), ("kivi", {"bits": 2})])
    size = pareto.worker_bytes(pareto.model_nbytes(model))
    argv = ["kv-pareto", "--model", "/models/tiny", "--no-progress"]

    # memory for 1 worker only (besides the copies this process holds while sending the model)
    monkeypatch.setattr(sweep, "available_memory", lambda: size + 3 * pareto.model_nbytes(model))
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    captured = capsys.readouterr()
    assert fake_clusters == [(1, None, 8)]
    assert ("kv-pareto tiny: 3 points on a Dask LocalCluster of 1 worker (min(8 cores, 3 points to compute, "
            "1 that fit in") in captured.err and "8 compute threads each" in captured.err
    # no memory for any: in this process, and the same table
    monkeypatch.setattr(sweep, "available_memory", lambda: 0)
    assert main([*argv, "--out", str(tmp_path / "here")]) == 0
    here = capsys.readouterr()
    assert fake_clusters == [(1, None, 8)] and "3 points in this process (no worker fits: 0 that fit" in here.err
    assert here.out.replace("here", "one") == captured.out
    assert (tmp_path / "here" / "kv_pareto_tiny.csv").read_bytes() == (tmp_path / "one" / "kv_pareto_tiny.csv").read_bytes()
    # finished: nothing to run, no cluster, nothing said
    assert main([*argv, "--out", str(tmp_path / "here")]) == 0
    assert fake_clusters == [(1, None, 8)] and capsys.readouterr().err == ""
