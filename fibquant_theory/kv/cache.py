"""Hugging Face ``transformers`` caches that store keys and values as codec codes.

``model(..., past_key_values=CodecCache.from_method(model.config, "fibquant", block=8, codewords=256))``
and ``model.generate(..., past_key_values=...)`` work like with a ``DynamicCache``,
but every layer keeps only the codes (packed indices + norm headers) of its keys and
values, plus an optional full-precision window of the most recent tokens; the
tensors that attention reads are decoded from the codes at every read.

One cache class serves every registered method
(:data:`~fibquant_theory.codecs.registry.SPECS`):
:meth:`CodecCache.from_method` builds the key and value codecs of a method from
its options (``value_<rate option>``, e.g. ``value_bits``, gives the values
their own rate; a method's spec may set its codecs up per role, e.g. KIVI's
per-channel keys in groups of ``group_size`` tokens and per-token values), and
the :class:`CodecCache` constructor takes any two methods and their codec options.

Options (both default *off*, and every table states them):

* ``window``: the most recent ``window`` tokens of every layer stay in fp16;
  older ones are encoded when they leave the window.
* ``fp_layers``: indices of layers that are not compressed at all (e.g. ``(0, -1)``);
  ``-n_layers <= i < n_layers``, anything else raises ``ValueError``.
* ``center``: ``"key"``, ``"value"`` or ``"both"`` removes a per-head mean from the
  keys and/or values before they are encoded and adds it back when they are read.
  The mean is taken over the tokens of the layer's first encoded chunk (the
  prefill), rounded to fp16, stored (and counted) once per layer and head, and kept
  for all later tokens. Keys of real models carry a large common component (on
  SmolLM2-135M it is 59 % of the key energy); since the codecs' error scales
  with the norm of what they encode, removing it lowers the error. A common key
  offset shifts every attention score of a query by the same amount, so softmax
  would not even need it back; it is added back so that the cache returns the
  keys themselves.

* ``norm_correction``: rescale every decoded vector to the norm stored in its
  header (vLLM's "nc"); only for methods that store a norm (FibQuant, TurboQuant).

Layer types come from the model's config (``layer_types`` / ``sliding_window``,
read with transformers' ``get_layer_types_and_kwargs``): a sliding-window layer
keeps, as the model's own cache does, only the last ``W - 1`` tokens (see
:mod:`fibquant_theory.kv.layers`), and :meth:`CodecCache.fp16_bytes` is the size
of the model's own fp16 cache, sliding layers counted as the model keeps them.

Memory is accounted by :meth:`CodecCache.memory_bytes` (the bytes of the stored
codes, norms and fp16 windows) against :meth:`CodecCache.fp16_bytes`.

The fp window holds 16-bit states as given (``float16`` and ``bfloat16`` model
caches store exactly that) and rounds wider states to ``float16``, the precision
it is counted at; a value that ``float16`` cannot hold is refused with a
``ValueError`` rather than turned into ``inf``.

The batch operations of generation (:meth:`CodecLayer.reorder_cache` for beam
search, :meth:`~CodecLayer.batch_select_indices`,
:meth:`~CodecLayer.batch_repeat_interleave`) and :meth:`CodecLayer.crop` act on
the stored codes themselves (:func:`~fibquant_theory.kv.codes.take_codes`): the
codes are indexed, never decoded and re-encoded, so no token is quantized twice.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from transformers.cache_utils import Cache, get_layer_types_and_kwargs

from fibquant_theory.codecs.registry import FP_METHOD, SPECS, get_spec, make_codec
from fibquant_theory.kv.codes import codes_nbytes, stored_norms, take_codes
from fibquant_theory.kv.layers import CENTER_MODES, CodecLayer, Fp16Layer, Fp16SlidingLayer, check_count

__all__ = [
    "CENTER_MODES",
    "CodecCache",
    "CodecLayer",
    "check_fp_layers",
    "codes_nbytes",
    "head_dim_of",
    "layer_windows",
    "n_layers_of",
    "take_codes",
]


def head_dim_of(config: Any) -> int:
    """Per-head dimension of a transformers config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    hd = getattr(config, "head_dim", None)
    return int(hd) if hd else int(config.hidden_size // config.num_attention_heads)


def n_layers_of(config: Any) -> int:
    """Number of decoder layers of a transformers config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return int(config.num_hidden_layers)


def layer_windows(config: Any) -> list[int | None]:
    """The attention window of every layer: ``None`` for full attention, ``W`` for a sliding-window layer.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config (its text config is used).

    Returns
    -------
    list of (int or None)
        One entry per layer.

    Raises
    ------
    ValueError
        A layer type the codec caches do not handle (chunked attention, linear attention, shared KV layers).
    """
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if getattr(config, "layer_types", None) is None and getattr(config, "sliding_window", None) is None:
        return [None] * n_layers_of(config)
    types, kwargs = get_layer_types_and_kwargs(config)
    out: list[int | None] = []
    for i, (kind, kw) in enumerate(zip(types, kwargs)):
        if kind == "full_attention":
            out.append(None)
        elif kind == "sliding_attention":
            out.append(int(kw["sliding_window"]))
        else:
            raise ValueError(f"layer {i} has type {kind!r}; the codec caches handle full_attention and sliding_attention")
    return out


def check_fp_layers(fp_layers: Iterable[int], n_layers: int, name: str = "fp_layers") -> list[int]:
    """Layer indices ``fp_layers`` as sorted, distinct, non-negative indices.

    Parameters
    ----------
    fp_layers : iterable of int
        Layer indices; negative ones count from the end.
    n_layers : int
        Number of layers of the model.
    name : str
        Name of the argument in error messages (e.g. ``"--fp-layers"``).

    Raises
    ------
    ValueError
        An index outside ``-n_layers <= i < n_layers`` (it is not wrapped around).
    TypeError
        A non-integer index, or ``fp_layers`` not an iterable of integers.
    """
    if isinstance(fp_layers, (str, bytes)) or not isinstance(fp_layers, Iterable):
        raise TypeError(f"{name} must be a sequence of layer indices, got {fp_layers!r}")
    out = set()
    for i in fp_layers:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{name} must hold integer layer indices, got {i!r}")
        if not -n_layers <= i < n_layers:
            raise ValueError(
                f"{name}: layer {int(i)} is out of range for a model with {n_layers} layers "
                f"(valid: {-n_layers} <= i < {n_layers})"
            )
        out.add(int(i) % n_layers)
    return sorted(out)


def _check_codec_options(owner: str, method: str, options: dict[str, Any], role: str) -> None:
    """Raise ``TypeError`` for options that the factory of ``method`` would not take."""
    spec = SPECS.get(method)
    if spec is None:
        return  # make_codec names the unknown method
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(f"{owner}: unknown {role} option(s) {unknown} for method {method!r}; known: {sorted(spec.options)}")


class CodecCache(Cache):
    """A ``transformers`` cache whose layers store keys and values with the given codecs.

    :meth:`from_method` builds one from a method and its options (the usual
    way); the constructor takes the two codecs' methods and options as they are.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config (number of layers, head dimension).
    key_method, value_method : str
        Codec names (see :data:`fibquant_theory.codecs.registry.METHODS`;
        ``value_method`` defaults to ``key_method``).
    key_options, value_options : dict
        Options of the two codecs (e.g. ``{"block": 8, "codewords": 256}``;
        ``value_options`` defaults to ``key_options``); an option the method
        does not take raises ``TypeError``.
    window : int
        Most recent tokens kept in fp16 (default 0: off).
    fp_layers : sequence of int
        Layers kept uncompressed, ``-n_layers <= i < n_layers`` (negative indices
        count from the end; default none).
    chunk : int
        Tokens are encoded in multiples of ``chunk`` (default 1).
    center : {"none", "key", "value", "both"}
        Remove the per-head prefill mean of keys and/or values before encoding
        (default ``"none"``; see the module docstring).
    norm_correction : bool
        Rescale decoded vectors to their stored norms (default ``False``; FibQuant
        and TurboQuant only, else ``ValueError``).

    Raises
    ------
    TypeError
        An unknown codec option, or a non-integer ``window``, ``chunk`` or layer index.
    ValueError
        A negative ``window``, ``chunk < 1``, an unknown ``center`` or an
        out-of-range ``fp_layers`` index.
    """

    def __init__(
        self,
        config: Any,
        key_method: str,
        key_options: dict[str, Any],
        value_method: str | None = None,
        value_options: dict[str, Any] | None = None,
        window: int = 0,
        fp_layers: Sequence[int] = (),
        chunk: int = 1,
        center: str = "none",
        norm_correction: bool = False,
    ) -> None:
        owner = type(self).__name__
        n_layers = n_layers_of(config)
        d = head_dim_of(config)
        window = check_count(window, "window", 0)
        chunk = check_count(chunk, "chunk", 1)
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        fp = check_fp_layers(fp_layers, n_layers)
        value_method = value_method or key_method
        value_options = dict(key_options if value_options is None else value_options)
        _check_codec_options(owner, key_method, key_options, "key")
        _check_codec_options(owner, value_method, value_options, "value")
        if not isinstance(norm_correction, bool):
            raise TypeError(f"norm_correction must be a bool, got {norm_correction!r}")
        windows = layer_windows(config)
        key_codec = make_codec(key_method, d, **key_options)
        value_codec = make_codec(value_method, d, **value_options)
        if norm_correction:
            for role, codec in (("key", key_codec), ("value", value_codec)):
                probe = codec.encode(np.ones((1, d)))
                try:
                    stored_norms(probe, codec)
                except TypeError as exc:
                    raise ValueError(f"norm_correction: the {role} codec ({codec.name}) stores no norm") from exc
        self.settings = {
            "key": {"method": key_method, **key_options},
            "value": {"method": value_method, **value_options},
            "window": window,
            "fp_layers": fp,
            "head_dim": d,
            "chunk": chunk,
            "center": center,
            "norm_correction": norm_correction,
            "sliding_layers": [i for i, w in enumerate(windows) if w is not None],
        }
        layers: list[Any] = []
        for i, w in enumerate(windows):
            if i in fp:
                layers.append(Fp16Layer() if w is None else Fp16SlidingLayer(sliding_window=w))
            else:
                layers.append(CodecLayer(key_codec, value_codec, window, chunk, center, w, norm_correction))
        super().__init__(layers=layers)

    @classmethod
    def from_method(
        cls,
        config: Any,
        method: str,
        *,
        window: int = 0,
        fp_layers: Sequence[int] = (),
        center: str = "none",
        norm_correction: bool = False,
        **options: Any,
    ) -> CodecCache:
        """The cache of a registered KV method, its key and value codecs set up by the method's spec.

        Parameters
        ----------
        config : transformers.PretrainedConfig
            The model's config (number of layers, head dimension).
        method : str
            A KV method of :data:`fibquant_theory.codecs.registry.SPECS` (not ``"fp"``).
        window, fp_layers, center, norm_correction
            As in :class:`CodecCache`.
        **options
            The method's KV options (:attr:`~fibquant_theory.codecs.registry.MethodSpec.kv_options`):
            its codec options, e.g. ``block=8, codewords=256`` or ``bits=4``, for
            keys and values, and ``value_<rate option>`` (``value_block``,
            ``value_codewords``, ``value_bits``) for the values' own rate
            (``None``: the keys').

        Returns
        -------
        CodecCache
            The cache (``settings["method"]`` names the method). For ``"kivi"``:
            per-channel keys in groups of ``group_size`` tokens (they leave the
            fp16 window in whole groups) and per-token values.

        Raises
        ------
        TypeError
            An option the method's KV cache does not take (the message names it
            and lists those it takes), or a non-integer ``window`` or layer index.
        ValueError
            An unknown method, ``"fp"``, a missing or bad codec option, or a bad
            ``window``, ``center`` or ``fp_layers``.
        """
        if method == FP_METHOD:
            raise ValueError("method 'fp' compresses nothing: use the model's own cache (past_key_values=None)")
        spec = get_spec(method)
        if not spec.kv:
            raise ValueError(f"method {method!r} is not a KV-cache method")
        key, value, chunk = spec.kv_codec_options(options, owner=f"{cls.__name__}.from_method")
        cache = cls(config, method, key, method, value, window=window, fp_layers=fp_layers, chunk=chunk, center=center,
                    norm_correction=norm_correction)
        cache.settings["method"] = method
        return cache

    def memory_bytes(self) -> int:
        """Bytes stored by all layers (codes, norm headers, fp16 windows and fp layers)."""
        return sum(layer.memory_bytes() for layer in self.layers)

    def fp16_bytes(self) -> int:
        """Bytes of the model's own fp16 cache of the same tokens (sliding layers: their last ``W - 1`` tokens)."""
        return sum(layer.fp16_bytes() for layer in self.layers)

    def compression_ratio(self) -> float:
        """``fp16_bytes() / memory_bytes()`` (``nan`` while empty)."""
        mem = self.memory_bytes()
        return self.fp16_bytes() / mem if mem else float("nan")
