"""``fibquant kv-eval``, ``kv-pareto`` and ``kv-generate`` (torch is imported only when they run).

The ``--method`` choices and the codec option flags come from the registry
(:data:`~fibquant_theory.codecs.registry.SPECS`): every KV method's flags, and
``--value-<flag>`` for the values' own rate; transformers' quantized caches
(:data:`~fibquant_theory.kv.evaluate.PEER_METHODS`) take ``--nbits``,
``--q-group-size`` and ``--residual-length``. ``--model`` is a registered model
(:data:`~fibquant_theory.kv.models.MODELS`) or a local folder; ``--text`` (one or
more) a registered text or a file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fibquant_theory._table import format_table
from fibquant_theory.cli.sweep import add_cluster_options, check_cluster_args, cluster_runner
from fibquant_theory.codecs.registry import FP_METHOD, KV_METHODS, SPECS, Flag, flag_help, get_spec, kv_methods
from fibquant_theory.kv.report import KV_COLUMNS, kv_columns

__all__ = ["KV_COLUMNS", "KV_METHODS", "add_kv_commands", "kv_flags"]

#: Models and texts named in the help (the registry itself is imported only when a command runs).
_MODEL_NAMES = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b")
_TEXT_NAMES = ("gpl-3", "shakespeare")
_PEERS = ("quanto", "hqq", "fp8-tensor")
#: Methods whose kv-eval default is ``--center key`` (the measurements are on the page "KV caches on real models").
_ROTATED = ("fibquant", "turboquant", "turboquant-prod")


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


def _add_peer_flags(p: argparse.ArgumentParser) -> None:
    peers = ", ".join(_PEERS[:2])
    p.add_argument("--nbits", type=int, default=None, help=f"bits of transformers' QuantizedCache ({peers})")
    p.add_argument("--q-group-size", type=int, default=None, help=f"group size of the QuantizedCache ({peers})")
    p.add_argument("--residual-length", type=int, default=None,
                   help=f"fp residual of the QuantizedCache before it quantises ({peers}; theirs is 128)")


def _codec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The codec options given on the command line (``None`` where a flag was not given)."""
    return {flag.option: getattr(args, flag.option, None) for flag, _ in kv_flags()}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help=f"{', '.join(_MODEL_NAMES)} (default {_MODEL_NAMES[0]}), or a local Hugging Face model folder")
    p.add_argument("--text", nargs="+", default=None,
                   help=f"texts for perplexity: {', '.join(_TEXT_NAMES)} or files (default: both)")
    p.add_argument("--max-tokens", type=int, default=2048, help="use only the first N tokens of every text (default 2048)")
    p.add_argument("--ctx", type=int, default=1024, help="perplexity window (default 1024)")
    p.add_argument("--stride", type=int, default=1024, help="new tokens per window (default 1024: no overlap)")
    p.add_argument("--chunk", type=int, default=128, help="prefill chunk, the same for every method (default 128)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="rotation seeds of fibquant and turboquant (default 0 1 2; the others are deterministic)")


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], Any]:
    from fibquant_theory.kv import evaluate
    from fibquant_theory.kv.models import TEXTS, text_path

    protocol = evaluate.Protocol(ctx=args.ctx, stride=args.stride, chunk=args.chunk, seeds=tuple(args.seeds))
    names = args.text or list(TEXTS)
    paths = {Path(name).stem if name not in TEXTS else name: text_path(name) for name in names}
    model, tok = evaluate.load_model(args.model)
    texts = {name: evaluate.tokenize(tok, path.read_text(), args.max_tokens) for name, path in paths.items()}
    return model, tok, texts, protocol


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {
        **_codec_options(args),
        "window": args.window,
        "fp_layers": tuple(args.fp_layers) if args.fp_layers else None,
        "center": args.center if args.center is not None else ("key" if args.method in _ROTATED else None),
        "norm_correction": args.norm_correction or None,
        "nbits": args.nbits,
        "q_group_size": args.q_group_size,
        "residual_length": args.residual_length,
    }
    return {k: v for k, v in opts.items() if v is not None}


def _cmd_kv_eval(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.cache import check_fp_layers, n_layers_of
    from fibquant_theory.kv.evaluate import kv_eval

    model, _, texts, protocol = _load(args)
    if args.fp_layers:
        check_fp_layers(args.fp_layers, n_layers_of(model.config), "--fp-layers")
    row = kv_eval(args.method, model, texts, protocol=protocol, progress=not args.json, **_options(args))
    if args.json:
        return json.dumps(row)
    return f"{protocol.describe()}\n{format_table([row], kv_columns([row]))}"


def _cmd_kv_pareto(args: argparse.Namespace) -> str:
    from fibquant_theory.experiments.sweep import available_memory, default_workers
    from fibquant_theory.kv.models import model_name
    from fibquant_theory.kv.pareto import cluster_size, frontier_table, kv_pareto, model_nbytes, sweep_configs

    check_cluster_args(args)
    model, _, texts, protocol = _load(args)
    name = model_name(args.model)

    def size(n_points: int) -> tuple[int, str]:
        return cluster_size(n_points, model_nbytes(model), available_memory(), default_workers())

    with cluster_runner(args.workers, args.scheduler, size=size, desc=f"kv-pareto {name}") as runner:
        rows = kv_pareto(model, name, texts, args.out, sweep_configs(args.grid), protocol,
                         progress=not args.no_progress, runner=runner)
    for r in rows:
        r.setdefault("label", r["method"])
    table = format_table(rows, kv_columns(rows, label=True))
    front = format_table(frontier_table(rows), ["target", "rank", "label", "compression", "delta_ppl_pct",
                                                "delta_ppl_pct_std", "attn_cosine", "frontier", "dominated_by"])
    out = Path(args.out)
    return (f"{name}: {protocol.describe()}; no fp16 window, no fp layers\n{table}\n\n"
            f"best Δppl within ±5% of each target compression\n{front}\n\n"
            f"wrote {out / f'kv_pareto_{name}.csv'} and {out / f'kv_pareto_{name}.png'}")


def _cmd_kv_generate(args: argparse.Namespace) -> str:
    from fibquant_theory.kv.evaluate import greedy_generate, load_model, make_cache_factory

    spec = get_spec(args.method)
    given = {k: v for k, v in _codec_options(args).items() if v is not None}
    options = {**spec.example, **given} if spec.missing(list(given), kv=True) else given
    model, tok = load_model(args.model)
    cache = make_cache_factory(args.method, model.config, seed=args.seed, **options)()
    fp = greedy_generate(model, tok, args.prompt, None, args.max_new_tokens, args.num_beams)
    text = greedy_generate(model, tok, args.prompt, cache, args.max_new_tokens, args.num_beams)
    setting = ", ".join(f"{k}={v}" for k, v in options.items())
    search = "greedy" if args.num_beams == 1 else f"beam search, {args.num_beams} beams"
    return (
        f"prompt: {args.prompt} ({search})\n\n[fp16 cache]\n{fp}\n\n"
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
    ev.add_argument("--method", choices=(*kv_methods(), *_PEERS), required=True,
                    help=f"{FP_METHOD!r}: no compression; {', '.join(_PEERS)}: transformers' QuantizedCache")
    _add_flags(ev)
    _add_peer_flags(ev)
    ev.add_argument("--window", type=int, default=0, help="most recent tokens kept in fp16 (default 0: off)")
    ev.add_argument("--fp-layers", type=int, nargs="*", help="layers left uncompressed, e.g. 0 -1; -n <= i < n for n layers (default none)")
    ev.add_argument(
        "--center", choices=("none", "key", "value", "both"), default=None,
        help=f"remove the per-head prefill mean of keys/values before encoding (default key for {', '.join(_ROTATED)}, "
        "else none)",
    )
    ev.add_argument("--norm-correction", action="store_true",
                    help="rescale decoded vectors to their stored norms (fibquant, turboquant)")
    ev.add_argument("--json", action="store_true")
    _common(ev)
    ev.set_defaults(func=_cmd_kv_eval)

    pa = sub.add_parser("kv-pareto", help="every method on one memory–fidelity chart: sweep, CSV, plots (resumable)")
    pa.add_argument("--out", default="build/kv", help="output folder (default build/kv; points are cached there)")
    pa.add_argument("--grid", choices=("full", "small", "tiny"), default="full", help="the sweep grid (default full)")
    pa.add_argument("--no-progress", action="store_true")
    add_cluster_options(pa, "default: min(CPU cores, points to compute, workers that fit in the available memory "
                        "at 3 x the model + 1 GiB each, leaving 3 x the model to this process), or 0 when none fits; "
                        "the choice and why are printed on stderr. Each worker gets the model once, and cores // N "
                        "torch threads; the fp perplexities are computed in this process")
    _common(pa)
    pa.set_defaults(func=_cmd_kv_pareto)

    methods = [m for m in kv_methods() if m != FP_METHOD]
    ge = sub.add_parser("kv-generate", help="greedy generation with an fp16 and a compressed cache, side by side")
    ge.add_argument("--method", choices=methods, default="fibquant",
                    help="the compressed cache (default fibquant; without rate options, its typical setting, "
                    + "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in SPECS[m].example.items())}" for m in methods) + ")")
    ge.add_argument("--prompt", default="The GNU General Public License is")
    ge.add_argument("--max-new-tokens", type=int, default=40)
    ge.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default 1: greedy)")
    _add_flags(ge)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--model", default=None, help=f"{', '.join(_MODEL_NAMES)} or a local folder")
    ge.set_defaults(func=_cmd_kv_generate)
