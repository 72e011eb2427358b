"""``fibquant kv-fit`` on a tiny random Llama standing in for :func:`fibquant_theory.kv.models.load_model`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import fibquant_theory.kv  # noqa: E402
from fibquant_theory.cli.kv_fit import TABLE_COLUMNS, add_kv_fit_command, model_stem, summary_rows  # noqa: E402
from fibquant_theory.kv.fit import FIT_COLUMNS, STAT_COLUMNS  # noqa: E402

_LAYERS = 2


class _Tokenizer:
    """Stand-in tokenizer: one token per byte (mod the vocabulary)."""

    def __call__(self, text: str, return_tensors: str = "pt") -> types.SimpleNamespace:
        return types.SimpleNamespace(input_ids=torch.tensor([[b % 97 for b in text.encode()]]))


@pytest.fixture(scope="module")
def tiny_model():
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture()
def fake_models(monkeypatch, tmp_path, tiny_model):
    """Replace ``fibquant_theory.kv.models`` (present or not) by a stand-in; records the calls."""
    text = tmp_path / "text.txt"
    text.write_text("The GNU General Public License is a free, copyleft license for software. " * 4)
    calls: dict[str, list] = {"load_model": [], "default_text_path": []}

    def load_model(name=None):
        calls["load_model"].append(name)
        return tiny_model, _Tokenizer()

    def default_text_path(name=None):
        calls["default_text_path"].append(name)
        return text

    fake = types.ModuleType("fibquant_theory.kv.models")
    fake.load_model = load_model
    fake.default_text_path = default_text_path
    monkeypatch.setitem(sys.modules, "fibquant_theory.kv.models", fake)
    monkeypatch.setattr(fibquant_theory.kv, "models", fake, raising=False)
    return calls


def _run(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="fibquant")
    sub = parser.add_subparsers(dest="command", required=True)
    add_kv_fit_command(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_kv_fit_writes_csv_and_png(fake_models, tmp_path):
    out = tmp_path / "out"
    text = _run(["kv-fit", "--model", "tiny", "--max-tokens", "40", "--block", "4", "--out", str(out), "--no-progress"])
    assert fake_models == {"load_model": ["tiny"], "default_text_path": ["tiny"]}
    csv_path, png_path = out / "kv_fit_tiny.csv", out / "kv_fit_tiny.png"
    assert f"wrote {csv_path} and {png_path}" in text
    assert all(c in text for c in TABLE_COLUMNS) and "summary over layers" in text
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * _LAYERS and list(rows[0]) == FIT_COLUMNS
    assert {r["tokens"] for r in rows} == {"40"} and {r["block"] for r in rows} == {"4"}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kv_fit_json(fake_models, tmp_path):
    text_file = tmp_path / "other.txt"
    text_file.write_text("abcdefghijklmnopqrstuvwxyz" * 3)
    out = _run(["kv-fit", "--text", str(text_file), "--max-tokens", "30", "--block", "8", "--seed", "2",
                "--out", str(tmp_path), "--json"])
    rows = json.loads(out)
    assert fake_models == {"load_model": [None], "default_text_path": []}  # --text given: no default text
    assert [(r["layer"], r["role"]) for r in rows] == [(i, role) for i in range(_LAYERS) for role in ("key", "value")]
    assert all(r["tokens"] == 30 and r["seed"] == 2 and len(r["ks_block_raw"]) == 2 for r in rows)
    assert (tmp_path / "kv_fit_smollm2-135m.csv").is_file() and (tmp_path / "kv_fit_smollm2-135m.png").is_file()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--block", "5"], "block must divide head_dim"),
        (["--max-tokens", "1"], "--max-tokens must be >= 2"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--text", "/nonexistent/text.txt"], "text file not found"),
    ],
)
def test_kv_fit_bad_arguments(fake_models, tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        _run(["kv-fit", "--out", str(tmp_path), "--no-progress", *extra])


def test_kv_fit_out_is_checked_first(fake_models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        _run(["kv-fit", "--out", str(blocker)])
    assert fake_models["load_model"] == []


def test_parser_rejects_a_non_positive_block():
    with pytest.raises(SystemExit):
        _run(["kv-fit", "--block", "0"])


def test_model_stem():
    assert model_stem(None) == "kv_fit_smollm2-135m"
    assert model_stem("gemma3-270m") == "kv_fit_gemma3-270m"
    assert model_stem("/models/My Model (v2)/") == "kv_fit_My_Model_v2"


def test_summary_rows():
    summary = {"layers": 1, "key": {"ks_pooled_raw": {"mean": 0.1, "max": 0.2, "max_layer": 0}}}
    assert summary_rows(summary) == [
        {"role": "key", "statistic": "ks_pooled_raw", "mean": 0.1, "max": 0.2, "max_layer": 0}
    ]
    assert set(STAT_COLUMNS) >= {"ks_block_max_raw", "ks_block_max_uniform"}


def test_registered_in_fibquant_main(fake_models, tmp_path, capsys):
    """Through ``fibquant`` itself once ``main.py`` adds the command (skipped until then)."""
    from fibquant_theory.cli.main import build_parser, main

    choices = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "kv-fit" not in choices:
        pytest.skip("fibquant_theory/cli/main.py does not register kv-fit yet")
    assert main(["kv-fit", "--max-tokens", "20", "--block", "4", "--out", str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2 * _LAYERS
    assert main(["kv-fit", "--block", "3", "--out", str(tmp_path)]) == 2
    assert "block must divide head_dim" in capsys.readouterr().err
