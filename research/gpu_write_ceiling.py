"""Write-bandwidth ceiling of the decode on the GPU machine (prints a table, optional JSON).

Usage: python research/gpu_write_ceiling.py [--out DIR]

The Hadamard decode reads 18 bytes (d=128/k=8/N=256) or 5.75 bytes (d=64/k=32/N=128) a vector
and writes 2d bytes of fp16, so it is a write stream. The bench compares it with a
device-to-device copy (half reads, half writes). This script measures, in the same run, the
copy and a pure write (``fill_``) of the same output size, each from a CUDA graph, and the
default decode of 4M vectors of both settings, and reports the decode against both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def graph_ms(fn, torch, reps: int = 50) -> float:
    """Median CUDA-event time (ms) of one replay of a graph of ``fn``."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--vectors", type=int, default=1 << 22)
    args = ap.parse_args()
    import torch

    import fibquant_theory.gpu  # noqa: F401  (numpy 2.5 alias before numba-cuda)
    from fibquant_theory._table import format_table
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.gpu.codec import GPUFibQuantCodec

    n = args.vectors
    rows = []
    for d, k, ncw in ((128, 8, 256), (64, 32, 128)):
        out_bytes = n * d * 2
        src = torch.empty(out_bytes // 2, dtype=torch.float16, device="cuda").normal_()
        dst = torch.empty_like(src)
        copy = graph_ms(lambda: dst.copy_(src), torch)
        fill = graph_ms(lambda: dst.fill_(1.0), torch)
        gpu = GPUFibQuantCodec(FibQuantCodec(design_codebook(d, k, ncw, seed=0), seed=0, rotation="hadamard", packing="fixed"))
        x = torch.randn(n, d, device="cuda", dtype=torch.float16)
        payload = gpu.encode(x)
        gpu.decode(payload, n)  # warm and validate once
        dec = graph_ms(lambda: gpu.decode(payload, n, check=False), torch)
        moved = payload.numel() + out_bytes
        rows.append({
            "d": d, "k": k, "N": ncw, "vectors": n, "copy GB/s": 2 * out_bytes / copy / 1e6,
            "fill GB/s": out_bytes / fill / 1e6, "decode ms": dec, "decode GB/s": moved / dec / 1e6,
            "% of copy": 100 * (moved / dec) / (2 * out_bytes / copy), "% of fill": 100 * (moved / dec) / (out_bytes / fill),
        })
        del src, dst, x, payload
        torch.cuda.empty_cache()
    print(format_table(rows, list(rows[0])))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "write_ceiling.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
