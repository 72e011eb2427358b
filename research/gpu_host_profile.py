"""Where the host time of one eager decode-attention call goes (GPU machine; prints a table).

Usage: python research/gpu_host_profile.py [--calls 3000] [--out DIR]

Times ``GPUFibQuantCodec.decode_attention(..., check=False)`` on 1x32x32k at d=128 (the
issue's shape) back to back without synchronising, then profiles the same loop with
cProfile (top functions by own time), and times the pieces a call is made of in
isolation (current stream, output allocation, argument views, the driver launch), each
against ``scaled_dot_product_attention`` on fp16 K/V of the same shape in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call_us(fn, calls: int, torch) -> float:
    fn()
    torch.cuda.synchronize()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.arrays import as_input, empty
    from fibquant_theory.gpu.codec import GPUFibQuantCodec
    from fibquant_theory.gpu.launch import stream_handle

    d, k, n, b, h, t = 128, 8, 256, 1, 32, 32768
    g = GPUFibQuantCodec(FibQuantCodec(design_codebook(d, k, n, seed=0), seed=0, rotation="hadamard", packing="fixed"))
    dev = torch.device("cuda")
    torch.manual_seed(0)
    kf = torch.randn(b * h * t, d, device=dev, dtype=torch.float16)
    vf = torch.randn(b * h * t, d, device=dev, dtype=torch.float16)
    q = torch.randn(b, h, d, device=dev, dtype=torch.float16)
    kp, vp = g.encode(kf), g.encode(vf)
    call = lambda: g.decode_attention(q, kp, vp, t, check=False)  # noqa: E731
    k4, v4 = kf.reshape(b, h, t, d), vf.reshape(b, h, t, d)
    sdpa = lambda: F.scaled_dot_product_attention(q[:, :, None], k4, v4)  # noqa: E731
    rows = [("decode_attention(check=False)", per_call_us(call, args.calls, torch)),
            ("SDPA fp16 (same run)", per_call_us(sdpa, args.calls, torch))]
    pieces = {
        "torch.cuda.current_stream()": lambda: torch.cuda.current_stream(),
        "torch._C._cuda_getCurrentRawStream(0)": lambda: torch._C._cuda_getCurrentRawStream(0),
        "stream_handle(None, True)": lambda: stream_handle(None, True),
        "as_input(q)": lambda: as_input(q, "q", ("float16", "bfloat16", "float32")),
        "as_input(k payload)": lambda: as_input(kp, "k", ("uint8",)),
        "torch.empty((32, 128), fp16)": lambda: torch.empty((32, 128), dtype=torch.float16, device=dev),
        "arrays.empty(...)": lambda qi=as_input(q, "q", ("float16",)): empty((32, 128), "float16", qi),
        "q.reshape(...) + data_ptr()": lambda: q.reshape(32, 128).data_ptr(),
    }
    for name, fn in pieces.items():
        rows.append((name, per_call_us(fn, args.calls, torch)))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.calls):
        call()
    prof.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
    lines = [f"{'piece':45s} {'us/call':>9s}"] + [f"{a:45s} {b_:9.2f}" for a, b_ in rows]
    text = "\n".join(lines) + "\n\n" + s.getvalue()
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "host_profile.txt").write_text(text)


if __name__ == "__main__":
    main()
