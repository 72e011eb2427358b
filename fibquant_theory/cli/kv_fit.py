"""``fibquant kv-fit``: test the spherical-Beta premise on the keys and values of a real model.

The command loads a model (:func:`fibquant_theory.kv.models.load_model`), runs it once on
the first ``--max-tokens`` tokens of a text, keeps every layer's keys and values and
prints the statistics of :func:`fibquant_theory.kv.fit.kv_fit` (a table per layer and
role, then the model-level summary). It writes ``<out>/kv_fit_<model>.csv`` and
``<out>/kv_fit_<model>.png``. Torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from fibquant_theory._table import format_table

__all__ = ["DEFAULT_MODEL", "TABLE_COLUMNS", "add_kv_fit_command", "model_stem", "summary_rows"]

#: The model used when ``--model`` is not given.
DEFAULT_MODEL = "smollm2-135m"

#: The per-layer columns of the printed table (the CSV and ``--json`` have every column).
TABLE_COLUMNS = [
    "layer", "role", "mean_energy_fraction", "outlier_channel_ratio",
    "ks_block_max_raw", "ks_block_max_centred", "ks_block_max_uniform",
    "ks_pooled_raw", "ks_pooled_centred", "ks_pooled_uniform",
]


def model_stem(name: str | None) -> str:
    """File stem ``kv_fit_<model>`` of a model name or folder (the folder's last part; odd characters become ``_``).

    Parameters
    ----------
    name : str or None
        A model name, a local folder, or ``None`` (:data:`DEFAULT_MODEL`).

    Returns
    -------
    str
        e.g. ``"kv_fit_smollm2-135m"``.
    """
    base = Path(name).name if name else DEFAULT_MODEL
    return "kv_fit_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model")


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The :func:`~fibquant_theory.kv.fit.summarize_fit` summary as table rows: one per role and statistic.

    Parameters
    ----------
    summary : dict
        The summary.

    Returns
    -------
    list of dict
        Rows with ``role``, ``statistic``, ``mean``, ``max`` and ``max_layer``.
    """
    from fibquant_theory.kv.fit import ROLES

    return [
        {"role": role, "statistic": stat, **values}
        for role in ROLES if role in summary
        for stat, values in summary[role].items()
    ]


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _cmd_kv_fit(args: argparse.Namespace) -> str:
    from fibquant_theory.cli.main import _check_out
    from fibquant_theory.kv import models
    from fibquant_theory.kv.evaluate import tokenize
    from fibquant_theory.kv.fit import kv_fit, summarize_fit, write_fit

    if args.max_tokens < 2:
        raise ValueError(f"--max-tokens must be >= 2, got {args.max_tokens}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out = _check_out(args.out, "folder")
    text_path = Path(args.text) if args.text else Path(models.default_text_path(args.model))
    if not text_path.is_file():
        raise ValueError(f"text file not found: {text_path}")
    model, tok = models.load_model(args.model)
    ids = tokenize(tok, text_path.read_text(), args.max_tokens)
    rows = kv_fit(model, ids, block=args.block, seed=args.seed, chunk=args.chunk,
                  progress=not (args.json or args.no_progress))
    stem = model_stem(args.model)
    title = f"kv-fit {args.model or DEFAULT_MODEL}: blocks of k={args.block}, {ids.shape[1]} tokens, seed {args.seed}"
    csv_path, png_path = write_fit(rows, out, stem, title=title)
    if args.json:
        return json.dumps(rows)
    summary = summarize_fit(rows)
    head = (f"model {args.model or DEFAULT_MODEL}: {summary['layers']} layers, {ids.shape[1]} tokens, "
            f"blocks of k={args.block}, seed {args.seed}")
    return "\n\n".join([
        head,
        format_table(rows, TABLE_COLUMNS),
        "summary over layers (uniform: i.i.d. uniform unit vectors, same count and rotation)",
        format_table(summary_rows(summary), ["role", "statistic", "mean", "max", "max_layer"]),
        f"wrote {csv_path} and {png_path}",
    ])


def add_kv_fit_command(sub: Any) -> None:
    """Add the ``kv-fit`` subcommand to the ``fibquant`` parser's subparsers ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``fibquant`` parser.
    """
    p = sub.add_parser(
        "kv-fit", help="test the spherical-Beta premise on a real model's keys and values (CSV + PNG)",
        description="Per layer: energy in the per-head mean, outlier channels, and the KS distance of the rotated "
        "blocks' squared norms to Beta(k/2, (d-k)/2), raw and centred, next to i.i.d. uniform unit vectors.",
    )
    p.add_argument("--model", default=None,
                   help="smollm2-135m (default), gemma3-270m, qwen2.5-coder-1.5b or a local model folder")
    p.add_argument("--text", default=None, help="text file (default: the model's default text)")
    p.add_argument("--max-tokens", type=int, default=1024, help="use the first N tokens of the text (default 1024)")
    p.add_argument("--block", type=_positive, default=8, help="block size k, dividing head_dim (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotation and the uniform reference (default 0)")
    p.add_argument("--chunk", type=_positive, default=None, help="tokens per forward pass (default: all at once)")
    p.add_argument("--out", default="build/kv", help="output folder (default build/kv)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.set_defaults(func=_cmd_kv_fit)
