"""Fig. 3 from the shipped data (:func:`~fibquant_theory.experiments.figures.plot_frontier`) and its CSV.

The quick smoke test of Fig. 2 and Fig. 3 themselves is ``test_figures_small`` in
``tests/codebooks/test_codebook.py``. The shipped entries are read from the manifest at run
time (never hard-coded: the shipped set may change).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import re
from pathlib import Path

import pytest

from fibquant_theory.codebooks.shipped import ShippedCodebookError, data_dir, read_manifest
from fibquant_theory.experiments import figures
from fibquant_theory.experiments.figures import (
    FRONTIER_COLUMNS,
    FRONTIER_CSV,
    FRONTIER_NAME,
    plot_frontier,
    rate_grid,
    write_rows_csv,
)
from fibquant_theory.experiments.rd import lower_bounds
from fibquant_theory.theory.scalar import lloyd_max_scalar

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frontier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """One small frontier at d = 64: the k = 32 quick curve, one e8 and one d4 point, everything shipped."""
    path = tmp_path_factory.mktemp("frontier") / "frontier.png"
    return plot_frontier(path, d=64, blocks=(32,), lattice=(("e8", 8, (240,)), ("d4", 4, (24,))), quick=True,
                         progress=False)


def test_frontier_writes_a_png(frontier: tuple[Path, list[dict]]) -> None:
    path, _ = frontier
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000


def test_frontier_has_every_shipped_d64_entry_with_the_manifest_mse(frontier: tuple[Path, list[dict]]) -> None:
    _, rows = frontier
    entries = [e for e in read_manifest() if e["d"] == 64]
    assert entries, "the package ships no d = 64 codebook"
    shipped = [r for r in rows if r["source"] == "shipped"]
    got = sorted((r["k"], r["n_codewords"], r["family"], r["mse"]) for r in shipped)
    assert got == sorted((e["k"], e["N"], e["family"], float(e["heldout_mse"])) for e in entries)
    assert all(r["d"] == 64 for r in rows) and all(set(r) == set(FRONTIER_COLUMNS) for r in rows)


def test_frontier_gaps_and_bounds(frontier: tuple[Path, list[dict]]) -> None:
    _, rows = frontier
    for r in rows:
        b = math.log2(r["n_codewords"]) / r["k"]
        assert r["rate_bits"] == pytest.approx(b, rel=1e-12)
        assert r["mse_per_coordinate"] == pytest.approx(r["mse"] / 64, rel=1e-12)
        # the package's gap: 10 log10(E||u - u^||^2 / 2^(-2b)), the MSE summed over the d coordinates
        assert r["gap_db"] == pytest.approx(10 * math.log10(r["mse_per_coordinate"] * 64 / 2 ** (-2 * b)), abs=1e-9)
        bound = max(v for v in lower_bounds(64, b, r["k"]).values() if not math.isnan(v))
        assert r["lower_bound"] == pytest.approx(bound, rel=1e-12)
        assert r["bound_gap_db"] == pytest.approx(10 * math.log10(r["mse"] / bound), abs=1e-9)
        assert r["bound_gap_db"] > 0  # a valid lower bound: every code lies above it
    ship = next(r for r in rows if r["source"] == "shipped")
    b = math.log2(ship["n_codewords"]) / ship["k"]
    assert ship["gap_db"] == pytest.approx(10 * math.log10(ship["mse"] * 4**b))


def test_frontier_sources(frontier: tuple[Path, list[dict]]) -> None:
    _, rows = frontier
    designed = [r for r in rows if r["source"] == "designed"]
    assert [r["n_codewords"] for r in designed] == rate_grid(32, quick=True) and {r["k"] for r in designed} == {32}
    mses = [r["mse"] for r in designed]
    assert all(a > b for a, b in itertools.pairwise(mses))
    assert sorted((r["family"], r["k"], r["n_codewords"]) for r in rows if r["source"] == "lattice") == [
        ("d4", 4, 24), ("e8", 8, 240)]
    tq = [r for r in rows if r["source"] == "turboquant"]
    top = max(r["rate_bits"] for r in rows if r["source"] != "turboquant")
    assert [r["rate_bits"] for r in tq] == list(range(1, math.ceil(top - 1e-9) + 1))
    for r in tq:
        assert r["k"] == 1 and r["n_codewords"] == 2 ** int(r["rate_bits"])
        assert r["mse"] == pytest.approx(lloyd_max_scalar(64, int(r["rate_bits"])).mse, rel=1e-12)


def test_frontier_csv_round_trip(frontier: tuple[Path, list[dict]], tmp_path: Path) -> None:
    _, rows = frontier
    path = write_rows_csv(rows, tmp_path / "sub" / "rows.csv")
    with path.open(newline="") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == list(FRONTIER_COLUMNS) and len(back) == len(rows)
    assert [float(r["gap_db"]) for r in back] == [r["gap_db"] for r in rows]  # repr: exact floats


def test_frontier_bad_input(tmp_path: Path) -> None:
    dims = sorted({e["d"] for e in read_manifest()})
    with pytest.raises(ValueError, match=re.escape(f"no codebook is shipped at d=48; shipped dimensions: {dims}")):
        plot_frontier(tmp_path / "x.png", d=48, blocks=(), lattice=(), progress=False)
    with pytest.raises(ValueError, match=r"must divide the dimension d=64; \[3, 5\] do not"):
        plot_frontier(tmp_path / "x.png", d=64, blocks=(2, 3, 5), progress=False)
    with pytest.raises(ValueError, match="exceeds the dimension"):
        plot_frontier(tmp_path / "x.png", d=64, blocks=(128,), progress=False)
    with pytest.raises(ValueError, match="detail_rate"):
        plot_frontier(tmp_path / "x.png", d=64, blocks=(), lattice=(), detail_rate=0.0, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="shipped dimensions: none"):
        plot_frontier(tmp_path / "x.png", d=64, blocks=(), lattice=(), folder=empty, progress=False)
    assert not (tmp_path / "x.png").exists()


def test_frontier_checks_the_shipped_files(tmp_path: Path) -> None:
    """A shipped file whose bytes differ from the manifest's SHA-256 is an error, never a plotted point."""
    entry = min((e for e in read_manifest() if e["d"] == 64), key=lambda e: e["N"] * e["k"])
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps([entry]))
    raw = bytearray((data_dir() / entry["file"]).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / entry["file"]).write_bytes(bytes(raw))
    with pytest.raises(ShippedCodebookError, match="SHA-256"):
        plot_frontier(tmp_path / "x.png", d=64, blocks=(), lattice=(), folder=folder, progress=False)
    (folder / entry["file"]).write_bytes((data_dir() / entry["file"]).read_bytes())
    path, rows = plot_frontier(tmp_path / "x.png", d=64, blocks=(), lattice=(), folder=folder, progress=False)
    assert path.read_bytes()[:8] == PNG
    assert [(r["k"], r["n_codewords"], r["mse"]) for r in rows if r["source"] == "shipped"] == [
        (entry["k"], entry["N"], float(entry["heldout_mse"]))]


def test_make_figures_writes_the_frontier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fig2(path: Path, **kwargs: object) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(PNG)
        return Path(path)

    monkeypatch.setattr(figures, "plot_codebooks_k2", fig2)
    monkeypatch.setattr(figures, "plot_mse_vs_rate", lambda path, **kwargs: (fig2(path), []))
    monkeypatch.setattr(figures, "plot_frontier", functools.partial(plot_frontier, blocks=(), lattice=()))
    paths = figures.make_figures(tmp_path / "out", quick=True, progress=False)
    assert [p.name for p in paths] == [figures.FIG2_NAME, figures.FIG3_NAME, FRONTIER_NAME, FRONTIER_CSV]
    assert paths[2].read_bytes()[:8] == PNG and paths[2].stat().st_size > 20_000
    with paths[3].open(newline="") as fh:
        back = list(csv.DictReader(fh))
    assert {r["source"] for r in back} == {"shipped", "turboquant"}
    assert len([r for r in back if r["source"] == "shipped"]) == len([e for e in read_manifest() if e["d"] == 64])
