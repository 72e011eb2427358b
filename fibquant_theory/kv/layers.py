"""The layers of :class:`~fibquant_theory.kv.cache.CodecCache`: one attention layer's keys and values as codes.

:class:`CodecLayer` stores the codes of the tokens that left its fp16 window;
on a sliding-window layer (``sliding_window=W``, as the model's config says) it
keeps, like transformers' ``DynamicSlidingWindowLayer``, only the last ``W - 1``
tokens after each update (and attends over those plus the new ones), so its
memory is counted as the model keeps it. Codes are dropped from the front in
whole stored chunks, and exactly per token where the codec allows it
(``chunk == 1``); a per-channel KIVI token group that is partly outside the
window is kept whole (and counted) until all of it is, but never read.

:class:`Fp16Layer` and :class:`Fp16SlidingLayer` are the uncompressed layers
(``fp_layers``) with fp16 accounting.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from fibquant_theory.kv.codes import codes_nbytes, keep_tokens, stored_norms, take_codes
from fibquant_theory.numerics.fixed_order import row_norms

#: Values of the ``center`` option.
CENTER_MODES = ("none", "key", "value", "both")

__all__ = ["CENTER_MODES", "CodecLayer", "Fp16Layer", "Fp16SlidingLayer", "check_count", "mask_sizes"]

#: Largest finite float16.
_FP16_MAX = float(torch.finfo(torch.float16).max)


def check_count(value: object, name: str, minimum: int) -> int:
    """``value`` as an ``int >= minimum``; ``TypeError`` for a non-integer (floats and bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)



def mask_sizes(seen: int, query_length: int, sliding_window: int | None) -> tuple[int, int]:
    """``(kv_length, kv_offset)`` of the states the next update returns, as transformers' dynamic layers count them.

    Parameters
    ----------
    seen : int
        Tokens the layer has seen.
    query_length : int
        Tokens of the next update.
    sliding_window : int or None
        The layer's window ``W`` (None: a full-attention layer).

    Returns
    -------
    tuple of int
        Full attention: ``(seen + query_length, 0)``; a sliding layer keeps its last ``W - 1`` tokens.
    """
    if sliding_window is None:
        return seen + query_length, 0
    w = sliding_window
    kv_offset = max(seen - w + 1, 0)
    if seen >= w:
        return w - 1 + query_length, kv_offset
    return seen + query_length, kv_offset


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
        (see :mod:`fibquant_theory.kv.cache`).
    sliding_window : int or None
        The layer's attention window ``W`` (``None``: a full-attention layer). A
        sliding layer keeps the last ``W - 1`` tokens.
    norm_correction : bool
        Rescale every decoded vector to the norm stored in its header (only for
        codecs that store one: FibQuant, TurboQuant).

    Notes
    -----
    The stored state is a list of token chunks of codes (each of leading shape
    ``(batch, heads, tokens)``), the fp window ``keys``/``values`` and the
    per-(batch, head) means. The batch operations and :meth:`crop` act on all
    of them; :meth:`get_mask_sizes` and :meth:`get_seq_length` count the
    tokens the way transformers' dynamic (sliding) layers do.
    """

    def __init__(
        self,
        key_codec: Any,
        value_codec: Any,
        window: int = 0,
        chunk: int = 1,
        center: str = "none",
        sliding_window: int | None = None,
        norm_correction: bool = False,
    ) -> None:
        super().__init__()
        window = check_count(window, "window", 0)
        chunk = check_count(chunk, "chunk", 1)
        if center not in CENTER_MODES:
            raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
        if sliding_window is not None:
            sliding_window = check_count(sliding_window, "sliding_window", 2)
        if not isinstance(norm_correction, bool):
            raise TypeError(f"norm_correction must be a bool, got {norm_correction!r}")
        self.key_codec, self.value_codec, self.window, self.chunk = key_codec, value_codec, window, chunk
        self.center = center
        self.sliding_window = sliding_window
        self.is_sliding = sliding_window is not None
        self.norm_correction = norm_correction
        self.key_codes: list[Any] = []
        self.value_codes: list[Any] = []
        self.key_mean: torch.Tensor | None = None
        self.value_mean: torch.Tensor | None = None
        self.n_compressed = 0
        self.n_hidden = 0
        self.cumulative_length = 0

    @property
    def is_croppable(self) -> bool:  # type: ignore[override]
        """Whether :meth:`crop` followed by feeding the same tokens again restores the layer exactly.

        True for one-token chunks (every token is encoded alone, so it is encoded
        again to the same codes) on a layer that has dropped nothing (a sliding
        layer past its window cannot give back what it dropped). With ``chunk > 1``
        (per-channel KIVI groups) a crop into the compressed tokens leaves a
        partial group, and the re-fed tokens are grouped differently.
        """
        full = self.sliding_window is not None and self.cumulative_length >= self.sliding_window
        return self.chunk == 1 and not full

    def _encode(self, codec: Any, x: torch.Tensor) -> Any:
        return codec.encode(x.detach().to("cpu", torch.float64).numpy())

    def _decode_chunk(self, codec: Any, codes: Any) -> np.ndarray:
        x = np.asarray(codec.decode(codes), dtype=np.float64)
        if not self.norm_correction:
            return x
        norms = stored_norms(codes, codec)
        have = row_norms(x)
        scale = np.divide(norms, have, out=np.zeros_like(have), where=have > 0)
        return x * scale[..., None]

    def _decode(self, codec: Any, chunks: list[Any], like: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
        if not chunks:
            return like.new_zeros(like.shape[:-2] + (0, like.shape[-1]))
        out = torch.cat([torch.from_numpy(self._decode_chunk(codec, c)) for c in chunks], dim=-2)
        out = out[..., self.n_hidden :, :]
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
        """Store the new states (encoding what leaves the fp window) and return the keys and values to attend over.

        A full layer returns every stored token and the new ones; a sliding layer
        returns the (at most ``W - 1``) tokens it kept and the new ones, then drops
        what falls out of its window. Nothing is stored when a step raises (an
        encoding error, a value the fp16 window cannot hold).
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
        out = torch.cat([k_hat, self.keys], dim=-2), torch.cat([v_hat, self.values], dim=-2)
        if self.sliding_window is not None:
            self._slide()
        return out

    def _slide(self) -> None:
        """Keep only the last ``W - 1`` tokens (codes first, as they are the oldest, then the fp window)."""
        window_len = int(self.keys.shape[-2])
        excess = self.n_compressed - self.n_hidden + window_len - (self.sliding_window - 1)
        if excess <= 0:
            return
        from_codes = min(excess, self.n_compressed - self.n_hidden)
        self.n_hidden += from_codes
        while self.key_codes and self.key_codes[0].shape[-1] <= self.n_hidden:
            t = int(self.key_codes[0].shape[-1])
            self.key_codes.pop(0)
            self.value_codes.pop(0)
            self.n_compressed -= t
            self.n_hidden -= t
        if self.n_hidden and self.chunk == 1:
            t = int(self.key_codes[0].shape[-1])
            tail = np.arange(self.n_hidden, t)
            self.key_codes[0] = take_codes(self.key_codes[0], self.key_codec, tail, axis=-1)
            self.value_codes[0] = take_codes(self.value_codes[0], self.value_codec, tail, axis=-1)
            self.n_compressed -= self.n_hidden
            self.n_hidden = 0
        rest = excess - from_codes
        if rest > 0:
            self.keys, self.values = self.keys[..., rest:, :], self.values[..., rest:, :]

    def get_seq_length(self) -> int:
        """Tokens seen (for a sliding layer too: the position of the next token)."""
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """``(kv_length, kv_offset)`` of the states the next update returns, as transformers' dynamic layers count them."""
        return mask_sizes(self.cumulative_length, query_length, self.sliding_window)

    def get_max_length(self) -> int:
        """The sliding window (``-1``: no maximum, a full layer)."""
        return -1 if self.sliding_window is None else self.sliding_window

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
        repeats = check_count(repeats, "repeats", 1)
        batch = self._batch_size()
        if batch is not None:
            self._select_batch(np.repeat(np.arange(batch, dtype=np.int64), repeats))

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` tokens (a negative count) from the window and the codes.

        Like :meth:`transformers.cache_utils.DynamicLayer.crop`, a positive value
        raises ``ValueError`` and 0 does nothing; dropping more tokens than stored
        empties the layer. The centering means are kept (the remaining codes are
        relative to them, and so are the tokens fed again). A sliding layer that
        has reached its window raises ``RuntimeError``, as transformers' does: the
        tokens it dropped cannot come back.
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
        if self.sliding_window is not None and self.cumulative_length >= self.sliding_window:
            raise RuntimeError(
                f"crop: this sliding-window layer (window {self.sliding_window}) has seen {self.cumulative_length} "
                "tokens and dropped the oldest; it cannot be cropped"
            )
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
        """Bytes of the stored codes (a partly hidden KIVI group included), the fp16 window and the means."""
        window = 2 * (self.keys.numel() + self.values.numel()) if self._has_window() else 0
        keys = sum(codes_nbytes(c, self.key_codec) for c in self.key_codes)
        means = sum(2 * m.numel() for m in (self.key_mean, self.value_mean) if m is not None)
        return keys + sum(codes_nbytes(c, self.value_codec) for c in self.value_codes) + window + means

    def fp16_bytes(self) -> int:
        """Bytes the model's own fp16 cache would hold here (a sliding layer: its last ``W - 1`` tokens)."""
        if not self._has_window():
            return 0
        b, h, _, d = self.keys.shape
        tokens = self.cumulative_length
        if self.sliding_window is not None:
            tokens = min(tokens, self.sliding_window - 1)
        return 2 * 2 * b * h * d * tokens

    def reset(self) -> None:
        """Drop everything stored."""
        super().reset()
        self.key_codes, self.value_codes, self.n_compressed, self.n_hidden, self.cumulative_length = [], [], 0, 0, 0
        self.key_mean = self.value_mean = None


class Fp16Layer(DynamicLayer):
    """An uncompressed full-attention layer (``fp_layers``) with fp16 accounting."""

    def memory_bytes(self) -> int:
        """Bytes of its states in fp16."""
        return 0 if not self.is_initialized else 2 * (self.keys.numel() + self.values.numel())

    fp16_bytes = memory_bytes


class Fp16SlidingLayer(DynamicSlidingWindowLayer):
    """An uncompressed sliding-window layer (``fp_layers``) with fp16 accounting (it keeps ``W - 1`` tokens)."""

    def memory_bytes(self) -> int:
        """Bytes of its states in fp16."""
        return 0 if not self.is_initialized else 2 * (self.keys.numel() + self.values.numel())

    fp16_bytes = memory_bytes
