"""Lattices and their shells (issue #14): nearest lattice points, direction tables and their exact decoders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fibquant_theory.codebooks.d4 import D4Structure
from fibquant_theory.codebooks.directions import min_separation
from fibquant_theory.codebooks.e8 import E8Structure
from fibquant_theory.codebooks.hurwitz import HurwitzStructure
from fibquant_theory.codebooks.lattices import (
    LATTICES,
    axis_directions,
    decode_axes,
    decode_roots,
    decode_signs,
    nearest_lattice_point,
    root_directions,
    sign_directions,
)

from ..reference import lattice_shell_naive, max_inner_naive

EPS = np.finfo(np.float64).eps

#: (table, decoder, the smallest k it takes)
PIECES = {
    "roots": (root_directions, decode_roots, 2),
    "axes": (axis_directions, decode_axes, 1),
    "signs": (sign_directions, decode_signs, 1),
    "signs-even": (lambda k: sign_directions(k, even=True), lambda y: decode_signs(y, even=True), 2),
}


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.round(np.asarray(a), 12) + 0.0  # + 0.0: -0.0 sorts as 0.0
    return a[np.lexsort(a.T[::-1])]


# ------------------------------------------------------------------ direction tables
@pytest.mark.parametrize(
    "structure,variant,lattice,norms2,count,angle",
    [
        (D4Structure, 1, "D4", (2,), 24, math.pi / 3),
        (D4Structure, 2, "D4", (2, 4), 48, math.pi / 4),
        (E8Structure, 1, "E8", (2,), 240, math.pi / 3),
        (HurwitzStructure, 1, "Hurwitz", (1,), 24, math.pi / 3),
    ],
    ids=["d4-24", "d4-48", "e8-240", "hurwitz-24"],
)
def test_tables_are_the_normalised_lattice_shells(structure, variant, lattice, norms2, count, angle) -> None:
    """The family tables are exactly the normalised lattice shells found by brute-force enumeration."""
    table = structure.direction_table(variant)
    assert table.shape == (count, structure.block) and structure.n_directions(variant) == count
    np.testing.assert_allclose(np.sqrt((table**2).sum(axis=1)), 1.0, rtol=0, atol=2 * EPS)
    shells = np.concatenate([lattice_shell_naive(lattice, q) / math.sqrt(q) for q in norms2])
    assert len(shells) == count
    np.testing.assert_allclose(_sorted_rows(table), _sorted_rows(shells), rtol=0, atol=1e-12)
    assert len(np.unique(np.round(table, 12), axis=0)) == count  # distinct
    # antipodal, and the minimum angle of the code (60 degrees for the kissing configurations)
    np.testing.assert_allclose(_sorted_rows(-table), _sorted_rows(table), rtol=0, atol=1e-12)
    assert min_separation(table) == pytest.approx(angle, abs=1e-7)


def test_hurwitz_units_are_a_rotated_d4_root_system() -> None:
    """The Hurwitz units and the D4 roots are both 24-cells: the same Gram spectrum (inner products)."""
    h, r = HurwitzStructure.direction_table(1), D4Structure.direction_table(1)
    gram = lambda t: np.sort(np.round(t @ t.T, 12).ravel())
    np.testing.assert_array_equal(gram(h), gram(r))
    # and the 48-vector D4 code is their union
    np.testing.assert_allclose(_sorted_rows(D4Structure.direction_table(2)), _sorted_rows(np.concatenate([r, h])), atol=1e-12)


@pytest.mark.parametrize("piece", sorted(PIECES))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_decoders_return_every_table_row_for_itself(piece: str, k: int) -> None:
    table_fn, decode, kmin = PIECES[piece]
    if k < kmin:
        return
    table = table_fn(k)
    m, t = decode(table)
    np.testing.assert_array_equal(m, np.arange(len(table)))
    np.testing.assert_allclose(t, 1.0, rtol=0, atol=4 * EPS)


blocks = st.integers(1, 8).flatmap(
    lambda k: arrays(
        np.float64, st.tuples(st.integers(1, 40), st.just(k)),
        elements=st.one_of(
            st.floats(-3, 3, allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0]),  # ties of |y_i| and signs of zero
        ),
    )
)


@given(y=blocks, piece=st.sampled_from(sorted(PIECES)))
def test_decoders_maximise_the_inner_product(y: np.ndarray, piece: str) -> None:
    """Closed-form decoder == brute-force argmax over the table (indices wherever the maximum is unique)."""
    table_fn, decode, kmin = PIECES[piece]
    k = y.shape[1]
    if k < kmin:
        with pytest.raises(ValueError, match="k >="):
            decode(y)
        return
    table = table_fn(k)
    m, t = decode(y)
    m_ref, t_ref = max_inner_naive(y, table)
    # both are sums of at most k products of |y_i| <= 3 and |v_i| <= 1: a few ulps of sum |y_i|
    tol = 4 * k * EPS * (np.abs(y).sum(axis=1) + 1e-300)
    assert np.all(np.abs(t - t_ref) <= tol)
    # the decoder's index attains the maximum
    np.testing.assert_allclose((y * table[m]).sum(axis=1), t_ref, rtol=0, atol=float(tol.max()))
    ip = np.sort(y @ table.T, axis=1)
    unique = ip[:, -1] - ip[:, -2] > 2 * tol if table.shape[0] > 1 else np.ones(len(y), bool)
    np.testing.assert_array_equal(m[unique], m_ref[unique])


def test_decoders_on_zero_and_bad_input() -> None:
    for table_fn, decode, kmin in PIECES.values():
        m, t = decode(np.zeros((2, max(kmin, 4))))
        assert m.tolist() == [0, 0] and t.tolist() == [0.0, 0.0]
        with pytest.raises(ValueError, match="NaN or Inf"):
            decode(np.array([[0.0, 1.0, np.nan, 0.0]]))
        with pytest.raises(ValueError, match="shape"):
            decode(np.zeros(4))
        assert decode(np.zeros((0, 4)))[0].shape == (0,)
    with pytest.raises(ValueError, match="k"):
        root_directions(1)


# ------------------------------------------------------------------ nearest lattice point
def _members(name: str, p: np.ndarray) -> bool:
    if name in ("D4",):
        return bool(np.all(p == np.rint(p)) and np.all(p.sum(axis=1) % 2 == 0))
    ints = np.all(p == np.rint(p), axis=1)
    halves = np.all(p - 0.5 == np.rint(p - 0.5), axis=1)
    return bool(np.all((ints | halves) & (p.sum(axis=1) % 2 == 0)))


@pytest.mark.parametrize("name,k", [("D4", 4), ("E8", 8)])
def test_nearest_lattice_point_is_in_its_voronoi_cell(name: str, k: int) -> None:
    """The decoded point is a lattice point and no neighbour p + r (r a root: the Voronoi-relevant vectors
    of a root lattice) is nearer, i.e. x lies in the Voronoi cell of p."""
    x = np.random.default_rng(5).uniform(-3, 3, size=(3000, k))
    p = nearest_lattice_point(name, x)
    assert _members(name, p)
    roots = lattice_shell_naive(name, 2)
    d0 = ((x - p) ** 2).sum(axis=1)
    dn = ((x[:, None, :] - (p[:, None, :] + roots[None])) ** 2).sum(axis=2).min(axis=1)
    assert np.all(d0 <= dn + 1e-12)


def test_nearest_lattice_point_small_lattices_and_errors() -> None:
    x = np.random.default_rng(1).uniform(-2, 2, size=(500, 2))
    p = nearest_lattice_point("A2", x)
    # A2 with unit minimum distance: the six neighbours at distance 1 are never nearer
    nbrs = np.array([[np.cos(a), np.sin(a)] for a in np.arange(6) * np.pi / 3])
    d0 = ((x - p) ** 2).sum(axis=1)
    assert np.all(d0[:, None] <= ((x[:, None] - p[:, None] - nbrs[None]) ** 2).sum(axis=2) + 1e-12)
    assert nearest_lattice_point("Z", np.array([[0.4], [-1.6]])).ravel().tolist() == [0.0, -2.0]
    assert set(LATTICES) == {"Z", "A2", "A3*", "D4", "E8"}
    with pytest.raises(ValueError, match="unknown lattice"):
        nearest_lattice_point("E7", np.zeros((1, 7)))
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        nearest_lattice_point("E8", np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        nearest_lattice_point("D4", np.array([[0.0, np.inf, 0.0, 0.0]]))
