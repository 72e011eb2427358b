"""Profile one GPU decode and one decode-attention call (run under Nsight Compute).

``ncu --profile-from-start off --section ... python research/gpu_profile.py [--only decode|attention] [--layout chunks|columns] [--sass DIR]``:
the encode and warm-up launches happen outside the profiled range; inside it, one
decode of 4M vectors (d=128, k=8, N=256, Hadamard, fp16 out) and/or one
decode-attention call (1 x 32 heads x 32k tokens). ``--sass DIR`` writes the
SASS of the kernels that ran to ``DIR`` (one file per kernel, plus an opcode count).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import torch

from fibquant_theory.codebooks.design import design_codebook
from fibquant_theory.codecs.fibquant import FibQuantCodec
from fibquant_theory.gpu.codec import GPUFibQuantCodec
from fibquant_theory.gpu.options import GPUOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("decode", "attention", "both"), default="both")
    parser.add_argument("--sass", default=None)
    parser.add_argument("--layout", choices=("chunks", "columns"), default="chunks", help="Hadamard decode kernel")
    args = parser.parse_args()
    d, k, n_cw = 128, 8, 256
    g = GPUFibQuantCodec(
        FibQuantCodec(design_codebook(d, k, n_cw, seed=0), seed=0, rotation="hadamard", packing="fixed"),
        options=GPUOptions(decode_layout=args.layout),
    )
    torch.manual_seed(0)
    n = 1 << 22
    dec = args.only in ("decode", "both")
    att = args.only in ("attention", "both")
    payload = g.encode(torch.randn(n, d, device="cuda", dtype=torch.float16)) if dec else None
    t, bh = 32768, 32
    kp = g.encode(torch.randn(bh * t, d, device="cuda", dtype=torch.float16))
    vp = g.encode(torch.randn(bh * t, d, device="cuda", dtype=torch.float16))
    q = torch.randn(1, bh, d, device="cuda", dtype=torch.float16)
    if dec:
        g.decode(payload, n, check=False)  # compile + warm up outside the profiled range
    if att:
        g.decode_attention(q, kp, vp, t, check=False)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    if dec:
        g.decode(payload, n, check=False)
    if att:
        g.decode_attention(q, kp, vp, t, check=False)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    if args.sass:
        from fibquant_theory.gpu.codegen import COMPILED

        out = Path(args.sass)
        out.mkdir(parents=True, exist_ok=True)
        for i, (label, kern) in enumerate(COMPILED.items()):
            if "encode" in label:
                continue
            for sig in kern.signatures:
                sass = kern.inspect_sass(sig)
                ops = collections.Counter(
                    m.group(1).split(".")[0] for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass)
                )
                (out / f"kernel{i}.sass").write_text(label + "\n" + sass)
                (out / f"kernel{i}.ops").write_text(label + "\n" + "\n".join(f"{c:6d} {o}" for o, c in ops.most_common()))


if __name__ == "__main__":
    main()
