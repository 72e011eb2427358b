"""Hugging Face ``transformers`` caches that store keys and values as codec codes.

``model(..., past_key_values=FibQuantCache(model.config, block=8, codewords=256))``
and ``model.generate(..., past_key_values=...)`` work like with a ``DynamicCache``,
but every layer keeps only the codes (packed indices + norm headers) of its keys and
values, plus an optional full-precision window of the most recent tokens; the
tensors that attention reads are decoded from the codes at every read.

Options (both default *off*, and every table states them):

* ``window``: the most recent ``window`` tokens of every layer stay in fp16;
  older ones are encoded when they leave the window.
* ``fp_layers``: indices of layers that are not compressed at all (e.g. ``(0, -1)``).
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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicLayer

from .methods import make_codec

#: Values of the ``center`` option.
CENTER_MODES = ("none", "key", "value", "both")

__all__ = ["CENTER_MODES", "CodecLayer", "CodecCache", "FibQuantCache", "TurboQuantCache", "KiviCache", "codes_nbytes", "head_dim_of"]


def codes_nbytes(codes: Any, codec: Any) -> int:
    """Stored bytes of a codes object.

    Packed codes (FibQuant, KIVI) report their real ``nbytes``. The reference
    TurboQuant codes keep one array entry per index/sign (for clarity); they are
    counted at their fixed-rate packed size, ``ceil(n * bits_per_vector / 8)``,
    which is what a packed TurboQuant store takes.
    """
    if hasattr(codes, "nbytes"):
        return int(codes.nbytes)
    n = int(np.prod(codes.norms.shape))
    return -(-n * int(codec.bits_per_vector) // 8)


def head_dim_of(config: Any) -> int:
    """Per-head dimension of a transformers config."""
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    hd = getattr(config, "head_dim", None)
    return int(hd) if hd else int(config.hidden_size // config.num_attention_heads)


class CodecLayer(DynamicLayer):
    """One attention layer whose keys and values live as codes.

    Parameters
    ----------
    key_codec, value_codec : codec
        Objects with ``encode(x (..., d))``, ``decode(codes)`` (see
        :mod:`fibquant_theory.methods`).
    window : int
        Most recent tokens kept in full precision (fp16 accounting).
    chunk : int
        Tokens are encoded in multiples of ``chunk`` (per-channel KIVI needs whole
        groups); the rest waits in the fp16 window.
    center : {"none", "key", "value", "both"}
        Which of keys/values get their per-head prefill mean removed before encoding
        (see the module docstring).
    """

    is_croppable = False

    def __init__(self, key_codec: Any, value_codec: Any, window: int = 0, chunk: int = 1, center: str = "none") -> None:
        super().__init__()
        if window < 0 or chunk < 1:
            raise ValueError(f"need window >= 0 and chunk >= 1, got window={window}, chunk={chunk}")
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        self.key_codec, self.value_codec, self.window, self.chunk = key_codec, value_codec, int(window), int(chunk)
        self.center = center
        self.key_codes: list[Any] = []
        self.value_codes: list[Any] = []
        self.key_mean: torch.Tensor | None = None
        self.value_mean: torch.Tensor | None = None
        self.n_compressed = 0
        self.cumulative_length = 0

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
    def _mean(x: torch.Tensor) -> torch.Tensor:
        """Per-(batch, head) mean over tokens, rounded to fp16, shape ``(b, h, 1, d)`` float64."""
        return x.detach().to("cpu", torch.float64).mean(dim=-2, keepdim=True).to(torch.float16).to(torch.float64)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new states (encoding what leaves the fp window) and return all keys and values."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        n_out = (keys.shape[-2] - self.window) // self.chunk * self.chunk
        if n_out > 0:
            k_out, v_out = keys[..., :n_out, :], values[..., :n_out, :]
            if self.center in ("key", "both") and self.key_mean is None:
                self.key_mean = self._mean(k_out)
            if self.center in ("value", "both") and self.value_mean is None:
                self.value_mean = self._mean(v_out)
            if self.key_mean is not None:
                k_out = k_out.detach().to("cpu", torch.float64) - self.key_mean
            if self.value_mean is not None:
                v_out = v_out.detach().to("cpu", torch.float64) - self.value_mean
            self.key_codes.append(self._encode(self.key_codec, k_out))
            self.value_codes.append(self._encode(self.value_codec, v_out))
            self.n_compressed += n_out
            keys, values = keys[..., n_out:, :], values[..., n_out:, :]
        # The window is held at fp16 precision, as accounted.
        self.keys = keys.to(torch.float16).to(key_states.dtype)
        self.values = values.to(torch.float16).to(value_states.dtype)
        k_hat = self._decode(self.key_codec, self.key_codes, key_states, self.key_mean)
        v_hat = self._decode(self.value_codec, self.value_codes, value_states, self.value_mean)
        return torch.cat([k_hat, self.keys], dim=-2), torch.cat([v_hat, self.values], dim=-2)

    def get_seq_length(self) -> int:
        """Tokens stored (compressed + window)."""
        return self.cumulative_length

    def memory_bytes(self) -> int:
        """Bytes of the stored codes plus the fp16 window."""
        window = 0 if self.keys is None else 2 * (self.keys.numel() + self.values.numel())
        keys = sum(codes_nbytes(c, self.key_codec) for c in self.key_codes)
        means = sum(2 * m.numel() for m in (self.key_mean, self.value_mean) if m is not None)
        return keys + sum(codes_nbytes(c, self.value_codec) for c in self.value_codes) + window + means

    def fp16_bytes(self) -> int:
        """Bytes the same keys and values would take in fp16."""
        if not self.is_initialized:
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

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config (number of layers, head dimension).
    key_method, value_method : str
        Codec names (see :data:`fibquant_theory.methods.METHODS`).
    key_options, value_options : dict
        Options of the two codecs (e.g. ``{"block": 8, "codewords": 256}``).
    window : int
        Most recent tokens kept in fp16 (default 0: off).
    fp_layers : sequence of int
        Layers kept uncompressed (negative indices count from the end; default none).
    center : {"none", "key", "value", "both"}
        Remove the per-head prefill mean of keys and/or values before encoding
        (default ``"none"``; see the module docstring).
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
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        n_layers = int(text.num_hidden_layers)
        d = head_dim_of(config)
        value_method = value_method or key_method
        value_options = dict(key_options if value_options is None else value_options)
        key_codec = make_codec(key_method, d, **key_options)
        value_codec = make_codec(value_method, d, **value_options)
        fp = {i % n_layers for i in fp_layers}
        self.settings = {
            "key": {"method": key_method, **key_options},
            "value": {"method": value_method, **value_options},
            "window": int(window),
            "fp_layers": sorted(fp),
            "head_dim": d,
            "chunk": int(chunk),
            "center": center,
        }
        layers = [_Fp16Layer() if i in fp else CodecLayer(key_codec, value_codec, window, chunk, center) for i in range(n_layers)]
        super().__init__(layers=layers)

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


class FibQuantCache(CodecCache):
    """FibQuant keys and values: block size ``block``, ``codewords`` per codebook (values may differ)."""

    def __init__(
        self,
        config: Any,
        block: int = 8,
        codewords: int = 256,
        *,
        value_block: int | None = None,
        value_codewords: int | None = None,
        seed: int = 0,
        window: int = 0,
        fp_layers: Sequence[int] = (),
        center: str = "none",
        **options: Any,
    ) -> None:
        k_opt = {"block": block, "codewords": codewords, "seed": seed, **options}
        v_opt = {"block": value_block or block, "codewords": value_codewords or codewords, "seed": seed, **options}
        super().__init__(config, "fibquant", k_opt, "fibquant", v_opt, window=window, fp_layers=fp_layers, center=center)


class TurboQuantCache(CodecCache):
    """TurboQuant keys and values (``prod=True``: the QJL variant)."""

    def __init__(
        self,
        config: Any,
        bits: int = 4,
        *,
        value_bits: int | None = None,
        prod: bool = False,
        seed: int = 0,
        window: int = 0,
        fp_layers: Sequence[int] = (),
        center: str = "none",
    ) -> None:
        name = "turboquant-prod" if prod else "turboquant"
        k_opt, v_opt = {"bits": bits, "seed": seed}, {"bits": value_bits or bits, "seed": seed}
        super().__init__(config, name, k_opt, name, v_opt, window=window, fp_layers=fp_layers, center=center)


class KiviCache(CodecCache):
    """KIVI-style uniform integer baseline (per-channel keys, per-token values)."""

    def __init__(
        self,
        config: Any,
        bits: int = 2,
        *,
        value_bits: int | None = None,
        window: int = 0,
        fp_layers: Sequence[int] = (),
        center: str = "none",
        **options: Any,
    ) -> None:
        group = int(options.pop("group_size", 32))
        k_opt = {"bits": bits, "mode": "per-channel", "group_size": group, **options}
        v_opt = {"bits": value_bits or bits, "mode": "per-token", **options}
        # Keys leave the fp16 window in whole per-channel groups.
        super().__init__(config, "kivi", k_opt, "kivi", v_opt, window=window, fp_layers=fp_layers, chunk=group, center=center)
