"""The layers of :class:`~fibquant_theory.kv.gpu_cache.GPUCodecCache`: preallocated device buffers of codes.

:class:`GPUCodecLayer` keeps the packed FibQuant records of its keys and values
in two preallocated ``uint8`` device buffers of shape ``(batch, kv_heads,
capacity, record_bytes)`` (one buffer, its two halves), like transformers'
``StaticLayer`` keeps fp16 states; :class:`GPUFp16Layer` is the uncompressed
layer (``fp_layers``) with the same bookkeeping. A sliding-window layer
(window ``W``) is a ring of ``W`` slots: token ``p`` lives in slot ``p % W``
(decode-attention does not depend on the order of the tokens).

Two paths:

* **prefill** (``q_len > 1``, or the first update): the new tokens are encoded
  on the device (``check=True``: bad data raises), written into their slots, and
  the states to attend over are decoded to dense tensors, in the token order and
  the number that :class:`~fibquant_theory.kv.layers.CodecLayer` returns (the
  model's mask and SDPA do the rest);
* **decoding step** (``q_len == 1``): the token is encoded (``check=False``),
  written at the slot given by a device counter (``pos``), the counter advances
  on the device, and the layer returns the new states tagged with
  ``_fibquant_layer``; the attention function of
  :mod:`~fibquant_theory.kv.gpu_cache` then calls :meth:`GPUCodecLayer.attend`,
  which runs decode-attention over the first ``length`` records of every head,
  ``length`` read on the device. Nothing on this path reads device memory from
  the host, so a decoding step can be captured in a CUDA graph and replayed (each
  replay writes the next slot).

Under the Numba CUDA simulator the buffers are CPU tensors and are copied to
the simulator's arrays at every kernel call (tests only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.cache_utils import CacheLayerMixin

from fibquant_theory.kv.layers import mask_sizes

__all__ = ["GPUCodecLayer", "GPUFp16Layer", "kernel_array", "torch_result"]

#: Largest finite float16 (the centring means are stored in float16).
_FP16_MAX = float(torch.finfo(torch.float16).max)


def kernel_array(t: torch.Tensor) -> Any:
    """``t`` as the GPU codec takes it: the CUDA tensor itself, or (simulator) a contiguous NumPy copy.

    Parameters
    ----------
    t : torch.Tensor
        A CUDA tensor, or a CPU tensor under the simulator.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        What :class:`~fibquant_theory.gpu.codec.GPUFibQuantCodec` accepts.
    """
    return t if t.is_cuda else t.detach().contiguous().numpy()


def torch_result(r: Any, device: torch.device) -> torch.Tensor:
    """A GPU codec result as a torch tensor on ``device`` (simulator device arrays are copied to the host).

    Parameters
    ----------
    r : torch.Tensor or device array
        A result of the GPU codec.
    device : torch.device
        The cache's device.

    Returns
    -------
    torch.Tensor
        The same data as a tensor.
    """
    if isinstance(r, torch.Tensor):
        return r
    return torch.from_numpy(np.ascontiguousarray(r.copy_to_host())).to(device)


class _StaticBase(CacheLayerMixin):
    """Shared bookkeeping: capacity, ring slots, the host and device token counters, mask sizes."""

    is_compileable = False

    def __init__(self, capacity: int, sliding_window: int | None) -> None:
        super().__init__()
        self.sliding_window = sliding_window
        self.is_sliding = sliding_window is not None
        self.slots = capacity if sliding_window is None else min(capacity, sliding_window)
        self.cumulative_length = 0
        self.pos: torch.Tensor | None = None

    def _check_room(self, q: int) -> None:
        if self.sliding_window is None and self.cumulative_length + q > self.slots:
            raise ValueError(
                f"the GPU cache holds {self.slots} tokens per layer (max_cache_len); {self.cumulative_length} stored, "
                f"{q} more do not fit"
            )

    def _host_slots(self, start: int, q: int) -> torch.Tensor:
        """Slots of positions ``start .. start + q - 1`` (a ring for a sliding layer)."""
        return torch.arange(start, start + q, device=self.device) % self.slots

    def _kept_before(self) -> tuple[int, int]:
        """``(first position, count)`` of the earlier tokens a prefill attends over (a sliding layer: the last ``W - 1``)."""
        n = self.cumulative_length
        if self.sliding_window is None:
            return 0, n
        keep = min(n, self.sliding_window - 1)
        return n - keep, keep

    def _device_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(slot, length)`` of a decoding step, on the device; advances ``pos`` in place (no host read)."""
        if self.sliding_window is None:
            slot = self.pos.clone()
            self.pos.add_(1)
            return slot, self.pos
        slot = torch.remainder(self.pos, self.slots)
        self.pos.add_(1)
        return slot, torch.clamp(self.pos, max=self.slots)

    def get_seq_length(self) -> int:
        """Tokens seen (the host count; CUDA-graph replays advance only the device counter ``pos``)."""
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """``(kv_length, kv_offset)`` of the states a prefill returns, as :class:`~fibquant_theory.kv.layers.CodecLayer` counts them."""
        return mask_sizes(self.cumulative_length, query_length, self.sliding_window)

    def get_max_length(self) -> int:
        """The number of slots (the sliding window, or the capacity)."""
        return self.slots

    def crop(self, tokens_to_remove: int) -> None:
        """Not supported: the GPU cache only appends (``NotImplementedError``)."""
        raise NotImplementedError("the GPU cache does not crop; use CodecCache on the CPU for assisted decoding")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Not supported: no beam search on the GPU cache (``NotImplementedError``)."""
        raise NotImplementedError("the GPU cache does not reorder its batch (beam search); use CodecCache")

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Not supported (``NotImplementedError``)."""
        raise NotImplementedError("the GPU cache does not repeat its batch; build it for the batch you decode")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Not supported (``NotImplementedError``)."""
        raise NotImplementedError("the GPU cache does not select batch rows; build it for the batch you decode")

    def _tag(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key_states._fibquant_layer = self  # the attention function finds the layer here
        return key_states, value_states


class GPUCodecLayer(_StaticBase):
    """One attention layer whose keys and values live as FibQuant records in preallocated device buffers.

    Parameters
    ----------
    key_codec, value_codec : GPUFibQuantCodec
        The codecs of keys and values (records of a whole number of bytes; the same
        object for both when keys and values share a rate).
    capacity : int
        Tokens per head of a full-attention layer (``max_cache_len``).
    sliding_window : int or None
        The layer's attention window ``W`` (a ring of ``min(W, capacity)`` slots).
    center : {"none", "key", "value", "both"}
        Remove the per-head prefill mean (rounded to float16) before encoding, as
        :class:`~fibquant_theory.kv.layers.CodecLayer` does.
    """

    def __init__(self, key_codec: Any, value_codec: Any, capacity: int, sliding_window: int | None, center: str) -> None:
        super().__init__(capacity, sliding_window)
        self.key_codec, self.value_codec, self.center = key_codec, value_codec, center
        self.shared = key_codec is value_codec
        self.record_bytes = tuple(c.bits_per_vector // 8 for c in (key_codec, value_codec))
        self.key_mean: torch.Tensor | None = None
        self.value_mean: torch.Tensor | None = None
        self._vmean_q: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Allocate the code buffers (zero records: norm 0) and the device counter for this batch and head count."""
        self.device = key_states.device
        self.dtype = key_states.dtype
        b, h, _, d = key_states.shape
        self.batch_size, self.num_heads, self.head_dim = int(b), int(h), int(d)
        rk, rv = self.record_bytes
        self.codes = torch.zeros(b * h * self.slots * (rk + rv), dtype=torch.uint8, device=self.device)
        split = b * h * self.slots * rk
        self.key_buffer, self.value_buffer = self.codes[:split], self.codes[split:]
        self.pos = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.is_initialized = True

    def _view(self, buf: torch.Tensor, rb: int) -> torch.Tensor:
        return buf.view(self.batch_size, self.num_heads, self.slots, rb)

    def _encode(self, codec: Any, x: torch.Tensor, check: bool) -> torch.Tensor:
        """Records of ``x`` ``(b, h, q, d)`` as ``(b, h, q, record_bytes)`` uint8."""
        b, h, q, d = x.shape
        flat = x.reshape(b * h * q, d)
        if not flat.is_cuda and flat.dtype == torch.bfloat16:
            raise ValueError("the simulator path takes float16 or float32 states (NumPy has no bfloat16)")
        out = torch_result(codec.encode(kernel_array(flat.contiguous()), check=check), self.device)
        return out.view(b, h, q, -1)

    def _decode(self, codec: Any, rec: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        """Dense states of records ``(b, h, n, rb)`` in the layer's dtype (the mean added back)."""
        b, h, n, _ = rec.shape
        if n == 0:
            return torch.zeros(b, h, 0, self.head_dim, dtype=self.dtype, device=self.device)
        out_dt = "float32" if (mean is not None or self.dtype == torch.float32) else str(self.dtype).replace("torch.", "")
        dense = torch_result(codec.decode(kernel_array(rec.reshape(-1).contiguous()), b * h * n, dtype=out_dt), self.device)
        dense = dense.view(b, h, n, self.head_dim)
        if mean is not None:
            dense = dense.to(torch.float64) + mean
        return dense.to(self.dtype)

    @staticmethod
    def _mean(x: torch.Tensor, name: str) -> torch.Tensor:
        """Per-(batch, head) mean over tokens in float64, rounded to float16 (as the CPU cache stores it)."""
        mean = x.detach().to(torch.float64).mean(dim=-2, keepdim=True)
        if bool((mean.abs() > _FP16_MAX).any()):
            raise ValueError(f"center: the prefill mean of the {name} is beyond the float16 range; use center='none'")
        return mean.to(torch.float16).to(torch.float64)

    @staticmethod
    def _centred(x: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        """``x - mean`` in float32 (the encoder's input; exact when the two differ by fewer than 13 binades), or ``x``."""
        return x if mean is None else x.float() - mean.float()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and store the new states; return what attention reads (see the module docstring).

        Parameters
        ----------
        key_states, value_states : torch.Tensor
            ``(batch, kv_heads, q_len, head_dim)`` on the cache's device.
        *args, **kwargs
            Ignored (transformers' ``cache_kwargs``).

        Returns
        -------
        tuple of torch.Tensor
            Prefill: the dense decoded keys and values to attend over. Decoding step:
            ``key_states, value_states`` themselves, tagged for the attention function.
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if tuple(key_states.shape[:2]) != (self.batch_size, self.num_heads):
            raise ValueError(
                f"the GPU cache was built for batch {self.batch_size} x {self.num_heads} heads, got {tuple(key_states.shape[:2])}"
            )
        q = int(key_states.shape[-2])
        if q == 1 and self.cumulative_length > 0:
            return self._step(key_states, value_states)
        return self._prefill(key_states, value_states)

    def _step(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_room(1)
        k = self._centred(key_states, self.key_mean)
        v = self._centred(value_states, self.value_mean)
        rk, rv = self.record_bytes
        if self.shared:
            both = self._encode(self.key_codec, torch.cat([k, v], dim=1), check=False)
            k_rec, v_rec = both[:, : self.num_heads], both[:, self.num_heads:]
        else:
            k_rec = self._encode(self.key_codec, k, check=False)
            v_rec = self._encode(self.value_codec, v, check=False)
        slot, self.length = self._device_step()
        self._view(self.key_buffer, rk).index_copy_(2, slot, k_rec)
        self._view(self.value_buffer, rv).index_copy_(2, slot, v_rec)
        self.cumulative_length += 1
        return self._tag(key_states, value_states)

    def _prefill(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = int(key_states.shape[-2])
        self._check_room(q)
        if self.center in ("key", "both") and self.key_mean is None:
            self.key_mean = self._mean(key_states, "keys")
        if self.center in ("value", "both") and self.value_mean is None:
            self.value_mean = self._mean(value_states, "values")
            self._vmean_q = self.value_mean[:, :, 0, :]  # (b, h_kv, d): added to the group's query heads by attend()
        rk, rv = self.record_bytes
        k_new = self._encode(self.key_codec, self._centred(key_states, self.key_mean), check=True)
        v_new = self._encode(self.value_codec, self._centred(value_states, self.value_mean), check=True)
        start, keep = self._kept_before()
        old = self._host_slots(start, keep)
        k_old = self._view(self.key_buffer, rk).index_select(2, old)
        v_old = self._view(self.value_buffer, rv).index_select(2, old)
        tail = min(q, self.slots)  # a sliding ring keeps the last W tokens of a long prefill
        slots = self._host_slots(self.cumulative_length + q - tail, tail)
        self._view(self.key_buffer, rk).index_copy_(2, slots, k_new[:, :, q - tail:].contiguous())
        self._view(self.value_buffer, rv).index_copy_(2, slots, v_new[:, :, q - tail:].contiguous())
        self.cumulative_length += q
        self.pos.fill_(self.cumulative_length)
        self.length = self.pos if self.sliding_window is None else torch.clamp(self.pos, max=self.slots)
        keys = self._decode(self.key_codec, torch.cat([k_old, k_new], dim=2), self.key_mean)
        values = self._decode(self.value_codec, torch.cat([v_old, v_new], dim=2), self.value_mean)
        return keys, values

    def attend(self, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """Decode-attention of one query per head over the stored records (the decoding step).

        Parameters
        ----------
        query : torch.Tensor
            ``(batch, heads, 1, head_dim)``; ``heads`` a multiple of the layer's key/value heads.
        scaling : float or None
            Softmax scale (``None``: ``1/sqrt(head_dim)``).

        Returns
        -------
        torch.Tensor
            ``(batch, 1, heads, head_dim)``, as transformers' attention functions return it.
        """
        b, h, _, d = query.shape
        q = query.reshape(b, h, d)
        if self.shared:
            out = self.key_codec.decode_attention(
                kernel_array(q), kernel_array(self.key_buffer), kernel_array(self.value_buffer), self.slots,
                kv_heads=self.num_heads, scale=scaling, check=False, length=kernel_array(self.length),
            )
            out = torch_result(out, self.device).view(b, h, d)
        else:
            out = self._attend_decoded(query, scaling).view(b, h, d)
        if self._vmean_q is not None:
            out = (out.float() + self._vmean_q.repeat_interleave(h // self.num_heads, dim=1).float()).to(query.dtype)
        return out.view(b, h, 1, d).transpose(1, 2)

    def _attend_decoded(self, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """Keys and values of different rates: decode every slot, SDPA masked to ``length`` (graph-safe)."""
        rk, rv = self.record_bytes
        keys = self._decode(self.key_codec, self._view(self.key_buffer, rk), None).to(query.dtype)
        values = self._decode(self.value_codec, self._view(self.value_buffer, rv), None).to(query.dtype)
        mask = (torch.arange(self.slots, device=self.device) < self.length).view(1, 1, 1, -1)
        out = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scaling, enable_gqa=True)
        return out  # keys need no mean (a per-head shift of every score); the value mean is added by attend()

    def memory_bytes(self) -> int:
        """Bytes of the allocated code buffers and the float16 means."""
        if not self.is_initialized:
            return 0
        means = sum(2 * m.numel() for m in (self.key_mean, self.value_mean) if m is not None)
        return int(self.codes.numel()) + means

    def fp16_bytes(self) -> int:
        """Bytes of an fp16 static cache layer of the same slots."""
        return 0 if not self.is_initialized else 2 * 2 * self.batch_size * self.num_heads * self.slots * self.head_dim


class GPUFp16Layer(_StaticBase):
    """An uncompressed layer (``fp_layers``) in preallocated buffers, with the bookkeeping of :class:`GPUCodecLayer`.

    Parameters
    ----------
    capacity : int
        Tokens per head of a full-attention layer.
    sliding_window : int or None
        The layer's attention window (a ring of ``min(W, capacity)`` slots).
    """

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Allocate the key and value buffers in the states' dtype."""
        self.device, self.dtype = key_states.device, key_states.dtype
        b, h, _, d = key_states.shape
        self.batch_size, self.num_heads, self.head_dim = int(b), int(h), int(d)
        self.keys = torch.zeros(b, h, self.slots, d, dtype=self.dtype, device=self.device)
        self.values = torch.zeros_like(self.keys)
        self.pos = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new states; return the states to attend over (prefill) or the tagged new ones (decoding step).

        Parameters
        ----------
        key_states, value_states : torch.Tensor
            ``(batch, kv_heads, q_len, head_dim)``.
        *args, **kwargs
            Ignored.

        Returns
        -------
        tuple of torch.Tensor
            As :meth:`GPUCodecLayer.update`.
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        q = int(key_states.shape[-2])
        self._check_room(q)
        if q == 1 and self.cumulative_length > 0:
            slot, self.length = self._device_step()
            self.keys.index_copy_(2, slot, key_states.to(self.dtype))
            self.values.index_copy_(2, slot, value_states.to(self.dtype))
            self.cumulative_length += 1
            return self._tag(key_states, value_states)
        start, keep = self._kept_before()
        old = self._host_slots(start, keep)
        keys = torch.cat([self.keys.index_select(2, old), key_states.to(self.dtype)], dim=2)
        values = torch.cat([self.values.index_select(2, old), value_states.to(self.dtype)], dim=2)
        tail = min(q, self.slots)
        slots = self._host_slots(self.cumulative_length + q - tail, tail)
        self.keys.index_copy_(2, slots, key_states[:, :, q - tail:].to(self.dtype))
        self.values.index_copy_(2, slots, value_states[:, :, q - tail:].to(self.dtype))
        self.cumulative_length += q
        self.pos.fill_(self.cumulative_length)
        self.length = self.pos if self.sliding_window is None else torch.clamp(self.pos, max=self.slots)
        return keys, values

    def attend(self, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """SDPA of one query per head over the first ``length`` slots (masked on the device).

        Parameters
        ----------
        query : torch.Tensor
            ``(batch, heads, 1, head_dim)``.
        scaling : float or None
            Softmax scale.

        Returns
        -------
        torch.Tensor
            ``(batch, 1, heads, head_dim)``.
        """
        mask = (torch.arange(self.slots, device=self.device) < self.length).view(1, 1, 1, -1)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, self.keys.to(query.dtype), self.values.to(query.dtype), attn_mask=mask, scale=scaling, enable_gqa=True
        )
        return out.transpose(1, 2)

    def memory_bytes(self) -> int:
        """Bytes of the allocated buffers (counted at 2 bytes per entry)."""
        return 0 if not self.is_initialized else 2 * (self.keys.numel() + self.values.numel())

    fp16_bytes = memory_bytes
