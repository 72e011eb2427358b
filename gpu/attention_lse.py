r"""The log-sum-exp of a decode-attention call, from the per-split partials its kernel leaves behind.

Every block ``(s, h)`` of :func:`~fibquant_theory.gpu.attention.attention_kernel` writes its
running maximum ``pmax[h, s]`` and its sum ``psum[h, s] = sum_i exp(s_i - pmax[h, s])`` over
its tokens into the workspace before the last block of the head merges them, so after the
call

.. math:: \mathrm{lse}_h = \log \sum_i e^{s_i} = g_h + \log \sum_s \mathrm{psum}_{h,s}\, e^{\mathrm{pmax}_{h,s} - g_h},
   \qquad g_h = \max_s \mathrm{pmax}_{h,s},

with ``s_i`` the scaled scores (``-inf`` for a head with no record). A caller that attends over
further tokens itself (an fp16 window) merges the two softmax parts with it.
"""

from __future__ import annotations

from typing import Any

from .arrays import Input

__all__ = ["split_log_sum_exp"]


def split_log_sum_exp(pmax: Input, psum: Input) -> Any:
    """``lse[h]`` of the partials ``(BH, n_splits)`` of the last decode-attention call, as a float32 torch tensor.

    Parameters
    ----------
    pmax, psum : Input
        The workspace arrays (maximum and sum per head and split) of the call, on the device.

    Returns
    -------
    torch.Tensor
        Shape ``(BH,)``, float32, on the workspace's CUDA device (a CPU tensor under the
        simulator); ``-inf`` for a head that attended over no record. Computed on torch's
        current stream, where the kernel ran for torch inputs.
    """
    import torch

    def tensor(a: Input) -> Any:
        if hasattr(a.array, "__cuda_array_interface__") and torch.cuda.is_available():
            return torch.as_tensor(a.array, device="cuda")
        return torch.from_numpy(a.array.copy_to_host())

    m, s = tensor(pmax), tensor(psum)
    g = m.amax(dim=1, keepdim=True)
    live = torch.isfinite(m)
    tot = torch.where(live, s * torch.exp(torch.where(live, m - g, torch.zeros_like(m))), torch.zeros_like(s)).sum(dim=1)
    return torch.where(tot > 0, g[:, 0] + torch.log(tot), torch.full_like(tot, float("-inf")))
