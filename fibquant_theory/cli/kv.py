"""``fibquant kv-eval``, ``kv-pareto`` and ``kv-generate`` (torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fibquant_theory._table import format_table

__all__ = ["add_kv_commands", "KV_COLUMNS", "KV_METHODS"]

#: Cache methods of ``kv-eval``.
KV_METHODS = ("fp", "fibquant", "turboquant", "turboquant-prod", "kivi")

KV_COLUMNS = [
    "method", "block", "codewords", "bits", "compression_ratio", "ppl", "ppl_fp", "delta_ppl",
    "attn_cosine", "attn_cosine_min", "key_mse", "value_mse", "window", "fp_layers", "center", "tokens",
]


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
        "block": args.block,
        "codewords": args.codewords,
        "bits": args.bits,
        "value_block": args.value_block,
        "value_codewords": args.value_codewords,
        "value_bits": args.value_bits,
        "window": args.window,
        "fp_layers": tuple(args.fp_layers) if args.fp_layers else None,
        "center": args.center,
        "seed": args.seed,
    }


def _cmd_kv_eval(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.evaluate import kv_eval
    from fibquant_theory.kv.cache import check_fp_layers, n_layers_of

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
    from fibquant_theory.kv.evaluate import greedy_generate, load_model
    from fibquant_theory.kv.cache import FibQuantCache

    model, tok = load_model(args.model)
    fp = greedy_generate(model, tok, args.prompt, None, args.max_new_tokens)
    cache = FibQuantCache(model.config, block=args.block, codewords=args.codewords, seed=args.seed)
    fq = greedy_generate(model, tok, args.prompt, cache, args.max_new_tokens)
    return (
        f"prompt: {args.prompt}\n\n[fp16 cache]\n{fp}\n\n"
        f"[FibQuant cache, k={args.block}, N={args.codewords}, {cache.compression_ratio():.2f}x smaller, no fp window]\n{fq}"
    )


def add_kv_commands(sub: Any) -> None:
    """Add the KV-cache subcommands to the ``fibquant`` parser's subparsers ``sub``."""
    ev = sub.add_parser("kv-eval", help="perplexity and attention fidelity of one KV-cache method on a real model")
    ev.add_argument("--method", choices=KV_METHODS, required=True)
    ev.add_argument("--block", type=int, help="FibQuant block size k")
    ev.add_argument("--codewords", type=int, help="FibQuant codebook size N")
    ev.add_argument("--bits", type=int, help="bits per coordinate (turboquant, kivi)")
    ev.add_argument("--value-block", type=int, help="FibQuant k for values (default: --block)")
    ev.add_argument("--value-codewords", type=int, help="FibQuant N for values (default: --codewords)")
    ev.add_argument("--value-bits", type=int, help="bits for values (default: --bits)")
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

    ge = sub.add_parser("kv-generate", help="greedy generation with an fp16 and a FibQuant cache, side by side")
    ge.add_argument("--prompt", default="The GNU General Public License is")
    ge.add_argument("--max-new-tokens", type=int, default=40)
    ge.add_argument("--block", type=int, default=4)
    ge.add_argument("--codewords", type=int, default=256)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--model", default=None)
    ge.set_defaults(func=_cmd_kv_generate)
