"""A transformers cache of FibQuant codes on the GPU, and the attention function that reads them.

:class:`GPUCodecCache` is the GPU counterpart of
:class:`~fibquant_theory.kv.cache.CodecCache` for the ``"fibquant"`` method:
its layers (:mod:`~fibquant_theory.kv.gpu_layers`) keep the packed records in
preallocated device buffers of ``max_cache_len`` tokens per head, like
transformers' ``StaticCache``; new tokens are encoded on the GPU
(:class:`~fibquant_theory.gpu.codec.GPUFibQuantCodec`) as they are appended;
a decoding step (``q_len == 1``) computes attention straight from the codes with
the decode-attention kernel (grouped-query heads read their key/value head;
sliding-window layers attend over a ring of ``W`` slots), and nothing on that
path reads the device from the host, so the step can be captured in a CUDA
graph. A prefill decodes the stored records and runs SDPA with the model's mask.

The attention function is registered with transformers under :data:`ATTENTION`
(:func:`register_attention`; :func:`use_gpu_attention` also switches a model to
it). It runs decode-attention for the layers of this cache at ``q_len == 1`` and
transformers' SDPA otherwise, so the model works with any other cache too.

Options as in :class:`~fibquant_theory.kv.cache.CodecCache`: ``fp_layers``,
``center`` (key centring needs nothing at decode time: it shifts every score of
a query by the same amount; the value mean is added to the output), keys and
values at their own rates (``value_codewords=...``: that layer then decodes its
slots and runs SDPA masked on the device, since the kernel reads one codebook).
``window = W > 0`` keeps the last ``W`` tokens of every codec layer in fp16
(:mod:`~fibquant_theory.kv.gpu_window`: a decoding step attends over the codes and
the window and merges the two exactly), for full-attention layers with keys and values
at one rate. Refused with ``ValueError``: ``window > 0`` with sliding-window layers or
two rates, ``norm_correction``, methods other than ``"fibquant"``, the clustered
encoder, mixed-radix packing, records that are not a whole number of bytes.

With the same codec options, the float64 GPU encoder (``precision="float64"``, the
default) writes the CPU cache's bytes, so the GPU cache stores the CPU cache's
codes (a centred token: when ``x - mean`` is exact in float32, which it is unless
the two differ by 13 binades or more).

Limits: a padded batch is not masked on the decode path (all rows are read up
to the same length); no crop, beam search or batch selection; the decoding
step records bad data for :meth:`GPUCodecCache.check_errors` instead of raising;
CUDA-graph replays advance the device counters only (the host count
:meth:`~GPUCodecCache.get_seq_length` stays at the captured step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache

from fibquant_theory.codecs.registry import get_spec, make_codec
from fibquant_theory.kv.cache import check_fp_layers, head_dim_of, layer_windows, n_layers_of
from fibquant_theory.kv.layers import CENTER_MODES, check_count
from fibquant_theory.kv.gpu_layers import GPUCodecLayer, GPUFp16Layer
from fibquant_theory.kv.gpu_window import GPUWindowCodecLayer

__all__ = ["ATTENTION", "GPUCodecCache", "fibquant_attention", "register_attention", "use_gpu_attention"]

#: The name the attention function is registered under (``config._attn_implementation``).
ATTENTION = "fibquant_gpu"


def fibquant_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: decode-attention from codes at ``q_len == 1``, else SDPA.

    Parameters
    ----------
    module : torch.nn.Module
        The attention module.
    query : torch.Tensor
        ``(batch, heads, q_len, head_dim)``.
    key, value : torch.Tensor
        What the cache's ``update`` returned: a decoding step of :class:`GPUCodecCache`
        returns the new states tagged with their layer; anything else is attended by SDPA.
    attention_mask : torch.Tensor or None
        The model's mask (SDPA path only).
    dropout : float
        Must be 0 on the code path.
    scaling : float, optional
        Softmax scale.
    **kwargs
        Passed to transformers' SDPA function.

    Returns
    -------
    tuple
        ``(output (batch, q_len, heads, head_dim), None)``.
    """
    layer = getattr(key, "_fibquant_layer", None)
    if layer is not None and query.shape[2] == 1:
        if dropout:
            raise ValueError("the GPU cache's decode-attention has no dropout (use model.eval())")
        return layer.attend(query, scaling), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def register_attention() -> str:
    """Register :func:`fibquant_attention` (and SDPA's mask) with transformers under :data:`ATTENTION`.

    Returns
    -------
    str
        :data:`ATTENTION`, to pass as ``attn_implementation``.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, fibquant_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
    return ATTENTION


def use_gpu_attention(model: Any) -> Any:
    """Register the attention function and switch ``model`` to it (in place).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The model.

    Returns
    -------
    transformers.PreTrainedModel
        ``model``.
    """
    name = register_attention()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:  # pragma: no cover - older transformers
        model.config._attn_implementation = name
    return model


def _gpu_codec(codec: Any, precision: str, options: Any, role: str) -> Any:
    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    gpu = GPUFibQuantCodec(codec, precision=precision, options=options)
    if gpu.bits_per_vector % 8:
        raise ValueError(
            f"the {role} records are {gpu.bits_per_vector} bits; the GPU cache writes whole bytes per token "
            "(pick block/codewords with 16 + (d/k) log2 N a multiple of 8, e.g. block=8, codewords=256)"
        )
    return gpu


class GPUCodecCache(Cache):
    """FibQuant keys and values in preallocated GPU buffers, attended from the codes at decoding steps.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config (layers, head dimension, layer types). The model must
        use the attention function :data:`ATTENTION` (:func:`use_gpu_attention`).
    max_cache_len : int
        Tokens per head that a full-attention layer holds (prefill and generated).
    key_options : dict
        Options of the ``"fibquant"`` key codec (e.g. ``{"block": 8, "codewords": 256,
        "rotation": "hadamard"}``).
    value_options : dict, optional
        Options of the value codec (default: the keys'; the same options share one codec).
    fp_layers : sequence of int
        Layers kept uncompressed (``-n_layers <= i < n_layers``).
    center : {"none", "key", "value", "both"}
        As in :class:`~fibquant_theory.kv.cache.CodecCache`.
    window : int
        The most recent ``window`` tokens of every codec layer stay in fp16
        (:class:`~fibquant_theory.kv.gpu_window.GPUWindowCodecLayer`, the CPU cache's
        ``window``): full-attention layers and one rate for keys and values only
        (``ValueError`` otherwise).
    norm_correction : bool
        Must be ``False`` (not supported on the GPU: ``ValueError``).
    precision : {"float64", "float32"}
        The GPU encoder's arithmetic (``"float64"``: the CPU codec's codes).
    options : GPUOptions, optional
        Kernel options of the GPU codecs.

    Raises
    ------
    ValueError
        An unsupported option, a bad ``center``, ``fp_layers`` or ``max_cache_len``.
    TypeError
        A non-integer ``max_cache_len`` or layer index.
    """

    def __init__(
        self,
        config: Any,
        max_cache_len: int,
        key_options: dict[str, Any],
        value_options: dict[str, Any] | None = None,
        *,
        fp_layers: Sequence[int] = (),
        center: str = "none",
        window: int = 0,
        norm_correction: bool = False,
        precision: str = "float64",
        options: Any = None,
    ) -> None:
        capacity = check_count(max_cache_len, "max_cache_len", 1)
        window = check_count(window, "window", 0)
        if norm_correction is not False:
            raise ValueError("norm_correction is not supported by the GPU cache's kernels")
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        n_layers, d = n_layers_of(config), head_dim_of(config)
        fp = check_fp_layers(fp_layers, n_layers)
        value_options = dict(key_options if value_options is None else value_options)
        for role, opts in (("key", key_options), ("value", value_options)):
            if opts.get("encoder", "exhaustive") not in ("exhaustive", "two-stage"):
                raise ValueError(f"the GPU cache's {role} encoder must be 'exhaustive' or 'two-stage'")
        key_gpu = _gpu_codec(make_codec("fibquant", d, **key_options), precision, options, "key")
        value_gpu = key_gpu if value_options == dict(key_options) else _gpu_codec(
            make_codec("fibquant", d, **value_options), precision, options, "value")
        windows = layer_windows(config)
        if window and value_gpu is not key_gpu:
            raise ValueError("window > 0 on the GPU needs keys and values at one rate (one codec)")
        if window and any(w is not None for i, w in enumerate(windows) if i not in fp):
            raise ValueError("window > 0 on the GPU is for full-attention layers; this model has sliding-window layers "
                             "(use window=0, or CodecCache on the CPU)")
        self.config = config
        self.settings = {
            "method": "fibquant", "key": {"method": "fibquant", **key_options},
            "value": {"method": "fibquant", **value_options}, "window": window, "fp_layers": fp, "head_dim": d, "chunk": 1,
            "center": center, "norm_correction": False, "max_cache_len": capacity, "precision": precision,
            "sliding_layers": [i for i, w in enumerate(windows) if w is not None],
        }
        self.key_codec, self.value_codec = key_gpu, value_gpu
        layers: list[Any] = []
        for i, w in enumerate(windows):
            if i in fp:
                layers.append(GPUFp16Layer(capacity, w))
            elif window:
                layers.append(GPUWindowCodecLayer(key_gpu, capacity, window, center))
            else:
                layers.append(GPUCodecLayer(key_gpu, value_gpu, capacity, w, center))
        super().__init__(layers=layers)

    @classmethod
    def from_method(
        cls,
        config: Any,
        max_cache_len: int,
        method: str = "fibquant",
        *,
        fp_layers: Sequence[int] = (),
        center: str = "none",
        window: int = 0,
        precision: str = "float64",
        options: Any = None,
        **method_options: Any,
    ) -> GPUCodecCache:
        """The GPU cache of ``method`` (only ``"fibquant"``), its options read as :meth:`CodecCache.from_method` reads them.

        Parameters
        ----------
        config : transformers.PretrainedConfig
            The model's config.
        max_cache_len : int
            Tokens per head of a full-attention layer.
        method : str
            ``"fibquant"`` (anything else: ``ValueError``).
        fp_layers, center, window, precision, options
            As in :class:`GPUCodecCache`.
        **method_options
            The method's KV options, e.g. ``block=8, codewords=256, rotation="hadamard"``
            and ``value_codewords=...`` for the values' own rate.

        Returns
        -------
        GPUCodecCache
            The cache.
        """
        if method != "fibquant":
            raise ValueError(f"the GPU cache stores FibQuant codes only, not {method!r}")
        key, value, _ = get_spec(method).kv_codec_options(method_options, owner=f"{cls.__name__}.from_method")
        return cls(config, max_cache_len, key, value, fp_layers=fp_layers, center=center, window=window, precision=precision,
                   options=options)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the states of layer ``layer_idx`` (see :mod:`~fibquant_theory.kv.gpu_layers`).

        Parameters
        ----------
        key_states, value_states : torch.Tensor
            ``(batch, kv_heads, q_len, head_dim)`` on the cache's device.
        layer_idx : int
            The layer.
        *args, **kwargs
            Ignored (transformers' cache arguments).

        Returns
        -------
        tuple of torch.Tensor
            The states to attend over (prefill), or the new states tagged for :func:`fibquant_attention`.

        Raises
        ------
        RuntimeError
            The model does not use :data:`ATTENTION` (it would attend over the new token only).
        """
        impl = getattr(self.config, "_attn_implementation", None)
        if key_states.shape[-2] == 1 and impl != ATTENTION:
            raise RuntimeError(
                f"GPUCodecCache needs the model's attention implementation {ATTENTION!r} "
                f"(fibquant_theory.kv.gpu_cache.use_gpu_attention(model)), got {impl!r}"
            )
        return self.layers[layer_idx].update(key_states, value_states)

    def check_errors(self) -> None:
        """Raise ``ValueError`` if a decoding step since the last check encoded NaN/Inf or an overflowing norm.

        Returns
        -------
        None
            Returns normally when no step saw bad data (the record is reset).
        """
        for codec in {id(c): c for c in (self.key_codec, self.value_codec)}.values():
            codec.check_errors(torch.cuda.current_stream() if torch.cuda.is_available() else None)

    def memory_bytes(self) -> int:
        """Bytes allocated on the device: code buffers, float16 means, fp layers."""
        return sum(layer.memory_bytes() for layer in self.layers)

    def fp16_bytes(self) -> int:
        """Bytes of a transformers ``StaticCache`` in fp16 with the same capacity and sliding windows."""
        return sum(layer.fp16_bytes() for layer in self.layers)

    def compression_ratio(self) -> float:
        """``fp16_bytes() / memory_bytes()`` (``nan`` before the first update)."""
        mem = self.memory_bytes()
        return self.fp16_bytes() / mem if mem else float("nan")
