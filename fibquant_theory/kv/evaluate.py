"""One evaluation protocol for every KV-cache method on a real model: perplexity, attention fidelity, compression.

Models and texts come from :mod:`fibquant_theory.kv.models` (all offline). The
protocol (:class:`Protocol`) is the same for every method and is stated on
every table:

* **Chunked prefill.** Each window of ``ctx`` tokens starts from a fresh cache of
  the method and is fed in chunks of ``chunk`` tokens, so that every chunk
  attends over the compressed states of the earlier ones (a one-shot prefill
  would let transformers' ``QuantizedCache`` return unquantised states, and any
  cache would only ever see its own prefill). Windows follow each other with
  ``stride`` new tokens; the first ``ctx - stride`` tokens of a window are
  context only. The fp reference is the model's own ``DynamicCache`` fed the
  same way.
* **Seeds.** Methods with a random rotation (:data:`SEEDED_METHODS`) run with
  every seed of ``seeds``; the rows give the mean and the standard deviation
  over seeds. Deterministic methods run once (their spread is 0 by construction).
* **Texts.** Every text of the protocol; ``delta_ppl_pct`` is the mean over texts
  of :math:`100 (\\mathrm{ppl} - \\mathrm{ppl}_{fp}) / \\mathrm{ppl}_{fp}`.
* **Attention fidelity** (:mod:`fibquant_theory.kv.fidelity`) on the first
  ``fidelity_tokens`` tokens of the first text: output cosine, score cosine, attention KL, key/value relative MSE.
* **Compression** = the bytes of the model's own fp16 cache (sliding layers as the
  model keeps them, :func:`model_cache_bytes`) over the bytes the method's cache
  stores at the end of a window, everything counted.

Methods: ``"fp"``, every KV codec of the registry, and transformers' own
quantized caches :data:`PEER_METHODS` (``quanto``, ``hqq``, and ``fp8-tensor``,
transformers' per-tensor fp8), see :mod:`fibquant_theory.kv.quantized`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from fibquant_theory.codecs.registry import FP_METHOD, SPECS, get_spec, kv_methods  # noqa: E402
from fibquant_theory.kv.cache import CodecCache, head_dim_of, layer_windows  # noqa: E402
from fibquant_theory.kv.fidelity import FIDELITY_METRICS, attention_fidelity  # noqa: E402
from fibquant_theory.kv.models import default_text_path, load_model  # noqa: E402

__all__ = [
    "COMMON_OPTIONS",
    "PEER_METHODS",
    "PEER_OPTIONS",
    "SEEDED_METHODS",
    "Protocol",
    "all_methods",
    "attention_fidelity",
    "default_text_path",
    "greedy_generate",
    "kv_eval",
    "kv_option_names",
    "load_model",
    "make_cache_factory",
    "model_cache_bytes",
    "perplexity",
    "tokenize",
]

#: Methods whose result depends on the rotation seed (the others are deterministic).
SEEDED_METHODS = ("fibquant", "turboquant", "turboquant-prod")
#: transformers' quantized caches (method -> backend of ``QuantizedCache``).
PEER_METHODS = {"quanto": "quanto", "hqq": "hqq", "fp8-tensor": "fp8"}
#: Options of the peer methods.
PEER_OPTIONS = ("nbits", "q_group_size", "residual_length")
#: Options of :func:`make_cache_factory` that every codec method takes (the codec options come from the registry).
COMMON_OPTIONS = ("window", "fp_layers", "center", "norm_correction")


def all_methods() -> tuple[str, ...]:
    """``"fp"``, every KV codec of the registry, then :data:`PEER_METHODS`."""
    return (*kv_methods(), *PEER_METHODS)


def tokenize(tokenizer: Any, text: str, max_tokens: int | None = None) -> torch.Tensor:
    """Token ids of ``text``, shape ``(1, n)``, cut to ``max_tokens``."""
    ids = tokenizer(text, return_tensors="pt").input_ids
    if max_tokens is not None:
        ids = ids[:, :max_tokens]
    if ids.shape[1] < 2:
        raise ValueError("the text must give at least 2 tokens")
    return ids


def kv_option_names() -> list[str]:
    """Every option :func:`make_cache_factory` knows: common, peer and every KV codec's options."""
    codec = set().union(*(spec.kv_options for spec in SPECS.values() if spec.kv))
    return sorted(set(COMMON_OPTIONS) | set(PEER_OPTIONS) | codec)


def _peer_factory(method: str, config: Any, opts: dict[str, Any]) -> Callable[[], Any]:
    from fibquant_theory.kv.quantized import quantized_cache

    backend = PEER_METHODS[method]
    foreign = sorted(set(opts) - set(PEER_OPTIONS) - {"seed"})
    if foreign:
        raise ValueError(f"method {method} does not take {', '.join(foreign)} (it is transformers' QuantizedCache)")
    opts = {k: v for k, v in opts.items() if k != "seed"}
    if backend == "fp8" and opts:
        raise ValueError(f"method {method} takes no options (transformers' per-tensor fp8), got {sorted(opts)}")
    if backend != "fp8" and "nbits" not in opts:
        raise ValueError(f"method {method} needs nbits")
    quantized_cache(config, backend, **opts)
    return lambda: quantized_cache(config, backend, **opts)


def make_cache_factory(method: str, config: Any, **options: Any) -> Callable[[], Any]:
    """A function returning a fresh cache of ``method`` (``None`` for ``"fp"``: the model's own cache).

    Parameters
    ----------
    method : str
        One of :func:`all_methods`.
    config : transformers.PretrainedConfig
        The model's config.
    **options
        ``window``, ``fp_layers``, ``center``, ``norm_correction`` and the codec's
        KV options (e.g. ``block``, ``codewords``, ``value_codewords``, ``bits``,
        ``value_bits``, ``seed``) for a codec method; ``nbits``, ``q_group_size``,
        ``residual_length`` for a peer. ``None`` means "not given".

    Returns
    -------
    callable
        ``factory()`` -> a fresh cache. One is built at once, so that bad settings raise here.

    Raises
    ------
    TypeError
        An option no method takes (see :func:`kv_option_names`).
    ValueError
        An unknown method, a missing required option, an option the method does
        not take, or a setting the cache refuses.
    """
    if method not in all_methods():
        raise ValueError(f"unknown method {method!r}; choose from {all_methods()}")
    known = kv_option_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"make_cache_factory: unknown option(s) {unknown}; known: {known}")
    opts = {k: v for k, v in options.items() if v is not None}
    if method == FP_METHOD:
        return lambda: None
    if method in PEER_METHODS:
        given = sorted(set(opts) & {"window", "fp_layers", "center", "norm_correction"})
        if any(opts.get(k) not in (None, 0, (), [], "none", False) for k in given):
            raise ValueError(f"method {method} (transformers' QuantizedCache) takes no {', '.join(given)}")
        return _peer_factory(method, config, {k: v for k, v in opts.items() if k not in COMMON_OPTIONS})
    common = {k: opts.pop(k) for k in COMMON_OPTIONS if k in opts}
    spec = get_spec(method)
    foreign = sorted(set(opts) - set(spec.kv_options))
    if foreign:
        raise ValueError(f"method {method} does not take {', '.join(foreign)}")
    missing = spec.missing(list(opts), kv=True)
    if missing:
        raise ValueError(f"method {method} needs {' and '.join(' or '.join(group) for group in missing)}")
    CodecCache.from_method(config, method, **opts, **common)  # design/check the codecs once, before timing starts
    return lambda: CodecCache.from_method(config, method, **opts, **common)


def model_cache_bytes(config: Any, tokens: int, batch: int = 1) -> int:
    """Bytes of the model's own fp16 KV cache after ``tokens`` tokens (sliding layers keep ``W - 1``)."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)
    per_token = 2 * 2 * batch * heads * head_dim_of(config)
    return sum(per_token * (tokens if w is None else min(tokens, w - 1)) for w in layer_windows(config))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation protocol, the same for every method (see the module docstring).

    Attributes
    ----------
    ctx, stride : int
        Window length and new tokens per window (``1 <= stride <= ctx``).
    chunk : int
        Prefill chunk (``1 <= chunk``).
    seeds : tuple of int
        Rotation seeds of :data:`SEEDED_METHODS`.
    fidelity_tokens : int
        Length of the attention-fidelity window (the first tokens of the first text, at most ``ctx``).
    """

    ctx: int = 1024
    stride: int = 1024
    chunk: int = 128
    seeds: tuple[int, ...] = (0, 1, 2)
    fidelity_tokens: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.stride <= self.ctx:
            raise ValueError(f"need 1 <= stride <= ctx, got stride={self.stride}, ctx={self.ctx}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if not self.seeds:
            raise ValueError("the protocol needs at least one seed")
        if self.fidelity_tokens < 2:
            raise ValueError(f"fidelity_tokens must be >= 2, got {self.fidelity_tokens}")

    def describe(self) -> str:
        """One line for tables."""
        return (f"windows of {self.ctx} tokens (stride {self.stride}), prefill in chunks of {self.chunk}, "
                f"seeds {list(self.seeds)}, fidelity on the first {min(self.fidelity_tokens, self.ctx)} tokens")


@torch.no_grad()
def perplexity(
    model: Any,
    ids: torch.Tensor,
    make_cache: Callable[[], Any],
    ctx: int = 1024,
    stride: int = 1024,
    chunk: int | None = 128,
    progress: bool = False,
) -> tuple[float, float]:
    """Windowed perplexity with chunked prefill; returns ``(ppl, compression)`` (compression ``nan`` for fp).

    Parameters
    ----------
    model : transformers causal LM
    ids : torch.Tensor
        Token ids, shape ``(1, n)``.
    make_cache : callable
        Returns a fresh cache per window (``None``: the model's own ``DynamicCache``).
    ctx, stride : int
        Window length and new tokens per window (``1 <= stride <= ctx``).
    chunk : int or None
        Tokens per forward call (``None``: the whole window at once).
    progress : bool
        Show a progress bar over windows.

    Returns
    -------
    (float, float)
        The perplexity, and the mean over windows of :func:`model_cache_bytes` over
        the cache's ``memory_bytes()`` at the window's end.
    """
    from transformers.cache_utils import DynamicCache

    if not 1 <= stride <= ctx:
        raise ValueError(f"need 1 <= stride <= ctx, got stride={stride}, ctx={ctx}")
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"ids must have shape (batch, n >= 2), got {tuple(ids.shape)}")
    n = ids.shape[1]
    step = ctx if chunk is None else int(chunk)
    nll, count, prev_end, ratios = 0.0, 0, 0, []
    starts = list(range(0, n, stride))
    for begin in tqdm(starts, desc="perplexity", disable=not progress, leave=False):
        end = min(begin + ctx, n)
        first_target = max(prev_end, begin + 1)  # the first token scored in this window
        made = make_cache()
        cache = DynamicCache(config=model.config) if made is None else made
        for s in range(begin, end, step):
            e = min(s + step, end)
            logits = model(ids[:, s:e], cache=cache, use_cache=True).logits
            # the logit at position p predicts token p + 1
            pos = torch.arange(s, e)
            keep = (pos + 1 >= first_target) & (pos + 1 < end)
            if keep.any():
                rows = logits[:, keep].double()
                targets = ids[:, pos[keep] + 1]
                lp = torch.log_softmax(rows, dim=-1).gather(-1, targets[..., None])
                nll -= float(lp.sum())
                count += int(targets.numel())
        if made is not None:
            ratios.append(model_cache_bytes(model.config, end - begin, ids.shape[0]) / made.memory_bytes())
        prev_end = end
        if end == n:
            break
    return math.exp(nll / count), (float(np.mean(ratios)) if ratios else float("nan"))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def kv_eval(
    method: str,
    model: Any,
    texts: dict[str, torch.Tensor] | torch.Tensor,
    *,
    protocol: Protocol | None = None,
    ppl_fp: dict[str, float] | None = None,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate one cache method under the protocol: perplexity on every text and seed, fidelity, compression.

    Parameters
    ----------
    method : str
        One of :func:`all_methods`.
    model : transformers causal LM
    texts : dict of str to torch.Tensor, or torch.Tensor
        Text name -> token ids ``(1, n)`` (a bare tensor is the text ``"text"``).
    protocol : Protocol, optional
        Default :class:`Protocol` ``()``.
    ppl_fp : dict, optional
        The fp perplexity of every text (computed when not given).
    progress : bool
        Show progress bars.
    **options
        The method's options (see :func:`make_cache_factory`); a ``seed`` is set by the protocol.

    Returns
    -------
    dict
        ``method``, the options, ``compression`` (mean over seeds), per text
        ``ppl_fp:<text>``, ``ppl:<text>`` and ``ppl_std:<text>``, ``delta_ppl_pct``
        and ``delta_ppl_pct_std`` (over seeds), every metric of
        :data:`~fibquant_theory.kv.fidelity.FIDELITY_METRICS` with its ``_std``,
        ``attn_cosine_min``, ``seeds`` and the protocol's settings.
    """
    protocol = protocol or Protocol()
    if isinstance(texts, torch.Tensor):
        texts = {"text": texts}
    if "seed" in options and options["seed"] is not None:
        raise TypeError("kv_eval: the seeds come from the protocol (Protocol.seeds), not a seed option")
    options = {k: v for k, v in options.items() if k != "seed"}
    seeds = protocol.seeds if method in SEEDED_METHODS else protocol.seeds[:1]
    if ppl_fp is None:
        ppl_fp = {name: perplexity(model, ids, lambda: None, protocol.ctx, protocol.stride, protocol.chunk)[0]
                  for name, ids in texts.items()}
    per_seed: list[dict[str, Any]] = []
    for seed in tqdm(seeds, desc=f"{method} seeds", disable=not progress or len(seeds) == 1, leave=False):
        seeded = {**options, "seed": seed} if method in SEEDED_METHODS else options
        factory = make_cache_factory(method, model.config, **seeded)
        rec: dict[str, Any] = {"ppl": {}, "ratio": []}
        for name, ids in texts.items():
            if method == FP_METHOD:
                ppl, ratio = ppl_fp[name], 1.0
            else:
                ppl, ratio = perplexity(model, ids, factory, protocol.ctx, protocol.stride, protocol.chunk, progress)
            rec["ppl"][name] = ppl
            rec["ratio"].append(ratio)
        first = next(iter(texts.values()))
        rec["fid"] = attention_fidelity(model, first[:, : min(protocol.ctx, protocol.fidelity_tokens)], factory,
                                        protocol.chunk)
        per_seed.append(rec)
    row: dict[str, Any] = {"method": method, **{k: v for k, v in options.items()}}
    row.setdefault("window", 0)
    row["fp_layers"] = list(row.get("fp_layers", []) or [])
    if method not in PEER_METHODS:
        row.setdefault("center", "none")
        row.setdefault("norm_correction", False)
    row["compression"] = float(np.mean([np.mean(r["ratio"]) for r in per_seed]))
    deltas = []
    for r in per_seed:
        deltas.append(float(np.mean([100.0 * (r["ppl"][t] - ppl_fp[t]) / ppl_fp[t] for t in texts])))
    for name in texts:
        row[f"ppl_fp:{name}"] = ppl_fp[name]
        row[f"ppl:{name}"], row[f"ppl_std:{name}"] = _mean_std([r["ppl"][name] for r in per_seed])
    row["delta_ppl_pct"], row["delta_ppl_pct_std"] = _mean_std(deltas)
    for m in FIDELITY_METRICS:
        row[m], row[f"{m}_std"] = _mean_std([r["fid"][m] for r in per_seed])
    row["attn_cosine_min"] = float(np.min([r["fid"]["attn_cosine_min"] for r in per_seed]))
    row["attn_cosine_layers"] = [float(x) for x in np.mean([r["fid"]["attn_cosine_layers"] for r in per_seed], axis=0)]
    row["seeds"] = len(seeds)
    row["tokens"] = {name: int(ids.shape[1]) for name, ids in texts.items()}
    row.update({"ctx": protocol.ctx, "stride": protocol.stride, "chunk": protocol.chunk})
    return row


@torch.no_grad()
def greedy_generate(model: Any, tokenizer: Any, prompt: str, cache: Any = None, max_new_tokens: int = 40,
                    num_beams: int = 1) -> str:
    """Greedy (or beam-search) continuation of ``prompt`` with the given cache (``None``: fp); returns the new text."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    kwargs = {} if cache is None else {"cache": cache}
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = tokenizer.eos_token_id if pad is None else pad
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams,
                         pad_token_id=pad, **kwargs)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
