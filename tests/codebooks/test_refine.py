"""More Lloyd iterations for a finished design (:func:`fibquant_theory.codebooks.refine.refine_codebook`), torch on the CPU."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fibquant_theory.codebooks.design import design_codebook, design_samples
from fibquant_theory.codebooks.refine import refine_codebook
from fibquant_theory.codebooks.torch_design import codebook_samples, float32_rounded
from fibquant_theory.codebooks.torch_lloyd import lloyd_max_torch

pytest.importorskip("torch")
SMALL = {"n_train": 6000, "n_heldout": 3000, "n_restarts": 1, "device": "cpu", "cache": False}


def _sha(points: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(points, dtype="<f8").tobytes()).hexdigest()


@pytest.fixture(scope="module")
def start():
    return design_codebook(16, 2, 32, max_iter=2, **SMALL)


def test_lloyd_keeps_no_state_but_the_points():
    """lloyd(p, a + b) == lloyd(lloyd(p, a).points, b + 1), bit for bit: what makes a refinement a longer design."""
    train, _ = design_samples(16, 2, 32, 0, 6000, 10)
    p = train[:32]
    a, b = 3, 5
    long = lloyd_max_torch(p, train, max_iter=a + b, tol=0.0)
    assert long.stopped == "max_iter"  # no early stop: the identity needs every iteration to run
    first = lloyd_max_torch(p, train, max_iter=a, tol=0.0)
    rest = lloyd_max_torch(first.points, train, max_iter=b + 1, tol=0.0)
    assert _sha(rest.points) == _sha(long.points)
    assert rest.mse == long.mse
    assert rest.history[0] == first.history[-1]  # the first step re-assigns the points it started from


def test_refinement_lowers_the_training_mse_and_is_recorded(start):
    r = refine_codebook(start, 15)
    assert r.train_mse < start.train_mse  # 0.05362 -> 0.05013 observed
    assert r.heldout_mse < start.heldout_mse  # 0.05277 -> 0.05056 observed
    rec = r.params["refinements"][-1]
    assert rec["from_content_hash"] == start.content_hash and rec["n_iter"] == 15 and rec["stopped"] == "max_iter"
    assert rec["heldout_before"] == start.heldout_mse and rec["heldout_after"] == r.heldout_mse
    assert len(rec["history"]) == 15 and rec["history"][0] * 8 == pytest.approx(start.train_mse, rel=1e-12)
    assert r.structure == start.structure and r.params["options"] == start.params["options"]
    again = refine_codebook(r, 4)
    assert len(again.params["refinements"]) == 2
    assert again.params["refinements"][1]["from_content_hash"] == r.content_hash


def test_a_refinement_reproduces_from_its_record(start):
    """A time-budget cut is reproduced by ``max_iter = n_iter`` (same points; only the record's seconds differ)."""
    cut = refine_codebook(start, 10_000, time_budget=0.0)
    n = cut.params["refinements"][-1]["n_iter"]
    assert cut.params["refinements"][-1]["stopped"] == "time_budget" and n == 1
    again = refine_codebook(start, n)
    assert _sha(again.points) == _sha(cut.points) and again.heldout_mse == cut.heldout_mse


def test_samples_given_are_the_samples_drawn(start):
    samples = codebook_samples(start)
    assert _sha(refine_codebook(start, 3, samples=samples).points) == _sha(refine_codebook(start, 3).points)
    with pytest.raises(ValueError, match="samples must be the design's"):
        refine_codebook(start, 3, samples=(samples[0][:-1], samples[1]))


def test_a_float32_shipped_file_refines_and_rounds_again(start):
    rounded = float32_rounded(refine_codebook(start, 3))
    r = refine_codebook(rounded, 3)
    assert "stored_as" not in r.params and "designed_content_hash" not in r.params
    assert float32_rounded(r).params["stored_as"] == "float32"


@pytest.mark.parametrize("kwargs, match", [
    ({"max_iter": 0}, "max_iter"),
    ({"max_iter": 2, "tol": -1.0}, "tol"),
    ({"max_iter": 2, "tol": float("nan")}, "tol"),
    ({"max_iter": 2, "device": None}, "torch device"),
])
def test_bad_arguments_raise(start, kwargs, match):
    with pytest.raises(ValueError, match=match):
        refine_codebook(start, **kwargs)


def test_only_shells_designs_with_their_sizes_refine():
    e8 = design_codebook(64, 8, 240, family="e8", n_train=2000, n_heldout=2000, cache=False)
    with pytest.raises(ValueError, match="shells design"):
        refine_codebook(e8, 2)
    with pytest.raises(ValueError, match="shells design"):
        refine_codebook(np.zeros((4, 2)), 2)


def test_more_training_samples_become_the_designs_set(start):
    big = refine_codebook(start, 3, n_train=9000)
    assert big.params["n_train_used"] == 9000 and big.params["refinements"][-1]["n_train"] == 9000
    assert codebook_samples(big)[0].shape == (9000, 2)
    assert _sha(refine_codebook(big, 2).points) == _sha(refine_codebook(big, 2, samples=codebook_samples(big)).points)
    with pytest.raises(ValueError, match="n_train"):
        refine_codebook(start, 3, n_train=8)  # fewer samples than codewords
