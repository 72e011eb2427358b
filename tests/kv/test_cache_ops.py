"""Cache operations of the codec caches that generate() and beam search use: reorder, select, repeat, crop.

Every reference here is computed without the operation under test: a cache built
directly on the reordered / selected / cropped inputs, or a fresh cache fed one
sequence token by token. Also: ``fp_layers`` ranges, the dtype of the fp window
and the validation of the cache options.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fibquant_theory.kv.cache import (  # noqa: E402
    CodecCache,
    CodecLayer,
    check_fp_layers,
    take_codes,
)

VOCAB = 64


@pytest.fixture(scope="module")
def tiny() -> tuple:
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, initializer_range=0.2,
    )
    torch.manual_seed(0)
    return cfg, transformers.LlamaForCausalLM(cfg).eval()


#: (id, cache factory): every codec, the fp window, centering, and KIVI's token groups.
MAKERS = [
    ("fibquant", lambda c: CodecCache.from_method(c, "fibquant", block=4, codewords=16)),
    ("fibquant-window-center", lambda c: CodecCache.from_method(c, "fibquant", block=4, codewords=16, window=2, center="both")),
    ("turboquant", lambda c: CodecCache.from_method(c, "turboquant", bits=3)),
    ("turboquant-prod-fp-layer", lambda c: CodecCache.from_method(c, "turboquant-prod", bits=3, fp_layers=(0,))),
    ("kivi", lambda c: CodecCache.from_method(c, "kivi", bits=4, group_size=2, window=1)),
]
MAKE = [m for _, m in MAKERS]
IDS = [n for n, _ in MAKERS]


def _codes_equal(a: object, b: object) -> bool:
    """Field-by-field identity of two codes dataclasses (arrays compared exactly, dtype included)."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        if not f.init:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def _assert_same_state(cache: CodecCache, ref: CodecCache) -> None:
    """Same stored codes (exactly, chunk by chunk), fp windows, means and lengths in every layer."""
    for layer, other in zip(cache.layers, ref.layers):
        assert layer.get_seq_length() == other.get_seq_length()
        assert torch.equal(layer.keys, other.keys) and torch.equal(layer.values, other.values)
        if not isinstance(layer, CodecLayer):
            continue
        assert layer.n_compressed == other.n_compressed
        for mine, theirs in ((layer.key_codes, other.key_codes), (layer.value_codes, other.value_codes)):
            assert len(mine) == len(theirs)
            assert all(_codes_equal(a, b) for a, b in zip(mine, theirs))
        for m, r in ((layer.key_mean, other.key_mean), (layer.value_mean, other.value_mean)):
            assert (m is None) == (r is None) and (m is None or torch.equal(m, r))


def _feed(cache: CodecCache, keys: torch.Tensor, values: torch.Tensor, chunks: tuple[int, ...]) -> list[tuple]:
    """Update every layer of ``cache`` with the token chunks ``chunks`` of ``keys``/``values``; return the last reads."""
    out, start = [], 0
    for n in chunks:
        out = [cache.update(keys[..., start : start + n, :], values[..., start : start + n, :], i) for i in range(len(cache))]
        start += n
    return out


def _states(batch: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    offset = 2.0 * torch.randn(batch, 2, 1, 8, generator=gen)
    return offset + torch.randn(batch, 2, tokens, 8, generator=gen), torch.randn(batch, 2, tokens, 8, generator=gen)


# ----------------------------------------------------------------------------- beam search (D1)
@torch.no_grad()
def _sequence_logprob(model, make, cfg, prompt: torch.Tensor, new: torch.Tensor) -> float:
    """Log-probability of ``new`` after ``prompt`` with a fresh cache of ``make``, batch 1, one token per step."""
    cache = make(cfg)
    logits = model(prompt[None], cache=cache, use_cache=True).logits[0, -1]
    total = 0.0
    for t in new:
        total += float(torch.log_softmax(logits.double(), -1)[t])
        logits = model(t.view(1, 1), cache=cache, use_cache=True).logits[0, -1]
    return total


@pytest.mark.parametrize("make", MAKE, ids=IDS)
def test_beam_search_scores_are_those_of_the_cache(tiny: tuple, make) -> None:
    """Every returned beam's score is the log-probability its tokens get from the same cache used without beams."""
    cfg, model = tiny
    for seed in (1, 2, 3):
        prompts = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(seed))
        out = model.generate(
            prompts, attention_mask=torch.ones_like(prompts), cache=make(cfg), num_beams=3, num_return_sequences=3, do_sample=False, max_new_tokens=5,
            length_penalty=0.0, eos_token_id=None, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
        )
        for row in range(6):
            new = out.sequences[row, 6:]
            ref = _sequence_logprob(model, make, cfg, prompts[row // 3], new)
            assert float(out.sequences_scores[row]) == pytest.approx(ref, abs=1e-4), (seed, row)


def test_beam_search_with_a_near_lossless_cache_matches_fp(tiny: tuple) -> None:
    cfg, model = tiny
    prompts = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(4))
    kw = {
        "attention_mask": torch.ones_like(prompts), "num_beams": 3, "num_return_sequences": 3, "do_sample": False,
        "max_new_tokens": 6, "eos_token_id": None, "pad_token_id": 0,
    }
    with torch.no_grad():
        ref = model(prompts).logits
        close = model(prompts, cache=CodecCache.from_method(cfg, "turboquant", bits=8), use_cache=True).logits
    assert (close - ref).abs().max() < 3e-2 * ref.abs().max()  # observed 1.4e-2
    fp = model.generate(prompts, **kw)
    tq = model.generate(prompts, cache=CodecCache.from_method(cfg, "turboquant", bits=8), **kw)
    assert torch.equal(fp, tq)


# ----------------------------------------------------------------------------- reorder / select / repeat (D1)
@pytest.mark.parametrize("make", MAKE, ids=IDS)
@pytest.mark.parametrize(
    "op, rows",
    [
        (lambda c: c.reorder_cache(torch.tensor([2, 0, 0])), [2, 0, 0]),
        (lambda c: c.batch_select_indices(torch.tensor([2, 0])), [2, 0]),
        (lambda c: c.batch_select_indices(torch.tensor([True, False, True])), [0, 2]),
        (lambda c: c.batch_repeat_interleave(2), [0, 0, 1, 1, 2, 2]),
    ],
    ids=["reorder", "select", "select-mask", "repeat"],
)
def test_batch_ops_equal_a_cache_built_on_those_rows(tiny: tuple, make, op, rows) -> None:
    cfg, _ = tiny
    keys, values = _states(3, 12, seed=7)
    cache = make(cfg)
    _feed(cache, keys[..., :9, :], values[..., :9, :], (5, 1, 3))
    op(cache)
    ref = make(cfg)
    _feed(ref, keys[rows, :, :9], values[rows, :, :9], (5, 1, 3))
    _assert_same_state(cache, ref)
    # and a later update works and reads the same keys and values
    got = _feed(cache, keys[rows, :, 9:], values[rows, :, 9:], (3,))
    want = _feed(ref, keys[rows, :, 9:], values[rows, :, 9:], (3,))
    for (k, v), (k_ref, v_ref) in zip(got, want):
        assert k.shape == (len(rows), 2, 12, 8)
        assert torch.equal(k, k_ref) and torch.equal(v, v_ref)


@pytest.mark.parametrize("make", MAKE, ids=IDS)
def test_take_codes_is_exact(tiny: tuple, make) -> None:
    """Selected codes are bit-identical to the codes of the selected inputs (no re-quantization)."""
    cfg, _ = tiny
    layer = next(lay for lay in make(cfg).layers if isinstance(lay, CodecLayer))
    keys, _ = _states(4, 6, seed=8)
    x = keys.double().numpy()
    for codec in (layer.key_codec, layer.value_codec):
        codes = codec.encode(x)
        picked = take_codes(codes, codec, np.array([3, 1, 1]))
        assert _codes_equal(picked, codec.encode(x[[3, 1, 1]]))
        assert tuple(picked.shape) == (3, 2, 6)
        # a prefix of the tokens (what crop keeps)
        assert _codes_equal(take_codes(codes, codec, np.arange(4), axis=-1), codec.encode(x[..., :4, :]))
    with pytest.raises(IndexError, match="index"):
        take_codes(codes, codec, np.array([4]))


# ----------------------------------------------------------------------------- crop (D1)
@pytest.mark.parametrize("make", MAKE, ids=IDS)
def test_crop_drops_tokens_from_the_end(tiny: tuple, make) -> None:
    cfg, _ = tiny
    keys, values = _states(2, 12, seed=9)
    cache = make(cfg)
    _feed(cache, keys[..., :10, :], values[..., :10, :], (6, 4))
    cache.crop(-3)
    assert cache.get_seq_length() == 7
    assert all(layer.get_seq_length() == 7 for layer in cache.layers)
    got = _feed(cache, keys[..., 7:9, :], values[..., 7:9, :], (2,))
    for k, v in got:
        assert k.shape == v.shape == (2, 2, 9, 8)
    # the 7 kept tokens read back exactly as they did before the crop
    ref = make(cfg)
    before = _feed(ref, keys[..., :10, :], values[..., :10, :], (6, 4))
    for (k, v), (k0, v0) in zip(got, before):
        assert torch.equal(k[..., :7, :], k0[..., :7, :]) and torch.equal(v[..., :7, :], v0[..., :7, :])
    cache.crop(0)
    assert cache.get_seq_length() == 9
    cache.crop(-100)
    assert cache.get_seq_length() == 0 and cache.memory_bytes() <= ref.memory_bytes()
    with pytest.raises(ValueError, match="negative"):
        cache.crop(4)


@pytest.mark.parametrize("make", MAKE[:4], ids=IDS[:4])
def test_crop_then_refeed_restores_the_cache(tiny: tuple, make) -> None:
    """With one-token chunks a crop leaves no trace: re-feeding the dropped tokens restores state and logits."""
    cfg, model = tiny
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(10))
    cache, ref = make(cfg), make(cfg)
    assert cache.is_croppable
    with torch.no_grad():
        full = model(ids, cache=ref, use_cache=True).logits
        model(ids, cache=cache, use_cache=True)
        cache.crop(-4)
        again = model(ids[:, 6:], cache=cache, use_cache=True).logits
    assert torch.allclose(again, full[:, 6:], atol=1e-5, rtol=0)
    empty = torch.zeros(2, 2, 0, 8)
    for layer, other in zip(cache.layers, ref.layers):  # the stored states read back identically
        assert layer.get_seq_length() == other.get_seq_length() == 10
        k, v = layer.update(empty, empty)
        k_ref, v_ref = other.update(empty, empty)
        assert torch.equal(k, k_ref) and torch.equal(v, v_ref)


def test_kivi_groups_are_not_croppable_without_trace(tiny: tuple) -> None:
    cfg, _ = tiny
    assert not CodecCache.from_method(cfg, "kivi", bits=4, group_size=2).is_croppable
    assert CodecCache.from_method(cfg, "kivi", bits=4, group_size=2, fp_layers=(0, 1)).is_croppable  # no codec layer left


def test_prompt_lookup_decoding_matches_greedy(tiny: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Assisted (prompt-lookup) decoding crops rejected draft tokens; it must give the greedy tokens of the same cache.

    Without a window and without ``center``: a multi-token forward pass encodes tokens that a one-token step
    would still read from the window, and ``center`` takes its mean over the first pass, draft tokens included.
    """
    cfg, model = tiny
    dropped: list[int] = []
    crop = CodecLayer.crop

    def counting_crop(self: CodecLayer, tokens_to_remove: int) -> None:
        dropped.append(-tokens_to_remove)
        crop(self, tokens_to_remove)

    monkeypatch.setattr(CodecLayer, "crop", counting_crop)
    prompt = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])
    kw = {"do_sample": False, "max_new_tokens": 8, "eos_token_id": None, "pad_token_id": 0}
    makers = (
        lambda c: CodecCache.from_method(c, "fibquant", block=4, codewords=16),
        lambda c: CodecCache.from_method(c, "turboquant-prod", bits=3),
        lambda c: CodecCache.from_method(c, "turboquant", bits=3, fp_layers=(-1,)),
    )
    for make in makers:
        dropped.clear()
        greedy = model.generate(prompt, cache=make(cfg), **kw)
        lookup = model.generate(prompt, cache=make(cfg), prompt_lookup_num_tokens=3, **kw)
        assert sum(dropped) > 0  # draft tokens were rejected and cropped
        assert torch.equal(greedy, lookup)


# ----------------------------------------------------------------------------- fp_layers range (D5)
def test_fp_layers_out_of_range_raise(tiny: tuple) -> None:
    cfg, _ = tiny  # 2 layers
    for bad in ((2,), (99,), (-3,), (0, 5)):
        with pytest.raises(ValueError, match=r"fp_layers.*-2 <= i < 2"):
            CodecCache.from_method(cfg, "turboquant", bits=2, fp_layers=bad)
    with pytest.raises(TypeError, match="fp_layers"):
        CodecCache.from_method(cfg, "turboquant", bits=2, fp_layers=(True,))
    assert CodecCache.from_method(cfg, "turboquant", bits=2, fp_layers=(-2, 1)).settings["fp_layers"] == [0, 1]
    assert check_fp_layers((-1, 1, 0), 2) == [0, 1]


def test_kv_eval_cli_rejects_out_of_range_fp_layers(tiny: tuple, tmp_path, monkeypatch, capsys) -> None:
    import fibquant_theory.kv.evaluate as kv_eval_module
    from fibquant_theory.cli.main import main

    _, model = tiny

    def fake_tokenizer(text: str, return_tensors: str = "pt") -> types.SimpleNamespace:
        return types.SimpleNamespace(input_ids=torch.tensor([[ord(c) % VOCAB for c in text]]))

    monkeypatch.setattr(kv_eval_module, "load_model", lambda path=None: (model, fake_tokenizer))
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog")
    args = ["kv-eval", "--method", "turboquant", "--bits", "2", "--text", str(text), "--ctx", "16", "--stride", "8"]
    assert main([*args, "--fp-layers", "99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fp-layers" in err[0] and "-2 <= i < 2" in err[0], err
    assert main([*args, "--fp-layers", "-1", "--json"]) == 0


# ----------------------------------------------------------------------------- the fp window's dtype (D9)
def test_window_keeps_large_bfloat16_values(tiny: tuple) -> None:
    cfg, _ = tiny
    keys, values = _states(1, 4, seed=11)
    keys, values = keys.to(torch.bfloat16), values.to(torch.bfloat16)
    keys[0, 0, 1, 3] = 3e5
    values[0, 1, 2, 0] = -3e5
    cache = CodecCache.from_method(cfg, "turboquant", bits=2, window=8)
    k, v = cache.update(keys, values, 0)
    assert k.dtype == v.dtype == torch.bfloat16
    assert torch.isfinite(k).all() and torch.isfinite(v).all()
    assert torch.equal(k, keys) and torch.equal(v, values)
    assert cache.layers[0].memory_bytes() == 2 * 2 * keys.numel()  # 16-bit window, as accounted
    # float32 states are held at fp16 precision, as accounted; what fp16 cannot hold is refused, not made inf
    k32, _ = CodecCache.from_method(cfg, "turboquant", bits=2, window=8).update(keys.float() / 1e4, values.float() / 1e4, 0)
    assert torch.equal(k32, (keys.float() / 1e4).half().float())
    with pytest.raises(ValueError, match="window.*float16"):
        CodecCache.from_method(cfg, "turboquant", bits=2, window=8).update(keys.float(), values.float(), 0)


# ----------------------------------------------------------------------------- option validation (minor)
def test_window_must_be_an_integer(tiny: tuple) -> None:
    cfg, _ = tiny
    for bad in (1.5, True, "2", 2.0):
        with pytest.raises(TypeError, match="window"):
            CodecCache.from_method(cfg, "turboquant", bits=2, window=bad)
        with pytest.raises(TypeError, match="window"):
            CodecCache(cfg, "turboquant", {"bits": 2}, window=bad)
    with pytest.raises(TypeError, match="chunk"):
        CodecCache(cfg, "turboquant", {"bits": 2}, chunk=1.5)
    with pytest.raises(ValueError, match="center"):
        CodecCache.from_method(cfg, "turboquant", bits=2, center="keys", fp_layers=(0, 1))  # checked even with no codec layer


def test_unknown_options_raise(tiny: tuple) -> None:
    cfg, _ = tiny
    with pytest.raises(TypeError, match="meta"):
        CodecCache.from_method(cfg, "kivi", bits=2, meta="float32")
    with pytest.raises(TypeError, match="mode"):
        CodecCache.from_method(cfg, "kivi", bits=2, mode="per-token")  # keys are per-channel, values per-token, by design
    with pytest.raises(TypeError, match="blok"):
        CodecCache.from_method(cfg, "fibquant", block=4, codewords=16, blok=2)
    with pytest.raises(TypeError, match="bits"):
        CodecCache.from_method(cfg, "fibquant", block=4, bits=2)  # a KV cache takes codewords=N (as value_codewords), not bits
    with pytest.raises(TypeError, match="rotation"):
        CodecCache(cfg, "turboquant", {"bits": 2, "rotation": "hadamard"})  # TurboQuant's rotation is dense Haar
    with pytest.raises(TypeError, match="bitz"):
        CodecCache(cfg, "kivi", {"bits": 2}, "kivi", {"bitz": 2})
    # the documented options still work
    assert CodecCache.from_method(cfg, "kivi", bits=2, group_size=4, meta_dtype="float32").layers[0].key_codec.meta_dtype == "float32"
    CodecCache.from_method(cfg, "fibquant", block=4, codewords=16, encoder="clustered", n_clusters=4, top=2)


def test_kv_eval_factory_rejects_unknown_options(tiny: tuple) -> None:
    from fibquant_theory.kv.evaluate import make_cache_factory

    cfg, _ = tiny
    with pytest.raises(TypeError, match="widow"):
        make_cache_factory("turboquant", cfg, bits=2, widow=4)
    with pytest.raises(ValueError, match="block"):
        make_cache_factory("turboquant", cfg, bits=2, block=4)
    with pytest.raises(ValueError, match="fp_layers"):
        make_cache_factory("kivi", cfg, bits=2, fp_layers=(5,))  # at once, not when the first window runs
    cache = make_cache_factory("kivi", cfg, bits=2, seed=0, block=None)()
    assert isinstance(cache, CodecCache) and cache.settings["method"] == "kivi"


# ----------------------------------------------------------------------------- one cache class for every method (issue #14)
def test_a_newly_registered_method_is_a_kv_method(tiny: tuple) -> None:
    """One register(...) line: the generic cache, make_cache_factory and the kv-pareto sweep take the method."""
    from fibquant_theory.codecs import registry
    from fibquant_theory.codecs.turboquant import make_turboquant
    from fibquant_theory.kv.evaluate import make_cache_factory
    from fibquant_theory.kv.pareto import sweep_configs

    cfg, _ = tiny
    registry.register(registry.MethodSpec(
        "toy", make_turboquant, "TurboQuant-mse under another name", integer_rate=True, rate_options=("bits",),
        required=(("bits",),), flags=(registry.BITS,), kv_sweep=({"bits": 3},), example={"bits": 3},
    ))
    try:
        cache = make_cache_factory("toy", cfg, bits=3, value_bits=4, window=2)()
        assert cache.settings["method"] == "toy" and cache.settings["value"]["bits"] == 4 and cache.settings["window"] == 2
        keys, values = _states(1, 5, seed=12)
        ref = CodecCache(cfg, "turboquant", {"bits": 3}, "turboquant", {"bits": 4}, window=2)
        for got, want in zip(_feed(cache, keys, values, (5,)), _feed(ref, keys, values, (5,))):
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert ("toy", {"bits": 3}) in sweep_configs() and ("toy", {"bits": 3}) in sweep_configs("small")
        with pytest.raises(ValueError, match="toy needs bits"):
            make_cache_factory("toy", cfg, seed=0)
    finally:
        del registry.SPECS["toy"], registry.METHODS["toy"]
    with pytest.raises(ValueError, match="unknown method 'toy'"):
        make_cache_factory("toy", cfg, bits=3)


def test_fp_is_not_a_codec_cache(tiny: tuple) -> None:
    from fibquant_theory.kv.evaluate import make_cache_factory

    cfg, _ = tiny
    assert make_cache_factory("fp", cfg, window=4)() is None
    with pytest.raises(ValueError, match="compresses nothing"):
        CodecCache.from_method(cfg, "fp")
