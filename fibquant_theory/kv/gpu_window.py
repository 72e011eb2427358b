r"""A GPU cache layer with an fp16 window: the most recent ``W`` tokens in fp16, the older ones as FibQuant codes.

:class:`GPUWindowCodecLayer` is what :class:`~fibquant_theory.kv.gpu_cache.GPUCodecCache` builds
for a full-attention layer when ``window = W > 0``; it stores what
:class:`~fibquant_theory.kv.layers.CodecLayer` with the same ``window`` stores (the same
records, the same window states, the same centring means; tests compare them byte for
byte):

* an fp16 ring of ``W`` slots (token ``p`` in slot ``p % W``) holding the last ``W`` tokens,
  16-bit states as given and wider ones rounded to float16, as the CPU window keeps them;
* the records of the tokens that left the window, token ``p`` in code slot ``p``, plus one
  spare slot (``capacity``) that a decoding step writes when nothing leaves the window, so
  that the step does the same work at every position (no host branch: a CUDA graph replays
  it at any position);
* the centring means, set from the first tokens encoded, as on the CPU (on the device at a
  decoding step: ``torch.where`` on a device flag).

A decoding step moves the token leaving the window (slot ``p % W``) into its code slot,
writes the new token into the ring, and attends in two parts that are merged exactly:
decode-attention from the codes (output and log-sum-exp,
:func:`~fibquant_theory.gpu.attention_lse.split_log_sum_exp`; the key mean adds
``scale <q, mean>`` to every code score, the value mean is added to the code part) and
attention over the ring in float32, weighted by their softmax masses
:math:`e^{\mathrm{lse}}`. Keys and values share one codec (one rate) here, and the layer is a
full-attention layer (the cache refuses the other cases).
"""

from __future__ import annotations

from typing import Any

import torch

from fibquant_theory.kv.gpu_layers import GPUCodecLayer, kernel_array, torch_result

__all__ = ["GPUWindowCodecLayer"]

_FP16_MAX = float(torch.finfo(torch.float16).max)


class GPUWindowCodecLayer(GPUCodecLayer):
    """Codes in preallocated device buffers plus an fp16 ring of the last ``window`` tokens (a full-attention layer).

    Parameters
    ----------
    codec : GPUFibQuantCodec
        The codec of keys and values (one rate, records of whole bytes).
    capacity : int
        Tokens per head the layer holds (``max_cache_len``).
    window : int
        Tokens kept in fp16 (``>= 1``).
    center : {"none", "key", "value", "both"}
        As in :class:`~fibquant_theory.kv.gpu_layers.GPUCodecLayer`.
    """

    def __init__(self, codec: Any, capacity: int, window: int, center: str) -> None:
        super().__init__(codec, codec, capacity, None, center)
        self.window = int(window)
        self.code_slots = self.slots + 1  # the last one: written by a step at which no token leaves the window

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Allocate the code buffers, the ring, the device counters and (when centring) the device means."""
        self.device, self.dtype = key_states.device, key_states.dtype
        b, h, _, d = key_states.shape
        self.batch_size, self.num_heads, self.head_dim = int(b), int(h), int(d)
        rb = self.record_bytes[0]
        self.codes = torch.zeros(2 * b * h * self.code_slots * rb, dtype=torch.uint8, device=self.device)
        self.key_buffer, self.value_buffer = self.codes[: b * h * self.code_slots * rb], self.codes[b * h * self.code_slots * rb:]
        self.ring_keys = torch.zeros(b, h, self.window, d, dtype=self.dtype, device=self.device)
        self.ring_values = torch.zeros_like(self.ring_keys)
        self.pos = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.n_codes = torch.zeros(1, dtype=torch.int64, device=self.device)
        zeros = torch.zeros(b, h, 1, d, dtype=torch.float64, device=self.device)
        self.key_mean = zeros.clone() if self.center in ("key", "both") else None
        self.value_mean = zeros.clone() if self.center in ("value", "both") else None
        self.mean_set = torch.zeros(1, dtype=torch.bool, device=self.device)
        self.is_initialized = True

    def _view(self, buf: torch.Tensor, rb: int) -> torch.Tensor:
        return buf.view(self.batch_size, self.num_heads, self.code_slots, rb)

    def _ring_states(self, x: torch.Tensor, name: str, check: bool) -> torch.Tensor:
        """States as the fp window holds them: 16-bit as given, wider ones rounded to float16 (checked on prefill)."""
        if x.element_size() <= 2:
            return x.to(self.dtype)
        rounded = x.to(torch.float16)
        if check and bool((torch.isinf(rounded) & torch.isfinite(x)).any()):
            raise ValueError(f"window: {name} states beyond the float16 range ({_FP16_MAX:g}) do not fit the fp16 window")
        return rounded.to(self.dtype)

    def _encode_pair(self, k: torch.Tensor, v: torch.Tensor, check: bool) -> tuple[torch.Tensor, torch.Tensor]:
        both = self._encode(self.key_codec, torch.cat([self._centred(k, self.key_mean), self._centred(v, self.value_mean)], 1), check)
        return both[:, : self.num_heads], both[:, self.num_heads:]

    def _prefill(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = int(key_states.shape[-2])
        self._check_room(q)
        c, w, rb = self.cumulative_length, self.window, self.record_bytes[0]
        total = c + q
        nc_old, nc_new = max(c - w, 0), max(total - w, 0)
        old = torch.arange(nc_old, c, device=self.device) % w
        keys = torch.cat([self.ring_keys.index_select(2, old), key_states.to(self.dtype)], dim=2)
        values = torch.cat([self.ring_values.index_select(2, old), value_states.to(self.dtype)], dim=2)
        n_enc = nc_new - nc_old
        keep_k = self._ring_states(keys[:, :, n_enc:], "key", True)
        keep_v = self._ring_states(values[:, :, n_enc:], "value", True)
        if n_enc > 0:
            k_out, v_out = keys[:, :, :n_enc], values[:, :, :n_enc]
            if not bool(self.mean_set[0]):
                for mean, x, name in ((self.key_mean, k_out, "keys"), (self.value_mean, v_out, "values")):
                    if mean is not None:
                        mean.copy_(self._mean(x, name))
                self.mean_set.fill_(True)
            k_rec, v_rec = self._encode_pair(k_out, v_out, True)
            slots = torch.arange(nc_old, nc_new, device=self.device)
            self._view(self.key_buffer, rb).index_copy_(2, slots, k_rec)
            self._view(self.value_buffer, rb).index_copy_(2, slots, v_rec)
        n_keep = keep_k.shape[2]
        ring = torch.arange(total - n_keep, total, device=self.device) % w
        self.ring_keys.index_copy_(2, ring, keep_k)
        self.ring_values.index_copy_(2, ring, keep_v)
        self.cumulative_length = total
        self.pos.fill_(total)
        self.n_codes.fill_(nc_new)
        coded = torch.arange(nc_new, device=self.device)
        k_hat = self._decode(self.key_codec, self._view(self.key_buffer, rb).index_select(2, coded), self.key_mean)
        v_hat = self._decode(self.value_codec, self._view(self.value_buffer, rb).index_select(2, coded), self.value_mean)
        return torch.cat([k_hat, keep_k], dim=2), torch.cat([v_hat, keep_v], dim=2)

    def _step(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_room(1)
        w, rb = self.window, self.record_bytes[0]
        p = self.pos
        ring = torch.remainder(p, w)
        leaving = p >= w
        k_old, v_old = self.ring_keys.index_select(2, ring), self.ring_values.index_select(2, ring)
        first = leaving & ~self.mean_set  # the first token to leave sets the means (a mean of one token, as on the CPU)
        for mean, x in ((self.key_mean, k_old), (self.value_mean, v_old)):
            if mean is not None:
                mean.copy_(torch.where(first, x.to(torch.float64).to(torch.float16).to(torch.float64), mean))
        self.mean_set.logical_or_(leaving)
        k_rec, v_rec = self._encode_pair(k_old, v_old, False)
        slot = torch.where(leaving, p - w, torch.full_like(p, self.slots))
        self._view(self.key_buffer, rb).index_copy_(2, slot, k_rec)
        self._view(self.value_buffer, rb).index_copy_(2, slot, v_rec)
        self.ring_keys.index_copy_(2, ring, self._ring_states(key_states, "key", False))
        self.ring_values.index_copy_(2, ring, self._ring_states(value_states, "value", False))
        p.add_(1)
        torch.clamp(p - w, min=0, out=self.n_codes)
        self.cumulative_length += 1
        return self._tag(key_states, value_states)

    def attend(self, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """:meth:`GPUCodecLayer.attend` over the codes and the ring, merged by their softmax masses (the decoding step).

        Parameters
        ----------
        query : torch.Tensor
            ``(batch, heads, 1, head_dim)``.
        scaling : float or None
            Softmax scale (``None``: ``1/sqrt(head_dim)``).

        Returns
        -------
        torch.Tensor
            ``(batch, 1, heads, head_dim)``, in ``query``'s dtype.
        """
        b, h, _, d = query.shape
        g = h // self.num_heads
        scale = float(scaling) if scaling is not None else d**-0.5
        q = query.reshape(b, h, d)
        out_c, lse_c = self.key_codec.decode_attention(
            kernel_array(q), kernel_array(self.key_buffer), kernel_array(self.value_buffer), self.code_slots,
            kv_heads=self.num_heads, scale=scale, dtype="float32", check=False, length=kernel_array(self.n_codes),
            return_lse=True,
        )
        out_c = torch_result(out_c, self.device).view(b, h, d).float()
        lse_c = lse_c.to(self.device).view(b, h)
        qf = q.float()
        if self.key_mean is not None:  # the codes are of k - mean: every code score lacks scale <q, mean>
            lse_c = lse_c + scale * (qf * self.key_mean[:, :, 0].float().repeat_interleave(g, dim=1)).sum(-1)
        if self.value_mean is not None:
            out_c = out_c + self.value_mean[:, :, 0].float().repeat_interleave(g, dim=1)
        keys = self.ring_keys.float().repeat_interleave(g, dim=1)
        values = self.ring_values.float().repeat_interleave(g, dim=1)
        scores = torch.einsum("bhd,bhtd->bht", qf, keys) * scale
        live = torch.arange(self.window, device=self.device) < self.pos
        scores = torch.where(live, scores, torch.full_like(scores, float("-inf")))
        lse_w = torch.logsumexp(scores, dim=-1)
        out_w = torch.einsum("bht,bhtd->bhd", torch.exp(scores - lse_w[..., None]), values)
        top = torch.maximum(lse_c, lse_w)
        wc, ww = torch.exp(lse_c - top)[..., None], torch.exp(lse_w - top)[..., None]
        out = (wc * out_c + ww * out_w) / (wc + ww)
        return out.to(query.dtype).view(b, h, 1, d).transpose(1, 2)

    def memory_bytes(self) -> int:
        """Bytes of the code buffers, the float16 means and the ring (counted at 2 bytes an entry)."""
        if not self.is_initialized:
            return 0
        means = sum(2 * m.numel() for m in (self.key_mean, self.value_mean) if m is not None)
        return int(self.codes.numel()) + means + 2 * (self.ring_keys.numel() + self.ring_values.numel())
