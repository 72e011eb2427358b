"""research/gpu_design_codebooks.py on the torch CPU device: the budgeted run, its outputs, and the import step."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fibquant_theory import config
from fibquant_theory.codebooks import design as design_module
from fibquant_theory.codebooks import torch_design
from fibquant_theory.codebooks.shipped import (
    ShippedCodebookError,
    load_entry,
    read_manifest,
)

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--n-train", "20000", "--n-heldout", "20000", "--no-cross-check", "--sample-workers", "0"]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_design_codebooks", ROOT / "research" / "gpu_design_codebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_out(script, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One budgeted run: a design and the repeat check, its samples drawn in a worker process."""
    out = tmp_path_factory.mktemp("out")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--out", str(out), "--total-seconds", "120", "--design", "16,2,8,1", *TINY, "--sample-workers", "1"]
        assert script.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    return out


def test_the_run_writes_few_files_and_a_complete_summary(run_out: Path) -> None:
    names = sorted(p.name for p in run_out.iterdir())
    assert names == ["codebooks-0.tar", "design.log", "manifest.json", "summary.json"]  # <= 8 files come back
    summary = json.loads((run_out / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["elapsed_seconds"] <= 120
    (rec,) = summary["designs"]
    assert (rec["d"], rec["k"], rec["N"], rec["rate_bits"]) == (16, 2, 8, 1.5)
    assert rec["total_iter"] == sum(rec["restart_n_iter"]) + rec["final_n_iter"] >= 2
    assert rec["gaussian_ref"] == 2.0**-3 and rec["gap_db"] == pytest.approx(10 * math.log10(rec["shipped_heldout_mse"] / 0.125))
    assert rec["shipped_heldout_mse"] == pytest.approx(rec["heldout_mse"], rel=1e-6)
    assert rec["calibration"]["candidates"] in (1, 2) and rec["calibration"]["seconds_per_iter"] > 0
    rep = summary["checks"]["repeat"]
    assert rep["identical_bits"] and rep["float64_sha256"][0] == rep["float64_sha256"][1] and rep["max_abs_diff"] == 0.0
    assert rep["options"]["n_restarts"] == 1 and rep["total_iter"][0] == rep["total_iter"][1]
    log = (run_out / "design.log").read_text()  # every Lloyd run and design: the design, then the two repeats
    assert log.count("torch_design design d=16 k=2 N=8 seed=0 on cpu") == 3 and log.count("torch_lloyd final (cpu)") == 3
    # the run restored what it patched
    assert torch_design.design_samples is design_module.design_samples and config.TORCH_CANDIDATES == 1


def test_the_import_step_ships_the_run(script, run_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = tmp_path / "data"
    assert script.main(["--import-from", str(run_out), "--dest", str(dest)]) == 0
    assert "d=  16 k=  2 N=     8 b=1.500 torch" in capsys.readouterr().out
    (entry,) = read_manifest(dest)
    cb = load_entry(entry, dest)
    rec = json.loads((run_out / "summary.json").read_text())["designs"][0]
    assert cb.content_hash == rec["shipped_content_hash"] and cb.params["designed_content_hash"] == rec["content_hash"]
    assert entry["sha256"] == rec["shipped_sha256"]
    assert np.array_equal(cb.points, cb.points.astype(np.float32))
    assert script.main(["--import-from", str(run_out), "--dest", str(dest)]) == 0  # again: the same files, no error


def test_a_tampered_tar_is_refused_on_import(script, run_out: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_bytes((run_out / "manifest.json").read_bytes())
    with tarfile.open(run_out / "codebooks-0.tar") as src, tarfile.open(bad / "codebooks-0.tar", "w") as dst:
        for m in src.getmembers():
            raw = bytearray(src.extractfile(m).read())
            raw[len(raw) // 2] ^= 0x10
            m.size = len(raw)
            dst.addfile(m, io.BytesIO(bytes(raw)))
    with pytest.raises(ShippedCodebookError, match="is corrupt"):
        script.main(["--import-from", str(bad), "--dest", str(tmp_path / "data")])
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_a_failing_design_is_recorded_and_the_others_are_written(script, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = script.design_codebook

    def flaky(d, k, n, *args, **kwargs):
        if n == 8:
            raise RuntimeError("simulated device failure")
        return real(d, k, n, *args, **kwargs)

    monkeypatch.setattr(script, "design_codebook", flaky)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--total-seconds", "120", "--design", "16,2,8", "--design", "16,2,4", "--no-repeat", *TINY]
    assert script.main(argv) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and "simulated device failure" in summary["designs"][0]["error"]
    assert [e["N"] for e in read_manifest(out)] == [4] and summary["designs"][1]["N"] == 4


@pytest.mark.parametrize(
    "argv",
    [["--out", "x", "--design", "16,3,8"], ["--out", "x", "--design", "16,2"], ["--out", "x", "--device", "tpu"],
     ["--out", "x", "--device", "cpu-numba"], ["--out", "x", "--total-seconds", "-1"], ["--total-seconds", "5"],
     ["--out", "x", "--design", "16,2,8,0"], ["--out", "x", "--sample-workers", "-1"], ["--import-from", "/nowhere"]],
)
def test_bad_command_lines_exit_with_status_2(script, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        script.parse_args(argv)
    assert exc.value.code == 2


def test_samples_fall_back_to_this_process_when_a_worker_fails(script) -> None:
    samples = script.Samples(0)
    key = (16, 2, 8, 0, 1000, 100)
    broken = script.concurrent.futures.Future()
    broken.set_exception(RuntimeError("worker died"))
    samples.futures[key] = broken
    train, heldout = samples(*key)
    ref_train, ref_heldout = design_module.design_samples(*key)
    assert np.array_equal(train, ref_train) and np.array_equal(heldout, ref_heldout)
    assert samples(*key)[0] is train  # drawn once
