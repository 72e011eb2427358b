"""``kv-pareto``: every method on one memory–fidelity chart per model, under one protocol, resumable.

:func:`sweep_configs` is the grid (``"full"`` or ``"small"``); every point is a
:func:`~fibquant_theory.kv.evaluate.kv_eval` row, cached as JSON under
``<out>/points/<model>/`` keyed by the model, the method, its options, the texts
and the protocol, so a sweep that stops resumes where it stopped and a finished
one is re-plotted without running anything (a corrupt point file is reported with a
``RuntimeWarning`` and the point recomputed). The points can run on Dask
(``runner=``; ``fibquant kv-pareto`` starts a ``LocalCluster`` of :func:`cluster_size`
workers, or ``--workers N`` / ``--scheduler ADDRESS``). :func:`kv_pareto` writes
``kv_pareto_<model>.csv`` and two plots (compression vs Δppl and vs attention-output
cosine, error bars over seeds); :func:`frontier_table` says, at each target
compression, which method has the lowest Δppl within ±5 % of it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fibquant_theory._validation import check_int
from fibquant_theory.kv.report import flat_rows, write_csv

__all__ = ["BEST_OPTIONS", "GRIDS", "MODEL_COPIES", "TARGETS", "WORKER_OVERHEAD_BYTES", "cluster_size", "csv_rows",
           "evaluate_point", "frontier_table", "kv_pareto", "label", "model_nbytes", "plot_pareto", "sweep_configs",
           "worker_bytes"]

#: The practical options that FibQuant and TurboQuant get in their "+opts" rows (both alike).
BEST_OPTIONS: dict[str, Any] = {"center": "key", "norm_correction": True}
#: Target compressions of :func:`frontier_table`.
TARGETS = (4.0, 5.0, 8.0)
#: Memory of a Dask worker of :func:`kv_pareto` besides its copies of the model: Python, torch and
#: transformers (0.56 GiB measured) and the work of one point (:func:`worker_bytes`).
WORKER_OVERHEAD_BYTES = 1 << 30
#: Copies of the model that a worker holds at once while it receives the model (the frames, their
#: join, the unpickled model), and that this process holds while it sends them: 3 measured on
#: SmolLM2-135M (a worker peaked at 0.56 GiB + 3.06 x the model, this process at 2.5 x the model more).
MODEL_COPIES = 3
_GIB = float(1 << 30)
_FQ = "fibquant"
_TQ = "turboquant"
_Q = {"residual_length": 0}
#: The sweep grids: ``(method, rate settings, with_options)``; ``with_options`` is ``"best"`` (only with
#: :data:`BEST_OPTIONS`), ``"both"`` (with and without) or ``"none"`` (as given: the peers).
GRIDS: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "full": [
        (_FQ, {"block": 2, "codewords": 256}, "both"),
        (_FQ, {"block": 2, "codewords": 256, "value_codewords": 128}, "best"),
        (_FQ, {"block": 2, "codewords": 128}, "best"),
        (_FQ, {"block": 2, "codewords": 64}, "both"),
        (_FQ, {"block": 4, "codewords": 256}, "both"),
        (_FQ, {"block": 4, "codewords": 256, "value_codewords": 128}, "best"),
        (_FQ, {"block": 4, "codewords": 128}, "best"),
        (_TQ, {"bits": 4}, "both"),
        (_TQ, {"bits": 4, "value_bits": 3}, "best"),
        (_TQ, {"bits": 3}, "both"),
        (_TQ, {"bits": 3, "value_bits": 2}, "best"),
        (_TQ, {"bits": 2}, "both"),
        ("turboquant-prod", {"bits": 3}, "none"),
        ("turboquant-prod", {"bits": 4}, "none"),
        ("kivi", {"bits": 2}, "none"),
        ("kivi", {"bits": 4}, "none"),
        ("quanto", {"nbits": 2, **_Q}, "none"),
        ("quanto", {"nbits": 4, **_Q}, "none"),
        ("hqq", {"nbits": 2, **_Q}, "none"),
        ("hqq", {"nbits": 4, **_Q}, "none"),
        ("fp8", {}, "none"),
        ("fp8-tensor", {}, "none"),
    ],
    "small": [
        (_FQ, {"block": 2, "codewords": 256}, "both"),
        (_FQ, {"block": 2, "codewords": 64}, "best"),
        (_FQ, {"block": 4, "codewords": 256}, "both"),
        (_FQ, {"block": 4, "codewords": 128}, "best"),
        (_TQ, {"bits": 4}, "both"),
        (_TQ, {"bits": 3}, "best"),
        (_TQ, {"bits": 2}, "both"),
        ("turboquant-prod", {"bits": 4}, "none"),
        ("kivi", {"bits": 2}, "none"),
        ("kivi", {"bits": 4}, "none"),
        ("quanto", {"nbits": 2, **_Q}, "none"),
        ("quanto", {"nbits": 4, **_Q}, "none"),
        ("hqq", {"nbits": 2, **_Q}, "none"),
        ("hqq", {"nbits": 4, **_Q}, "none"),
        ("fp8", {}, "none"),
    ],
    "tiny": [
        (_FQ, {"block": 2, "codewords": 256}, "best"),
        (_FQ, {"block": 2, "codewords": 64}, "best"),
        (_FQ, {"block": 4, "codewords": 256}, "best"),
        (_TQ, {"bits": 4}, "both"),
        (_TQ, {"bits": 3}, "best"),
        (_TQ, {"bits": 2}, "best"),
        ("kivi", {"bits": 2}, "none"),
        ("kivi", {"bits": 4}, "none"),
        ("quanto", {"nbits": 4, **_Q}, "none"),
        ("hqq", {"nbits": 4, **_Q}, "none"),
        ("fp8", {}, "none"),
    ],
}


def sweep_configs(grid: str = "full", raw: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The ``(method, options)`` of a sweep: fp, every point of the grid, then the ``kv_sweep`` of every other KV codec.

    A codec registered later (:mod:`fibquant_theory.codecs.registry`) joins the
    sweep with the settings of its :attr:`~fibquant_theory.codecs.registry.MethodSpec.kv_sweep`.

    Parameters
    ----------
    grid : {"full", "small", "tiny"}
        Which grid of :data:`GRIDS`.
    raw : bool
        Run the ``"both"`` points also without :data:`BEST_OPTIONS` (the papers' setting).

    Returns
    -------
    list of (str, dict)
        The points, fp first.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    from fibquant_theory.codecs.registry import SPECS

    out: list[tuple[str, dict[str, Any]]] = [("fp", {})]
    for method, opts, mode in GRIDS[grid]:
        if mode in ("best", "both"):
            out.append((method, {**opts, **BEST_OPTIONS}))
        if mode == "none" or (mode == "both" and raw):
            out.append((method, dict(opts)))
    named = {method for method, _, _ in GRIDS[grid]}
    out += [(name, dict(opts)) for name, spec in SPECS.items() if spec.kv and name not in named for opts in spec.kv_sweep]
    return out


def label(method: str, options: dict[str, Any]) -> str:
    """The series name of a point on the plots: the method, ``+key-centred`` etc. for its options."""
    extras = []
    if options.get("center", "none") != "none":
        extras.append(f"{options['center']}-centred")
    if options.get("norm_correction"):
        extras.append("nc")
    if options.get("fp_layers"):
        extras.append(f"fp layers {list(options['fp_layers'])}")
    if options.get("window"):
        extras.append(f"window {options['window']}")
    if any(k.startswith("value_") for k in options):
        extras.append("own V rate")
    return method + (f" ({', '.join(extras)})" if extras else "")


def _point_key(model: str, method: str, options: dict[str, Any], texts: dict[str, int], protocol: Any) -> str:
    blob = json.dumps({"model": model, "method": method, "options": options, "texts": texts,
                       "protocol": dataclasses.asdict(protocol)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_point(context: tuple[Any, str, dict[str, Any], Any, dict[str, float]],
                   config: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One point of :func:`kv_pareto`: the :func:`~fibquant_theory.kv.evaluate.kv_eval` row, with ``label`` and ``model``.

    Parameters
    ----------
    context : tuple
        ``(model, model_name, texts, protocol, ppl_fp)``: the model, its name, the
        texts (name -> token ids), the protocol and the fp perplexities per text.
    config : tuple of (str, dict)
        The method and its options.

    Returns
    -------
    dict
        The row.
    """
    from fibquant_theory.kv.evaluate import kv_eval

    model, model_name, texts, protocol, ppl_fp = context
    method, opts = config
    row = kv_eval(method, model, texts, protocol=protocol, ppl_fp=ppl_fp, **opts)
    row["label"] = label(method, opts)
    row["model"] = model_name
    return row


def model_nbytes(model: Any) -> int:
    """The bytes of a model's parameters and buffers, each tensor counted once (tied weights are shared).

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    int
        The sum of ``numel * element_size`` over ``model.parameters()`` and ``model.buffers()``.

    Raises
    ------
    ValueError
        If ``model`` has no ``parameters`` and ``buffers`` (is not a ``torch.nn.Module``).
    """
    if not (callable(getattr(model, "parameters", None)) and callable(getattr(model, "buffers", None))):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seen: set[int] = set()
    total = 0
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def worker_bytes(model_bytes: int) -> int:
    """The memory a Dask worker of :func:`kv_pareto` needs: :data:`MODEL_COPIES` models plus :data:`WORKER_OVERHEAD_BYTES`.

    A worker receives the model pickled and unpickles it, so for a moment it holds
    the model three times (the frames received, joined, and the model); then once,
    with the work of one point, which needs less.

    Parameters
    ----------
    model_bytes : int
        The model's size in memory (:func:`model_nbytes`), ``>= 0``.

    Returns
    -------
    int
        ``MODEL_COPIES * model_bytes + WORKER_OVERHEAD_BYTES``.

    Raises
    ------
    ValueError
        If ``model_bytes`` is not an integer ``>= 0``.
    """
    return MODEL_COPIES * check_int(model_bytes, "model_bytes", minimum=0) + WORKER_OVERHEAD_BYTES


def cluster_size(n_points: int, model_bytes: int, available_bytes: int | None, cores: int) -> tuple[int, str]:
    """The size of ``kv-pareto``'s default ``LocalCluster``, and why: ``min(cores, points, workers that fit in memory)``.

    Every worker holds a copy of the model (:func:`worker_bytes` each), and while the
    model is sent to them this process holds :data:`MODEL_COPIES` more besides its own;
    so ``(available_bytes - MODEL_COPIES * model_bytes) // worker_bytes(model_bytes)``
    workers fit. When not even one fits, or the available memory is unknown, the answer
    is 0: the points run in this process, which already holds the model.

    Parameters
    ----------
    n_points : int
        Points to compute (those not in the cache), ``>= 1``.
    model_bytes : int
        The model's size in memory (:func:`model_nbytes`), ``>= 0``.
    available_bytes : int or None
        Memory available on this machine
        (:func:`~fibquant_theory.experiments.sweep.available_memory`); ``None``: unknown.
    cores : int
        CPU cores this process may use (:func:`fibquant_theory.experiments.sweep.default_workers`), ``>= 1``.

    Returns
    -------
    tuple of (int, str)
        The number of workers (0: in this process) and the reason, e.g.
        ``"min(16 cores, 23 points to compute, 7 that fit in 21.0 GiB of available memory at 2.5 GiB each: ...)"``.

    Raises
    ------
    ValueError
        If an argument is not an integer in its range.
    """
    n_points = check_int(n_points, "n_points", minimum=1)
    cores = check_int(cores, "cores", minimum=1)
    each = worker_bytes(model_bytes)
    if available_bytes is None:
        return 0, "the available memory is unknown (psutil is not installed), so no worker is known to fit"
    available_bytes = check_int(available_bytes, "available_bytes", minimum=0)
    fit = max(0, available_bytes - MODEL_COPIES * model_bytes) // each
    memory = (f"{fit} that fit in {available_bytes / _GIB:.1f} GiB of available memory at {each / _GIB:.1f} GiB each: "
              f"{MODEL_COPIES} x the {model_bytes / _GIB:.2f} GiB model + {WORKER_OVERHEAD_BYTES / _GIB:.0f} GiB, "
              f"and {MODEL_COPIES} x the model here while it is sent")
    if fit == 0:
        return 0, f"no worker fits: {memory}"
    points = f"{n_points} point{'s' * (n_points != 1)} to compute"
    return min(cores, n_points, fit), f"min({cores} core{'s' * (cores != 1)}, {points}, {memory})"


def _cached_row(path: Path) -> dict[str, Any] | None:
    """The cached row at ``path``; ``None`` when there is none or (with a ``RuntimeWarning``) it is corrupt."""
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        row = exc
    if isinstance(row, dict):
        return row
    warnings.warn(f"kv-pareto cache file {path} is corrupt ({row!r}); the point is recomputed", RuntimeWarning,
                  stacklevel=3)
    return None


def _in_process(bar: Any, func: Callable[..., dict[str, Any]], items: Sequence[Any], context: Any,
                names: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The default runner of :func:`kv_pareto`: every point here, in order, its label on the progress bar."""
    for j, item in enumerate(items):
        bar.set_postfix_str(names[j])
        yield j, func(context, item)


def kv_pareto(
    model: Any,
    model_name: str,
    texts: dict[str, Any],
    out: str | Path,
    configs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    protocol: Any = None,
    progress: bool = True,
    runner: Callable[..., Iterator[tuple[int, dict[str, Any]]]] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; write the CSV and the two plots of the model under ``out``.

    The fp perplexities are computed here; the points not in the cache are computed
    here too, one after the other, or by ``runner`` (called only when a point is
    missing, so a finished sweep starts no cluster): for instance
    ``functools.partial(map_completed, client)`` of
    :func:`fibquant_theory.experiments.sweep.map_completed`, which runs them on a Dask
    client (the model, the texts, the protocol and the fp perplexities are sent to every
    worker once). Either way each row is written to the cache as it arrives, and the
    rows, the CSV and the plots are the same.

    Parameters
    ----------
    model : transformers causal LM
    model_name : str
        Its name (file names, the point cache).
    texts : dict of str to torch.Tensor
        Text name -> token ids ``(1, n)``.
    out : str or os.PathLike
        Output folder.
    configs : sequence of (str, dict), optional
        Points (default :func:`sweep_configs` ``("full")``).
    protocol : Protocol, optional
        Default :class:`~fibquant_theory.kv.evaluate.Protocol` ``()``.
    progress : bool
        Show a progress bar over points.
    runner : callable, optional
        ``runner(func, items, context, names)`` calls ``func(context, item)`` for every
        item (anywhere) and yields ``(index, result)`` as each completes, raising with
        ``names[index]`` when one fails; default: in this process, in order.

    Returns
    -------
    list of dict
        One row per point, each with ``label``.
    """
    from fibquant_theory.kv.evaluate import Protocol, perplexity

    protocol = protocol or Protocol()
    configs = list(configs or sweep_configs())
    out = Path(out)
    cache = out / "points" / model_name
    cache.mkdir(parents=True, exist_ok=True)
    sizes = {name: int(ids.shape[1]) for name, ids in texts.items()}
    fp_path = cache / f"fp-{_point_key(model_name, 'fp-ppl', {}, sizes, protocol)}.json"
    ppl_fp = _cached_row(fp_path)
    if ppl_fp is None:
        ppl_fp = {name: perplexity(model, ids, lambda: None, protocol.ctx, protocol.stride, protocol.chunk)[0]
                  for name, ids in texts.items()}
        fp_path.write_text(json.dumps(ppl_fp))
    paths = [cache / f"{method}-{_point_key(model_name, method, opts, sizes, protocol)}.json"
             for method, opts in configs]
    rows: list[Any] = [_cached_row(path) for path in paths]
    first: dict[Path, int] = {}
    for i, row in enumerate(rows):
        if row is None:
            first.setdefault(paths[i], i)  # a repeated point is computed once
    todo = list(first.values())
    context = (model, model_name, texts, protocol, ppl_fp)
    with tqdm(total=len(configs), initial=len(configs) - len(todo), desc=f"kv-pareto {model_name}",
              disable=not progress) as bar:
        run = runner or functools.partial(_in_process, bar)
        done = run(evaluate_point, [configs[i] for i in todo], context, [label(*configs[i]) for i in todo]) if todo else ()
        for j, row in done:
            text = json.dumps(row, default=str)
            tmp = paths[todo[j]].with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(paths[todo[j]])
            rows[todo[j]] = json.loads(text)  # as a resumed sweep reads it
            bar.update(1)
    rows = [row if row is not None else json.loads(path.read_text()) for row, path in zip(rows, paths)]
    write_csv(csv_rows(rows), out / f"kv_pareto_{model_name}.csv")
    plot_pareto(rows, out / f"kv_pareto_{model_name}.png", title=f"{model_name}: {protocol.describe()}")
    return rows


def csv_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of :func:`kv_pareto` for a CSV file: per-layer lists dropped, dicts as JSON, every row with every column.

    Parameters
    ----------
    rows : sequence of dict
        The rows.

    Returns
    -------
    list of dict
        Flat rows with the same keys.
    """
    flat = flat_rows([{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()
                       if not k.endswith("_layers")} for r in rows])
    keys = list(dict.fromkeys(k for r in flat for k in r))
    return [{k: r.get(k) for k in keys} for r in flat]


def frontier_table(rows: Sequence[dict[str, Any]], targets: Sequence[float] = TARGETS,
                   tolerance: float = 0.05) -> list[dict[str, Any]]:
    """At each target compression: every series' best point within ``±tolerance``, and who dominates it.

    A point ``Q`` dominates ``P`` when it compresses at least as much, within the
    tolerance (``Q.compression >= P.compression / (1 + tolerance)``), and has a lower
    mean Δppl. A point that nothing dominates is on the frontier.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`kv_pareto`.
    targets : sequence of float
        Target compressions.
    tolerance : float
        Relative half-width of the compression band.

    Returns
    -------
    list of dict
        One row per (target, series) with a point in the band, sorted by target
        then Δppl: ``rank``, ``frontier`` (bool), ``dominated_by`` (the best
        dominating point, as ``label @ compression: Δppl (by margin ± s.d.)``, the
        s.d. combining both points' spreads over seeds; ``""`` when none).
    """
    points = [r for r in rows if r["method"] != "fp"]
    out = []
    for target in targets:
        best: dict[str, dict[str, Any]] = {}
        for r in points:
            if abs(r["compression"] / target - 1) <= tolerance:
                name = r.get("label", r["method"])
                if name not in best or r["delta_ppl_pct"] < best[name]["delta_ppl_pct"]:
                    best[name] = r
        for rank, r in enumerate(sorted(best.values(), key=lambda r: r["delta_ppl_pct"]), 1):
            rivals = [q for q in points if q is not r and q["compression"] >= r["compression"] / (1 + tolerance)
                      and q["delta_ppl_pct"] < r["delta_ppl_pct"]]
            top = min(rivals, key=lambda q: q["delta_ppl_pct"]) if rivals else None
            out.append({
                "target": target, "rank": rank, "label": r.get("label", r["method"]), "compression": r["compression"],
                "delta_ppl_pct": r["delta_ppl_pct"], "delta_ppl_pct_std": r["delta_ppl_pct_std"],
                "attn_cosine": r["attn_cosine"], "frontier": top is None,
                "dominated_by": "" if top is None else
                f"{top.get('label', top['method'])} @ {top['compression']:.2f}x: {top['delta_ppl_pct']:.2f}% "
                f"(by {r['delta_ppl_pct'] - top['delta_ppl_pct']:.2f} ± "
                f"{math.hypot(r['delta_ppl_pct_std'], top['delta_ppl_pct_std']):.2f})",
            })
    return out


def plot_pareto(rows: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Compression vs Δppl (%) and vs attention-output cosine, one series per label, error bars over seeds.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`kv_pareto` (the fp row is left out).
    path : str or os.PathLike
        The PNG file.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    series = sorted({r.get("label", r["method"]) for r in rows if r["method"] != "fp"})
    markers = "osD^v<>phX*"
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(series):
        rs = sorted((r for r in rows if r.get("label", r["method"]) == name), key=lambda r: r["compression"])
        x = [r["compression"] for r in rs]
        style = dict(marker=markers[i % len(markers)], capsize=3, label=name, color=colors[i % len(colors)],
                     linewidth=2.4 if name.startswith("fibquant") else 1.1)
        axes[0].errorbar(x, [max(r["delta_ppl_pct"], 1e-2) for r in rs], yerr=[r["delta_ppl_pct_std"] for r in rs],
                         **style)
        axes[1].errorbar(x, [r["attn_cosine"] for r in rs], yerr=[r["attn_cosine_std"] for r in rs], **style)
    axes[0].set_ylabel("perplexity increase over fp16, % (log; mean over texts and seeds)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("attention-output cosine (mean over layers)")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 32]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("compression vs the model's own fp16 cache (log)")
        ax.grid(True, which="both", alpha=0.3)
        for target in TARGETS:
            ax.axvline(target, color="grey", linestyle=":", linewidth=0.8)
    axes[1].legend(fontsize=7.5, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
