"""GPU kernels under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``): logic, indexing, layout.

The simulator must be enabled before :mod:`numba.cuda` is first imported, so
:func:`test_gpu_kernels_under_the_simulator` re-runs this file in two fresh
interpreters with the variable set (every other test in each:
:func:`tests.helpers.run_simulator_shards`); the tests below only run there (sizes are
tiny: the simulator runs every CUDA thread as a Python thread). They check each
kernel against the CPU codec: the float64 encoder writes the CPU's bytes
(exhaustive and two-stage search, Hadamard and dense rotations, records of
22, 32 and 48 bits), decode is within one rounding of the output format,
decode-attention matches softmax attention over the CPU-decoded vectors.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

INNER = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and os.environ.get("FIBQUANT_GPU_SIM_INNER") == "1"
inner = pytest.mark.skipif(not INNER, reason="runs inside the simulator subprocess of test_gpu_kernels_under_the_simulator")


@pytest.mark.skipif(INNER, reason="this is the driver")
def test_gpu_kernels_under_the_simulator() -> None:
    from tests.helpers import run_simulator_shards

    passed, skipped, out = run_simulator_shards(__file__)
    assert passed >= 40 and skipped == 1, out  # only the driver skips


# ------------------------------------------------------------------------------------------- inner
# (d, k, N): record bits 16 + (d/k) * ceil(log2 N) = 48 (2-byte loads), 22 (unaligned), 32 (N not a power of two)
CONFIGS = [(16, 2, 16), (16, 8, 8), (16, 4, 12)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "d{}k{}N{}".format(*c))
def codebook(request):
    from fibquant_theory.codebooks.design import design_codebook

    d, k, n = request.param
    return design_codebook(d, k, n, n_train=4000, n_heldout=1000, n_restarts=1, cache=False)


def _pair(codebook, rotation="hadamard", encoder="exhaustive", precision="float64", norm_dtype="float16", **options):
    """The CPU codec and its GPU codec with ``GPUOptions(**options)``."""
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec, GPUOptions

    cpu = FibQuantCodec(codebook, seed=7, rotation=rotation, encoder=encoder, packing="fixed", norm_dtype=norm_dtype)
    return cpu, GPUFibQuantCodec(cpu, precision=precision, options=GPUOptions(**options))


def _with(gpu, **changes):
    """``gpu``'s codec with its options changed (``dataclasses.replace``)."""
    from dataclasses import replace

    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    return GPUFibQuantCodec(gpu.codec, precision=gpu.precision, options=replace(gpu.options, **changes))


@inner
@pytest.mark.parametrize("rotation", ["hadamard", "haar"])
def test_encode_writes_the_cpu_bytes(codebook, rotation):
    cpu, gpu = _pair(codebook, rotation)
    x = np.random.default_rng(3).standard_normal((19, codebook.d)).astype(np.float32) * 5
    x[4] = 0.0  # a zero vector: norm 0, direction 0
    got = gpu.encode(x).copy_to_host()
    assert np.array_equal(got, cpu.encode(x.astype(np.float64)).payload)


@inner
@pytest.mark.parametrize("norm_dtype", ["bfloat16", "float32"])
def test_encode_two_stage_and_other_headers(codebook, norm_dtype):
    cpu, gpu = _pair(codebook, "hadamard", "two-stage", "float64", norm_dtype)
    x = np.random.default_rng(4).standard_normal((11, codebook.d)).astype(np.float16)
    got = gpu.encode(x).copy_to_host()
    assert np.array_equal(got, cpu.encode(x.astype(np.float64)).payload)


@inner
def test_encode_float32_search_agrees(codebook):
    cpu, gpu = _pair(codebook, "hadamard", precision="float32")
    x = np.random.default_rng(5).standard_normal((16, codebook.d)).astype(np.float32)
    codes = gpu.to_codes(gpu.encode(x), (16,))
    idx, norms = cpu.unpack(codes)
    want_idx, want_norms = cpu.encode_indices(x.astype(np.float64))
    assert np.array_equal(norms, want_norms)
    assert np.mean(idx == want_idx) >= 0.97  # observed 1.0


@inner
def test_decode_encode_is_exact_on_codebook_points(codebook):
    cpu, gpu = _pair(codebook, "hadamard")
    rng = np.random.default_rng(6)
    idx = rng.integers(0, codebook.n_codewords, size=(9, codebook.d // codebook.k))
    z = codebook.points[idx].reshape(9, codebook.d)
    x = cpu.rotation.inverse(z / np.linalg.norm(z, axis=1, keepdims=True)) * 2.0  # norm 2 is exact in fp16
    codes = gpu.to_codes(gpu.encode(x.astype(np.float32)), (9,))
    got_idx, got_norm = cpu.unpack(codes)
    assert np.array_equal(got_idx, idx) and np.all(got_norm == 2.0)


@inner
@pytest.mark.parametrize("rotation", ["hadamard", "haar", "hadamard-columns"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_decode_within_rounding_of_cpu(codebook, rotation, dtype):
    cpu, gpu = _pair(codebook, rotation.split("-")[0], decode_layout="columns" if rotation.endswith("columns") else "chunks")
    codes = cpu.encode(np.random.default_rng(8).standard_normal((13, codebook.d)))
    want = cpu.decode(codes)
    out = gpu.decode(codes.payload, 13, dtype=dtype).copy_to_host()
    if dtype == "bfloat16":
        got = (out.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    else:
        got = out.astype(np.float64)
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-20}[dtype]
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= ulp * np.abs(want) + 1e-6 * np.abs(want).max())


@inner
def test_decode_layouts_agree(codebook):
    """1, 2 or 4 lanes per vector, coordinates interleaved over the lanes in chunks of 1, 2, 4 or 8.

    (The simulator's shuffle stand-in goes through a float64 scratch array, so the
    layouts agree to float32 rounding here; on a GPU they are bit-identical, see
    ``tests/gpu/test_device.py``.)
    """
    cpu, base = _pair(codebook, decode_layout="chunks")
    codes = cpu.encode(np.random.default_rng(9).standard_normal((11, codebook.d)))
    want = cpu.decode(codes)
    for per_lane in (4, 8, 16):
        for chunk in (1, 2, 4, 8):
            gpu = _with(base, decode_per_lane=per_lane, decode_chunk=chunk)
            # float32 output checks the indexing tightly; the fp16 stores are covered by test_decode_within_rounding_of_cpu
            got = gpu.decode(codes.payload, 11, dtype="float32").copy_to_host().astype(np.float64)
            assert np.allclose(got, want, rtol=2e-6, atol=1e-6 * np.abs(want).max()), (per_lane, chunk)


@inner
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_column_decode_layouts_write_the_same_bits(codebook, dtype):
    """Columns per lane (direct or staged stores, 32- or 64-bit words), prefetch, word or byte loads: one result."""
    from fibquant_theory.gpu.column_decode import column_plan
    from fibquant_theory.gpu.device import OUT_F16, OUT_F32

    cpu, gpu = _pair(codebook, decode_layout="columns")
    d, k = codebook.d, codebook.k
    n = 16  # whole 32-bit words for every record size of CONFIGS
    codes = cpu.encode(np.random.default_rng(12).standard_normal((n, d)))
    assert codes.payload.size % 4 == 0
    want = gpu.decode(codes.payload, n, dtype=dtype).copy_to_host()
    okind = OUT_F16 if dtype == "float16" else OUT_F32
    tried = 0
    for columns in (1, 2, 4, 8):
        try:
            column_plan(d, k, codebook.n_codewords, okind, columns)
        except ValueError:
            with pytest.raises(ValueError, match="columns|values"):
                _with(gpu, decode_columns=columns).decode(codes.payload, n, dtype=dtype)
            continue
        # (prefetch, 32-bit word loads, codebook copies: 0 = all the warp's vectors, 1 = one shared copy)
        for prefetch, words, copies in ((True, True, 0), (False, True, 0), (True, False, 0), (True, True, 1)):
            variant = _with(gpu, decode_columns=columns, decode_prefetch=prefetch, decode_words32=words, decode_replicas=copies)
            got = variant.decode(codes.payload, n, dtype=dtype).copy_to_host()
            assert np.array_equal(got, want), (columns, prefetch, words, copies)
            tried += 1
    assert tried >= 4
    with pytest.raises(ValueError, match="replicas"):
        _with(gpu, decode_columns=0, decode_replicas=3).decode(codes.payload, n, dtype=dtype)
    # and the chunked kernel agrees to rounding
    other = _with(gpu, decode_layout="chunks", decode_columns=0).decode(codes.payload, n, dtype=dtype)
    other = other.copy_to_host().astype(np.float64)
    np.testing.assert_allclose(other, want.astype(np.float64), rtol=2.0**-10, atol=1e-6 * np.abs(other).max())
    with pytest.raises(ValueError, match="decode_layout"):
        _with(gpu, decode_layout="diagonal").decode(codes.payload, n)


@inner
def test_column_layout_falls_back_to_chunks_where_it_does_not_fit():
    """k = 1 has no in-block transform to fold: "columns" decodes with the chunked kernel, bit for bit."""
    from fibquant_theory.codebooks.design import design_codebook

    cb = design_codebook(8, 1, 4, n_train=2000, n_heldout=500, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb, decode_layout="chunks")
    codes = cpu.encode(np.random.default_rng(13).standard_normal((5, 8)))
    want = gpu.decode(codes.payload, 5).copy_to_host()
    gpu = _with(gpu, decode_layout="columns")
    assert np.array_equal(gpu.decode(codes.payload, 5).copy_to_host(), want)
    gpu = _with(gpu, decode_columns=2)  # asked for explicitly: the reason is raised
    with pytest.raises(ValueError, match="k >= 2"):
        gpu.decode(codes.payload, 5)


@inner
def test_options_are_fixed_per_codec():
    """The tuning is a frozen GPUOptions given at construction; the former attributes cannot be set."""
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.gpu.codec import GPUFibQuantCodec, GPUOptions

    cb = design_codebook(8, 2, 4, n_train=2000, n_heldout=500, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb, decode_layout="columns", attention_unroll=1)
    assert gpu.options == GPUOptions(decode_layout="columns", attention_unroll=1)
    assert _with(gpu, decode_layout="chunks").options.attention_unroll == 1
    with pytest.raises(AttributeError, match="option"):
        gpu.decode_layout = "chunks"
    with pytest.raises(AttributeError):
        gpu.options = GPUOptions()
    with pytest.raises(TypeError, match="GPUOptions"):
        GPUFibQuantCodec(cpu, options={"decode_layout": "columns"})


@inner
def test_column_plan_bounds():
    from fibquant_theory.gpu.column_decode import column_codebook, column_plan
    from fibquant_theory.gpu.device import OUT_F16, OUT_F32

    p = column_plan(128, 8, 256, OUT_F16)  # the benchmark setting: 2 columns, 4 lanes, 8 vectors a warp, 4 copies (32 KiB)
    assert (p["C"], p["L"], p["W"], p["R"], p["staged"], p["rowp"]) == (2, 4, 8, 4, 1, 68)
    # staged writes: lane (w, l) of block b writes bank (w rowp + b kb + l cw) mod 32, all different
    banks = {(w * p["rowp"] + 3 * p["kb"] + l * p["cw"]) % 32 for w in range(p["W"]) for l in range(p["L"])}
    assert len(banks) == 32
    p = column_plan(64, 32, 128, OUT_F16)  # sub-one-bit: 4 columns (8 values), direct 64-bit stores, 2 of 4 copies fit
    assert (p["C"], p["L"], p["W"], p["R"], p["staged"], p["out_words"]) == (4, 8, 4, 2, 0, 2)
    p = column_plan(64, 32, 128, OUT_F16, columns=8)  # the old default: 8 columns, 4 of 8 copies in 64 KiB
    assert (p["C"], p["L"], p["W"], p["R"]) == (8, 4, 8, 2)
    assert column_plan(64, 32, 128, OUT_F16, columns=8, replicas=8)["bytes"] == 8 * 128 * 32 * 4
    assert column_plan(128, 8, 256, OUT_F32)["C"] == 1
    bad_plans = (
        (128, 1, 256, OUT_F16, 0), (96, 8, 256, OUT_F16, 0), (128, 8, 256, OUT_F16, 3), (128, 2, 16, OUT_F16, 0),
        (128, 8, 256, OUT_F32, 8), (128, 8, 8192, OUT_F16, 0),  # 128 values a lane; a 256 KiB codebook
    )
    for bad in bad_plans:
        with pytest.raises(ValueError):
            column_plan(*bad)
    # the replicated table: copy r, row n, column p = l C + c at n R k + c R L + r L + l, values H_k c_n
    pts = np.random.default_rng(0).standard_normal((5, 8))
    p = column_plan(32, 8, 5, OUT_F16)
    t = column_codebook(pts, p).reshape(5, p["C"], p["R"], p["L"])
    h8 = np.array([[1.0]])
    for _ in range(3):
        h8 = np.block([[h8, h8], [h8, -h8]])
    want = pts @ h8.T
    for c in range(p["C"]):
        for r in range(p["R"]):
            np.testing.assert_allclose(t[:, c, r, :], want[:, c::p["C"]][:, :p["L"]] if p["C"] == 1 else want.reshape(5, p["L"], p["C"])[:, :, c], rtol=1e-6)


def _check_attention(codebook, rotation, n_heads):
    from tests.reference import attention_naive

    cpu, gpu = _pair(codebook, rotation)
    rng = np.random.default_rng(9)
    b, h, t, d = 1, n_heads, 300, codebook.d
    kc = cpu.encode(rng.standard_normal((b, h, t, d)) * np.linspace(0.5, 3.0, t)[:, None])  # growing scores
    vc = cpu.encode(rng.standard_normal((b, h, t, d)))
    q = rng.standard_normal((b, h, d)).astype(np.float32)
    want = attention_naive(q, cpu.decode(kc), cpu.decode(vc))
    # (splits, records in flight, tokens per chunk, 32-bit word loads): one chunk per split with word
    # loads; two chunks of 256 tokens per split (running maximum rescaled) with the byte/halfword loader
    for n_splits, unroll, chunk, words in ((3, 4, 4096, True), (1, 1, 256, False)):
        variant = _with(gpu, attention_unroll=unroll, attention_chunk=chunk, attention_words32=words)
        got = variant.decode_attention(q, kc.payload, vc.payload, t, n_splits=n_splits, dtype="float32").copy_to_host()
        # V weights are summed in 32-bit fixed point scaled to each chunk's total: ~1e-7 relative error
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=5e-6 * np.abs(want).max())


@inner
def test_decode_attention_matches_reference(codebook):
    """Splits, chunks, records in flight and both loaders on every record size (one head: the simulator
    runs each of the 256 threads of a block as a Python thread; two heads are checked below)."""
    _check_attention(codebook, "hadamard", n_heads=1)


@inner
def test_decode_attention_dense_rotation():
    """The dense rotation changes only the query transform: one record size, one head (heads: the GQA test)."""
    from fibquant_theory.codebooks.design import design_codebook

    d, k, n = CONFIGS[0]
    _check_attention(design_codebook(d, k, n, n_train=4000, n_heldout=1000, n_restarts=1, cache=False), "haar", n_heads=1)


@inner
def test_decode_attention_byte_indices_and_fp16_queries():
    """Blocks of 8-bit indices, 16 per record (the byte-permute path of d=128, k=8, N=256), fp16 queries."""
    from fibquant_theory.codebooks.design import design_codebook
    from tests.reference import attention_naive

    cb = design_codebook(32, 2, 256, n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb)
    rng = np.random.default_rng(11)
    t = 100
    kc = cpu.encode(rng.standard_normal((1, 1, t, 32)))
    vc = cpu.encode(rng.standard_normal((1, 1, t, 32)))
    q = rng.standard_normal((1, 1, 32)).astype(np.float16)
    want = attention_naive(q.astype(np.float32), cpu.decode(kc), cpu.decode(vc))
    got = gpu.decode_attention(q, kc.payload, vc.payload, t, n_splits=2, dtype="float32").copy_to_host()
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=5e-6 * np.abs(want).max())


@inner
def test_fp16_norm_header_is_exact():
    """The branch-free fp16 header read of decode-attention: every finite >= 0 pattern exact, the rest flagged."""
    from fibquant_theory.gpu.device import f16_norm

    bits = np.arange(1 << 16)
    want = bits.astype(np.uint16).view(np.float16).astype(np.float32)
    got = np.array([f16_norm(int(x)) for x in bits], dtype=np.float32)
    ok = bits < 0x7C00
    np.testing.assert_array_equal(got[ok], want[ok])
    assert (got[~ok] == -1.0).all()


@inner
def test_corrupt_and_unsupported_inputs_raise(codebook):
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    cpu, gpu = _pair(codebook)
    x = np.random.default_rng(10).standard_normal((6, codebook.d)).astype(np.float32)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="first bad row 3"):
        gpu.encode(x)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        gpu.encode(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        gpu.encode(np.zeros((2, 16), np.float64))
    payload = cpu.encode(np.ones((4, codebook.d))).payload
    with pytest.raises(ValueError, match="truncated"):
        gpu.decode(payload[:-1], 4)
    for n in (4, 1, 7, 4, 4096):  # the per-call memo of nbytes agrees with the layout and keeps its checks
        assert gpu.nbytes(n) == cpu.layout.nbytes(n) == gpu.nbytes(np.int64(n))
    for bad_n in (-1, True, 2.5):
        with pytest.raises(ValueError, match="must be"):
            gpu.nbytes(bad_n)
    bad = payload.copy()
    rb = cpu.layout.record_bits
    pos = 2 * rb + 15  # sign bit of record 2's fp16 norm header
    bad[pos // 8] |= 1 << (pos % 8)
    with pytest.raises(ValueError, match="record 2"):
        gpu.decode(bad, 4)
    if codebook.n_codewords & (codebook.n_codewords - 1):  # an index field >= N is representable
        bad = cpu.layout.pack(np.zeros(4, np.int64), np.zeros((4, cpu.n_blocks), np.int64))
        w = cpu.layout.index_bits
        for bit in range(w):  # index of block 0 of record 1 := 2**w - 1 >= N
            p = rb + 16 + bit
            bad[p // 8] |= 1 << (p % 8)
        with pytest.raises(ValueError, match="record 1"):
            gpu.decode(bad, 4)
        with pytest.raises(ValueError, match="record 1"):
            gpu.decode_attention(np.ones((1, codebook.d), np.float32), bad, payload, 4)
        with pytest.raises(ValueError, match="CPU-only"):
            GPUFibQuantCodec(FibQuantCodec(codebook, packing="mixed-radix"))
    with pytest.raises(ValueError, match="CPU-only"):
        GPUFibQuantCodec(FibQuantCodec(codebook, encoder="clustered"))
    with pytest.raises(ValueError, match="precision"):
        GPUFibQuantCodec(cpu, precision="float16")


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of ``x`` (round to nearest even), and the values they hold (float64)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@inner
def test_two_stage_search_with_more_than_64_shells():
    """128 one-codeword shells (d=32, k=16, N=128; the lanes of a block search padded codebook rows): the CPU's bytes."""
    from fibquant_theory.codebooks.design import design_codebook

    cb = design_codebook(32, 16, 128, n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    assert cb.structure.n_shells == 128
    x = np.random.default_rng(21).standard_normal((10, 32)).astype(np.float32)
    for encoder in ("two-stage", "exhaustive"):
        cpu, gpu = _pair(cb, encoder=encoder)
        assert np.array_equal(gpu.encode(x).copy_to_host(), cpu.encode(x.astype(np.float64)).payload), encoder


@inner
def test_bfloat16_inputs():
    """bfloat16 vectors and queries (their uint16 bits): the float64 encoder writes the CPU bytes of their values."""
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.gpu._compat import cuda
    from fibquant_theory.gpu.arrays import Input
    from tests.reference import attention_naive

    cb = design_codebook(*CONFIGS[0], n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb)
    rng = np.random.default_rng(22)
    bits, values = _bf16_bits(rng.standard_normal((9, 16)) * 3)
    got = gpu.encode(Input(0, bits.shape, "bfloat16", None, cuda.to_device(bits))).copy_to_host()
    assert np.array_equal(got, cpu.encode(values).payload)
    t = 40
    kc, vc = cpu.encode(rng.standard_normal((2, t, 16))), cpu.encode(rng.standard_normal((2, t, 16)))
    qb, qv = _bf16_bits(rng.standard_normal((2, 16)))
    out = gpu.decode_attention(Input(0, qb.shape, "bfloat16", None, cuda.to_device(qb)), kc.payload, vc.payload, t,
                               dtype="float32", n_splits=2)
    want = attention_naive(qv, cpu.decode(kc), cpu.decode(vc))
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=0, atol=5e-6 * np.abs(want).max())
    with pytest.raises(ValueError, match="dtype"):
        gpu.encode(Input(0, bits.shape, "uint16", None, cuda.to_device(bits)))


@inner
def test_grouped_query_attention():
    """Two query heads per key/value head read that head's records (SDPA's enable_gqa=True)."""
    from fibquant_theory.codebooks.design import design_codebook
    from tests.reference import attention_naive

    cb = design_codebook(*CONFIGS[0], n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb)
    rng = np.random.default_rng(23)
    t = 50
    kc, vc = cpu.encode(rng.standard_normal((1, 1, t, 16))), cpu.encode(rng.standard_normal((1, 1, t, 16)))
    q = rng.standard_normal((1, 2, 16)).astype(np.float32)
    got = gpu.decode_attention(q, kc.payload, vc.payload, t, kv_heads=1, dtype="float32", n_splits=1).copy_to_host()
    kd, vd = cpu.decode(kc), cpu.decode(vc)
    want = attention_naive(q, np.repeat(kd, 2, axis=1), np.repeat(vd, 2, axis=1))
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=5e-6 * np.abs(want).max())
    assert not np.allclose(got[0, 0], got[0, 1])  # two different queries
    with pytest.raises(ValueError, match="kv_heads"):
        gpu.decode_attention(q, kc.payload, vc.payload, t, kv_heads=3)
    with pytest.raises(ValueError, match="k_payload"):  # multi-head would need two heads' records
        gpu.decode_attention(q, kc.payload, vc.payload, t)


@inner
def test_check_false_defers_the_errors():
    """check=False raises nothing; check_errors() names the first bad row/record once, then the record is clear."""
    from fibquant_theory.codebooks.design import design_codebook

    cb = design_codebook(*CONFIGS[0], n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb)
    gpu.check_errors()  # nothing recorded yet
    x = np.random.default_rng(24).standard_normal((6, 16)).astype(np.float32)
    x[4, 2] = np.nan
    gpu.encode(x, check=False)
    payload = cpu.encode(np.ones((4, 16))).payload
    bad = payload.copy()
    pos = 1 * cpu.layout.record_bits + 15  # sign bit of record 1's fp16 norm header
    bad[pos // 8] |= 1 << (pos % 8)
    gpu.decode(bad, 4, check=False)
    gpu.decode(payload, 4)  # a checked call in between neither raises nor clears the deferred record
    with pytest.raises(ValueError, match=r"encode: row 4 has NaN.*decode: record 1"):
        gpu.check_errors()
    gpu.check_errors()  # cleared
    with pytest.raises(ValueError, match="record 1"):
        gpu.decode(bad, 4)


@inner
def test_head_dim_256():
    """d = 256 (k = 8: 32 blocks a record, 32 lanes a vector): encode bytes, decode, attention."""
    from fibquant_theory.codebooks.design import design_codebook
    from tests.reference import attention_naive

    cb = design_codebook(256, 8, 16, n_train=4000, n_heldout=1000, n_restarts=1, cache=False)
    cpu, gpu = _pair(cb)
    rng = np.random.default_rng(25)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    assert np.array_equal(gpu.encode(x).copy_to_host(), cpu.encode(x.astype(np.float64)).payload)
    codes = cpu.encode(rng.standard_normal((8, 256)))
    want = cpu.decode(codes)
    for layout in ("columns", "chunks"):
        got = _with(gpu, decode_layout=layout).decode(codes.payload, 8, dtype="float32").copy_to_host()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * np.abs(want).max())
    t = 30
    kc, vc = cpu.encode(rng.standard_normal((1, t, 256))), cpu.encode(rng.standard_normal((1, t, 256)))
    q = rng.standard_normal((1, 256)).astype(np.float32)
    got = gpu.decode_attention(q, kc.payload, vc.payload, t, dtype="float32", n_splits=1).copy_to_host()
    ref = attention_naive(q, cpu.decode(kc), cpu.decode(vc))
    np.testing.assert_allclose(got, ref, rtol=0, atol=5e-6 * np.abs(ref).max())
