"""The Dask sweep engine on a LocalCluster of 2 workers: results as computed serially, caching, resuming, errors."""

from __future__ import annotations

import functools
import json
import socket
import uuid
from pathlib import Path

import numpy as np
import pytest

from fibquant_theory.experiments.sweep import SweepError, dask_client, map_completed, point_key, run_sweep
from fibquant_theory.experiments.sweep_grids import codebook_grid, codebook_point, rd_grid, rd_point
from tests.helpers import tiny_pareto_setup


@pytest.fixture(scope="module")
def client():
    """One LocalCluster of 2 worker processes (one thread each) for the whole module."""
    with dask_client(2) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c


def counted(point: dict) -> dict:
    """A point function that leaves one marker file per call in ``point["calls"]`` (any process), then computes."""
    Path(point["calls"], f"{point['i']}-{uuid.uuid4().hex}").touch()
    if point.get("fail"):
        raise ArithmeticError(f"point {point['i']} refuses")
    x = np.random.default_rng([point["seed"], point["i"]]).standard_normal(1000)
    return {"i": point["i"], "sum": float(x.sum()), "max": float(x.max())}


def _calls(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in folder.iterdir())


def _points(calls: Path, n: int) -> list[dict]:
    return [{"i": i, "seed": 7, "calls": str(calls)} for i in range(n)]


def test_rd_grid_on_two_workers_equals_the_serial_computation_bit_for_bit(
        client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    points = rd_grid(["turboquant", "fibquant"], [6, 8], {"bits": [1, 2], "block": [2, 4], "n_train": [5_000]},
                     samples=2_000, seed=3)
    # d=6 has no block of 4: 2 turboquant points per d, fibquant 2 (d=6) + 4 (d=8)
    assert [(p["method"], p["d"]) for p in points] == (
        [("turboquant", 6)] * 2 + [("turboquant", 8)] * 2 + [("fibquant", 6)] * 2 + [("fibquant", 8)] * 4)
    on_dask = run_sweep(points, rd_point, tmp_path / "dask", client=client, progress=False)
    # the reference designs its codebooks afresh here, not from the workers' codebook cache
    monkeypatch.setenv("FIBQUANT_CACHE_DIR", str(tmp_path / "codebooks"))
    serial = [rd_point(p) for p in points]
    in_process = run_sweep(points, rd_point, tmp_path / "serial", workers=0, progress=False)
    assert len(list((tmp_path / "codebooks").glob("*.npz"))) == 6  # one design per fibquant point
    assert json.dumps(on_dask) == json.dumps(serial) == json.dumps(in_process)
    assert [r["setting"] for r in on_dask[4:7]] == ["bits=1 block=2 n_train=5000", "bits=2 block=2 n_train=5000",
                                                     "bits=1 block=2 n_train=5000"]
    assert [r["rate_bits"] for r in on_dask] == [1, 2, 1, 2, 1, 2, 1, 1, 2, 2]  # fibquant d=8: bits, then block
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == sorted(
        p.name for p in (tmp_path / "serial").iterdir())
    assert [(tmp_path / "dask" / p.name).read_bytes() for p in sorted((tmp_path / "serial").iterdir())] == [
        p.read_bytes() for p in sorted((tmp_path / "serial").iterdir())]


def test_a_second_run_computes_nothing_and_a_partial_cache_resumes_only_the_missing_points(
        client, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    points = _points(calls, 6)
    first = run_sweep(points, counted, tmp_path / "cache", client=client, progress=False)
    assert _calls(calls) == [0, 1, 2, 3, 4, 5]
    assert [r["i"] for r in first] == [0, 1, 2, 3, 4, 5]  # the order of the points, not of completion
    assert first == [counted(p) for p in points]
    for p in calls.iterdir():
        p.unlink()
    again = run_sweep(points, counted, tmp_path / "cache", client=client, progress=False)
    assert again == first and _calls(calls) == []  # read from the cache: no call anywhere
    # an interrupted sweep: two results missing
    for i in (1, 4):
        (tmp_path / "cache" / f"{point_key(points[i], counted)}.json").unlink()
    resumed = run_sweep(points, counted, tmp_path / "cache", client=client, progress=False)
    assert resumed == first and _calls(calls) == [1, 4]
    # a new version, a changed point or a repeated point
    assert point_key(points[0], counted, version=2) != point_key(points[0], counted)
    assert point_key({**points[0], "seed": 8}, counted) != point_key(points[0], counted)
    assert point_key(dict(reversed(points[0].items())), counted) == point_key(points[0], counted)
    for p in calls.iterdir():
        p.unlink()
    twice = run_sweep([points[0], {**points[0], "seed": 8}, {**points[0], "seed": 8}], counted, tmp_path / "cache",
                      workers=0, progress=False)
    assert _calls(calls) == [0] and twice[1] == twice[2] != twice[0] == first[0]


def test_a_failing_point_raises_naming_it_and_keeps_the_others(client, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    points = _points(calls, 4)
    points[2]["fail"] = True
    with pytest.raises(SweepError, match=r'point \{.*"i":2.*\} failed: ArithmeticError: point 2 refuses') as info:
        run_sweep(points, counted, tmp_path / "cache", client=client, progress=False)
    assert info.value.point == points[2]
    with pytest.raises(SweepError, match=r'"i":2.* failed: ArithmeticError') as info:
        run_sweep(points, counted, tmp_path / "serial", workers=0, progress=False)
    assert isinstance(info.value.__cause__, ArithmeticError)
    assert len(list((tmp_path / "serial").glob("*.json"))) == 2  # the two before it, written as they came
    assert not (tmp_path / "cache" / f"{point_key(points[2], counted)}.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def returns_a_list(point: dict) -> list:
    """A point function with the wrong kind of result."""
    return [point["i"]]


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no points"):
        run_sweep([], counted, tmp_path)
    with pytest.raises(ValueError, match="must be a dict"):
        run_sweep([[1]], counted, tmp_path, workers=0)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        run_sweep([{"x": {1, 2}}], counted, tmp_path, workers=0)
    with pytest.raises(ValueError, match="top-level function"):
        run_sweep([{"i": 0}], lambda p: p, tmp_path, workers=0)

    def nested(point: dict) -> dict:
        return point

    with pytest.raises(ValueError, match="top-level function"):
        run_sweep([{"i": 0}], nested, tmp_path, workers=0)
    with pytest.raises(ValueError, match="workers"):
        run_sweep([{"i": 0}], counted, tmp_path, workers=-1)
    with pytest.raises(ValueError, match="workers"):
        run_sweep([{"i": 0}], counted, tmp_path, workers=1.5)
    with pytest.raises(ValueError, match="not both"):
        run_sweep([{"i": 0}], counted, tmp_path, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="not both"):
        run_sweep([{"i": 0}], counted, tmp_path, client=object(), workers=2)
    with pytest.raises(SweepError, match="returned list, not a dict"):
        run_sweep([{"i": 0}], returns_a_list, tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match="bad scheduler address"):
        with dask_client(scheduler="nonsense"):
            pass
    with pytest.raises(ValueError, match="positive number"):
        with dask_client(scheduler="tcp://127.0.0.1:1", timeout=0):
            pass
    with pytest.raises(ValueError, match="a scheduler's workers have their own"):
        with dask_client(scheduler="tcp://127.0.0.1:1", compute_threads=2):
            pass
    with pytest.raises(ValueError, match="compute_threads must be >= 1, got 0"):
        with dask_client(2, compute_threads=0):  # refused before any cluster starts
            pass
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(OSError, match=f"no Dask scheduler answered at {address} within 0.5 s"):
        run_sweep([{"i": 0}], counted, tmp_path, scheduler=address, timeout=0.5, progress=False)


def test_grid_builders_refuse_bad_grids() -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        rd_grid(["nope"], [16], {"bits": [1]})
    with pytest.raises(ValueError, match="--block applies to none"):
        rd_grid(["turboquant"], [16], {"bits": [1], "block": [2]})
    with pytest.raises(ValueError, match="fibquant needs --codewords or --bits"):
        rd_grid(["fibquant"], [16], {"block": [2]})
    with pytest.raises(ValueError, match="unknown codec options"):
        rd_grid(["turboquant"], [16], {"bits": [1], "colour": ["red"]})
    with pytest.raises(ValueError, match="no point"):
        rd_grid(["fibquant"], [16], {"bits": [1], "block": [3]})
    with pytest.raises(ValueError, match="at least one"):
        rd_grid(["turboquant"], [], {"bits": [1]})
    with pytest.raises(ValueError, match="no point"):
        codebook_grid([16], [3], [8])
    with pytest.raises(ValueError, match="unknown codebook family"):
        codebook_grid([16], [2], [8], family="nope")
    with pytest.raises(ValueError, match="codewords"):
        codebook_grid([16], [2], [1])
    assert len(rd_grid(["fp8", "turboquant"], [16, 32], {"bits": [1, 2]})) == 2 + 4
    assert "n_restarts" not in codebook_grid([16], [8], [240], family="e8")[0]


def test_codebook_designs_on_two_workers(client, tmp_path: Path) -> None:
    from fibquant_theory.codebooks.design import design_codebook

    points = codebook_grid([16], [2, 4], [8], seeds=[0, 1], n_train=10_000, n_heldout=10_000, n_restarts=1)
    rows = run_sweep(points, codebook_point, tmp_path, client=client, progress=False)
    assert [(r["k"], r["seed"]) for r in rows] == [(2, 0), (2, 1), (4, 0), (4, 1)]
    fresh = design_codebook(16, 4, 8, seed=1, n_train=10_000, n_heldout=10_000, n_restarts=1, cache=False)
    assert rows[3]["content_hash"] == fresh.content_hash and rows[3]["heldout_mse"] == fresh.heldout_mse
    assert all(Path(r["file"]).is_file() for r in rows)  # the workers' codebook cache (shared here)
    assert json.dumps(rows) == json.dumps([codebook_point(p) for p in points])


def test_map_completed_passes_the_context_and_names_the_failure(client) -> None:
    got = dict(map_completed(client, _scaled, [1, 2, 3], context=(10, "x")))  # a tuple arrives whole
    assert got == {0: "10x", 1: "20x", 2: "30x"}
    assert dict(map_completed(None, _scaled, [1, 2], context=(10, "x"))) == {0: "10x", 1: "20x"}
    with pytest.raises(SweepError, match="point two failed: ZeroDivisionError"):
        list(map_completed(client, _scaled, [1, 0, 3], context=(10, "x"), names=["one", "two", "three"]))


def _scaled(context: tuple[int, str], item: int) -> str:
    factor, suffix = context
    return f"{factor * item // item * item}{suffix}"


def test_kv_pareto_on_two_workers_writes_what_the_serial_run_writes(client, tmp_path: Path) -> None:
    from fibquant_theory.kv.pareto import kv_pareto

    model, texts, protocol = tiny_pareto_setup((0, 1))
    configs = [("fp", {}), ("fibquant", {"block": 4, "codewords": 16, "center": "key"}), ("kivi", {"bits": 4})]
    serial = kv_pareto(model, "tiny", texts, tmp_path / "serial", configs, protocol, progress=False)
    on_dask = kv_pareto(model, "tiny", texts, tmp_path / "dask", configs, protocol, progress=False,
                        runner=functools.partial(map_completed, client))
    assert json.dumps(on_dask, default=str) == json.dumps(serial, default=str)
    # the workers' copy of the model is exact: the probe of the attention fidelity reaches its layers
    assert 0.5 < on_dask[1]["attn_cosine"] < 0.99 and on_dask[1]["key_mse"] > 0.01
    for name in ("kv_pareto_tiny.csv", "kv_pareto_tiny.png"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name
    cached = sorted((tmp_path / "serial" / "points" / "tiny").iterdir())
    assert [p.name for p in cached] == sorted(p.name for p in (tmp_path / "dask" / "points" / "tiny").iterdir())
    assert all(p.read_bytes() == (tmp_path / "dask" / "points" / "tiny" / p.name).read_bytes() for p in cached)


def test_a_corrupt_cache_file_is_reported_and_recomputed(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    points = _points(calls, 3)
    first = run_sweep(points, counted, tmp_path / "cache", workers=0, progress=False)
    broken = tmp_path / "cache" / f"{point_key(points[1], counted)}.json"
    broken.write_text('{"function": "trunc')
    other = tmp_path / "cache" / f"{point_key(points[2], counted)}.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "version": 99}))  # not this point's record
    for p in calls.iterdir():
        p.unlink()
    with pytest.warns(RuntimeWarning, match=r"cannot be read .*recomputed") as record:
        again = run_sweep(points, counted, tmp_path / "cache", workers=0, progress=False)
    assert any("is not a record of this point" in str(w.message) for w in record)
    assert again == first and _calls(calls) == [1, 2]
    assert json.loads(broken.read_text())["result"] == first[1]
