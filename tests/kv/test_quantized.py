"""transformers' quantized caches as peers: they run, their memory is counted honestly, and their two quirks hold."""

from __future__ import annotations

import importlib.util
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fibquant_theory.kv.quantized import PeerQuantizedCache, quantized_cache, tensor_bytes  # noqa: E402

#: whether each backend's package is installed (quanto: optimum-quanto, hqq: hqq; fp8 needs torch only)
PACKAGES = {"quanto": "optimum.quanto", "hqq": "hqq"}
HAVE = {backend: importlib.util.find_spec(module) is not None for backend, module in PACKAGES.items()}


def _needs(backend: str) -> None:
    if backend in HAVE and not HAVE[backend]:
        pytest.skip(f"backend {backend!r}: its package {PACKAGES[backend]} is not installed")


#: (backend, options) with groups that divide every token count of the tiny model (heads * head_dim = 32)
CASES = [
    ("quanto", {"nbits": 2, "q_group_size": 16, "residual_length": 16}),
    ("quanto", {"nbits": 4, "q_group_size": 16, "residual_length": 16}),
    ("hqq", {"nbits": 2, "q_group_size": 16, "residual_length": 16}),
    ("hqq", {"nbits": 4, "q_group_size": 16, "residual_length": 16}),
    ("fp8", {}),
]
IDS = [f"{b}-{o.get('nbits', 8)}" for b, o in CASES]
LAYERS, HEADS, HEAD_DIM = 2, 2, 16


@pytest.fixture(scope="module")
def tiny() -> tuple:
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=HEADS,
    )
    torch.manual_seed(0)
    return cfg, transformers.LlamaForCausalLM(cfg).eval()


def _ids(n: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (batch, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _chunked(model, ids: torch.Tensor, cache, chunk: int = 16) -> torch.Tensor:
    """Logits of ``ids`` fed ``chunk`` tokens at a time through one cache."""
    return torch.cat([model(ids[:, i : i + chunk], cache=cache, use_cache=True).logits
                      for i in range(0, ids.shape[1], chunk)], dim=1)


def _states(tokens: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(1, HEADS, tokens, HEAD_DIM, generator=g) for _ in range(2))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- they run, and the memory is below fp16
@pytest.mark.parametrize(("backend", "options"), CASES, ids=IDS)
def test_chunked_forward_generate_and_accounting(tiny: tuple, backend: str, options: dict) -> None:
    _needs(backend)
    cfg, model = tiny
    cache = quantized_cache(cfg, backend, **options)
    assert isinstance(cache, PeerQuantizedCache) and isinstance(cache, transformers.cache_utils.QuantizedCache)
    logits = _chunked(model, _ids(48), cache)
    assert logits.shape == (1, 48, 97) and torch.isfinite(logits).all()
    assert cache.get_seq_length() == 48
    fp16 = 2 * 2 * 1 * HEADS * HEAD_DIM * 48 * LAYERS  # K and V, 2 bytes, batch, heads, head_dim, tokens, layers
    assert cache.fp16_bytes() == fp16
    parts = cache.memory_breakdown()
    assert parts["residual"] == 0  # 48 tokens in chunks of 16: the residual was flushed by the last chunk
    assert 0 < cache.memory_bytes() == parts["quantized"] < fp16
    assert cache.compression_ratio() == fp16 / cache.memory_bytes() > 1

    gen = quantized_cache(cfg, backend, **options)
    out = model.generate(_ids(16, seed=2, batch=2), max_new_tokens=20, do_sample=False, cache=gen, pad_token_id=0)
    assert out.shape == (2, 36) and gen.get_seq_length() == 35  # the last generated token is never fed back
    assert gen.fp16_bytes() == 2 * 2 * 2 * HEADS * HEAD_DIM * 35 * LAYERS
    assert 0 < gen.memory_bytes() < gen.fp16_bytes()


def test_settings_and_defaults(tiny: tuple) -> None:
    cfg, _ = tiny
    _needs("quanto")
    _needs("hqq")
    for backend in ("quanto", "hqq"):
        assert quantized_cache(cfg, backend).settings == {
            "method": backend, "backend": backend, "nbits": 4, "axis_key": 0, "axis_value": 0,
            "q_group_size": 64, "residual_length": 128, "head_dim": HEAD_DIM,
        }
    assert quantized_cache(cfg, "hqq", nbits=2, residual_length=8).settings["residual_length"] == 8
    assert quantized_cache(cfg, "fp8").settings == {
        "method": "hf-fp8", "backend": "fp8", "nbits": 8, "scale": "per-tensor", "head_dim": HEAD_DIM,
    }
    empty = quantized_cache(cfg, "fp8")
    assert empty.memory_bytes() == empty.fp16_bytes() == 0 and math.isnan(empty.compression_ratio())


def test_bad_settings_are_refused(tiny: tuple) -> None:
    cfg, _ = tiny
    with pytest.raises(ValueError, match="backend must be one of"):
        quantized_cache(cfg, "int4")
    with pytest.raises(ValueError, match=r"fp8 backend.*\['nbits', 'residual_length'\]"):
        quantized_cache(cfg, "fp8", nbits=4, residual_length=16)
    _needs("quanto")
    with pytest.raises(ValueError, match="nbits"):
        quantized_cache(cfg, "quanto", nbits=3)


def test_sliding_window_models_get_full_peer_layers_and_their_masks_still_slide() -> None:
    cfg = transformers.Gemma3TextConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
    )
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(cfg).eval()
    with pytest.raises(ValueError, match="full attention"):
        transformers.QuantizedCache("fp8", cfg)  # transformers itself refuses
    cache = quantized_cache(cfg, "fp8")
    assert cfg.layer_types == ["sliding_attention", "full_attention"]  # the model's config is left alone
    ids = torch.randint(0, 97, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        chunked = torch.cat([model(ids[:, s : s + 8], cache=cache, use_cache=True).logits for s in (0, 8, 16)], 1)
        ref = model(ids).logits
    assert torch.allclose(chunked, ref, atol=0.1)  # fp8 states, sliding mask: close to the one-shot forward
    assert cache.layers[0].cumulative_length == 24 and cache.fp16_bytes() == 2 * 2 * 2 * 32 * 24


def test_quanto_groups_must_divide_the_tensor(tiny: tuple) -> None:
    """The docstring's axis notes: quanto's axis=-1 needs q_group_size | batch*heads*tokens (64 does not divide 160)."""
    _needs("quanto")
    cfg, _ = tiny
    cache = quantized_cache(cfg, "quanto", axis_key=-1, axis_value=-1)
    with pytest.raises(ValueError, match="divisor of \\(160\\)"):
        cache.update(torch.randn(2, HEADS, 40, HEAD_DIM), torch.randn(2, HEADS, 40, HEAD_DIM), 0)  # batch 2
    ok = quantized_cache(cfg, "quanto", axis_key=-1, axis_value=-1, q_group_size=16)
    k, v = _states(32, 3)
    ok.update(k, v, 0)
    assert ok.layers[0]._quantized_keys.dequantize().shape == k.shape  # it runs on CPU when the group divides


# ----------------------------------------------------------------------------- memory = a hand count
@pytest.mark.parametrize("nbits", [2, 4])
@pytest.mark.parametrize("backend", ["quanto", "hqq"])
def test_memory_is_the_hand_count(tiny: tuple, backend: str, nbits: int) -> None:
    _needs(backend)
    cfg, _ = tiny
    cache = quantized_cache(cfg, backend, nbits=nbits, q_group_size=16, residual_length=16)
    for layer in range(LAYERS):
        cache.update(*_states(32, layer), layer)
    # per tensor: 2*32*16 = 1024 values at nbits bits, and 1024/16 = 64 groups of a float32 scale and zero point
    per_tensor = 1024 * nbits // 8 + 64 * (4 + 4)
    assert cache.memory_breakdown() == {"quantized": LAYERS * 2 * per_tensor, "residual": 0}
    for layer in range(LAYERS):
        cache.update(*_states(4, 10 + layer), layer)  # 4 < residual_length tokens: kept in float32
    residual = LAYERS * 2 * (2 * 4 * 16) * 4
    assert cache.memory_breakdown() == {"quantized": LAYERS * 2 * per_tensor, "residual": residual}
    assert cache.fp16_bytes() == 2 * 2 * HEADS * HEAD_DIM * 36 * LAYERS


def test_fp8_memory_is_the_hand_count(tiny: tuple) -> None:
    cfg, _ = tiny
    cache = quantized_cache(cfg, "fp8")
    for tokens in (32, 4, 1):
        for layer in range(LAYERS):
            cache.update(*_states(tokens, layer), layer)
    # one byte per value, one float32 scale per tensor, nothing kept in full precision
    assert cache.memory_breakdown() == {"quantized": LAYERS * 2 * (2 * 37 * 16 + 4), "residual": 0}


def test_tensor_bytes_walks_objects_and_counts_storages_once() -> None:
    t = torch.zeros(10)
    assert tensor_bytes(t) == 40 and tensor_bytes((t, t[:5], {"a": [t]})) == 40  # views share one storage
    assert tensor_bytes([t, torch.zeros(3, dtype=torch.float16), 7, torch.float32, torch.Size([2])]) == 46
    assert tensor_bytes(torch.tensor([])) == 0 and tensor_bytes(None) == 0
    seen: set = set()
    assert tensor_bytes(t, seen) == 40 and tensor_bytes(t, seen) == 0  # a shared `seen` spans calls
    if HAVE["quanto"]:
        from optimum.quanto import MaxOptimizer, qint4, quantize_weight

        x = torch.randn(64, 16)
        scale, shift = MaxOptimizer()(x, qint4, 0, 16)
        q = quantize_weight(x, qint4, 0, scale, shift, 16)
        inner = q._data._data.numel() + 4 * (q._scale.numel() + q._shift.numel())
        assert tensor_bytes(q) == inner == 64 * 16 // 2 + 64 * 8  # packed 4-bit values, float32 scale and shift


# ----------------------------------------------------------------------------- the two behaviours of the docstring
@pytest.mark.parametrize(("backend", "options"), CASES, ids=IDS)
def test_the_first_update_is_returned_unquantised(tiny: tuple, backend: str, options: dict) -> None:
    _needs(backend)
    cfg, model = tiny
    cache = quantized_cache(cfg, backend, **options)
    k, v = _states(16, 0)
    k_out, v_out = cache.update(k, v, 0)
    assert torch.equal(k_out, k) and torch.equal(v_out, v)  # exactly as given, although they were quantised
    k2, v2 = _states(16, 1)
    k_all, _ = cache.update(k2, v2, 0)
    assert not torch.equal(k_all[..., :16, :], k)  # the second update reads the first chunk dequantised
    # so a one-shot prefill equals the fp cache exactly, and chunked feeding does not
    ids = _ids(48, seed=3)
    with torch.no_grad():
        fp = model(ids, use_cache=True).logits
        one_shot = quantized_cache(cfg, backend, **options)
        once = model(ids, cache=one_shot, use_cache=True).logits
    assert torch.equal(once, fp) and one_shot.get_seq_length() == 48 and one_shot.memory_bytes() > 0
    chunked = _chunked(model, ids, quantized_cache(cfg, backend, **options))
    assert torch.equal(chunked[:, :16], fp[:, :16]) and not torch.equal(chunked[:, 16:], fp[:, 16:])


def _spy(layer, calls: list) -> None:
    """Record the states every ``_quantize`` call of ``layer`` receives."""
    original = layer._quantize

    def record(tensor, *args, **kwargs):
        calls.append(tensor.clone())
        return original(tensor, *args, **kwargs)

    layer._quantize = record


@pytest.mark.parametrize("backend", ["quanto", "hqq"])
def test_a_full_residual_requantises_the_whole_dequantised_cache(tiny: tuple, backend: str) -> None:
    _needs(backend)
    cfg, _ = tiny
    cache = quantized_cache(cfg, backend, nbits=2, q_group_size=16, residual_length=32)
    layer = cache.layers[0]
    calls: list = []
    _spy(layer, calls)
    chunks = [_states(16, s) for s in range(4)]
    cache.update(*chunks[0], 0)  # first update: quantised (and returned as given)
    first = layer._dequantize(layer._quantized_keys).clone()
    cache.update(*chunks[1], 0)  # 16 in the residual, below 32: nothing quantised
    cache.update(*chunks[2], 0)  # 16 + 16 >= 32: a flush
    cache.update(*chunks[3], 0)  # residual empty again: 16 tokens wait
    keys = calls[::2]  # the calls alternate keys and values
    assert [c.shape[-2] for c in calls] == [16, 16, 48, 48]
    flushed = keys[1]
    # the flush quantises the first chunk again, from its dequantised values (not the original states)
    assert torch.equal(flushed[..., :16, :], first) and not torch.equal(first, chunks[0][0])
    assert torch.equal(flushed[..., 16:, :], torch.cat([chunks[1][0], chunks[2][0]], dim=-2))
    assert layer.keys.shape[-2] == 16 and layer.cumulative_length == 64


def test_fp8_appends_with_a_frozen_scale_and_saturates(tiny: tuple) -> None:
    cfg, _ = tiny
    cache = quantized_cache(cfg, "fp8")
    layer = cache.layers[0]
    calls: list = []
    _spy(layer, calls)
    k, v = _states(16, 0)
    cache.update(k, v, 0)
    scale = layer._quantized_keys[1].clone()
    assert torch.equal(scale, k.abs().amax() / 448)
    big_k, big_v = _states(8, 1, scale=100.0)
    k_all, _ = cache.update(big_k, big_v, 0)
    assert [c.shape[-2] for c in calls] == [16, 16, 8, 8]  # only the new tokens are quantised: no re-quantisation
    assert torch.equal(layer._quantized_keys[1], scale)  # the scale of the first update is kept
    limit = float(448 * scale)
    assert float(big_k.abs().max()) > 10 * limit  # beyond the range of the frozen scale: later states saturate
    assert float(k_all[..., 16:, :].abs().max()) == pytest.approx(limit, rel=1e-6)
