"""GPU kernels on a real CUDA GPU with PyTorch tensors (``gpu`` marker: skipped without a GPU).

Every kernel against the CPU reference codec: the float64 encoder writes the
CPU's bytes, decode is within one fp16 rounding of the float64 CPU decode,
decode-attention matches softmax attention over the CPU-decoded vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

D, K, N = 128, 8, 256


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def codebook():
    from fibquant_theory.codebooks.design import design_codebook

    return design_codebook(D, K, N, n_train=20_000, n_heldout=5_000, cache=False)


def _codecs(codebook, rotation, encoder="exhaustive", precision="float32", **options):
    """The CPU codec and its GPU codec with ``GPUOptions(**options)``."""
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec, GPUOptions

    cpu = FibQuantCodec(codebook, seed=5, rotation=rotation, encoder=encoder, packing="fixed")
    return cpu, GPUFibQuantCodec(cpu, precision=precision, options=GPUOptions(**options))


def _with(gpu, **changes):
    """``gpu``'s codec with its options changed (``dataclasses.replace``)."""
    from dataclasses import replace

    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    return GPUFibQuantCodec(gpu.codec, precision=gpu.precision, options=replace(gpu.options, **changes))


@pytest.mark.parametrize("rotation", ["hadamard", "haar"])
@pytest.mark.parametrize("encoder", ["exhaustive", "two-stage"])
def test_encode_float64_is_the_cpu_payload(torch, codebook, rotation, encoder):
    cpu, gpu = _codecs(codebook, rotation, encoder, "float64")
    x = torch.randn(3001, D, device="cuda", dtype=torch.float16) * 3
    got = gpu.encode(x).cpu().numpy()
    want = cpu.encode(x.cpu().double().numpy()).payload
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_encode_float32_is_nearly_always_the_cpu_index(torch, codebook):
    cpu, gpu = _codecs(codebook, "hadamard")
    x = torch.randn(4000, D, device="cuda", dtype=torch.float32)
    codes = gpu.to_codes(gpu.encode(x), (4000,))
    idx_gpu, nrm_gpu = cpu.unpack(codes)
    idx_cpu, nrm_cpu = cpu.encode_indices(x.cpu().double().numpy())
    assert np.array_equal(nrm_gpu, nrm_cpu)
    agree = np.mean(idx_gpu == idx_cpu)
    assert agree > 0.999  # observed 1.0 (64000 blocks)
    # where they differ, the GPU's codeword is within float32 rounding of the nearest
    z = cpu.rotation.forward(x.cpu().double().numpy() / np.linalg.norm(x.cpu().double().numpy(), axis=1, keepdims=True))
    y = z.reshape(-1, K)
    d_gpu = ((y - cpu.points[idx_gpu.ravel()]) ** 2).sum(1)
    d_cpu = ((y - cpu.points[idx_cpu.ravel()]) ** 2).sum(1)
    assert np.all(d_gpu <= d_cpu + 1e-5)


@pytest.mark.parametrize("rotation", ["hadamard", "haar", "hadamard-columns"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_decode_matches_cpu_within_rounding(torch, codebook, rotation, dtype):
    cpu, gpu = _codecs(codebook, rotation.split("-")[0], decode_layout="columns" if rotation.endswith("columns") else "chunks")
    x = np.random.default_rng(1).standard_normal((2050, D))
    codes = cpu.encode(x)
    want = cpu.decode(codes)
    payload = torch.from_numpy(codes.payload).cuda()
    got = gpu.decode(payload, 2050, dtype=dtype)
    assert got.dtype == getattr(torch, dtype) and got.shape == (2050, D) and got.is_cuda
    got = got.float().cpu().numpy().astype(np.float64)
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-20}[dtype]
    assert np.all(np.abs(got - want) <= ulp * np.abs(want) + 1e-6 * np.abs(want).max())


@pytest.mark.parametrize("per_lane", [8, 32])
@pytest.mark.parametrize("chunk", [1, 8])
def test_chunked_decode_layouts_give_the_same_bits(torch, codebook, per_lane, chunk):
    """Lanes per vector and the interleaving of coordinates change the work layout, not one output bit."""
    cpu, gpu = _codecs(codebook, "hadamard", decode_layout="chunks")
    payload = torch.from_numpy(cpu.encode(np.random.default_rng(2).standard_normal((3001, D))).payload).cuda()
    want = gpu.decode(payload, 3001)
    gpu = _with(gpu, decode_per_lane=per_lane, decode_chunk=chunk)
    assert torch.equal(gpu.decode(payload, 3001), want)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_column_decode_layouts_give_the_same_bits(torch, codebook, dtype):
    """Columns per lane, prefetch and the byte loader (a stream 2 bytes into a buffer) write the same bits;
    the chunked kernel agrees to rounding."""
    cpu, gpu = _codecs(codebook, "hadamard", decode_layout="columns")
    n = 3000  # 54 000 bytes: read as 32-bit words
    payload = torch.from_numpy(cpu.encode(np.random.default_rng(2).standard_normal((n, D))).payload).cuda()
    want = gpu.decode(payload, n, dtype=dtype)
    shifted = torch.zeros(payload.numel() + 2, dtype=torch.uint8, device="cuda")
    shifted[2:] = payload
    columns = (2, 4) if dtype == "float16" else (1, 2, 4)
    for c in columns:
        for prefetch, copies in ((True, 0), (False, 0), (True, 2)):
            gpu = _with(gpu, decode_columns=c, decode_prefetch=prefetch, decode_replicas=copies)
            assert torch.equal(gpu.decode(payload, n, dtype=dtype), want), (c, prefetch, copies)
    assert torch.equal(gpu.decode(shifted[2:], n, dtype=dtype), want)
    gpu = _with(gpu, decode_layout="chunks")
    other = gpu.decode(payload, n, dtype=dtype).double()
    assert torch.allclose(other, want.double(), rtol=2.0**-10, atol=1e-6 * float(other.abs().max()))


def test_decode_roundtrip_of_gpu_codes(torch, codebook):
    cpu, gpu = _codecs(codebook, "hadamard")
    x = torch.randn(1000, D, device="cuda", dtype=torch.float16)
    payload = gpu.encode(x)
    got = gpu.decode(payload, 1000, dtype="float32").cpu().numpy()
    want = cpu.decode(gpu.to_codes(payload, (1000,)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rotation", ["hadamard", "haar"])
def test_decode_attention_matches_cpu_reference(torch, codebook, rotation):
    cpu, gpu = _codecs(codebook, rotation)
    rng = np.random.default_rng(2)
    b, h, t = 2, 3, 1500
    kx, vx = rng.standard_normal((b, h, t, D)), rng.standard_normal((b, h, t, D))
    q = rng.standard_normal((b, h, D)).astype(np.float32)
    kc, vc = cpu.encode(kx), cpu.encode(vx)
    kh, vh = cpu.decode(kc), cpu.decode(vc)
    s = np.einsum("bhd,bhtd->bht", q.astype(np.float64), kh) / np.sqrt(D)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bht,bhtd->bhd", p / p.sum(-1, keepdims=True), vh)
    kt, vt = torch.from_numpy(kc.payload).cuda(), torch.from_numpy(vc.payload).cuda()
    # streams that start 2 bytes into a buffer: not word-aligned, read with the halfword loader
    kshift = torch.zeros(kt.numel() + 2, dtype=torch.uint8, device="cuda")
    vshift = torch.zeros_like(kshift)
    kshift[2:] = kt
    vshift[2:] = vt
    # (splits, payloads); several chunks per split (rescaled running maximum) are checked by the simulator
    # tests and by the benchmark at 128k tokens (16 384 per split)
    cases = [(None, kt, vt), (1, kt, vt), (7, kt, vt)]
    if rotation == "hadamard":  # (each case below compiles another kernel)
        cases.append((2, kshift[2:], vshift[2:]))
    for n_splits, kp, vp in cases:
        got = gpu.decode_attention(torch.from_numpy(q).cuda(), kp, vp, t, n_splits=n_splits, dtype="float32")
        assert got.shape == (b, h, D)
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=5e-5 * np.abs(want).max())
    if rotation != "hadamard":
        return
    # fp16 queries are read as they are
    q16 = q.astype(np.float16)
    s = np.einsum("bhd,bhtd->bht", q16.astype(np.float64), kh) / np.sqrt(D)
    p = np.exp(s - s.max(-1, keepdims=True))
    want16 = np.einsum("bht,bhtd->bhd", p / p.sum(-1, keepdims=True), vh)
    got = gpu.decode_attention(torch.from_numpy(q16).cuda(), kt, vt, t, dtype="float32")
    np.testing.assert_allclose(got.cpu().numpy(), want16, rtol=0, atol=5e-5 * np.abs(want16).max())


def test_gpu_errors(torch, codebook):
    cpu, gpu = _codecs(codebook, "hadamard")
    x = torch.randn(10, D, device="cuda")
    x[7, 3] = float("nan")
    with pytest.raises(ValueError, match="first bad row 7"):
        gpu.encode(x)
    payload = gpu.encode(torch.randn(10, D, device="cuda"))
    with pytest.raises(ValueError, match="truncated"):
        gpu.decode(payload[:-1], 10)
    bad = payload.clone()
    bad[18 * 4 + 1] = 0xFF  # norm header of record 4 -> negative / NaN
    with pytest.raises(ValueError, match="record 4"):
        gpu.decode(bad, 10)
    q = torch.randn(1, D, device="cuda", dtype=torch.float16)
    with pytest.raises(ValueError, match="record 4"):  # a bad value header, read by pass 2
        gpu.decode_attention(q, payload, bad, 10, dtype="float32")
    with pytest.raises(ValueError, match="record 4"):  # a bad key header, read by pass 1
        gpu.decode_attention(q, bad, payload, 10, dtype="float32")
    q[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gpu.decode_attention(q, payload, payload, 10, dtype="float32")


def test_direct_launch_writes_the_numba_launch_bits(torch, codebook):
    """The driver launch with cached parameter blocks and Numba's own launch run the same kernels: same bits."""
    _, fast = _codecs(codebook, "hadamard")
    slow = _with(fast, direct_launch=False)
    assert fast.direct_launch and not slow.direct_launch
    x = torch.randn(2001, D, device="cuda", dtype=torch.float16)
    p = fast.encode(x)
    assert torch.equal(p, slow.encode(x))
    for dtype in ("float16", "bfloat16", "float32"):
        assert torch.equal(fast.decode(p, 2001, dtype=dtype), slow.decode(p, 2001, dtype=dtype)), dtype
    kp, vp = fast.encode(torch.randn(2 * 4 * 700, D, device="cuda")), fast.encode(torch.randn(2 * 4 * 700, D, device="cuda"))
    q = torch.randn(2, 4, D, device="cuda", dtype=torch.float16)
    for _ in range(2):  # the second call reuses the cached parameter block with new data pointers
        assert torch.equal(fast.decode_attention(q, kp, vp, 700), slow.decode_attention(q, kp, vp, 700))
        q = torch.randn(2, 4, D, device="cuda", dtype=torch.float16)
    # a different context length with the same launch configuration
    assert torch.equal(fast.decode_attention(q, kp[: fast.nbytes(8 * 600)], vp[: fast.nbytes(8 * 600)], 600),
                       slow.decode_attention(q, kp[: fast.nbytes(8 * 600)], vp[: fast.nbytes(8 * 600)], 600))


@pytest.mark.parametrize("in_dtype", ["float16", "bfloat16"])
def test_half_inputs_and_grouped_query_attention_against_sdpa(torch, codebook, in_dtype):
    """fp16/bf16 keys, values and queries, 8 query heads on 2 key/value heads: SDPA(enable_gqa) on the decoded K/V."""
    import torch.nn.functional as F

    cpu, gpu = _codecs(codebook, "hadamard", "exhaustive", "float64")
    tdt = getattr(torch, in_dtype)
    b, hq, hkv, t = 2, 8, 2, 1200
    kx = torch.randn(b, hkv, t, D, device="cuda", dtype=tdt)
    vx = torch.randn(b, hkv, t, D, device="cuda", dtype=tdt)
    kp, vp = gpu.encode(kx.reshape(-1, D)), gpu.encode(vx.reshape(-1, D))
    assert np.array_equal(kp.cpu().numpy(), cpu.encode(kx.reshape(-1, D).double().cpu().numpy()).payload)
    q = torch.randn(b, hq, D, device="cuda", dtype=tdt)
    got = gpu.decode_attention(q, kp, vp, t, kv_heads=hkv)
    assert got.dtype == tdt and got.shape == (b, hq, D)
    kd = gpu.decode(kp, b * hkv * t, dtype="float32").reshape(b, hkv, t, D)
    vd = gpu.decode(vp, b * hkv * t, dtype="float32").reshape(b, hkv, t, D)
    ref = F.scaled_dot_product_attention(q.float()[:, :, None], kd, vd, enable_gqa=True)[:, :, 0]
    tol = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[in_dtype]
    assert torch.allclose(got.float(), ref, rtol=tol, atol=tol * float(ref.abs().max()))


def test_calls_run_on_torch_current_stream_and_in_a_cuda_graph(torch, codebook):
    """check=False calls queue on torch's current stream, capture into a CUDA graph, and replay with new data."""
    _, gpu = _codecs(codebook, "hadamard")
    t = 3000
    kp = gpu.encode(torch.randn(4 * t, D, device="cuda", dtype=torch.float16))
    vp = gpu.encode(torch.randn(4 * t, D, device="cuda", dtype=torch.float16))
    q = torch.randn(1, 4, D, device="cuda", dtype=torch.float16)
    want = gpu.decode_attention(q, kp, vp, t)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            gpu.decode_attention(q, kp, vp, t, check=False)
            gpu.decode(kp, 4 * t, check=False)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = gpu.decode_attention(q, kp, vp, t, check=False)
        dec = gpu.decode(kp, 4 * t, check=False)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, want) and torch.equal(dec, gpu.decode(kp, 4 * t))
    q.copy_(torch.randn(1, 4, D, device="cuda", dtype=torch.float16))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, gpu.decode_attention(q, kp, vp, t))
    gpu.check_errors()


def test_check_false_records_errors_for_later(torch, codebook):
    _, gpu = _codecs(codebook, "hadamard")
    payload = gpu.encode(torch.randn(10, D, device="cuda"))
    bad = payload.clone()
    bad[18 * 6 + 1] = 0xFF  # norm header of record 6
    gpu.decode(bad, 10, check=False)
    gpu.decode_attention(torch.randn(1, D, device="cuda"), payload, bad, 10, check=False)
    with pytest.raises(ValueError, match=r"decode: record 6.*attention: record 6"):
        gpu.check_errors()
    gpu.check_errors()


@pytest.mark.parametrize("encoder", ["exhaustive", "two-stage"])
def test_sub_one_bit_codebook_encodes_the_cpu_bytes(torch, encoder):
    """d=64, k=32, N=128 (128 one-codeword shells): the float64 encoder in both searches, fp32 close."""
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    cb = design_codebook(64, 32, 128, n_train=20_000, n_heldout=5_000, cache=False)
    cpu = FibQuantCodec(cb, seed=3, rotation="hadamard", encoder=encoder, packing="fixed")
    x = torch.randn(3001, 64, device="cuda", dtype=torch.float16)
    want = cpu.encode(x.double().cpu().numpy()).payload
    assert np.array_equal(GPUFibQuantCodec(cpu, precision="float64").encode(x).cpu().numpy(), want)
    got = GPUFibQuantCodec(cpu).to_codes(GPUFibQuantCodec(cpu).encode(x), (3001,))
    assert np.mean(cpu.unpack(got)[0] == cpu.unpack(cpu.encode(x.double().cpu().numpy()))[0]) > 0.999


@pytest.mark.parametrize("d", [64, 256])
def test_other_head_dims(torch, d):
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    cb = design_codebook(d, 8, 256, n_train=20_000, n_heldout=5_000, cache=False)
    cpu = FibQuantCodec(cb, seed=4, rotation="hadamard", packing="fixed")
    gpu = GPUFibQuantCodec(cpu, precision="float64")
    x = torch.randn(1000, d, device="cuda", dtype=torch.bfloat16)
    p = gpu.encode(x)
    assert np.array_equal(p.cpu().numpy(), cpu.encode(x.double().cpu().numpy()).payload)
    want = cpu.decode(gpu.to_codes(p, (1000,)))
    for layout in ("columns", "chunks"):
        got = _with(gpu, decode_layout=layout).decode(p, 1000, dtype="float32").cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    q = torch.randn(1, 2, d, device="cuda", dtype=torch.bfloat16)
    out = gpu.decode_attention(q, p, p, 500, dtype="float32").cpu().numpy()
    kh = want.reshape(1, 2, 500, d)
    s = np.einsum("bhd,bhtd->bht", q.float().cpu().numpy().astype(np.float64), kh) / np.sqrt(d)
    w = np.exp(s - s.max(-1, keepdims=True))
    ref = np.einsum("bht,bhtd->bhd", w / w.sum(-1, keepdims=True), kh)
    np.testing.assert_allclose(out, ref, rtol=0, atol=5e-5 * np.abs(ref).max())
