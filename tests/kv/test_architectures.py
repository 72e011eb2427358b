"""Architecture-generic caches on tiny random-weight Llama, Gemma3 and Qwen2 models.

Sliding-window layers keep what transformers' own sliding layers keep (and are
counted that way), GQA with one KV head, head_dim 256, QK-norm, k_proj bias and
16-bit models work, and the fidelity probe leaves the model's forward unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer  # noqa: E402

from fibquant_theory.codecs.registry import make_codec  # noqa: E402
from fibquant_theory.kv.cache import CodecCache, layer_windows  # noqa: E402
from fibquant_theory.kv.evaluate import Protocol, kv_eval, model_cache_bytes, perplexity  # noqa: E402
from fibquant_theory.kv.fidelity import attention_fidelity  # noqa: E402
from fibquant_theory.kv.layers import CodecLayer  # noqa: E402

VOCAB = 97
WINDOW = 8


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(cfg)


def _gemma3():
    cfg = transformers.Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=256, sliding_window=WINDOW,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    return transformers.Gemma3ForCausalLM(cfg)


def _qwen2():
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    return transformers.Qwen2ForCausalLM(cfg)


BUILDERS = {"llama": _llama, "gemma3": _gemma3, "qwen2": _qwen2}


@pytest.fixture(scope="module", params=list(BUILDERS))
def arch(request: pytest.FixtureRequest) -> tuple[str, object]:
    torch.manual_seed(0)
    return request.param, BUILDERS[request.param]().eval()


def _ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def test_the_tiny_models_have_the_features_they_stand_for() -> None:
    torch.manual_seed(0)
    gemma, qwen = _gemma3(), _qwen2()
    assert layer_windows(gemma.config) == [WINDOW, WINDOW, None]
    assert gemma.model.layers[0].self_attn.k_norm is not None  # QK-norm
    assert qwen.model.layers[0].self_attn.k_proj.bias is not None  # k_proj bias
    assert layer_windows(_llama().config) == [None, None]


def test_chunked_perplexity_of_the_own_cache_equals_one_shot(arch) -> None:
    _, model = arch
    ids = _ids(40)
    with torch.no_grad():
        one_shot = math.exp(float(model(ids, labels=ids).loss))
    chunked, ratio = perplexity(model, ids, lambda: None, ctx=40, stride=40, chunk=7)
    assert chunked == pytest.approx(one_shot, rel=1e-5)
    assert math.isnan(ratio)


def test_a_near_lossless_codec_cache_tracks_the_models_own_cache(arch) -> None:
    name, model = arch
    ids = _ids(30)
    cache = CodecCache.from_method(model.config, "turboquant", bits=8)
    own = DynamicCache(config=model.config)
    with torch.no_grad():
        for s in range(0, 30, 6):
            a = model(ids[:, s : s + 6], cache=cache, use_cache=True).logits
            b = model(ids[:, s : s + 6], cache=own, use_cache=True).logits
            assert torch.allclose(a, b, atol=0.05), (name, s, float((a - b).abs().max()))  # observed < 0.02
    assert cache.fp16_bytes() == model_cache_bytes(model.config, 30)


def test_sliding_layers_keep_what_transformers_keeps() -> None:
    codec = make_codec("fibquant", 16, block=4, codewords=16)
    sliding = CodecLayer(codec, codec, sliding_window=WINDOW)
    full = CodecLayer(codec, codec)
    ref = DynamicSlidingWindowLayer(sliding_window=WINDOW)
    gen = torch.Generator().manual_seed(3)
    seen = 0
    for q in (3, 1, 5, 1, 1, 9, 2):
        k, v = torch.randn(1, 2, q, 16, generator=gen), torch.randn(1, 2, q, 16, generator=gen)
        assert sliding.get_mask_sizes(q) == ref.get_mask_sizes(q)
        ks, vs = sliding.update(k, v)
        kf, vf = full.update(k, v)
        kr, _ = ref.update(k, v)
        seen += q
        assert ks.shape == kr.shape
        n = ks.shape[-2]
        # the same codes as the full layer for the same positions: nothing is encoded twice
        assert torch.equal(ks, kf[..., seen - n :, :]) and torch.equal(vs, vf[..., seen - n :, :])
        assert sliding.n_compressed == min(seen, WINDOW - 1)
        assert sliding.fp16_bytes() == 2 * 2 * 2 * 16 * min(seen, WINDOW - 1)
    with pytest.raises(RuntimeError, match="cannot be cropped"):
        sliding.crop(-1)


def test_kivi_groups_partly_outside_the_window_are_kept_whole_but_not_read() -> None:
    key = make_codec("kivi", 16, bits=4, mode="per-channel", group_size=4)
    value = make_codec("kivi", 16, bits=4, mode="per-token")
    layer = CodecLayer(key, value, chunk=4, sliding_window=6)
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        k, v = torch.randn(1, 1, 4, 16, generator=gen), torch.randn(1, 1, 4, 16, generator=gen)
        ks, _ = layer.update(k, v)
    assert ks.shape[-2] == 5 + 4  # W - 1 kept tokens + the 4 new ones
    assert layer.n_hidden == 3 and layer.n_compressed == 8  # one group of 4 partly outside: kept, counted, unread


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_and_beam_search_run_on_every_architecture(arch, num_beams: int) -> None:
    name, model = arch
    cache = CodecCache.from_method(model.config, "fibquant", block=4, codewords=16, center="key")
    out = model.generate(_ids(12), max_new_tokens=10, min_new_tokens=10, do_sample=False, num_beams=num_beams, cache=cache,
                         pad_token_id=0)
    assert out.shape == (1, 22), name
    assert cache.get_seq_length() == 21


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_models(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = _gemma3().to(dtype).eval()
    cache = CodecCache.from_method(model.config, "turboquant", bits=4, window=4)
    with torch.no_grad():
        for s in range(0, 24, 8):
            logits = model(_ids(24)[:, s : s + 8], cache=cache, use_cache=True).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    assert cache.layers[0].keys.dtype == dtype  # the fp16 window keeps 16-bit states as given
    assert 1 < cache.compression_ratio() < 4


def test_probe_leaves_the_forward_unchanged_and_a_fine_codec_is_faithful(arch) -> None:
    name, model = arch
    ids = _ids(24)
    with torch.no_grad():
        before = model(ids).logits
    fine = attention_fidelity(model, ids, lambda: CodecCache.from_method(model.config, "turboquant", bits=8), chunk=8)
    coarse = attention_fidelity(model, ids, lambda: CodecCache.from_method(model.config, "turboquant", bits=2), chunk=8)
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after) and model.config._attn_implementation == "sdpa"
    assert fine["attn_cosine"] > 0.9999 and fine["score_cosine"] > 0.9999 and fine["attn_kl"] < 1e-4  # gemma3: 1.7e-5
    assert coarse["attn_cosine"] < fine["attn_cosine"] and coarse["attn_kl"] > fine["attn_kl"]
    assert 0.05 < coarse["key_mse"] < 0.2, name  # 2-bit Lloyd-Max on Beta: ~0.117
    assert len(fine["attn_cosine_layers"]) == model.config.num_hidden_layers
    assert attention_fidelity(model, ids, lambda: None)["attn_kl"] == 0.0


def test_norm_correction_restores_the_stored_norms() -> None:
    codec = make_codec("fibquant", 32, block=4, codewords=16)
    layer = CodecLayer(codec, codec, norm_correction=True)
    x = torch.randn(1, 2, 10, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    k, _ = layer.update(x, x)
    np.testing.assert_allclose(k.norm(dim=-1).numpy(), x.norm(dim=-1).numpy(), rtol=1e-3)  # fp16 headers
    plain, _ = CodecLayer(codec, codec).update(x, x)
    assert (plain.norm(dim=-1) < x.norm(dim=-1)).float().mean() > 0.9  # Lloyd centroids shrink
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="stores no norm"):
        CodecCache.from_method(_llama().config, "kivi", bits=4, norm_correction=True)


def test_kv_eval_reports_every_metric_with_its_spread_over_seeds() -> None:
    torch.manual_seed(0)
    model = _gemma3().eval()
    texts = {"a": _ids(40, 6), "b": _ids(40, 7)}
    protocol = Protocol(ctx=20, stride=20, chunk=5, seeds=(0, 1))
    row = kv_eval("fibquant", model, texts, protocol=protocol, block=4, codewords=16)
    assert row["seeds"] == 2 and row["delta_ppl_pct_std"] > 0
    assert {"ppl:a", "ppl:b", "ppl_fp:a", "score_cosine", "attn_kl_std", "key_mse"} <= set(row)
    # 64 blocks of 4 bits + a 16-bit norm per vector, against the model's own cache (7 tokens on sliding layers)
    assert row["compression"] == pytest.approx(16 * 256 / (64 * 4 + 16), rel=1e-12)
    kivi = kv_eval("kivi", model, texts, protocol=protocol, bits=4)
    assert kivi["seeds"] == 1 and kivi["delta_ppl_pct_std"] == 0.0
