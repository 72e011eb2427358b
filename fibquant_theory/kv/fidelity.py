r"""Attention fidelity of a compressed KV cache, measured through transformers' attention interface.

One fp forward pass over a window runs with a probe attention function
(registered with :class:`transformers.AttentionInterface` and
:class:`transformers.masking_utils.AttentionMaskInterface` under the name
:data:`PROBE`, the model's own implementation computing what the model uses, so
the fp forward is unchanged). In every attention layer the probe feeds the fp
keys and values of the window, in the protocol's chunks, into a fresh layer of
the cache under test, exactly as chunked prefill does, and for each chunk of
queries compares attention over the states that layer returns with attention
over the fp states of the same positions. The queries and the residual stream
stay fp, so errors do not compound across layers: this measures the cache, not
the model's reaction to it.

The mask is causal, and on a sliding-window layer (the ``sliding_window`` the
layer passes) query :math:`i` sees key :math:`j` iff :math:`0 \le i-j < W`. The
window is one unpadded sequence (batch 1 in the protocol; a larger batch is
taken as unpadded rows). Scores are :math:`s_{ij} = \text{scaling}\cdot
\langle q_i, k_j\rangle` (soft-capped where the layer soft-caps), in float64,
with grouped-query heads expanded.

Metrics (per layer, then averaged over layers; :func:`summarize` also keeps the
per-layer lists and the minimum over layers):

* ``score_cosine``: cosine between the rows :math:`(s_{ij})_j` and
  :math:`(\hat s_{ij})_j` over the visible keys, averaged over queries and heads.
  Common offsets inflate it (a shared key component adds the same vector to every row).
* ``weight_cosine``: cosine between the softmax rows :math:`p_i` and :math:`\hat p_i`,
  averaged over queries and heads. Peaked rows (attention sinks) keep it high.
* ``attn_kl``: :math:`\mathrm{KL}(p_i \,\|\, \hat p_i)` in nats between the
  softmax rows, averaged over queries and heads.
* ``attn_cosine``: cosine between the attention outputs of a token (all heads
  concatenated), averaged over tokens.
* ``score_cosine`` is the highest of the three cosines at every rate measured on
  SmolLM2-135M (0.996 / 0.950 / 0.830 / 0.49 at 3.8x / 7.1x / 12.8x / 34x, against
  0.986 / 0.848 / 0.595 / 0.34 for the output cosine), so it is the most likely
  reading of the FibQuant paper's "0.946 attention cosine similarity at 34x" on
  GPT-2; none of them comes near 0.946 at 34x on SmolLM2 (page "KV caches on real models").
* ``key_mse`` / ``value_mse``: :math:`\sum\|k-\hat k\|^2 / \sum\|k\|^2` over the
  states the layer returns for the window's last chunk (every stored position of
  a full layer).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["FIDELITY_METRICS", "PROBE", "attention_fidelity", "summarize"]

#: Name of the probe under :class:`transformers.AttentionInterface`.
PROBE = "fibquant-probe"

#: The per-layer metrics, averaged over layers in :func:`attention_fidelity`.
FIDELITY_METRICS = ("attn_cosine", "score_cosine", "weight_cosine", "attn_kl", "key_mse", "value_mse")


def _expand(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Grouped-query key/value heads ``(b, h_kv, t, d)`` repeated to ``heads``."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scaling: float,
            softcap: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores ``(b, h, q, t)`` (masked entries 0), softmax weights and outputs ``(b, q, h*d)``, float64."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scaling
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    logits = s.masked_fill(~allowed, -math.inf)
    w = torch.softmax(logits, dim=-1)
    out = torch.matmul(w, v)
    return s.masked_fill(~allowed, 0.0), w, out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def _row_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-300)


class _Recorder:
    """Runs the chunked comparison of one attention call and keeps the sums per layer."""

    def __init__(self, probe: Any, chunk: int | None) -> None:
        self.probe, self.chunk = probe, chunk
        self.sums: dict[int, dict[str, float]] = {}

    def __call__(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: Any) -> None:
        layer = self.probe.layers[module.layer_idx]
        b, hq, t, _ = query.shape
        q = query.detach().to(torch.float64)
        k_fp, v_fp = key.detach().to(torch.float64), value.detach().to(torch.float64)
        scaling = float(kwargs.get("scaling") or query.shape[-1] ** -0.5)
        softcap = kwargs.get("softcap")
        window = kwargs.get("sliding_window")
        step = t if self.chunk is None else self.chunk
        rec = self.sums.setdefault(module.layer_idx, dict.fromkeys(
            ("out_cos", "out_n", "score_cos", "weight_cos", "kl", "rows", "k_err", "k_ref", "v_err", "v_ref"), 0.0))
        last = None
        for s in range(0, t, step):
            e = min(s + step, t)
            k_ret, v_ret = layer.update(key[..., s:e, :], value[..., s:e, :])
            n = k_ret.shape[-2]
            pos = torch.arange(e - n, e)
            rows = torch.arange(s, e)
            allowed = pos[None, :] <= rows[:, None]
            if window is not None:
                allowed &= rows[:, None] - pos[None, :] < int(window)
            allowed = allowed[None, None]
            qc = q[:, :, s:e, :]
            kf, vf = _expand(k_fp[..., e - n : e, :], hq), _expand(v_fp[..., e - n : e, :], hq)
            kh = _expand(k_ret.detach().to(torch.float64), hq)
            vh = _expand(v_ret.detach().to(torch.float64), hq)
            s_fp, w_fp, o_fp = _attend(qc, kf, vf, allowed, scaling, softcap)
            s_h, w_h, o_h = _attend(qc, kh, vh, allowed, scaling, softcap)
            rec["out_cos"] += float(_row_cosine(o_fp, o_h).sum())
            rec["out_n"] += b * (e - s)
            rec["score_cos"] += float(_row_cosine(s_fp, s_h).sum())
            rec["weight_cos"] += float(_row_cosine(w_fp, w_h).sum())
            log_ratio = torch.where(w_fp > 0, torch.log(w_fp) - torch.log(w_h.clamp_min(1e-300)), torch.zeros_like(w_fp))
            rec["kl"] += float((w_fp * log_ratio).sum())
            rec["rows"] += b * hq * (e - s)
            last = (k_fp[..., e - n : e, :], v_fp[..., e - n : e, :], k_ret, v_ret)
        if last is not None:
            kf, vf, kh, vh = last
            rec["k_err"] += float(((kf - kh.to(torch.float64)) ** 2).sum())
            rec["k_ref"] += float((kf**2).sum())
            rec["v_err"] += float(((vf - vh.to(torch.float64)) ** 2).sum())
            rec["v_ref"] += float((vf**2).sum())


@contextlib.contextmanager
def _probing(model: Any, recorder: _Recorder) -> Iterator[None]:
    """Register the probe, switch the model to it, and switch back afterwards."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = model.config._attn_implementation or "eager"
    original = ALL_ATTENTION_FUNCTIONS[impl] if impl in ALL_ATTENTION_FUNCTIONS else None
    if impl not in ALL_MASK_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention fidelity: the model's attention implementation {impl!r} has no mask function")

    def probe(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        recorder(module, query, key, value, **kwargs)
        if original is not None:
            return original(module, query, key, value, attention_mask, **kwargs)
        return _eager(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(PROBE, probe)
    AttentionMaskInterface.register(PROBE, ALL_MASK_ATTENTION_FUNCTIONS[impl])
    model.set_attn_implementation(PROBE)
    try:
        yield
    finally:
        model.set_attn_implementation(impl)


def _eager(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           attention_mask: torch.Tensor | None, scaling: float | None = None, softcap: float | None = None,
           **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain attention for models whose implementation is ``"eager"`` (not in the attention interface)."""
    heads = query.shape[1]
    k, v = _expand(key, heads), _expand(value, heads)
    s = torch.matmul(query, k.transpose(-1, -2)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[..., : k.shape[-2]]
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask
    w = torch.softmax(s.float(), dim=-1).to(query.dtype)
    return torch.matmul(w, v).transpose(1, 2).contiguous(), w


def summarize(sums: dict[int, dict[str, float]], n_layers: int) -> dict[str, Any]:
    """Per-layer metrics from the probe's sums, their mean over layers and their worst layer.

    Parameters
    ----------
    sums : dict
        Layer index -> sums of the probe (layers the probe never saw count as exact).
    n_layers : int
        Layers of the model.

    Returns
    -------
    dict
        ``<metric>`` (mean over layers), ``<metric>_layers`` (per layer) for every
        metric of :data:`FIDELITY_METRICS`, and ``attn_cosine_min``.
    """
    per: dict[str, list[float]] = {m: [] for m in FIDELITY_METRICS}
    for i in range(n_layers):
        r = sums.get(i)
        if r is None or not r["out_n"]:
            vals = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)
        else:
            vals = (r["out_cos"] / r["out_n"], r["score_cos"] / r["rows"], r.get("weight_cos", 0.0) / r["rows"],
                    r["kl"] / r["rows"],
                    r["k_err"] / r["k_ref"] if r["k_ref"] else 0.0, r["v_err"] / r["v_ref"] if r["v_ref"] else 0.0)
        for m, v in zip(FIDELITY_METRICS, vals):
            per[m].append(float(v))
    out: dict[str, Any] = {m: float(np.mean(per[m])) for m in FIDELITY_METRICS}
    out["attn_cosine_min"] = float(np.min(per["attn_cosine"]))
    out.update({f"{m}_layers": per[m] for m in FIDELITY_METRICS})
    return out


@torch.no_grad()
def attention_fidelity(model: Any, ids: torch.Tensor, make_cache: Callable[[], Any], chunk: int | None = None) -> dict[str, Any]:
    """Attention fidelity of the cache ``make_cache()`` on one window ``ids``.

    Parameters
    ----------
    model : transformers causal LM
    ids : torch.Tensor
        Token ids of the window, shape ``(1, n)``.
    make_cache : callable
        Returns a fresh cache of the method under test (``None``: fp, exact by definition).
    chunk : int, optional
        Tokens per prefill chunk (``None``: the whole window at once).

    Returns
    -------
    dict
        See :func:`summarize`.
    """
    n_layers = int(model.config.get_text_config(decoder=True).num_hidden_layers)
    probe = make_cache()
    if probe is None:
        return summarize({}, n_layers)
    recorder = _Recorder(probe, chunk)
    with _probing(model, recorder):
        model(ids, use_cache=False, logits_to_keep=1)  # the probe needs the attention layers, not the logits
    return summarize(recorder.sums, n_layers)
