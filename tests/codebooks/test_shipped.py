"""Shipped codebooks: the manifest, the SHA-256 check, and design_codebook returning them first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fibquant_theory.codebooks import shipped
from fibquant_theory.codebooks.codebook import Codebook, load_codebook, save_codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codebooks.shipped import (
    MANIFEST_FIELDS,
    ShippedCodebookError,
    data_dir,
    file_sha256,
    import_shipped,
    list_shipped,
    load_entry,
    manifest_entry,
    read_manifest,
    save_shipped,
    write_manifest,
)
from fibquant_theory.search.kernel import nearest_exhaustive
from fibquant_theory.theory.source import SphericalBeta

from ..test_reproducibility import GOLDEN_CODEBOOKS

OPTIONS = {"n_train": 20_000, "n_heldout": 20_000, "n_restarts": 1}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FIBQUANT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def designed() -> Codebook:
    """A small torch design (on the CPU) standing in for a GPU-designed codebook."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return design_codebook(16, 2, 8, 3, device="cpu", cache=False, **OPTIONS)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, designed: Codebook) -> Path:
    """A data folder holding the design and its manifest entry; the package reads it instead of its own."""
    data = tmp_path / "data"
    path = save_codebook(designed, data / "fibquant-d16-k2-N8-s3-torch.npz")
    write_manifest([manifest_entry(designed, path)], data)
    monkeypatch.setattr(shipped, "_DATA_DIR", data)
    return data


#: Package data budget (the wheel carries every shipped file).
MAX_DATA_BYTES = 20 << 20


def test_the_packaged_manifest_lists_exactly_the_shipped_files_and_each_verifies() -> None:
    """The real data folder: every file listed once, verified (SHA-256, content hash, fields), under 20 MiB."""
    assert (data_dir() / "manifest.json").is_file()
    entries = read_manifest()
    assert entries, "the package ships at least the CPU design d=64 k=32 N=128"
    assert sorted(e["file"] for e in entries) == sorted(p.name for p in data_dir().glob("*.npz"))
    assert sum(p.stat().st_size for p in data_dir().iterdir()) <= MAX_DATA_BYTES
    for entry in entries:
        cb = load_entry(entry)
        assert cb.params.get("implementation", "numba") == entry["implementation"]
        assert cb.content_hash == entry["content_hash"]
        assert cb.points.shape == (entry["N"], entry["k"]) and np.isfinite(cb.points).all()
        assert float(np.max(np.einsum("ij,ij->i", cb.points, cb.points))) < 1.0  # inside the unit ball
        if entry["implementation"] == "torch":  # a GPU design, shipped rounded to float32
            assert cb.params["stored_as"] == "float32"
            assert np.array_equal(cb.points, cb.points.astype(np.float32).astype(np.float64))
        # what design_codebook returns for the defaults: the shipped codebook, nothing designed
        assert design_codebook(entry["d"], entry["k"], entry["N"], entry["seed"]) == cb


def test_the_shipped_cpu_design_is_the_golden_one() -> None:
    """d=64, k=32, N=128 is shipped as the CPU design itself: the golden content hash (default options)."""
    (entry,) = [e for e in read_manifest() if (e["d"], e["k"], e["N"], e["seed"]) == (64, 32, 128, 0)]
    assert entry["implementation"] == "numba" and entry["content_hash"] == GOLDEN_CODEBOOKS[(64, 32, 128)]


@pytest.mark.parametrize("entry", read_manifest(), ids=lambda e: "d{d}k{k}N{N}s{seed}".format(**e))
def test_every_shipped_codebook_has_its_recorded_heldout_mse_on_fresh_samples(entry: dict) -> None:
    """The recorded held-out MSE against an exact search on new samples (another seed), within 5 standard errors.

    Observed for d=64, k=32, N=128 (4000 fresh blocks): 0.79719 against the recorded 0.79905
    (-0.8 standard errors of 0.0023). 4000 blocks (1000 at N >= 16384: about 2 s of exhaustive search each).
    """
    cb = load_entry(entry)
    n = 1000 if entry["N"] >= 16384 else 4000
    blocks = SphericalBeta(entry["d"], entry["k"]).rvs(n, seed=np.random.default_rng([99, entry["d"], entry["k"]]),
                                                       method="radial")
    _, dist = nearest_exhaustive(blocks, cb.points)
    scale = entry["d"] / entry["k"]
    mse, se = scale * float(dist.mean()), scale * float(dist.std(ddof=1)) / math.sqrt(n)
    assert abs(mse - entry["heldout_mse"]) <= 5 * se + 1e-12, (mse, entry["heldout_mse"], se)


def test_manifest_entry_records_the_file(folder: Path, designed: Codebook) -> None:
    (entry,) = read_manifest(folder)
    assert set(MANIFEST_FIELDS) <= set(entry)
    assert entry["sha256"] == file_sha256(folder / entry["file"])
    assert (entry["d"], entry["k"], entry["N"], entry["seed"], entry["family"], entry["implementation"]) == (
        16, 2, 8, 3, "shells", "torch"
    )
    assert entry["heldout_mse"] == designed.heldout_mse and entry["content_hash"] == designed.content_hash


def test_design_codebook_returns_the_shipped_codebook(folder: Path, designed: Codebook, _isolated_cache: Path) -> None:
    for kwargs in ({}, OPTIONS, {**OPTIONS, "device": "cpu"}):  # defaults, or the shipped design's own options
        cb = design_codebook(16, 2, 8, 3, **kwargs)
        assert cb == designed and cb.design_seconds == designed.design_seconds, kwargs
    assert not _isolated_cache.exists() or not list(_isolated_cache.glob("*.npz"))  # nothing designed, nothing cached
    # other options, another seed or cache=False: designed as usual
    other = design_codebook(16, 2, 8, 3, n_train=30_000, n_heldout=20_000)
    assert other != designed and "implementation" not in other.params
    assert design_codebook(16, 2, 8, 4, **OPTIONS) != designed
    assert design_codebook(16, 2, 8, 3, cache=False, **OPTIONS) != designed  # the Numba design of the same options


def test_a_corrupt_shipped_file_is_refused(folder: Path) -> None:
    path = folder / "fibquant-d16-k2-N8-s3-torch.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ShippedCodebookError, match="is corrupt: SHA-256"):
        design_codebook(16, 2, 8, 3)
    path.unlink()
    with pytest.raises(ShippedCodebookError, match="the file is missing"):
        design_codebook(16, 2, 8, 3)


def test_a_manifest_that_disagrees_with_its_file_is_refused(folder: Path) -> None:
    (entry,) = read_manifest(folder)
    write_manifest([{**entry, "heldout_mse": entry["heldout_mse"] * 2}], folder)
    with pytest.raises(ShippedCodebookError, match="does not match its manifest entry"):
        design_codebook(16, 2, 8, 3)
    write_manifest([{**entry, "sha256": "0" * 64}], folder)
    with pytest.raises(ShippedCodebookError, match="is corrupt: SHA-256"):
        design_codebook(16, 2, 8, 3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{}", "must be a JSON list"),
        ("[1]", "must be an object with the fields"),
        ("not json", "not a readable manifest"),
    ],
)
def test_malformed_manifests_are_refused(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ShippedCodebookError, match=match):
        read_manifest(tmp_path)


def test_manifest_entries_are_checked(folder: Path) -> None:
    (entry,) = read_manifest(folder)
    for bad, match in [
        ({"d": "16"}, "'d' must be an integer"),
        ({"file": "../x.npz"}, "bare file name"),
        ({"sha256": "xyz"}, "64 lowercase hex"),
        ({"heldout_mse": None}, "must be a number"),
    ]:
        with pytest.raises(ShippedCodebookError, match=match):
            write_manifest([{**entry, **bad}], folder)
    with pytest.raises(ShippedCodebookError, match="more than once"):
        write_manifest([entry, dict(entry)], folder)
    (folder / "manifest.json").write_text(json.dumps([entry, entry]))
    with pytest.raises(ShippedCodebookError, match="more than once"):
        read_manifest(folder)


def test_no_manifest_means_nothing_shipped(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "nowhere") == []


def test_list_shipped_adds_rate_and_path(folder: Path) -> None:
    (row,) = list_shipped(folder)
    assert row["rate_bits"] == pytest.approx(1.5) and Path(row["path"]) == folder / row["file"]
    assert list_shipped() == sorted(list_shipped(), key=lambda r: (r["d"], r["k"], r["N"], r["seed"], r["family"]))


def test_save_shipped_stores_each_array_in_its_narrowest_exact_dtype(tmp_path: Path, designed: Codebook) -> None:
    from fibquant_theory.codebooks.torch_design import float32_rounded

    wide = save_shipped(designed, tmp_path / "wide.npz")
    with np.load(wide) as z:
        assert z["points"].dtype == np.float64 and z["shell_index"].dtype == np.int16
    rounded = float32_rounded(designed, "cpu")
    narrow = save_shipped(rounded, tmp_path / "narrow.npz")
    with np.load(narrow) as z:
        assert z["points"].dtype == np.float32 and z["initial_points"].dtype == np.float32
        assert z["shell_radii"].dtype == np.float64  # Beta quantiles are not float32 numbers
    assert load_codebook(wide) == designed and load_codebook(narrow) == rounded
    with pytest.raises(TypeError, match="expected a Codebook"):
        save_shipped(object(), tmp_path / "x.npz")


def test_import_shipped_copies_verifies_and_merges(folder: Path, tmp_path: Path, designed: Codebook) -> None:
    dest = tmp_path / "dest"
    (entry,) = import_shipped(folder, dest)
    assert [e["file"] for e in read_manifest(dest)] == [entry["file"]] and load_entry(entry, dest) == designed
    import_shipped(folder, dest)  # the same file again: nothing changes
    other = design_codebook(16, 2, 8, 3, cache=False, **OPTIONS)  # the Numba design: another file, same design
    src2 = tmp_path / "src2"
    write_manifest([manifest_entry(other, save_shipped(other, src2 / "numba.npz"))], src2)
    with pytest.raises(ShippedCodebookError, match="already shipped"):
        import_shipped(src2, dest)
    import_shipped(src2, dest, replace=True)
    assert [e["file"] for e in read_manifest(dest)] == ["numba.npz"]
    with pytest.raises(ShippedCodebookError, match="no manifest entries"):
        import_shipped(tmp_path / "empty", dest)
    path = src2 / "numba.npz"
    path.write_bytes(path.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(ShippedCodebookError, match="is corrupt"):
        import_shipped(src2, tmp_path / "dest2")
    assert not (tmp_path / "dest2" / "manifest.json").exists()  # nothing imported from a corrupt source
