"""The GPU cache (:mod:`fibquant_theory.kv.gpu_cache`) under the Numba CUDA simulator, against the CPU cache.

Like ``test_simulator.py``, :func:`test_gpu_cache_under_the_simulator` re-runs
this file in a fresh interpreter with ``NUMBA_ENABLE_CUDASIM=1``; the tests
below run only there. Tiny random-weight models (the simulator runs every CUDA
thread as a Python thread): a Llama with a FibQuant layer (centred keys and
values, grouped-query heads) and an fp layer, and a Mistral whose layers slide
over a window of 4 tokens (keys and values at different rates). The GPU cache
stores the CPU cache's bytes, its logits follow the CPU cache's over a few
decoding steps, and greedy decoding picks the same tokens.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

INNER = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and os.environ.get("FIBQUANT_GPU_SIM_INNER") == "1"
inner = pytest.mark.skipif(not INNER, reason="runs inside the simulator subprocess of test_gpu_cache_under_the_simulator")

#: codec options of the tiny models (d = 16: records of 16 + 4 * 4 = 32 bits; values 16 + 8 * 4 = 48 bits)
OPTIONS = {"block": 4, "codewords": 16, "rotation": "hadamard", "n_train": 4000, "n_heldout": 1000, "cache": False}
PROMPT, STEPS = 6, 3
#: the tiny Llama (and, with ``sliding_window=4``, the tiny Mistral)
SHAPE = {"vocab_size": 61, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 64}


@pytest.mark.skipif(INNER, reason="this is the driver")
def test_gpu_cache_under_the_simulator() -> None:
    from tests.helpers import run_simulator_shards

    passed, skipped, out = run_simulator_shards(__file__)
    assert passed >= 7 and skipped == 1, out  # only the driver skips


# ------------------------------------------------------------------------------------------- inner
def _greedy(model, cache, prompt):
    """Logits of the prompt and of ``STEPS`` greedy steps, and the tokens picked."""
    import torch

    logits, tokens = [], []
    with torch.no_grad():
        out = model(prompt, past_key_values=cache).logits[:, -1]
        for s in range(STEPS + 1):
            logits.append(out)
            tok = out.argmax(-1, keepdim=True)
            tokens.append(tok)
            if s < STEPS:
                pos = torch.full((prompt.shape[0], 1), PROMPT + s)
                out = model(tok, past_key_values=cache, position_ids=pos).logits[:, -1]
    return torch.stack(logits), torch.cat(tokens, dim=1)


def _run(cfg, center="none", fp_layers=(), **values):
    """(CPU cache, GPU cache, CPU logits and tokens, GPU logits and tokens) of one tiny model."""
    import torch
    import transformers

    from fibquant_theory.kv.cache import CodecCache
    from fibquant_theory.kv.gpu_cache import GPUCodecCache, use_gpu_attention

    torch.manual_seed(0)
    model = use_gpu_attention(transformers.AutoModelForCausalLM.from_config(cfg).eval())
    prompt = torch.randint(0, cfg.vocab_size, (2, PROMPT), generator=torch.Generator().manual_seed(1))
    cpu = CodecCache.from_method(cfg, "fibquant", center=center, fp_layers=fp_layers, **OPTIONS, **values)
    gpu = GPUCodecCache.from_method(cfg, 16, center=center, fp_layers=fp_layers, **OPTIONS, **values)
    return cpu, gpu, _greedy(model, cpu, prompt), _greedy(model, gpu, prompt)


@pytest.fixture(scope="module")
def llama():
    import transformers

    return _run(transformers.LlamaConfig(**SHAPE), center="both", fp_layers=(1,))


@pytest.fixture(scope="module")
def mistral():
    import transformers

    return _run(transformers.MistralConfig(**SHAPE, sliding_window=4), value_block=2)


def _records(codes, n_bytes):
    """CPU codes ``(b, h, t)`` of byte-aligned records as ``(b, h, t, n_bytes)`` uint8."""
    return np.asarray(codes.payload).reshape(*codes.shape, n_bytes)


@inner
def test_the_gpu_cache_stores_the_cpu_caches_bytes(llama):
    cpu, gpu, _, _ = llama
    layer, ref = gpu.layers[0], cpu.layers[0]
    n = PROMPT + STEPS
    assert layer.cumulative_length == ref.cumulative_length == n and int(layer.pos[0]) == n
    for buf, chunks, rb in ((layer.key_buffer, ref.key_codes, layer.record_bytes[0]),
                            (layer.value_buffer, ref.value_codes, layer.record_bytes[1])):
        want = np.concatenate([_records(c, rb) for c in chunks], axis=2)
        got = buf.view(2, 1, layer.slots, rb)[:, :, :n].numpy()
        assert want.shape == got.shape and np.array_equal(got, want)
        assert not buf.view(2, 1, layer.slots, rb)[:, :, n:].any()  # unwritten slots stay zero records
    assert np.array_equal(layer.key_mean.numpy(), ref.key_mean.numpy())
    assert np.array_equal(layer.value_mean.numpy(), ref.value_mean.numpy())


@inner
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_same_states_give_the_cpu_caches_bytes(dtype):
    """Prefill and single-token appends of the same states, centred keys and values: identical records and means."""
    import torch
    import transformers

    from fibquant_theory.kv.cache import CodecCache
    from fibquant_theory.kv.gpu_cache import GPUCodecCache

    cfg = transformers.LlamaConfig(**SHAPE)
    cpu = CodecCache.from_method(cfg, "fibquant", center="both", **OPTIONS)
    gpu = GPUCodecCache.from_method(cfg, 8, center="both", **OPTIONS)
    gen = torch.Generator().manual_seed(5)
    states = [(3 * torch.randn(2, 1, t, 16, generator=gen) + 1).to(getattr(torch, dtype)) for t in (5, 1, 1)]
    for x in states:
        cpu.update(x, -x, 0)
        gpu.layers[0].update(x, -x)  # the layer itself: no model here, so no attention implementation to check
    layer, ref = gpu.layers[0], cpu.layers[0]
    rb = layer.record_bytes[0]
    for buf, chunks in ((layer.key_buffer, ref.key_codes), (layer.value_buffer, ref.value_codes)):
        want = np.concatenate([_records(c, rb) for c in chunks], axis=2)
        assert np.array_equal(buf.view(2, 1, 8, rb)[:, :, :7].numpy(), want)
    assert torch.equal(layer.key_mean, ref.key_mean) and torch.equal(layer.value_mean, ref.value_mean)


@inner
def test_the_fp16_window_follows_the_cpu_window():
    """``window > 0``: the CPU layer's records, window states and means; attention over codes and window merged exactly.

    Layer 0 (W = 3): a prefill of 5 encodes 2 tokens and sets the means, a step encodes one more.
    Layer 1 (W = 3): a prefill of 2 encodes nothing (a step attends over the window alone), the
    step at position 3 moves the first token out of the window and sets the means on the device,
    and a later prefill of 3 tokens encodes what leaves the window then.
    """
    import torch
    import transformers

    from fibquant_theory.kv.cache import CodecCache
    from fibquant_theory.kv.gpu_cache import GPUCodecCache

    cfg = transformers.LlamaConfig(**SHAPE)
    w = 3
    cpu = CodecCache.from_method(cfg, "fibquant", center="both", window=w, **OPTIONS)
    gpu = GPUCodecCache.from_method(cfg, 16, center="both", window=w, **OPTIONS)
    gen = torch.Generator().manual_seed(7)
    plan = {0: ((5, False), (1, True)), 1: ((2, False), (1, True), (1, False), (3, False), (1, True))}
    for i, steps in plan.items():
        layer, ref = gpu.layers[i], cpu.layers[i]
        for t, attend in steps:
            x = (2 * torch.randn(2, 1, t, 16, generator=gen) + 0.5).half()
            keys, values = cpu.update(x, -x, i)
            got = layer.update(x, -x)
            if t > 1:  # a prefill returns the states to attend over: decoded codes (float32 vs float64 decoders), window
                for a, b in zip(got, (keys, values)):
                    assert a.shape == b.shape and float((a.float() - b.float()).abs().max()) <= 2e-3
            if attend:
                q = torch.randn(2, 2, 1, 16, generator=gen).half()
                want = torch.nn.functional.scaled_dot_product_attention(
                    q.double(), keys.double().repeat_interleave(2, dim=1), values.double().repeat_interleave(2, dim=1))
                out = layer.attend(q, None).transpose(1, 2)
                assert float((out.double() - want).abs().max()) <= 2.0**-10 * float(want.abs().max())
        n, rb = sum(t for t, _ in steps), layer.record_bytes[0]
        for buf, chunks in ((layer.key_buffer, ref.key_codes), (layer.value_buffer, ref.value_codes)):
            want = np.concatenate([_records(c, rb) for c in chunks], axis=2)
            assert np.array_equal(buf.view(2, 1, layer.code_slots, rb)[:, :, : n - w].numpy(), want)
        for ring, win in ((layer.ring_keys, ref.keys), (layer.ring_values, ref.values)):
            assert all(torch.equal(ring[:, :, p % w], win[:, :, j]) for j, p in enumerate(range(n - w, n)))
        assert torch.equal(layer.key_mean, ref.key_mean) and torch.equal(layer.value_mean, ref.value_mean)
        assert int(layer.n_codes[0]) == n - w
    assert gpu.settings["window"] == w


def _close(a, b):
    """Within float16 rounding of the logits' scale (the two caches round differently, float32 kernels vs float64)."""
    scale = float(a.abs().max())
    assert float((a - b).abs().max()) <= 2.0 ** -11 * scale, (float((a - b).abs().max()), scale)


@inner
def test_logits_and_greedy_tokens_follow_the_cpu_cache(llama):
    _, _, (cpu_logits, cpu_tokens), (gpu_logits, gpu_tokens) = llama
    _close(cpu_logits, gpu_logits)
    assert np.array_equal(cpu_tokens.numpy(), gpu_tokens.numpy())


@inner
def test_sliding_layers_and_separate_value_rates_follow_the_cpu_cache(mistral):
    cpu, gpu, (cpu_logits, cpu_tokens), (gpu_logits, gpu_tokens) = mistral
    assert gpu.settings["sliding_layers"] == [0, 1] and gpu.key_codec is not gpu.value_codec
    assert [layer.slots for layer in gpu.layers] == [4, 4]
    _close(cpu_logits, gpu_logits)
    assert np.array_equal(cpu_tokens.numpy(), gpu_tokens.numpy())
    # the ring holds the last 4 tokens: the CPU layer's last 3 and the new one
    layer, ref = gpu.layers[0], cpu.layers[0]
    rb = layer.record_bytes[0]
    kept = np.concatenate([_records(c, rb) for c in ref.key_codes], axis=2)
    n = PROMPT + STEPS
    ring = layer.key_buffer.view(2, 1, 4, rb).numpy()
    for j, p in enumerate(range(n - kept.shape[2], n)):
        assert np.array_equal(ring[:, :, p % 4], kept[:, :, j])


@inner
def test_memory_accounting(llama):
    _, gpu, _, _ = llama
    layer = gpu.layers[0]
    rk, rv = layer.record_bytes
    assert (rk, rv) == (4, 4)
    codes = 2 * 1 * 16 * (rk + rv)
    means = 2 * 2 * (2 * 1 * 1 * 16)  # two float16 means of (batch, kv_heads, 1, d)
    fp = 2 * 2 * (2 * 1 * 16 * 16)
    assert gpu.memory_bytes() == codes + means + fp
    assert gpu.fp16_bytes() == 2 * fp


@inner
def test_refusals(llama):
    import torch
    import transformers

    from fibquant_theory.kv.gpu_cache import GPUCodecCache

    _, gpu, _, _ = llama
    cfg = gpu.config
    with pytest.raises(ValueError, match="one rate"):
        GPUCodecCache(cfg, 16, OPTIONS, {**OPTIONS, "codewords": 256}, window=2)
    with pytest.raises(ValueError, match="sliding-window layers"):
        GPUCodecCache(transformers.MistralConfig(**SHAPE, sliding_window=4), 16, OPTIONS, window=2)
    with pytest.raises(ValueError, match="norm_correction"):
        GPUCodecCache(cfg, 16, OPTIONS, norm_correction=True)
    with pytest.raises(ValueError, match="FibQuant codes only"):
        GPUCodecCache.from_method(cfg, 16, "turboquant", bits=3)
    with pytest.raises(ValueError, match="whole bytes"):
        GPUCodecCache(cfg, 16, {**OPTIONS, "codewords": 8})
    with pytest.raises(ValueError, match="max_cache_len"):
        GPUCodecCache(cfg, 0, OPTIONS)
    layer = gpu.layers[0]
    with pytest.raises(ValueError, match="do not fit"):
        layer.update(torch.zeros(2, 1, 8, 16), torch.zeros(2, 1, 8, 16))
    with pytest.raises(ValueError, match="built for batch"):
        layer.update(torch.zeros(1, 1, 1, 16), torch.zeros(1, 1, 1, 16))
    with pytest.raises(NotImplementedError):
        gpu.crop(-1)
    other = GPUCodecCache(transformers.LlamaConfig(**SHAPE), 16, OPTIONS)  # a model that does not use the GPU attention
    assert other.memory_bytes() == 0
    other.update(torch.zeros(1, 1, 2, 16), torch.zeros(1, 1, 2, 16), 0)
    with pytest.raises(RuntimeError, match="attention implementation"):
        other.update(torch.zeros(1, 1, 1, 16), torch.zeros(1, 1, 1, 16), 0)
