"""transformers' own quantized KV caches (quanto, HQQ, fp8) as peers of :class:`~fibquant_theory.kv.cache.CodecCache`.

:func:`quantized_cache` returns a :class:`PeerQuantizedCache`: a
``transformers.cache_utils.QuantizedCache`` unchanged in behaviour, with the
accounting of ``CodecCache`` added: :meth:`~PeerQuantizedCache.memory_bytes`,
:meth:`~PeerQuantizedCache.fp16_bytes`, :meth:`~PeerQuantizedCache.compression_ratio`
and a ``settings`` dict.

Memory is counted by walking the stored objects (:func:`tensor_bytes`), never
from a formula: every tensor inside the quantized states (quanto: the
``QTensor``'s packed ``_data``, its ``_scale`` and ``_shift``; HQQ: the packed
``W_q`` and every tensor of its ``meta`` dict, ``scale`` and ``zero``
included; fp8: the ``float8_e4m3fn`` tensor and its scale) plus the residual
full-precision ``keys``/``values`` of every layer, each at its storage's real
size (a float32 model keeps a float32 residual and float32 quanto/HQQ scales,
and they are counted at 4 bytes). A storage shared by two tensors is counted once.

Behaviours a comparison must know (transformers 5.24; the first two, quanto's
``axis=-1`` divisor and the sliding-window layers are checked by
``tests/kv/test_quantized.py``):

* **The first update is returned unquantised.** ``QuantizedLayer.update`` (quanto,
  HQQ) and ``Fp8QuantizedLayer.update`` quantise the states of their first call
  and store them, but return the states as given. A one-shot prefill therefore
  attends to exact keys and values, and its perplexity equals the fp cache's
  exactly; feed the tokens in chunks (or one at a time) so that later tokens
  read the quantised states. Within any chunk the chunk's own tokens are read
  unquantised, as in a residual window.
* **Tokens are quantised again and again (quanto, HQQ).** When the residual
  fills (``residual_length`` tokens, or a chunk at least that long), the layer
  dequantises its whole quantised cache, appends the residual and the new
  states, and quantises all of it anew, from the dequantised values: a token
  is quantised again at every flush after it arrived (the errors can add
  up), and the groups (and so the scales) of old tokens change as the cache
  grows. The fp8 backend does not do this: its per-tensor scale is
  calibrated on the first update and frozen, later states are cast with it and
  appended, and a later state beyond ``448 * scale`` saturates to
  ``+-448 * scale`` (torch's float8 cast saturates).
* **Axes and groups.** transformers' defaults are ``axis_key = axis_value = 0``
  for both backends, kept here (they run on CPU). quanto's ``axis=0`` groups
  ``q_group_size`` *consecutive* elements of the contiguous ``(batch, heads,
  tokens, head_dim)`` tensor: one token's head vector when ``q_group_size ==
  head_dim``, several tokens' otherwise; it needs ``q_group_size`` to divide
  ``heads * tokens * head_dim`` at every quantisation (``ValueError`` from
  quanto otherwise). quanto's ``axis=-1`` (also runs on CPU) is per channel:
  the ``batch * heads * tokens`` values of each ``head_dim`` entry (rows of
  the flattened tensor, so a group may straddle heads and batch rows) are cut
  into groups of ``q_group_size`` consecutive ones, which must divide
  ``batch * heads * tokens`` at every quantisation (64 does not divide
  160 = 2 * 2 * 40, say). HQQ's ``axis=0`` groups elements spaced
  ``numel / q_group_size`` apart (a grouping that changes with the token
  count), ``axis=1`` consecutive elements; it needs ``q_group_size`` to divide
  the tensor's size. quanto takes ``nbits`` 2 or 4, HQQ 1, 2, 3, 4 or 8; the
  fp8 backend takes none of the group-wise options (per-tensor scale, 8 bits).
* **Full-attention layers only.** ``QuantizedCache`` refuses a config with any
  sliding-window (or chunked) layer with a ``ValueError``. :class:`PeerQuantizedCache`
  builds its layers from a copy of the config in which every layer is full
  attention (the model keeps its own config, so its masks still slide): on a
  sliding layer the peer stores every token where the model's own cache keeps
  ``W - 1``, and both are counted as they are (:meth:`~PeerQuantizedCache.fp16_bytes`
  counts every token of every layer; the KV evaluation divides the model's own
  cache size by :meth:`~PeerQuantizedCache.memory_bytes`).
* Beam reordering of the quanto/HQQ states is deferred by transformers to the
  next update; the bookkeeping index it keeps meanwhile is not counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers.cache_utils import QuantizedCache

__all__ = ["BACKENDS", "PeerQuantizedCache", "quantized_cache", "tensor_bytes"]

#: Backends of transformers' ``QuantizedCache``.
BACKENDS = ("quanto", "hqq", "fp8")
#: ``settings["method"]`` of each backend (the fp8 one is not the ``"fp8"`` codec of the registry).
_METHOD = {"quanto": "quanto", "hqq": "hqq", "fp8": "hf-fp8"}
_GROUP_WISE = ("nbits", "axis_key", "axis_value", "q_group_size", "residual_length")


def tensor_bytes(obj: Any, seen: set[tuple[str, int]] | None = None) -> int:
    """Bytes of every tensor storage reachable from ``obj``, each storage counted once.

    Parameters
    ----------
    obj : object
        A tensor; a tensor subclass that flattens into inner tensors
        (``__tensor_flatten__``: quanto's ``QTensor`` and ``PackedTensor``),
        whose inner tensors are counted; or a dict, list or tuple of such
        objects (walked recursively). Anything else (ints, dtypes,
        ``torch.Size``) counts 0.
    seen : set, optional
        ``(device, data pointer)`` of the storages already counted; updated.
        Pass one set to several calls to count shared storages once overall.

    Returns
    -------
    int
        The sum of ``untyped_storage().nbytes()`` over the distinct storages:
        what is actually held in memory, a view counted at its whole storage.
    """
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if hasattr(obj, "__tensor_flatten__"):
            names, _ = obj.__tensor_flatten__()
            return sum(tensor_bytes(getattr(obj, name), seen) for name in names)
        storage = obj.untyped_storage()
        key = (str(obj.device), int(storage.data_ptr()))
        if storage.nbytes() == 0 or key in seen:
            return 0
        seen.add(key)
        return int(storage.nbytes())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def _logical_shape(state: Any) -> tuple[int, ...]:
    """``(batch, heads, tokens, head_dim)`` of quantised keys: a QTensor, ``(W_q, meta)`` or ``(fp8, scale)``."""
    if isinstance(state, tuple):
        first, second = state
        return tuple(second["shape"]) if isinstance(second, dict) else tuple(first.shape)
    return tuple(state.shape)


def _all_layers_full(config: Any) -> Any:
    """A copy of the text config whose layers all count as full attention (transformers refuses sliding ones).

    The model keeps its own config, so its masks still slide: a sliding layer of the
    peer cache simply stores (and is counted for) every token, as the model's mask
    hides the old ones. Against the model's own cache, which keeps ``W - 1`` tokens
    there, that costs the peer compression, honestly counted.
    """
    import copy

    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if all(t == "full_attention" for t in (getattr(text, "layer_types", None) or ["full_attention"])):
        return config
    text = copy.deepcopy(text)
    text.layer_types = ["full_attention"] * int(text.num_hidden_layers)
    text.sliding_window = None
    return text


class PeerQuantizedCache(QuantizedCache):
    """transformers' ``QuantizedCache`` with honest memory accounting (see the module docstring).

    Parameters
    ----------
    backend : {"quanto", "hqq", "fp8"}
        The quantisation backend.
    config : transformers.PretrainedConfig
        The model's config (full-attention layers only).
    nbits, axis_key, axis_value, q_group_size, residual_length : int, optional
        The group-wise options of quanto and HQQ (``None``: transformers'
        defaults, 4, 0, 0, 64 and 128); the fp8 backend takes none of them.

    Attributes
    ----------
    settings : dict
        ``method`` (``"quanto"``, ``"hqq"`` or ``"hf-fp8"``), ``backend``, the
        effective ``nbits``, ``q_group_size``, ``residual_length``, ``axis_key``,
        ``axis_value`` (fp8: ``nbits = 8``, ``scale = "per-tensor"``), ``head_dim``.

    Raises
    ------
    ValueError
        An unknown backend, a group-wise option given to fp8, a bad option
        value (transformers' message).
    ImportError
        When the backend's package (optimum-quanto, hqq) is missing.
    """

    def __init__(
        self,
        backend: str,
        config: Any,
        nbits: int | None = None,
        axis_key: int | None = None,
        axis_value: int | None = None,
        q_group_size: int | None = None,
        residual_length: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        given = dict(zip(_GROUP_WISE, (nbits, axis_key, axis_value, q_group_size, residual_length)))
        if backend == "fp8" and any(v is not None for v in given.values()):
            bad = sorted(k for k, v in given.items() if v is not None)
            raise ValueError(f"the fp8 backend has a per-tensor scale and no residual: it takes none of {bad}")
        super().__init__(backend, _all_layers_full(config), **given)
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        if backend == "fp8":
            options: dict[str, Any] = {"nbits": 8, "scale": "per-tensor"}
        else:
            options = {name: getattr(self.layers[0], name) for name in _GROUP_WISE}
        self.settings: dict[str, Any] = {
            "method": _METHOD[backend], "backend": backend, **options, "head_dim": int(head_dim),
        }

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes stored, by kind: ``quantized`` (the quantised states' tensors), ``residual`` (fp keys/values).

        Returns
        -------
        dict
            ``{"quantized": int, "residual": int}``, summed over layers.
        """
        seen: set[tuple[str, int]] = set()
        out = {"quantized": 0, "residual": 0}
        for layer in self.layers:
            if not getattr(layer, "is_initialized", False):
                continue
            out["quantized"] += tensor_bytes((layer._quantized_keys, layer._quantized_values), seen)
            out["residual"] += tensor_bytes((layer.keys, layer.values), seen)
        return out

    def memory_bytes(self) -> int:
        """Bytes actually stored by all layers: the quantised states plus the residual fp tensors."""
        return sum(self.memory_breakdown().values())

    def fp16_bytes(self) -> int:
        """Bytes of the same cache in fp16: ``2 (K, V) * 2 * batch * kv_heads * head_dim * tokens``, summed over layers.

        ``tokens`` is each layer's ``cumulative_length`` (every token stored).
        """
        total = 0
        for layer in self.layers:
            if not getattr(layer, "is_initialized", False) or layer._quantized_keys is None:
                continue
            b, h, _, d = _logical_shape(layer._quantized_keys)
            total += 2 * 2 * b * h * d * int(layer.cumulative_length)
        return total

    def compression_ratio(self) -> float:
        """``fp16_bytes() / memory_bytes()`` (``nan`` while empty)."""
        mem = self.memory_bytes()
        return self.fp16_bytes() / mem if mem else math.nan


def quantized_cache(
    config: Any,
    backend: str,
    *,
    nbits: int | None = None,
    q_group_size: int | None = None,
    residual_length: int | None = None,
    axis_key: int | None = None,
    axis_value: int | None = None,
) -> PeerQuantizedCache:
    """A fresh transformers ``QuantizedCache`` of ``backend`` with memory accounting.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config (full-attention layers only).
    backend : {"quanto", "hqq", "fp8"}
        The quantisation backend.
    nbits : int, optional
        Bits per value (quanto: 2 or 4; HQQ: 1, 2, 3, 4 or 8); ``None``: 4.
    q_group_size : int, optional
        Values per scale/zero-point group; ``None``: 64 (see the module
        docstring for what a group is and what it must divide).
    residual_length : int, optional
        Tokens kept in full precision before a flush re-quantises the cache; ``None``: 128.
    axis_key, axis_value : int, optional
        Grouping axes (quanto: 0 or -1; HQQ: 0 or 1); ``None``: 0 (transformers' default).

    Returns
    -------
    PeerQuantizedCache
        The cache; pass it as ``cache`` (transformers 5.24; the
        older name ``past_key_values`` still works, deprecated) to a forward or to ``generate``.
        For fp8, every option must be ``None``.

    Raises
    ------
    ValueError, ImportError
        See :class:`PeerQuantizedCache`.
    """
    return PeerQuantizedCache(
        backend, config, nbits=nbits, axis_key=axis_key, axis_value=axis_value,
        q_group_size=q_group_size, residual_length=residual_length,
    )
