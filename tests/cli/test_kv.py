"""``fibquant kv-eval`` / ``kv-generate``: methods and option flags from the registry, on a tiny random Llama."""

from __future__ import annotations

import json
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fibquant_theory.cli.kv import kv_flags  # noqa: E402
from fibquant_theory.cli.main import build_parser, main  # noqa: E402
from fibquant_theory.codecs.registry import KV_METHODS, SPECS  # noqa: E402

VOCAB = 64


class _Tokenizer:
    """Characters as token ids: enough for perplexity and greedy generation."""

    eos_token_id = 0

    def __call__(self, text: str, return_tensors: str = "pt") -> types.SimpleNamespace:
        return types.SimpleNamespace(input_ids=torch.tensor([[ord(c) % VOCAB for c in text]]))

    def decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> str:
        return "".join(chr(97 + int(i) % 26) for i in ids)


@pytest.fixture()
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path) -> types.SimpleNamespace:
    import fibquant_theory.kv.evaluate as evaluate

    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    monkeypatch.setattr(evaluate, "load_model", lambda path=None: (model, _Tokenizer()))
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog, again and again")
    return types.SimpleNamespace(model=model, text=str(text))


def test_kv_flags_come_from_the_registry() -> None:
    flags = {flag.flag: owners for flag, owners in kv_flags()}
    assert flags["--bits"] == ["turboquant", "turboquant-prod", "kivi"]  # fibquant's KV cache takes codewords, not bits
    assert flags["--block"] == flags["--codewords"] == flags["--value-codewords"] == ["fibquant"]
    assert flags["--value-bits"] == ["turboquant", "turboquant-prod", "kivi"]
    sub = next(a for a in build_parser()._subparsers._group_actions).choices
    assert tuple(next(a for a in sub["kv-eval"]._actions if a.dest == "method").choices) == (
        *KV_METHODS, "quanto", "hqq", "fp8-tensor")
    assert set(next(a for a in sub["kv-generate"]._actions if a.dest == "method").choices) == {m for m in SPECS if SPECS[m].kv}


@pytest.mark.parametrize(
    ("argv", "method"),
    [
        (["--method", "kivi", "--bits", "4", "--value-bits", "2"], "kivi"),
        (["--method", "fibquant", "--block", "4", "--codewords", "16", "--value-codewords", "8"], "fibquant"),
    ],
)
def test_kv_eval_runs_every_method_from_its_flags(tiny, argv: list[str], method: str, capsys) -> None:
    common = ["--text", tiny.text, "--ctx", "16", "--stride", "8", "--json"]
    assert main(["kv-eval", *argv, *common]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["method"] == method
    if method == "kivi":  # keys leave the fp16 window in whole groups of 32 tokens: none within a 16-token window
        assert row["compression"] == 1.0
    else:
        assert row["compression"] > 1
    assert row[argv[-2].lstrip("-").replace("-", "_")] == int(argv[-1])  # the values' own rate is reported


def test_kv_eval_refuses_options_of_other_methods(tiny, capsys) -> None:
    common = ["--text", tiny.text, "--ctx", "16", "--stride", "8"]
    assert main(["kv-eval", "--method", "turboquant", "--bits", "2", "--block", "4", *common]) == 2
    assert "does not take block" in capsys.readouterr().err
    assert main(["kv-eval", "--method", "kivi", *common]) == 2
    assert "needs bits" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "shown"),
    [([], "[fibquant cache, block=4, codewords=256,"), (["--method", "turboquant", "--bits", "3"], "[turboquant cache, bits=3,")],
)
def test_kv_generate_any_method(tiny, argv: list[str], shown: str, capsys) -> None:
    assert main(["kv-generate", "--max-new-tokens", "3", "--prompt", "abc", *argv]) == 0
    out = capsys.readouterr().out
    assert "[fp16 cache]" in out and shown in out and "x smaller" in out
