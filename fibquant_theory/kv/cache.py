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
import torch
from transformers.cache_utils import Cache, DynamicLayer

from fibquant_theory.codecs.registry import FP_METHOD, SPECS, get_spec, make_codec
from fibquant_theory.kv.codes import codes_nbytes, keep_tokens, take_codes

#: Values of the ``center`` option.
CENTER_MODES = ("none", "key", "value", "both")

__all__ = [
    "CENTER_MODES",
    "CodecCache",
    "CodecLayer",
    "check_fp_layers",
    "codes_nbytes",
    "head_dim_of",
    "n_layers_of",
    "take_codes",
]

#: Largest finite float16.
_FP16_MAX = float(torch.finfo(torch.float16).max)


def head_dim_of(config: Any) -> int:
    """Per-head dimension of a transformers config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    hd = getattr(config, "head_dim", None)
    return int(hd) if hd else int(config.hidden_size // config.num_attention_heads)


def n_layers_of(config: Any) -> int:
    """Number of decoder layers of a transformers config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return int(config.num_hidden_layers)


def _check_count(value: object, name: str, minimum: int) -> int:
    """``value`` as an ``int >= minimum``; ``TypeError`` for a non-integer (floats and bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


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


class CodecLayer(DynamicLayer):
    """One attention layer whose keys and values live as codes.

    Parameters
    ----------
    key_codec, value_codec : codec
        Objects with ``encode(x (..., d))``, ``decode(codes)`` (see
        :mod:`fibquant_theory.codecs.registry`).
    window : int
        Most recent tokens kept in full precision (fp16 accounting).
    chunk : int
        Tokens are encoded in multiples of ``chunk`` (per-channel KIVI needs whole
        groups); the rest waits in the fp16 window.
    center : {"none", "key", "value", "both"}
        Which of keys/values get their per-head prefill mean removed before encoding
        (see the module docstring).

    Notes
    -----
    The stored state is a list of token chunks of codes (each of leading shape
    ``(batch, heads, tokens)``), the fp window ``keys``/``values`` and the
    per-(batch, head) means. The batch operations and :meth:`crop` act on all
    of them; :meth:`get_mask_sizes` and :meth:`get_seq_length` count the
    compressed and the window tokens.
    """

    def __init__(self, key_codec: Any, value_codec: Any, window: int = 0, chunk: int = 1, center: str = "none") -> None:
        super().__init__()
        window = _check_count(window, "window", 0)
        chunk = _check_count(chunk, "chunk", 1)
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        self.key_codec, self.value_codec, self.window, self.chunk = key_codec, value_codec, window, chunk
        self.center = center
        self.key_codes: list[Any] = []
        self.value_codes: list[Any] = []
        self.key_mean: torch.Tensor | None = None
        self.value_mean: torch.Tensor | None = None
        self.n_compressed = 0
        self.cumulative_length = 0

    @property
    def is_croppable(self) -> bool:  # type: ignore[override]
        """Whether :meth:`crop` followed by feeding the same tokens again restores the layer exactly.

        True for one-token chunks (every token is encoded alone, so it is encoded
        again to the same codes). With ``chunk > 1`` (per-channel KIVI groups) a crop
        into the compressed tokens leaves a partial group, and the re-fed tokens are
        grouped differently.
        """
        return self.chunk == 1

    def _encode(self, codec: Any, x: torch.Tensor) -> Any:
        return codec.encode(x.detach().to("cpu", torch.float64).numpy())

    def _decode(self, codec: Any, chunks: list[Any], like: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
        if not chunks:
            return like.new_zeros(like.shape[:-2] + (0, like.shape[-1]))
        parts = [torch.from_numpy(np.asarray(codec.decode(c))) for c in chunks]
        out = torch.cat(parts, dim=-2)
        if mean is not None:
            out = out + mean
        return out.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def _mean(x: torch.Tensor, name: str) -> torch.Tensor:
        """Per-(batch, head) mean over tokens, rounded to fp16, shape ``(b, h, 1, d)`` float64."""
        mean = x.detach().to("cpu", torch.float64).mean(dim=-2, keepdim=True)
        if (mean.abs() > _FP16_MAX).any():
            raise ValueError(
                f"center: the prefill mean of the {name} reaches {float(mean.abs().max()):.6g}, beyond the float16 "
                f"range ({_FP16_MAX:g}) it is stored in; use center='none'"
            )
        return mean.to(torch.float16).to(torch.float64)

    @staticmethod
    def _window_states(x: torch.Tensor, name: str) -> torch.Tensor:
        """States held in the fp window: 16-bit floats as given, wider ones rounded to float16 (as accounted)."""
        if x.element_size() <= 2:
            return x
        rounded = x.to(torch.float16)
        over = torch.isinf(rounded) & torch.isfinite(x)
        if over.any():
            raise ValueError(
                f"window: {name} states of magnitude {float(x[over].abs().max()):.6g} do not fit the float16 fp window "
                f"(largest {_FP16_MAX:g}); pass float16/bfloat16 states (they are kept as given) or rescale the data"
            )
        return rounded.to(x.dtype)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new states (encoding what leaves the fp window) and return all keys and values.

        Nothing is stored when a step raises (an encoding error, a value the fp16 window cannot hold).
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        n_out = max((keys.shape[-2] - self.window) // self.chunk * self.chunk, 0)
        key_mean, value_mean, new_codes = self.key_mean, self.value_mean, None
        if n_out > 0:
            k_out, v_out = keys[..., :n_out, :], values[..., :n_out, :]
            if self.center in ("key", "both") and key_mean is None:
                key_mean = self._mean(k_out, "keys")
            if self.center in ("value", "both") and value_mean is None:
                value_mean = self._mean(v_out, "values")
            if key_mean is not None:
                k_out = k_out.detach().to("cpu", torch.float64) - key_mean
            if value_mean is not None:
                v_out = v_out.detach().to("cpu", torch.float64) - value_mean
            new_codes = (self._encode(self.key_codec, k_out), self._encode(self.value_codec, v_out))
        window_keys = self._window_states(keys[..., n_out:, :], "key")
        window_values = self._window_states(values[..., n_out:, :], "value")
        if new_codes is not None:
            self.key_codes.append(new_codes[0])
            self.value_codes.append(new_codes[1])
            self.n_compressed += n_out
        self.key_mean, self.value_mean = key_mean, value_mean
        self.keys, self.values = window_keys, window_values
        self.cumulative_length += key_states.shape[-2]
        k_hat = self._decode(self.key_codec, self.key_codes, key_states, self.key_mean)
        v_hat = self._decode(self.value_codec, self.value_codes, value_states, self.value_mean)
        return torch.cat([k_hat, self.keys], dim=-2), torch.cat([v_hat, self.values], dim=-2)

    def get_seq_length(self) -> int:
        """Tokens stored (compressed + window)."""
        return self.cumulative_length

    # ------------------------------------------------------------------ batch operations and crop
    def _has_window(self) -> bool:
        return self.is_initialized and self.keys is not None and self.keys.dim() == 4

    def _batch_size(self) -> int | None:
        if self._has_window():
            return int(self.keys.shape[0])
        if self.key_codes:
            return int(self.key_codes[0].shape[0])
        return None

    def _select_batch(self, index: np.ndarray) -> None:
        """Keep the batch rows ``index`` (int64, any order, repeats allowed) of everything stored."""
        self.key_codes = [take_codes(c, self.key_codec, index) for c in self.key_codes]
        self.value_codes = [take_codes(c, self.value_codec, index) for c in self.value_codes]
        rows = torch.from_numpy(index)
        if self._has_window():
            self.keys = self.keys.index_select(0, rows.to(self.keys.device))
            self.values = self.values.index_select(0, rows.to(self.values.device))
        if self.key_mean is not None:
            self.key_mean = self.key_mean.index_select(0, rows)
        if self.value_mean is not None:
            self.value_mean = self.value_mean.index_select(0, rows)

    @staticmethod
    def _batch_index(indices: torch.Tensor | Sequence[int], batch: int) -> np.ndarray:
        idx = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
        if idx.dtype == bool:
            if idx.shape != (batch,):
                raise IndexError(f"a boolean batch mask must have shape ({batch},), got {idx.shape}")
            return np.flatnonzero(idx).astype(np.int64)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise IndexError(f"batch indices must be a 1-D integer or boolean array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < -batch or idx.max() >= batch):
            raise IndexError(f"batch index out of range for batch size {batch}: {idx.min()}..{idx.max()}")
        return idx.astype(np.int64) % batch

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Reorder the batch (beam search): row ``i`` becomes the old row ``beam_idx[i]``, codes included."""
        batch = self._batch_size()
        if batch is not None:
            self._select_batch(self._batch_index(beam_idx, batch))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the batch rows ``indices`` (integers or a boolean mask), codes included."""
        batch = self._batch_size()
        if batch is not None:
            self._select_batch(self._batch_index(indices, batch))

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every batch row ``repeats`` times in place (``[a, b] -> [a, a, b, b]``), codes included."""
        repeats = _check_count(repeats, "repeats", 1)
        batch = self._batch_size()
        if batch is not None:
            self._select_batch(np.repeat(np.arange(batch, dtype=np.int64), repeats))

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` tokens (a negative count) from the window and the codes.

        Like :meth:`transformers.cache_utils.DynamicLayer.crop`, a positive value
        raises ``ValueError`` and 0 does nothing; dropping more tokens than stored
        empties the layer. The centering means are kept (the remaining codes are
        relative to them, and so are the tokens fed again).
        """
        if isinstance(tokens_to_remove, bool) or not isinstance(tokens_to_remove, numbers.Integral):
            raise TypeError(f"tokens_to_remove must be an integer, got {tokens_to_remove!r}")
        if tokens_to_remove > 0:
            raise ValueError(
                f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported. "
                "Please use a negative integer to remove that number of tokens from the cache instead."
            )
        drop = min(-int(tokens_to_remove), self.cumulative_length)
        if drop == 0 or not self.is_initialized:
            return
        in_window = int(self.keys.shape[-2]) if self._has_window() else 0
        from_window = min(drop, in_window)
        if from_window:
            self.keys = self.keys[..., : in_window - from_window, :]
            self.values = self.values[..., : in_window - from_window, :]
        from_codes = drop - from_window
        if from_codes:
            keep = self.n_compressed - from_codes
            self.key_codes = keep_tokens(self.key_codes, self.key_codec, keep)
            self.value_codes = keep_tokens(self.value_codes, self.value_codec, keep)
            self.n_compressed = keep
        self.cumulative_length -= drop

    # ------------------------------------------------------------------ accounting
    def memory_bytes(self) -> int:
        """Bytes of the stored codes plus the fp16 window."""
        window = 2 * (self.keys.numel() + self.values.numel()) if self._has_window() else 0
        keys = sum(codes_nbytes(c, self.key_codec) for c in self.key_codes)
        means = sum(2 * m.numel() for m in (self.key_mean, self.value_mean) if m is not None)
        return keys + sum(codes_nbytes(c, self.value_codec) for c in self.value_codes) + window + means

    def fp16_bytes(self) -> int:
        """Bytes the same keys and values would take in fp16."""
        if not self._has_window():
            return 0
        b, h, _, d = self.keys.shape
        return 2 * 2 * b * h * d * self.cumulative_length

    def reset(self) -> None:
        """Drop everything stored."""
        super().reset()
        self.key_codes, self.value_codes, self.n_compressed, self.cumulative_length = [], [], 0, 0
        self.key_mean = self.value_mean = None


class _Fp16Layer(DynamicLayer):
    """An uncompressed layer (``fp_layers``) with fp16 accounting."""

    def memory_bytes(self) -> int:
        return 0 if not self.is_initialized else 2 * (self.keys.numel() + self.values.numel())

    fp16_bytes = memory_bytes


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
    ) -> None:
        owner = type(self).__name__
        n_layers = n_layers_of(config)
        d = head_dim_of(config)
        window = _check_count(window, "window", 0)
        chunk = _check_count(chunk, "chunk", 1)
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        fp = check_fp_layers(fp_layers, n_layers)
        value_method = value_method or key_method
        value_options = dict(key_options if value_options is None else value_options)
        _check_codec_options(owner, key_method, key_options, "key")
        _check_codec_options(owner, value_method, value_options, "value")
        key_codec = make_codec(key_method, d, **key_options)
        value_codec = make_codec(value_method, d, **value_options)
        self.settings = {
            "key": {"method": key_method, **key_options},
            "value": {"method": value_method, **value_options},
            "window": window,
            "fp_layers": fp,
            "head_dim": d,
            "chunk": chunk,
            "center": center,
        }
        layers = [_Fp16Layer() if i in fp else CodecLayer(key_codec, value_codec, window, chunk, center) for i in range(n_layers)]
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
        **options: Any,
    ) -> CodecCache:
        """The cache of a registered KV method, its key and value codecs set up by the method's spec.

        Parameters
        ----------
        config : transformers.PretrainedConfig
            The model's config (number of layers, head dimension).
        method : str
            A KV method of :data:`fibquant_theory.codecs.registry.SPECS` (not ``"fp"``).
        window, fp_layers, center
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
        cache = cls(config, method, key, method, value, window=window, fp_layers=fp_layers, chunk=chunk, center=center)
        cache.settings["method"] = method
        return cache

    def memory_bytes(self) -> int:
        """Bytes stored by all layers (codes, norm headers, fp16 windows and fp layers)."""
        return sum(layer.memory_bytes() for layer in self.layers)

    def fp16_bytes(self) -> int:
        """Bytes of the same cache in fp16."""
        return sum(layer.fp16_bytes() for layer in self.layers)

    def compression_ratio(self) -> float:
        """``fp16_bytes() / memory_bytes()`` (``nan`` while empty)."""
        mem = self.memory_bytes()
        return self.fp16_bytes() / mem if mem else float("nan")
