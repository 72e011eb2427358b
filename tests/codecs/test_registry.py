"""Codecs by name (:func:`make_codec`): options are checked, never dropped or truncated; ``rate_distortion``'s ``chunk``."""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest

from fibquant_theory.codecs import registry
from fibquant_theory.codecs.base import integer_bits
from fibquant_theory.codecs.fibquant import FibQuantCodec
from fibquant_theory.codecs.registry import METHODS, make_codec
from fibquant_theory.codecs.turboquant import TurboQuantMSE
from fibquant_theory.experiments.rd import rate_distortion

#: a small, fast, uncached FibQuant design
SMALL = {"n_train": 2000, "n_heldout": 1000, "cache": False}


# ----------------------------------------------------------------------------- unknown options (D4)
@pytest.mark.parametrize(
    ("method", "options", "bad"),
    [
        ("turboquant", {"bits": 2, "sead": 5}, "sead"),
        ("turboquant-prod", {"bits": 2, "rotation": "hadamard"}, "rotation"),
        ("kivi", {"bits": 2, "group": 8}, "group"),
        ("fibquant", {"block": 2, "codewords": 4, "blok": 2, **SMALL}, "blok"),
        ("fibquant", {"block": 2, "codewords": 4, "n_restart": 1, **SMALL}, "n_restart"),
    ],
)
def test_unknown_options_raise_type_error_naming_them(method: str, options: dict, bad: str) -> None:
    with pytest.raises(TypeError) as exc:
        make_codec(method, 16, **options)
    message = str(exc.value)
    assert repr(bad) in message and repr(method) in message
    assert "seed" in message and "bits" in message  # the valid options are listed


def test_misspelled_option_suggests_the_right_one() -> None:
    with pytest.raises(TypeError, match="did you mean 'seed'"):
        make_codec("turboquant", 16, bits=2, sead=5)


# ----------------------------------------------------------------------------- bits (D4)
def test_fibquant_fractional_bits_are_not_truncated() -> None:
    # N = 2**(bits*k): bits=1.5, k=2 -> 8 codewords (was 2**(1*2) = 4); bits=0.5, k=4 -> 4 (was 2**0 = 1)
    assert make_codec("fibquant", 8, block=2, bits=1.5, **SMALL).n_codewords == 8
    assert make_codec("fibquant", 8, block=4, bits=0.5, **SMALL).n_codewords == 4
    assert make_codec("fibquant", 8, block=2, bits=np.float64(2.0), **SMALL).n_codewords == 16


@pytest.mark.parametrize(
    ("block", "bits"),
    [(1, 1.5), (2, 0.25), (4, 0.1), (2, 0), (2, -1), (2, float("nan")), (2, float("inf")), (2, True), (2, "2")],
)
def test_fibquant_bits_times_block_must_be_a_positive_integer(block: int, bits: object) -> None:
    with pytest.raises(ValueError, match="bits"):
        make_codec("fibquant", 8, block=block, bits=bits, **SMALL)


def test_fibquant_bits_and_codewords_must_agree() -> None:
    with pytest.raises(ValueError, match=r"codewords=8.*bits=2|bits=2.*codewords=8"):
        make_codec("fibquant", 8, block=2, bits=2, codewords=8, **SMALL)  # 2 bits x 2 = 16 codewords, not 8
    codec = make_codec("fibquant", 8, block=2, bits=1.5, codewords=8, **SMALL)  # consistent: accepted
    assert isinstance(codec, FibQuantCodec) and codec.n_codewords == 8


@pytest.mark.parametrize("method", ["turboquant", "turboquant-prod", "kivi"])
def test_scalar_methods_need_integer_bits(method: str) -> None:
    for bad in (1.5, True, "2", 0, 9):
        with pytest.raises(ValueError, match=rf"{re.escape(method)}.*bits"):
            make_codec(method, 16, bits=bad)
    assert make_codec(method, 16, bits=2.0).bits == 2  # an integral float is an integer


@pytest.mark.parametrize("method", ["turboquant", "turboquant-prod", "kivi"])
def test_missing_bits_names_the_method_and_the_option(method: str) -> None:
    with pytest.raises(ValueError, match=rf"method {re.escape(repr(method))} needs .*bits="):
        make_codec(method, 16, seed=1)


def test_fibquant_missing_options_name_them() -> None:
    with pytest.raises(ValueError, match="block"):
        make_codec("fibquant", 8, codewords=4)
    with pytest.raises(ValueError, match="codewords=N or bits=b"):
        make_codec("fibquant", 8, block=2)


def test_fibquant_encoder_options_apply_to_their_encoder_only() -> None:
    with pytest.raises(ValueError, match="probes.*two-stage"):
        make_codec("fibquant", 8, block=2, codewords=4, probes=2, **SMALL)  # exhaustive search would ignore it
    with pytest.raises(ValueError, match="n_clusters.*clustered"):
        make_codec("fibquant", 8, block=2, codewords=4, encoder="two-stage", n_clusters=2, **SMALL)
    codec = make_codec("fibquant", 8, block=2, codewords=16, encoder="clustered", n_clusters=4, top=2, **SMALL)
    assert codec.encoder == "clustered"


def test_options_are_passed_through() -> None:
    assert make_codec("turboquant", 16, bits=2, seed=5).seed == 5
    kv = make_codec("kivi", 16, bits=3, mode="per-channel", group_size=8, meta_dtype="float32")
    assert (kv.bits, kv.mode, kv.group_size, kv.meta_dtype) == (3, "per-channel", 8, "float32")
    fq = make_codec("fibquant", 8, block=2, codewords=4, seed=3, rotation="hadamard", norm_dtype="float32", **SMALL)
    assert (fq.seed, fq.rotation.kind, fq.norm_dtype) == (3, "hadamard", "float32")


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_codec("nope", 16, bits=2)
    with pytest.raises(ValueError, match="unknown method"):
        make_codec(["turboquant"], 16, bits=2)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- factories and documentation
def _documented_options() -> dict[str, set[str]]:
    """Options listed per method by the bullets of the module docstring of ``methods``."""
    doc = registry.__doc__ or ""
    bullets = re.findall(r"^\* (.*?)(?=^\S|^\* |\Z)", doc, flags=re.MULTILINE | re.DOTALL)
    found: dict[str, set[str]] = {}
    for bullet in bullets:
        names = re.findall(r'``"([a-z0-9-]+)"``', bullet)
        options = set(re.findall(r"``([a-z_]+)``", bullet))
        for name in names:
            found[name] = options
    return found


def test_factories_are_named_functions_with_explicit_keyword_options() -> None:
    documented = _documented_options()
    assert set(documented) == set(METHODS)
    for name, factory in METHODS.items():
        assert factory.__name__ != "<lambda>" and factory.__doc__, name
        params = list(inspect.signature(factory).parameters.values())
        assert params[0].name == "d" and all(p.kind is p.KEYWORD_ONLY for p in params[1:]), name
        assert {p.name for p in params[1:]} == documented[name], name  # the module docstring is accurate


# ----------------------------------------------------------------------------- rate_distortion chunk (D3)
@pytest.mark.parametrize("chunk", [-5, 0, 1.5, "10", True, None])
def test_rate_distortion_rejects_a_bad_chunk(chunk: object) -> None:
    codec = TurboQuantMSE(16, 2, seed=0)
    with pytest.raises(ValueError, match="chunk"):
        rate_distortion(codec, 100, chunk=chunk)  # type: ignore[arg-type]


def test_rate_distortion_small_chunks_cover_every_sample() -> None:
    codec = TurboQuantMSE(16, 2, seed=0)
    row = rate_distortion(codec, 101, seed=3, chunk=7)
    whole = rate_distortion(codec, 101, seed=3, chunk=1000)
    assert row["n_samples"] == 101 and np.isfinite(row["mse"]) and 0 < row["mse"] < 1
    assert row["mse"] == pytest.approx(whole["mse"], rel=0.5)


# ----------------------------------------------------------------------------- the specs (issue #14)
def test_specs_are_the_methods_and_name_their_factories_options() -> None:
    assert list(registry.SPECS) == list(METHODS) and registry.KV_METHODS == registry.kv_methods()
    assert registry.KV_METHODS == ("fp", "fibquant", "turboquant", "turboquant-prod", "kivi", "fp8")
    for name, spec in registry.SPECS.items():
        assert spec.name == name and METHODS[name] is spec.factory and spec.description
        assert set(spec.rate_options) <= set(spec.options) and {f.option for f in spec.flags} <= set(spec.options)
        assert spec.integer_rate == (name != "fibquant")
        for setting in (*spec.kv_sweep, spec.example):
            assert not spec.missing(list(setting), kv=True), (name, setting)


def test_kv_codec_options_split_keys_and_values() -> None:
    key, value, chunk = registry.get_spec("fibquant").kv_codec_options({"block": 4, "codewords": 16, "value_codewords": 64})
    assert (key, value, chunk) == ({"block": 4, "codewords": 16}, {"block": 4, "codewords": 64}, 1)
    key, value, chunk = registry.get_spec("kivi").kv_codec_options({"bits": 2, "value_bits": 4, "group_size": 8})
    assert key == {"bits": 2, "group_size": 8, "mode": "per-channel"} and value == {"bits": 4, "mode": "per-token"}
    assert chunk == 8
    with pytest.raises(TypeError, match="'mode'.*per-channel keys"):
        registry.get_spec("kivi").kv_codec_options({"bits": 2, "mode": "per-token"})
    with pytest.raises(TypeError, match="'bits'.*codewords=N"):
        registry.get_spec("fibquant").kv_codec_options({"block": 2, "bits": 2})
    with pytest.raises(TypeError, match="did you mean 'value_bits'"):
        registry.get_spec("turboquant").kv_codec_options({"bits": 2, "value_bitz": 3})


def _make_toy(d: int, *, bits: int | None = None, seed: int = 0) -> TurboQuantMSE:
    """A toy method: TurboQuant-mse under another name."""
    return TurboQuantMSE(d, integer_bits("toy", bits), seed)


def test_register_checks_the_spec() -> None:
    spec = registry.MethodSpec("turboquant", _make_toy, "dup", integer_rate=True, rate_options=("bits",), required=(("bits",),))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec)
    for bad, match in (
        ({"rate_options": ("bitz",)}, r"rate_options names \['bitz'\]"),
        ({"flags": (registry.BLOCK,)}, r"flags names \['block'\]"),
        ({"kv_sweep": ({"bits": 2, "block": 4},)}, r"kv_sweep names \['block'\]"),
        ({"factory": lambda d, bits=2: None}, "factory must be factory"),
    ):
        with pytest.raises(ValueError, match=match):
            registry.register(dataclasses.replace(spec, name="toy-bad", **bad))
    assert "toy-bad" not in registry.SPECS


def test_one_registration_makes_a_method() -> None:
    """Adding a codec is its module plus one register(...) line: make_codec, rd and the KV lists know it."""
    from fibquant_theory.cli.main import build_parser

    spec = registry.MethodSpec(
        "toy", _make_toy, "toy", integer_rate=True, rate_options=("bits",), required=(("bits",),),
        flags=(registry.BITS,), kv_sweep=({"bits": 2},), example={"bits": 2},
    )
    registry.register(spec)
    try:
        assert make_codec("toy", 16, bits=3).bits == 3
        with pytest.raises(TypeError, match="'bitz'.*'toy'"):
            make_codec("toy", 16, bitz=3)
        assert "toy" in registry.kv_methods() and "toy" not in registry.KV_METHODS  # the constant is the import's
        args = build_parser().parse_args(["rd", "--dim", "16", "--method", "toy", "--bits", "2"])
        assert (args.method, args.bits) == ("toy", 2)
    finally:
        del registry.SPECS["toy"], registry.METHODS["toy"]
