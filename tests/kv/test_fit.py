"""kv-fit statistics: capture on tiny random Llama / Gemma3 / Qwen2 models, known answers on synthetic data."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.cache_utils import DynamicCache  # noqa: E402

from fibquant_theory.kv import fit  # noqa: E402
from fibquant_theory.kv.fit import (  # noqa: E402
    FIT_COLUMNS,
    STAT_COLUMNS,
    capture_kv,
    fit_vectors,
    ks_statistic,
    kv_fit,
    plot_fit,
    summarize_fit,
    write_fit,
)
from fibquant_theory.theory.source import sample_unit_vectors  # noqa: E402

#: asymptotic 5% critical value of the one-sample KS distance is 1.358/sqrt(n); the tests allow 1.5 times it
_KS_BOUND = 1.5 * 1.36


def _llama():
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def _gemma3():
    cfg = transformers.Gemma3TextConfig(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=256, sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return transformers.Gemma3ForCausalLM(cfg).eval()


def _qwen2():
    cfg = transformers.Qwen2Config(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # the init zeroes biases: give them values so that they show in the cache
        for layer in model.model.layers:
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="module")
def models() -> dict:
    return {"llama": _llama(), "gemma3": _gemma3(), "qwen2": _qwen2()}


def _ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- capture
@pytest.mark.parametrize("name", ["llama", "gemma3", "qwen2"])
def test_capture_keeps_every_token_and_matches_the_model_cache(models, name):
    model = models[name]
    cfg = model.config
    n = 20  # > the Gemma3 sliding window of 8
    ids = _ids(n)
    kv = capture_kv(model, ids)
    assert len(kv) == cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for keys, values in kv:
        for t in (keys, values):
            assert isinstance(t, np.ndarray) and t.dtype == np.float64
            assert t.shape == (1, cfg.num_key_value_heads, n, head_dim)
    reference = DynamicCache(config=cfg)  # the model's own cache (sliding layers keep only a window)
    with torch.no_grad():
        model(ids, cache=reference, use_cache=True)
    kinds = []
    for (keys, values), layer in zip(kv, reference.layers):
        m = layer.keys.shape[-2]
        kinds.append(m < n)
        np.testing.assert_array_equal(keys[..., n - m :, :], layer.keys.double().numpy())
        np.testing.assert_array_equal(values[..., n - m :, :], layer.values.double().numpy())
    # the Gemma3 config mixes sliding and full layers: its own cache drops tokens on the sliding ones
    assert kinds == ([True, False, True] if name == "gemma3" else [False] * cfg.num_hidden_layers)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_capture_in_chunks_equals_one_pass(models, name):
    """Chunks through the full cache give the same keys: the sliding mask still applies beyond the window."""
    ids = _ids(23, seed=1)
    whole = capture_kv(models[name], ids)
    parts = capture_kv(models[name], ids, chunk=5)
    for (k1, v1), (k2, v2) in zip(whole, parts):
        np.testing.assert_allclose(k2, k1, atol=2e-5)
        np.testing.assert_allclose(v2, v1, atol=2e-5)


def test_capture_values_of_the_first_layer_include_the_bias(models):
    """Layer-0 values are v_proj(input_layernorm(embed(ids))), bias included, with no RoPE."""
    model = models["qwen2"]
    ids = _ids(12)
    _, values = capture_kv(model, ids)[0]
    layer = model.model.layers[0]
    with torch.no_grad():
        h = layer.input_layernorm(model.model.embed_tokens(ids))
        v = layer.self_attn.v_proj(h).view(1, 12, model.config.num_key_value_heads, -1).transpose(1, 2)
    np.testing.assert_allclose(values, v.double().numpy(), rtol=1e-6, atol=1e-6)
    assert layer.self_attn.v_proj.bias.detach().abs().max() > 0.1


def test_capture_rejects_a_model_that_ignores_the_cache():
    class Ignores(torch.nn.Module):
        def forward(self, ids, cache=None, use_cache=True):
            return None

    with pytest.raises(RuntimeError, match="wrote nothing"):
        capture_kv(Ignores(), _ids(4))


@pytest.mark.parametrize(
    "ids, match",
    [
        (torch.zeros((2, 5), dtype=torch.long), "shape"),
        (torch.zeros((1, 1), dtype=torch.long), "shape"),
        (torch.zeros((5,), dtype=torch.long), "shape"),
        (torch.zeros((1, 5)), "integer"),
    ],
)
def test_bad_ids_raise(models, ids, match):
    with pytest.raises(ValueError, match=match):
        kv_fit(models["llama"], ids)
    with pytest.raises(ValueError, match=match):
        capture_kv(models["llama"], ids)


# ----------------------------------------------------------------------------- statistics, known answers
def _gaussian(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_ks_statistic_is_scipys():
    rng = np.random.default_rng(3)
    law = stats.beta(4, 28)
    samples = rng.beta(4, 30, (3, 400))
    got = ks_statistic(samples, law.cdf)
    assert got.shape == (3,)
    for row, value in zip(samples, got):
        assert value == pytest.approx(stats.kstest(row, law.cdf).statistic, abs=1e-14)


def test_uniform_directions_fit_like_the_reference():
    """Gaussian vectors of random lengths have uniform directions: every KS is at the finite-sample scale."""
    heads, n, d, k = 2, 2000, 64, 8
    x = _gaussian((heads, n, d)) * np.random.default_rng(2).uniform(0.1, 5.0, (heads, n, 1))
    row = fit_vectors(x, block=k, seed=0)
    per_position = _KS_BOUND / math.sqrt(heads * n)  # each position has heads * n samples
    for col in ("ks_block_max_raw", "ks_block_max_centred", "ks_block_max_uniform"):
        assert row[col] < per_position, col
    # pooled over the d/k positions: the energies of one vector sum to 1 (negatively dependent), so
    # the i.i.d. bound for heads * n * d/k samples still holds in practice
    for col in ("ks_pooled_raw", "ks_pooled_centred", "ks_pooled_uniform"):
        assert row[col] < _KS_BOUND / math.sqrt(heads * n * d // k), col
    assert len(row["ks_block_raw"]) == d // k and max(row["ks_block_raw"]) == row["ks_block_max_raw"]
    assert row["mean_energy_fraction"] < 0.01 and row["outlier_channel_ratio"] < 1.2


def test_low_rank_directions_are_detected():
    """Directions uniform in an 8-dim subspace of R^64 (effective rank 8) are far from the d=64 law.

    The rotation spreads the subspace, but each block sees a fixed 8-dim projection of
    it, so the block energies at one position are not Beta(4, 28): the per-position KS
    is several times the uniform reference even though the mean k/d is right.
    """
    x = np.zeros((1, 2000, 64))
    x[..., :8] = _gaussian((1, 2000, 8))
    row = fit_vectors(x, block=8, seed=0)
    assert row["ks_block_max_raw"] > 4 * row["ks_block_max_uniform"]
    assert row["ks_block_max_centred"] > 4 * row["ks_block_max_uniform"]
    assert row["ks_pooled_raw"] > row["ks_pooled_uniform"]


def test_common_offset_dominates_raw_but_not_centred():
    heads, n, d = 2, 2000, 64
    offset = _gaussian((d,), seed=5)
    offset *= 40.0 / np.linalg.norm(offset)  # |offset|^2 = 1600 against E|g|^2 = 64
    x = _gaussian((heads, n, d)) + offset
    row = fit_vectors(x, block=8, seed=0)
    assert row["mean_energy_fraction"] == pytest.approx(1600 / 1664, abs=0.02)
    assert row["mean_energy_fraction_max"] >= row["mean_energy_fraction"]
    assert row["ks_block_max_raw"] > 0.3 and row["ks_pooled_raw"] > 0.05
    assert row["ks_block_max_centred"] < _KS_BOUND / math.sqrt(heads * n)


def test_energy_fraction_exact_cases():
    v = _gaussian((1, 1, 16))
    const = np.repeat(v, 10, axis=1)
    assert fit_vectors(const, block=4)["mean_energy_fraction"] == pytest.approx(1.0, abs=1e-12)
    pm = const * np.array([1.0, -1.0] * 5)[None, :, None]  # +v, -v, ...: mean exactly zero
    assert fit_vectors(pm, block=4)["mean_energy_fraction"] == pytest.approx(0.0, abs=1e-12)
    two = np.concatenate([const, pm], axis=0)  # one head of each: mean 0.5, max 1
    row = fit_vectors(two, block=4)
    assert row["mean_energy_fraction"] == pytest.approx(0.5) and row["mean_energy_fraction_max"] == pytest.approx(1.0)


def test_outlier_channel_ratio():
    """Channel RMS over n Gaussian tokens has relative s.d. about 1/sqrt(2n) = 0.011 for n = 4000: 5% is > 4 s.d."""
    x = _gaussian((2, 4000, 64))
    assert fit_vectors(x)["outlier_channel_ratio"] < 1.1
    x[1, :, 5] *= 100.0
    assert fit_vectors(x)["outlier_channel_ratio"] == pytest.approx(100.0, rel=0.05)


def test_rotation_free_statistics_do_not_depend_on_the_seed():
    x = _gaussian((2, 300, 32))
    a, b = fit_vectors(x, block=4, seed=0), fit_vectors(x, block=4, seed=7)
    for col in ("mean_energy_fraction", "mean_energy_fraction_max", "outlier_channel_ratio"):
        assert a[col] == b[col]
    assert a["ks_block_uniform"] != b["ks_block_uniform"] and a["ks_block_raw"] != b["ks_block_raw"]


def test_fit_vectors_is_deterministic():
    x = _gaussian((2, 300, 32))
    assert fit_vectors(x, block=4, seed=3) == fit_vectors(x, block=4, seed=3)
    a = fit_vectors(x, block=4, seed=3, uniform_seed=[3, 0, 0])
    b = fit_vectors(x, block=4, seed=3, uniform_seed=[3, 0, 1])
    assert a["ks_block_raw"] == b["ks_block_raw"] and a["ks_block_uniform"] != b["ks_block_uniform"]


def test_uniform_reference_is_not_the_rotation_stream():
    """The rotation is drawn from default_rng(seed); unit vectors from that same stream are far from uniform after it.

    ``default_rng`` pads short entropy with zeros (``[0, 0, 0]`` is ``0``), so a uniform
    sample seeded ``[seed, layer, role]`` would, at layer 0 of the keys, be those vectors.
    """
    d = 64
    trap = sample_unit_vectors(d, d, np.random.default_rng(0))[None]
    row = fit_vectors(trap, block=8, seed=0)
    bound = _KS_BOUND / math.sqrt(d * d // 8)
    assert row["ks_pooled_raw"] > 3 * bound  # what a shared stream would do to the reference
    for uniform_seed in (None, 0, [0, 0, 0]):
        assert fit_vectors(trap, block=8, seed=0, uniform_seed=uniform_seed)["ks_pooled_uniform"] < bound


def test_zero_vectors_are_left_out_of_the_ks():
    x = _gaussian((1, 200, 16))
    x[0, :10] = 0.0
    row = fit_vectors(x, block=4)
    assert row == fit_vectors(x, block=4) and all(0 < v < 1 for v in row["ks_block_raw"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block": 3}, "divide"),
        ({"block": 16}, "divide"),
        ({"block": 0}, ">= 1"),
        ({"block": 2.5}, "integer"),
        ({"seed": -1}, ">= 0"),
    ],
)
def test_fit_vectors_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_vectors(_gaussian((1, 10, 16)), **kwargs)


def test_fit_vectors_bad_data():
    x = _gaussian((2, 10, 16))
    x[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit_vectors(x, block=4)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        fit_vectors(_gaussian((2, 1, 16)), block=4)
    with pytest.raises(ValueError, match="shape"):
        fit_vectors(np.ones(16), block=4)
    with pytest.raises(ValueError, match="dimension 8"):
        fit_vectors(_gaussian((1, 10, 16)), block=4, rotation=fit.DenseRotation(8, 0))


# ----------------------------------------------------------------------------- kv_fit on a model
@pytest.fixture(scope="module")
def llama_rows(models) -> list[dict]:
    return kv_fit(models["llama"], _ids(64), block=4, seed=0)


def test_kv_fit_rows(llama_rows):
    assert [(r["layer"], r["role"]) for r in llama_rows] == [(i, role) for i in range(3) for role in ("key", "value")]
    for r in llama_rows:
        assert list(r) == FIT_COLUMNS
        assert (r["heads"], r["head_dim"], r["tokens"], r["block"], r["seed"]) == (2, 16, 64, 4, 0)
        assert len(r["ks_block_raw"]) == len(r["ks_block_uniform"]) == 4
        for col in STAT_COLUMNS:
            assert math.isfinite(r[col]), col
        for col in [c for c in STAT_COLUMNS if c.startswith("ks_")] + ["mean_energy_fraction"]:
            assert 0.0 <= r[col] <= 1.0, col


def test_kv_fit_is_deterministic(models, llama_rows):
    assert kv_fit(models["llama"], _ids(64), block=4, seed=0) == llama_rows
    other = kv_fit(models["llama"], _ids(64), block=4, seed=1)
    assert all(a["mean_energy_fraction"] == b["mean_energy_fraction"] for a, b in zip(llama_rows, other))
    assert all(a["ks_block_uniform"] != b["ks_block_uniform"] for a, b in zip(llama_rows, other))
    # every layer and role gets its own uniform sample, seeded [seed, layer, role index]
    assert len({tuple(r["ks_block_uniform"]) for r in llama_rows}) == len(llama_rows)
    kv = capture_kv(models["llama"], _ids(64))
    again = fit_vectors(kv[1][1], block=4, seed=0, uniform_seed=[0, 1, 1])
    assert again["ks_block_uniform"] == llama_rows[3]["ks_block_uniform"]
    for r in llama_rows:  # and each is at the finite-sample scale (layer 0 included)
        assert r["ks_pooled_uniform"] < _KS_BOUND / math.sqrt(r["heads"] * r["tokens"] * r["head_dim"] // r["block"])


def test_kv_fit_gemma3_head_dim_256(models):
    rows = kv_fit(models["gemma3"], _ids(20), block=8)
    assert len(rows) == 6 and all(r["heads"] == 1 and r["head_dim"] == 256 and r["tokens"] == 20 for r in rows)
    assert all(len(r["ks_block_centred"]) == 32 for r in rows)


def test_kv_fit_bad_block(models):
    with pytest.raises(ValueError, match="block must divide head_dim"):
        kv_fit(models["llama"], _ids(8), block=5)
    with pytest.raises(ValueError, match="block must divide head_dim"):
        kv_fit(models["llama"], _ids(8), block=16)


def test_kv_fit_rejects_nan_in_the_cache(models, monkeypatch):
    def fake_capture(model, ids, chunk=None):
        keys = np.ones((1, 2, 8, 16))
        values = np.ones((1, 2, 8, 16))
        values[0, 1, 4, 0] = np.nan
        return [(keys, values)]

    monkeypatch.setattr(fit, "capture_kv", fake_capture)
    with pytest.raises(ValueError, match="the value cache of layer 0 contains NaN or Inf"):
        kv_fit(models["llama"], _ids(8), block=4)


# ----------------------------------------------------------------------------- summary, figure, files
def test_summarize_fit(llama_rows):
    s = summarize_fit(llama_rows)
    assert (s["layers"], s["tokens"], s["block"]) == (3, 64, 4)
    for role in ("key", "value"):
        mine = [r for r in llama_rows if r["role"] == role]
        for col in STAT_COLUMNS:
            values = [r[col] for r in mine]
            assert s[role][col]["max"] == max(values)
            assert s[role][col]["mean"] == pytest.approx(np.mean(values))
            assert mine[s[role][col]["max_layer"]][col] == max(values)
    with pytest.raises(ValueError, match="at least one row"):
        summarize_fit([])
    with pytest.raises(ValueError, match="lack the columns"):
        summarize_fit([{"layer": 0, "role": "key"}])


def test_write_fit(llama_rows, tmp_path):
    csv_path, png_path = write_fit(llama_rows, tmp_path / "out", "kv_fit_tiny")
    assert csv_path == tmp_path / "out" / "kv_fit_tiny.csv" and png_path.suffix == ".png"
    with csv_path.open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == FIT_COLUMNS and len(table) == len(llama_rows)
    assert float(table[1]["ks_block_max_raw"]) == pytest.approx(llama_rows[1]["ks_block_max_raw"])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one row"):
        plot_fit([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="plain file name"):
        write_fit(llama_rows, tmp_path, "a/b")
