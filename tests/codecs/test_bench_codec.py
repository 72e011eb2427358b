"""pytest-benchmark: FibQuant encode/decode (Numba) beside a plain NumPy codec, d = 128, k = 8, N = 256,
and every registered method (:data:`fibquant_theory.codecs.registry.SPECS`) at its typical setting.

Run the timings with ``make bench`` or
``.venv/bin/python -m pytest tests/codecs/test_bench_codec.py --benchmark-enable --benchmark-only``;
under the default ``--benchmark-disable`` every benchmark runs once as a test
(and checks its output), so they stay cheap. Vectors per second are
``N_VECTORS / mean``; compare rows of the same group, measured in the same run.
"""

from __future__ import annotations

import numpy as np
import pytest

from fibquant_theory.codebooks.codebook import Codebook
from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codecs.fibquant import FibQuantCodec, FibQuantCodes
from fibquant_theory.codecs.registry import SPECS, make_codec
from fibquant_theory.theory.source import sample_unit_vectors
from tests.reference import decode_numpy, encode_numpy

D, K, N = 128, 8, 256
N_VECTORS = 4096
ENCODERS = ("exhaustive", "two-stage", "clustered")


@pytest.fixture(scope="module")
def codebook() -> Codebook:
    return design_codebook(D, K, N, seed=0, n_train=20_000, n_heldout=20_000)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return 3.0 * sample_unit_vectors(N_VECTORS, D, seed=123)


@pytest.mark.benchmark(group="encode d=128 k=8 N=256")
def test_bench_encode_numpy(benchmark, codebook: Codebook, vectors: np.ndarray) -> None:
    codec = FibQuantCodec(codebook, seed=0)
    rotation = codec.rotation.matrix
    payload = benchmark(encode_numpy, vectors, rotation, codebook.points)
    assert payload.size == N_VECTORS * codec.bits_per_vector // 8


@pytest.mark.benchmark(group="encode d=128 k=8 N=256")
@pytest.mark.parametrize("encoder", ENCODERS)
def test_bench_encode_numba(benchmark, codebook: Codebook, vectors: np.ndarray, encoder: str) -> None:
    codec = FibQuantCodec(codebook, seed=0, encoder=encoder)
    codec.encode(vectors[:8])  # load the compiled kernels outside the timing
    codes = benchmark(codec.encode, vectors)
    assert codes.nbytes == N_VECTORS * codec.bits_per_vector // 8
    if encoder == "exhaustive":
        assert_same_codes_up_to_ties(codec, codes, encode_numpy(vectors, codec.rotation.matrix, codebook.points), vectors)


def assert_same_codes_up_to_ties(codec: FibQuantCodec, codes: FibQuantCodes, numpy_payload: np.ndarray, x: np.ndarray) -> None:
    """The NumPy codec's records equal the Numba codec's, except where BLAS rounding can break a tie.

    The NumPy codec rotates and scores with BLAS, whose rounding depends on the CPU and its
    kernels, so only the indices of blocks whose two candidate codewords are equally near (to
    1e-12) and norm headers one fp16 step apart may differ (none did on the machines tried).
    """
    ref = FibQuantCodes(numpy_payload, codes.shape, codes.d, codes.k, codes.n_codewords, codes.norm_dtype,
                        codes.packing, codes.rotation, codes.seed, codes.codebook_hash)
    idx, norms = codec.unpack(codes)
    ref_idx, ref_norms = codec.unpack(ref)
    assert np.all(np.abs(norms.astype(np.float16).view(np.int16) - ref_norms.astype(np.float16).view(np.int16)) <= 1)
    rows, blocks = np.nonzero(idx != ref_idx)
    assert rows.size <= 1e-3 * idx.size, rows.size
    z = codec.rotation.forward(x / np.linalg.norm(x, axis=1, keepdims=True)).reshape(len(x), -1, codec.k)
    for i, b in zip(rows, blocks):
        d_fast = np.sum((z[i, b] - codec.points[idx[i, b]]) ** 2)
        d_numpy = np.sum((z[i, b] - codec.points[ref_idx[i, b]]) ** 2)
        assert abs(d_fast - d_numpy) <= 1e-12, (i, b, d_fast, d_numpy)


@pytest.mark.benchmark(group="decode d=128 k=8 N=256")
def test_bench_decode_numpy(benchmark, codebook: Codebook, vectors: np.ndarray) -> None:
    codec = FibQuantCodec(codebook, seed=0)
    payload = codec.encode(vectors).payload
    out = benchmark(decode_numpy, payload, N_VECTORS, codec.rotation.matrix, codebook.points)
    assert out.shape == (N_VECTORS, D)


@pytest.mark.benchmark(group="decode d=128 k=8 N=256")
def test_bench_decode_numba(benchmark, codebook: Codebook, vectors: np.ndarray) -> None:
    codec = FibQuantCodec(codebook, seed=0)
    codes = codec.encode(vectors)
    codec.decode_row(codes, 0)
    out = benchmark(codec.decode, codes)
    np.testing.assert_allclose(out, decode_numpy(codes.payload, N_VECTORS, codec.rotation.matrix, codebook.points), atol=1e-12)


@pytest.mark.benchmark(group="inner product d=128 k=8 N=256 (one query)")
@pytest.mark.parametrize("method", ["lut", "gather"])
def test_bench_inner_product(benchmark, codebook: Codebook, vectors: np.ndarray, method: str) -> None:
    codec = FibQuantCodec(codebook, seed=0)
    codes = codec.encode(vectors)
    q = vectors[0]
    codec.inner_product(q, codes, method=method)
    out = benchmark(codec.inner_product, q, codes, method=method)
    np.testing.assert_allclose(out, codec.decode(codes) @ q, rtol=1e-10, atol=1e-10)


@pytest.mark.benchmark(group="inner product d=128 k=8 N=256 (one query)")
def test_bench_inner_product_numpy(benchmark, codebook: Codebook, vectors: np.ndarray) -> None:
    codec = FibQuantCodec(codebook, seed=0)
    codes = codec.encode(vectors)
    q = vectors[0]
    out = benchmark(lambda: decode_numpy(codes.payload, N_VECTORS, codec.rotation.matrix, codebook.points) @ q)
    np.testing.assert_allclose(out, codec.inner_product(q, codes), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- every registered method
@pytest.fixture(scope="module")
def registered() -> dict:
    """Every registered method at its spec's ``example`` setting (designs with a small training set)."""
    codecs = {}
    for name, spec in SPECS.items():
        options = dict(spec.example)
        if "n_train" in spec.options:
            options.update(n_train=20_000, n_heldout=20_000)
        codecs[name] = make_codec(name, D, seed=0, **options)
    return codecs


@pytest.mark.benchmark(group="encode d=128, every registered method")
@pytest.mark.parametrize("method", list(SPECS))
def test_bench_encode_registered(benchmark, registered: dict, vectors: np.ndarray, method: str) -> None:
    codec = registered[method]
    codec.encode(vectors[:8])
    codes = benchmark(codec.encode, vectors)
    assert codes.shape == (N_VECTORS,) and codes.nbytes == codec.packed_nbytes(N_VECTORS)


@pytest.mark.benchmark(group="decode d=128, every registered method")
@pytest.mark.parametrize("method", list(SPECS))
def test_bench_decode_registered(benchmark, registered: dict, vectors: np.ndarray, method: str) -> None:
    codec = registered[method]
    codes = codec.encode(vectors)
    codec.decode_row(codes, 0)
    out = benchmark(codec.decode, codes)
    assert out.shape == (N_VECTORS, D)
    np.testing.assert_allclose(codec.inner_product(vectors[0], codes), out @ vectors[0], rtol=1e-9, atol=1e-9)
