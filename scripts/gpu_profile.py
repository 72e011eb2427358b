"""Profile one GPU decode and one decode-attention call (run under Nsight Compute).

``ncu --profile-from-start off --section ... python scripts/gpu_profile.py``: the
encode and warm-up launches happen outside the profiled range; inside it, one
decode of 4M vectors (d=128, k=8, N=256, Hadamard, fp16 out) and one
decode-attention call (1 x 32 heads x 32k tokens).
"""

from __future__ import annotations

import torch

from fibquant_theory.codebook import design_codebook
from fibquant_theory.codec import FibQuantCodec
from fibquant_theory.gpu.codec import GPUFibQuantCodec


def main() -> None:
    d, k, n_cw = 128, 8, 256
    g = GPUFibQuantCodec(FibQuantCodec(design_codebook(d, k, n_cw, seed=0), seed=0, rotation="hadamard", packing="fixed"))
    torch.manual_seed(0)
    n = 1 << 22
    payload = g.encode(torch.randn(n, d, device="cuda", dtype=torch.float16))
    t, bh = 32768, 32
    kp = g.encode(torch.randn(bh * t, d, device="cuda", dtype=torch.float16))
    vp = g.encode(torch.randn(bh * t, d, device="cuda", dtype=torch.float16))
    q = torch.randn(1, bh, d, device="cuda", dtype=torch.float16)
    g.decode(payload, n, check=False)  # compile + warm up outside the profiled range
    g.decode_attention(q, kp, vp, t, check=False)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    g.decode(payload, n, check=False)
    g.decode_attention(q, kp, vp, t, check=False)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
