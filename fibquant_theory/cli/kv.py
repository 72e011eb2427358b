"""``fibquant kv-eval``, ``kv-pareto`` and ``kv-generate`` (torch is imported only when they run).

The ``--method`` choices and the codec option flags come from the registry
(:data:`~fibquant_theory.codecs.registry.SPECS`): every KV method's flags, and
``--value-<flag>`` for the values' own rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fibquant_theory._table import format_table
from fibquant_theory.codecs.registry import FP_METHOD, KV_METHODS, SPECS, Flag, flag_help, get_spec, kv_methods
from fibquant_theory.kv.report import KV_COLUMNS

__all__ = ["add_kv_commands", "kv_flags", "KV_COLUMNS", "KV_METHODS"]


def kv_flags() -> list[tuple[Flag, list[str]]]:
    """The codec option flags of the ``kv-*`` commands, each with the KV methods that take it.

    Every KV method's :attr:`~fibquant_theory.codecs.registry.MethodSpec.flags`
    (less those a KV cache does not take), then the ``--value-...`` flags of
    their rate options, in registration order.

    Returns
    -------
    list of (Flag, list of str)
        The flags and their methods.
    """
    found: dict[str, tuple[Flag, list[str]]] = {}
    for value_pass in (False, True):
        for name, spec in SPECS.items():
            if not spec.kv:
                continue
            for flag in spec.flags:
                if flag.option in spec.kv_exclude:
                    continue
                if value_pass:
                    if flag.option not in spec.rate_options:
                        continue
                    flag = flag.for_values()
                entry = found.setdefault(flag.flag, (flag, []))
                if entry[0] != flag:
                    raise ValueError(f"two methods define the flag {flag.flag} differently: {entry[0]} and {flag}")
                entry[1].append(name)
    return list(found.values())


def _add_flags(p: argparse.ArgumentParser, methods: list[str] | None = None) -> None:
    """Add the codec option flags (of ``methods``, default all) to ``p``; their values go to ``args.<option>``."""
    for flag, owners in kv_flags():
        owners = [m for m in owners if methods is None or m in methods]
        if owners:
            p.add_argument(flag.flag, dest=flag.option, type=flag.type, metavar=flag.metavar,
                           help=flag_help(flag, owners))


def _codec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The codec options given on the command line (``None`` where a flag was not given)."""
    return {flag.option: getattr(args, flag.option, None) for flag, _ in kv_flags()}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="local Hugging Face model folder (default: embedded SmolLM2-135M GGUF)")
    p.add_argument("--text", default=None, help="text file for perplexity (default: GPL-3)")
    p.add_argument("--max-tokens", type=int, default=None, help="use only the first N tokens of the text")
    p.add_argument("--ctx", type=int, default=1024, help="perplexity window (default 1024)")
    p.add_argument("--stride", type=int, default=512, help="new tokens per window (default 512)")


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from fibquant_theory.kv.evaluate import default_text_path, load_model, tokenize

    model, tok = load_model(args.model)
    text_path = Path(args.text) if args.text else default_text_path()
    if not text_path.is_file():
        raise ValueError(f"text file not found: {text_path}")
    return model, tok, tokenize(tok, text_path.read_text(), args.max_tokens)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        **_codec_options(args),
        "window": args.window,
        "fp_layers": tuple(args.fp_layers) if args.fp_layers else None,
        "center": args.center,
        "seed": args.seed,
    }


def _cmd_kv_eval(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.cache import check_fp_layers, n_layers_of
    from fibquant_theory.kv.evaluate import kv_eval

    model, _, ids = _load(args)
    if args.fp_layers:
        check_fp_layers(args.fp_layers, n_layers_of(model.config), "--fp-layers")
    row = kv_eval(args.method, model, ids, ctx=args.ctx, stride=args.stride, progress=not args.json, **_options(args))
    if args.json:
        return json.dumps(row)
    return format_table([row], [c for c in KV_COLUMNS if c in row])


def _cmd_kv_pareto(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.evaluate import kv_pareto

    model, _, ids = _load(args)
    rows = kv_pareto(model, ids, args.out, ctx=args.ctx, stride=args.stride, progress=not args.no_progress)
    table = format_table(rows, [c for c in KV_COLUMNS if any(c in r for r in rows)])
    return f"{table}\n\nwrote {Path(args.out) / 'kv_pareto.csv'} and {Path(args.out) / 'kv_pareto.png'}"


def _cmd_kv_generate(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.evaluate import greedy_generate, load_model, make_cache_factory

    spec = get_spec(args.method)
    given = {k: v for k, v in _codec_options(args).items() if v is not None}
    options = {**spec.example, **given} if spec.missing(list(given), kv=True) else given
    model, tok = load_model(args.model)
    cache = make_cache_factory(args.method, model.config, seed=args.seed, **options)()
    fp = greedy_generate(model, tok, args.prompt, None, args.max_new_tokens)
    text = greedy_generate(model, tok, args.prompt, cache, args.max_new_tokens)
    setting = ", ".join(f"{k}={v}" for k, v in options.items())
    return (
        f"prompt: {args.prompt}\n\n[fp16 cache]\n{fp}\n\n"
        f"[{args.method} cache, {setting}, {cache.compression_ratio():.2f}x smaller, no fp window]\n{text}"
    )


def add_kv_commands(sub: Any) -> None:
    """Add the KV-cache subcommands to the ``fibquant`` parser's subparsers ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``fibquant`` parser.
    """
    ev = sub.add_parser("kv-eval", help="perplexity and attention fidelity of one KV-cache method on a real model")
    ev.add_argument("--method", choices=kv_methods(), required=True, help=f"{FP_METHOD!r}: no compression")
    _add_flags(ev)
    ev.add_argument("--window", type=int, default=0, help="most recent tokens kept in fp16 (default 0: off)")
    ev.add_argument("--fp-layers", type=int, nargs="*", help="layers left uncompressed, e.g. 0 -1; -n <= i < n for n layers (default none)")
    ev.add_argument(
        "--center", choices=("none", "key", "value", "both"), default="none",
        help="remove the per-head prefill mean of keys/values before encoding (default none)",
    )
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", action="store_true")
    _common(ev)
    ev.set_defaults(func=_cmd_kv_eval)

    pa = sub.add_parser("kv-pareto", help="sweep methods and rates; memory–fidelity Pareto plot + CSV")
    pa.add_argument("--out", default="build/kv", help="output folder (default build/kv)")
    pa.add_argument("--no-progress", action="store_true")
    _common(pa)
    pa.set_defaults(func=_cmd_kv_pareto)

    methods = [m for m in kv_methods() if m != FP_METHOD]
    ge = sub.add_parser("kv-generate", help="greedy generation with an fp16 and a compressed cache, side by side")
    ge.add_argument("--method", choices=methods, default="fibquant",
                    help="the compressed cache (default fibquant; without rate options, its typical setting, "
                    + "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in SPECS[m].example.items())}" for m in methods) + ")")
    ge.add_argument("--prompt", default="The GNU General Public License is")
    ge.add_argument("--max-new-tokens", type=int, default=40)
    _add_flags(ge)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--model", default=None)
    ge.set_defaults(func=_cmd_kv_generate)
