"""Slow, naive NumPy/SciPy reference versions that the fast implementations are checked against."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import integrate, special


# ------- theory: the scalar source f_{d,1} and scalar Lloyd–Max (fibquant_theory.theory.scalar)
def marginal_pdf_1d(d: int, t: float) -> float:
    """f_{d,1}(t) straight from the Gamma-function constant (no shared code with the package)."""
    if abs(t) >= 1:
        return 0.0
    c = math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d - 1) / 2)) if d < 340 else math.exp(
        special.gammaln(d / 2) - 0.5 * math.log(math.pi) - special.gammaln((d - 1) / 2)
    )
    return c * (1 - t * t) ** ((d - 3) / 2)


def cell_centroid_quad(d: int, a: float, b: float) -> float:
    """Centroid of [a, b] under f_{d,1} by adaptive quadrature."""
    f = lambda t: marginal_pdf_1d(d, t)  # noqa: E731
    mass = integrate.quad(f, a, b, epsabs=0, epsrel=1e-11, limit=200)[0]
    first = integrate.quad(lambda t: t * f(t), a, b, epsabs=0, epsrel=1e-11, limit=200)[0]
    return first / mass


def scalar_mse_quad(d: int, levels: np.ndarray, thresholds: np.ndarray) -> float:
    """E(t - Q(t))^2 under f_{d,1} by adaptive quadrature, cell by cell."""
    edges = np.concatenate(([-1.0], thresholds, [1.0]))
    total = 0.0
    for c, a, b in zip(levels, edges[:-1], edges[1:]):
        total += integrate.quad(lambda t: (t - c) ** 2 * marginal_pdf_1d(d, t), a, b, epsabs=1e-16, epsrel=1e-12)[0]
    return total


def nearest_level(levels: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the nearest level by brute force (ties to the upper level)."""
    dist = np.abs(np.asarray(t)[..., None] - levels)
    # argmin returns the first minimum; reverse to break ties upwards.
    return levels.size - 1 - np.argmin(dist[..., ::-1], axis=-1)


def lloyd_max_from_samples(samples: np.ndarray, n_levels: int, iterations: int = 200) -> np.ndarray:
    """Plain sample-based 1-D Lloyd algorithm (for cross-checks only)."""
    levels = np.quantile(samples, (np.arange(n_levels) + 0.5) / n_levels)
    for _ in range(iterations):
        idx = nearest_level(levels, samples)
        for j in range(n_levels):
            sel = samples[idx == j]
            if sel.size:
                levels[j] = sel.mean()
    return np.sort(levels)



# ----------------------------------- search: nearest-codeword searches (fibquant_theory.search)
def nearest_codeword_naive(y: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest codeword from the full matrix of direct squared distances (ties to the lowest index)."""
    dist = ((np.asarray(y)[:, None, :] - np.asarray(points)[None, :, :]) ** 2).sum(axis=-1)
    idx = np.argmin(dist, axis=1)
    return idx, dist[np.arange(idx.size), idx]


def nearest_codeword_ordered_naive(
    y: np.ndarray, points: np.ndarray, score: str = "direct"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`nearest_codeword_naive` with every sum taken over the coordinates in order ``t = 0, ..., k-1``.

    (NumPy's ``sum`` adds pairwise from ``k = 8`` on, so it can differ in the last bit.) Ranks by the
    direct ``|y - c|^2`` or the expanded ``|c|^2 - 2 y.c`` score; returns the index (first minimum), its
    direct squared distance and the full ``(n, N)`` matrix of direct squared distances.
    """
    y = np.asarray(y, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    dist = np.zeros((len(y), len(points)))
    dot = np.zeros((len(y), len(points)))
    norm2 = np.zeros(len(points))
    for t in range(y.shape[1]):
        dist += (y[:, None, t] - points[None, :, t]) ** 2
        dot += y[:, None, t] * points[None, :, t]
        norm2 += points[:, t] * points[:, t]
    idx = np.argmin(dist if score == "direct" else norm2[None, :] - 2.0 * dot, axis=1)
    return idx, dist[np.arange(idx.size), idx], dist


def _search_candidates_naive(y: np.ndarray, points: np.ndarray, candidates: np.ndarray) -> tuple[int, float]:
    candidates = np.sort(candidates)
    d = ((points[candidates] - y) ** 2).sum(axis=1)
    j = int(np.argmin(d))
    return int(candidates[j]), float(d[j])


def two_stage_naive(y: np.ndarray, points: np.ndarray, shell_index: np.ndarray, probes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Shell-then-angle search, one block at a time: shells ranked by |‖y‖ - mean codeword norm of the shell|."""
    labels = np.unique(shell_index, return_inverse=True)[1]
    norms = np.linalg.norm(points, axis=1)
    radii = np.array([norms[labels == s].mean() for s in range(labels.max() + 1)])
    idx = np.empty(len(y), dtype=np.int64)
    dist = np.empty(len(y))
    for i, v in enumerate(y):
        shells = np.argsort(np.abs(np.linalg.norm(v) - radii), kind="stable")[:probes]
        idx[i], dist[i] = _search_candidates_naive(v, points, np.flatnonzero(np.isin(labels, shells)))
    return idx, dist


def clustered_naive(
    y: np.ndarray, points: np.ndarray, parents: np.ndarray, labels: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-T clustered search, one block at a time, given the parents and the codeword labels."""
    idx = np.empty(len(y), dtype=np.int64)
    dist = np.empty(len(y))
    for i, v in enumerate(y):
        best = np.argsort(((parents - v) ** 2).sum(axis=1), kind="stable")[:top]
        idx[i], dist[i] = _search_candidates_naive(v, points, np.flatnonzero(np.isin(labels, best)))
    return idx, dist



# ---------- codebooks: Lloyd iterations of a vector quantizer (fibquant_theory.codebooks.lloyd)
def lloyd_naive(initial_points: np.ndarray, samples: np.ndarray, n_updates: int) -> tuple[np.ndarray, float]:
    """``n_updates`` plain Lloyd steps (exhaustive assignment, cell means, an empty cell takes the
    worst-quantized sample), then the distortion per block of the resulting codebook."""
    pts = np.array(initial_points, dtype=np.float64, copy=True)
    samples = np.asarray(samples, dtype=np.float64)
    for _ in range(n_updates):
        idx, dist = nearest_codeword_naive(samples, pts)
        new = pts.copy()
        empty = []
        for j in range(pts.shape[0]):
            sel = samples[idx == j]
            if sel.shape[0]:
                new[j] = sel.mean(axis=0)
            else:
                empty.append(j)
        if empty:
            worst = np.argsort(-dist, kind="stable")[: len(empty)]
            new[empty] = samples[worst]
        pts = new
    _, dist = nearest_codeword_naive(samples, pts)
    return pts, float(dist.mean())



# --------- codebooks: lattice shells of the structured families (fibquant_theory.codebooks.lattices)
def lattice_shell_naive(name: str, norm2: float) -> np.ndarray:
    """Every point of squared norm ``norm2`` of the lattice ``name``, by enumerating a box (rows sorted).

    ``"D4"``: ``{z in Z^4: sum z even}``; ``"E8"``: ``D8 ∪ (D8 + 1/2)``; ``"Hurwitz"``:
    ``Z^4 ∪ (Z^4 + 1/2)`` (the Hurwitz quaternions). Coordinates are searched in
    ``[-2, 2]``, enough for ``norm2 <= 4``.
    """
    k = {"D4": 4, "E8": 8, "Hurwitz": 4}[name]
    ints = np.array(list(itertools.product(range(-2, 3), repeat=k)), dtype=np.float64)
    halves = np.array(list(itertools.product((-1.5, -0.5, 0.5, 1.5), repeat=k)))
    if name == "D4":
        cands = ints[ints.sum(axis=1) % 2 == 0]
    elif name == "E8":
        cands = np.concatenate([ints[ints.sum(axis=1) % 2 == 0], halves[(halves - 0.5).sum(axis=1) % 2 == 0]])
    else:
        cands = np.concatenate([ints, halves])
    pts = cands[np.isclose((cands**2).sum(axis=1), norm2)]
    return pts[np.lexsort(pts.T[::-1])]


def max_inner_naive(y: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of ``table (M, k)`` maximising ``<y, v>`` for every ``y (n, k)`` (first on ties), and the maximum."""
    ip = np.asarray(y) @ np.asarray(table).T
    m = np.argmax(ip, axis=1)
    return m, ip[np.arange(len(m)), m]


# ---- codecs: record packing and the plain vectorised NumPy codec the Numba one is benchmarked against
def pack_records_naive(header: np.ndarray, indices: np.ndarray, n_codewords: int, header_bits: int, mode: str) -> np.ndarray:
    """Record stream built with Python integers: one big integer, bit p of the stream = bit p of it."""
    n, m = indices.shape
    width = (n_codewords - 1).bit_length()
    pbits = m * width if mode == "fixed" else (n_codewords**m - 1).bit_length()
    rbits = header_bits + pbits
    stream = 0
    for i in range(n):
        if mode == "fixed":
            payload = sum(int(v) << (j * width) for j, v in enumerate(indices[i]))
        else:
            payload = sum(int(v) * n_codewords**j for j, v in enumerate(indices[i]))
        h = int(header[i]) if header_bits else 0
        stream |= (h | (payload << header_bits)) << (i * rbits)
    nbytes = (n * rbits + 7) // 8
    return np.frombuffer(stream.to_bytes(nbytes, "little"), dtype=np.uint8).copy()


def unpack_records_naive(
    payload: np.ndarray, n: int, m: int, n_codewords: int, header_bits: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_records_naive` (no validation)."""
    width = (n_codewords - 1).bit_length()
    pbits = m * width if mode == "fixed" else (n_codewords**m - 1).bit_length()
    rbits = header_bits + pbits
    stream = int.from_bytes(bytes(payload), "little")
    header = np.empty(n, dtype=np.int64)
    idx = np.empty((n, m), dtype=np.int64)
    for i in range(n):
        rec = (stream >> (i * rbits)) & ((1 << rbits) - 1)
        header[i] = rec & ((1 << header_bits) - 1)
        v = rec >> header_bits
        for j in range(m):
            if mode == "fixed":
                idx[i, j] = (v >> (j * width)) & ((1 << width) - 1)
            else:
                v, idx[i, j] = divmod(v, n_codewords)
    return header, idx


def encode_numpy(x: np.ndarray, rotation: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Plain vectorised NumPy FibQuant encoder with fp16 norm and fixed-width packing (``N`` a power of two).

    Normalise, rotate with the dense matrix (BLAS), exhaustive search with the
    expanded distance ``|c|^2 - 2 y.c`` (BLAS), then pack ``[fp16 norm | indices]``
    records with :func:`numpy.packbits`. Returns the uint8 stream.
    """
    n, d = x.shape
    k = points.shape[1]
    norms = np.linalg.norm(x, axis=1)
    u = x / np.where(norms > 0, norms, 1.0)[:, None]
    y = (u @ rotation.T).reshape(-1, k)
    norm2 = (points**2).sum(axis=1)
    step = 4096  # blocks per chunk: keeps the (blocks, N) score matrix in cache
    idx = np.concatenate(
        [np.argmin(norm2[None, :] - 2.0 * (y[s : s + step] @ points.T), axis=1) for s in range(0, len(y), step)]
        or [np.zeros(0, dtype=np.int64)]
    ).reshape(n, d // k)
    width = (len(points) - 1).bit_length()
    hdr = norms.astype(np.float16).view(np.uint16).astype(np.int64)
    hbits = (hdr[:, None] >> np.arange(16)) & 1
    ibits = ((idx[:, :, None] >> np.arange(width)) & 1).reshape(n, -1)
    return np.packbits(np.concatenate([hbits, ibits], axis=1).astype(np.uint8).ravel(), bitorder="little")


def decode_numpy(payload: np.ndarray, n: int, rotation: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_numpy`: unpack with :func:`numpy.unpackbits`, gather, scale, rotate back."""
    d = rotation.shape[0]
    k = points.shape[1]
    m = d // k
    width = (len(points) - 1).bit_length()
    rbits = 16 + m * width
    bits = np.unpackbits(payload, bitorder="little", count=n * rbits).reshape(n, rbits).astype(np.int64)
    norms = (bits[:, :16] << np.arange(16)).sum(axis=1).astype(np.uint16).view(np.float16).astype(np.float64)
    idx = (bits[:, 16:].reshape(n, m, width) << np.arange(width)).sum(axis=2)
    z = points[idx].reshape(n, d)
    return norms[:, None] * (z @ rotation)



# ------------------------------------------- gpu: decode-attention from decoded keys and values
def attention_naive(q: np.ndarray, k_hat: np.ndarray, v_hat: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Softmax attention of one query per head over dequantised keys/values, in float64.

    ``q`` (..., d), ``k_hat``/``v_hat`` (..., T, d) -> (..., d); ``scale`` defaults to ``1/sqrt(d)``.
    """
    q = np.asarray(q, dtype=np.float64)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("...d,...td->...t", q, np.asarray(k_hat, dtype=np.float64)) * scale
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("...t,...td->...d", p, np.asarray(v_hat, dtype=np.float64))
