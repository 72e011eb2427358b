r"""High-rate (Zador–Gersho) theory of block quantizers for the spherical-Beta source.

Normalization used throughout
-----------------------------
A quantizer of one ``k``-block :math:`y\sim f_{d,k}` with :math:`N` cells has, at
high rate (Zador 1982, Gersho 1979), the *block* distortion

.. math::

    D_{\text{block}} = E\|y-\hat y\|^2 \approx k\,G_k\,N^{-2/k}\,
    \Big(\int_{B^k} f_{d,k}^{k/(k+2)}\,dy\Big)^{(k+2)/k}
    = k\,G_k\,N^{-2/k}\,h_{d,k},

squared error summed over the ``k`` coordinates, where :math:`G_k` is the
dimensionless normalised second moment of the cell shape,
:math:`G = \frac{1}{k}\int_V\|x\|^2dx / \mathrm{vol}(V)^{1+2/k}` (``1/12`` for the
interval/cube), and :math:`h_{d,k}` the *Zador functional*. With ``d/k`` blocks and
:math:`N = 2^{kb}` (``b`` bits per coordinate) the full unit-vector MSE is

.. math::

    D_{\text{vec}}(b) \approx d\,G_k\,h_{d,k}\,2^{-2b},\qquad
    D_{\text{scalar}}(b) \approx d\,\tfrac1{12}\,h_{d,1}\,2^{-2b},

the second being TurboQuant's scalar product code (each coordinate's marginal is
:math:`f_{d,1}`, whatever the dependence between coordinates). The matched-rate gain
therefore splits exactly into

.. math::

    \frac{D_{\text{scalar}}}{D_{\text{vec}}} =
    \underbrace{\frac{1/12}{G_k}}_{\text{cell shaping}}\;
    \underbrace{\frac{h_{d,1}}{h_{d,k}}}_{\text{density matching}},\qquad
    \frac{h_{d,1}}{h_{d,k}} = \underbrace{\frac{h_{d,1}}{h^{\otimes}_{d,k}}}_{\text{shape}}\;
    \underbrace{\frac{h^{\otimes}_{d,k}}{h_{d,k}}}_{\text{memory}},

where :math:`h^{\otimes}_{d,k} = (\int f_{d,1}^{k/(k+2)})^{k+2}` is the Zador functional
of the *product* of the marginals (Lookabaugh & Gray 1989's space-filling, shape and
memory advantages). All functionals are closed forms in Gamma functions:

.. math::

    \int_{B^k} f_{d,k}^{\alpha}\,dy = c_{d,k}^{\alpha}\,\pi^{k/2}\,
    \frac{\Gamma(a\alpha+1)}{\Gamma(a\alpha+1+k/2)},\qquad a = \frac{d-k-2}{2},\quad
    c_{d,k} = \frac{\Gamma(d/2)}{\pi^{k/2}\Gamma((d-k)/2)}.

Lattice second moments
----------------------
:data:`LATTICE_SECOND_MOMENTS` lists the best known lattice quantizers with their
sources. ``k = 1`` (:math:`\mathbb Z`), ``k = 2`` (hexagonal :math:`A_2`, Fejes Tóth) and
``k = 3`` (:math:`A_3^*`, body-centred cubic; Barnes & Sloane 1983) are proven optimal
among lattices; the others are the best *known* lattices (Conway & Sloane, *Sphere
Packings, Lattices and Groups*, 3rd ed. 1999, Table 2.3; Conway & Sloane, "Voronoi
regions of lattices, second moments of polytopes, and quantization", IEEE Trans. IT
28(2), 1982). For dimensions without a tabulated lattice (e.g. ``k = 32``) only
Zador's bounds are available: the *sphere lower bound*
:math:`G_k \ge \Gamma(k/2+1)^{2/k}/((k+2)\pi)` (no quantizer does better) and Zador's
random-coding *upper bound* :math:`\Gamma(k/2+1)^{2/k}\Gamma(1+2/k)/(k\pi)` (some, not
necessarily lattice, quantizer achieves it asymptotically); both are in Conway &
Sloane (1982), eq. (3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from scipy import special

from fibquant_theory._validation import check_dim_block, check_int
# The low-rate bounds live in theory/_bounds.py; re-exported here, their public home (proofs/sub_one_bit.py uses them).
from fibquant_theory.theory._bounds import (  # noqa: F401
    _cap_distortion,
    _log_incomplete_beta_inverse,
    block_entropy,
    shannon_lower_bound,
    sphere_cap_bound,
)
from fibquant_theory.theory.source import log_normalizer as _source_log_normalizer

__all__ = [
    "LatticeSecondMoment",
    "LATTICE_SECOND_MOMENTS",
    "sphere_bound_G",
    "zador_upper_G",
    "best_known_G",
    "log_normalizer",
    "log_power_integral",
    "zador_functional",
    "product_zador_functional",
    "scalar_functional",
    "high_rate_mse",
    "GainDecomposition",
    "gain_decomposition",
    "gain_table",
    "block_entropy",
    "shannon_lower_bound",
    "sphere_cap_bound",
    "db",
]


def db(ratio: float) -> float:
    """``10 log10(ratio)``: a distortion ratio in decibels.

    Parameters
    ----------
    ratio : float
        A ratio of distortions, ``> 0``.

    Returns
    -------
    float
        ``10 log10(ratio)``.
    """
    return 10.0 * math.log10(ratio)


# --------------------------------------------------------------------------- lattices
@dataclass(frozen=True)
class LatticeSecondMoment:
    """Dimensionless normalised second moment :math:`G` of a lattice quantizer.

    Attributes
    ----------
    k : int
        Dimension.
    lattice : str
        Name of the lattice (or of the bound).
    G : float
        Normalised second moment :math:`\\frac1k\\int_V\\|x\\|^2/\\mathrm{vol}(V)^{1+2/k}`.
    exact : str
        Closed form where one is known (``""`` otherwise).
    status : str
        ``"optimal lattice (proven)"``, ``"best known lattice"`` or a bound.
    source : str
        Where the value comes from.
    """

    k: int
    lattice: str
    G: float
    exact: str
    status: str
    source: str


_CS99 = "Conway & Sloane, Sphere Packings, Lattices and Groups (3rd ed. 1999), Table 2.3"
_CS82 = "Conway & Sloane, IEEE Trans. IT 28(2):211-226 (1982)"

#: Best known lattice quantizers, keyed by dimension ``k``.
LATTICE_SECOND_MOMENTS: dict[int, LatticeSecondMoment] = {
    1: LatticeSecondMoment(1, "Z", 1.0 / 12.0, "1/12", "optimal lattice (proven)", "elementary"),
    2: LatticeSecondMoment(
        2, "A2 (hexagonal)", 5.0 / (36.0 * math.sqrt(3.0)), "5/(36 sqrt 3)", "optimal lattice (proven; Fejes Toth)",
        f"{_CS99}; {_CS82}",
    ),
    3: LatticeSecondMoment(
        3, "A3* (bcc)", 19.0 / (192.0 * 2.0 ** (1.0 / 3.0)), "19/(192 * 2^(1/3))",
        "optimal lattice (proven; Barnes & Sloane 1983)", f"{_CS99}; {_CS82}",
    ),
    4: LatticeSecondMoment(
        4, "D4", 13.0 / (120.0 * math.sqrt(2.0)), "13/(120 sqrt 2)", "best known lattice", f"{_CS99}; {_CS82}"
    ),
    5: LatticeSecondMoment(5, "D5*", 0.0756254, "", "best known lattice", f"{_CS99}; {_CS82}"),
    6: LatticeSecondMoment(6, "E6*", 0.0742437, "", "best known lattice", f"{_CS99}; {_CS82}"),
    7: LatticeSecondMoment(7, "E7*", 0.0731165, "", "best known lattice", f"{_CS99}; {_CS82}"),
    8: LatticeSecondMoment(8, "E8", 929.0 / 12960.0, "929/12960", "best known lattice", f"{_CS99}; {_CS82}"),
    12: LatticeSecondMoment(
        12, "K12 (Coxeter-Todd)", 0.0700960, "", "classical; beaten by glued lattices (G ~ 0.070034)",
        f"{_CS99}; Agrell, Pook-Kolb & Allen, 'Glued lattices are better quantizers than K12' (arXiv:2312.00481)",
    ),
    16: LatticeSecondMoment(16, "Lambda16 (Barnes-Wall)", 0.0682968, "", "best known lattice", _CS99),
    24: LatticeSecondMoment(24, "Lambda24 (Leech)", 0.0657702, "", "best known lattice", _CS99),
}


def _log_gamma_half_k(k: int) -> float:
    return float(special.gammaln(k / 2.0 + 1.0))


def sphere_bound_G(k: int) -> float:
    r"""Zador's sphere lower bound :math:`G_k \ge \Gamma(k/2+1)^{2/k}/((k+2)\pi)`.

    No quantizer in ``k`` dimensions (lattice or not) has a smaller normalised
    second moment; the bound is the second moment of a ball.

    Parameters
    ----------
    k : int
        Dimension, ``>= 1``.

    Returns
    -------
    float
        The bound.
    """
    k = check_int(k, "k", minimum=1)
    return math.exp(2.0 / k * _log_gamma_half_k(k)) / ((k + 2) * math.pi)


def zador_upper_G(k: int) -> float:
    r"""Zador's random-coding upper bound :math:`\Gamma(k/2+1)^{2/k}\Gamma(1+2/k)/(k\pi)`.

    Parameters
    ----------
    k : int
        Dimension, ``>= 1``.

    Returns
    -------
    float
        The bound.
    """
    k = check_int(k, "k", minimum=1)
    return math.exp(2.0 / k * _log_gamma_half_k(k)) * math.gamma(1.0 + 2.0 / k) / (k * math.pi)


def best_known_G(k: int) -> LatticeSecondMoment:
    """Best known lattice :math:`G_k`, or, without a tabulated lattice, the sphere lower bound.

    The sphere bound is optimistic (not achievable by any lattice); the returned
    record's ``status`` says which one it is.

    Parameters
    ----------
    k : int
        Dimension, ``>= 1``.

    Returns
    -------
    LatticeSecondMoment
        The value of :math:`G_k`, the lattice's name, its status and its source.
    """
    k = check_int(k, "k", minimum=1)
    if k in LATTICE_SECOND_MOMENTS:
        return LATTICE_SECOND_MOMENTS[k]
    return LatticeSecondMoment(
        k, "sphere bound", sphere_bound_G(k), "Gamma(k/2+1)^(2/k)/((k+2) pi)",
        "lower bound (no tabulated lattice in this dimension)", f"{_CS82}, eq. (3) (Zador)",
    )


# ------------------------------------------------------------------ functionals
def _check_density(d: int, k: int) -> tuple[int, int]:
    d, k = check_dim_block(d, k)
    if k == d:
        raise ValueError(f"k = d = {d}: the block lies on the sphere and has no density on the ball")
    return d, k


def log_normalizer(d: int, k: int) -> float:
    r""":math:`\log c_{d,k} = \log\Gamma(d/2) - \frac k2\log\pi - \log\Gamma((d-k)/2)` (``k < d``).

    The package's one implementation, :func:`fibquant_theory.theory.source.log_normalizer`.

    Parameters
    ----------
    d : int
        Dimension of the unit vector.
    k : int
        Block size, ``1 <= k < d``.

    Returns
    -------
    float
        :math:`\log c_{d,k}`.
    """
    d, k = _check_density(d, k)
    return _source_log_normalizer(d, k)


def log_power_integral(d: int, k: int, alpha: float) -> float:
    r"""Closed form of :math:`\log\int_{B^k} f_{d,k}(y)^{\alpha}\,dy` for ``alpha > 0``.

    Parameters
    ----------
    d, k : int
        Dimension and block size, ``1 <= k < d``.
    alpha : float
        Power, ``alpha > 0`` (``k/(k+2)`` for the Zador functional).

    Returns
    -------
    float
        :math:`\alpha\log c_{d,k} + \frac k2\log\pi + \log\Gamma(a\alpha+1) - \log\Gamma(a\alpha+1+k/2)`.
    """
    d, k = _check_density(d, k)
    alpha = float(alpha)
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    e = (d - k - 2) / 2.0 * alpha
    return float(
        alpha * log_normalizer(d, k) + 0.5 * k * math.log(math.pi) + special.gammaln(e + 1.0)
        - special.gammaln(e + 1.0 + k / 2.0)
    )


def zador_functional(d: int, k: int) -> float:
    r"""Zador functional :math:`h_{d,k} = (\int f_{d,k}^{k/(k+2)})^{(k+2)/k}` (``k < d``).

    Parameters
    ----------
    d : int
        Dimension of the unit vector.
    k : int
        Block size, ``1 <= k < d``.

    Returns
    -------
    float
        :math:`h_{d,k}`.
    """
    d, k = _check_density(d, k)
    return math.exp((k + 2) / k * log_power_integral(d, k, k / (k + 2)))


def scalar_functional(d: int) -> float:
    r"""The scalar functional :math:`h_{d,1} = (\int_{-1}^1 f_{d,1}^{1/3})^3`.

    Parameters
    ----------
    d : int
        Dimension of the unit vector, ``>= 2``.

    Returns
    -------
    float
        :math:`h_{d,1}`.
    """
    return zador_functional(d, 1)


def product_zador_functional(d: int, k: int) -> float:
    r"""Zador functional of the product of ``k`` marginals: :math:`(\int f_{d,1}^{k/(k+2)})^{k+2}`.

    Parameters
    ----------
    d : int
        Dimension of the unit vector.
    k : int
        Block size, ``1 <= k < d``.

    Returns
    -------
    float
        The functional of the product density.
    """
    d, k = _check_density(d, k)
    return math.exp((k + 2) * log_power_integral(d, 1, k / (k + 2)))


def high_rate_mse(d: int, k: int, rate_bits: float, G: float | None = None) -> float:
    r"""High-rate prediction of the full unit-vector MSE :math:`d\,G_k\,h_{d,k}\,2^{-2b}`.

    Parameters
    ----------
    d, k : int
        Dimension and block size (``k < d``, ``k`` divides ``d`` is not needed here).
    rate_bits : float
        Bits per coordinate ``b`` (a block has :math:`N = 2^{kb}` cells).
    G : float, optional
        Normalised second moment of the cells; defaults to :func:`best_known_G`
        (``1/12`` for ``k = 1``: TurboQuant's Lloyd–Max scalar code).

    Returns
    -------
    float
        :math:`E\|u-\hat u\|^2` summed over all ``d`` coordinates of a unit vector.
    """
    d, k = _check_density(d, k)
    b = float(rate_bits)
    if not (b > 0 and math.isfinite(b)):
        raise ValueError(f"rate_bits must be positive and finite, got {rate_bits}")
    g = best_known_G(k).G if G is None else float(G)
    if not (g > 0 and math.isfinite(g)):
        raise ValueError(f"G must be positive and finite, got {G}")
    return d * g * zador_functional(d, k) * 2.0 ** (-2.0 * b)


@dataclass(frozen=True)
class GainDecomposition:
    """Predicted high-rate matched-rate gain of a ``k``-dim code over the scalar product code.

    All gains are distortion ratios in dB (positive = the vector code is better);
    ``total_db = cell_shaping_db + density_matching_db`` and
    ``density_matching_db = shape_db + memory_db``.
    """

    d: int
    k: int
    lattice: str
    G_k: float
    cell_shaping_db: float
    density_matching_db: float
    shape_db: float
    memory_db: float
    total_db: float
    sphere_bound_cell_db: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for tables and JSON).

        Returns
        -------
        dict of str to Any
            Field name -> value.
        """
        return asdict(self)


def gain_decomposition(d: int, k: int, G: float | None = None) -> GainDecomposition:
    """Cell-shaping, density-matching (= shape + memory) and total high-rate gain in dB.

    Parameters
    ----------
    d, k : int
        Dimension and block size, ``1 <= k < d`` (``k = 1`` gives zero gains).
    G : float, optional
        Cell second moment; default :func:`best_known_G` (sphere bound where no lattice is tabulated).

    Returns
    -------
    GainDecomposition
    """
    d, k = _check_density(d, k)
    rec = best_known_G(k)
    g = rec.G if G is None else float(G)
    h1 = scalar_functional(d)
    hk = zador_functional(d, k)
    hp = product_zador_functional(d, k)
    cell = db((1.0 / 12.0) / g)
    dens = db(h1 / hk)
    return GainDecomposition(
        d=d, k=k, lattice=rec.lattice if G is None else "user", G_k=g, cell_shaping_db=cell,
        density_matching_db=dens, shape_db=db(h1 / hp), memory_db=db(hp / hk), total_db=cell + dens,
        sphere_bound_cell_db=db((1.0 / 12.0) / sphere_bound_G(k)),
    )


def gain_table(
    ks: Iterable[int] = (2, 3, 4, 8, 16, 32), ds: Iterable[int] = (16, 64, 128, 256)
) -> list[dict[str, Any]]:
    """Rows of :func:`gain_decomposition` for every valid ``(d, k)`` with ``k < d``.

    Parameters
    ----------
    ks : iterable of int
        Block sizes.
    ds : iterable of int
        Dimensions.

    Returns
    -------
    list of dict
        One row per pair (``d`` outer, ``k`` inner); pairs with ``k >= d`` are skipped.
    """
    rows = []
    for d in ds:
        for k in ks:
            if k < d:
                rows.append(gain_decomposition(d, k).as_dict())
    return rows

